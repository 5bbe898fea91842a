"""The connection log: one line per association, written when its connection closes.

Line: time, process id (the file's format adds both), calling AE, called AE, peer, how the
association ended (result=, below), instances stored and failed, bytes stored, duration, and a
reason when there is one.  It has its own logger (`pacsd.connections`) so it can go to its own file.

result=released | aborted-by-peer (an A-ABORT, or the connection dropped without a release) |
aborted-by-us | timed-out (nothing came within acse_timeout / network_timeout) | rejected (with
the A-ASSOCIATE-RJ reason) | closed-by-peer (closed before asking for an association).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from pynetdicom.pdu_primitives import A_ABORT, A_ASSOCIATE, A_P_ABORT, A_RELEASE

log = logging.getLogger("pacsd.connections")

OPEN, ACCEPTED = "open", "accepted"  # while the connection lasts; every other result is final
RELEASED, REJECTED, TIMED_OUT = "released", "rejected", "timed-out"
ABORTED_BY_PEER, ABORTED_BY_US, CLOSED_BY_PEER = "aborted-by-peer", "aborted-by-us", "closed-by-peer"


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

    def end(self, result: str, reason: str = "") -> None:
        """Record how the association ended; the first ending recorded stands."""
        if self.result in (OPEN, ACCEPTED):
            self.result = result
            self.reason = self.reason or reason

    def line(self) -> str:
        duration = time.monotonic() - self.started
        reason = f" reason={self.reason!r}" if self.reason else ""
        return (
            f"calling={self.calling_aet} called={self.called_aet} peer={self.peer} "
            f"result={self.result} stored={self.stored} failed={self.failed} "
            f"bytes={self.bytes} duration={duration:.3f}s{reason}"
        )


def _accepted(stats: AssociationStats, assoc) -> None:
    """Accepted; when no presentation context was, say which were refused (the peer can only abort)."""
    if stats.result == OPEN:
        stats.result = ACCEPTED
    if not assoc.accepted_contexts:
        refused = sorted({str(cx.abstract_syntax) for cx in assoc.rejected_contexts})
        stats.reason = "no presentation context accepted; refused: " + " ".join(refused)


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

    def sent(self, assoc, primitive) -> None:
        """An ACSE primitive we sent, noted before the connection can close: our acceptance (with
        the refused SOP classes when none was accepted), our rejection with its reason, our
        release answer, or our abort (a timeout when the idle timer ran out)."""
        stats = self.get(assoc)
        if stats is None:
            return
        if isinstance(primitive, A_ASSOCIATE) and primitive.result == 0x00:
            _accepted(stats, assoc)
        elif isinstance(primitive, A_ASSOCIATE) and primitive.result in (0x01, 0x02):
            stats.end(REJECTED, primitive.reason_str.lower())
        elif isinstance(primitive, A_RELEASE) and primitive.result is not None:
            stats.end(RELEASED)
        elif isinstance(primitive, (A_ABORT, A_P_ABORT)):
            if assoc.dul.idle_timer_expired():
                stats.end(TIMED_OUT, "nothing received for network_timeout")
            else:
                stats.end(ABORTED_BY_US)

    def closed(self, assoc, result_if_open: str | None = None, acse_timeout: float = 0) -> AssociationStats | None:
        """Log the association's line and forget it; its stats, or None if it was closed already.

        An ending not recorded yet is the peer's doing: an accepted association whose connection
        closes without a release was aborted by the peer; a connection closed before any
        association request by us only when acse_timeout ran out, otherwise by the peer."""
        with self._lock:
            stats = self._active.pop(id(assoc), None)
        if stats is None:
            return None
        if stats.result == ACCEPTED:
            stats.end(ABORTED_BY_PEER)
        elif result_if_open is not None:
            stats.end(result_if_open)
        elif time.monotonic() - stats.started >= acse_timeout:
            stats.end(TIMED_OUT, "no association request within acse_timeout")
        else:
            stats.end(CLOSED_BY_PEER)
        log.info(stats.line())
        return stats

    def active(self) -> list[AssociationStats]:
        with self._lock:
            return list(self._active.values())
