"""The File Meta Information (PS3.10 7.1) of a received dataset, written as bytes.

The same elements and values pynetdicom writes for a C-STORE dataset it receives into a file
(`create_file_meta` + `write_file_meta_info`): preamble, 'DICM', group length, version, media
storage SOP class and instance, transfer syntax, implementation class UID and version name.
"""

from __future__ import annotations

import struct

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

PREAMBLE = b"\0" * 128 + b"DICM"
_SHORT = struct.Struct("<HH2sH")  # group, element, VR, 2-byte length
_LONG = struct.Struct("<HH2sHL")  # group, element, VR, reserved, 4-byte length


def file_meta_bytes(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str) -> bytes:
    """Preamble, prefix and group 0002 (Explicit VR Little Endian) for one received dataset."""
    group = b"".join((
        _LONG.pack(0x0002, 0x0001, b"OB", 0, 2) + b"\0\x01",
        _element(0x0002, "UI", sop_class_uid),
        _element(0x0003, "UI", sop_instance_uid),
        _element(0x0010, "UI", transfer_syntax),
        _IMPLEMENTATION,
    ))
    return PREAMBLE + _SHORT.pack(0x0002, 0x0000, b"UL", 4) + struct.pack("<L", len(group)) + group


def _element(element: int, vr: str, text: str) -> bytes:
    value = text.encode("ascii", "replace")
    if len(value) % 2:
        value += b"\0" if vr == "UI" else b" "
    return _SHORT.pack(0x0002, element, vr.encode(), len(value)) + value


_IMPLEMENTATION = (_element(0x0012, "UI", str(PYNETDICOM_IMPLEMENTATION_UID))  # the same in every file
                   + _element(0x0013, "SH", PYNETDICOM_IMPLEMENTATION_VERSION))
