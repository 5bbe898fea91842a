"""`pacsd import`: files from disk into the archive through the same ingest path as C-STORE.

Each file is copied to a temp file on the storage volume (the source is never moved or
changed) and handed to `Ingest.store`; the result of every file is reported.  A folder with a
DICOMDIR is a File-set: only the files it lists are imported; others beside it are reported as
not listed (import them by name to add them).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pacsd.dicom.dicomdir import DICOMDIR, read_fileset
from pacsd.errors import storage_error
from pacsd.services.archive import Archive
from pacsd.services.ingest import Source, StoreResult

_COPY_BUFFER = 1 << 20  # bytes per read while copying a file in


@dataclass
class ImportReport:
    stored: list[Path] = field(default_factory=list)
    duplicates: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    not_listed: list[Path] = field(default_factory=list)  # beside a DICOMDIR that does not list them


def files_under(paths: Iterable[Path]) -> list[Path]:
    """The files to import: a folder holding a DICOMDIR is read through it (PS3.10 media),
    any other folder recursively; DICOMDIR files themselves are indexes, not instances."""
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / DICOMDIR).is_file():
            found.extend(read_fileset(path))
        elif path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.name != DICOMDIR))
        else:
            found.append(path)
    return found


def not_in_fileset(folder: Path) -> list[Path]:
    """Files in a File-set's folder that its DICOMDIR does not list (so not imported)."""
    listed = set(read_fileset(folder))
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != DICOMDIR and p.resolve() not in listed)


def import_file(archive: Archive, path: Path) -> StoreResult:
    temp, fd = archive.blobs.new_temp_file()  # written through its descriptor (see new_temp_file)
    try:
        with open(fd, "wb") as copy, open(path, "rb") as source:
            shutil.copyfileobj(source, copy, _COPY_BUFFER)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise storage_error(exc, f"cannot copy {path}") from None
    return archive.ingest.store(temp, Source("import", peer=str(path)))


def import_paths(archive: Archive, paths: Iterable[Path], on_file: Callable[[], None] = lambda: None) -> ImportReport:
    report = ImportReport()
    paths = list(map(Path, paths))
    for path in paths:
        if (path / DICOMDIR).is_file():
            report.not_listed.extend(not_in_fileset(path))
    for path in files_under(paths):
        try:
            result = import_file(archive, path)
        except Exception as exc:
            report.failed.append((path, str(exc)))
        else:
            if result.action in ("stored", "overwritten"):
                report.stored.append(path)
            elif result.action == "kept-existing":
                report.duplicates.append(path)
            else:
                report.failed.append((path, result.reason or f"status 0x{result.status:04X}"))
        on_file()
    return report
