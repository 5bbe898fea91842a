"""Socket settings for every DICOM connection we make or accept.

TCP_NODELAY: we write each PDU in one piece, so Nagle's algorithm only delays our responses.
TCP_QUICKACK after every read: a peer that leaves Nagle on (DCMTK's default) sends a small
command PDU and holds back the dataset PDU until it is acknowledged; with Linux's delayed ACKs
that costs ~40 ms per image.  Linux clears QUICKACK by itself, so it is set again on each read.
"""

from __future__ import annotations

import socket

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def tune_association_socket(assoc) -> None:
    """Set TCP_NODELAY, and TCP_QUICKACK after each read, on an association's socket."""
    assoc_socket = getattr(assoc.dul, "socket", None)
    raw = getattr(assoc_socket, "socket", None)
    if raw is None:
        return
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        return
    if _QUICKACK is None:
        return
    receive = assoc_socket.recv

    def recv_and_ack_now(nr_bytes: int) -> bytearray:
        data = receive(nr_bytes)
        quick_ack(raw)
        return data

    assoc_socket.recv = recv_and_ack_now


def bound_reads(assoc, seconds: float) -> None:
    """Let no read on the association's socket wait longer than `seconds` for data: a peer
    that stops sending in the middle of a PDU ends its association (the read fails, the
    connection is closed) instead of holding it, and its slot, for as long as it likes."""
    raw = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if raw is not None:
        try:
            raw.settimeout(seconds)
        except OSError:
            pass


def quick_ack(raw: socket.socket) -> None:
    """Acknowledge what was read at once (see above); call after reading from `raw`."""
    if _QUICKACK is None:
        return
    try:
        raw.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
    except OSError:
        pass
