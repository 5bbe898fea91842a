"""The index writer on its own: group commits, counters, duplicates inside a group, stale caches."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import delete, func, select

from pacsd.index.engine import open_index
from pacsd.index.schema import instances, patients, series, studies
from pacsd.index.writer import IndexWriter, InstanceRecord


def record(sop: str, series_uid: str = "1.2.3.1", study_uid: str = "1.2.3", patient_id: str = "P1",
           modality: str = "CT", size: int = 100, checksum: str = "c", path: str | None = None) -> InstanceRecord:
    return InstanceRecord(
        sop_uid=sop, sop_class_uid="1.2.840.10008.5.1.4.1.1.2", transfer_syntax="1.2.840.10008.1.2.1",
        path=path or f"{sop}.dcm", size_bytes=size, checksum=checksum, header_json="{}",
        patient={"patient_id": patient_id, "patient_name": "DOE^J", "birth_date": "", "sex": ""},
        study={"study_uid": study_uid}, series={"series_uid": series_uid, "modality": modality},
    )


def test_concurrent_writers_give_exact_counters(tmp_path):
    engine = open_index(tmp_path / "i.sqlite")
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
        for uid, row in study_rows.items():
            expected = conn.execute(
                select(func.count()).select_from(instances.join(series)).where(series.c.study_pk == row.pk)).scalar()
            assert row.num_instances == expected
            assert row.size_bytes == 100 * expected
            assert row.num_series == conn.execute(
                select(func.count()).select_from(series).where(series.c.study_pk == row.pk)).scalar()
        assert all(r.modalities == "CT\\MR\\PT" for r in study_rows.values())
        patient = conn.execute(select(patients)).one()
        assert (patient.num_studies, patient.num_series, patient.num_instances) == (2, 6, 60)


def test_same_uid_twice_in_one_group(tmp_path):
    engine = open_index(tmp_path / "i.sqlite")
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


def test_stale_cached_keys_heal(tmp_path):
    engine = open_index(tmp_path / "i.sqlite")
    writer = IndexWriter(engine)
    assert writer.write(record("5.1"), "keep").action == "stored"
    with engine.begin() as conn:  # someone else removes the study behind the writer's back
        conn.execute(delete(instances))
        conn.execute(delete(series))
        conn.execute(delete(studies))
    assert writer.write(record("5.2"), "keep").action == "stored"
    writer.close()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(series)).scalar() == 1
        assert conn.execute(select(studies.c.num_instances)).scalar_one() == 1
