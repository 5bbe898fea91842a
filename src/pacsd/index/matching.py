"""Attribute matching of PS3.4 C.2.2.2, written once for C-FIND and QIDO-RS.

A query value becomes a `Condition` (universal, single value, wildcard, range, or a list of
these); a condition becomes a SQLAlchemy Core expression over one column, or tests a value in
Python.  It knows nothing of tables, levels or protocols (see `query_keys` and `services.query`).

Date-times (DT) with a UTC offset (&ZZXX) are compared in UTC, both the stored value and the
query's bounds; a DT without an offset is in its creator's local time, which the archive cannot
know, so it is compared as written.  (No DT is an index column: DT keys match in Python.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, true

RANGE_VRS = {"DA", "TM", "DT"}
PERSON_NAME_GROUPS = "="  # joins a person name's alphabetic, ideographic and phonetic groups
# VRs whose values are never wildcard-matched: a '*' or '?' there is a literal character.
_NO_WILDCARD_VRS = {"UI", "DA", "TM", "DT", "IS", "DS", "SL", "SS", "UL", "US", "FL", "FD", "AT"}
LIKE_ESCAPE = "\\"
# Appended to the upper end of a range so that a less precise bound includes the whole unit:
# StudyTime=-1015 includes 101530; '~' sorts after digits, '.', '+' and '-'.
_UPPER_PAD = "~"


@dataclass(frozen=True)
class Condition:
    """One parsed query key value.  `kind` is universal | single | wildcard | range | any."""

    kind: str
    value: str = ""  # single: the value; wildcard: the DICOM pattern with * and ?
    low: str = ""  # range: lower bound ('' = open)
    high: str = ""  # range: upper bound ('' = open)
    parts: tuple[Condition, ...] = ()  # any: the alternatives
    fold_case: bool = False  # compare upper-cased (person names)
    in_utc: bool = False  # date-times: compare values with a UTC offset in UTC

    @property
    def is_universal(self) -> bool:
        return self.kind == "universal"


UNIVERSAL = Condition("universal")


def parse_condition(vr: str, raw: str | Sequence[str] | None, fold_case: bool = False) -> Condition:
    """Parse a query key's value (as decoded text; several values for a list) into a Condition."""
    values = [raw] if raw is None or isinstance(raw, str) else list(raw)
    values = [_clean(vr, v) for v in values if v is not None]
    values = [v for v in values if v != ""]
    if not values:
        return UNIVERSAL
    parts = tuple(_parse_one(vr, v, fold_case) for v in values)
    if any(p.is_universal for p in parts):
        return UNIVERSAL
    return parts[0] if len(parts) == 1 else Condition("any", parts=parts, fold_case=fold_case)


def _clean(vr: str, value: str) -> str:
    text = str(value)
    return text.strip(" \x00") if vr != "PN" else text.strip(" \x00").rstrip("^=")


def _parse_one(vr: str, value: str, fold_case: bool) -> Condition:
    if fold_case:
        value = value.upper()
    if vr == "DT":
        return _parse_datetime(value)
    if vr in RANGE_VRS and "-" in value:
        low, _, high = value.partition("-")
        return Condition("range", low=low.strip(), high=high.strip(), fold_case=fold_case)
    if vr not in _NO_WILDCARD_VRS and ("*" in value or "?" in value):
        if set(value) == {"*"}:
            return UNIVERSAL
        return Condition("wildcard", value=value, fold_case=fold_case)
    return Condition("single", value=value, fold_case=fold_case)


def _parse_datetime(value: str) -> Condition:
    """A DT single value or range; a '-' after at least YYYYMMDDHH followed by four digits and
    nothing else starts a UTC offset, any other '-' separates the bounds."""
    bounds = None if _DT_OFFSET.fullmatch(value.strip()) else _DT_RANGE.fullmatch(value)
    if bounds is None:
        return Condition("single", value=in_utc(value), in_utc=True)
    return Condition("range", low=in_utc(bounds["low"]), high=in_utc(bounds["high"]), in_utc=True)


_DT = r"\d{4,}(?:\.\d*)?(?:[+-]\d{4})?"
_DT_RANGE = re.compile(rf"\s*(?P<low>(?:{_DT})?)\s*-\s*(?P<high>(?:{_DT})?)\s*")
_DT_OFFSET = re.compile(r"(?P<stamp>\d{10,})(?P<fraction>\.\d*)?(?P<sign>[+-])(?P<hours>\d\d)(?P<minutes>\d\d)")


def in_utc(value: str) -> str:
    """A DT value with a UTC offset (and at least hours) as the same instant in UTC, at the same
    precision and without the offset; any other value unchanged."""
    found = _DT_OFFSET.fullmatch(value.strip())
    if found is None:
        return value.strip()
    stamp, fraction = found["stamp"], found["fraction"] or ""
    if len(stamp) % 2 or len(stamp) > 14:
        return stamp + fraction
    shift = timedelta(hours=int(found["hours"]), minutes=int(found["minutes"]))
    layout = "%Y%m%d%H%M%S"[: len(stamp) - 2]  # %Y for four digits, a two-letter field per two more
    try:
        moment = datetime.strptime(stamp, layout)
    except ValueError:
        return stamp + fraction
    moment = moment - shift if found["sign"] == "+" else moment + shift
    return moment.strftime(layout) + fraction


