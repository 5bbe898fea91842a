"""Index schema migrations: the migrations build exactly `pacsd.index.schema` (on SQLite and on
PostgreSQL), an index made before migrations existed is upgraded in place, and `pacsd db`."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, insert, select

from pacsd.index.engine import database_url, open_index
from pacsd.index.migrate import SchemaOutOfDate, alembic_config, head_revision
from pacsd.index.schema import metadata, patients, users
from tests.conftest import VENV_BIN

pytestmark = pytest.mark.both_databases


def test_migrations_build_the_schema_module(index_target):
    """A schema change without its migration fails here: add one with scripts/new_migration.py."""
    engine = create_engine(database_url(index_target))
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
            differences = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    finally:
        engine.dispose()
    assert differences == []


def made_before_migrations(target: str) -> None:
    """An index as `create_all` made it before migrations (and before users), with one patient."""
    engine = create_engine(database_url(target))
    with engine.begin() as conn:
        metadata.create_all(conn, tables=[table for table in metadata.sorted_tables if table.name != "users"])
        conn.execute(insert(patients).values(patient_id="OLD", updated_at=datetime.now(timezone.utc)))
    engine.dispose()


def pacsd_db(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "pacsd"), "db", *args], capture_output=True, text=True, timeout=60)


def test_index_from_before_migrations_is_upgraded_in_place(index_database, index_target):
    target = index_target
    made_before_migrations(target)
    with pytest.raises(SchemaOutOfDate):
        open_index(target, upgrade=False)  # database.auto_upgrade: false
    where = ["--database-url", target] if "url" in index_database else ["--index-db", target]
    before = pacsd_db("current", *where)
    assert before.returncode == 1 and "revision none" in before.stdout
    assert pacsd_db("upgrade", *where).returncode == 0
    after = pacsd_db("current", *where)
    assert after.returncode == 0 and f"revision {head_revision()} (up to date)" in after.stdout
    engine = open_index(target, upgrade=False)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(patients.c.patient_id)).scalars().all() == ["OLD"]
            assert conn.execute(select(users.c.name)).all() == []  # the table it lacked now exists
    finally:
        engine.dispose()
