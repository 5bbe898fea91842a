"""The single index writer: every instance row goes through one thread that commits in groups.

Many associations hand it records at once; it takes what is waiting (up to `batch`), writes
them in one transaction, commits once, and only then resolves each caller's future.  A group
that fails is retried one record per transaction, so one bad record fails alone.  Before a
group's rows are committed its files are made durable in one step (`make_durable`).
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from pacsd.index.schema import changes, instances, patients, series, studies

log = logging.getLogger(__name__)

DuplicatePolicy = Literal["keep", "overwrite", "reject"]


@dataclass
class InstanceRecord:
    """Everything the index keeps about one instance, taken from its header at ingest."""

    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    path: str
    size_bytes: int
    checksum: str
    header_json: str
    patient: dict[str, str]
    study: dict[str, str]
    series: dict[str, str]
    instance_number: int | None = None
    account: str = ""
    calling_aet: str = ""


@dataclass
class WriteOutcome:
    """What the writer did: `stored`, `kept-existing`, `rejected-duplicate` or `overwritten`."""

    action: str
    replaced_path: str | None = None  # a file the caller must now remove (overwrite, kept)
    conflict: bool = False  # same UID, different content
    new_study: bool = False


@dataclass
class _Job:
    record: InstanceRecord
    policy: DuplicatePolicy
    future: Future = field(default_factory=Future)


_STOP = object()


class IndexWriter:
    """Owns all writes of instance rows; callers block on `write()` until their group commits."""

    def __init__(self, engine: Engine, batch: int = 64,
                 make_durable: Callable[[list[str]], None] = lambda paths: None) -> None:
        """`make_durable(paths)` is called once per group, before its rows are committed, so a
        committed row always points at a file already on disk."""
        self.engine = engine
        self.batch = batch
        self.make_durable = make_durable
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="index-writer", daemon=True)
        self._thread.start()

    def write(self, record: InstanceRecord, policy: DuplicatePolicy) -> WriteOutcome:
        """Index one instance; returns once its transaction is committed (or raises)."""
        job = _Job(record, policy)
        self._queue.put(job)
        return job.future.result()

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            jobs = [first]
            stop = False
            while len(jobs) < self.batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is _STOP:
                    stop = True
                    break
                jobs.append(job)
            self._commit_group(jobs)
            if stop:
                return

    def _commit_group(self, jobs: list[_Job]) -> None:
        try:
            self.make_durable([job.record.path for job in jobs])
        except Exception as exc:  # the volume failed: no row may point at these files
            for job in jobs:
                job.future.set_exception(exc)
            return
        try:
            with self.engine.begin() as conn:
                outcomes = [_apply(conn, job.record, job.policy) for job in jobs]
        except Exception:
            log.warning("group commit of %d records failed; retrying one by one", len(jobs))
            for job in jobs:
                self._commit_one_by_one(job)
            return
        for job, outcome in zip(jobs, outcomes):
            job.future.set_result(outcome)

    def _commit_one_by_one(self, job: _Job) -> None:
        """Retry one job of a failed group (its file is already durable).

        Another node's writer may insert the same instance, series, study or patient at the same
        moment (shared PostgreSQL): the unique constraint or a deadlock fails one of them, which
        then tries again and finds the other's row (the duplicate policy settles an instance)."""
        for attempt in range(1, _RACE_ATTEMPTS + 1):
            try:
                with self.engine.begin() as conn:
                    outcome = _apply(conn, job.record, job.policy)
            except Exception as exc:
                if attempt < _RACE_ATTEMPTS and _lost_a_race(exc):
                    continue
                log.exception("index write failed for %s", job.record.sop_uid)
                job.future.set_exception(_IndexWriteFailed(job.record.sop_uid))
            else:
                job.future.set_result(outcome)
            return


_RACE_ATTEMPTS = 5
_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected


def _lost_a_race(exc: Exception) -> bool:
    """Did a concurrent writer (another node) make this transaction fail?"""
    if isinstance(exc, IntegrityError):
        return True
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


