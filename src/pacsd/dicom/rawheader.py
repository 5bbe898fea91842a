"""The receive path's fast header parse: one pass over a mapped Part 10 file, no pydicom reader.

`parse(data, size)` reads the preamble and 'DICM', group 0002 (explicit VR little endian) and the
dataset up to the top-level pixel data, for Explicit VR Little Endian (and the encapsulated
syntaxes pydicom reads as such) and Implicit VR Little Endian.  It returns the raw elements (a
pydicom Dataset of `RawDataElement`s, which pydicom converts lazily on access, carrying the first
value of each top-level string element for `header.first_text`) and the DICOM JSON text
`ingest.header_json` would write for the same file.  From the pixel data on it only walks
element headers (`_ElementWalker`), proving every declared length fits: a truncated file raises
`InvalidDicom`, as the pydicom path does.

It returns None, and the caller takes the pydicom path, for anything unusual: big endian,
deflated or private transfer syntaxes, a Specific Character Set other than none, ISO_IR 6,
ISO_IR 192 or a single-byte ISO_IR 1xx set, escape sequences in text, VR UN or an ambiguous VR,
private elements in implicit VR (pydicom looks their VR up by private creator), undefined
lengths other than sequences, values that do not convert cleanly (odd byte counts for binary
numbers, IS/DS that are not finite numbers, undecodable UTF-8), nested structure that does not
add up, and pydicom settings that change how values are converted.  When in doubt: None.
"""

from __future__ import annotations

import base64
import codecs
import json
import math
import re
import struct
from dataclasses import dataclass
from typing import Any

from pydicom import config as pydicom_config
from pydicom.charset import python_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    PrivateTransferSyntaxes,
)

from pacsd.dicom.header import (
    FIRST_TEXTS,
    MULTI_VALUED,
    _ITEM,
    _ITEM_END,
    _LONG_VRS,
    _PIXEL_TAGS,
    _SEQUENCE_END,
    _UNDEFINED,
    _ElementWalker,
)
from pacsd.errors import InvalidDicom

