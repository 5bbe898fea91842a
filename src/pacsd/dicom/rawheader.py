"""The receive path's fast header parse: one pass over a mapped Part 10 file, no pydicom reader.

`parse(data, size)` reads the preamble and 'DICM', group 0002 (explicit VR little endian) and the
dataset up to the top-level pixel data, for Explicit VR Little Endian (and the encapsulated
syntaxes pydicom reads as such) and Implicit VR Little Endian.  It returns the raw elements (a
pydicom Dataset of `RawDataElement`s, which pydicom converts lazily on access, carrying the first
value of each top-level string element for `header.first_text`) and the DICOM JSON text
`ingest.header_json` would write for the same file.  From the pixel data on it only walks
element headers (`ElementWalker`), proving every declared length fits: a truncated file raises
`InvalidDicom`, as the pydicom path does.

The JSON is written as text while the elements are read: one writer per kind of VR
(`_MEMBER_WRITERS`) gives each element's member exactly as json.dumps would write pydicom's
to_json_dict of it, and the top-level members are joined in tag order (as `ingest.header_json`
iterates the Dataset), items' members in file order (as pydicom's to_json_dict of an item).
`data` may be any buffer; mapped files and bytes are read in place, others copied once.

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
import mmap
import re
import struct
from dataclasses import dataclass
from typing import Any

from pydicom import config as pydicom_config
from pydicom.charset import convert_encodings, default_encoding, python_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    PrivateTransferSyntaxes,
)

from pacsd.dicom.element_walk import (
    FIRST_TEXTS,
    ITEM,
    ITEM_END,
    LONG_VRS,
    MULTI_VALUED,
    PIXEL_TAGS,
    SEQUENCE_END,
    UNDEFINED,
    ElementWalker,
)
from pacsd.dicom.nesting import check_depth
from pacsd.dicom.quick_dataset import quick_dataset, quick_file_meta
from pacsd.errors import InvalidDicom

BULK_DATA_THRESHOLD = 1024  # as ingest's: pydicom inlines a value up to (threshold // 4) * 3 bytes
_INLINE_LIMIT = (BULK_DATA_THRESHOLD // 4) * 3
_CHARSET_TAG = 0x00080005
_DEFAULT_CODEC = python_encoding[""]


def _decoding_name(codec: str) -> str:
    """The codec's canonical name: bytes.decode goes straight to its C decoder for latin-1 and
    UTF-8 named so ('iso8859-1', 'utf-8'), instead of through the codec registry (8x slower)."""
    return codecs.lookup(codec).name


_DEFAULT_DECODING = _decoding_name(_DEFAULT_CODEC)

# Character sets whose text decodes with one Python codec, named as pydicom names it.
_CHARSETS = {
    name: python_encoding[name]
    for name in ("ISO_IR 6", "ISO_IR 100", "ISO_IR 101", "ISO_IR 109", "ISO_IR 110", "ISO_IR 126",
                 "ISO_IR 127", "ISO_IR 138", "ISO_IR 144", "ISO_IR 148", "ISO_IR 192")
}
_CHARSETS[""] = _DEFAULT_CODEC

_NUMBER_CODES = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
# VR -> (struct code, bytes per value, a struct for one value)
_NUMBERS = {vr: (code, struct.calcsize("<" + code), struct.Struct("<" + code)) for vr, code in _NUMBER_CODES.items()}
_BINARY = {"OB", "OD", "OF", "OL", "OV", "OW"}
_CHARSET_TEXT = {"SH", "LO", "UC"}  # split at backslashes, decoded with the character set
_CHARSET_SINGLE = {"ST", "LT", "UT"}  # one value, decoded with the character set
_PLAIN = {"AS", "CS", "DA", "DT", "TM"}  # split, decoded with the default character set
_KNOWN_VRS = (_CHARSET_TEXT | _CHARSET_SINGLE | _PLAIN | _BINARY | set(_NUMBERS)
              | {"AE", "AT", "DS", "IS", "PN", "SQ", "UI", "UR"})
_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*\Z")
_DECIMAL = re.compile(r" *[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? *\Z")  # PS3.5 6.2: space padding only
_DECIMAL_CHARACTERS = "0123456789+-.eE \\"  # plain DS values and their separator
_U16, _U32 = struct.Struct("<H"), struct.Struct("<I")
_SHORT_HEADER = struct.Struct("<HH2sH")  # group, element, VR, 16-bit length
_unpack_short_header, _unpack_u32 = _SHORT_HEADER.unpack_from, _U32.unpack_from
_VR_NAMES = {vr.encode(): vr for vr in _KNOWN_VRS}  # VR bytes as written -> name; UN and others absent
# Carried for first_text: the string VRs, and IS (InstanceNumber, SeriesNumber); not DS.
_FIRST_TEXT_VRS = _CHARSET_TEXT | _CHARSET_SINGLE | _PLAIN | {"AE", "PN", "UI", "UR", "IS"}

# The DICOM JSON is written as text, element by element, exactly as json.dumps(separators=(",", ":"),
# ensure_ascii=False) writes the objects pydicom's to_json_dict gives: faster than building them.
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_quoted = json.encoder.encode_basestring  # a JSON string, as that encoder writes it (C when available)
_NO_VALUE = '"%08X":{"vr":"%s"}'  # % (tag, VR): a member without values
_VALUES_HEAD = '"%08X":{"vr":"%s","Value":['  # % (tag, VR); the values as JSON and "]}" follow
# VR -> tag -> its _VALUES_HEAD: the same tags come in every image, and formatting the head again
# cost more than the values.  Bounded: a file of many private tags adds no more than this per VR.
_HEADS: dict[str, dict[int, str]] = {vr: {} for vr in _KNOWN_VRS}
_HEADS_PER_VR = 2048
# a person name of 1, 2 or 3 component groups, % the groups as JSON strings
_PN_OBJECTS = {1: '{"Alphabetic":%s}', 2: '{"Alphabetic":%s,"Ideographic":%s}',
               3: '{"Alphabetic":%s,"Ideographic":%s,"Phonetic":%s}'}
_new_tuple = tuple.__new__
# The members written lately, by tag, VR, value (and codec, for text in the character set): most
# elements repeat from image to image of a series (UIDs of the study and series, dates, names,
# pixel spacing ...), and looking one up costs a fraction of writing it.  Bounded: cleared when
# full, values longer than _WRITTEN_LONGEST never kept.
_SAME_TEXT_VRS = _PLAIN | _BINARY | set(_NUMBERS) | {"UI", "AE", "UR", "IS", "DS", "AT"}  # whatever the character set
_WRITTEN: dict[tuple, tuple[str, list[str]]] = {}
_WRITTEN_ENTRIES = 512
_WRITTEN_LONGEST = 80


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
    if not isinstance(data, bytes | mmap.mmap):  # a bytearray, a memoryview ...: slices must be bytes
        data = bytes(data[:size])
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
        self.decoding = _DEFAULT_DECODING  # the same codec, as text() names it
        self.text_before_charset = False
        self.charset_name: str | None = None  # the Specific Character Set as read (None: absent)
        self.first_texts: dict[int, str | None] = {}  # top-level string and IS elements (see first_text)
        self.multi_valued: set[int] = set()  # those of them holding several values
        self.depth = 0  # sequences open around the element being read

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
        raw, members, stop = self.elements(position, self.size, top=True)
        if stop < self.size:  # pixel data: element headers only from here, proof the file is whole
            ElementWalker(self.data, self.size, implicit=self.implicit, little=True).walk_dataset(stop)
        # not a FileDataset: nothing reads its file attributes, 30 us less
        dataset = quick_dataset(raw, self.implicit, self.character_set(), quick_file_meta(meta, _DEFAULT_CODEC))
        dataset.__dict__[FIRST_TEXTS] = self.first_texts
        dataset.__dict__[MULTI_VALUED] = self.multi_valued
        # ingest.header_json writes the top level in tag order (pydicom's Dataset iterates sorted);
        # items keep file order, as pydicom's to_json_dict of an item does.  Sorting the tags of a
        # valid file, already ascending, costs one pass.
        return RawHeader(dataset, syntax, _json_object(map(members.__getitem__, sorted(members))))

    def character_set(self) -> str | list[str]:
        """What pydicom's `Dataset._character_set` gives for the top-level dataset, without
        converting the raw element (the fast path reads one character set name at most)."""
        if self.charset_name is None:
            return default_encoding  # a top-level dataset's parent encoding
        return convert_encodings(self.charset_name)

    def meta(self, position: int) -> tuple[dict, int, str]:
        """Group 0002 as raw elements, where the dataset starts, and the Transfer Syntax UID."""
        raw, syntax, data = {}, "", self.data
        while position + 4 <= self.size and _U16.unpack_from(data, position)[0] == 2:
            tag, vr, length, at = self.element_header(position)
            if vr is None or length == UNDEFINED:
                raise _Unusual
            position = self.need(at, length)
            value = bytes(data[at:position])
            key = BaseTag(tag)
            raw[key] = _new_tuple(RawDataElement, (key, vr, length, value, at, False, True, True, False))  # see elements()
            if tag == 0x00020010:
                syntax = value.decode("ascii", "replace").strip("\x00 ")
        return raw, position, syntax

    def element_header(self, position: int) -> tuple[int, str | None, int, int]:
        """(tag, VR as written or None, length, where the value starts) of the element at `position`."""
        if position + 12 > self.size:  # near the end: byte by byte, for the exact truncation message
            return self._element_header_near_end(position)
        group, element, vr_bytes, length = _SHORT_HEADER.unpack_from(self.data, position)
        if self.implicit or group == 0xFFFE:
            return group << 16 | element, None, _U32.unpack_from(self.data, position + 4)[0], position + 8
        if vr_bytes in LONG_VRS:
            return (group << 16 | element, _VR_NAMES.get(vr_bytes), _U32.unpack_from(self.data, position + 8)[0],
                    position + 12)
        return group << 16 | element, _VR_NAMES.get(vr_bytes), length, position + 8

    def _element_header_near_end(self, position: int) -> tuple[int, str | None, int, int]:
        data = self.data
        at = self.need(position, 4)
        tag = (_U16.unpack_from(data, position)[0] << 16) | _U16.unpack_from(data, position + 2)[0]
        if self.implicit or tag >> 16 == 0xFFFE:
            return tag, None, _U32.unpack_from(data, self.need(at, 4) - 4)[0], at + 4
        self.need(at, 2)
        vr_bytes = bytes(data[at : at + 2])
        if vr_bytes in LONG_VRS:
            start = self.need(at, 8)
            return tag, _VR_NAMES.get(vr_bytes), _U32.unpack_from(data, at + 4)[0], start
        start = self.need(at, 4)
        return tag, _VR_NAMES.get(vr_bytes), _U16.unpack_from(data, at + 2)[0], start

    def elements(self, position: int, end: int | None, top: bool = False) -> tuple[dict, dict[int, str], int]:
        """The elements from `position` to `end` (None: to an item delimiter), as raw elements
        and as DICOM JSON members ('"GGGGEEEE":{...}' by tag), and where they stop: the end,
        after the delimiter, or (at the top level) where the pixel data starts."""
        raw: dict = {}
        members: dict[int, str] = {}
        values: list
        data, size, implicit = self.data, self.size, self.implicit
        while end is None or position < end:
            element_start = position
            if implicit or position + 12 > size:
                tag, vr, length, at = self.element_header(position)
            else:  # element_header's common case, inline: one call less per element
                group, element, vr_bytes, length = _unpack_short_header(data, position)
                tag = group << 16 | element
                if group == 0xFFFE:
                    vr, length, at = None, _unpack_u32(data, position + 4)[0], position + 8
                elif vr_bytes in LONG_VRS:
                    vr, length, at = _VR_NAMES.get(vr_bytes), _unpack_u32(data, position + 8)[0], position + 12
                else:
                    vr, at = _VR_NAMES.get(vr_bytes), position + 8
            if top and tag in PIXEL_TAGS:
                return raw, members, element_start
            if end is None and tag == ITEM_END:
                return raw, members, at
            if tag >> 16 == 0xFFFE:
                raise _Unusual
            if vr is None:  # implicit VR, or one the fast path does not read (UN ...)
                vr = self.vr_of(tag)
            if vr == "SQ":
                items, position, value = self.sequence(at, length)
                member, values = _values_member(tag, "SQ", ",".join(items)), []
            else:
                if length == UNDEFINED:
                    raise _Unusual
                position = at + length
                if position > size:
                    self.need(at, length)  # raises: the file is truncated
                value = data[at:position]  # bytes: parse() made sure slices are
                if tag == _CHARSET_TAG:
                    self.charset(value, top)
                if not value:
                    member, values = _NO_VALUE % (tag, vr), []
                elif len(value) <= _WRITTEN_LONGEST:
                    # text in the character set: the codec is part of the key, and what text()
                    # notes about text decoded before any character set is noted on a hit too
                    seen = (tag, vr, value) if vr in _SAME_TEXT_VRS else (tag, vr, value, self.decoding)
                    written = _WRITTEN.get(seen)
                    if written is None:
                        written = _MEMBER_WRITERS[vr](self, tag, vr, value)
                        if len(_WRITTEN) >= _WRITTEN_ENTRIES:
                            _WRITTEN.clear()
                        _WRITTEN[seen] = written
                    elif len(seen) == 4 and self.codec == _DEFAULT_CODEC:
                        self.text_before_charset = True
                    member, values = written
                else:
                    member, values = _MEMBER_WRITERS[vr](self, tag, vr, value)
            members[tag] = member
            if top:  # items stay raw bytes in their sequence's element: pydicom reads them on access
                key = BaseTag(tag)
                # RawDataElement(key, VR, length, value, at, implicit, little endian), without
                # the NamedTuple's Python-level __new__: all its fields, is_raw and is_buffered too
                raw[key] = _new_tuple(RawDataElement, (key, None if implicit else vr, length, value, at,
                                                       implicit, True, True, False))
                if vr in _FIRST_TEXT_VRS:
                    self.first_texts[tag] = values[0] if values else None
                    if len(values) > 1:
                        self.multi_valued.add(tag)
        if position != end:
            raise _Unusual  # an element ran past the end of its item
        return raw, members, position

    def vr_of(self, tag: int) -> str:
        """The VR of an element whose header names none the fast path reads: its dictionary VR in
        implicit VR; in explicit VR it was UN (pydicom may replace it), or not a VR at all."""
        if not self.implicit:
            raise _Unusual
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
        self.codec, self.decoding = codec, _decoding_name(codec)
        self.charset_name = name

    def sequence(self, position: int, length: int) -> tuple[list[str], int, bytes]:
        """A sequence's items as DICOM JSON text, where it ends, and its raw value (items only)."""
        items: list[str] = []
        end = None if length == UNDEFINED else self.need(position, length)
        start = position
        self.depth += 1
        check_depth(self.depth)
        while end is None or position < end:
            tag, _, item_length, at = self.element_header(position)
            if end is None and tag == SEQUENCE_END:
                self.depth -= 1
                return items, at, bytes(self.data[start:position])
            if tag != ITEM:
                if end is None:
                    raise InvalidDicom(f"unexpected tag {tag:08X} inside an undefined-length value")
                raise _Unusual
            item_end = None if item_length == UNDEFINED else self.need(at, item_length)
            _, members, position = self.elements(at, item_end)
            items.append(_json_object(members.values()))
        if position != end:
            raise _Unusual
        self.depth -= 1
        return items, position, bytes(self.data[start:position])

    def text(self, value: bytes) -> str:
        if self.codec == _DEFAULT_CODEC:
            self.text_before_charset = True
        if b"\x1b" in value:
            raise _Unusual  # escape sequences: pydicom's multi-charset decoding
        try:
            return value.decode(self.decoding)
        except UnicodeError:
            raise _Unusual from None


