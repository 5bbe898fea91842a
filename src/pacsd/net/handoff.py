"""Connections handed from the accepting parent to a receiving process (SCM_RIGHTS).

The parent accepts each TCP connection and sends its descriptor, with a number for it, the
peer's address and whether the archive is already at `server.max_associations`, over a Unix
SOCK_SEQPACKET socket to the receiving process with the fewest open associations.  The
receiving process tells the parent when a connection's association is accepted (`NEGOTIATED`)
and when the connection closes (`CLOSED`), so the parent's counts stay true.

`HandedOffServer` is the receiving side: a pynetdicom association server whose "listening
socket" is that Unix socket, so pynetdicom's own accept loop (`serve_forever`) serves handed-off
connections exactly as it would accepted ones.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl

from pacsd.net.listener import ListenerServer

log = logging.getLogger(__name__)

CLOSED = b"-"  # receiving process -> parent: connection N closed ("-N")
NEGOTIATED = b"+"  # receiving process -> parent: connection N's association was accepted ("+N")
_MAX_MESSAGE = 512


def handoff_pair() -> tuple[socket.socket, socket.socket]:
    """(parent's end, receiving process's end)."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def hand_over(channel: socket.socket, conn: socket.socket, number: int, address: tuple, over_limit: bool,
              tls: bool = False) -> None:
    """Send `conn` (the parent's connection `number`, accepted on the TLS port when `tls`) to the
    receiving process at the other end of `channel` (the caller closes its own copy afterwards).
    Raises OSError if it is gone."""
    message = json.dumps([number, address[0], address[1], over_limit, tls]).encode()
    socket.send_fds(channel, [message], [conn.fileno()])


class HandedOffSocket(socket.socket):
    """A connection received from the parent (its `number` there); `over_limit`: refuse its
    association (the archive has `server.max_associations` open already)."""

    number = 0
    over_limit = False


class HandedOffTlsSocket(ssl.SSLSocket):
    """The same, for a connection accepted on the TLS port (made by `SSLContext.wrap_socket`)."""

    number = 0
    over_limit = False


def receive_connection(channel: socket.socket, tls_context: ssl.SSLContext | None = None,
                       handshake_timeout: float = 30.0):
    """The next handed-off connection and its peer's address; OSError when the parent closed the
    channel.  A TLS connection is wrapped in `tls_context`; its handshake happens on the first
    read, in the association's own thread (a slow client never holds up the next connection),
    each read bounded by `handshake_timeout`."""
    message, fds, _flags, _ = socket.recv_fds(channel, _MAX_MESSAGE, 4)
    if not fds:
        raise OSError("the accepting process closed the hand-off channel")
    for extra in fds[1:]:
        socket.close(extra)
    conn = HandedOffSocket(fileno=fds[0])
    number, host, port, over_limit, tls = json.loads(message)
    if tls:
        if tls_context is None:
            conn.close()
            report(channel, CLOSED, int(number))
            raise OSError("a TLS connection, but this process has no TLS context")
        conn.settimeout(handshake_timeout)
        tls_context.sslsocket_class = HandedOffTlsSocket
        conn = tls_context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
    conn.number, conn.over_limit = int(number), bool(over_limit)
    return conn, (host, port)


def server_class_for(channel: socket.socket, listening_address: tuple, tls_context: ssl.SSLContext | None = None,
                     handshake_timeout: float = 30.0) -> type[ListenerServer]:
    """A `HandedOffServer` class bound to `channel` (pynetdicom instantiates the class itself)."""
    return type("BoundHandedOffServer", (HandedOffServer,), {
        "channel": channel, "listening_address": listening_address, "tls_context": tls_context,
        "handshake_timeout": handshake_timeout})


class HandedOffServer(ListenerServer):
    """Serves the connections handed over `channel` instead of accepting on a port."""

    channel: socket.socket
    listening_address: tuple
    tls_context: ssl.SSLContext | None = None
    handshake_timeout: float = 30.0

    def server_bind(self) -> None:
        self.socket.close()  # the TCP socket socketserver made: never bound
        self.socket = self.channel
        self.server_address = self.listening_address

    def server_activate(self) -> None:
        pass  # the parent listens

    def get_request(self):
        return receive_connection(self.socket, self.tls_context, self.handshake_timeout)

    def server_close(self) -> None:
        try:
            self.socket.close()
        except OSError:
            pass


def report(channel: socket.socket, what: bytes, number: int) -> None:
    """Tell the parent (never raises) that its connection `number`'s association was accepted
    (NEGOTIATED) or that the connection closed (CLOSED)."""
    if not number:
        return
    try:
        channel.send(what + str(number).encode())
    except OSError:
        pass


def parse_report(message: bytes) -> tuple[bytes, int] | None:
    """(NEGOTIATED or CLOSED, connection number) of a report, None for anything else."""
    kind, digits = message[:1], message[1:]
    if kind in (NEGOTIATED, CLOSED) and digits.isdigit():
        return kind, int(digits)
    return None
