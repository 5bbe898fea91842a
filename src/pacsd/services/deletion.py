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

from sqlalchemy import delete, insert, select, update

from pacsd.errors import PacsError
from pacsd.index.schema import changes, instances, patients, series, studies
from pacsd.services.archive import Archive
from pacsd.services.scansheet import study_dir_for
from pacsd.storage.sanitize import path_component

log = logging.getLogger(__name__)


class NoSuchStudy(PacsError):
    """The study to delete is not in the index."""


@dataclass(frozen=True)
class DeletedStudy:
    study_uid: str
    instances: int
    bytes: int


def delete_study(archive: Archive, study_uid: str, by: str = "") -> DeletedStudy:
    with archive.engine.begin() as conn:
        study = conn.execute(select(studies).where(studies.c.study_uid == study_uid)).first()
        if study is None:
            raise NoSuchStudy(f"no study {study_uid} in the index")
        series_pks = select(series.c.pk).where(series.c.study_pk == study.pk).scalar_subquery()
        paths = conn.execute(select(instances.c.path).where(instances.c.series_pk.in_(series_pks))
                             .order_by(instances.c.pk)).scalars().all()
        conn.execute(delete(instances).where(instances.c.series_pk.in_(series_pks)))
        series_count = conn.execute(delete(series).where(series.c.study_pk == study.pk)).rowcount
        conn.execute(delete(studies).where(studies.c.pk == study.pk))
        conn.execute(update(patients).where(patients.c.pk == study.patient_pk).values(
            num_studies=patients.c.num_studies - 1, num_series=patients.c.num_series - series_count,
            num_instances=patients.c.num_instances - len(paths)))
        conn.execute(delete(patients).where(patients.c.pk == study.patient_pk, patients.c.num_studies <= 0))
        conn.execute(insert(changes).values(kind="study-deleted", level="study", uid=study_uid,
                                            at=datetime.now(timezone.utc)))
    _remove_files(archive, study_uid, paths)
    log.info("deleted study %s (%d instances, %d bytes) by %s", study_uid, len(paths), study.size_bytes, by or "?")
    archive.listeners.study_deleted(study_uid, len(paths), by)
    return DeletedStudy(study_uid, len(paths), study.size_bytes)


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
