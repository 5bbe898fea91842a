"""Export studies, series or a patient from the archive as a DICOM File-set (DICOMDIR).

The index selects the instances; `pacsd.dicom.dicomdir.write_fileset` writes the media.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from pacsd.dicom.dicomdir import write_fileset
from pacsd.errors import PacsError
from pacsd.index.repository import instance_paths
from pacsd.services.archive import Archive
from pacsd.services.deidentify import Profile, deidentify_files


class NothingToExport(PacsError):
    """The selection matched no stored instance."""


def instance_files(archive: Archive, study: str | None = None, patient: str | None = None,
                   series_uid: str | None = None) -> list[Path]:
    """Stored files of the instances of a study, a series or a patient (one selector)."""
    paths = [archive.blobs.absolute(path) for path in instance_paths(archive.engine, study, series_uid, patient)]
    if not paths:
        raise NothingToExport("no stored instance matches that study, series or patient")
    return paths


class DeidentifiedExportIncomplete(PacsError):
    """Some selected instances could not be de-identified, so nothing was exported."""


def export_fileset(archive: Archive, out_dir: Path, zip_path: Path | None = None,
                   deidentify: Profile | None = None, **selector: Any) -> tuple[Path, int]:
    """Write the selected instances as a File-set (de-identified by `deidentify` when given);
    return (DICOMDIR path, instance count). A de-identified export is all or nothing."""
    paths = instance_files(archive, **selector)
    if deidentify is None:
        return write_fileset(paths, out_dir, zip_path), len(paths)
    work = Path(tempfile.mkdtemp(prefix=".pacsd-deid-", dir=Path(out_dir).parent if Path(out_dir).parent.is_dir() else None))
    try:
        outcome = deidentify_files(paths, work, deidentify)
        if outcome.refused:
            path, reason = outcome.refused[0]
            raise DeidentifiedExportIncomplete(
                f"{len(outcome.refused)} of {len(paths)} instances cannot be de-identified, nothing exported "
                f"(first: {path.name}: {reason})")
        return write_fileset(outcome.written, out_dir, zip_path), len(paths)
    finally:
        shutil.rmtree(work, ignore_errors=True)
