"""`pacsd check`: does the storage tree agree with the index?

It finds index rows whose file is missing, files whose content no longer has their row's
SHA-256 (when asked to read them all), and image files in the tree that no row names.  Those are
left when the process stops between placing a file and committing its row (the sender, never
answered, sends the image again, which is then stored under another name), or were put there by
hand.  Repair indexes such a file through the same ingest path as `pacsd import` and then
removes it; a file whose instance is already indexed is removed only if it is an identical copy.
Missing and damaged files are reported, never "repaired": only a backup can bring them back.
Files changed in the last `grace` seconds are left alone: a running server may be committing them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pacsd.area_paths import area_prefix
from pacsd.dicom.header import read_header
from pacsd.errors import InvalidDicom
from pacsd.index.repository import indexed_checksums, instance_files_by_uid
from pacsd.services.archive import Archive
from pacsd.services.checksum import sha256_soon
from pacsd.services.corrections import recover_interrupted
from pacsd.services.importer import import_file
from pacsd.storage.blobstore import BlobStore

log = logging.getLogger(__name__)

DEFAULT_GRACE = 600  # seconds: younger files may be in the middle of being stored
_DICOM_MAGIC_AT, _DICOM_MAGIC = 128, b"DICM"


@dataclass
class CheckReport:
    """What a check found; paths are relative to the storage folder."""

    rows: int = 0  # index rows checked
    files: int = 0  # files seen in the storage tree (images and others)
    missing: list[str] = field(default_factory=list)  # a row names it; it is not there
    damaged: list[str] = field(default_factory=list)  # its SHA-256 differs from its row's
    unindexed: list[str] = field(default_factory=list)  # an image file no row names
    recent: int = 0  # files younger than the grace period, not looked at
    repaired: list[tuple[str, str]] = field(default_factory=list)  # unindexed, and what was done
    not_repaired: list[tuple[str, str]] = field(default_factory=list)  # unindexed, and why it stays
    corrections_finished: list[str] = field(default_factory=list)  # journals of interrupted corrections
    compression_leftovers: list[str] = field(default_factory=list)  # files of interrupted compressions, removed

    @property
    def consistent(self) -> bool:
        """Nothing is wrong any more (repaired files count as fixed)."""
        return not (self.missing or self.damaged or len(self.repaired) < len(self.unindexed))

    def as_json(self) -> dict:
        return {"consistent": self.consistent, "rows": self.rows, "files": self.files, "recent": self.recent,
                "missing": self.missing, "damaged": self.damaged, "unindexed": self.unindexed,
                "repaired": [{"path": p, "how": how} for p, how in self.repaired],
                "not_repaired": [{"path": p, "why": why} for p, why in self.not_repaired],
                "corrections_finished": self.corrections_finished,
                "compression_leftovers": self.compression_leftovers}


def check_storage(archive: Archive, checksums: bool = False, repair: bool = False,
                  grace: float = DEFAULT_GRACE) -> CheckReport:
    """Compare the index with the files under the storage folder (see the module docstring).
    Corrections and compressions a crash interrupted are finished first (their files would look
    unindexed); a compression is taken for interrupted when it started over `grace` seconds ago."""
    report = CheckReport()
    report.corrections_finished = recover_interrupted(archive)
    started_before = datetime.now(timezone.utc) - timedelta(seconds=grace)
    report.compression_leftovers = archive.compressor.recover(started_before=started_before)
    blobs = archive.blobs
    indexed = indexed_checksums(archive.engine)  # path -> SHA-256
    present = {area_prefix(area, blobs.home) + relative  # as the index names them (pacsd.area_paths)
               for area, root in blobs.area_roots.items() for relative in _files_under(root)}
    report.rows, report.files = len(indexed), len(present)
    for relative, checksum in indexed.items():
        # Not seen by the walk (in a dot-folder, behind a link): asked for by name before it is missing.
        if relative not in present and not _is_file(blobs, relative):
            report.missing.append(relative)
        elif checksums and checksum and _digest(blobs.path_of(relative)) != checksum:
            report.damaged.append(relative)
    newest = time.time() - grace
    for relative in present.difference(indexed):  # only these are stat'ed or opened
        try:
            changed = os.stat(blobs.path_of(relative)).st_mtime
        except FileNotFoundError:
            continue  # removed meanwhile
        if changed > newest:
            report.recent += 1
        elif _looks_like_an_image(blobs.path_of(relative)):
            report.unindexed.append(relative)
    report.missing.sort()
    report.damaged.sort()
    report.unindexed.sort()
    if repair:
        for relative in report.unindexed:
            outcome = _repair(archive, relative)
            (report.repaired if outcome[0] else report.not_repaired).append((relative, outcome[1]))
    return report


def _is_file(blobs: BlobStore, relative: str) -> bool:
    try:
        return blobs.path_of(relative).is_file()
    except ValueError:  # in an area the configuration no longer names
        return False


def _files_under(root: Path) -> Iterator[str]:
    """Every regular file below `root` (links are not followed), as a POSIX path relative to it;
    folders whose name starts with a dot (incoming files, pacsd's own) are not entered."""
    prefix = len(str(root)) + 1
    folders = [str(root)]
    while folders:
        try:
            entries = list(os.scandir(folders.pop()))
        except FileNotFoundError:
            continue  # removed meanwhile
        for entry in entries:  # the kind comes with the listing: no stat per file
            if entry.is_dir(follow_symlinks=False):
                if not entry.name.startswith("."):
                    folders.append(entry.path)
            elif entry.is_file(follow_symlinks=False):
                yield entry.path[prefix:]


def _looks_like_an_image(path: Path) -> bool:
    """A DICOM file (its 'DICM' prefix) or a file named like one; scan sheets and other files
    pacsd writes beside the images are neither."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as f:
            f.seek(_DICOM_MAGIC_AT)
            return f.read(len(_DICOM_MAGIC)) == _DICOM_MAGIC
    except OSError:
        return False


def _digest(path: Path) -> str:
    return sha256_soon(path).result()


def _repair(archive: Archive, relative: str) -> tuple[bool, str]:
    """Index one unindexed file and remove it once its instance is safely indexed: (done, how or why not)."""
    path = archive.blobs.path_of(relative)
    try:
        uid = read_header(path).sop_instance_uid
    except (InvalidDicom, OSError) as exc:
        return False, f"not a readable DICOM file: {exc}"
    stored = instance_files_by_uid(archive.engine, [uid]).get(uid)
    if stored is not None:
        if stored.checksum and stored.checksum == _digest(path):
            archive.blobs.remove(relative)
            log.info("check: removed %s, an identical copy of the indexed %s", relative, stored.path)
            return True, f"removed: an identical copy of {stored.path}"
        return False, f"instance {uid} is indexed as {stored.path} with other content; both are kept"
    try:
        result = import_file(archive, path)
    except Exception as exc:
        return False, f"cannot be indexed: {exc}"
    if result.action not in ("stored", "overwritten"):
        return False, f"not indexed ({result.action}): {result.reason or hex(result.status)}"
    archive.blobs.remove(relative)
    log.info("check: indexed %s as %s", relative, result.path)
    return True, f"indexed as {result.path}"
