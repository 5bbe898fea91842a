"""Make a hostile tag value safe to use as one path component.

No separators, no `..`, no leading dots, no control characters, bounded length (in UTF-8
bytes), never empty.  Every value that reaches a path goes through `path_component`.
"""

from __future__ import annotations

import re
import unicodedata

MAX_COMPONENT_BYTES = 64
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_SPACES = re.compile(r"\s+")
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # in ASCII, the only characters of the removed categories


def path_component(value: object, default: str = "UNKNOWN", max_bytes: int = MAX_COMPONENT_BYTES) -> str:
    """Return `value` as a safe single path component (`default` when nothing is left)."""
    text = str(value if value is not None else "")
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
