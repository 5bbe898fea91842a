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
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_partial
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)

from pacsd.dicom import rawheader
from pacsd.dicom.element_walk import (
    FIRST_TEXTS,
    MULTI_VALUED,
    PIXEL_TAGS,
    ElementWalker,
)
from pacsd.dicom.nesting import MAX_SEQUENCE_DEPTH, TooDeeplyNested, check_depth
from pacsd.errors import InvalidDicom

log = logging.getLogger(__name__)
UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")


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


def read_header(path: Path | str, content: bytes | None = None) -> Header:
    """Read a Part 10 file's header (no pixel data) and check the file is complete.

    `content`: the file's bytes, when the caller has them in memory (the file is not read).
    Raises InvalidDicom when the file is not DICOM, is truncated, or lacks a required UID.
    Common files take the fast path (`rawheader`), which also gives the DICOM JSON; others
    pydicom's reader.
    """

    try:
        if content is not None:
            return _header_of(content, len(content), lambda: BytesIO(content))
        with open(path, "rb") as fp:
            size = os.fstat(fp.fileno()).st_size
            if size < 132:
                raise InvalidDicom(f"not a DICOM Part 10 file: only {size} bytes")
            with mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _header_of(data, size, lambda: fp)
    except InvalidDicom:
        raise
    except RecursionError:  # pydicom's reader, before our own depth check could count
        raise TooDeeplyNested(f"sequences nested more than {MAX_SEQUENCE_DEPTH} levels deep") from None
    except Exception as exc:  # pydicom, struct and zlib errors share no useful base class
        raise InvalidDicom(f"unreadable DICOM ({type(exc).__name__}: {exc})") from None


def _header_of(data: bytes | mmap.mmap, size: int, whole_file: Callable[[], BinaryIO]) -> Header:
    """The header of a file's bytes (`data`); `whole_file()` opens it as a stream, at any position."""
    if size < 132:
        raise InvalidDicom(f"not a DICOM Part 10 file: only {size} bytes")
    fast = rawheader.parse(data, size)
    if fast is not None:
        return _header(fast.dataset, fast.transfer_syntax, size, fast.header_json)
    header_bytes, syntax = _whole_file_header(data, size)
    if syntax == DeflatedExplicitVRLittleEndian:
        # The dataset is deflated as a whole: pydicom inflates it; zlib reports truncation.
        fp = whole_file()
        fp.seek(0)
        dataset = read_partial(fp, stop_when=_stop_at_pixel_data, defer_size=None)
    else:
        dataset = read_partial(BytesIO(header_bytes), stop_when=None, defer_size=None)
    _read_values(dataset)
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


def _whole_file_header(data: bytes | mmap.mmap, size: int) -> tuple[bytes, str]:
    """Prove every element of the file fits; return the bytes before pixel data and the syntax."""
    if data[128:132] != b"DICM":
        raise InvalidDicom("not a DICOM Part 10 file: no 'DICM' prefix at byte 128")
    meta = ElementWalker(data, size, implicit=False, little=True)
    syntax = meta.walk_meta(132)
    if not syntax:
        raise InvalidDicom("the file meta information has no Transfer Syntax UID")
    if syntax == DeflatedExplicitVRLittleEndian:
        return b"", syntax
    body = ElementWalker(
        data, size, implicit=syntax == ImplicitVRLittleEndian, little=syntax != ExplicitVRBigEndian
    )
    pixel_offset = body.walk_dataset(meta.position)
    return data[:pixel_offset], syntax


def _stop_at_pixel_data(tag: BaseTag, vr: str | None, length: int) -> bool:
    return int(tag) in PIXEL_TAGS


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
