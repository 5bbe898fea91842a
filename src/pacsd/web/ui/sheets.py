"""The scan sheet (PDF and CSV written at end of study) of a study, linked from its page."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse

from pacsd.index.repository import first_instance_path
from pacsd.pathnames import path_component
from pacsd.services.archive import Archive
from pacsd.services.scansheet import study_dir_for
from pacsd.web.access import current_user
from pacsd.web.ui.lookups import visible_study

router = APIRouter(dependencies=[Depends(current_user)])
MEDIA_TYPES = {"pdf": "application/pdf", "csv": "text/csv; charset=utf-8"}


def scan_sheet_path(archive: Archive, study_uid: str, kind: str) -> Path | None:
    """The study's scan sheet file of `kind` (pdf or csv) when it has been written."""
    first_path = first_instance_path(archive.engine, study_uid)
    if first_path is None:
        return None
    name = path_component(archive.settings.scan_sheets.file_name)
    path = archive.blobs.absolute(study_dir_for(archive.layout, first_path, study_uid) / f"{name}.{kind}")
    return path if path.is_file() else None


def scan_sheet_links(archive: Archive, study_uid: str) -> list[str]:
    """The kinds (pdf, csv) of scan sheet the study has."""
    return [kind for kind in MEDIA_TYPES if scan_sheet_path(archive, study_uid, kind) is not None]


@router.get("/ui/studies/{study_uid}/scan-sheet.{kind}")
def scan_sheet(request: Request, study_uid: str, kind: str) -> FileResponse:
    archive = request.app.state.archive
    visible_study(request, study_uid)
    if kind not in MEDIA_TYPES:
        raise HTTPException(404, "no such scan sheet")
    path = scan_sheet_path(archive, study_uid, kind)
    if path is None:
        raise HTTPException(404, "this study has no scan sheet yet")
    return FileResponse(path, media_type=MEDIA_TYPES[kind], filename=f"ScanSheet.{kind}")
