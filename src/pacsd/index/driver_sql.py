"""Prebuilt SQLAlchemy Core statements run straight through the DBAPI cursor of a connection.

`Connection.execute` costs tens of µs of Python per statement for a few µs of SQLite: for the
few statements the writer runs for every received instance that is most of its time.  A
`DriverStatement` compiles its statement once per dialect - and per set of parameter names, and
per length of each expanding IN list - into the driver's SQL string (qmark for sqlite3,
pyformat for psycopg) and parameter order, and keeps the bind processors SQLAlchemy applies to
each value (SQLite's DateTime is stored as a string).  Executing is then building one tuple or
dict and one cursor call on the connection's DBAPI connection, inside the transaction the
`Connection` holds: the same SQL and the same stored values as through `Connection.execute`.

Refused when compiling, as the driver cannot do SQLAlchemy's part of them: INSERTs or UPDATEs
that leave out a column with a Python-side default or onupdate (SQLAlchemy would fill it in),
RETURNING, values bound inside the statement (every parameter comes from the caller),
parameters rendered into the SQL (literal_execute), bind names that need escaping,
and selected columns with a result processor.  Driver errors are raised as SQLAlchemy's
`DBAPIError` subclasses (`IntegrityError`, `OperationalError`, ...) as `Connection.execute`
raises them.

Compiling reads SQLAlchemy compiler attributes it does not promise to keep (`positiontup`,
`construct_expanded_state`, `escaped_bind_names`, ...; `_COMPILER_NAMES`).  This module is the
one place that does: `check_sqlalchemy()` (at start-up, from `open_index`) compiles a probe and
looks for each; if one is missing (a release other than the pinned, tested `TESTED_SQLALCHEMY`),
it logs one warning and every `DriverStatement` runs through `Connection.execute`: slower, same
results.
"""

from __future__ import annotations

import functools
import logging
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any
from weakref import WeakKeyDictionary, ref

import sqlalchemy
from sqlalchemy import Column, Connection, Integer, MetaData, Table, bindparam, select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BindParameter, ClauseElement
from sqlalchemy.sql.sqltypes import TupleType

Parameters = Mapping[str, Any]

log = logging.getLogger(__name__)

TESTED_SQLALCHEMY = "2.1"  # pyproject pins this minor release
# What `_compile` reads of a compiled statement and of its expanded state.
_COMPILER_NAMES = ("insert_prefetch", "update_prefetch", "effective_returning", "literal_execute_params",
                   "post_compile_params", "binds", "escaped_bind_names", "positional", "construct_expanded_state")
_EXPANDED_STATE_NAMES = ("statement", "parameters", "positiontup", "parameter_expansion")


@functools.cache
def check_sqlalchemy() -> bool:
    """True when this SQLAlchemy has every compiler name the driver path reads (checked once per
    process, on a probe statement for SQLite); else one warning, and False: statements then run
    through `Connection.execute`."""
    from sqlalchemy.dialects import sqlite

    probe = Table("probe", MetaData(), Column("a", Integer))
    missing: list[str] = []
    try:
        compiled = select(probe.c.a).where(probe.c.a.in_(bindparam("xs", expanding=True))).compile(
            dialect=sqlite.dialect(), column_keys=["xs"], for_executemany=True)
        missing = [name for name in _COMPILER_NAMES if not hasattr(compiled, name)]
        if not missing:
            state = compiled.construct_expanded_state({"xs": [1, 2]})
            missing = [f"ExpandedState.{name}" for name in _EXPANDED_STATE_NAMES if not hasattr(state, name)]
    except Exception as exc:  # noqa: BLE001 - whatever a changed compiler raises: fall back
        missing = [f"compiling a probe: {exc}"]
    if missing:
        log.warning("SQLAlchemy %s lacks what the index's driver path relies on (%s; tested with %s.x): "
                    "statements go through Connection.execute", sqlalchemy.__version__, ", ".join(missing[:5]),
                    TESTED_SQLALCHEMY)
        return False
    return True


class DriverStatement:
    """One SQLAlchemy statement, executed on the driver's cursor with its SQL compiled once.

    `execute(conn, parameters)` takes what `Connection.execute` takes: one mapping, or a list of
    mappings (executemany; all with the same names; an empty list executes nothing).
    `rows(conn, parameters)` returns the selected rows as named tuples (`row.sop_uid`)."""

    def __init__(self, statement: Any) -> None:  # an Executable ClauseElement (insert, update, select)
        self.statement = statement
        self._expanding = tuple(dict.fromkeys(
            element.key for element in visitors.iterate(statement)
            if isinstance(element, BindParameter) and element.expanding))
        self._plans: WeakKeyDictionary[Dialect, dict[tuple, _Plan]] = WeakKeyDictionary()
        self._last: tuple[Callable[[], Dialect | None], dict[tuple, _Plan]] = (lambda: None, {})  # the last dialect's plans

    def execute(self, conn: Connection, parameters: Parameters | Sequence[Parameters]) -> None:
        if isinstance(parameters, Mapping):
            self._run(conn, [parameters], many=False, fetch=False)
        elif parameters:
            self._run(conn, parameters, many=len(parameters) > 1, fetch=False)

    def rows(self, conn: Connection, parameters: Parameters) -> list[Any]:
        return self._run(conn, [parameters], many=False, fetch=True)

    def _run(self, conn: Connection, parameters: Sequence[Parameters], many: bool, fetch: bool) -> list[Any]:
        """Execute once per parameter set (`many`) or once with the first; the rows when `fetch`."""
        if not check_sqlalchemy():
            result = conn.execute(self.statement, list(parameters) if many else parameters[0])
            return list(result.all()) if fetch else []
        if many and self._expanding:
            raise ValueError("an expanding IN cannot be executed with many parameter sets")
        plan = self._plan(conn.dialect, parameters[0])
        if fetch and plan.row is None:
            raise ValueError("the statement selects no columns")
        cursor: Any = None
        try:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]  # open: it runs
            if many:
                cursor.executemany(plan.sql, [plan.driver_parameters(values) for values in parameters])
            else:
                cursor.execute(plan.sql, plan.driver_parameters(parameters[0]))
            row: Any = plan.row
            return [row._make(values) for values in cursor.fetchall()] if fetch else []
        except conn.dialect.loaded_dbapi.Error as error:
            raise _sqlalchemy_error(conn.dialect, plan, error) from error
        finally:
            if cursor is not None:
                cursor.close()

    def _plan(self, dialect: Dialect, parameters: Parameters) -> _Plan:
        expanding = self._expanding
        key = (tuple(parameters), *(len(parameters[name]) for name in expanding)) if expanding \
            else (tuple(parameters),)
        last_dialect, plans = self._last
        if last_dialect() is not dialect:  # another engine's dialect (tests open many): look it up
            known = self._plans.get(dialect)
            plans = known if known is not None else self._plans.setdefault(dialect, {})
            self._last = (ref(dialect), plans)
        plan = plans.get(key)
        if plan is None:
            plan = plans[key] = _compile(self.statement, dialect, parameters, self._expanding)
        return plan