BULK_DATA_THRESHOLD = 1024  # as ingest's: pydicom inlines a value up to (threshold // 4) * 3 bytes
_INLINE_LIMIT = (BULK_DATA_THRESHOLD // 4) * 3
_CHARSET_TAG = 0x00080005
_DEFAULT_CODEC = python_encoding[""]

# Character sets whose text decodes with one Python codec, named as pydicom names it.
_CHARSETS = {
    name: python_encoding[name]
    for name in ("ISO_IR 6", "ISO_IR 100", "ISO_IR 101", "ISO_IR 109", "ISO_IR 110", "ISO_IR 126",
                 "ISO_IR 127", "ISO_IR 138", "ISO_IR 144", "ISO_IR 148", "ISO_IR 192")
}
_CHARSETS[""] = _DEFAULT_CODEC

_NUMBERS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
_BINARY = {"OB", "OD", "OF", "OL", "OV", "OW"}
_CHARSET_TEXT = {"SH", "LO", "UC"}  # split at backslashes, decoded with the character set
_CHARSET_SINGLE = {"ST", "LT", "UT"}  # one value, decoded with the character set
_PLAIN = {"AS", "CS", "DA", "DT", "TM"}  # split, decoded with the default character set
_KNOWN_VRS = (_CHARSET_TEXT | _CHARSET_SINGLE | _PLAIN | _BINARY | set(_NUMBERS)
              | {"AE", "AT", "DS", "IS", "PN", "SQ", "UI", "UR"})
_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*\Z")
_DECIMAL = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*\Z")
_U16, _U32 = struct.Struct("<H"), struct.Struct("<I")
_SHORT_HEADER = struct.Struct("<HH2sH")  # group, element, VR, 16-bit length
_VR_NAMES = {vr.encode(): vr for vr in _KNOWN_VRS}  # VR bytes as written -> name; UN and others absent
_STRING_VRS = _CHARSET_TEXT | _CHARSET_SINGLE | _PLAIN | {"AE", "PN", "UI", "UR"}  # not IS/DS: numbers in JSON


class _Unusual(Exception):
    """Something the fast path does not handle: the caller takes the pydicom path."""


@dataclass(frozen=True)
class RawHeader:
    dataset: Dataset  # raw elements; pydicom converts each on first access
    transfer_syntax: str
    header_json: str  # what ingest.header_json(dataset) writes


def parse(data: Any, size: int) -> RawHeader | None:
    """Parse a mapped Part 10 file (`data`, `size` bytes); None when the pydicom path must do it.

    Raises InvalidDicom when the file is truncated (a declared length runs past its end)."""
    if not _settings_are_default() or size < 132 or data[128:132] != b"DICM":
        return None
    try:
        return _Parser(data, size).run()
    except _Unusual:
        return None


def _settings_are_default() -> bool:
    c = pydicom_config
    return (not c.datetime_conversion and not c.use_DS_numpy and not c.use_IS_numpy
            and not c.use_DS_decimal and not c.use_none_as_empty_text_VR_value
            and c.replace_un_with_known_vr)


class _Parser:
    def __init__(self, data: Any, size: int) -> None:
        self.data, self.size = data, size
        self.implicit = False
        self.codec = _DEFAULT_CODEC
        self.text_before_charset = False
        self.first_texts: dict[int, str | None] = {}  # top-level string elements (see first_text)
        self.multi_valued: set[int] = set()  # those of them holding several values

    def need(self, start: int, count: int) -> int:
        """The position after `count` bytes from `start`, which must lie in the file."""
        if start + count > self.size:
            raise InvalidDicom(
                f"the file is truncated: {count} bytes needed at byte {start}, "
                f"only {self.size - start} remain"
            )
        return start + count

    def run(self) -> RawHeader:
        meta, position, syntax = self.meta(132)
        if not syntax or syntax in (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian) \
                or syntax in PrivateTransferSyntaxes:
            raise _Unusual
        self.implicit = syntax == ImplicitVRLittleEndian
        raw, as_json, stop = self.elements(position, self.size, top=True)
        if stop < self.size:  # pixel data: element headers only from here, proof the file is whole
            _ElementWalker(self.data, self.size, implicit=self.implicit, little=True).walk_dataset(stop)
        file_meta = FileMetaDataset(meta)
        file_meta.set_original_encoding(False, True, _DEFAULT_CODEC)
        dataset = Dataset(raw)  # not a FileDataset: nothing reads its file attributes, 30 us less
        dataset.file_meta = file_meta
        dataset.set_original_encoding(self.implicit, True, dataset._character_set)
        dataset.__dict__[FIRST_TEXTS] = self.first_texts
        dataset.__dict__[MULTI_VALUED] = self.multi_valued
        text = json.dumps({key: as_json[key] for key in sorted(as_json)}, separators=(",", ":"),
                          ensure_ascii=False)
        return RawHeader(dataset, syntax, text)

    def meta(self, position: int) -> tuple[dict, int, str]:
        """Group 0002 as raw elements, where the dataset starts, and the Transfer Syntax UID."""
        raw, syntax, data = {}, "", self.data
        while position + 4 <= self.size and _U16.unpack_from(data, position)[0] == 2:
            tag, vr, length, at = self.element_header(position)
            if vr is None or length == _UNDEFINED:
                raise _Unusual
            position = self.need(at, length)
            value = bytes(data[at:position])
            raw[BaseTag(tag)] = RawDataElement(BaseTag(tag), vr, length, value, at, False, True)
            if tag == 0x00020010:
                syntax = value.decode("ascii", "replace").strip("\x00 ")
        return raw, position, syntax

    def element_header(self, position: int) -> tuple[int, str | None, int, int]:
        """(tag, VR as written or None, length, where the value starts) of the element at `position`."""
        data = self.data
        if position + 12 > self.size:  # near the end: byte by byte, for the exact truncation message
            return self._element_header_near_end(position)
        group, element, vr_bytes, length = _SHORT_HEADER.unpack_from(data, position)
        tag = group << 16 | element
        if self.implicit or group == 0xFFFE:
            return tag, None, _U32.unpack_from(data, position + 4)[0], position + 8
        if vr_bytes in _LONG_VRS:
            return tag, _VR_NAMES.get(vr_bytes), _U32.unpack_from(data, position + 8)[0], position + 12
        return tag, _VR_NAMES.get(vr_bytes), length, position + 8

    def _element_header_near_end(self, position: int) -> tuple[int, str | None, int, int]:
        data = self.data
        at = self.need(position, 4)
        tag = (_U16.unpack_from(data, position)[0] << 16) | _U16.unpack_from(data, position + 2)[0]
        if self.implicit or tag >> 16 == 0xFFFE:
            return tag, None, _U32.unpack_from(data, self.need(at, 4) - 4)[0], at + 4
        self.need(at, 2)
        vr_bytes = bytes(data[at : at + 2])
        if vr_bytes in _LONG_VRS:
            start = self.need(at, 8)
            return tag, _VR_NAMES.get(vr_bytes), _U32.unpack_from(data, at + 4)[0], start
        start = self.need(at, 4)
        return tag, _VR_NAMES.get(vr_bytes), _U16.unpack_from(data, at + 2)[0], start

    def elements(self, position: int, end: int | None, top: bool = False) -> tuple[dict, dict, int]:
        """The elements from `position` to `end` (None: to an item delimiter), as raw elements
        and as DICOM JSON, and where they stop: the end, after the delimiter, or (at the top
        level) where the pixel data starts."""
        raw: dict = {}
        as_json: dict = {}
        while end is None or position < end:
            element_start = position
            tag, vr, length, at = self.element_header(position)
            if top and tag in _PIXEL_TAGS:
                return raw, as_json, element_start
            if end is None and tag == _ITEM_END:
                return raw, as_json, at
            if tag >> 16 == 0xFFFE:
                raise _Unusual
            vr = self.vr_of(tag, vr)
            if vr == "SQ":
                items, position, value = self.sequence(at, length)
                as_json[f"{tag:08X}"] = {"vr": "SQ", "Value": items}
            else:
                if length == _UNDEFINED:
                    raise _Unusual
                position = self.need(at, length)
                value = bytes(self.data[at:position])
                if tag == _CHARSET_TAG:
                    self.charset(value, top)
                as_json[f"{tag:08X}"] = self.json_of(tag, vr, value)
            if top:  # items stay raw bytes in their sequence's element: pydicom reads them on access
                key = BaseTag(tag)
                raw[key] = RawDataElement(key, None if self.implicit else vr, length, value, at, self.implicit, True)
                if vr in _STRING_VRS:
                    element = as_json[f"{tag:08X}"]
                    self.first_texts[tag] = _first_string(element)
                    if len(element.get("Value", ())) > 1:
                        self.multi_valued.add(tag)
        if position != end:
            raise _Unusual  # an element ran past the end of its item
        return raw, as_json, position

    def vr_of(self, tag: int, written: str | None) -> str:
        if not self.implicit:
            if written not in _KNOWN_VRS:
                raise _Unusual  # UN (pydicom may replace it), or not a VR at all
            return written
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            if tag >> 16 & 1 and 0x0010 <= tag & 0xFFFF <= 0x00FF:
                return "LO"  # a private creator, as pydicom reads it
            if not tag >> 16 & 1 and tag & 0xFFFF == 0:
                return "UL"  # a group length
            raise _Unusual from None
        if vr not in _KNOWN_VRS:
            raise _Unusual  # ambiguous (US or SS, OB or OW ...), or UN
        return vr

    def charset(self, value: bytes, top: bool) -> None:
        name = value.decode(_DEFAULT_CODEC).rstrip(" \x00").strip()
        codec = _CHARSETS.get(name)
        if codec is None or not top:
            raise _Unusual
        try:
            codecs.lookup(codec)
        except LookupError:
            raise _Unusual from None
        if self.text_before_charset and codecs.lookup(codec) != codecs.lookup(self.codec):
            raise _Unusual
        self.codec = codec

    def sequence(self, position: int, length: int) -> tuple[list, int, bytes]:
        """A sequence's items as DICOM JSON, where it ends, and its raw value (items only)."""
        items = []
        end = None if length == _UNDEFINED else self.need(position, length)
        start = position
        while end is None or position < end:
            tag, _, item_length, at = self.element_header(position)
            if end is None and tag == _SEQUENCE_END:
                return items, at, bytes(self.data[start:position])
            if tag != _ITEM:
                if end is None:
                    raise InvalidDicom(f"unexpected tag {tag:08X} inside an undefined-length value")
                raise _Unusual
            item_end = None if item_length == _UNDEFINED else self.need(at, item_length)
            _, item_json, position = self.elements(at, item_end)
            items.append(item_json)
        if position != end:
            raise _Unusual
        return items, position, bytes(self.data[start:position])

    def text(self, value: bytes) -> str:
        if self.codec == _DEFAULT_CODEC:
            self.text_before_charset = True
        if b"\x1b" in value:
            raise _Unusual  # escape sequences: pydicom's multi-charset decoding
        try:
            return value.decode(self.codec)
        except UnicodeError:
            raise _Unusual from None

    def json_of(self, tag: int, vr: str, value: bytes) -> dict[str, Any]:
        """What pydicom's DataElement.to_json_dict gives for a non-sequence element."""
        if not value:
            return {"vr": vr}
        if vr in _BINARY:
            if len(value) > _INLINE_LIMIT:
                return {"vr": vr, "BulkDataURI": f"bulkdata/{tag:08X}"}  # ingest's handler
            return {"vr": vr, "InlineBinary": base64.b64encode(value).decode("ascii")}
        if vr in _NUMBERS:
            code = _NUMBERS[vr]
            count, rest = divmod(len(value), struct.calcsize("<" + code))
            if rest:
                raise _Unusual
            return {"vr": vr, "Value": list(struct.unpack(f"<{count}{code}", value))}
        if vr == "AT":
            if len(value) % 4:
                raise _Unusual
            pairs = struct.unpack(f"<{len(value) // 2}H", value)
            return {"vr": vr, "Value": [f"{pairs[i]:04X}{pairs[i + 1]:04X}" for i in range(0, len(pairs), 2)]}
        if vr == "PN":
            names = self.text(value.rstrip(b"\x00 ")).split("\\")
            if len(names) == 1 and not names[0]:
                return {"vr": vr}
            return {"vr": vr, "Value": [dict(zip(("Alphabetic", "Ideographic", "Phonetic"), n.split("=")))
                                        for n in names]}
        if vr in _CHARSET_SINGLE:
            values = [self.text(value).rstrip("\x00 ")]
        elif vr in _CHARSET_TEXT:
            values = [v.rstrip("\x00 ") for v in self.text(value).split("\\")]
        else:
            values = _plain_values(vr, value.decode(_DEFAULT_CODEC))
        if len(values) == 1 and values[0] == "":
            return {"vr": vr}
        if vr == "IS":
            values = [_number(v, _INTEGER, int) for v in values]
        elif vr == "DS":
            values = [_number(v, _DECIMAL, float) for v in values]
        return {"vr": vr, "Value": values}


def _first_string(element: dict) -> str | None:
    """The first value of a string element's DICOM JSON as pydicom's str() of it gives it (None:
    the element is empty).  PN: the groups joined again by '='."""
    values = element.get("Value")
    if not values:
        return None
    first = values[0]
    return "=".join(first.values()) if isinstance(first, dict) else first


def _plain_values(vr: str, text: str) -> list[str]:
    """Values of VRs pydicom decodes with the default character set, split as pydicom does."""
    if vr == "AE":
        return [v.strip() for v in text.split("\\")]
    if vr == "UR":
        return [text.rstrip()]
    if vr == "UI":
        text = text.rstrip("\x00 ")
    elif vr == "DS":
        text = text.strip()
    return text.rstrip(" \x00").split("\\")


def _number(text: str, pattern: re.Pattern, kind: type) -> int | float:
    """An IS or DS value as pydicom's JSON has it; anything but a plain finite number is unusual."""
    if not pattern.match(text):
        raise _Unusual
    number = kind(text)
    if kind is float and not math.isfinite(number):
        raise _Unusual
    return number
