"""A pause of pynetdicom's association reactor that cannot be raced, for associations pacsd requests.

pynetdicom 3.0.4's `send_c_store` clears the reactor's checkpoint and waits for `_is_paused`; but
the reactor sets `_is_paused` just before its `wait()` and clears it just after, so a sender can see
it paused while it is about to run one more loop, in which it takes the C-STORE response off the
queue as an "unexpected C-STORE service message": the sender then waits for nothing until its DIMSE
timeout (seen a few times per thousand stores to DCMTK storescp on a loaded machine).  Here
`clear()` returns only once the reactor is parked in `wait()`.  The only pynetdicom names used are
checked first; without them nothing is changed.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

PARK_WAIT = 0.5  # seconds `clear()` waits for the reactor to park (it parks within a loop: ~1 ms)


class ParkingCheckpoint:
    """Stands in for the association's `_reactor_checkpoint` (a threading.Event)."""

    def __init__(self) -> None:
        self._state = threading.Condition()
        self._open = True
        self._parked = False

    def is_set(self) -> bool:
        return self._open

    def set(self) -> None:
        with self._state:
            self._open = True
            self._state.notify_all()

    def clear(self) -> None:
        """Close the checkpoint and return once the reactor waits at it (or after PARK_WAIT, when
        no reactor runs any more: the association ended)."""
        with self._state:
            self._open = False
            self._state.wait_for(lambda: self._parked, PARK_WAIT)

    def wait(self, timeout: float | None = None) -> bool:
        with self._state:
            while not self._open:
                self._parked = True
                self._state.notify_all()
                if not self._state.wait(timeout):
                    break
            self._parked = False
            return self._open


def pause_safely(assoc) -> bool:
    """Give an established association pacsd requested the unraceable checkpoint; False (and
    nothing changed) when this pynetdicom lacks what it relies on."""
    current = getattr(assoc, "_reactor_checkpoint", None)
    if not isinstance(current, threading.Event) or not hasattr(assoc, "_is_paused"):
        log.warning("pynetdicom's association has no _reactor_checkpoint Event: its reactor pause is left as is")
        return False
    checkpoint = ParkingCheckpoint()
    if not current.is_set():
        checkpoint._open = False
    assoc._reactor_checkpoint = checkpoint
    return True
