"""The viewer page of a series, and the images and tags it loads: frame PNGs (with a window),
series thumbnails and an instance's tag list.  Each checks the caller may see the study (404).
"""

from __future__ import annotations

import logging
import math

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from pacsd.dicom.nesting import load_header_json
from pacsd.errors import PacsError
from pacsd.index import browse
from pacsd.web.access import current_user
from pacsd.web.ohif import ohif_study_link
from pacsd.web.ui.images import frame_png, thumbnail_png
from pacsd.web.ui.lookups import visible_instance, visible_series, visible_study
from pacsd.web.ui.tags import tag_rows
from pacsd.web.ui.templating import render

log = logging.getLogger(__name__)
router = APIRouter(dependencies=[Depends(current_user)])
PRIVATE_CACHE = {"Cache-Control": "private, max-age=300"}
# Window presets (center, width) in Hounsfield units for CT.
PRESETS = {"CT lung": (-600, 1500), "CT bone": (300, 1500), "CT brain": (40, 80), "CT abdomen": (60, 400)}


@router.get("/ui/viewer/{series_uid}")
def viewer(request: Request, series_uid: str) -> Response:
    archive = request.app.state.archive
    series_row = visible_series(request, series_uid)
    study = visible_study(request, series_row.study_uid)
    entries = browse.instances_of_series(archive.engine, series_row.pk)
    frames = [{"sop": e.sop_uid, "frame": f, "frames": e.frames, "number": e.instance_number}
              for e in entries for f in range(e.frames)]
    return render(request, "viewer.html", series=series_row, study=study, presets=PRESETS,
                  ohif_link=ohif_study_link(archive.settings, series_row.study_uid),
                  viewer_data={"frames": frames, "presets": PRESETS})


def _window(center: float | None, width: float | None) -> tuple[float, float] | None:
    if center is None or width is None:
        return None
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
        raise HTTPException(400, "the window needs a finite center and a positive width")
    return center, width


@router.get("/ui/instances/{sop_uid}/frames/{frame}.png")
def frame_image(request: Request, sop_uid: str, frame: int, center: float | None = None,
                width: float | None = None) -> Response:
    row = visible_instance(request, sop_uid)
    path = request.app.state.archive.blobs.absolute(row.path)
    png, start = frame_png(path, frame, _window(center, width))
    headers = dict(PRIVATE_CACHE)
    if start is not None:
        headers.update({"X-Window-Center": f"{start.center:g}", "X-Window-Width": f"{start.width:g}"})
    return Response(png, media_type="image/png", headers=headers)


@router.get("/ui/series/{series_uid}/thumbnail.png")
def series_thumbnail(request: Request, series_uid: str) -> Response:
    archive = request.app.state.archive
    series_row = visible_series(request, series_uid)
    entries = browse.instances_of_series(archive.engine, series_row.pk)
    if entries:
        middle = entries[len(entries) // 2]
        instance = browse.find_instance(archive.engine, middle.sop_uid, None)
        try:
            png = thumbnail_png(archive.blobs.absolute(instance.path), middle.frames // 2)
            return Response(png, media_type="image/png", headers=PRIVATE_CACHE)
        except (PacsError, OSError) as exc:
            log.info("no thumbnail for series %s: %s", series_uid, exc)
    return RedirectResponse("/static/no-image.svg", status_code=302)


@router.get("/ui/instances/{sop_uid}/tags.json")
def instance_tags(request: Request, sop_uid: str) -> JSONResponse:
    row = visible_instance(request, sop_uid)
    return JSONResponse({"sop_uid": row.sop_uid, "tags": tag_rows(load_header_json(row.header_json))})
