"""Shorter polling in pynetdicom's reactor loops.

pynetdicom's DUL thread and association thread each poll with `time.sleep(0.001)` when idle,
so every C-STORE waits for up to three such naps (last PDU seen, message picked up, response
sent): about 2 ms per image, more than the rest of a small image's work.  We cap both sleeps at
`POLL_INTERVAL`.  The price is CPU while an association sits idle (a few % per association).
"""

from __future__ import annotations

import time as _time

from pynetdicom import association as _association

POLL_INTERVAL = 0.0002


class _CappedSleepTime:
    """Stands in for the `time` module inside pynetdicom.association: sleeps are capped."""

    def __getattr__(self, name: str):
        return getattr(_time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        _time.sleep(min(seconds, POLL_INTERVAL))


def shorten_association_polling() -> None:
    """Cap the association reactor's sleeps (process-wide; idempotent)."""
    _association.time = _CappedSleepTime()  # type: ignore[assignment]


def shorten_dul_polling(assoc) -> None:
    """Cap the DUL reactor's sleep of one association."""
    assoc.dul._run_loop_delay = POLL_INTERVAL


def wait_until_sent(assoc, timeout: float = 30.0) -> None:
    """Block while the association still has messages waiting to go out.

    pynetdicom's DUL thread sends a queued message in preference to reading the socket, so a
    handler that yields answers faster than they are sent keeps it from ever reading a C-CANCEL
    (and queues every answer in memory).  Yielding the next answer only once the queue has
    drained lets the peer's requests in between answers.
    """
    queue = assoc.dul.to_provider_queue
    deadline = _time.monotonic() + timeout
    while queue.qsize() and assoc.is_established and _time.monotonic() < deadline:
        _time.sleep(POLL_INTERVAL)
