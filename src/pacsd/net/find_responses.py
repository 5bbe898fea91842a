"""Pending C-FIND responses sent cheaply: identifiers encoded by the query service, and one
command set encoded per request.

pynetdicom builds, validates and encodes a new command set (a pydicom Dataset, twice) for every
response, and encodes each identifier with pydicom: most of the cost of a 100-answer C-FIND.
The Pending responses of one request have the same command set, so its bytes are made once (by
pynetdicom) and reused; an `EncodedIdentifier` is sent as the bytes it carries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pydicom.dataset import Dataset
from pynetdicom import service_class
from pynetdicom.dimse_messages import C_FIND_RSP
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.dsutils import encode
from pynetdicom.pdu_primitives import P_DATA

_PENDING = (0xFF00, 0xFF01)
_PDV_HEADER = 6  # item length (4) + presentation context ID (1) + message control header (1)


class EncodedIdentifier(Dataset):
    """A C-FIND answer already encoded in the presentation context's transfer syntax."""

    def __init__(self, encoded: bytes) -> None:
        super().__init__()
        self.encoded = encoded


def send_encoded_identifiers() -> None:
    """Make pynetdicom's service classes send an EncodedIdentifier's bytes as they are
    (process-wide; idempotent; any other dataset is encoded as before)."""
    original = service_class.encode
    if getattr(original, "passes_encoded_identifiers", False):
        return

    def encode_unless_encoded(dataset, *args, **kwargs):
        if isinstance(dataset, EncodedIdentifier):
            return dataset.encoded
        return original(dataset, *args, **kwargs)

    encode_unless_encoded.passes_encoded_identifiers = True  # type: ignore[attr-defined]
    service_class.encode = encode_unless_encoded


def reuse_pending_command_sets(assoc) -> Callable[[], None]:
    """Send the Pending C-FIND responses of `assoc` with cached command sets until the returned
    function is called.  Other messages go through pynetdicom unchanged.  (EVT_DIMSE_SENT is
    not triggered for the cached ones: nothing binds it on a Query/Retrieve association.)"""
    dimse = assoc.dimse
    send_msg = dimse.send_msg
    command_sets: dict[tuple, bytes] = {}

    def send(primitive, context_id: int) -> None:
        if not (isinstance(primitive, C_FIND) and primitive.Status in _PENDING
                and primitive.MessageIDBeingRespondedTo is not None and primitive.Identifier is not None):
            send_msg(primitive, context_id)
            return
        key = (context_id, primitive.MessageIDBeingRespondedTo, primitive.AffectedSOPClassUID, primitive.Status)
        command = command_sets.get(key)
        if command is None:
            message = C_FIND_RSP()
            message.primitive_to_message(primitive)
            command = command_sets[key] = encode(message.command_set, True, True)
        for pdata in p_data(context_id, command, primitive.Identifier.getvalue(), dimse.maximum_pdu_size):
            dimse.dul.send_pdu(pdata)

    dimse.send_msg = send
    return lambda: setattr(dimse, "send_msg", send_msg)


def p_data(context_id: int, command: bytes, dataset: bytes, max_pdu: int) -> Iterator[P_DATA]:
    """A DIMSE message as P-DATA primitives (PS3.8 E.2): one PDU holding the command and the
    dataset when both fit in the peer's maximum PDU, fragments of at most that size otherwise."""
    if not max_pdu or len(command) + len(dataset) + 2 * _PDV_HEADER <= max_pdu:
        pdata = P_DATA()
        pdata.presentation_data_value_list = [[context_id, b"\x03" + command], [context_id, b"\x02" + dataset]]
        yield pdata
        return
    yield from _fragments(context_id, command, max_pdu, more=b"\x01", last=b"\x03")
    yield from _fragments(context_id, dataset, max_pdu, more=b"\x00", last=b"\x02")


def _fragments(context_id: int, data: bytes, max_pdu: int, more: bytes, last: bytes) -> Iterator[P_DATA]:
    size = max_pdu - _PDV_HEADER
    for start in range(0, len(data), size):
        pdata = P_DATA()
        flag = last if start + size >= len(data) else more
        pdata.presentation_data_value_list = [[context_id, flag + data[start:start + size]]]
        yield pdata