def _values_member(tag: int, vr: str, values: str) -> str:
    """The member of an element with values (`values`: them as JSON, comma-separated)."""
    heads = _HEADS[vr]
    head = heads.get(tag)
    if head is None:
        head = _VALUES_HEAD % (tag, vr)
        if len(heads) < _HEADS_PER_VR:
            heads[tag] = head
    return head + values + "]}"


def _json_object(members: Any) -> str:
    return "{" + ",".join(members) + "}"


# How each VR's (non-empty) value becomes a DICOM JSON member ('"GGGGEEEE":{...}'), as json.dumps
# writes what pydicom's DataElement.to_json_dict gives: writer(parser, tag, VR, value) -> (member,
# the values as strings for `first_texts`: string VRs and IS only; PN: each name's groups joined by '=').
# One function per kind of VR, so the common element costs one or two calls.


def _plain_member(parser: _Parser, tag: int, vr: str, value: bytes) -> tuple[str, list[str]]:
    """AS, CS, DA, DT, TM, UI: default character set, values split as pydicom does."""
    text = value.decode(_DEFAULT_DECODING).rstrip(" \x00")
    if "\\" in text:
        return _strings_member(tag, vr, text.split("\\"))
    if not text:  # _strings_member's common case, inline: one value
        return _NO_VALUE % (tag, vr), []
    return _values_member(tag, vr, _quoted(text)), [text]


