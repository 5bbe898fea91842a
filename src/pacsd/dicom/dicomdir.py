"""DICOM media File-sets (PS3.10): write instance files plus a DICOMDIR, read one back.

pydicom's FileSet does the work and names the files itself (8-character uppercase IDs), so no
tag value ever becomes a path; reading refuses references that lead outside the File-set.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

from pydicom.fileset import FileSet

from pacsd.dicom.files import read_dicom
from pacsd.errors import InvalidDicom

DICOMDIR = "DICOMDIR"


def write_fileset(
    paths: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    zip_path: str | os.PathLike | None = None,
) -> Path:
    """Write the instances at `paths` as a File-set in `out_dir` (and zip it when asked).

    Returns the DICOMDIR path. Raises `InvalidDicom` naming the file that cannot be added.
    """
    out_dir = Path(out_dir)
    if (out_dir / DICOMDIR).exists():
        raise InvalidDicom(f"{out_dir} already holds a DICOMDIR; export into an empty folder")
    fileset = FileSet()
    for path in paths:
        _add(fileset, Path(path))
    out_dir.mkdir(parents=True, exist_ok=True)
    fileset.write(out_dir)
    if zip_path is not None:
        _zip_folder(out_dir, Path(zip_path))
    return out_dir / DICOMDIR


def read_fileset(folder: str | os.PathLike) -> list[Path]:
    """The instance files a DICOMDIR in `folder` references, each checked to exist inside it."""
    folder = Path(folder)
    dicomdir = folder / DICOMDIR
    if not dicomdir.is_file():
        raise InvalidDicom(f"{folder}: no DICOMDIR file")
    try:
        fileset = FileSet(read_dicom(dicomdir))
        file_ids = [instance.FileID for instance in fileset]
    except PermissionError as exc:  # pydicom's own check of references leaving the root
        raise InvalidDicom(f"{dicomdir}: reference outside the File-set ({exc})") from None
    except (ValueError, AttributeError, KeyError) as exc:
        raise InvalidDicom(f"{dicomdir}: not a usable DICOMDIR ({exc})") from None
    root = folder.resolve()
    return [_inside(root, file_id) for file_id in file_ids]


def _add(fileset: FileSet, path: Path) -> None:
    ds = read_dicom(path)
    try:
        fileset.add(ds)
    except (ValueError, AttributeError, KeyError, NotImplementedError) as exc:
        raise InvalidDicom(f"{path}: cannot be put on DICOM media ({exc})") from None


def _inside(root: Path, file_id: str) -> Path:
    """The referenced file, refused if it is missing or would lie outside the File-set root."""
    parts = str(file_id).replace("\\", "/").split("/")
    candidate = (root.joinpath(*parts)).resolve()
    if root not in candidate.parents:
        raise InvalidDicom(f"DICOMDIR references {file_id!r}, outside the File-set")
    if not candidate.is_file():
        raise InvalidDicom(f"DICOMDIR references {file_id!r}, which is missing")
    return candidate


def _zip_folder(folder: Path, zip_path: Path) -> None:
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(file, file.relative_to(folder).as_posix())
