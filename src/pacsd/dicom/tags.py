"""Read and change the data elements of one DICOM file: list, get, set, add, delete.

Values are checked against their VR before anything is written; the file is replaced
atomically and its pixel data bytes are carried over untouched (never decoded or re-encoded).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import config
from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import PersonName, validate_value

from pacsd.dicom.files import as_dataset, read_dicom, write_atomically
from pacsd.dicom.pixels import PIXEL_DATA_KEYWORDS
from pacsd.errors import InvalidTagValue, TagNotFound

TagKey = str | int | tuple[int, int] | BaseTag

BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
SINGLE_VALUED_TEXT_VRS = frozenset({"LT", "ST", "UT", "UR"})
CHARSET_VRS = frozenset({"SH", "LO", "UC", "ST", "LT", "UT", "PN"})
INTEGER_VRS = {
    "US": (0, 0xFFFF),
    "SS": (-0x8000, 0x7FFF),
    "UL": (0, 0xFFFFFFFF),
    "SL": (-0x80000000, 0x7FFFFFFF),
    "UV": (0, 2**64 - 1),
    "SV": (-(2**63), 2**63 - 1),
}
FLOAT_VRS = frozenset({"FL", "FD"})
PROTECTED_KEYWORDS = frozenset({*PIXEL_DATA_KEYWORDS, "ExtendedOffsetTable", "ExtendedOffsetTableLengths"})
META_MIRRORS = {"SOPInstanceUID": "MediaStorageSOPInstanceUID", "SOPClassUID": "MediaStorageSOPClassUID"}

_STEP = re.compile(r"^(?P<name>[^\[\]]+)(?:\[(?P<index>\d+)\])?$")
_NUMERIC_TAG = re.compile(r"^\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")  # ESC (charsets) allowed
_LINE_CONTROL = re.compile(r"[\n\r\t\f]")


@dataclass
class TagEntry:
    """One data element as a user sees it; a sequence carries its items' entries."""

    tag: str
    keyword: str
    vr: str
    value: Any
    length: int | None = None  # byte length, for binary values (which are not shown)
    items: list[list[TagEntry]] | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        data = {"tag": self.tag, "keyword": self.keyword, "vr": self.vr, "value": self.value}
        if self.length is not None:
            data["length"] = self.length
        if self.items is not None:
            data["items"] = [[entry.as_dict() for entry in item] for item in self.items]
        return data


def load_tags(source: Dataset | str | os.PathLike) -> list[TagEntry]:
    """Every element of the file (file meta first), nested sequences included."""
    ds = as_dataset(source)
    meta = getattr(ds, "file_meta", None)
    return [*(_entries(meta) if meta else []), *_entries(ds)]


def get_tag(
    source: Dataset | str | os.PathLike, tag: TagKey, element: int | None = None
) -> Any:
    """The value of one element: `get_tag(f, 0x0010, 0x0010)`, `get_tag(f, "PatientName")`,
    `get_tag(f, "0010,0010")` or a path into sequences, `"OtherPatientIDsSequence[0].PatientID"`.

    Raises `TagNotFound` when the element (or an item on the way) is absent.
    """
    ds = as_dataset(source)
    steps = [(Tag(tag, element), None)] if element is not None else parse_tag_path(tag)
    container = _walk(ds, steps[:-1])
    final_tag = steps[-1][0]
    if final_tag.group == 0x0002 and getattr(ds, "file_meta", None) is not None:
        container = ds.file_meta
    if final_tag not in container:
        raise TagNotFound(f"{describe_tag(final_tag)} is not in the file")
    found = _entry(container[final_tag])
    if steps[-1][1] is None:
        return found.items if found.vr == "SQ" else found.value
    return _entries(_item_of(container[final_tag], steps[-1][1], final_tag))


def write_tags(
    path: str | os.PathLike,
    changes: Mapping[TagKey, Any],
    out: str | os.PathLike | None = None,
) -> Path:
    """Set, add (value) or delete (None) elements of `path`; write to `out` (default: in place).

    Text values are parsed for their VR ('\\' separates multiple values); every value is checked
    before anything is written. Pixel data and the file meta group cannot be changed here.
    Returns the path written.
    """
    ds = read_dicom(path)
    for key, value in sorted(changes.items(), key=_character_set_first):
        apply_change(ds, key, value)
    _mirror_into_file_meta(ds)
    return write_atomically(out or path, lambda handle: ds.save_as(handle))


