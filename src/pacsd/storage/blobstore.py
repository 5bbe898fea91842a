"""Files on the storage volume: incoming temp files, placement, durability, removal.

An incoming file is written under `<root>/.incoming/` (same volume, so placing it is a link, not
a copy), linked to its final name without ever replacing an existing file (a name collision gets
a `_1`, `_2`, ... suffix), and the temp name is removed.  `make_durable` then flushes a whole
group of placed files at once: one `syncfs()` of the volume covers their data and their new
directory entries (per-file fdatasync + folder fsync where syncfs is missing).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import grp
import logging
import os
import tempfile
from pathlib import Path, PurePosixPath

from pacsd.errors import ConfigError, StorageFull

log = logging.getLogger(__name__)

INCOMING = ".incoming"
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def is_full_error(exc: OSError) -> bool:
    return exc.errno in _FULL_ERRNOS


def storage_error(exc: OSError, what: str) -> StorageFull:
    reason = "the storage volume is full" if is_full_error(exc) else f"cannot write: {exc.strerror}"
    return StorageFull(f"{what}: {reason}")


class BlobStore:
    """The image files under one root directory."""

    def __init__(self, root: Path | str, fsync: bool = True, file_mode: int = 0o640, dir_mode: int = 0o750,
                 group: str | None = None) -> None:
        self.root = Path(root).resolve()
        self.fsync = fsync
        self.file_mode, self.dir_mode = file_mode, dir_mode
        self.gid = group_id(group)
        self.incoming = self.root / INCOMING
        self.incoming.mkdir(parents=True, exist_ok=True, mode=dir_mode)
        self._clear_stale_incoming()

    def _clear_stale_incoming(self) -> None:
        """Temp files left by a crash were never acknowledged: remove them."""
        for stale in self.incoming.iterdir():
            log.warning("removing unfinished incoming file %s from an earlier run", stale.name)
            stale.unlink(missing_ok=True)

    def new_temp_path(self, suffix: str = ".dcm") -> Path:
        fd, name = tempfile.mkstemp(suffix=suffix, dir=self.incoming)
        os.close(fd)
        return Path(name)

    def absolute(self, relative: str | PurePosixPath) -> Path:
        path = (self.root / relative).resolve()
        if self.root not in path.parents:
            raise ValueError(f"{relative!r} is outside the storage root")
        return path

    def place(self, temp: Path, relative: PurePosixPath) -> PurePosixPath:
        """Link a temp file to `relative` (or a suffixed name if taken); return the name used.

        Never replaces an existing file.  Not yet durable: see `make_durable`.  Raises
        StorageFull when the volume refuses.
        """
        try:
            self.make_private(temp, self.file_mode)
            self._make_parents(relative.parent)
            final = self._link_unique(temp, relative)
        except OSError as exc:
            raise storage_error(exc, f"cannot store {relative}") from None
        temp.unlink(missing_ok=True)
        return final

    def make_durable(self, relatives: list[str]) -> None:
        """Flush placed files (data and directory entries) to disk; one flush for the group.

        No-op when fsync is turned off.  Raises StorageFull when the volume reports an error.
        """
        if not self.fsync or not relatives:
            return
        try:
            if _syncfs is not None:
                _syncfs(self.root)
                return
            for relative in relatives:
                path = self.root / relative
                _fsync_path(path, data_only=True)
            for directory in {(self.root / relative).parent for relative in relatives}:
                while directory != self.root.parent:  # new folders too: their entries in parents
                    _fsync_path(directory)
                    directory = directory.parent
        except OSError as exc:
            raise storage_error(exc, "cannot make stored files durable") from None

    def _make_parents(self, relative_dir: PurePosixPath) -> None:
        current = self.root
        for part in relative_dir.parts:
            current = current / part
            try:
                os.mkdir(current, self.dir_mode)
                self.make_private(current, self.dir_mode)
            except FileExistsError:
                pass

    def replace_file(self, relative: PurePosixPath, data: bytes) -> Path:
        """Write a derived file (a scan sheet) at `relative`, atomically replacing an older one."""
        temp = self.new_temp_path(suffix=relative.suffix)
        try:
            temp.write_bytes(data)
            self.make_private(temp, self.file_mode)
            self._make_parents(relative.parent)
            os.replace(temp, self.root / relative)
            self.make_durable([str(relative)])
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise storage_error(exc, f"cannot write {relative}") from None
        return self.root / relative

    def make_private(self, path: Path, mode: int) -> None:
        """Give a created file or folder its exact mode (whatever the umask) and the group."""
        if self.gid is not None:
            os.chown(path, -1, self.gid)
        os.chmod(path, mode)

    def _link_unique(self, temp: Path, relative: PurePosixPath) -> PurePosixPath:
        stem, suffix = relative.stem, relative.suffix
        candidate = relative
        for attempt in range(1, 10_000):
            try:
                os.link(temp, self.root / candidate)
                if attempt > 1:
                    log.warning("file name %s was taken; stored as %s", relative, candidate)
                return candidate
            except FileExistsError:
                candidate = relative.with_name(f"{stem}_{attempt}{suffix}")
        raise OSError(errno.EEXIST, f"no free name for {relative}")

    def remove(self, relative: str | PurePosixPath) -> None:
        """Remove a stored file and any folders it leaves empty (up to the root)."""
        path = self.absolute(relative)
        path.unlink(missing_ok=True)
        parent = path.parent
        while parent != self.root and self.root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def usage(self) -> tuple[int, int]:
        """(bytes used, bytes free) on the storage volume."""
        stats = os.statvfs(self.root)
        return (stats.f_blocks - stats.f_bfree) * stats.f_frsize, stats.f_bavail * stats.f_frsize


def group_id(group: str | None) -> int | None:
    """The id of a group given by name or number (None: leave the group as created)."""
    if group is None or group == "":
        return None
    if str(group).isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"storage.group: there is no group {group!r} on this machine") from None


def _fsync_path(path: Path, data_only: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        (os.fdatasync if data_only else os.fsync)(fd)
    finally:
        os.close(fd)


def _load_syncfs():
    """Linux syncfs(2): flush one filesystem (all files, directories, journal) in one call."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        return None

    def call(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if syncfs(fd) != 0:
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code))
        finally:
            os.close(fd)

    return call


_syncfs = _load_syncfs()
