"""Schema migrations with Alembic, the same for SQLite and PostgreSQL (`pacsd.index.migrations`).

A new, empty database gets the current schema at once and is stamped at head; an index made
before migrations existed (tables, no `alembic_version`) is stamped at the baseline and upgraded
in place; any other is upgraded.  PostgreSQL nodes starting together take turns (advisory lock).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from pacsd.errors import PacsError
from pacsd.index.schema import metadata

log = logging.getLogger(__name__)

BASELINE = "0001"  # the schema as `create_all` made it before migrations existed
# Its tables: an index from before migrations may predate some (create_all made them as features
# landed); those are created before it is stamped at the baseline.
BASELINE_TABLES = ("patients", "studies", "series", "instances", "changes", "commitment_requests",
                   "commitment_items", "commitment_deliveries", "users")
_LOCK_KEY = 0x70616373  # "pacs": pg_advisory_xact_lock key of schema changes


class SchemaOutOfDate(PacsError):
    """The index needs migrations and automatic upgrade is turned off."""


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # None: no alembic_version (empty, or made before migrations)
    head: str
    has_tables: bool

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for our migrations, run on `connection` (see migrations/env.py)."""
    config = Config()
    config.set_main_option("script_location", "pacsd.index:migrations")
    config.attributes["connection"] = connection
    return config


@functools.cache  # the migrations are part of the package: read once per process (and its children)
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # several heads, or none: a broken package
        raise RuntimeError("the index migrations have no single head revision")
    return head


def schema_state(conn: Connection) -> SchemaState:
    current = MigrationContext.configure(conn).get_current_revision()
    tables = set(inspect(conn).get_table_names()) - {"alembic_version"}
    return SchemaState(current, head_revision(), bool(tables & set(metadata.tables)))


def prepare_schema(engine: Engine, upgrade: bool = True) -> SchemaState:
    """Bring the index to the current schema; return the state it was found in."""
    with engine.begin() as conn:
        _lock_schema(conn)
        state = schema_state(conn)
        if state.up_to_date:
            return state
        if not upgrade:
            raise SchemaOutOfDate(
                f"the index schema is at {state.current or 'no revision'}, this pacsd needs {state.head}: "
                "run `pacsd db upgrade` (or set database.auto_upgrade: true)")
        config = alembic_config(conn)
        if not state.has_tables and state.current is None:
            metadata.create_all(conn)  # a new database: the current schema in one step
            command.stamp(config, "head")
            log.info("created the index schema at revision %s", state.head)
            return state
        if state.current is None:
            log.info("index made before migrations: recorded as revision %s, then upgraded", BASELINE)
            metadata.create_all(conn, tables=[metadata.tables[name] for name in BASELINE_TABLES])
            command.stamp(config, BASELINE)
        command.upgrade(config, "head")
        log.info("index schema upgraded from %s to %s", state.current or BASELINE, state.head)
    return state


def _lock_schema(conn: Connection) -> None:
    """PostgreSQL: one node at a time checks and changes the schema (released at commit)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
