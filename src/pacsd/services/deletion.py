"""Delete a study: its index rows (instances, series, study; the patient's counters, or the
patient when it was their last study) in one transaction, then its files and scan sheet.

Rows go first: a crash in between leaves unreferenced files, never a row without its file.
Listeners (the action log among them) are told once the rows are gone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PurePosixPath

from pacsd.errors import PacsError
from pacsd.index.repository import StudyIsProtected, delete_study_rows
from pacsd.pathnames import path_component
from pacsd.services.archive import Archive
from pacsd.services.scansheet import study_dir_for

log = logging.getLogger(__name__)


class NoSuchStudy(PacsError):
    """The study to delete is not in the index."""


class StudyProtected(PacsError):
    """Retention or recycling found the study (or its patient) protected."""


@dataclass(frozen=True)
class DeletedStudy:
    study_uid: str
    instances: int
    bytes: int


def delete_study(archive: Archive, study_uid: str, by: str = "", spare_protected: bool = False) -> DeletedStudy:
    """`spare_protected`: raise StudyProtected, deleting nothing, when the study or its patient is
    protected (checked in the deleting transaction, so a flag set meanwhile is honoured)."""
    try:
        deleted = delete_study_rows(archive.engine, study_uid, datetime.now(timezone.utc), spare_protected,
                                    archive.blobs.area_of, archive.blobs.home)
    except StudyIsProtected:
        raise StudyProtected(f"study {study_uid} is protected") from None
    if deleted is None:
        raise NoSuchStudy(f"no study {study_uid} in the index")
    paths = deleted.paths
    _remove_files(archive, study_uid, paths)
    log.info("deleted study %s (%d instances, %d bytes) by %s", study_uid, len(paths), deleted.size_bytes, by or "?")
    archive.listeners.study_deleted(study_uid, len(paths), by)
    return DeletedStudy(study_uid, len(paths), deleted.size_bytes)


def _remove_files(archive: Archive, study_uid: str, paths: list[str]) -> None:
    if paths:
        sheet_name = path_component(archive.settings.scan_sheets.file_name)
        study_dir = study_dir_for(archive.layout, paths[0], study_uid)
        paths = [*paths, *(str(PurePosixPath(study_dir, f"{sheet_name}.{kind}")) for kind in ("pdf", "csv"))]
    for path in paths:
        try:
            archive.blobs.remove(path)
        except OSError as exc:
            log.warning("deleted study %s: cannot remove %s: %s", study_uid, path, exc)
