"""Parse the header of a DICOM Part 10 file without reading its pixel data, and prove it whole.

`read_header` stops pydicom before the pixel data, then walks the remaining element headers
(seeking over values, never reading or decoding them) to check that every declared length fits
in the file: a truncated file is reported as `InvalidDicom`, not silently stored.  A number
(IS, DS) that is not a finite number, such as "1e400" or "inf", is kept as its text.
"""

from __future__ import annotations

import logging
import math
import mmap
import os
import re
import struct
from functools import lru_cache
from io import BytesIO
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_partial
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)

from pacsd.dicom.nesting import MAX_SEQUENCE_DEPTH, TooDeeplyNested, check_depth
from pacsd.errors import InvalidDicom

log = logging.getLogger(__name__)
UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")

# Top-level elements at which the header ends: pixel data in all its forms.
_PIXEL_TAGS = {0x7FE00008, 0x7FE00009, 0x7FE00010}
# Explicit VRs whose length field is 4 bytes (after 2 reserved bytes).
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


@dataclass(frozen=True)
class Header:
    """What the receive path needs from one file: its header and where the file stands."""

    dataset: Dataset  # the header, without pixel data
    file_meta: FileMetaDataset
    transfer_syntax: str
    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    size: int
    header_json: str | None = None  # the DICOM JSON, when the fast path (rawheader) read the file


def _require_uid(dataset: Dataset, keyword: str) -> str:
    known = dataset.__dict__.get(FIRST_TEXTS)
    tag = _tag_of_keyword(keyword)
    if known is not None and tag in known and tag not in dataset.__dict__[MULTI_VALUED]:
        value = (known[tag] or "").strip().rstrip("\x00")  # the fast path's text of its only value
    else:
        value = str(dataset.get(keyword, "") or "").strip().rstrip("\x00")
    if not value:
        raise InvalidDicom(f"the dataset has no {keyword}")
    if len(value) > 64 or not UID_PATTERN.match(value):
        raise InvalidDicom(f"{keyword} {value[:80]!r} is not a valid UID")
    return value


def read_header(path: Path | str) -> Header:
    """Read a Part 10 file's header (no pixel data) and check the file is complete.

    Raises InvalidDicom when the file is not DICOM, is truncated, or lacks a required UID.
    Common files take the fast path (`rawheader`), which also gives the DICOM JSON; others
    pydicom's reader.
    """
    from pacsd.dicom import rawheader  # here: it builds on this module's walker and constants

    path = Path(path)
    try:
        with open(path, "rb") as fp:
            size = os.fstat(fp.fileno()).st_size
            if size < 132:
                raise InvalidDicom(f"not a DICOM Part 10 file: only {size} bytes")
            with mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ) as data:
                fast = rawheader.parse(data, size)
                if fast is None:
                    header_bytes, syntax = _whole_file_header(data, size)
            if fast is not None:
                return _header(fast.dataset, fast.transfer_syntax, size, fast.header_json)
            if syntax == DeflatedExplicitVRLittleEndian:
                # The dataset is deflated as a whole: pydicom inflates it; zlib reports truncation.
                fp.seek(0)
                dataset = read_partial(fp, stop_when=_stop_at_pixel_data, defer_size=None)
            else:
                dataset = read_partial(BytesIO(header_bytes), stop_when=None, defer_size=None)
        _read_values(dataset)
    except InvalidDicom:
        raise
    except RecursionError:  # pydicom's reader, before our own depth check could count
        raise TooDeeplyNested(f"sequences nested more than {MAX_SEQUENCE_DEPTH} levels deep") from None
    except Exception as exc:  # pydicom, struct and zlib errors share no useful base class
        raise InvalidDicom(f"unreadable DICOM ({type(exc).__name__}: {exc})") from None
    return _header(dataset, syntax, size)


