"""Shorter polling in pynetdicom's reactor loops.

pynetdicom's DUL thread and association thread each poll with `time.sleep(0.001)` when idle,
so every C-STORE waits for up to three such naps (last PDU seen, message picked up, response
sent): about 2 ms per image, more than the rest of a small image's work.  We cap both sleeps at
`POLL_INTERVAL`.  An association given a wake-up (`wake_association_on`, as the event-driven
reactor does) instead sleeps in its reactor loop until something arrives for it.
"""

from __future__ import annotations

import sys
import threading
import time as _time

from pynetdicom import association as _association

POLL_INTERVAL = 0.0002
IDLE_WAIT = 0.05  # seconds a woken association's reactor sleeps at most (its timers are checked then)
_REACTOR_LOOP = _association.Association._run_reactor.__code__


class _CappedSleepTime:
    """Stands in for the `time` module inside pynetdicom.association: sleeps are capped."""

    def __getattr__(self, name: str):
        return getattr(_time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        wakeup = getattr(threading.current_thread(), "_pacsd_wakeup", None)
        if wakeup is not None and sys._getframe(1).f_code is _REACTOR_LOOP:
            wakeup.wait(IDLE_WAIT)
            wakeup.clear()  # before the loop looks: a later wake-up is not lost
            return
        _time.sleep(min(seconds, POLL_INTERVAL))


class _WakingCheckpoint(threading.Event):
    """The reactor's pause checkpoint: clearing it (to pause the reactor) wakes the reactor, so
    it reaches the pause point at once instead of after its idle wait."""

    def __init__(self, wakeup: threading.Event) -> None:
        super().__init__()
        self._wakeup = wakeup

    def clear(self) -> None:
        super().clear()
        self._wakeup.set()


def wake_association_on(assoc):
    """Let `assoc`'s reactor sleep until woken; returns the function that wakes it.

    Call before the association starts; its messages and release/abort queues must call the
    returned function when they receive something."""
    wakeup = threading.Event()
    assoc._pacsd_wakeup = wakeup  # the association object is its reactor's thread
    checkpoint = _WakingCheckpoint(wakeup)
    if assoc._reactor_checkpoint.is_set():
        checkpoint.set()
    assoc._reactor_checkpoint = checkpoint
    return wakeup.set


def shorten_association_polling() -> None:
    """Cap the association reactor's sleeps (process-wide; idempotent)."""
    _association.time = _CappedSleepTime()  # type: ignore[assignment]


def shorten_dul_polling(assoc) -> None:
    """Cap the DUL reactor's sleep of one association."""
    assoc.dul._run_loop_delay = POLL_INTERVAL
