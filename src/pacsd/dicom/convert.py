"""Conversions between DICOM and ordinary pictures: DICOM -> JPEG, DICOM -> thumbnail,
JPEG -> DICOM (Secondary Capture or VL Photographic, the JPEG bytes kept as they are).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image
from pydicom.dataset import Dataset

from pacsd.dicom.files import as_dataset, write_atomically
from pacsd.dicom.jpeg import read_jpeg_header
from pacsd.dicom.render import Window, middle_frame, render_frame, render_middle_frame_of_file
from pacsd.dicom.secondary_capture import build_image_dataset

Source = Dataset | str | os.PathLike


def dcm_to_jpg(
    path: Source,
    out: str | os.PathLike,
    frame: int | None = None,
    window: Window | tuple[float, float] | None = None,
    quality: int = 90,
) -> Path:
    """Render frame `frame` (0-based, first by default) of a DICOM image to a JPEG file."""
    image = render_frame(path, frame=frame, window=window)
    return _save_jpeg(image, out, quality)


def dcm_to_tn(path: Source, out: str | os.PathLike, size: int = 128, quality: int = 85) -> Path:
    """A JPEG thumbnail fitting in size x size (aspect kept) of the middle frame."""
    return _save_jpeg(thumbnail_image(path, size), out, quality)


def thumbnail_image(source: Source, size: int) -> Image.Image:
    """The middle frame rendered to fit in size x size (aspect kept): what every thumbnail shows."""
    if size < 1:
        raise ValueError("thumbnail size must be at least 1 pixel")
    if isinstance(source, Dataset):
        image = render_frame(source, frame=middle_frame(source))
    else:  # a file: only the frame shown is read
        image = render_middle_frame_of_file(source)
    image.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return image


def jpg_to_dcm(
    jpg: str | os.PathLike,
    out: str | os.PathLike,
    demographics: Mapping[str, Any] | None = None,
    like: Source | None = None,
    *,
    photographic: bool = False,
    like_series: bool = False,
) -> Path:
    """Wrap a JPEG file as a new DICOM instance (Secondary Capture, or VL Photographic).

    `like` copies patient and study (and the series with `like_series`) from a reference
    DICOM; `demographics` ({keyword: value}) is applied last and checked against the VRs.
    """
    jpeg_bytes = Path(jpg).read_bytes()
    header = read_jpeg_header(jpeg_bytes)
    reference = as_dataset(like) if like is not None else None
    ds = build_image_dataset(
        jpeg_bytes,
        header,
        photographic=photographic,
        like=reference,
        like_series=like_series,
        demographics=demographics,
    )
    return write_atomically(out, lambda handle: ds.save_as(handle, enforce_file_format=True))


def _save_jpeg(image: Image.Image, out: str | os.PathLike, quality: int) -> Path:
    return write_atomically(out, lambda handle: image.save(handle, format="JPEG", quality=quality))
