"""Query answers: one match's elements, written once, rendered as DICOM JSON (QIDO-RS) or as an
encoded identifier (C-FIND).

Values from index columns are kept as DICOM text: they become JSON values, or identifier bytes
written directly (ASCII text needs no pydicom DataElement); values from a stored header stay DICOM
JSON, and an answer holding any (or non-ASCII text) is encoded by pydicom.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.tag import Tag

log = logging.getLogger(__name__)

UTF8 = "ISO_IR 192"
QUERY_RETRIEVE_LEVEL = 0x00080052
SPECIFIC_CHARACTER_SET = 0x00080005
_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
_INTEGER_VRS = {"IS", "SL", "SS", "SV", "UL", "US", "UV"}
_LONG_LENGTH_VRS = {"UC", "UR", "UT"}  # explicit VR: 2 reserved bytes and a 4-byte length
_DEFAULT_REPERTOIRE = {"", "ISO_IR 6", "ISO 2022 IR 6"}
_TAG_BYTES: dict[int, bytes] = {}  # a tag as little-endian group and element, by tag
_LENGTH_2, _LENGTH_4, _RESERVED_LENGTH_4 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<HI")


@dataclass(slots=True)
class AnswerElement:
    """One element of an answer: DICOM text values (from the index), or a stored DICOM JSON element."""

    vr: str
    texts: tuple[str, ...] = ()
    stored: dict | None = None

    def as_json(self) -> dict:
        if self.stored is not None:
            return self.stored
        if not self.texts:
            return {"vr": self.vr}
        return {"vr": self.vr, "Value": [_json_value(self.vr, text) for text in self.texts]}

    @property
    def is_ascii_text(self) -> bool:
        return self.stored is None and self.vr in _TEXT_VRS and all(text.isascii() for text in self.texts)

    def non_ascii_texts(self) -> list[str]:
        if self.stored is not None:
            return [text for text in _stored_texts(self.stored) if not text.isascii()]
        return [text for text in self.texts if not text.isascii()]


class Answer:
    """One match at one level: its elements by tag, in the order the query named them.

    An answer made of index texts only can be built on an `AnswerLayout` shared by all answers of
    a query: it then holds just its texts, and `elements` is built only if asked for."""

    __slots__ = ("level", "_elements", "_layout", "_texts")

    def __init__(self, level: str, layout: "AnswerLayout | None" = None,
                 texts: Sequence[tuple[str, ...]] = ()) -> None:
        self.level = level
        self._elements: dict[int, AnswerElement] | None = None if layout is not None else {}
        self._layout, self._texts = layout, texts

    @property
    def elements(self) -> dict[int, AnswerElement]:
        if self._elements is None:
            assert self._layout is not None  # elements are made from the layout until then
            self._elements = {tag: AnswerElement(vr, texts) for (tag, vr), texts
                              in zip(self._layout.keys, self._texts)}
            self._layout = None  # the elements may be changed now: they are the answer
        return self._elements

    def text(self, tag: int) -> str:
        """The first value of an element as text ('' when absent or empty)."""
        element = self.elements.get(tag)
        if element is None:
            return ""
        if element.stored is not None:
            return next(iter(_stored_texts(element.stored)), "")
        return element.texts[0] if element.texts else ""

    def as_json(self) -> dict:
        """DICOM JSON (PS3.18 F.2), with Specific Character Set ISO_IR 192 when any value is not ASCII."""
        result = {f"{tag:08X}": self.elements[tag].as_json() for tag in sorted(self.elements)}
        if any(element.non_ascii_texts() for element in self.elements.values()):
            result[f"{SPECIFIC_CHARACTER_SET:08X}"] = {"vr": "CS", "Value": [UTF8]}
        return result

    def encoded(self, implicit_vr: bool = True, little_endian: bool = True,
                requested_charset: str | Sequence[str] | None = None) -> bytes:
        """The identifier (with QueryRetrieveLevel) encoded in the given transfer syntax's way."""
        if self._layout is not None and little_endian:
            identifier = self._layout.ascii_identifier(self.level, self._texts, implicit_vr)
            if identifier is not None:
                return identifier
        elements = [(QUERY_RETRIEVE_LEVEL, AnswerElement("CS", (self.level,))), *self.elements.items()]
        if little_endian and all(element.is_ascii_text for _, element in elements):
            written = [_element_bytes(tag, element, implicit_vr) for tag, element in sorted(elements)]
            if all(written):
                return b"".join(written)
        out = DicomBytesIO()
        out.is_implicit_VR, out.is_little_endian = implicit_vr, little_endian
        write_dataset(out, self.as_dataset(implicit_vr, little_endian, requested_charset))
        return out.getvalue()

    def as_dataset(self, implicit_vr: bool = True, little_endian: bool = True,
                   requested_charset: str | Sequence[str] | None = None) -> Dataset:
        """A dataset (with QueryRetrieveLevel) that pydicom encodes in the given encoding without
        re-validating index values.  Text that is not ASCII is in the requested character set
        when all of it can be, in UTF-8 otherwise."""
        charset = self._charset(requested_charset)
        dataset = Dataset()
        if charset:
            dataset.SpecificCharacterSet = charset
        encodings = convert_encodings(charset) if charset else default_encoding
        dataset.set_original_encoding(implicit_vr, little_endian, encodings)
        dataset[QUERY_RETRIEVE_LEVEL] = _raw(QUERY_RETRIEVE_LEVEL, "CS", (self.level,), implicit_vr, little_endian)
        for tag, element in self.elements.items():
            dataset[tag] = _dataset_element(tag, element, implicit_vr, little_endian)
        return dataset

    def _charset(self, requested: str | Sequence[str] | None) -> str | list[str] | None:
        texts = [text for element in self.elements.values() for text in element.non_ascii_texts()]
        if not texts:
            return None
        names = [requested] if isinstance(requested, str) else list(requested or ())
        names = [str(name).strip() for name in names]
        if names and any(name not in _DEFAULT_REPERTOIRE for name in names) and _encodable(texts, names):
            return names[0] if len(names) == 1 else names
        return UTF8