def parse_tag_path(text: TagKey) -> list[tuple[BaseTag, int | None]]:
    """'A[0].B' -> [(tag A, 0), (tag B, None)]; a keyword, 'gggg,eeee', '(gggg,eeee)' or 'ggggeeee'."""
    if not isinstance(text, str):
        return [(_to_tag(text), None)]
    steps = []
    for part in text.strip().split("."):
        match = _STEP.match(part.strip())
        if not match:
            raise InvalidTagValue(f"cannot read tag path {text!r} (use Keyword, gggg,eeee or A[0].B)")
        index = match["index"]
        steps.append((_to_tag(match["name"].strip()), int(index) if index is not None else None))
    return steps


def describe_tag(tag: BaseTag) -> str:
    """'PatientName (0010,0010)', or just '(0009,1001)' for a private or unknown tag."""
    numeric = f"({tag.group:04X},{tag.element:04X})"
    keyword = keyword_for_tag(tag)
    return f"{keyword} {numeric}" if keyword else numeric


def _to_tag(name: TagKey) -> BaseTag:
    if not isinstance(name, str):
        try:
            return Tag(name)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidTagValue(f"not a tag: {name!r} ({exc})") from None
    numeric = _NUMERIC_TAG.match(name)
    if numeric:
        return Tag(int(numeric[1], 16), int(numeric[2], 16))
    tag = tag_for_keyword(name)
    if tag is None:
        raise InvalidTagValue(f"unknown tag {name!r}: use a DICOM keyword (PatientName) or gggg,eeee")
    return Tag(tag)


def _walk(ds: Dataset, steps: Iterable[tuple[BaseTag, int | None]]) -> Dataset:
    """Follow sequence steps down to the dataset that holds the final element."""
    container = ds
    for tag, index in steps:
        if tag not in container:
            raise TagNotFound(f"{describe_tag(tag)} is not in the file")
        container = _item_of(container[tag], 0 if index is None else index, tag)
    return container


def _item_of(element: DataElement, index: int, tag: BaseTag) -> Dataset:
    if element.VR != "SQ":
        raise InvalidTagValue(f"{describe_tag(tag)} is not a sequence; [{index}] cannot apply")
    if index >= len(element.value):
        raise TagNotFound(f"{describe_tag(tag)} has {len(element.value)} item(s), no item [{index}]")
    return element.value[index]


def _character_set_first(change: tuple[TagKey, Any]) -> int:
    """Order changes so a new Specific Character Set applies before the values that need it."""
    key = change[0]
    return 0 if key in ("SpecificCharacterSet", "0008,0005", 0x00080005) else 1


def apply_change(ds: Dataset, key: TagKey, value: Any) -> None:
    """Set (value) or delete (None) one element of `ds` in memory, checked like `write_tags`."""
    steps = parse_tag_path(key)
    tag, index = steps[-1]
    if index is not None:
        raise InvalidTagValue(f"{key}: a change names an element, not a sequence item")
    _refuse_protected(tag)
    container = _walk(ds, steps[:-1])
    if value is None:
        if tag in container:
            del container[tag]
        return
    vr = _vr_for(container, tag)
    container[tag] = DataElement(tag, vr, _checked_value(ds, tag, vr, value))


def _refuse_protected(tag: BaseTag) -> None:
    if tag.group == 0x0002:
        raise InvalidTagValue(f"{describe_tag(tag)}: the file meta group is written by pacsd itself")
    if keyword_for_tag(tag) in PROTECTED_KEYWORDS:
        raise InvalidTagValue(f"{describe_tag(tag)}: pixel data is never changed by tag editing")


def _vr_for(container: Dataset, tag: BaseTag) -> str:
    if tag in container and container[tag].VR not in ("UN",):
        vr = container[tag].VR
    else:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            raise InvalidTagValue(
                f"{describe_tag(tag)}: not in the DICOM dictionary and not in the file, "
                "so its VR is unknown; pacsd cannot add it"
            ) from None
    vr = vr.split(" or ")[0]
    if vr == "SQ" or vr in BINARY_VRS:
        raise InvalidTagValue(f"{describe_tag(tag)}: VR {vr} values cannot be set from text")
    return vr


def _checked_value(ds: Dataset, tag: BaseTag, vr: str, value: Any) -> Any:
    """The value parsed for its VR and validated, or `InvalidTagValue` saying what is wrong."""
    where = f"{describe_tag(tag)} (VR {vr})"
    values = _split(vr, value)
    try:
        parsed = [_parse_one(vr, item) for item in values]
    except ValueError as exc:
        raise InvalidTagValue(f"{where}: {exc}") from None
    for item in parsed:
        _validate_one(ds, where, vr, item)
    if not parsed:
        return None if vr in INTEGER_VRS or vr in FLOAT_VRS or vr == "AT" else ""
    return parsed[0] if len(parsed) == 1 else parsed


