"""Rendered images of stored instances for HTTP: JPEG or PNG bytes of one frame.

Parses the `window`, `viewport` and `quality` parameters of PS3.18 8.3.5.1.3 and draws through
`pacsd.dicom.render`.  Shared by WADO-RS rendered/thumbnail, WADO-URI and the web pages.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

from PIL import Image
from pydicom.dataset import Dataset

from pacsd.dicom.render import Window, render_frame
from pacsd.errors import PacsError

RENDERED_MEDIA_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG"}
THUMBNAIL_SIZE = 128
_WINDOW_FUNCTIONS = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}
_MAX_VIEWPORT = 8192


class InvalidRenderParameter(PacsError):
    """A window, viewport or quality parameter that cannot be understood."""


@dataclass(frozen=True)
class Viewport:
    width: int
    height: int
    source: tuple[int, int, int, int] | None = None  # x, y, width, height of the region shown


@dataclass(frozen=True)
class RenderRequest:
    media_type: str = "image/jpeg"
    quality: int = 90
    window: Window | None = None
    viewport: Viewport | None = None


def parse_render_request(media_type: str, window: str | None = None, viewport: str | None = None,
                         quality: str | None = None) -> RenderRequest:
    """The parameters as the query string gives them; raises `InvalidRenderParameter`."""
    return RenderRequest(media_type, _parse_quality(quality), parse_window(window), parse_viewport(viewport))


def parse_window(text: str | None) -> Window | None:
    """'center,width[,function]' with function linear, linear-exact or sigmoid."""
    if not text:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise InvalidRenderParameter(f"window={text!r}: expected center,width[,function]")
    try:
        center, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise InvalidRenderParameter(f"window={text!r}: center and width must be numbers") from None
    if not width > 0 or not (abs(center) < float("inf") and width < float("inf")):
        raise InvalidRenderParameter(f"window={text!r}: width must be a positive finite number")
    function = _WINDOW_FUNCTIONS.get(parts[2].lower()) if len(parts) == 3 else "LINEAR"
    if function is None:
        raise InvalidRenderParameter(f"window={text!r}: function must be linear, linear-exact or sigmoid")
    return Window(center, width, function)


def parse_viewport(text: str | None) -> Viewport | None:
    """'vw,vh' or 'vw,vh,sx,sy,sw,sh' (sizes in pixels, all positive)."""
    if not text:
        return None
    try:
        numbers = [int(p) for p in text.split(",")]
    except ValueError:
        raise InvalidRenderParameter(f"viewport={text!r}: expected whole numbers vw,vh[,sx,sy,sw,sh]") from None
    if len(numbers) not in (2, 6) or not all(0 < n <= _MAX_VIEWPORT for n in numbers[:2]):
        raise InvalidRenderParameter(f"viewport={text!r}: expected vw,vh[,sx,sy,sw,sh] with 1..{_MAX_VIEWPORT}")
    if len(numbers) == 6 and (min(numbers[2:4]) < 0 or min(numbers[4:]) <= 0):
        raise InvalidRenderParameter(f"viewport={text!r}: the source region must lie in the image")
    source = (numbers[2], numbers[3], numbers[4], numbers[5]) if len(numbers) == 6 else None
    return Viewport(numbers[0], numbers[1], source)


def _parse_quality(text: str | None) -> int:
    if not text:
        return 90
    try:
        quality = int(text)
    except ValueError:
        quality = 0
    if not 1 <= quality <= 100:
        raise InvalidRenderParameter(f"quality={text!r}: expected a whole number from 1 to 100")
    return quality


def render_bytes(source: Dataset | str | os.PathLike, frame: int, request: RenderRequest) -> bytes:
    """Frame `frame` (0-based) rendered, fitted into the viewport, encoded as asked."""
    image = render_frame(source, frame, request.window)
    if request.viewport is not None:
        image = _fit(image, request.viewport)
    out = io.BytesIO()
    image_format = RENDERED_MEDIA_TYPES[request.media_type]
    options = {"quality": request.quality} if image_format == "JPEG" else {}
    image.save(out, image_format, **options)
    return out.getvalue()


def _fit(image: Image.Image, viewport: Viewport) -> Image.Image:
    if viewport.source is not None:
        x, y, width, height = viewport.source
        if x + width > image.width or y + height > image.height:  # Pillow would pad: a memory bomb
            raise InvalidRenderParameter(f"viewport source region {x},{y},{width},{height} does not lie in "
                                         f"the {image.width}x{image.height} image")
        image = image.crop((x, y, x + width, y + height))
    scale = min(viewport.width / image.width, viewport.height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS) if size != image.size else image