def _application_entities_member(parser: _Parser, tag: int, vr: str, value: bytes) -> tuple[str, list[str]]:
    return _strings_member(tag, vr, [v.strip() for v in value.decode(_DEFAULT_DECODING).split("\\")])


def _uri_member(parser: _Parser, tag: int, vr: str, value: bytes) -> tuple[str, list[str]]:
    return _strings_member(tag, vr, [value.decode(_DEFAULT_DECODING).rstrip()])


def _charset_text_member(parser: _Parser, tag: int, vr: str, value: bytes) -> tuple[str, list[str]]:
    """SH, LO, UC: the character set, split at backslashes, each value stripped at its end."""
    text = parser.text(value)
    if "\\" not in text:  # the common case, without a list comprehension
        return _strings_member(tag, vr, [text.rstrip("\x00 ")])
    return _strings_member(tag, vr, [v.rstrip("\x00 ") for v in text.split("\\")])


def _charset_single_member(parser: _Parser, tag: int, vr: str, value: bytes) -> tuple[str, list[str]]:
    """ST, LT, UT: the character set, one value."""
    return _strings_member(tag, vr, [parser.text(value).rstrip("\x00 ")])


def _person_names_member(parser: _Parser, tag: int, vr: str, value: bytes) -> tuple[str, list[str]]:
    """PN: each name an object of its component groups."""
    names = parser.text(value.rstrip(b"\x00 ")).split("\\")
    if names == [""]:
        return _NO_VALUE % (tag, vr), []
    groups = [name.split("=")[:3] for name in names]  # more than 3 groups: pydicom drops the rest
    objects = [_PN_OBJECTS[len(name)] % tuple(map(_quoted, name)) for name in groups]
    return _values_member(tag, vr, ",".join(objects)), ["=".join(name) for name in groups]


