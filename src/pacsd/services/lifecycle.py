"""The background job of storage over the years: the move rules every `storage.move_every`
seconds and the retention rules every `retention.every` seconds, in one thread of the background
process (niced), never on the receive path.  A stop request ends a run between two studies.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from pacsd.services.area_moves import run_moves
from pacsd.services.retention import run_retention

if TYPE_CHECKING:
    from pacsd.services.archive import Archive

log = logging.getLogger(__name__)

FIRST_RUN_AFTER = 30.0  # seconds after start: start-up work (resumed end-of-study) goes first


class StorageLifecycle:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        settings = archive.settings
        self.jobs = [(every, job) for every, job in ((settings.storage.move_every, self._moves),
                                                     (settings.retention.every, self._retention)) if every > 0]
        if not settings.storage.move_rules:
            self.jobs = [(every, job) for every, job in self.jobs if job != self._moves]
        if not settings.retention.rules:
            self.jobs = [(every, job) for every, job in self.jobs if job != self._retention]

    def start(self) -> None:
        if self.jobs and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pacsd-storage-lifecycle", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        due = [time.monotonic() + min(FIRST_RUN_AFTER, every) for every, _ in self.jobs]
        while not self.stop_event.wait(max(0.0, min(due) - time.monotonic())):
            for number, (every, job) in enumerate(self.jobs):
                if time.monotonic() >= due[number]:
                    try:
                        job()
                    except Exception:  # the next run tries again
                        log.exception("storage background job failed")
                    due[number] = time.monotonic() + every

    def _moves(self) -> None:
        run = run_moves(self.archive, stop=self.stop_event.is_set)
        if run.moved or run.failed:
            log.info("area moves: %d studies moved, %d failed", len(run.moved), len(run.failed))

    def _retention(self) -> None:
        run = run_retention(self.archive, stop=self.stop_event.is_set)
        if run.deleted or run.failed:
            log.info("retention: %d studies deleted, %d failed", len(run.deleted), len(run.failed))
