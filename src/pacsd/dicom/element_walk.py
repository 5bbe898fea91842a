"""A DICOM dataset's bytes as elements: the tags and lengths that structure it, and a walker that
jumps from element header to element header over a mapped file (proof that the file is whole).
Shared by `pacsd.dicom.header` (pydicom's reader) and `pacsd.dicom.rawheader` (the fast parser).
"""

from __future__ import annotations

import mmap
import struct

from pacsd.errors import InvalidDicom

# Top-level elements at which the header ends: pixel data in all its forms.
PIXEL_TAGS = {0x7FE00008, 0x7FE00009, 0x7FE00010}
# Explicit VRs whose length field is 4 bytes (after 2 reserved bytes).
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD

FIRST_TEXTS = "_pacsd_first_texts"  # a Dataset attribute: {tag: first value or None (empty)}
MULTI_VALUED = "_pacsd_multi_valued"  # with it: the tags of those elements holding several values


class ElementWalker:
    """Reads element headers from a mapped file (or its bytes), jumping over values: proof that it is whole."""

    def __init__(self, data: bytes | mmap.mmap, size: int, implicit: bool, little: bool) -> None:
        self.data, self.size, self.implicit = data, size, implicit
        self.u16, self.u32 = struct.Struct(("<" if little else ">") + "H"), struct.Struct(
            ("<" if little else ">") + "I"
        )
        self.position = 0

    def _need(self, count: int) -> int:
        start = self.position
        if start + count > self.size:
            raise InvalidDicom(
                f"the file is truncated: {count} bytes needed at byte {start}, "
                f"only {self.size - start} remain"
            )
        self.position = start + count
        return start

    def _tag(self) -> int:
        at = self._need(4)
        return (self.u16.unpack_from(self.data, at)[0] << 16) | self.u16.unpack_from(self.data, at + 2)[0]

    def _element_header(self, tag: int) -> tuple[int, bytes | None]:
        if self.implicit or tag >> 16 == 0xFFFE:
            return self.u32.unpack_from(self.data, self._need(4))[0], None
        at = self._need(2)
        vr = self.data[at : at + 2]
        if vr in LONG_VRS:
            return self.u32.unpack_from(self.data, self._need(6) + 2)[0], vr
        return self.u16.unpack_from(self.data, self._need(2))[0], vr

    def walk_meta(self, start: int) -> str:
        """Walk group 0002 from `start`; return the Transfer Syntax UID it declares."""
        self.position, syntax = start, ""
        while self.position + 4 <= self.size and self.u16.unpack_from(self.data, self.position)[0] == 2:
            tag = self._tag()
            length, _ = self._element_header(tag)
            if length == UNDEFINED:
                raise InvalidDicom("undefined length in the file meta information")
            at = self._need(length)
            if tag == 0x00020010:
                syntax = bytes(self.data[at : at + length]).decode("ascii", "replace").strip("\x00 ")
        return syntax

    def walk_dataset(self, start: int) -> int:
        """Walk the top-level dataset to the end; return where pixel data starts (or the end)."""
        self.position, pixel_offset = start, None
        while self.position < self.size:
            element_start = self.position
            tag = self._tag()
            if pixel_offset is None and tag in PIXEL_TAGS:
                pixel_offset = element_start
            self._skip_value(tag)
        return self.size if pixel_offset is None else pixel_offset

    def _skip_value(self, tag: int) -> None:
        length, vr = self._element_header(tag)
        if length != UNDEFINED:
            self._need(length)
        elif vr == b"UN":  # PS3.5 6.2.2: an undefined-length UN value is implicit VR inside
            implicit, self.implicit = self.implicit, True
            try:
                self._walk_items()
            finally:
                self.implicit = implicit
        else:
            self._walk_items()

    def _walk_items(self) -> None:
        """An undefined-length value (sequence or encapsulated pixel data), item by item."""
        while True:
            tag = self._tag()
            length = self.u32.unpack_from(self.data, self._need(4))[0]
            if tag == SEQUENCE_END:
                return
            if tag != ITEM:
                raise InvalidDicom(f"unexpected tag {tag:08X} inside an undefined-length value")
            if length != UNDEFINED:
                self._need(length)
                continue
            while (tag := self._tag()) != ITEM_END:  # an undefined-length item: its elements
                self._skip_value(tag)
            self._need(4)
