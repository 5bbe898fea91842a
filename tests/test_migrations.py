"""Index schema migrations: the migrations build exactly `pacsd.index.schema` (on SQLite and on
PostgreSQL), an index made before migrations existed is upgraded in place, and `pacsd db`."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, insert, select, text

from pacsd.index.engine import database_url, open_index
from pacsd.index.migrate import BASELINE, SchemaOutOfDate, alembic_config, head_revision
from pacsd.index.schema import instances, metadata, patients, series, studies, study_folders, users
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
    """An index as `create_all` made it before migrations (the baseline schema, before users), with
    one patient."""
    engine = create_engine(database_url(target))
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), BASELINE)
        conn.execute(text("DROP TABLE users"))
        conn.execute(text("DROP TABLE alembic_version"))
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


def test_upgrade_to_study_folders_keeps_existing_studies_where_they_are(index_target):
    """0002: a stable study counts as done; each study filed in a study folder claims it (the first
    of two sharing one), so later instances join it there."""
    engine = create_engine(database_url(index_target))
    now = datetime.now(timezone.utc)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), BASELINE)
            baseline = MetaData()
            baseline.reflect(conn)  # the studies table as the baseline made it, with today's defaults
            studies_ = baseline.tables["studies"]
            defaults = {column.name: column.default.arg for column in studies.c
                        if column.default is not None and column.name in studies_.c}
            patient = conn.execute(insert(patients).values(patient_id="P", updated_at=now)).inserted_primary_key[0]
            for number, folder in enumerate(["cardiology/20240101_P_1", "cardiology/20240101_P_1", "flat"], 1):
                study = conn.execute(insert(studies_).values({
                    **defaults, "study_uid": f"1.{number}", "patient_pk": patient, "account": "cardiology",
                    "created_at": now, "updated_at": now, "stable_at": now})).inserted_primary_key[0]
                series_pk = conn.execute(insert(series).values(series_uid=f"2.{number}", study_pk=study,
                                                               updated_at=now)).inserted_primary_key[0]
                path = f"{folder}/Dicom/1_S/001-001-000001.dcm" if folder != "flat" else f"3.{number}.dcm"
                conn.execute(insert(instances).values(
                    sop_uid=f"3.{number}", series_pk=series_pk, sop_class_uid="1.2",
                    transfer_syntax="1.2.840.10008.1.2.1", path=path, size_bytes=1, received_at=now, header_json="{}"))
            command.upgrade(alembic_config(conn), "head")
            claims = conn.execute(select(study_folders.c.study_uid, study_folders.c.account,
                                         study_folders.c.folder)).all()
            done = conn.execute(select(studies.c.end_work_done_for == studies.c.stable_at)).scalars().all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in claims] == [("1.1", "cardiology", "cardiology/20240101_P_1")]
    assert done == [True, True, True]
