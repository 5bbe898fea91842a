"""Open DICOM files leniently and write any file atomically (temp file, fsync, rename).

Only file handling lives here; what is inside a dataset is the business of the other modules.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from pacsd.errors import InvalidDicom

_PROCESS_UMASK = os.umask(0)
os.umask(_PROCESS_UMASK)


def read_dicom(path: str | os.PathLike, *, stop_before_pixels: bool = False) -> Dataset:
    """Read a DICOM file; files without the 128-byte preamble and 'DICM' prefix are accepted."""
    path = Path(path)
    try:
        try:
            return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:
            dataset = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
            if len(dataset) == 0:
                raise InvalidDicomError("no data elements") from None
            return dataset
    except FileNotFoundError:
        raise InvalidDicom(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidDicom(f"{path}: is a directory, not a DICOM file") from None
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError) as exc:
        raise InvalidDicom(f"{path}: not a readable DICOM file ({exc})") from None


def as_dataset(source: Dataset | str | os.PathLike) -> Dataset:
    """The dataset itself, or the dataset read from a path."""
    return source if isinstance(source, Dataset) else read_dicom(source)


def write_atomically(target: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(file)` on a temp file next to `target`, fsync it, then rename it into place.

    A reader sees the old file or the complete new one, never a half-written one; on any error
    the temp file is removed and `target` is untouched. An existing target keeps its mode.
    """
    target = Path(target)
    folder = target.parent
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as temp_file:
            write(temp_file)
            temp_file.flush()
            os.fsync(temp_file.fileno())
        os.chmod(temp_name, _mode_for(target))
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    _fsync_directory(folder)
    return target


def _mode_for(target: Path) -> int:
    """The mode of the file being replaced, else what a plain open() would give under the umask."""
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_PROCESS_UMASK


def _fsync_directory(folder: Path) -> None:
    """Make the rename itself durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError), _open_directory(folder) as descriptor:
        os.fsync(descriptor)


@contextlib.contextmanager
def _open_directory(folder: Path) -> Iterator[int]:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        yield descriptor
    finally:
        os.close(descriptor)
