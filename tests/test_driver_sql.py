"""Statements run through the driver's cursor store exactly what SQLAlchemy's execute stores."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import String, cast, insert, select
from sqlalchemy.exc import IntegrityError

from pacsd.index import rows
from pacsd.index.driver_sql import DriverStatement
from pacsd.index.engine import open_index
from pacsd.index.schema import changes, instances, patients, series, studies

pytestmark = pytest.mark.both_databases

AT = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone.utc)


def through_sqlalchemy(conn, statement: DriverStatement, parameters) -> None:
    conn.execute(statement.statement, parameters)


def through_driver(conn, statement: DriverStatement, parameters) -> None:
    statement.execute(conn, parameters)


def write_study(conn, run, tag: str) -> None:
    """A patient, study and series made by SQLAlchemy; then the writer's hot statements, run by `run`."""
    patient_pk = conn.execute(insert(patients).values(patient_id=f"P-{tag}", updated_at=AT)).inserted_primary_key[0]
    study_pk = conn.execute(insert(studies).values(
        study_uid=f"1.{tag}", patient_pk=patient_pk, created_at=AT, updated_at=AT)).inserted_primary_key[0]
    series_pk = conn.execute(insert(series).values(
        series_uid=f"1.{tag}.1", study_pk=study_pk, updated_at=AT)).inserted_primary_key[0]
    instance_rows = [
        {"sop_uid": f"1.{tag}.1.{n}", "series_pk": series_pk, "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
         "instance_number": n if n else None, "transfer_syntax": "1.2.840.10008.1.2.1", "path": f"{tag}/{n}.dcm",
         "size_bytes": 2**33 + n, "checksum": "ab" * 32, "account": "acct", "calling_aet": "SCU",
         "received_at": AT, "header_json": '{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Ünïcode"}]}}'}
        for n in range(3)]
    run(conn, rows._INSERT_INSTANCE, instance_rows[:1])  # one row: execute
    run(conn, rows._INSERT_INSTANCE, instance_rows[1:])  # several: executemany
    run(conn, rows._INSERT_CHANGE, [{"kind": "instance-stored", "level": "instance", "uid": row["sop_uid"],
                                     "at": AT} for row in instance_rows])
    run(conn, rows._ADD_TO_STUDY, [{"b_pk": study_pk, "b_instances": 3, "b_series": 1, "b_bytes": 2**34,
                                    "b_now": AT}])
    run(conn, rows._ADD_TO_SERIES, [{"b_pk": series_pk, "b_instances": 3, "b_now": AT}])
    run(conn, rows._ADD_TO_PATIENT, [{"b_pk": patient_pk, "b_instances": 3, "b_series": 1, "b_studies": 1,
                                      "b_now": AT}])


def stored(conn, table, tag: str) -> list[dict]:
    """The rows `write_study(tag)` left in `table`: read back through SQLAlchemy, and each value also
    as the database's own text of it (so a datetime stored in another form shows), keys left out."""
    uid_column = {"patients": "patient_id", "studies": "study_uid", "series": "series_uid",
                  "instances": "sop_uid", "changes": "uid"}[table.name]
    columns = [column for column in table.c if column.name not in ("pk", "seq", "patient_pk", "study_pk",
                                                                    "series_pk")]
    query = select(*columns, *(cast(column, String).label(f"{column.name}_text") for column in columns)) \
        .where(table.c[uid_column].like(f"%{tag}%")).order_by(table.c[uid_column])
    return [{key: str(value).replace(tag, "TAG") for key, value in row._mapping.items()}
            for row in conn.execute(query)]


def test_driver_rows_equal_sqlalchemy_rows(index_target):
    engine = open_index(index_target)
    with engine.begin() as conn:
        write_study(conn, through_sqlalchemy, "sa")
        write_study(conn, through_driver, "driver")
    with engine.connect() as conn:
        for table in (patients, studies, series, instances, changes):
            expected = stored(conn, table, "sa")
            assert expected, table.name
            assert stored(conn, table, "driver") == expected, table.name
        assert conn.execute(select(instances.c.received_at).where(instances.c.sop_uid == "1.driver.1.0")) \
            .scalar_one().replace(tzinfo=timezone.utc) == AT


def test_find_rows_by_name_for_every_list_length(index_target):
    engine = open_index(index_target)
    with engine.begin() as conn:
        write_study(conn, through_driver, "x")
        for uids in (["1.x.1.0"], ["1.x.1.2", "nope", "1.x.1.1"], ["nope"], ["1.x.1.1"]):
            found = rows._FIND_INSTANCES.rows(conn, {"uids": uids})
            expected = conn.execute(rows._FIND_INSTANCES.statement, {"uids": uids}).all()
            assert sorted(found) == sorted(tuple(row) for row in expected)
            assert sorted(row.sop_uid for row in found) == sorted(uid for uid in uids if uid != "nope")
            assert all(row.size_bytes == 2**33 + int(row.sop_uid[-1]) and row.path.endswith(".dcm")
                       for row in found)


def test_a_column_with_a_python_default_left_out_is_refused(index_target):
    engine = open_index(index_target)
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="account"):
            DriverStatement(insert(instances)).execute(conn, {
                "sop_uid": "1", "series_pk": 1, "sop_class_uid": "1", "instance_number": None,
                "transfer_syntax": "1", "path": "p", "size_bytes": 1, "checksum": "", "calling_aet": "",
                "received_at": AT, "header_json": "{}"})  # no account: SQLAlchemy would have put ""


def test_driver_errors_are_sqlalchemy_errors(index_target):
    engine = open_index(index_target)
    with engine.connect() as conn:
        with conn.begin():
            write_study(conn, through_driver, "dup")
        with pytest.raises(IntegrityError), conn.begin():
            rows._INSERT_CHANGE.execute(conn, {"kind": None, "level": "instance", "uid": "1", "at": AT})


def test_without_a_compiler_name_statements_run_through_sqlalchemy(index_target, monkeypatch, caplog):
    """A SQLAlchemy lacking a name the driver path reads: one warning, and the same rows stored."""
    from pacsd.index import driver_sql

    monkeypatch.setattr(driver_sql, "_COMPILER_NAMES", (*driver_sql._COMPILER_NAMES, "renamed_in_a_new_release"))
    driver_sql.check_sqlalchemy.cache_clear()
    try:
        assert driver_sql.check_sqlalchemy() is False
        assert "renamed_in_a_new_release" in caplog.text
        engine = open_index(index_target)
        with engine.begin() as conn:
            write_study(conn, through_sqlalchemy, "sa")
            write_study(conn, through_driver, "fallback")
            found = rows._FIND_INSTANCES.rows(conn, {"uids": ["1.fallback.1.1"]})
        assert [(row.sop_uid, row.size_bytes) for row in found] == [("1.fallback.1.1", 2**33 + 1)]
        with engine.connect() as conn:
            for table in (patients, studies, series, instances, changes):
                assert stored(conn, table, "fallback") == stored(conn, table, "sa"), table.name
    finally:
        monkeypatch.undo()
        driver_sql.check_sqlalchemy.cache_clear()
    assert driver_sql.check_sqlalchemy() is True  # this release has every name