def _split(vr: str, value: Any) -> list[Any]:
    if isinstance(value, (list, tuple, MultiValue)):
        return list(value)
    if isinstance(value, str) and vr not in SINGLE_VALUED_TEXT_VRS:
        return [] if value == "" else value.split("\\")
    return [value]


def _parse_one(vr: str, item: Any) -> Any:
    if vr in INTEGER_VRS:
        number = int(str(item).strip(), 10) if isinstance(item, str) else int(item)
        low, high = INTEGER_VRS[vr]
        if not low <= number <= high:
            raise ValueError(f"{number} is outside {low}..{high}")
        return number
    if vr in FLOAT_VRS:
        return float(item)
    if vr == "AT":
        return _to_tag(item) if isinstance(item, str) else Tag(item)
    if vr == "PN" and isinstance(item, PersonName):
        return str(item)
    if not isinstance(item, str):
        raise ValueError(f"expected text, got {type(item).__name__} {item!r}")
    return item.strip() if vr in ("DS", "IS") else item


def _validate_one(ds: Dataset, where: str, vr: str, item: Any) -> None:
    try:
        validate_value(vr, item, config.RAISE)
    except ValueError as exc:
        raise InvalidTagValue(f"{where}: {exc}") from None
    if not isinstance(item, str):
        return
    forbidden = _CONTROL if vr in SINGLE_VALUED_TEXT_VRS else _CONTROL_OR_LINE
    if forbidden.search(item):
        raise InvalidTagValue(f"{where}: control characters are not allowed in {item!r}")
    if vr == "DA" and item and not _is_calendar_date(item):
        raise InvalidTagValue(f"{where}: {item!r} is not a calendar date (YYYYMMDD)")
    if vr in CHARSET_VRS and not item.isascii():
        _require_encodable(ds, where, item)


_CONTROL_OR_LINE = re.compile(f"{_CONTROL.pattern}|{_LINE_CONTROL.pattern}")


def _is_calendar_date(text: str) -> bool:
    from datetime import datetime

    try:
        datetime.strptime(text, "%Y%m%d")
    except ValueError:
        return False
    return True


def _require_encodable(ds: Dataset, where: str, text: str) -> None:
    declared = ds.get("SpecificCharacterSet") or "ISO_IR 6"
    # pydicom maps ISO_IR 6 to 'iso8859' (Latin-1 in Python); the standard means plain ASCII
    encodings = ["ascii"] if declared == "ISO_IR 6" else convert_encodings(declared)
    if any(_encodes(text, encoding) for encoding in encodings):
        return
    if len(encodings) > 1 and all(any(_encodes(c, e) for e in encodings) for c in text):
        return  # pydicom switches between the declared character sets with escape codes
    raise InvalidTagValue(
        f"{where}: {text!r} cannot be written in Specific Character Set {declared!s}; "
        "also set SpecificCharacterSet='ISO_IR 192' (UTF-8) in the same change"
    )


def _encodes(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except (UnicodeError, LookupError):
        return False
    return True


def _mirror_into_file_meta(ds: Dataset) -> None:
    """Keep the file meta's Media Storage SOP Class/Instance UID equal to the dataset's."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        return
    for keyword, meta_keyword in META_MIRRORS.items():
        if keyword in ds and meta_keyword in meta:
            setattr(meta, meta_keyword, ds[keyword].value)


def _entries(ds: Dataset) -> list[TagEntry]:
    return [_entry(element) for element in ds]


def _entry(element: DataElement) -> TagEntry:
    tag = f"{element.tag.group:04X},{element.tag.element:04X}"
    keyword = element.keyword or ""
    if element.VR == "SQ":
        return TagEntry(tag, keyword, "SQ", None, items=[_entries(item) for item in element.value])
    if element.VR in BINARY_VRS or keyword in PIXEL_DATA_KEYWORDS:
        raw = element.value
        return TagEntry(tag, keyword, element.VR, None, length=len(raw) if raw is not None else 0)
    return TagEntry(tag, keyword, element.VR, _plain(element.value))


def _plain(value: Any) -> Any:
    """A JSON-friendly form of a pydicom value (str, int, float, list or None)."""
    if isinstance(value, (list, MultiValue)):
        return [_plain(item) for item in value]
    if isinstance(value, BaseTag):
        return f"{value.group:04X},{value.element:04X}"
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)
