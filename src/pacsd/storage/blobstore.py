"""Files on the storage volume: incoming temp files, durable placement, removal.

An incoming file is written under `<root>/.incoming/` (same volume, so placing it is a link, not
a copy), fsynced, then linked to its final name without ever replacing an existing file (a name
collision gets a `_1`, `_2`, ... suffix), and the temp name is removed.
"""

from __future__ import annotations

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

    def sync_file(self, path: Path) -> None:
        """Make a file's content durable (no-op when fsync is turned off)."""
        if not self.fsync:
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def place(self, temp: Path, relative: PurePosixPath) -> PurePosixPath:
        """Link a synced temp file to `relative` (or a suffixed name if taken); return the name used.

        Never replaces an existing file.  Raises StorageFull when the volume refuses.
        """
        try:
            self.make_private(temp, self.file_mode)
            created = self._make_parents(relative.parent)
            final = self._link_unique(temp, relative)
            self._sync_dirs(final.parent, created)
        except OSError as exc:
            raise storage_error(exc, f"cannot store {relative}") from None
        temp.unlink(missing_ok=True)
        return final

    def _make_parents(self, relative_dir: PurePosixPath) -> list[Path]:
        """Create missing folders; return the parents whose entries changed (to fsync)."""
        changed: list[Path] = []
        current = self.root
        for part in relative_dir.parts:
            current = current / part
            try:
                os.mkdir(current, self.dir_mode)
                self.make_private(current, self.dir_mode)
                changed.append(current.parent)
            except FileExistsError:
                pass
        return changed

    def replace_file(self, relative: PurePosixPath, data: bytes) -> Path:
        """Write a derived file (a scan sheet) at `relative`, atomically replacing an older one."""
        temp = self.new_temp_path(suffix=relative.suffix)
        try:
            temp.write_bytes(data)
            self.sync_file(temp)
            self.make_private(temp, self.file_mode)
            created = self._make_parents(relative.parent)
            os.replace(temp, self.root / relative)
            self._sync_dirs(relative.parent, created)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise storage_error(exc, f"cannot write {relative}") from None
        return self.root / relative

    def _sync_dirs(self, relative_dir: PurePosixPath, created: list[Path]) -> None:
        """Make new directory entries durable: the file's folder and every folder just made."""
        if self.fsync:
            for directory in {self.root / relative_dir, *created}:
                _sync_dir(directory)

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


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