def _header(dataset: Dataset, syntax: str, size: int, header_json: str | None = None) -> Header:
    return Header(
        dataset=dataset,
        file_meta=dataset.file_meta,
        transfer_syntax=syntax,
        sop_class_uid=_require_uid(dataset, "SOPClassUID"),
        sop_instance_uid=_require_uid(dataset, "SOPInstanceUID"),
        study_uid=_require_uid(dataset, "StudyInstanceUID"),
        series_uid=_require_uid(dataset, "SeriesInstanceUID"),
        size=size,
        header_json=header_json,
    )


def _whole_file_header(data: mmap.mmap, size: int) -> tuple[bytes, str]:
    """Prove every element of the file fits; return the bytes before pixel data and the syntax."""
    if data[128:132] != b"DICM":
        raise InvalidDicom("not a DICOM Part 10 file: no 'DICM' prefix at byte 128")
    meta = _ElementWalker(data, size, implicit=False, little=True)
    syntax = meta.walk_meta(132)
    if not syntax:
        raise InvalidDicom("the file meta information has no Transfer Syntax UID")
    if syntax == DeflatedExplicitVRLittleEndian:
        return b"", syntax
    body = _ElementWalker(
        data, size, implicit=syntax == ImplicitVRLittleEndian, little=syntax != ExplicitVRBigEndian
    )
    pixel_offset = body.walk_dataset(meta.position)
    return data[:pixel_offset], syntax


def _stop_at_pixel_data(tag: BaseTag, vr: str | None, length: int) -> bool:
    return int(tag) in _PIXEL_TAGS


def _read_values(dataset: Dataset, depth: int = 0) -> None:
    """Convert every raw element now, so a malformed value fails here and not later.

    A number string (IS, DS) that is no finite number is tolerated: an optional attribute such
    as Instance Number must not cost the image.  It is kept as its text (`NumberAsText`).  So is
    a private element whose value does not fit the VR the private dictionary gives it (2 bytes
    where it says FD): it is kept as UN, its bytes as sent (DCMTK's storescp keeps such images)."""
    for tag in list(dataset.keys()):
        try:
            element = dataset[tag]
        except Exception as exc:
            raw = dataset.get_item(tag)
            if raw.tag.is_private:
                dataset[tag] = _private_as_unknown(raw, exc)
                continue
            vr = _vr_of(raw)
            if vr is None or vr not in _NUMBER_VRS:
                raise InvalidDicom(f"malformed element in the header: {exc}") from None
            dataset[tag] = NumberAsText.of(raw.tag, vr, bytes(raw.value or b"").decode("ascii", "replace"))
            continue
        if element.VR == "SQ":
            check_depth(depth + 1)
            for item in element.value:
                _read_values(item, depth + 1)
        elif element.VR in _NUMBER_VRS and not all(_finite(v) for v in _values(element.value)):
            texts = ("" if v is None else str(v) for v in _values(element.value))
            dataset[tag] = NumberAsText.of(element.tag, element.VR, "\\".join(texts))


_NUMBER_VRS = ("IS", "DS")


def _private_as_unknown(raw: RawDataElement | DataElement, exc: Exception) -> DataElement:
    """A private element pydicom cannot read by its VR, as UN with the bytes it was sent with."""
    value = bytes(raw.value or b"")
    log.warning("private element %s (%d bytes) does not fit the VR %s gives it: kept as UN (%s)", raw.tag,
                len(value), f"explicit VR {raw.VR}" if raw.VR else "the private dictionary",
                str(exc).split(". ")[0][:120])
    return DataElement(raw.tag, "UN", value)


