"""The tag panel: an instance's stored DICOM JSON header as rows of tag, name, VR and value.

Bulk data is named, not shown; sequences are listed item by item, indented.
"""

from __future__ import annotations

from pydicom.datadict import keyword_for_tag

MAX_VALUE_CHARS = 200
MAX_ROWS = 2000


def _value_text(element: dict) -> str:
    if "BulkDataURI" in element or "InlineBinary" in element:
        return "(binary data)"
    values = element.get("Value", [])
    texts = []
    for value in values:
        if isinstance(value, dict):  # PN
            texts.append(value.get("Alphabetic", "") or value.get("Ideographic", ""))
        else:
            texts.append(str(value))
    text = "\\".join(texts)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "…"


def tag_rows(header: dict, depth: int = 0) -> list[dict]:
    """Rows of the header in tag order: {tag, name, vr, value, depth}."""
    rows: list[dict] = []
    for key in sorted(header):
        element = header[key]
        try:
            name = keyword_for_tag(int(key, 16)) or ("(private)" if int(key[:4], 16) % 2 else "")
        except ValueError:
            continue
        vr = element.get("vr", "")
        tag = f"({key[:4]},{key[4:]})"
        if vr == "SQ":
            items = element.get("Value", [])
            rows.append({"tag": tag, "name": name, "vr": vr, "value": f"{len(items)} item(s)", "depth": depth})
            for item in items:
                rows.extend(tag_rows(item or {}, depth + 1))
        else:
            rows.append({"tag": tag, "name": name, "vr": vr, "value": _value_text(element), "depth": depth})
        if len(rows) >= MAX_ROWS:
            break
    return rows[:MAX_ROWS]