def _integers_member(parser: _Parser, tag: int, vr: str, value: bytes) -> tuple[str, list[str]]:
    """IS: integers in JSON; anything but plain integers is unusual."""
    texts = value.decode(_DEFAULT_DECODING).rstrip(" \x00").split("\\")
    if texts == [""]:
        return _NO_VALUE % (tag, vr), []
    numbers = []
    for text in texts:  # one by one: int() of a huge number raises, and a later bad value must not win
        if not _INTEGER.match(text):
            raise _Unusual
        numbers.append(int(text))
    return _values_member(tag, vr, _numbers_text(numbers)), [text.strip() for text in texts]  # str() of pydicom's IS


def _decimals_member(parser: _Parser, tag: int, vr: str, value: bytes) -> tuple[str, list[str]]:
    """DS: floats in JSON; anything but plain finite numbers (space-padded: PS3.5 6.2) is unusual."""
    text = value.decode(_DEFAULT_DECODING).strip(" ").rstrip(" \x00")
    if not text:
        return _NO_VALUE % (tag, vr), []
    texts = text.split("\\")
    if text.strip(_DECIMAL_CHARACTERS):  # something else in it: each value checked as a number
        if not all(map(_DECIMAL.match, texts)):
            raise _Unusual
    try:  # of these characters, float() takes exactly what _DECIMAL matches: a faster check
        numbers = ",".join(map(float.__repr__, map(float, texts)))
    except ValueError:
        raise _Unusual from None
    if "inf" in numbers:  # "1e999" matches: an infinity (the pattern lets no NaN through)
        raise _Unusual
    return _values_member(tag, vr, numbers), []


