"""Files on the storage volume: incoming temp files, placement, durability, removal.

An incoming file is written under `<root>/.incoming/` (same volume, so placing it is a link, not
a copy) with the writing node's name in front (nodes may share the folder), linked to its final name without ever replacing an existing file (a name collision gets
a `_1`, `_2`, ... suffix), and the temp name is removed.  `make_durable` then flushes placed
files: fdatasync of each file, then fsync of the folders that gained entries.  Ingest starts a
large file's data flush in a helper thread while it parses the file (`flush_data_soon`;
concurrent flushes share a journal commit; a small file's flush is left for later) and hands that
flush to the index writer's group, which flushes the folders (`make_entries_durable`) and
commits once both are done.

`storage.flush: volume` replaces those per-file flushes by one syncfs of each volume a group
wrote to, in `make_entries_durable`: on a volume pacsd has to itself it is less work (one
journal commit for the whole group), but it waits for whatever else anyone wrote to the volume,
which is why it is not the default.  Linux reports write-back errors through syncfs since 5.8.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import grp
import logging
import os
import posixpath
import shutil
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from pacsd.area_paths import area_path, split_area_path
from pacsd.deferred import DeferredFuture
from pacsd.errors import ConfigError, storage_error

if TYPE_CHECKING:
    from pacsd.config import StorageSettings

log = logging.getLogger(__name__)

INCOMING = ".incoming"
NODE_MARK = "~"  # <node>~<random>.dcm: the node that is writing an incoming file
STALE_AFTER = 24 * 3600  # seconds: another node's incoming file this old was abandoned
FLUSH_AT_ONCE_FROM = 128 * 1024  # bytes: a file this large starts its data flush when received


class BlobStore:
    """The image files under one root directory."""

    def __init__(self, root: Path | str, fsync: bool = True, file_mode: int = 0o640, dir_mode: int = 0o750,
                 group: str | None = None, node: str = "", areas: Mapping[str, Path | str] | None = None,
                 flush: str = "files") -> None:
        """`areas`: every storage area, name -> folder (one of them `root`, the home area); a
        path the index gives (`.areas/<name>/...` outside the home area) is found in its area.
        `flush`: "files" or "volume" (see the module's docstring)."""
        if flush not in ("files", "volume"):
            raise ConfigError(f"storage.flush: {flush!r} is neither 'files' nor 'volume'")
        self.flush_volume = fsync and flush == "volume"
        if self.flush_volume and _syncfs is None:
            raise ConfigError("storage.flush: volume needs Linux's syncfs, which this system lacks")
        self.root = Path(root).resolve()
        self.area_roots = {name: Path(folder).resolve() for name, folder in (areas or {}).items()}
        self.home = next((name for name, folder in self.area_roots.items() if folder == self.root), "default")
        self.area_roots[self.home] = self.root
        self._root_texts = {name: str(folder) for name, folder in self.area_roots.items()}
        for folder in self.area_roots.values():
            folder.mkdir(parents=True, exist_ok=True, mode=dir_mode)
        self.node = node.replace("/", "_").replace(NODE_MARK, "_")
        self.fsync = fsync
        self.file_mode, self.dir_mode = file_mode, dir_mode
        self.gid = group_id(group)
        self.incoming = self.root / INCOMING
        self.incoming.mkdir(parents=True, exist_ok=True, mode=dir_mode)
        self._new_entries: set[str] = set()  # folders that gained a subfolder not yet flushed
        self._new_entries_lock = threading.Lock()
        self._clear_stale_incoming()

    @classmethod
    def for_settings(cls, storage: StorageSettings, node: str) -> BlobStore:
        """The store `storage` (the config's section) describes, for the node `node`."""
        return cls(storage.directory, storage.fsync, storage.file_mode, storage.dir_mode, storage.group, node,
                   storage.areas, storage.flush)

    def _clear_stale_incoming(self) -> None:
        """Temp files left by a crash were never acknowledged: remove ours (and unmarked ones).

        Other nodes sharing the folder may be receiving into theirs right now; theirs are
        removed only when a day old."""
        now = time.time()
        for stale in [entry for root in self.area_roots.values() if (root / INCOMING).is_dir()
                      for entry in (root / INCOMING).iterdir()]:
            writer, marked, _ = stale.name.partition(NODE_MARK)
            try:
                abandoned = now - stale.stat().st_mtime > STALE_AFTER
            except FileNotFoundError:
                continue
            if not marked or writer == self.node or abandoned:
                log.warning("removing unfinished incoming file %s from an earlier run", stale.name)
                stale.unlink(missing_ok=True)

    def new_temp_path(self, suffix: str = ".dcm") -> Path:
        path, fd = self.new_temp_file(suffix)
        os.close(fd)
        return path

    def uncreated_temp_path(self, suffix: str = ".dcm") -> Path:
        """A path in the incoming folder no file will have (for a file that could not be made)."""
        return self.incoming / f"{self.node}{NODE_MARK}uncreated-{os.urandom(16).hex()}{suffix}"

    def new_temp_file(self, suffix: str = ".dcm") -> tuple[Path, int]:
        """A new empty file in the incoming folder, and a file descriptor open for writing it.

        Write through this descriptor rather than reopening the path with "wb": on ext4 a
        file truncated on open is written back when closed (its auto_da_alloc heuristic), which
        cost ~0.35 ms per received image."""
        while True:
            path = self.incoming / f"{self.node}{NODE_MARK}{os.urandom(8).hex()}{suffix}"
            try:
                return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue

    def absolute(self, relative: str | PurePosixPath) -> Path:
        """The file an index path names, in whichever area holds it; never outside that area."""
        root, inside = self._locate(relative)
        path = (root / inside).resolve()
        if root not in path.parents:
            raise ValueError(f"{relative!r} is outside the storage root")
        return path

    def path_of(self, relative: str | PurePosixPath) -> Path:
        """The file an index path names (as `absolute`, without resolving links: for paths
        pacsd made itself)."""
        root, inside = self._locate(relative)
        return root / inside

    def _text_path(self, relative: str | PurePosixPath) -> str:
        """`path_of` as text, for the store's own work on every received file.

        No Path object: pathlib interns every part it parses, so a new UID per image would churn
        the interpreter's table of interned strings (which then grows, privately, in each
        process), and its parsing costs more than the join."""
        root, inside = self._text_location(relative)
        return f"{root}/{inside}"

    def _text_location(self, relative: str | PurePosixPath) -> tuple[str, str]:
        """`_locate` as text: (the area's folder, the path inside it)."""
        area, inside = self._area_of(relative)
        return self._root_texts[area], inside

    def _locate(self, relative: str | PurePosixPath) -> tuple[Path, str]:
        area, inside = self._area_of(relative)
        return self.area_roots[area], inside

    def _area_of(self, relative: str | PurePosixPath) -> tuple[str, str]:
        """(the area, the path inside it) of an index path, in an area storage.areas names."""
        area, inside = split_area_path(relative, self.home)
        if area not in self.area_roots:
            raise ValueError(f"{relative!r} is in storage area {area!r}, which storage.areas does not name")
        return area, inside

    def in_area(self, area: str, relative: str | PurePosixPath) -> str:
        """The index path of `relative` inside `area`."""
        if area not in self.area_roots:
            raise ValueError(f"there is no storage area {area!r}")
        return area_path(area, relative, self.home)

    def area_of(self, relative: str | PurePosixPath) -> str:
        return split_area_path(relative, self.home)[0]

    def copy_in(self, source: Path, relative: str) -> str:
        """Copy `source` to the index path `relative` (or a suffixed name if taken) and make the
        copy durable (data, its folder entry, folders made for it); return the path used.

        The copy is written under the target area's incoming folder first, so a crash leaves at
        most a temp file there (cleared at the next start) or a complete, unindexed copy."""
        root, _ = self._locate(relative)
        incoming = root / INCOMING
        incoming.mkdir(exist_ok=True, mode=self.dir_mode)
        temp = incoming / f"{self.node}{NODE_MARK}{os.urandom(8).hex()}{PurePosixPath(relative).suffix}"
        try:
            with open(source, "rb") as reader, open(temp, "xb") as writer:
                shutil.copyfileobj(reader, writer, 1024 * 1024)
                if self.fsync:
                    os.fdatasync(writer.fileno())
            self.make_private(temp, self.file_mode)
            self._make_parents(posixpath.dirname(str(relative)))
            final = self._link_unique(temp, str(relative))
            self.make_entries_durable([final])
        except OSError as exc:
            raise storage_error(exc, f"cannot copy to {relative}") from None
        finally:
            temp.unlink(missing_ok=True)
        return final

    def place(self, temp: Path | str, relative: str | PurePosixPath) -> str:
        """Link a temp file to `relative` (or a suffixed name if taken); return the name used.

        Never replaces an existing file.  Not yet durable: see `make_durable`.  Raises
        StorageFull when the volume refuses.
        """
        relative = str(relative)
        try:
            self.make_private(temp, self.file_mode)
            self._make_parents(posixpath.dirname(relative))
            final = self._link_unique(temp, relative)
        except OSError as exc:
            raise storage_error(exc, f"cannot store {relative}") from None
        remove_if_there(temp)
        return final

    def make_durable(self, relatives: list[str]) -> None:
        """Flush placed files (data and directory entries) to disk, and the folders made for them.

        No-op when fsync is turned off.  Raises StorageFull when the volume reports an error.
        """
        if not self.fsync or not relatives:
            return
        for relative in relatives:
            self.make_data_durable(relative)
        self.make_entries_durable(relatives)

    def make_data_durable(self, relative: str | PurePosixPath) -> None:
        """Flush one placed file's data (fdatasync); its folder entry needs `make_entries_durable`.

        Several threads flushing at once share the filesystem's journal commit.  No-op when fsync
        is turned off, and with `flush: volume` (the group's syncfs flushes it); raises StorageFull
        when the volume reports an error."""
        if not self.fsync or self.flush_volume:
            return
        try:
            _fsync_path(self._text_path(relative), data_only=True)
        except OSError as exc:
            raise storage_error(exc, "cannot make the stored file durable") from None

    def make_entries_durable(self, relatives: list[str], extra_folders: Collection[str] = frozenset()) -> None:
        """Flush the folder entries of placed files whose data is already durable, and those of
        the folders made for them (fsync of each such folder); `extra_folders`: folders another
        process made (see `take_new_entries`)."""
        if not self.fsync or not relatives:
            return
        with self._new_entries_lock:
            folders, self._new_entries = self._new_entries, set()
        folders |= set(extra_folders)
        if self.flush_volume:
            self._flush_volumes(relatives, folders)
            return
        try:
            for folder in folders | {os.path.dirname(self._text_path(relative)) for relative in relatives}:
                try:
                    _fsync_path(folder)
                except FileNotFoundError:
                    pass  # emptied and removed since (a failed store): nothing to keep
        except OSError as exc:
            self._remember_new_entries(folders)
            raise storage_error(exc, "cannot make stored files durable") from None

    def _flush_volumes(self, relatives: list[str], folders: set[str]) -> None:
        """One syncfs of each area holding `relatives` (and of the home area for `folders`, which
        the receiving processes make there); areas on one volume are flushed once each anyway."""
        roots = {self._locate(relative)[0] for relative in relatives} | ({self.root} if folders else set())
        try:
            for root in sorted(roots):
                _flush_volume_of(root)
        except OSError as exc:
            self._remember_new_entries(folders)
            raise storage_error(exc, "cannot make stored files durable") from None

    def take_new_entries(self) -> list[str]:
        """The folders that gained a subfolder since the last call, for another process (the
        shared index writer) to flush with the next group; they are then this one's no more."""
        with self._new_entries_lock:
            folders, self._new_entries = self._new_entries, set()
        return list(folders)

    def _remember_new_entries(self, folders: set[str]) -> None:
        with self._new_entries_lock:
            self._new_entries |= folders

    def flush_data_soon(self, path: Path | str) -> Future:
        """The flush of a complete file's data (fdatasync); the future raises StorageFull on
        failure.  The flush holds for the file's later names too (a link is the same data).

        A large file's flush starts at once in a helper thread, so the disk writes it while the
        caller parses the file.  A small file's is a DeferredFuture, done by whoever waits for
        it: placed by then, the file and its new folder entry share that flush's journal commit,
        and no thread is woken for it.  See `abandon_flush` for a file given up."""
        done: Future = Future()
        if not self.fsync or self.flush_volume:  # volume: the group's syncfs flushes it
            done.set_result(None)
            return done
        try:
            fd = os.open(path, os.O_RDONLY)  # here: the caller may rename the file meanwhile
            large = os.fstat(fd).st_size >= FLUSH_AT_ONCE_FROM
        except OSError as exc:
            done.set_exception(storage_error(exc, "cannot make the received file durable"))
            return done
        if large:
            return _flushers.submit(_flush_and_close, fd)
        return DeferredFuture(lambda: _flush_and_close(fd), on_cancel=lambda: os.close(fd))

    @staticmethod
    def abandon_flush(flush: Future) -> None:
        """A flush from `flush_data_soon` nobody will wait for (the store failed first): one
        left for later is dropped and its descriptor closed; one under way ends on its own."""
        if isinstance(flush, DeferredFuture):
            flush.cancel()

    def _make_parents(self, relative_dir: str) -> None:
        """Make the folders of an index path's folder (text: see `_text_path`)."""
        if os.path.isdir(self._text_path(relative_dir)):
            return  # the usual case: the series folder exists
        current, inside = self._text_location(relative_dir)
        for part in inside.split("/"):
            if not part:
                continue
            parent, current = current, f"{current}/{part}"
            try:
                os.mkdir(current, self.dir_mode)
            except FileExistsError:
                continue
            with self._new_entries_lock:
                self._new_entries.add(parent)
            self.make_private(current, self.dir_mode)

    def replace_file(self, relative: PurePosixPath, data: bytes) -> Path:
        """Write a derived file at `relative`, atomically replacing an older one."""
        return self.replace_files([(relative, data)])[0]

    def replace_files(self, files: list[tuple[PurePosixPath, bytes]]) -> list[Path]:
        """Write derived files (a scan sheet's CSV and PDF), each atomically replacing an older
        one, in one pass: every file's data durable first, then the renames in the order given
        (a reader of the last one finds the others as new), then each folder flushed once."""
        temps: list[Path] = []
        try:
            for relative, data in files:
                path, fd = self.new_temp_file(suffix=relative.suffix)
                temps.append(path)
                with open(fd, "wb") as out:
                    out.write(data)
                    if self.fsync:
                        os.fdatasync(out.fileno())
                self.make_private(path, self.file_mode)
            for temp, (relative, _) in zip(temps, files):
                self._make_parents(posixpath.dirname(str(relative)))
                os.replace(temp, self.path_of(relative))
            self.make_entries_durable([str(relative) for relative, _ in files])
        except OSError as exc:
            for temp in temps:
                temp.unlink(missing_ok=True)
            raise storage_error(exc, f"cannot write {', '.join(str(relative) for relative, _ in files)}") from None
        return [self.path_of(relative) for relative, _ in files]

    def make_private(self, path: Path | str, mode: int) -> None:
        """Give a created file or folder its exact mode (whatever the umask) and the group."""
        if self.gid is not None:
            os.chown(path, -1, self.gid)
        os.chmod(path, mode)

    def _link_unique(self, temp: Path | str, relative: str) -> str:
        folder, name = posixpath.split(relative)
        dot = name.rfind(".")
        stem, suffix = (name[:dot], name[dot:]) if 0 < dot < len(name) - 1 else (name, "")  # as PurePath's
        candidate = relative
        for attempt in range(1, 10_000):
            try:
                os.link(temp, self._text_path(candidate))
                if attempt > 1:
                    log.warning("file name %s was taken; stored as %s", relative, candidate)
                return candidate
            except FileExistsError:
                candidate = posixpath.join(folder, f"{stem}_{attempt}{suffix}")
        raise OSError(errno.EEXIST, f"no free name for {relative}")

    def remove(self, relative: str | PurePosixPath) -> None:
        """Remove a stored file and any folders it leaves empty (up to the root)."""
        path = self.absolute(relative)
        root, _ = self._locate(relative)
        path.unlink(missing_ok=True)
        parent = path.parent
        while parent != root and root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def usage(self, area: str | None = None) -> tuple[int, int]:
        """(bytes used, bytes free) on the volume of an area (default: the home area)."""
        stats = os.statvfs(self.area_roots[area or self.home])
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


def _load_syncfs() -> Callable[[int], int] | None:
    """libc's syncfs(fd), or None where there is none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        return None
    syncfs.argtypes, syncfs.restype = [ctypes.c_int], ctypes.c_int
    return syncfs


_syncfs = _load_syncfs()


def _flush_volume_of(folder: Path) -> None:
    """Write out everything on the volume holding `folder` (syncfs); raise OSError on failure."""
    assert _syncfs is not None  # BlobStore refuses flush: volume without it
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error), str(folder))
    finally:
        os.close(fd)


def remove_if_there(path: Path | str) -> None:
    """Remove a file; one that is not there is fine."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_path(path: Path | str, data_only: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        (os.fdatasync if data_only else os.fsync)(fd)
    finally:
        os.close(fd)


def _flush_and_close(fd: int) -> None:
    try:
        os.fdatasync(fd)
    except OSError as exc:
        raise storage_error(exc, "cannot make the received file durable") from None
    finally:
        os.close(fd)


# Flushes wait on the disk, not the CPU: a few threads serve every association of the process.
_flushers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="flush")
