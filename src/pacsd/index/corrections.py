"""Index operations of corrections: the instances a correction touches, and swapping their rows.

`replace_instances` runs inside the caller's transaction: the old rows go (counters down, empty
series, studies and patients removed) and the new records go in through the ingest's RowWriter.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, Row, delete, insert, select, update

from pacsd.index.rows import RowWriter
from pacsd.index.schema import changes, instances, patients, series, studies

if TYPE_CHECKING:
    from pacsd.index.writer import InstanceRecord


@dataclass(frozen=True)
class TouchedInstance:
    """One indexed instance a correction rewrites."""

    pk: int
    sop_uid: str
    path: str
    account: str
    calling_aet: str
    series_uid: str
    study_uid: str
    patient_id: str


def instances_of(conn: Connection, patient_id: str | None = None, study_uid: str | None = None,
                 series_uids: list[str] | None = None) -> list[TouchedInstance]:
    """The instances of a patient, a study or some series (one selector), in a stable order."""
    query = (select(instances.c.pk, instances.c.sop_uid, instances.c.path, instances.c.account,
                    instances.c.calling_aet, series.c.series_uid, studies.c.study_uid, patients.c.patient_id)
             .join(series, instances.c.series_pk == series.c.pk)
             .join(studies, series.c.study_pk == studies.c.pk)
             .join(patients, studies.c.patient_pk == patients.c.pk)
             .order_by(instances.c.pk))
    if patient_id is not None:
        query = query.where(patients.c.patient_id == patient_id)
    if study_uid is not None:
        query = query.where(studies.c.study_uid == study_uid)
    if series_uids is not None:
        query = query.where(series.c.series_uid.in_(series_uids))
    return [TouchedInstance(*row) for row in conn.execute(query).all()]


def patient_row(conn: Connection, patient_id: str) -> Row | None:
    return conn.execute(select(patients).where(patients.c.patient_id == patient_id)).first()


def study_row(conn: Connection, study_uid: str) -> Row | None:
    """The study's columns with its patient's."""
    return conn.execute(select(studies, patients.c.patient_id, patients.c.patient_name, patients.c.birth_date,
                               patients.c.sex).join(patients, studies.c.patient_pk == patients.c.pk)
                        .where(studies.c.study_uid == study_uid)).first()


def series_row(conn: Connection, series_uid: str) -> Row | None:
    return conn.execute(select(series, studies.c.study_uid).join(studies, series.c.study_pk == studies.c.pk)
                        .where(series.c.series_uid == series_uid)).first()


def replace_instances(conn: Connection, old: list[TouchedInstance], records: list[InstanceRecord]) -> None:
    """Remove the rows of `old` and index `records` instead, in the caller's transaction."""
    pks = [item.pk for item in old]
    rows = [row for chunk in _chunks(pks) for row in conn.execute(
        select(instances.c.pk, instances.c.size_bytes, instances.c.series_pk, series.c.study_pk, studies.c.patient_pk)
        .join(series, instances.c.series_pk == series.c.pk)
        .join(studies, series.c.study_pk == studies.c.pk)
        .where(instances.c.pk.in_(chunk))).all()]
    per_series, per_study, per_patient, study_bytes = Counter[int](), Counter[int](), Counter[int](), Counter[int]()
    study_of, patient_of = {}, {}
    for row in rows:
        per_series[row.series_pk] += 1
        per_study[row.study_pk] += 1
        per_patient[row.patient_pk] += 1
        study_bytes[row.study_pk] += row.size_bytes
        study_of[row.series_pk], patient_of[row.study_pk] = row.study_pk, row.patient_pk
    for chunk in _chunks(pks):
        conn.execute(delete(instances).where(instances.c.pk.in_(chunk)))
    for pk, count in per_series.items():
        conn.execute(update(series).where(series.c.pk == pk).values(num_instances=series.c.num_instances - count))
    for pk, count in per_study.items():
        conn.execute(update(studies).where(studies.c.pk == pk).values(
            num_instances=studies.c.num_instances - count, size_bytes=studies.c.size_bytes - study_bytes[pk]))
    for pk, count in per_patient.items():
        conn.execute(update(patients).where(patients.c.pk == pk).values(
            num_instances=patients.c.num_instances - count))
    _drop_empty(conn, list(per_series), study_of, patient_of)
    outcomes = RowWriter().apply(conn, records, "overwrite")
    assert all(o.action == "stored" for o in outcomes), outcomes  # the old rows are gone: all new
    _take_values(conn, records)
    _refresh_study_sets(conn, list(per_study))
    now = datetime.now(timezone.utc)
    conn.execute(insert(changes), [{"kind": "instance-modified", "level": "instance", "uid": r.sop_uid, "at": now}
                                   for r in records])


