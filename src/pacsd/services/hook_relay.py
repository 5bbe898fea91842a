"""`on_instance` hooks run by the background process, not by the receiving process that stored
the instance.

The accepting parent makes one datagram socket pair before it starts its children: receiving
processes send each stored instance's hook values down one end (JSON, one datagram each, never
blocking), the background process reads the other end and runs the hooks on its workers.  The
pair is anonymous (nothing else can write to it) and outlives a restarted background process,
whose successor reads what waited.  When a datagram cannot be sent (the background process's
queue is full, or the socket broke) the receiving process runs that hook itself, as a single
process does.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

MAX_DATAGRAM = 1 << 16  # bytes: hook values are sanitised paths, UIDs and names, far below this


def relay_pair() -> tuple[socket.socket, socket.socket]:
    """(the receiving processes' end, the background process's end)."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)


def sender(sock: socket.socket) -> Callable[[dict[str, str]], bool]:
    """What a receiving process's HookRunner calls: True once the values are on their way."""

    def relay(values: dict[str, str]) -> bool:
        data = json.dumps(values).encode()
        if len(data) > MAX_DATAGRAM:
            return False
        try:
            sock.send(data, socket.MSG_DONTWAIT)
        except OSError:
            return False  # full or gone: run it here
        return True

    return relay


class RelayListener:
    """The background process's side: a thread handing each datagram's values to `run`."""

    def __init__(self, sock: socket.socket, run: Callable[[dict[str, str]], None]) -> None:
        self.sock = sock
        self.run = run
        self._thread = threading.Thread(target=self._loop, name="hook-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                data = self.sock.recv(MAX_DATAGRAM)
            except OSError:
                return
            try:
                values = json.loads(data)
                if not isinstance(values, dict):
                    raise ValueError("not an object")
                self.run({str(k): str(v) for k, v in values.items()})
            except Exception:  # noqa: BLE001 - one bad datagram never stops the others
                log.exception("on_instance hook from a receiving process could not be queued")
