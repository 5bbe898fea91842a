"""WADO-RS pixels: frames (uncompressed, or compressed as stored), rendered and thumbnail images.

Frames go out as multipart/related, one part per frame, each labelled with its transfer syntax.
Rendered images are JPEG or PNG with the window, viewport and quality parameters.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response, StreamingResponse

from pacsd.dicom.files import read_dicom
from pacsd.dicom.frames import FRAME_MEDIA_TYPES, UNCOMPRESSED, frame_as_stored, uncompressed_frame
from pacsd.dicom.pixels import frame_count
from pacsd.dicom.render import middle_frame
from pacsd.errors import FrameOutOfRange
from pacsd.index.repository import StoredInstance
from pacsd.services.rendering import THUMBNAIL_SIZE, RenderRequest, Viewport, parse_render_request, render_bytes
from pacsd.web.dicomweb.media import OCTET_STREAM, choose_frame_encoding, choose_rendered_type
from pacsd.web.dicomweb.multipart import OutgoingPart, multipart_type, new_boundary, write_parts
from pacsd.web.dicomweb.resources import file_of, find_instances, pixel_errors
from pacsd.web.dicomweb.wado import INSTANCE, SERIES

router = APIRouter()

_MAX_FRAMES_PER_REQUEST = 10_000
_THUMBNAIL_CANDIDATES = 20  # instances tried for a study or series thumbnail


@router.get(INSTANCE + "/frames/{frames}")
def frames(request: Request, study: str, series: str, instance: str, frames: str) -> Response:
    """The frames asked for, one part each, encoded one at a time as the body is sent: the server
    holds one frame, whatever the number asked for (each number at most once, all checked first)."""
    numbers = parse_frame_numbers(frames)
    stored = find_instances(request, study, series, instance)[0]
    as_stored = choose_frame_encoding(request.headers.get("accept"), stored.transfer_syntax)
    with pixel_errors():
        dataset = read_dicom(file_of(request, stored))
        check_frame_numbers(dataset, numbers)

        def encode(number: int) -> tuple[bytes, str]:
            return frame_as_stored(dataset, number - 1) if as_stored else (
                uncompressed_frame(dataset, number - 1), UNCOMPRESSED)
        first = encode(numbers[0])

    def parts() -> Iterator[OutgoingPart]:
        for data, syntax in itertools.chain([first], map(encode, numbers[1:])):
            yield OutgoingPart(f"{FRAME_MEDIA_TYPES.get(syntax, OCTET_STREAM)}; transfer-syntax={syntax}", data)
    part_type = FRAME_MEDIA_TYPES.get(first[1], OCTET_STREAM)
    boundary = new_boundary()
    return StreamingResponse(write_parts(parts(), boundary), media_type=multipart_type(part_type, boundary))


def parse_frame_numbers(text: str) -> list[int]:
    """'1', '1,3,5': 1-based frame numbers, none repeated (PS3.18 asks for a list of non-duplicate
    frame numbers; '1,1,1,...' made the server hold a copy of the frame per repeat); 400 else."""
    try:
        numbers = [int(part) for part in text.split(",", _MAX_FRAMES_PER_REQUEST)]
    except ValueError:
        numbers = []
    if not numbers or len(numbers) > _MAX_FRAMES_PER_REQUEST or min(numbers) < 1:
        raise HTTPException(400, f"frames {text[:40]!r}: expected frame numbers from 1, separated by commas")
    if len(set(numbers)) != len(numbers):
        raise HTTPException(400, f"frames {text[:40]!r}: a frame number is repeated; ask for each frame once")
    return numbers


def check_frame_numbers(dataset, numbers: list[int]) -> None:
    """FrameOutOfRange (404) unless every number names a frame of the object."""
    count = frame_count(dataset)
    if max(numbers) > count:
        raise FrameOutOfRange(f"frame {max(numbers)} asked for, but the object has {count} frame(s)")


@router.get(INSTANCE + "/rendered")
def rendered_instance(request: Request, study: str, series: str, instance: str) -> Response:
    stored = find_instances(request, study, series, instance)[0]
    return _render(stored, request, 1, _render_request(request))


@router.get(INSTANCE + "/frames/{frames}/rendered")
def rendered_frame(request: Request, study: str, series: str, instance: str, frames: str) -> Response:
    stored = find_instances(request, study, series, instance)[0]
    return _render(stored, request, parse_frame_numbers(frames)[0], _render_request(request))


@router.get("/studies/{study}/thumbnail")
def study_thumbnail(request: Request, study: str) -> Response:
    return _thumbnail_of_any(request, find_instances(request, study))


@router.get(SERIES + "/thumbnail")
def series_thumbnail(request: Request, study: str, series: str) -> Response:
    return _thumbnail_of_any(request, find_instances(request, study, series))


@router.get(INSTANCE + "/thumbnail")
def instance_thumbnail(request: Request, study: str, series: str, instance: str) -> Response:
    stored = find_instances(request, study, series, instance)[0]
    return _render(stored, request, None, _render_request(request, thumbnail=True))


@router.get(INSTANCE + "/frames/{frames}/thumbnail")
def frame_thumbnail(request: Request, study: str, series: str, instance: str, frames: str) -> Response:
    stored = find_instances(request, study, series, instance)[0]
    return _render(stored, request, parse_frame_numbers(frames)[0], _render_request(request, thumbnail=True))


def _render_request(request: Request, thumbnail: bool = False) -> RenderRequest:
    """What to draw, from the Accept header and the query; a thumbnail fits 128 x 128 by default."""
    media_type = choose_rendered_type(request.headers.get("accept"))
    params = request.query_params
    render = parse_render_request(media_type, params.get("window"), params.get("viewport"), params.get("quality"))
    if thumbnail and render.viewport is None:
        render = replace(render, viewport=Viewport(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    return render


def _render(stored: StoredInstance, request: Request, frame: int | None, render: RenderRequest) -> Response:
    """Frame `frame` (1-based; None: the middle frame) drawn as asked."""
    with pixel_errors():
        dataset = read_dicom(file_of(request, stored))
        index = middle_frame(dataset) if frame is None else frame - 1
        return Response(render_bytes(dataset, index, render), media_type=render.media_type)


def _thumbnail_of_any(request: Request, found: list[StoredInstance]) -> Response:
    """The thumbnail of the middle instance, or of the next one that has an image."""
    render = _render_request(request, thumbnail=True)
    middle = len(found) // 2
    for stored in (found[middle:] + found[:middle])[:_THUMBNAIL_CANDIDATES]:
        try:
            return _render(stored, request, None, render)
        except HTTPException as exc:
            if exc.status_code not in (404, 406):
                raise
    raise HTTPException(404, "no instance here has an image to draw")
