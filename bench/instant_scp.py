"""A DICOM peer that takes no time: it answers a client with bytes recorded from a real server.

`record()` runs a client command through a recording proxy in front of a server and keeps, for
each PDU the client sent, what the server sent back before the client's next PDU.  `InstantScp`
then plays that back to the same command: it reads each PDU and at once writes what followed it.
`bench/find.py` runs findscu against it to measure the floor of any C-FIND on this machine:
findscu's own start, its side of the association and its reading of the answers, with the
server's part at zero.  (Replaying is exact because the command sends the same bytes each time:
same AE titles, presentation contexts and identifier.)
"""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Sequence

HOST = "127.0.0.1"
_HEADER = struct.Struct(">BBL")
_RELEASE_RQ, _ABORT = 0x05, 0x07


def _read_pdu(sock: socket.socket) -> bytes:
    """One whole PDU, header included; b'' once the peer has closed."""
    header = _read_exactly(sock, _HEADER.size)
    if not header:
        return b""
    _, _, length = _HEADER.unpack(header)
    body = _read_exactly(sock, length)
    return header + body if len(body) == length else b""


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return b""
        data += chunk
    return bytes(data)


def _listener() -> socket.socket:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, 0))
    listener.listen(8)
    return listener


def _connected(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def record(command: Callable[[int], Sequence[str]], server_port: int, env: dict | None = None) -> list[bytes]:
    """What the server on `server_port` sent after each PDU of one run of `command(port)`."""
    listener = _listener()
    replies: list[bytearray] = []
    with listener:
        client_run = threading.Thread(target=subprocess.run, args=(list(command(listener.getsockname()[1])),),
                                      kwargs={"capture_output": True, "env": env, "timeout": 60})
        client_run.start()
        listener.settimeout(60)  # the command never connecting is an error, not a hang
        client, _ = listener.accept()
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server = _connected(server_port)

    def server_to_client() -> None:
        while data := server.recv(65536):
            replies[-1] += data  # the server only answers: all of it follows the latest PDU
            client.sendall(data)

    pump = threading.Thread(target=server_to_client)
    with client, server:
        started = False
        while pdu := _read_pdu(client):
            replies.append(bytearray())
            server.sendall(pdu)
            if not started:
                pump.start()
                started = True
            if pdu[0] in (_RELEASE_RQ, _ABORT):
                break
        pump.join(timeout=30)
    client_run.join(timeout=60)
    return [bytes(reply) for reply in replies]


class InstantScp:
    """Plays `replies` back to each connection: after the n-th PDU read, the n-th reply."""

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = replies
        self._listener = _listener()
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "InstantScp":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._listener.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for reply in self.replies:
                    if not _read_pdu(conn):
                        break
                    if reply:
                        conn.sendall(reply)