@dataclass(frozen=True)
class _Plan:
    """The driver's SQL and how to turn the caller's parameters into the driver's."""

    sql: str
    expansion: dict[str, list[str]]  # expanding parameter -> the names of its elements in `sql`
    values_in_order: Callable[[Parameters], tuple]  # the driver's parameter values, unprocessed
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]  # (position, bind processor)
    named: tuple[str, ...] | None  # the parameter names of a named paramstyle; None: positional
    row: type | None  # named tuple of the selected columns

    def driver_parameters(self, parameters: Parameters) -> tuple | dict:
        if self.expansion:
            parameters = dict(parameters)
            for name, element_names in self.expansion.items():
                parameters.update(zip(element_names, parameters.pop(name)))
        values = self.values_in_order(parameters)
        if self.processors:
            processed = list(values)
            for position, process in self.processors:
                processed[position] = process(processed[position])
            values = tuple(processed)
        return values if self.named is None else dict(zip(self.named, values))


def _compile(statement: ClauseElement, dialect: Dialect, parameters: Parameters,
             expanding: tuple[str, ...]) -> _Plan:
    # A SQLCompiler: the attributes read below are checked by `check_sqlalchemy`.
    compiled: Any = statement.compile(dialect=dialect, column_keys=list(parameters), for_executemany=True)
    if compiled.insert_prefetch or compiled.update_prefetch:
        missing = [column.key for column in (*compiled.insert_prefetch, *compiled.update_prefetch)]
        raise ValueError(f"columns with Python-side defaults left out: {missing} (give every column)")
    if compiled.effective_returning:
        raise ValueError("RETURNING is not supported")
    if compiled.literal_execute_params or any(not bind.expanding for bind in compiled.post_compile_params):
        raise ValueError("parameters rendered into the SQL are not supported")
    if not_given := sorted(set(compiled.binds) - set(parameters)):
        raise ValueError(f"parameters not given: {not_given} (values bound in the statement are not supported)")
    if compiled.escaped_bind_names:
        raise ValueError(f"bind names that need escaping: {sorted(compiled.escaped_bind_names)}")
    samples = {name: [None] * len(parameters[name]) if name in expanding else None for name in compiled.binds}
    state = compiled.construct_expanded_state(samples)
    source = {element: name for name, elements in state.parameter_expansion.items() for element in elements}
    names = list(state.positiontup) if compiled.positional else list(state.parameters)
    processors = tuple(
        (position, process) for position, name in enumerate(names)
        if (process := _bind_processor(compiled.binds[source.get(name, name)], dialect)) is not None)
    return _Plan(sql=state.statement, expansion=dict(state.parameter_expansion),
                 values_in_order=_getter(names), processors=processors,
                 named=None if compiled.positional else tuple(names), row=_row_type(statement, dialect))


def _bind_processor(bind: BindParameter, dialect: Dialect) -> Callable[[Any], Any] | None:
    if isinstance(bind.type, TupleType):
        raise ValueError(f"tuple parameters are not supported: {bind.key}")
    return bind.type.dialect_impl(dialect).bind_processor(dialect)


def _getter(names: list[str]) -> Callable[[Parameters], tuple]:
    if len(names) == 1:
        (name,) = names
        return lambda parameters: (parameters[name],)
    return itemgetter(*names) if names else lambda parameters: ()


def _row_type(statement: ClauseElement, dialect: Dialect) -> type | None:
    columns = getattr(statement, "selected_columns", None)
    if not columns:
        return None
    for column in columns:
        if column.type.dialect_impl(dialect).result_processor(dialect, None) is not None:
            raise ValueError(f"selected column {column.key} needs a result processor (not supported)")
    return namedtuple("Row", columns.keys())


def _sqlalchemy_error(dialect: Dialect, plan: _Plan, error: Exception) -> Exception:
    """The driver's error as SQLAlchemy's DBAPIError subclass (what callers catch)."""
    return DBAPIError.instance(plan.sql, None, error, dialect.loaded_dbapi.Error, dialect=dialect)