class _IndexWriteFailed(RuntimeError):
    def __init__(self, sop_uid: str) -> None:
        super().__init__(f"the index could not record {sop_uid} (see the log)")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _apply(conn: Connection, record: InstanceRecord, policy: DuplicatePolicy) -> WriteOutcome:
    existing = conn.execute(
        select(instances.c.pk, instances.c.path, instances.c.checksum, instances.c.size_bytes,
               instances.c.series_pk).where(instances.c.sop_uid == record.sop_uid)
    ).first()
    if existing is not None:
        return _apply_duplicate(conn, record, policy, existing)
    now = _now()
    patient_pk, new_patient = _patient(conn, record, now)
    study_pk, new_study, patient_pk = _study(conn, record, patient_pk, now)
    series_pk, new_series = _series(conn, record, study_pk, now)
    conn.execute(
        insert(instances).values(
            sop_uid=record.sop_uid, series_pk=series_pk, sop_class_uid=record.sop_class_uid,
            instance_number=record.instance_number, transfer_syntax=record.transfer_syntax,
            path=record.path, size_bytes=record.size_bytes, checksum=record.checksum,
            account=record.account, calling_aet=record.calling_aet, received_at=now,
            header_json=record.header_json,
        )
    )
    modality = record.series.get("modality", "")
    study_row = conn.execute(  # locked: another node's writer must not add a modality in between
        select(studies.c.modalities, studies.c.sop_classes).where(studies.c.pk == study_pk).with_for_update()
    ).one()
    conn.execute(
        update(studies).where(studies.c.pk == study_pk).values(
            num_instances=studies.c.num_instances + 1,
            num_series=studies.c.num_series + int(new_series),
            size_bytes=studies.c.size_bytes + record.size_bytes,
            modalities=_add_to_set(study_row.modalities, modality),
            sop_classes=_add_to_set(study_row.sop_classes, record.sop_class_uid),
            updated_at=now,
        )
    )
    conn.execute(
        update(series).where(series.c.pk == series_pk).values(
            num_instances=series.c.num_instances + 1, updated_at=now
        )
    )
    conn.execute(
        update(patients).where(patients.c.pk == patient_pk).values(
            num_instances=patients.c.num_instances + 1,
            num_series=patients.c.num_series + int(new_series),
            num_studies=patients.c.num_studies + int(new_study),
            updated_at=now,
        )
    )
    conn.execute(insert(changes).values(kind="instance-stored", level="instance", uid=record.sop_uid, at=now))
    if new_study:
        conn.execute(insert(changes).values(kind="study-created", level="study", uid=record.study["study_uid"], at=now))
    return WriteOutcome("stored", new_study=new_study)


def _apply_duplicate(conn: Connection, record: InstanceRecord, policy: DuplicatePolicy, existing) -> WriteOutcome:
    conflict = bool(existing.checksum and record.checksum and existing.checksum != record.checksum)
    if policy == "keep":
        return WriteOutcome("kept-existing", replaced_path=record.path, conflict=conflict)
    if policy == "reject":
        return WriteOutcome("rejected-duplicate", replaced_path=record.path, conflict=conflict)
    now = _now()
    conn.execute(
        update(instances).where(instances.c.pk == existing.pk).values(
            path=record.path, size_bytes=record.size_bytes, checksum=record.checksum,
            transfer_syntax=record.transfer_syntax, header_json=record.header_json,
            sop_class_uid=record.sop_class_uid, instance_number=record.instance_number,
            calling_aet=record.calling_aet, received_at=now,
        )
    )
    study_pk = conn.execute(select(series.c.study_pk).where(series.c.pk == existing.series_pk)).scalar_one()
    conn.execute(
        update(studies).where(studies.c.pk == study_pk).values(
            size_bytes=studies.c.size_bytes + record.size_bytes - existing.size_bytes, updated_at=now
        )
    )
    conn.execute(insert(changes).values(kind="instance-overwritten", level="instance", uid=record.sop_uid, at=now))
    return WriteOutcome("overwritten", replaced_path=existing.path, conflict=conflict)


def _add_to_set(joined: str, value: str) -> str:
    values = [v for v in joined.split("\\") if v]
    if value and value not in values:
        values.append(value)
    return "\\".join(sorted(values))


def _patient(conn: Connection, record: InstanceRecord, now: datetime) -> tuple[int, bool]:
    fields = record.patient
    pk = conn.execute(select(patients.c.pk).where(patients.c.patient_id == fields["patient_id"])).scalar()
    if pk is not None:
        return pk, False
    values = {**fields, "patient_name_upper": fields.get("patient_name", "").upper(), "updated_at": now}
    return conn.execute(insert(patients).values(**values)).inserted_primary_key[0], True


def _study(conn: Connection, record: InstanceRecord, patient_pk: int, now: datetime) -> tuple[int, bool, int]:
    """The study's pk, whether it is new, and the pk of the patient it belongs to."""
    row = conn.execute(
        select(studies.c.pk, studies.c.patient_pk).where(studies.c.study_uid == record.study["study_uid"])
    ).first()
    if row is not None:
        if row.patient_pk != patient_pk:
            log.warning("study %s arrived with another patient (%s); kept under its first patient",
                        record.study["study_uid"], record.patient["patient_id"])
        return row.pk, False, row.patient_pk
    values = {**record.study, "patient_pk": patient_pk, "account": record.account,
              "created_at": now, "updated_at": now}
    return conn.execute(insert(studies).values(**values)).inserted_primary_key[0], True, patient_pk


def _series(conn: Connection, record: InstanceRecord, study_pk: int, now: datetime) -> tuple[int, bool]:
    pk = conn.execute(select(series.c.pk).where(series.c.series_uid == record.series["series_uid"])).scalar()
    if pk is not None:
        return pk, False
    values = {**record.series, "study_pk": study_pk, "updated_at": now}
    return conn.execute(insert(series).values(**values)).inserted_primary_key[0], True
