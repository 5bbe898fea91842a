"""Refuse a PDU longer than the maximum we announced, before any of it is read into memory.

pynetdicom's DUL reads each PDU whole: its 6-byte header, then as many bytes as the header says
into one bytearray.  A peer ignoring our maximum PDU length could so make us hold a 1 GB PDU in
memory.  We look at the length in each header: a P-DATA-TF longer than our maximum (any other
PDU: longer than 1 MiB or our maximum, whichever is more) aborts the association, logged.
"""

from __future__ import annotations

import logging
import struct

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">BBL")  # PDU type, reserved, length of the rest
_PDU_TYPES = range(0x01, 0x08)
_P_DATA_TF = 0x04
_OTHER_PDU_LIMIT = 1 << 20  # A-ASSOCIATE-RQ with 128 contexts of many syntaxes stays well below
# A-ABORT: source 2 (service provider), reason 6 (invalid PDU parameter value).
_A_ABORT_INVALID_PDU_PARAMETER = bytes([0x07, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x02, 0x06])


def pdu_length_limit(pdu_type: int, max_pdu: int) -> int | None:
    """The longest PDU of `pdu_type` we accept with our maximum `max_pdu` (None: no limit)."""
    if max_pdu <= 0:
        return None
    return max_pdu if pdu_type == _P_DATA_TF else max(max_pdu, _OTHER_PDU_LIMIT)


def abort_for_oversized_pdu(assoc, raw_socket, length: int, limit: int) -> None:
    """Log the refusal and send the peer an A-ABORT (the caller then drops the connection)."""
    log.warning("aborting the association from %s: it sent a PDU of %d bytes, more than the %d we accept",
                assoc.requestor.address, length, limit)
    try:
        raw_socket.sendall(_A_ABORT_INVALID_PDU_PARAMETER)
    except OSError:
        pass


def refuse_oversized_pdus(assoc, max_pdu: int) -> None:
    """Abort `assoc` when the peer sends a PDU longer than `max_pdu` (0: no limit), for the PDUs
    pynetdicom's own DUL reads (pacsd.net.event_reactor checks those it reads itself)."""
    assoc_socket = getattr(assoc.dul, "socket", None)
    if max_pdu <= 0 or assoc_socket is None:
        return
    receive = assoc_socket.recv
    pending: list[tuple[int, int]] = []  # (type, length) of a header whose body is read next

    def recv_within_limit(nr_bytes: int) -> bytearray:
        if not pending:  # the DUL reads a header
            data = receive(nr_bytes)
            if nr_bytes == _HEADER.size and len(data) == _HEADER.size:
                pdu_type, _, length = _HEADER.unpack(data)
                if pdu_type in _PDU_TYPES:
                    pending.append((pdu_type, length))
            return data
        pdu_type, length = pending.pop()
        limit = pdu_length_limit(pdu_type, max_pdu)
        if length <= limit:
            return receive(nr_bytes)
        abort_for_oversized_pdu(assoc, assoc_socket.socket, length, limit)
        return bytearray()  # a short read: the DUL closes the connection (A-P-ABORT)

    assoc_socket.recv = recv_within_limit
