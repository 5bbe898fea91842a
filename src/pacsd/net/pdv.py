"""DIMSE messages framed as P-DATA-TF PDUs (PS3.8 9.3.5 and Annex E), as bytes to write.

For the messages pacsd writes itself, bypassing pynetdicom's per-message objects (C-FIND Pending
responses, C-STORE responses): a command set and an optional dataset, already encoded.
"""

from __future__ import annotations

import struct

P_DATA_TF = 0x04
PDU_HEADER = struct.Struct(">BBL")  # PDU type, reserved, PDU length
PDV_HEADER = struct.Struct(">LBB")  # item length, presentation context ID, message control header
# Message control header (PS3.8 E.2): bit 0 command/dataset, bit 1 last fragment.
COMMAND, LAST_COMMAND, DATASET, LAST_DATASET = 0x01, 0x03, 0x00, 0x02


def message_pdus(context_id: int, command: bytes, dataset: bytes | None, max_pdu: int) -> bytes:
    """A DIMSE message as P-DATA-TF PDUs: one PDU holding the command (and the dataset) when it
    fits in the peer's maximum PDU length (0: no limit), fragments of at most that length otherwise."""
    whole = PDV_HEADER.size + len(command) + (0 if dataset is None else PDV_HEADER.size + len(dataset))
    if not max_pdu or whole <= max_pdu:
        parts = [PDU_HEADER.pack(P_DATA_TF, 0, whole), PDV_HEADER.pack(len(command) + 2, context_id, LAST_COMMAND),
                 command]
        if dataset is not None:
            parts += [PDV_HEADER.pack(len(dataset) + 2, context_id, LAST_DATASET), dataset]
        return b"".join(parts)
    pdus = _fragments(context_id, command, max_pdu, COMMAND, LAST_COMMAND)
    if dataset is not None:
        pdus += _fragments(context_id, dataset, max_pdu, DATASET, LAST_DATASET)
    return pdus


def _fragments(context_id: int, data: bytes, max_pdu: int, more: int, last: int) -> bytes:
    size = max_pdu - PDV_HEADER.size
    pdus = []
    for start in range(0, max(len(data), 1), size):
        piece = data[start:start + size]
        flag = last if start + size >= len(data) else more
        pdus += [PDU_HEADER.pack(P_DATA_TF, 0, len(piece) + PDV_HEADER.size),
                 PDV_HEADER.pack(len(piece) + 2, context_id, flag), piece]
    return b"".join(pdus)
