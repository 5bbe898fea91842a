"""Where a file goes: naming schemes as path templates over one mechanism.

A template is a relative path with `{Keyword}` placeholders (DICOM keywords, plus StudyYear,
StudyMonth and StudyDay; `{A|B}` takes B when A is empty).  `hierarchical`, `flat` and `date` are
named templates; the physician accounts scheme is `pacsd.storage.accounts` (`pacsd.storage.schemes`
makes the layout a setting names).  Each value is sanitised into one path component; the template
itself cannot climb out of the storage root (the rules: `pacsd.pathnames`).
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol

from pydicom.dataset import Dataset

from pacsd.dicom.header import first_text
from pacsd.pathnames import (
    DERIVED_FIELDS,
    NAMED_TEMPLATES,
    check_naming,
    check_template_fields,
    path_component,
)


def field_value(dataset: Dataset, field: str) -> str:
    """The text of one template field: a keyword, a derived date part, or `A|B` alternatives."""
    for keyword in field.split("|"):
        if keyword in DERIVED_FIELDS:
            date = first_text(dataset, "StudyDate")
            date = date if len(date) >= 8 and date[:8].isdigit() else "00000000"
            value = {"StudyYear": date[:4], "StudyMonth": date[4:6], "StudyDay": date[6:8]}[keyword]
        else:
            value = first_text(dataset, keyword)
        if value:
            return value
    return ""


def render_component(template: str, dataset: Dataset) -> str:
    """Fill one path segment's template; each value and the whole segment are sanitised."""
    rendered = "".join(
        literal + (path_component(field_value(dataset, field)) if field is not None else "")
        for literal, field, _, _ in string.Formatter().parse(template)
    )
    return path_component(rendered, max_bytes=128)


@dataclass(frozen=True)
class Placement:
    """Where one instance goes, and (for account schemes) whose account it is and why."""

    path: PurePosixPath
    account: str = ""
    reason: str = ""


class Layout(Protocol):
    def placement(self, dataset: Dataset, arrival_in_series: Callable[[], int]) -> Placement:
        """Where `dataset` goes; `arrival_in_series()` numbers it in its series when asked."""

    def study_dir_of(self, path: PurePosixPath) -> PurePosixPath | None:
        """The study folder holding a file this layout placed, or None when it has none."""


class TemplateLayout:
    """Lays files out by a path template; values are sanitised one component at a time."""

    def __init__(self, naming: str) -> None:
        check_naming(naming)
        self.template = NAMED_TEMPLATES.get(naming, naming)
        segments = self.template.split("/")
        # The study folder: the path up to the segment naming the study, if one does.
        self._study_depth = next((index + 1 for index, segment in enumerate(segments)
                                  if "StudyInstanceUID" in check_template_fields(segment)), None)

    def relative_path(self, dataset: Dataset) -> PurePosixPath:
        return PurePosixPath(*(render_component(segment, dataset) for segment in self.template.split("/")))

    def placement(self, dataset: Dataset, arrival_in_series: Callable[[], int] | None = None) -> Placement:
        return Placement(self.relative_path(dataset))

    def study_dir_of(self, path: PurePosixPath) -> PurePosixPath | None:
        if self._study_depth is None or len(path.parts) <= self._study_depth:
            return None
        return PurePosixPath(*path.parts[: self._study_depth])

