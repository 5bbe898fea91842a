"""WADO-URI (PS3.18 chapter 9): GET /wado?requestType=WADO&studyUID=&seriesUID=&objectUID=.

contentType application/dicom sends the file as stored (transcoded losslessly when transferSyntax
names another syntax); image/jpeg (the default) or image/png a rendered frame with frameNumber,
windowCenter/windowWidth, rows/columns and imageQuality.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response

from pacsd.dicom.files import read_dicom
from pacsd.dicom.transcode import transcoded_file
from pacsd.errors import PacsError
from pacsd.services.rendering import RENDERED_MEDIA_TYPES, parse_render_request, render_bytes
from pacsd.web.dicomweb.media import DICOM, TRANSCODABLE
from pacsd.web.dicomweb.resources import file_of, find_instances, pixel_errors

router = APIRouter()


@router.get("/wado")
def wado(request: Request, requestType: str = "", studyUID: str = "", seriesUID: str = "",  # noqa: N803
         objectUID: str = "", contentType: str = "image/jpeg") -> Response:  # noqa: N803
    if requestType != "WADO":
        raise HTTPException(400, "requestType must be WADO")
    if not (studyUID and seriesUID and objectUID):
        raise HTTPException(400, "studyUID, seriesUID and objectUID are all required")
    stored = find_instances(request, studyUID, seriesUID, objectUID)[0]
    media_type = contentType.split(",")[0].split(";")[0].strip().lower()
    params = request.query_params
    if media_type == DICOM:
        syntax = params.get("transferSyntax")
        if syntax and syntax != stored.transfer_syntax:
            if syntax not in TRANSCODABLE:
                raise HTTPException(406, f"the object is stored as {stored.transfer_syntax}; transferSyntax "
                                         "may name an uncompressed or a lossless syntax")
            try:
                return Response(transcoded_file(file_of(request, stored), syntax), media_type=DICOM)
            except PacsError as exc:
                raise HTTPException(406, f"the object is stored as {stored.transfer_syntax}: {exc}") from None
        return FileResponse(file_of(request, stored), media_type=DICOM)
    if media_type not in RENDERED_MEDIA_TYPES:
        raise HTTPException(406, f"contentType {contentType[:60]!r}: use application/dicom, image/jpeg or image/png")
    render = parse_render_request(media_type, _window(params), _viewport(params), params.get("imageQuality"))
    frame = _frame_number(params.get("frameNumber"))
    with pixel_errors():
        dataset = read_dicom(file_of(request, stored))
        return Response(render_bytes(dataset, frame - 1, render), media_type=media_type)


def _window(params) -> str | None:
    center, width = params.get("windowCenter"), params.get("windowWidth")
    if bool(center) != bool(width):
        raise HTTPException(400, "windowCenter and windowWidth go together")
    return f"{center},{width}" if center else None


def _viewport(params) -> str | None:
    """rows/columns bound the image; one alone keeps the aspect ratio."""
    rows, columns = params.get("rows"), params.get("columns")
    if not rows and not columns:
        return None
    largest = "8192"
    return f"{columns or largest},{rows or largest}"


def _frame_number(text: str | None) -> int:
    if not text:
        return 1
    if not text.isdigit() or int(text) < 1:
        raise HTTPException(400, f"frameNumber {text[:20]!r}: expected a number from 1")
    return int(text)