class AnswerLayout:
    """The elements every answer of one query has, in the query's order: (tag, VR) pairs.

    For answers of ASCII text it writes the identifier bytes directly, with each element's tag,
    VR and padding worked out once per query instead of once per answer (PS3.5 7.1.2/7.1.3)."""

    def __init__(self, keys: Sequence[tuple[int, str]]) -> None:
        self.keys = tuple(keys)
        self.all_text = all(vr in _TEXT_VRS for _, vr in self.keys)
        last = {tag: (vr, index) for index, (tag, vr) in enumerate(self.keys)}  # a repeated tag: the last, as a dict
        last[QUERY_RETRIEVE_LEVEL] = ("CS", -1)
        # (index into the texts, -1 for the level; tag bytes; tag and VR bytes; 4-byte length
        # in explicit VR; pad byte), in tag order
        self._order = [(index, _tag_bytes(tag), _tag_bytes(tag) + vr.encode(), vr in _LONG_LENGTH_VRS,
                        b"\0" if vr == "UI" else b" ")
                       for tag, (vr, index) in sorted(last.items())]

    def ascii_identifier(self, level: str, texts: Sequence[tuple[str, ...]], implicit_vr: bool) -> bytes | None:
        """The little-endian identifier of an answer with these `texts`; None when some text is
        not ASCII or too long for its length field (the general encoder then writes it)."""
        if not self.all_text:
            return None
        parts: list[bytes] = []
        for index, tag_head, explicit_head, long_length, pad in self._order:
            values = (level,) if index < 0 else texts[index]
            value = values[0] if len(values) == 1 else "\\".join(values)
            if not value.isascii():
                return None
            raw = value.encode()
            if len(raw) & 1:
                raw += pad
            if not _add_element(parts, tag_head, explicit_head, long_length, raw, implicit_vr):
                return None
        return b"".join(parts)


def _encodable(texts: list[str], charsets: list[str]) -> bool:
    """Whether every character of `texts` is in one of the character sets."""
    try:
        codecs = ["ascii" if name in _DEFAULT_REPERTOIRE else codec
                  for name, codec in zip(charsets, convert_encodings(charsets))]
    except LookupError:
        return False
    return all(any(_encodes(ch, codec) for codec in codecs) for text in texts for ch in set(text) if not ch.isascii())


