"""PNG images of stored frames for the viewer and the series thumbnails, drawn by
`pacsd.dicom.render` with an optional window, and the window a grey frame starts with.

Knows nothing of HTTP or access; `pacsd.web.ui.viewer` checks who may see an instance first.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut

from pacsd.dicom.files import read_dicom
from pacsd.dicom.pixels import decode_frame
from pacsd.dicom.render import Window, auto_window, frame_attributes, render_frame, window_from_dataset

THUMBNAIL_SIZE = 160


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def starting_window(ds: Dataset, frame: int) -> Window | None:
    """The window a grey frame is shown with by default (the file's or an automatic one), as the
    starting point of window/level dragging; None for colour images."""
    window = window_from_dataset(ds, frame)
    if window is not None:
        return window
    stored, photometric = decode_frame(ds, frame)
    if stored.ndim == 3 or photometric == "PALETTE COLOR":
        return None
    return auto_window(apply_modality_lut(stored, frame_attributes(ds, frame)))


def frame_png(path: Path, frame: int, window: tuple[float, float] | None) -> tuple[bytes, Window | None]:
    """The frame as PNG (in `window` when given) and the frame's starting window."""
    ds = read_dicom(path)
    image = render_frame(ds, frame, window)
    return png_bytes(image), starting_window(ds, frame)


def thumbnail_png(path: Path, frame: int = 0) -> bytes:
    stat = path.stat()
    return _thumbnail(str(path), frame, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=512)
def _thumbnail(path: str, frame: int, _mtime_ns: int, _size: int) -> bytes:
    image = render_frame(path, frame)
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    return png_bytes(image)
