"""DIMSE command sets (PS3.7 9.3, E.1) read and written without pydicom: always Implicit VR
Little Endian, a handful of elements of known VR, so a dict of tag -> value bytes serves.

Used by the C-STORE fast path (`pacsd.net.store_reader`) and the C-FIND responses pacsd writes
itself (`pacsd.net.find_responses`); pynetdicom decodes and encodes everything else.
"""

from __future__ import annotations

import struct
import textwrap

COMMAND_GROUP_LENGTH = 0x00000000
AFFECTED_SOP_CLASS_UID = 0x00000002
COMMAND_FIELD = 0x00000100
MESSAGE_ID = 0x00000110
MESSAGE_ID_BEING_RESPONDED_TO = 0x00000120
COMMAND_DATA_SET_TYPE = 0x00000800
STATUS = 0x00000900
ERROR_COMMENT = 0x00000902
AFFECTED_SOP_INSTANCE_UID = 0x00001000

C_STORE_RQ, C_STORE_RSP, C_FIND_RSP = 0x0001, 0x8001, 0x8020
NO_DATA_SET, DATA_SET = 0x0101, 0x0001
_ELEMENT = struct.Struct("<HHL")  # group, element, value length
_US = struct.Struct("<H")


def shorten_comment(reason: str) -> str:
    """An Error Comment (0000,0902; LO: at most 64 characters of the default character set) from
    a reason: cut after a whole word with "..." when longer, never in the middle of one."""
    text = " ".join(reason.encode("ascii", "replace").decode("ascii").split())
    if len(text) <= 64:
        return text
    shortened = textwrap.shorten(text, 64, placeholder=" ...")
    return shortened if shortened != "..." else text[:61] + "..."  # one word longer than the field


class InvalidCommandSet(ValueError):
    """The bytes are not an Implicit VR Little Endian command set."""


def parse(data: bytes) -> dict[int, bytes]:
    """The elements of an encoded command set, by tag (values as sent, padding included)."""
    elements, offset, size = {}, 0, len(data)
    while offset < size:
        if offset + 8 > size:
            raise InvalidCommandSet("an element header runs past the end of the command set")
        group, element, length = _ELEMENT.unpack_from(data, offset)
        offset += 8
        if group != 0x0000 or offset + length > size:
            raise InvalidCommandSet(f"element ({group:04X},{element:04X}) does not fit in a command set")
        elements[(group << 16) | element] = bytes(data[offset:offset + length])
        offset += length
    return elements


def us(elements: dict[int, bytes], tag: int) -> int | None:
    """An unsigned short element's value (None when absent or not 2 bytes)."""
    value = elements.get(tag)
    return _US.unpack(value)[0] if value is not None and len(value) == 2 else None


def ui(elements: dict[int, bytes], tag: int) -> str:
    """A UID element's value, without its padding ('' when absent)."""
    return elements.get(tag, b"").decode("ascii", "replace").rstrip("\0 ")


def encode(elements: list[tuple[int, bytes]]) -> bytes:
    """A command set of (tag, value bytes) in tag order, with its group length first."""
    body = b"".join(_ELEMENT.pack(0x0000, tag & 0xFFFF, len(value)) + value for tag, value in sorted(elements))
    return _ELEMENT.pack(0x0000, 0x0000, 4) + struct.pack("<L", len(body)) + body


def response(command_field: int, message_id: int, sop_class_uid: str, status: int,
             sop_instance_uid: str = "", data_set: bool = False, error_comment: str = "") -> bytes:
    """The command set of a DIMSE-C response, as pynetdicom encodes it."""
    elements = [
        (AFFECTED_SOP_CLASS_UID, _padded_uid(sop_class_uid)),
        (COMMAND_FIELD, _US.pack(command_field)),
        (MESSAGE_ID_BEING_RESPONDED_TO, _US.pack(message_id)),
        (COMMAND_DATA_SET_TYPE, _US.pack(DATA_SET if data_set else NO_DATA_SET)),
        (STATUS, _US.pack(status)),
    ]
    if sop_instance_uid:
        elements.append((AFFECTED_SOP_INSTANCE_UID, _padded_uid(sop_instance_uid)))
    if error_comment:
        elements.append((ERROR_COMMENT, _padded_text(shorten_comment(error_comment))))
    return encode(elements)


def store_response(message_id: int, sop_class_uid: str, sop_instance_uid: str, status: int,
                   error_comment: str = "") -> bytes:
    """The command set of a C-STORE-RSP (PS3.7 9.3.1.2)."""
    return response(C_STORE_RSP, message_id, sop_class_uid, status, sop_instance_uid,
                    error_comment=error_comment)


def find_response(message_id: int, sop_class_uid: str, status: int, identifier: bool) -> bytes:
    """The command set of a C-FIND-RSP (PS3.7 9.1.2.2): Pending ones carry an identifier."""
    return response(C_FIND_RSP, message_id, sop_class_uid, status, data_set=identifier)


def _padded_uid(uid: str) -> bytes:
    value = uid.encode("ascii", "replace")
    return value + b"\0" if len(value) % 2 else value


def _padded_text(text: str) -> bytes:
    value = text.encode("ascii", "replace")
    return value + b" " if len(value) % 2 else value
