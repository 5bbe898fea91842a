"""Live associations of every receiving process, for the web process's status page and metrics.

Each receiving process of a multi-process server writes what its `ConnectionTracker` holds to
a small JSON file of its own (`<folder>/<pid>.json`, replaced atomically, at most every
`interval` seconds and only when something changed); the web process reads the files of the
processes still alive.  The folder is the server's own (named after the accepting parent's
pid), so files left by an earlier run are never read, and are removed at the next start.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from dataclasses import asdict, fields
from pathlib import Path

from pacsd.net.connlog import AssociationStats, ConnectionTracker

log = logging.getLogger(__name__)

PUBLISH_INTERVAL = 0.5  # seconds
_FIELDS = {f.name for f in fields(AssociationStats)}


def board_folder(storage: Path, parent_pid: int) -> Path:
    return Path(storage) / ".pacsd" / "associations" / str(parent_pid)


def clear_old_boards(storage: Path, parent_pid: int) -> None:
    """Remove the folders of earlier runs (the parent calls this before starting children)."""
    root = Path(storage) / ".pacsd" / "associations"
    if root.is_dir():
        for folder in root.iterdir():
            if folder.name != str(parent_pid):
                shutil.rmtree(folder, ignore_errors=True)


class BoardPublisher:
    """A receiving process's side: a thread that writes the tracker's live associations."""

    def __init__(self, tracker: ConnectionTracker, folder: Path, interval: float = PUBLISH_INTERVAL) -> None:
        self.tracker = tracker
        self.folder = folder
        self.interval = interval
        self._path = folder / f"{os.getpid()}.json"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="association-board", daemon=True)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._path.unlink(missing_ok=True)

    def _run(self) -> None:
        last = None
        while not self._stop.wait(self.interval):
            snapshot = [asdict(stats) for stats in self.tracker.active()]
            if snapshot == last:
                continue
            try:
                temp = self._path.with_suffix(".tmp")
                temp.write_text(json.dumps(snapshot))
                os.replace(temp, self._path)
                last = snapshot
            except OSError as exc:
                log.warning("cannot publish live associations: %s", exc)


class BoardReader:
    """The web process's side: the live associations of every receiving process (quacks like a
    ConnectionTracker for `pacsd.web.ui.activity`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def active(self) -> list[AssociationStats]:
        found: list[AssociationStats] = []
        try:
            paths = list(self.folder.glob("*.json"))
        except OSError:
            return found
        for path in paths:
            if not _alive(int(path.stem)):
                continue
            try:
                entries = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # replaced or removed while we read: the next reading has it
            found += [AssociationStats(**{k: v for k, v in entry.items() if k in _FIELDS}) for entry in entries]
        return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
