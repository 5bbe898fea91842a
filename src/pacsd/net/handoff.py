"""Connections handed from the accepting parent to a receiving process (SCM_RIGHTS).

The parent accepts each TCP connection and sends its descriptor, with the peer's address and
whether the archive is already at `server.max_associations`, over a Unix SOCK_SEQPACKET socket
to the receiving process with the fewest open associations.  The receiving process answers one
byte per connection that has closed, so the parent's counts stay true.

`HandedOffServer` is the receiving side: a pynetdicom association server whose "listening
socket" is that Unix socket, so pynetdicom's own accept loop (`serve_forever`) serves handed-off
connections exactly as it would accepted ones.
"""

from __future__ import annotations

import json
import logging
import socket

from pacsd.net.listener import ListenerServer

log = logging.getLogger(__name__)

CLOSED = b"-"  # receiving process -> parent: one of my connections closed
_MAX_MESSAGE = 512


def handoff_pair() -> tuple[socket.socket, socket.socket]:
    """(parent's end, receiving process's end)."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def hand_over(channel: socket.socket, conn: socket.socket, address: tuple, over_limit: bool) -> None:
    """Send `conn` to the receiving process at the other end of `channel` (the caller closes
    its own copy afterwards).  Raises OSError if the process is gone."""
    message = json.dumps([address[0], address[1], over_limit]).encode()
    socket.send_fds(channel, [message], [conn.fileno()])


class HandedOffSocket(socket.socket):
    """A connection received from the parent; `over_limit`: refuse its association (the
    archive has `server.max_associations` open already)."""

    over_limit = False


def receive_connection(channel: socket.socket) -> tuple[HandedOffSocket, tuple[str, int]]:
    """The next handed-off connection; OSError when the parent closed the channel."""
    message, fds, _flags, _ = socket.recv_fds(channel, _MAX_MESSAGE, 4)
    if not fds:
        raise OSError("the accepting process closed the hand-off channel")
    for extra in fds[1:]:
        socket.close(extra)
    conn = HandedOffSocket(fileno=fds[0])
    host, port, over_limit = json.loads(message)
    conn.over_limit = bool(over_limit)
    return conn, (host, port)


def server_class_for(channel: socket.socket, listening_address: tuple) -> type[ListenerServer]:
    """A `HandedOffServer` class bound to `channel` (pynetdicom instantiates the class itself)."""
    return type("BoundHandedOffServer", (HandedOffServer,), {"channel": channel,
                                                             "listening_address": listening_address})


class HandedOffServer(ListenerServer):
    """Serves the connections handed over `channel` instead of accepting on a port."""

    channel: socket.socket
    listening_address: tuple

    def server_bind(self) -> None:
        self.socket.close()  # the TCP socket socketserver made: never bound
        self.socket = self.channel
        self.server_address = self.listening_address

    def server_activate(self) -> None:
        pass  # the parent listens

    def get_request(self):
        return receive_connection(self.socket)

    def server_close(self) -> None:
        try:
            self.socket.close()
        except OSError:
            pass


def report_closed(channel: socket.socket) -> None:
    """Tell the parent one connection of this process closed (never raises)."""
    try:
        channel.send(CLOSED)
    except OSError:
        pass
