"""The index writer on its own: group commits, counters, duplicates inside a group, stale caches,
its kept connection (replaced when it breaks, given back when idle or closed)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import delete, event, func, select, text

from pacsd.index.engine import open_index
from pacsd.index.schema import instances, patients, series, studies
from pacsd.index.writer import IndexWriter, InstanceRecord
from pacsd.index.writer_connection import WriterConnection

pytestmark = pytest.mark.both_databases


def record(sop: str, series_uid: str = "1.2.3.1", study_uid: str = "1.2.3", patient_id: str = "P1",
           modality: str = "CT", size: int = 100, checksum: str = "c", path: str | None = None) -> InstanceRecord:
    return InstanceRecord(
        sop_uid=sop, sop_class_uid="1.2.840.10008.5.1.4.1.1.2", transfer_syntax="1.2.840.10008.1.2.1",
        path=path or f"{sop}.dcm", size_bytes=size, checksum=checksum, header_json="{}",
        patient={"patient_id": patient_id, "patient_name": "DOE^J", "birth_date": "", "sex": ""},
        study={"study_uid": study_uid}, series={"series_uid": series_uid, "modality": modality},
    )


def test_concurrent_writers_give_exact_counters(index_target):
    engine = open_index(index_target)
    writer = IndexWriter(engine, batch=16)
    records = [record(f"9.{i}", series_uid=f"1.2.{i % 2}.{i % 3}", study_uid=f"1.2.{i % 2}",
                      modality=["CT", "MR", "PT"][i % 3]) for i in range(60)]
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda r: writer.write(r, "keep"), records))
    writer.close()
    assert [o.action for o in outcomes] == ["stored"] * 60
    with engine.connect() as conn:
        study_rows = {r.study_uid: r for r in conn.execute(select(studies))}
        assert sum(r.num_instances for r in study_rows.values()) == 60
        for row in study_rows.values():
            expected = conn.execute(
                select(func.count()).select_from(instances.join(series)).where(series.c.study_pk == row.pk)).scalar()
            assert row.num_instances == expected
            assert row.size_bytes == 100 * expected
            assert row.num_series == conn.execute(
                select(func.count()).select_from(series).where(series.c.study_pk == row.pk)).scalar()
        assert all(r.modalities == "CT\\MR\\PT" for r in study_rows.values())
        patient = conn.execute(select(patients)).one()
        assert (patient.num_studies, patient.num_series, patient.num_instances) == (2, 6, 60)


def test_same_uid_twice_in_one_group(index_target):
    engine = open_index(index_target)
    writer = IndexWriter(engine)
    jobs = [record("7.1", checksum="a", path="first.dcm"), record("7.1", checksum="b", path="second.dcm", size=300)]
    with engine.begin() as conn:
        outcomes = writer.rows.apply(conn, jobs, "overwrite")
    writer.close()
    assert [o.action for o in outcomes] == ["stored", "overwritten"]
    assert outcomes[1].replaced_path == "first.dcm" and outcomes[1].conflict
    with engine.connect() as conn:
        assert conn.execute(select(instances.c.path)).scalars().all() == ["second.dcm"]
        assert conn.execute(select(studies.c.size_bytes)).scalar_one() == 300


def test_stale_cached_keys_heal(index_target):
    engine = open_index(index_target)
    writer = IndexWriter(engine)
    assert writer.write(record("5.1"), "keep").action == "stored"
    with engine.begin() as conn:  # someone else removes the study behind the writer's back
        conn.execute(delete(instances))
        conn.execute(delete(series))
        conn.execute(delete(studies))
    handed_out = []
    event.listen(engine, "checkout", lambda dbapi_connection, _record, _proxy: handed_out.append(dbapi_connection))
    assert writer.write(record("5.2"), "keep").action == "stored"  # the group fails (foreign key), then alone
    assert len(handed_out) == 1, "the failed group's connection is not used again: a fresh one is checked out"
    writer.close()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(series)).scalar() == 1
        assert conn.execute(select(studies.c.num_instances)).scalar_one() == 1


def instance_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(instances)).scalar_one()


def test_a_connection_closed_under_the_writer_is_replaced(index_target):
    engine = open_index(index_target)
    handed_out = []
    event.listen(engine, "checkout", lambda dbapi_connection, _record, _proxy: handed_out.append(dbapi_connection))
    writer = IndexWriter(engine)
    assert writer.write(record("4.1"), "keep").action == "stored"
    for dbapi_connection in handed_out:  # the writer's connection among them
        dbapi_connection.close()
    assert writer.write(record("4.2"), "keep").action == "stored"
    assert writer.write(record("4.3"), "keep").action == "stored"
    writer.close()
    assert instance_count(engine) == 3


def test_connections_the_server_ends_are_replaced(index_target, index_backend):
    if index_backend != "postgresql":
        pytest.skip("a database server ends connections")
    engine = open_index(index_target)
    writer = IndexWriter(engine)
    assert writer.write(record("3.1"), "keep").action == "stored"
    with engine.connect() as conn:  # as a server restart would: every other connection ends
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    assert writer.write(record("3.2"), "keep").action == "stored"
    assert writer.write(record("3.3"), "keep").action == "stored"
    writer.close()
    assert instance_count(engine) == 3


def test_the_writer_keeps_one_connection_and_gives_it_back(index_target):
    engine = open_index(index_target)
    writer = IndexWriter(engine)
    for n in range(3):
        writer.write(record(f"2.{n}"), "keep")
        assert engine.pool.checkedout() == 1
    writer.close()
    assert engine.pool.checkedout() == 0


def test_an_idle_connection_goes_back_to_the_pool(index_target):
    engine = open_index(index_target)
    # No race with the clock: an hour's idle limit while it must be kept, none once it must go.
    kept = WriterConnection(engine, idle_seconds=3600)
    with kept.transaction() as first:
        pass
    with kept.transaction() as again:
        assert again is first
    kept.idle_seconds = 0  # any pause at all is now longer than the limit
    with kept.transaction() as after_idle:
        assert after_idle is not first and first.closed and not first.invalidated
    kept.close()
    assert engine.pool.checkedout() == 0


@pytest.mark.parametrize("policy", ["keep", "reject", "overwrite"])
def test_a_retry_of_a_committed_record_is_its_own_row(index_target, policy):
    """A connection that breaks after the commit makes the writer retry a record that is stored
    already: the row naming the caller's own file is the caller's, not a duplicate to remove."""
    engine = open_index(index_target)
    writer = IndexWriter(engine)
    first = writer.write(record("8.1", path="mine.dcm"), policy)
    with engine.begin() as conn:
        (retried,) = writer.rows.apply(conn, [record("8.1", path="mine.dcm")], policy)
        (other,) = writer.rows.apply(conn, [record("8.1", path="another.dcm")], "keep")
    writer.close()
    assert (first.action, retried.action, retried.replaced_path) == ("stored", "stored", None)
    assert (other.action, other.replaced_path) == ("kept-existing", "another.dcm")
    with engine.connect() as conn:
        assert conn.execute(select(instances.c.path)).scalars().all() == ["mine.dcm"]


def test_the_row_waits_for_the_files_data_flush(index_target):
    """The caller's data flush, still under way, is part of the group's durability: the row is
    committed once it succeeds, and not at all when it fails."""
    import threading
    from concurrent.futures import Future

    engine = open_index(index_target)
    writer = IndexWriter(engine)
    flushing: Future = Future()
    threading.Timer(0.3, flushing.set_result, [None]).start()
    assert writer.write(record("6.1"), "keep", data_flushed=flushing).action == "stored"
    assert flushing.done()
    failed: Future = Future()
    failed.set_exception(OSError(28, "No space left on device"))
    with pytest.raises(OSError, match="No space"):
        writer.write(record("6.2"), "keep", data_flushed=failed)
    writer.close()
    with engine.connect() as conn:
        assert conn.execute(select(instances.c.sop_uid)).scalars().all() == ["6.1"]