def _binary_numbers_member(parser: _Parser, tag: int, vr: str, value: bytes) -> tuple[str, list[str]]:
    """US, SS, UL, SL, FL, FD, SV, UV."""
    code, size, single = _NUMBERS[vr]
    if len(value) == size:  # the common case: one value, with a precompiled struct
        return _values_member(tag, vr, _numbers_text(single.unpack(value))), []
    count, rest = divmod(len(value), size)
    if rest:
        raise _Unusual
    return _values_member(tag, vr, _numbers_text(struct.unpack(f"<{count}{code}", value))), []


def _attribute_tags_member(parser: _Parser, tag: int, vr: str, value: bytes) -> tuple[str, list[str]]:
    """AT: each tag as 'GGGGEEEE'."""
    if len(value) % 4:
        raise _Unusual
    pairs = struct.unpack(f"<{len(value) // 2}H", value)
    return _strings_member(tag, vr, [f"{pairs[i]:04X}{pairs[i + 1]:04X}" for i in range(0, len(pairs), 2)])


def _bytes_member(parser: _Parser, tag: int, vr: str, value: bytes) -> tuple[str, list[str]]:
    """OB, OW ...: inline up to ingest's threshold, else a bulk data URI (ingest's handler)."""
    if len(value) > _INLINE_LIMIT:
        return f'"{tag:08X}":{{"vr":"{vr}","BulkDataURI":"bulkdata/{tag:08X}"}}', []
    return f'"{tag:08X}":{{"vr":"{vr}","InlineBinary":"{base64.b64encode(value).decode("ascii")}"}}', []


