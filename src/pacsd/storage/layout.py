"""Where a file goes: naming schemes as path templates over one mechanism.

A template is a relative path with `{Keyword}` placeholders (DICOM keywords, plus StudyYear,
StudyMonth and StudyDay).  `hierarchical`, `flat` and `date` are named templates.  Each value
is sanitised into one path component; the template itself cannot climb out of the storage root.
"""

from __future__ import annotations

import string
from pathlib import PurePosixPath

from pydicom.datadict import keyword_dict
from pydicom.dataset import Dataset

from pacsd.dicom.header import first_text
from pacsd.storage.sanitize import path_component

NAMED_TEMPLATES: dict[str, str] = {
    "hierarchical": "{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm",
    "flat": "{SOPInstanceUID}.dcm",
    "date": "{StudyYear}/{StudyMonth}/{StudyDay}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm",
}
DERIVED_FIELDS = {"StudyYear", "StudyMonth", "StudyDay"}


def _placeholders(template: str) -> list[str]:
    return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]


def check_naming(naming: str) -> None:
    """Raise ValueError when `naming` is neither a named scheme nor a usable template."""
    if naming in NAMED_TEMPLATES or naming in EXTRA_SCHEMES:
        return
    if "{" not in naming:
        known = ", ".join([*NAMED_TEMPLATES, *EXTRA_SCHEMES])
        raise ValueError(f"{naming!r} is neither a naming scheme ({known}) nor a path template")
    try:
        fields = _placeholders(naming)
    except ValueError as exc:
        raise ValueError(f"bad path template {naming!r}: {exc}") from None
    for field in fields:
        if field not in keyword_dict and field not in DERIVED_FIELDS:
            raise ValueError(f"path template field {{{field}}} is not a DICOM keyword")
    parts = PurePosixPath(naming).parts
    if naming.startswith(("/", "\\")) or any(part in ("..", ".") for part in parts):
        raise ValueError(f"path template {naming!r} must be relative and must not contain '..'")
    if "SOPInstanceUID" not in fields:
        raise ValueError(f"path template {naming!r} must contain {{SOPInstanceUID}} to be unique")


class TemplateLayout:
    """Lays files out by a path template; values are sanitised one component at a time."""

    def __init__(self, naming: str) -> None:
        check_naming(naming)
        self.template = NAMED_TEMPLATES.get(naming, naming)

    def _value(self, dataset: Dataset, field: str) -> str:
        if field in DERIVED_FIELDS:
            date = first_text(dataset, "StudyDate")
            date = date if len(date) >= 8 and date[:8].isdigit() else "00000000"
            return {"StudyYear": date[:4], "StudyMonth": date[4:6], "StudyDay": date[6:8]}[field]
        return first_text(dataset, field)

    def relative_path(self, dataset: Dataset) -> PurePosixPath:
        parts = []
        for segment in self.template.split("/"):
            rendered = "".join(
                literal + (path_component(self._value(dataset, field)) if field is not None else "")
                for literal, field, _, _ in string.Formatter().parse(segment)
            )
            parts.append(path_component(rendered, max_bytes=128))
        return PurePosixPath(*parts)


# Schemes that are not plain templates (e.g. physician accounts) register a factory here.
EXTRA_SCHEMES: dict[str, object] = {}


def make_layout(naming: str):
    factory = EXTRA_SCHEMES.get(naming)
    return factory() if callable(factory) else TemplateLayout(naming)
