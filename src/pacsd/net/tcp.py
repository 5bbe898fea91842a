"""Socket settings for every DICOM connection we make or accept.

TCP_NODELAY: a peer with Nagle's algorithm on (DCMTK's default) plus our delayed ACKs would
stall ~40 ms per small response; each PDU is written in one piece, so Nagle buys nothing.
"""

from __future__ import annotations

import socket


def enable_nodelay(assoc) -> None:
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
