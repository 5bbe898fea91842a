"""Small preview images of stored instances, for scan sheets.

Uses the toolkit's `pacsd.dicom.render.render_frame` when it is there; until then a minimal
pydicom + numpy render (first frame, modality and VOI LUT or min-max, RGB as decoded).  An
instance without decodable pixels has no thumbnail (None), never an error.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)


def render_first_frame(path: Path) -> Image.Image:
    """The first frame of the file at `path` as an 8-bit 'L' or 'RGB' image (raises on failure)."""
    try:
        from pacsd.dicom.render import render_frame
    except ImportError:
        return _render_with_pydicom(path)
    return render_frame(path)


def thumbnail(path: Path, size: int) -> Image.Image | None:
    """A preview at most `size` pixels on its longer side, or None when it cannot be drawn."""
    try:
        image = render_first_frame(path)
    except Exception as exc:  # no pixel data, unsupported compression, corrupt frame...
        log.info("no thumbnail for %s: %s", path.name, exc)
        return None
    image.thumbnail((size, size))
    return image


def _render_with_pydicom(path: Path) -> Image.Image:
    from pydicom import dcmread
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    ds = dcmread(path)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    pixels = ds.pixel_array if frames == 1 else ds.pixel_array[0]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(pixels, ds)
        return Image.fromarray(_to_uint8(rgb, 0, float(rgb.max()) or 1.0), mode="RGB")
    if pixels.ndim == 3:  # colour, already converted to RGB by pydicom
        return Image.fromarray(_to_uint8(pixels, 0, float(np.iinfo(pixels.dtype).max) if pixels.dtype.kind in "ui" else 1.0), mode="RGB")
    values = apply_modality_lut(pixels, ds)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        values = apply_voi_lut(values, ds)
    low, high = np.percentile(values, (0.5, 99.5))
    grey = _to_uint8(values, float(low), float(high))
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return Image.fromarray(grey, mode="L")


def _to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = (values.astype(np.float64) - low) / max(high - low, 1e-9)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)
