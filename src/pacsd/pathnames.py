"""Names that become paths: a hostile tag value made safe as one path component, and the rules
of a file-layout template.  Pure text rules, no files: both the settings (`config`) and the
layouts (`storage`) use them.

`path_component`: no separators, no `..`, no leading dots, no control characters, bounded length
(in UTF-8 bytes), never empty.  Every value that reaches a path goes through it.
"""

from __future__ import annotations

import re
import string
import unicodedata
from pathlib import PurePosixPath

from pydicom.datadict import keyword_dict

MAX_COMPONENT_BYTES = 64
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_SPACES = re.compile(r"\s+")
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # in ASCII, the only characters of the removed categories
_PLAIN_NAME_CHARACTERS = string.ascii_letters + string.digits + ".-_"  # kept as they are, but at the ends


_MADE_SAFE: dict[tuple[str, str, int], str] = {}  # recent answers of path_component
_MADE_SAFE_ENTRIES = 256  # then the memo starts again (the SOP components of ~120 images fill it)
_MADE_SAFE_LONGEST = 256  # longer texts are not remembered: the memo stays under ~100 KB


def path_component(value: object, default: str = "UNKNOWN", max_bytes: int = MAX_COMPONENT_BYTES) -> str:
    """Return `value` as a safe single path component (`default` when nothing is left).

    Remembered for recent texts: the images of a series repeat their patient, study and series
    components (about 2 us each to make safe)."""
    text = str(value if value is not None else "")
    if len(text) > _MADE_SAFE_LONGEST:
        return _made_safe(text, default, max_bytes)
    key = (text, default, max_bytes)
    safe = _MADE_SAFE.get(key)
    if safe is None:
        safe = _made_safe(text, default, max_bytes)
        if len(_MADE_SAFE) >= _MADE_SAFE_ENTRIES:
            _MADE_SAFE.clear()
        _MADE_SAFE[key] = safe
    return safe


def _made_safe(text: str, default: str, max_bytes: int) -> str:
    if not text.strip(_PLAIN_NAME_CHARACTERS):  # a UID, or "UID.dcm": nothing to replace or remove
        return text.strip("._")[:max_bytes].rstrip("._") or default
    if text.isascii():  # the usual UID or ID: NFC changes no ASCII text, and Cc is all it can hold
        text = _ASCII_CONTROL.sub("", text)
    else:
        text = unicodedata.normalize("NFC", text)
        text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co"))
    text = _UNSAFE.sub("_", text)
    text = _SPACES.sub("_", text.strip())
    text = text.strip("._ ")
    encoded = text.encode("utf-8")[:max_bytes]
    text = encoded.decode("utf-8", "ignore").rstrip("._ ")
    return text or default


# -- layout templates ------------------------------------------------------------------------
NAMED_TEMPLATES: dict[str, str] = {
    "hierarchical": "{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm",
    "flat": "{SOPInstanceUID}.dcm",
    "date": "{StudyYear}/{StudyMonth}/{StudyDay}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm",
}
DERIVED_FIELDS = {"StudyYear", "StudyMonth", "StudyDay"}
OTHER_SCHEMES = ("accounts",)  # schemes that are not templates (`pacsd.storage.schemes.SCHEMES`)


def _placeholders(template: str) -> list[str]:
    return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]


def check_template_fields(template: str) -> list[str]:
    """The template's fields; raise ValueError when one names no DICOM keyword."""
    try:
        fields = _placeholders(template)
    except ValueError as exc:
        raise ValueError(f"bad path template {template!r}: {exc}") from None
    for field in fields:
        for keyword in field.split("|"):
            if keyword not in keyword_dict and keyword not in DERIVED_FIELDS:
                raise ValueError(f"path template field {{{keyword}}} is not a DICOM keyword")
    return fields


def check_naming(naming: str) -> None:
    """Raise ValueError when `naming` is neither a named scheme nor a usable template."""
    if naming in NAMED_TEMPLATES or naming in OTHER_SCHEMES:
        return
    if "{" not in naming:
        known = ", ".join([*NAMED_TEMPLATES, *OTHER_SCHEMES])
        raise ValueError(f"{naming!r} is neither a naming scheme ({known}) nor a path template")
    fields = check_template_fields(naming)
    parts = PurePosixPath(naming).parts
    if naming.startswith(("/", "\\")) or any(part in ("..", ".") for part in parts):
        raise ValueError(f"path template {naming!r} must be relative and must not contain '..'")
    if "SOPInstanceUID" not in fields:
        raise ValueError(f"path template {naming!r} must contain {{SOPInstanceUID}} to be unique")
