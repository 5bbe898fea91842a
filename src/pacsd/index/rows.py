"""Write a group of instance records into the index in one transaction, with few statements.

One query finds which SOP Instance UIDs exist; new patients/studies/series are created as
needed; instances and change rows are inserted with executemany; counters are added once per
study, series and patient.  Primary keys of known series/studies/patients are cached: keys are
never reused (AUTOINCREMENT, sequences), so a stale key fails a foreign-key check and the caller
clears the cache and retries.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, insert, select, update

from pacsd.index.driver_sql import DriverStatement
from pacsd.index.schema import changes, inserted_key, instances, metadata, patients, series, studies

if TYPE_CHECKING:
    from pacsd.index.writer import DuplicatePolicy, InstanceRecord

log = logging.getLogger(__name__)


@dataclass
class WriteOutcome:
    """What the writer did: `stored`, `kept-existing`, `rejected-duplicate` or `overwritten`."""

    action: str
    replaced_path: str | None = None  # a file the caller must now remove
    conflict: bool = False  # same UID, different content
    new_study: bool = False


@dataclass
class _SeriesKeys:
    series_pk: int
    study_pk: int
    patient_pk: int


# Prebuilt statements: built once, executed with parameters (no per-call construction).  Those
# run for every instance go straight to the driver (DriverStatement), compiled once per dialect.
_FIND_INSTANCES = DriverStatement(select(
    instances.c.sop_uid, instances.c.pk, instances.c.path, instances.c.checksum,
    instances.c.size_bytes, instances.c.series_pk, instances.c.transfer_syntax,
).where(instances.c.sop_uid.in_(bindparam("uids", expanding=True))))
_INSERT_INSTANCE = DriverStatement(insert(instances))
_INSERT_CHANGE = DriverStatement(insert(changes))
_STUDY_SETS = select(studies.c.modalities, studies.c.sop_classes).where(
    studies.c.pk == bindparam("pk")).with_for_update()  # several nodes: the set grows under a row lock
_SET_STUDY_SETS = update(studies).where(studies.c.pk == bindparam("b_pk")).values(
    modalities=bindparam("b_modalities"), sop_classes=bindparam("b_sop_classes"))
_ADD_TO_STUDY = DriverStatement(update(studies).where(studies.c.pk == bindparam("b_pk")).values(
    num_instances=studies.c.num_instances + bindparam("b_instances"),
    num_series=studies.c.num_series + bindparam("b_series"),
    size_bytes=studies.c.size_bytes + bindparam("b_bytes"),
    updated_at=bindparam("b_now")))
_ADD_TO_SERIES = DriverStatement(update(series).where(series.c.pk == bindparam("b_pk")).values(
    num_instances=series.c.num_instances + bindparam("b_instances"), updated_at=bindparam("b_now")))
_ADD_TO_PATIENT = DriverStatement(update(patients).where(patients.c.pk == bindparam("b_pk")).values(
    num_instances=patients.c.num_instances + bindparam("b_instances"),
    num_series=patients.c.num_series + bindparam("b_series"),
    num_studies=patients.c.num_studies + bindparam("b_studies"),
    updated_at=bindparam("b_now")))


class RowWriter:
    """Applies groups of records; holds the caches of keys between groups."""

    def __init__(self) -> None:
        self._series: dict[str, _SeriesKeys] = {}
        self._study_sets: dict[int, tuple[set[str], set[str]]] = {}  # modalities, SOP classes known stored

    def forget(self) -> None:
        self._series.clear()
        self._study_sets.clear()

    def apply(self, conn: Connection, records: list[InstanceRecord],
              policy: DuplicatePolicy) -> list[WriteOutcome]:
        now = datetime.now(timezone.utc)
        existing = {row.sop_uid: row for row in _FIND_INSTANCES.rows(
            conn, {"uids": list({r.sop_uid for r in records})})}
        outcomes: list[WriteOutcome] = []
        pending: dict[str, dict] = {}  # sop_uid -> instance row being inserted in this group
        totals = _Totals()
        companions: dict[str, list[dict]] = defaultdict(list)
        for record in records:
            if record.sop_uid in existing:
                outcomes.append(_duplicate(conn, record, policy, existing[record.sop_uid], now))
            elif record.sop_uid in pending:
                row = pending[record.sop_uid]
                size_before = row["size_bytes"]
                outcomes.append(_duplicate_in_group(record, policy, row))
                study_pk = self._series[record.series["series_uid"]].study_pk
                totals.study[study_pk]["bytes"] += row["size_bytes"] - size_before
            else:
                keys, created = self._keys(conn, record, now)
                pending[record.sop_uid] = _instance_row(record, keys.series_pk, now)
                totals.add(record, keys, created)
                outcomes.append(WriteOutcome("stored", new_study=created.study))
            action = outcomes[-1].action  # a retried commit of our own row ("stored", existing) adds none
            if record.companion_rows and (action == "overwritten" or (action == "stored" and record.sop_uid not in existing)):
                for table, rows in record.companion_rows.items():
                    companions[table].extend(rows)
        if pending:
            _INSERT_INSTANCE.execute(conn, list(pending.values()))
            _INSERT_CHANGE.execute(conn, [
                {"kind": "instance-stored", "level": "instance", "uid": uid, "at": now} for uid in pending
            ] + [{"kind": "study-created", "level": "study", "uid": uid, "at": now} for uid in totals.new_studies])
            totals.write(conn, now)
            self._update_study_sets(conn, records, pending)
        for table, rows in companions.items():
            conn.execute(insert(metadata.tables[table]), rows)
        return outcomes

    # -- keys ----------------------------------------------------------------------------
    def _keys(self, conn: Connection, record: InstanceRecord, now: datetime) -> tuple[_SeriesKeys, "_Created"]:
        uid = record.series["series_uid"]
        keys = self._series.get(uid)
        if keys is not None:
            return keys, _Created()
        row = conn.execute(
            select(series.c.pk, series.c.study_pk, studies.c.patient_pk)
            .join(studies, series.c.study_pk == studies.c.pk).where(series.c.series_uid == uid)
        ).first()
        if row is not None:
            keys, created = _SeriesKeys(row.pk, row.study_pk, row.patient_pk), _Created()
        else:
            study_pk, patient_pk, created = _study(conn, record, now)
            values = {**record.series, "study_pk": study_pk, "updated_at": now}
            series_pk = inserted_key(conn.execute(insert(series).values(**values)))
            keys, created.series = _SeriesKeys(series_pk, study_pk, patient_pk), True
        self._series[uid] = keys
        return keys, created

    def _update_study_sets(self, conn: Connection, records: list[InstanceRecord], pending: dict) -> None:
        """Add new modalities / SOP classes to ModalitiesInStudy and SOPClassesInStudy."""
        wanted: dict[int, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
        for record in records:
            if record.sop_uid not in pending:
                continue
            study_pk = self._series[record.series["series_uid"]].study_pk
            modality = record.series.get("modality", "")
            if modality:
                wanted[study_pk][0].add(modality)
            wanted[study_pk][1].add(record.sop_class_uid)
        for study_pk, (modalities, sop_classes) in wanted.items():
            known = self._study_sets.get(study_pk)
            if known and modalities <= known[0] and sop_classes <= known[1]:
                continue  # sets only grow: nothing new to record
            row = conn.execute(_STUDY_SETS, {"pk": study_pk}).one()
            stored_modalities = _split(row.modalities) | modalities
            stored_classes = _split(row.sop_classes) | sop_classes
            conn.execute(_SET_STUDY_SETS, {"b_pk": study_pk, "b_modalities": _join(stored_modalities),
                                           "b_sop_classes": _join(stored_classes)})
            self._study_sets[study_pk] = (stored_modalities, stored_classes)


@dataclass
class _Created:
    patient: bool = False
    study: bool = False
    series: bool = False


class _Totals:
    """Counter increments of one group, summed per study, series and patient."""

    def __init__(self) -> None:
        self.study: dict[int, Counter] = defaultdict(Counter)
        self.series: Counter = Counter()
        self.patient: dict[int, Counter] = defaultdict(Counter)
        self.new_studies: list[str] = []

    def add(self, record: InstanceRecord, keys: _SeriesKeys, created: _Created) -> None:
        self.series[keys.series_pk] += 1
        study = self.study[keys.study_pk]
        study["instances"] += 1
        study["series"] += created.series
        study["bytes"] += record.size_bytes
        patient = self.patient[keys.patient_pk]
        patient["instances"] += 1
        patient["series"] += created.series
        patient["studies"] += created.study
        if created.study:
            self.new_studies.append(record.study["study_uid"])

    def write(self, conn: Connection, now: datetime) -> None:
        _ADD_TO_STUDY.execute(conn, [
            {"b_pk": pk, "b_instances": c["instances"], "b_series": c["series"], "b_bytes": c["bytes"], "b_now": now}
            for pk, c in self.study.items()])
        _ADD_TO_SERIES.execute(conn, [
            {"b_pk": pk, "b_instances": n, "b_now": now} for pk, n in self.series.items()])
        _ADD_TO_PATIENT.execute(conn, [
            {"b_pk": pk, "b_instances": c["instances"], "b_series": c["series"], "b_studies": c["studies"],
             "b_now": now} for pk, c in self.patient.items()])


def _instance_row(record: InstanceRecord, series_pk: int, now: datetime) -> dict:
    return {
        "sop_uid": record.sop_uid, "series_pk": series_pk, "sop_class_uid": record.sop_class_uid,
        "instance_number": record.instance_number, "transfer_syntax": record.transfer_syntax,
        "path": record.path, "size_bytes": record.size_bytes, "checksum": record.checksum,
        "account": record.account, "calling_aet": record.calling_aet, "received_at": now,
        "header_json": record.header_json,
    }


def _study(conn: Connection, record: InstanceRecord, now: datetime) -> tuple[int, int, _Created]:
    """The study's pk and its patient's pk, creating either when missing."""
    created = _Created()
    row = conn.execute(
        select(studies.c.pk, studies.c.patient_pk).where(studies.c.study_uid == record.study["study_uid"])
    ).first()
    patient_pk = conn.execute(
        select(patients.c.pk).where(patients.c.patient_id == record.patient["patient_id"])).scalar()
    if row is not None:
        if row.patient_pk != patient_pk:
            log.warning("study %s arrived with another patient (%s); kept under its first patient",
                        record.study["study_uid"], record.patient["patient_id"])
        return row.pk, row.patient_pk, created
    if patient_pk is None:
        values = {**record.patient, "patient_name_upper": record.patient.get("patient_name", "").upper(),
                  "updated_at": now}
        patient_pk = inserted_key(conn.execute(insert(patients).values(**values)))
        created.patient = True
    values = {**record.study, "patient_pk": patient_pk, "account": record.account,
              "created_at": now, "updated_at": now}
    study_pk = inserted_key(conn.execute(insert(studies).values(**values)))
    created.study = True
    return study_pk, patient_pk, created


def _duplicate(conn: Connection, record: InstanceRecord, policy: DuplicatePolicy, existing: Any,
               now: datetime) -> WriteOutcome:
    if existing.path == record.path:
        # Our own row: the retry of a transaction that did commit before its connection broke
        # (a file is only ever placed under a name no file has, so no other row names it).
        return WriteOutcome("stored")
    conflict = _conflict(existing.checksum, existing.transfer_syntax, record)
    if policy == "keep":
        return WriteOutcome("kept-existing", replaced_path=record.path, conflict=conflict)
    if policy == "reject":
        return WriteOutcome("rejected-duplicate", replaced_path=record.path, conflict=conflict)
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


def _conflict(checksum: str, transfer_syntax: str | None, record: InstanceRecord) -> bool:
    """Other content under the same UID.  Files in different transfer syntaxes (an instance
    compressed since, sent again as it was) cannot be compared by their checksums."""
    return bool(checksum and record.checksum and checksum != record.checksum
                and transfer_syntax == record.transfer_syntax)


def _duplicate_in_group(record: InstanceRecord, policy: DuplicatePolicy, row: dict) -> WriteOutcome:
    """The same UID twice in one group (two senders at once): as if the first were stored."""
    conflict = _conflict(row["checksum"], row.get("transfer_syntax"), record)
    if policy == "overwrite":
        replaced = row["path"]
        row.update(path=record.path, size_bytes=record.size_bytes, checksum=record.checksum,
                   header_json=record.header_json, transfer_syntax=record.transfer_syntax)
        return WriteOutcome("overwritten", replaced_path=replaced, conflict=conflict)
    action = "kept-existing" if policy == "keep" else "rejected-duplicate"
    return WriteOutcome(action, replaced_path=record.path, conflict=conflict)


def _split(joined: str) -> set[str]:
    return {value for value in joined.split("\\") if value}


def _join(values: set[str]) -> str:
    return "\\".join(sorted(values))