# -- SQL ------------------------------------------------------------------------------------
def escape_like(text: str) -> str:
    """Make a user value literal inside a LIKE pattern (escape char, % and _)."""
    return (text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%")
            .replace("_", LIKE_ESCAPE + "_"))


def like_pattern(wildcard: str) -> str:
    """A DICOM wildcard pattern (* and ?) as a LIKE pattern with every other character literal."""
    return "".join("%" if ch == "*" else "_" if ch == "?" else escape_like(ch) for ch in wildcard)


def to_sql(condition: Condition, column: ColumnElement[Any], separator: str | None = None) -> ColumnElement[bool]:
    """The condition over `column` (bound parameters only).

    With a `separator` the column holds several values joined by it (ModalitiesInStudy's
    'CT\\MR', a person name's 'alphabetic=ideographic=phonetic'): the condition matches the
    whole text or any one of the values.
    """
    kind = condition.kind
    if kind == "universal":
        return true()
    if kind == "any":
        singles = [p.value for p in condition.parts if p.kind == "single"]
        if separator is None and len(singles) == len(condition.parts):
            return column.in_(singles)
        return or_(*(to_sql(p, column, separator) for p in condition.parts))
    if kind == "range":
        bounds = [column != ""]
        if condition.low:
            bounds.append(column >= condition.low)
        if condition.high:
            bounds.append(column <= condition.high + _UPPER_PAD)
        return and_(*bounds)
    pattern = like_pattern(condition.value) if kind == "wildcard" else escape_like(condition.value)
    whole = column.like(pattern, escape=LIKE_ESCAPE) if kind == "wildcard" else column == condition.value
    if separator is None:
        return whole
    sep = escape_like(separator)
    values = [f"{pattern}{sep}%"]
    if not _first_value_only(condition, separator):
        values += [f"%{sep}{pattern}", f"%{sep}{pattern}{sep}%"]
    return or_(whole, *(column.like(p, escape=LIKE_ESCAPE) for p in values))


def _first_value_only(condition: Condition, separator: str) -> bool:
    """A person name pattern in ASCII is matched against the alphabetic group only (the whole
    value or its first group): ideographic and phonetic groups are not written in ASCII, and
    testing them too cost three more LIKEs per row (a third of a name search's time)."""
    values = [part.value for part in condition.parts] if condition.kind == "any" else [condition.value]
    return separator == PERSON_NAME_GROUPS and all(value.isascii() for value in values)


# -- Python ---------------------------------------------------------------------------------
def matches(condition: Condition, value: str | Sequence[str] | None, separator: str | None = None) -> bool:
    """Whether a stored value (or any of several values) satisfies the condition."""
    if condition.is_universal:
        return True
    if value is None:
        return False
    candidates = [value] if isinstance(value, str) else [str(v) for v in value]
    if separator is not None:
        groups = 1 if _first_value_only(condition, separator) else None
        candidates = [part for text in candidates for part in (text, *text.split(separator)[:groups])]
    return any(_matches_text(condition, text.strip(" \x00")) for text in candidates)


def _matches_text(condition: Condition, text: str) -> bool:
    if condition.fold_case:
        text = text.upper()
    if condition.in_utc:
        text = in_utc(text)
    if condition.kind == "any":
        return any(_matches_text(p, text) for p in condition.parts)
    if condition.kind == "range":
        return bool(text) and (not condition.low or text >= condition.low) and (
            not condition.high or text <= condition.high + _UPPER_PAD)
    if condition.kind == "wildcard":
        return wildcard_matches(condition.value, text)
    return text == condition.value


def wildcard_matches(pattern: str, text: str) -> bool:
    """Whether `text` is matched by a DICOM wildcard pattern (* any run, ? one character).

    Without backtracking: the pattern is cut at its runs of '*' into pieces of fixed length; the
    first piece must start the text, the last end it, and each piece between is taken at its
    leftmost place after the previous one (taking it further right can never help the rest).
    Each piece is looked for once, so the cost is linear in the text's length times a piece's
    length, whatever the number of '*' (a pattern like *?*?*?*?! backtracked exponentially)."""
    pieces = _wildcard_pieces(pattern)
    if len(pieces) == 1:
        return pieces[0][0].fullmatch(text) is not None
    (first, _), *middle, (last, last_length) = pieces
    head = first.match(text)
    if head is None:
        return False
    start, end = head.end(), len(text) - last_length
    if end < start or last.fullmatch(text, end) is None:
        return False
    for piece, _ in middle:
        found = piece.search(text, start, end)
        if found is None:
            return False
        start = found.end()
    return True


@lru_cache(maxsize=256)
def _wildcard_pieces(pattern: str) -> tuple[tuple[re.Pattern, int], ...]:
    """The pattern's pieces between runs of '*', each compiled as a fixed-length expression
    ('?' any one character, everything else literal), with that length."""
    return tuple((re.compile("".join("." if ch == "?" else re.escape(ch) for ch in piece), re.DOTALL), len(piece))
                 for piece in re.split(r"\*+", pattern))


def never() -> ColumnElement[bool]:
    """A condition no row satisfies (a key value that cannot match its column's type)."""
    return false()