def _take_values(conn: Connection, records: list[InstanceRecord]) -> None:
    """The patient, study and series rows the records name take the records' values: a row that was
    not recreated (an instance arrived meanwhile, or the target of a move) would keep old ones."""
    for record in {r.series["series_uid"]: r for r in records}.values():
        conn.execute(update(series).where(series.c.series_uid == record.series["series_uid"]).values(
            **{k: v for k, v in record.series.items() if k != "series_uid"}))
        conn.execute(update(studies).where(studies.c.study_uid == record.study["study_uid"]).values(
            **{k: v for k, v in record.study.items() if k != "study_uid"}))
        conn.execute(update(patients).where(patients.c.patient_id == record.patient["patient_id"]).values(
            patient_name_upper=record.patient.get("patient_name", "").upper(),
            **{k: v for k, v in record.patient.items() if k != "patient_id"}))


def _chunks(values: list, size: int = 500) -> list[list]:
    """Bound the bound parameters of one statement (SQLite allows some thousands)."""
    return [values[i:i + size] for i in range(0, len(values), size)]


def _drop_empty(conn: Connection, series_pks: list[int], study_of: dict, patient_of: dict) -> None:
    """Series, then studies, then patients left without instances go, their parents' counters down."""
    emptied = conn.execute(select(series.c.pk).where(series.c.pk.in_(series_pks), series.c.num_instances <= 0)
                           ).scalars().all()
    studies_losing = Counter(study_of[pk] for pk in emptied)
    conn.execute(delete(series).where(series.c.pk.in_(emptied)))
    for study_pk, count in studies_losing.items():
        conn.execute(update(studies).where(studies.c.pk == study_pk).values(num_series=studies.c.num_series - count))
        conn.execute(update(patients).where(patients.c.pk == patient_of[study_pk]).values(
            num_series=patients.c.num_series - count))
    study_pks = list(patient_of)
    empty_studies = conn.execute(select(studies.c.pk, studies.c.patient_pk).where(
        studies.c.pk.in_(study_pks), studies.c.num_instances <= 0)).all()
    conn.execute(delete(studies).where(studies.c.pk.in_([row.pk for row in empty_studies])))
    for patient_pk, count in Counter(row.patient_pk for row in empty_studies).items():
        conn.execute(update(patients).where(patients.c.pk == patient_pk).values(
            num_studies=patients.c.num_studies - count))
    conn.execute(delete(patients).where(patients.c.pk.in_(set(patient_of.values())), patients.c.num_studies <= 0))


def _refresh_study_sets(conn: Connection, study_pks: list[int]) -> None:
    """Modalities and SOP classes in study of the studies that lost instances, from what they hold now."""
    for pk in study_pks:
        if conn.execute(select(studies.c.pk).where(studies.c.pk == pk)).first() is None:
            continue
        modalities = conn.execute(select(series.c.modality).distinct().where(
            series.c.study_pk == pk, series.c.modality != "")).scalars().all()
        classes = conn.execute(select(instances.c.sop_class_uid).distinct().join(
            series, instances.c.series_pk == series.c.pk).where(series.c.study_pk == pk)).scalars().all()
        conn.execute(update(studies).where(studies.c.pk == pk).values(
            modalities="\\".join(sorted(modalities)), sop_classes="\\".join(sorted(classes))))


def path_is_indexed(engine: Engine, path: str) -> bool:
    """Whether an instance row names this file (an interrupted correction's new copy, say)."""
    with engine.connect() as conn:
        return conn.execute(select(instances.c.pk).where(instances.c.path == path)).first() is not None