class NumberAsText(DataElement):
    """An IS or DS element whose value is no finite number, kept as the text it was sent as.

    In DICOM JSON it is written as strings, which PS3.18 allows for IS and DS (CP 1861)."""

    @classmethod
    def of(cls, tag: BaseTag, vr: str, text: str) -> "NumberAsText":
        texts = [part.strip(" \x00") for part in text.split("\\")]
        element = cls(tag, "UT", "")  # UT: no conversion; the value and VR are set below
        element.VR, element._value = vr, texts if len(texts) > 1 else texts[0]
        log.warning("%s %s %r is not a number: kept as text", element.keyword or tag, vr, text[:64])
        return element

    def to_json_dict(self, bulk_data_element_handler: Any, bulk_data_threshold: int) -> dict[str, Any]:
        texts = self._value if isinstance(self._value, list) else [self._value]
        return {"vr": self.VR, "Value": texts} if any(texts) else {"vr": self.VR}


def _vr_of(raw: RawDataElement | DataElement) -> str | None:
    if raw.VR:
        return raw.VR
    try:
        return dictionary_VR(raw.tag)
    except KeyError:
        return None


def _finite(value: Any) -> bool:
    if value is None or value == "":
        return True
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        return False


def _values(value: Any) -> list:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]


class _ElementWalker:
    """Reads element headers from a mapped file, jumping over values: proof that it is whole."""

    def __init__(self, data: mmap.mmap, size: int, implicit: bool, little: bool) -> None:
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
        if vr in _LONG_VRS:
            return self.u32.unpack_from(self.data, self._need(6) + 2)[0], vr
        return self.u16.unpack_from(self.data, self._need(2))[0], vr

    def walk_meta(self, start: int) -> str:
        """Walk group 0002 from `start`; return the Transfer Syntax UID it declares."""
        self.position, syntax = start, ""
        while self.position + 4 <= self.size and self.u16.unpack_from(self.data, self.position)[0] == 2:
            tag = self._tag()
            length, _ = self._element_header(tag)
            if length == _UNDEFINED:
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
            if pixel_offset is None and tag in _PIXEL_TAGS:
                pixel_offset = element_start
            self._skip_value(tag)
        return self.size if pixel_offset is None else pixel_offset

    def _skip_value(self, tag: int) -> None:
        length, vr = self._element_header(tag)
        if length != _UNDEFINED:
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
            if tag == _SEQUENCE_END:
                return
            if tag != _ITEM:
                raise InvalidDicom(f"unexpected tag {tag:08X} inside an undefined-length value")
            if length != _UNDEFINED:
                self._need(length)
                continue
            while (tag := self._tag()) != _ITEM_END:  # an undefined-length item: its elements
                self._skip_value(tag)
            self._need(4)


FIRST_TEXTS = "_pacsd_first_texts"  # a Dataset attribute: {tag: first value or None (empty)}
MULTI_VALUED = "_pacsd_multi_valued"  # with it: the tags of those elements holding several values


INTEGER_STRING_RANGE = range(-(2**31), 2**31)  # what an IS value may hold (PS3.5 6.2)


def integer_or_none(text: str) -> int | None:
    """An IS value's text as an integer; None when it is no number or none an IS may hold
    ('inf', '1e400', '1e300')."""
    try:
        number = int(float(text))
    except (ValueError, OverflowError):
        return None
    return number if number in INTEGER_STRING_RANGE else None


def first_text(dataset: Dataset, keyword: str, default: str = "") -> str:
    """The first value of an element as text ('' when absent or empty).

    A dataset from the fast header path carries its string elements' first values already (the
    same text; converting raw elements with pydicom cost more than parsing the header)."""
    known = dataset.__dict__.get(FIRST_TEXTS)
    if known is not None:
        tag = _tag_of_keyword(keyword)
        if tag in known:
            text = known[tag]
            return default if text is None or text == "" else text.strip()
        if tag not in dataset._dict:  # absent: no need to ask pydicom
            return default
    value: Any = dataset.get(keyword, None)
    if value is None or value == "":
        return default
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else default
    return str(value).strip()


@lru_cache(maxsize=None)
def _tag_of_keyword(keyword: str) -> int | None:
    return tag_for_keyword(keyword)


def file_size(path: Path | str) -> int:
    return os.stat(path).st_size
