"""The connection log: one line per association, written when its connection closes.

Line: time, process id (the file's format adds both), calling AE, called AE, peer, result (accepted/rejected/aborted/released), instances
stored and failed, bytes stored, duration.  It has its own logger (`pacsd.connections`) so it
can go to its own file.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger("pacsd.connections")


@dataclass
class AssociationStats:
    peer: str
    started: float = field(default_factory=time.monotonic)
    calling_aet: str = "-"
    called_aet: str = "-"
    result: str = "open"
    reason: str = ""
    stored: int = 0
    failed: int = 0
    bytes: int = 0
    over_limit: bool = False  # handed over while the archive had max_associations open
    handoff_number: int = 0  # the accepting parent's number for the connection (0: accepted here)

    def line(self) -> str:
        duration = time.monotonic() - self.started
        reason = f" reason={self.reason!r}" if self.reason else ""
        return (
            f"calling={self.calling_aet} called={self.called_aet} peer={self.peer} "
            f"result={self.result} stored={self.stored} failed={self.failed} "
            f"bytes={self.bytes} duration={duration:.3f}s{reason}"
        )


class ConnectionTracker:
    """Per-association statistics, keyed by the association object (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[int, AssociationStats] = {}

    def opened(self, assoc, peer: str) -> AssociationStats:
        stats = AssociationStats(peer=peer)
        with self._lock:
            self._active[id(assoc)] = stats
        return stats

    def get(self, assoc) -> AssociationStats | None:
        with self._lock:
            return self._active.get(id(assoc))

    def closed(self, assoc) -> AssociationStats | None:
        """Log the association's line and forget it; its stats, or None if it was closed already."""
        with self._lock:
            stats = self._active.pop(id(assoc), None)
        if stats is not None:
            log.info(stats.line())
        return stats

    def active(self) -> list[AssociationStats]:
        with self._lock:
            return list(self._active.values())
