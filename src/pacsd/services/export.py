"""Export studies, series or a patient from the archive as a DICOM File-set (DICOMDIR).

The index selects the instances; `pacsd.dicom.dicomdir.write_fileset` writes the media.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from pacsd.dicom.dicomdir import write_fileset
from pacsd.errors import PacsError
from pacsd.index.schema import instances, patients, series, studies
from pacsd.services.archive import Archive


class NothingToExport(PacsError):
    """The selection matched no stored instance."""


def instance_files(archive: Archive, study: str | None = None, patient: str | None = None,
                   series_uid: str | None = None) -> list[Path]:
    """Stored files of the instances of a study, a series or a patient (one selector)."""
    query = (
        select(instances.c.path)
        .join(series, instances.c.series_pk == series.c.pk)
        .join(studies, series.c.study_pk == studies.c.pk)
        .join(patients, studies.c.patient_pk == patients.c.pk)
        .order_by(studies.c.study_uid, series.c.series_uid, instances.c.instance_number)
    )
    if study:
        query = query.where(studies.c.study_uid == study)
    if series_uid:
        query = query.where(series.c.series_uid == series_uid)
    if patient:
        query = query.where(patients.c.patient_id == patient)
    with archive.engine.connect() as conn:
        paths = [archive.blobs.absolute(path) for path in conn.execute(query).scalars()]
    if not paths:
        raise NothingToExport("no stored instance matches that study, series or patient")
    return paths


def export_fileset(archive: Archive, out_dir: Path, zip_path: Path | None = None, **selector) -> tuple[Path, int]:
    """Write the selected instances as a File-set; return (DICOMDIR path, instance count)."""
    paths = instance_files(archive, **selector)
    return write_fileset(paths, out_dir, zip_path), len(paths)