def _encodes(ch: str, codec: str) -> bool:
    try:
        ch.encode(codec)
    except (UnicodeError, LookupError):
        return False
    return True


def _json_value(vr: str, text: str) -> Any:
    if vr == "PN":
        groups = dict(zip(("Alphabetic", "Ideographic", "Phonetic"), text.split("=")))
        return {name: group for name, group in groups.items() if group}
    if vr in _INTEGER_VRS:
        try:
            return int(text)
        except ValueError:
            return text
    if vr in ("DS", "FL", "FD"):
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if number.is_integer() else number
    return text


def _stored_texts(element: dict) -> list[str]:
    texts = []
    for value in element.get("Value", ()):
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict) and element.get("vr") == "PN":
            texts.extend(v for v in value.values() if isinstance(v, str))
    return texts


def _text_bytes(vr: str, texts: Sequence[str]) -> bytes:
    """ASCII text values as an element value: joined by backslashes, padded to an even length."""
    value = "\\".join(texts).encode("ascii")
    if len(value) % 2:
        value += b"\0" if vr == "UI" else b" "
    return value


def _element_bytes(tag: int, element: AnswerElement, implicit_vr: bool) -> bytes:
    """One little-endian element of ASCII text; b'' if too long to write so."""
    head, parts = _tag_bytes(tag), list[bytes]()
    written = _add_element(parts, head, head + element.vr.encode(), element.vr in _LONG_LENGTH_VRS,
                           _text_bytes(element.vr, element.texts), implicit_vr)
    return b"".join(parts) if written else b""


def _add_element(parts: list[bytes], tag_head: bytes, explicit_head: bytes, long_length: bool, value: bytes,
                 implicit_vr: bool) -> bool:
    """Append one little-endian element of an even-length `value` (PS3.5 7.1.2/7.1.3): its tag
    (and in explicit VR its VR, given with the tag as `explicit_head`), length and value.  False,
    appending nothing, when the value is too long for explicit VR's 2-byte length."""
    if implicit_vr:
        parts += (tag_head, _LENGTH_4.pack(len(value)), value)
    elif long_length:
        parts += (explicit_head, _RESERVED_LENGTH_4.pack(0, len(value)), value)
    elif len(value) > 0xFFFE:
        return False
    else:
        parts += (explicit_head, _LENGTH_2.pack(len(value)), value)
    return True


def _tag_bytes(tag: int) -> bytes:
    """A tag as written in little endian: group, then element."""
    head = _TAG_BYTES.get(tag)
    if head is None:
        head = _TAG_BYTES[tag] = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    return head


def _raw(tag: int, vr: str, texts: Sequence[str], implicit_vr: bool, little_endian: bool) -> RawDataElement:
    value = _text_bytes(vr, texts)
    return RawDataElement(Tag(tag), vr, len(value), value, 0, implicit_vr, little_endian)


def _dataset_element(tag: int, element: AnswerElement, implicit_vr: bool,
                     little_endian: bool) -> RawDataElement | DataElement:
    """A raw element for ASCII text from the index; a DataElement for anything else."""
    if element.stored is not None:
        return _from_stored(tag, element.stored)
    if element.is_ascii_text:
        return _raw(tag, element.vr, element.texts, implicit_vr, little_endian)
    if element.vr in _INTEGER_VRS - {"IS"} and element.texts:
        return DataElement(tag, element.vr, [int(text) for text in element.texts])
    value = list(element.texts) if len(element.texts) > 1 else (element.texts[0] if element.texts else None)
    return DataElement(tag, element.vr, value)


def _from_stored(tag: int, stored: dict) -> DataElement:
    key = f"{tag:08X}"
    try:
        return Dataset.from_json({key: stored})[tag]
    except Exception:  # a malformed stored value answers as empty, it does not fail the query
        log.debug("cannot read %s from a stored header", key, exc_info=True)
        return DataElement(tag, stored.get("vr", "UN"), None)

