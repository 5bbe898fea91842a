"""Find: the matches of a query identifier at one level, as answers (`services.answers`).

Protocol-neutral: C-FIND hands it the request identifier, QIDO-RS a mapping of keys; both get
answers holding the requested keys (empty ones filled in) plus the unique keys above the level.
Keys kept as index columns are matched in SQL; any other key is matched in Python against the
stored DICOM JSON header of the first instance of the match, after SQL has narrowed the rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from sqlalchemy import ColumnElement, Connection, Engine, Row, Select, select

from pacsd.dicom.header import INTEGER_STRING_RANGE
from pacsd.dicom.nesting import load_header_json
from pacsd.errors import PacsError
from pacsd.index.matching import UNIVERSAL, Condition, matches, never, parse_condition, to_sql
from pacsd.index.query_keys import (
    COLUMN_KEYS,
    LEVEL_TABLES,
    LEVELS,
    MODEL_TOP,
    UNIQUE_KEYS,
    KeyColumn,
    joined_tables,
    levels_down_to,
)
from pacsd.index.schema import instances, patients, studies
from pacsd.services.answers import Answer, AnswerElement, AnswerLayout

log = logging.getLogger(__name__)

_SKIPPED_TAGS = {0x00080005, 0x00080052}  # Specific Character Set, Query/Retrieve Level
_CONSTANT_KEYS = ("RetrieveAETitle", "InstanceAvailability")
_ROWS_PER_FETCH = 200  # rows read from the database at once (fewer round trips, bounded memory)


class InvalidQuery(PacsError):
    """A query names no level, an unknown level, or a level its information model lacks."""


@dataclass
class QueryKey:
    """One key of a query: what it is, how its value matches, and where the index keeps it."""

    tag: int
    vr: str
    condition: Condition
    column: KeyColumn | None  # None: matched and answered from the stored header
    below_level: bool = False  # a key of a level below the query's: returned empty, not matched
    keyword: str = field(init=False)

    def __post_init__(self) -> None:
        self.keyword = keyword_for_tag(self.tag) or ""


class Matches:
    """The answers of one find, lazily; `truncated` is set once the limit cut the answer short."""

    def __init__(self) -> None:
        self._answers: Iterator[Answer] = iter(())
        self.truncated = False

    def __iter__(self) -> Iterator[Answer]:
        return self._answers


class QueryService:
    """Matches query keys against the index; one per archive, safe to share between threads."""

    def __init__(self, engine: Engine, retrieve_aet: str = "", fold_person_names: bool = True,
                 max_results: int = 0) -> None:
        self.engine = engine
        self.retrieve_aet = retrieve_aet
        self.fold_person_names = fold_person_names
        self.max_results = max_results

    def find(self, level: str, keys: Dataset | Mapping[str, Any], model: str = "study",
             limit: int | None = None, cancelled: Callable[[], bool] = lambda: False,
             offset: int = 0, accounts: Collection[str] | None = None) -> Matches:
        """The matches of `keys` at `level` (PATIENT, STUDY, SERIES or IMAGE).

        `keys` is a request identifier or a mapping of keyword (or 8-digit hex tag) to value
        (text, or a list for several values); an empty value asks for the key to be returned.
        `limit` (default: the max_results setting; 0 = none) bounds the number of answers,
        after the first `offset` matches are skipped.  `accounts` (None = all) keeps only
        studies of those physician accounts (and patients having one).
        """
        level = check_level(level, model)
        query_keys = parse_keys(keys, self.fold_person_names)
        limit = self.max_results if limit is None else limit
        result = Matches()
        result._answers = self._answers(level, model, query_keys, _Page(limit, offset, accounts), cancelled, result)
        return result

    # -- the query ------------------------------------------------------------------------
    def _answers(self, level: str, model: str, keys: list[QueryKey], page: _Page,
                 cancelled: Callable[[], bool], result: Matches) -> Iterator[Answer]:
        in_reach = set(levels_down_to(level))
        sql_keys, python_keys = [], []
        for key in keys:
            if key.column is not None and key.column.level not in in_reach:
                key.below_level, key.column = True, None
            elif key.condition.is_universal:
                continue
            elif self._matchable_in_sql(key):
                sql_keys.append(key)
            else:
                python_keys.append(key)
        answer_keys = self._answer_keys(level, model, keys)
        needs_header = any(k.column is None and not k.below_level and k.keyword not in _CONSTANT_KEYS
                           for k in answer_keys + python_keys)
        statement = visible_only(self._statement(level, answer_keys, sql_keys, needs_header and level == "IMAGE"),
                             level, page.accounts)
        limit, to_skip = page.limit, page.offset
        if not python_keys:
            statement, to_skip = statement.offset(page.offset or None), 0
            if limit:
                statement = statement.limit(limit + 1)
        answer = self._answer_maker(level, answer_keys, needs_header)
        count = 0
        with self.engine.connect() as conn:
            for row in conn.execute(statement).yield_per(_ROWS_PER_FETCH):
                if cancelled():
                    return
                header = self._header(conn, level, row) if needs_header else {}
                if not all(self._python_match(key, row, header) for key in python_keys):
                    continue
                if to_skip:
                    to_skip -= 1
                    continue
                if limit and count >= limit:
                    result.truncated = True
                    log.warning("find at %s level stopped at the result limit of %d", level, limit)
                    return
                count += 1
                yield answer(row, header)

    def _matchable_in_sql(self, key: QueryKey) -> bool:
        column = key.column
        if column is None:
            return False
        if column.integer:
            return key.condition.kind == "single" or (
                key.condition.kind == "any" and all(p.kind == "single" for p in key.condition.parts))
        return not key.condition.fold_case or column.folded is not None

    def _statement(self, level: str, answer_keys: list[QueryKey], sql_keys: list[QueryKey],
                   with_header: bool) -> Select:
        table = LEVEL_TABLES[level]
        columns = {table.c.pk}
        columns |= {k.column.column for k in answer_keys + sql_keys if k.column is not None}
        if with_header:
            columns.add(instances.c.header_json)
        statement = select(*sorted(columns, key=lambda c: (c.table.name, c.name))).select_from(joined_tables(level))
        for key in sql_keys:
            statement = statement.where(sql_condition(key))
        return statement.order_by(table.c.pk)

    def _answer_keys(self, level: str, model: str, keys: list[QueryKey]) -> list[QueryKey]:
        """The requested keys plus the unique keys of this level and the levels above it."""
        present = {k.tag for k in keys}
        top = LEVELS.index(MODEL_TOP[model])
        unique = [UNIQUE_KEYS[lv] for lv in levels_down_to(level)[top:]]
        extra = [_column_key(kw) for kw in unique if tag_for_keyword(kw) not in present]
        return keys + extra

    # -- values ---------------------------------------------------------------------------
    def _header(self, conn: Connection, level: str, row: Row) -> dict:
        """The DICOM JSON header of the match (its first instance above IMAGE level)."""
        if level == "IMAGE":
            text = row.header_json
        else:
            statement = select(instances.c.header_json).select_from(joined_tables("IMAGE"))
            statement = statement.where(LEVEL_TABLES[level].c.pk == row.pk).order_by(instances.c.pk).limit(1)
            text = conn.execute(statement).scalar()
        return load_header_json(text)

    def _python_match(self, key: QueryKey, row: Row, header: dict) -> bool:
        separator = key.column.separator if key.column is not None else ("=" if key.vr == "PN" else None)
        return matches(key.condition, _texts(self._value(key, row._mapping, header)), separator)

    def _value(self, key: QueryKey, values: Mapping, header: dict) -> Any:
        """A key's value in a match: from its index column in `values` (the row's mapping), else
        from the stored header."""
        if key.below_level:
            return None
        if key.keyword == "RetrieveAETitle":
            return self.retrieve_aet
        if key.keyword == "InstanceAvailability":
            return "ONLINE"
        if key.column is not None:
            value = values[key.column.column]
            if key.column.separator == "\\" and value:
                return value.split("\\")
            return value
        element = _header_element(header, key.tag)
        return None if element is None else element.value

    def _answer_maker(self, level: str, answer_keys: list[QueryKey],
                      needs_header: bool) -> Callable[[Row, dict], Answer]:
        """How a matching row (and its stored header) becomes an answer.  Without a header, all
        answers share one `AnswerLayout` and each holds only its texts."""
        if needs_header:
            return partial(self._answer, level, answer_keys)
        layout = AnswerLayout([(key.tag, key.vr) for key in answer_keys])
        texts_of = [self._texts_getter(key) for key in answer_keys]

        def answer(row: Row, _header: dict) -> Answer:
            values = row._mapping
            return Answer(level, layout, [texts(values) for texts in texts_of])
        return answer

    def _texts_getter(self, key: QueryKey) -> Callable[[Mapping], tuple[str, ...]]:
        """How a key's texts are read from a row's mapping, for a query without stored headers:
        what `_value` finds, as `_texts`."""
        if key.column is None:  # a key below the level, or a constant
            constant = _texts(self._value(key, {}, {}))
            return lambda _values: constant
        column = key.column.column
        if key.column.separator == "\\":
            return lambda values: _texts(values[column].split("\\") if values[column] else values[column])
        return lambda values: _texts(values[column])

    def _answer(self, level: str, answer_keys: list[QueryKey], row: Row, header: dict) -> Answer:
        answer = Answer(level)
        elements, values = answer.elements, row._mapping
        for key in answer_keys:
            stored = header.get(f"{key.tag:08X}") if key.column is None and header else None
            if isinstance(stored, dict) and "BulkDataURI" not in stored:
                elements[key.tag] = AnswerElement(stored.get("vr", key.vr), stored=stored)
            else:
                elements[key.tag] = AnswerElement(key.vr, _texts(self._value(key, values, header)))
        return answer


@dataclass(frozen=True)
class _Page:
    limit: int
    offset: int = 0
    accounts: Collection[str] | None = None


def visible_only(statement: Select, level: str, accounts: Collection[str] | None) -> Select:
    """Only rows of studies in `accounts` (patients: with such a study); None = every row."""
    if accounts is None:
        return statement
    allowed = studies.c.account.in_(sorted(accounts))
    if level == "PATIENT":
        return statement.where(patients.c.pk.in_(select(studies.c.patient_pk).where(allowed)))
    return statement.where(allowed)


def check_level(level: str, model: str) -> str:
    level = (level or "").strip().upper()
    if model not in MODEL_TOP:
        raise InvalidQuery(f"unknown information model {model!r}: use 'patient' or 'study'")
    if level not in LEVELS:
        raise InvalidQuery(f"unknown query level {level!r}: use PATIENT, STUDY, SERIES or IMAGE")
    if LEVELS.index(level) < LEVELS.index(MODEL_TOP[model]):
        raise InvalidQuery(f"the {model} root model has no {level} level")
    return level


def parse_keys(keys: Dataset | Mapping[str, Any], fold_person_names: bool = True) -> list[QueryKey]:
    """The query keys of an identifier or of a keyword/tag -> value mapping."""
    if isinstance(keys, Dataset):
        items = [(int(e.tag), e.VR, _element_text(e.value, e.VR)) for e in keys
                 if int(e.tag) not in _SKIPPED_TAGS and e.tag.group not in (0x0000, 0x0002)]
    else:
        items = []
        for name, value in keys.items():
            tag = _tag_of(name)
            if tag in _SKIPPED_TAGS:
                continue
            if isinstance(value, str) and "\\" in value:
                value = value.split("\\")
            items.append((tag, _vr_of(tag), value))
    result = []
    for tag, vr, value in items:
        keyword = keyword_for_tag(tag) or ""
        fold = fold_person_names and vr == "PN"
        condition = UNIVERSAL if vr == "SQ" else parse_condition(vr, value, fold)
        result.append(QueryKey(tag, vr, condition, COLUMN_KEYS.get(keyword)))
    return result


def _column_key(keyword: str) -> QueryKey:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return QueryKey(tag, _vr_of(tag), UNIVERSAL, COLUMN_KEYS[keyword])


def sql_condition(key: QueryKey) -> ColumnElement[bool]:
    """The SQL condition of a key kept as a column."""
    column = key.column
    if column is None:
        raise ValueError(f"{key.tag:08X} is not kept as a column")
    if column.integer:  # a value no IS may hold ('x', '1.5', 99999999999999999999) matches nothing
        values = [int(p.value) for p in (key.condition.parts or (key.condition,))
                  if p.value.lstrip("+-").isdecimal() and p.value.isascii() and int(p.value) in INTEGER_STRING_RANGE]
        return column.column.in_(values) if values else never()
    target = column.folded if key.condition.fold_case and column.folded is not None else column.column
    return to_sql(key.condition, target, column.separator)


def _tag_of(name: str) -> int:
    tag = tag_for_keyword(name)
    if tag is None:
        try:
            tag = int(Tag(name.strip()))
        except (ValueError, TypeError, OverflowError):
            raise InvalidQuery(f"{name!r} is neither a DICOM keyword nor a tag") from None
    return tag


def _vr_of(tag: int) -> str:
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "UN"


def _element_text(value: Any, vr: str) -> str | list[str] | None:
    """A request element's value as text (a list for several values, None when empty)."""
    if vr == "SQ" or isinstance(value, (bytes, bytearray)):
        return None
    if isinstance(value, (MultiValue, list, tuple)):
        return [str(v) for v in value]
    return None if value is None else str(value)


def _texts(value: Any) -> tuple[str, ...]:
    """An answer value as DICOM text values (none when empty)."""
    if type(value) is str:  # most values: an index column's text
        return (value,) if value else ()
    if value is None:
        return ()
    if isinstance(value, (MultiValue, list, tuple)):
        return tuple(str(v) for v in value if v is not None and not isinstance(v, (bytes, Dataset)))
    return () if isinstance(value, bytes) else (str(value),)


def _header_element(header: dict, tag: int) -> DataElement | None:
    """One element of a stored DICOM JSON header, as a pydicom DataElement (None if absent)."""
    key = f"{tag:08X}"
    if key not in header:
        return None
    try:
        return Dataset.from_json({key: header[key]})[tag]
    except Exception:  # a malformed stored value answers as empty, it does not fail the query
        log.debug("cannot read %s from a stored header", key, exc_info=True)
        return None
