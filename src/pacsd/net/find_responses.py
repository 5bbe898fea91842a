"""Pending C-FIND responses written straight to the association's socket, many per write.

pynetdicom sends each response as its own message: a new command set built, validated and encoded
with pydicom, the identifier wrapped, the P-DATA primitive queued for the DUL thread, turned into
a PDU object and encoded, one socket write each, with a thread hand-off per answer.  For 100
answers that was most of the work of a C-FIND.  The Pending responses of one request all have
the same command set, so `PendingResponses` encodes it once (`pacsd.net.command_set`), frames each
identifier (already encoded by the query service) as a P-DATA-TF PDU itself (`pacsd.net.pdv`),
and writes the PDUs in batches (small at first, so the peer starts reading early).  The final
response is pynetdicom's message, sent after the last batch has been written, so it cannot
overtake a Pending one; a final Success is written as bytes from here too (`finish`).

Writing from the association thread is safe because nothing else writes on the association while
a C-FIND is answered: DIMSE without asynchronous operations gives the peer nothing to send but a
C-CANCEL (which the DUL thread reads and files, writing nothing), and pynetdicom's own messages
for this association are queued by the thread that runs this handler.
"""

from __future__ import annotations

import zlib

from pynetdicom.dimse_primitives import C_FIND

from pacsd.net.command_set import find_response
from pacsd.net.pdv import message_pdus

PENDING, SUCCESS = 0xFF00, 0x0000
# PDUs are written once this much has been framed (and at the end): a small first batch lets the
# peer start on the answers while the rest are built, later batches double up to the largest.
FIRST_BATCH_BYTES, LARGEST_BATCH_BYTES = 4 * 1024, 64 * 1024


class PendingResponses:
    """The Pending responses to one C-FIND request, framed and written by this object."""

    def __init__(self, assoc, request: C_FIND, context_id: int, deflated: bool = False) -> None:
        self.assoc = assoc
        self.context_id = context_id
        self.deflated = deflated
        self.max_pdu = assoc.dimse.maximum_pdu_size  # the peer's maximum PDU length (0: no limit)
        self.request = request
        self.command = pending_command_set(request)
        self.sent = 0
        self._batch = bytearray()
        self._batch_limit = FIRST_BATCH_BYTES

    def add(self, identifier: bytes) -> bool:
        """Frame one answer (an identifier in the context's transfer syntax, not yet deflated);
        False once the association has ended, so the caller can stop."""
        if self.deflated:
            identifier = deflate(identifier)
        self._batch += message_pdus(self.context_id, self.command, identifier, self.max_pdu)
        self.sent += 1
        if len(self._batch) >= self._batch_limit:
            self.flush()
            self._batch_limit = min(2 * self._batch_limit, LARGEST_BATCH_BYTES)
        return self.assoc.is_established

    def flush(self) -> None:
        """Write what has been framed (pynetdicom's socket raises Evt17 if the write fails)."""
        if self._batch and self.assoc.is_established:
            self.assoc.dul.socket.send(bytes(self._batch))
        self._batch.clear()

    def finish(self) -> None:
        """Write what is left, and let the final Success pynetdicom sends next go out as bytes
        from here too (pynetdicom would build, validate and encode it with pydicom).  One-shot:
        any other message (a Cancel status) is passed to pynetdicom, which then has it back."""
        self.flush()
        dimse = self.assoc.dimse
        send_msg = dimse.send_msg
        final = find_response(self.request.MessageID, str(self.request.AffectedSOPClassUID), SUCCESS,
                              identifier=False)

        def send(primitive, context_id: int) -> None:
            dimse.send_msg = send_msg
            if (isinstance(primitive, C_FIND) and primitive.Status == SUCCESS and primitive.Identifier is None
                    and context_id == self.context_id
                    and primitive.MessageIDBeingRespondedTo == self.request.MessageID):
                if self.assoc.is_established:
                    self.assoc.dul.socket.send(message_pdus(context_id, final, None, self.max_pdu))
                return
            send_msg(primitive, context_id)

        dimse.send_msg = send


def pending_command_set(request: C_FIND) -> bytes:
    """The encoded command set of a Pending C-FIND-RSP to `request` (Implicit VR Little Endian,
    with its group length, as pynetdicom writes it)."""
    return find_response(request.MessageID, str(request.AffectedSOPClassUID), PENDING, identifier=True)


def deflate(data: bytes) -> bytes:
    """Deflated Explicit VR Little Endian's dataset: the encoding deflated with no zlib header
    (PS3.5 A.5), as pynetdicom and pydicom write it."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()