_MEMBER_WRITERS = {
    **dict.fromkeys(_PLAIN | {"UI"}, _plain_member),
    "AE": _application_entities_member, "UR": _uri_member,
    **dict.fromkeys(_CHARSET_TEXT, _charset_text_member),
    **dict.fromkeys(_CHARSET_SINGLE, _charset_single_member),
    "PN": _person_names_member, "IS": _integers_member, "DS": _decimals_member,
    **dict.fromkeys(_NUMBERS, _binary_numbers_member),
    "AT": _attribute_tags_member,
    **dict.fromkeys(_BINARY, _bytes_member),
}


def _strings_member(tag: int, vr: str, values: list[str]) -> tuple[str, list[str]]:
    """A string element's member and values; one empty value is none."""
    if len(values) == 1:  # the common case, without join and map
        if not values[0]:
            return _NO_VALUE % (tag, vr), []
        return _values_member(tag, vr, _quoted(values[0])), values
    return _values_member(tag, vr, ",".join(map(_quoted, values))), values


def _numbers_text(numbers: list | tuple) -> str:
    """A list of ints or floats as json.dumps writes its items (its C encoder writes an int
    with int.__repr__, a finite float with float.__repr__; NaN and infinities by name)."""
    if len(numbers) == 1 and type(numbers[0]) is int:  # the common case, without join and map
        return repr(numbers[0])
    if not numbers or type(numbers[0]) is int:
        return ",".join(map(int.__repr__, numbers))
    if all(map(math.isfinite, numbers)):
        return ",".join(map(float.__repr__, numbers))
    return _encode_json(list(numbers))[1:-1]
