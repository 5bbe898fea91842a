"""Small preview images of stored instances, for scan sheets.

Drawn by the toolkit's `pacsd.dicom.convert.thumbnail_image` (the middle frame of a multi-frame
image, the only frame decoded, and of a large file the only one read).  An instance without
decodable pixels has no thumbnail (None), never an error.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PIL import Image

from pacsd.dicom.convert import thumbnail_image

log = logging.getLogger(__name__)


def thumbnail(path: Path, size: int) -> Image.Image | None:
    """A preview at most `size` pixels on its longer side, or None when it cannot be drawn."""
    try:
        return thumbnail_image(path, size)
    except Exception as exc:  # no pixel data, unsupported compression, corrupt frame...
        log.info("no thumbnail for %s: %s", path.name, exc)
        return None
