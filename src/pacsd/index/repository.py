"""Named operations on the index for services and web (as Orthanc's server calls its database
interface): which files make up a study, series or instance; a study's summary; the study-stable
and end-of-study bookkeeping; deleting a study's rows.  Callers never build SQL for these.

The receive path's writes are `index.writer`'s, query matching is `index.matching`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, Row, and_, delete, insert, or_, select, update

from pacsd.index.areas import add_area_usage, area_usage_of_paths
from pacsd.index.schema import changes, commitment_requests, instances, patients, series, studies


@dataclass(frozen=True)
class StoredInstance:
    """One stored instance as the index lists it.

    `path` is the file as the index names it (relative to the storage root); `file` is where the
    caller reads it from once resolved (the storage root joined, or a de-identified copy)."""

    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    path: str = ""
    study_uid: str = ""
    series_uid: str = ""
    size_bytes: int = 0
    header_json: str = ""  # filled only when asked for
    file: Path | None = None


# -- instances -------------------------------------------------------------------------------
def current_instance(engine: Engine, locate: Callable[[str], Path], stored: StoredInstance) -> StoredInstance:
    """The instance as the index has it now, when the file `locate(stored.path)` is gone since it
    was selected (compressed meanwhile: another path and syntax); unchanged otherwise."""
    if locate(stored.path).is_file():
        return stored
    now = instances_of(engine, None, stored.study_uid, stored.series_uid, stored.sop_uid)
    return now[0] if now else stored


def instances_of(engine: Engine, accounts: Collection[str] | None, study_uid: str, series_uid: str | None = None,
                 sop_uid: str | None = None, with_header: bool = False) -> list[StoredInstance]:
    """The instances under the given UIDs, in series and instance order; [] when none is visible.

    `accounts` None means every study is visible; otherwise only studies of those accounts."""
    columns = [studies.c.study_uid, series.c.series_uid, instances.c.sop_uid, instances.c.sop_class_uid,
               instances.c.transfer_syntax, instances.c.path, instances.c.size_bytes]
    if with_header:
        columns.append(instances.c.header_json)
    statement = (
        select(*columns)
        .select_from(studies.join(series, series.c.study_pk == studies.c.pk)
                     .join(instances, instances.c.series_pk == series.c.pk))
        .where(studies.c.study_uid == study_uid)
        .order_by(series.c.pk, instances.c.instance_number, instances.c.pk)
    )
    if series_uid is not None:
        statement = statement.where(series.c.series_uid == series_uid)
    if sop_uid is not None:
        statement = statement.where(instances.c.sop_uid == sop_uid)
    if accounts is not None:
        statement = statement.where(studies.c.account.in_(sorted(accounts)))
    with engine.connect() as conn:
        return [StoredInstance(sop_uid=row.sop_uid, sop_class_uid=row.sop_class_uid,
                               transfer_syntax=row.transfer_syntax, path=row.path, study_uid=row.study_uid,
                               series_uid=row.series_uid, size_bytes=row.size_bytes,
                               header_json=row.header_json if with_header else "")
                for row in conn.execute(statement)]


def instance_paths(engine: Engine, study_uid: str | None = None, series_uid: str | None = None,
                   patient_id: str | None = None) -> list[str]:
    """Paths of the instances of a study, a series or a patient (the given selectors together),
    by study, series and instance number."""
    query = (
        select(instances.c.path)
        .join(series, instances.c.series_pk == series.c.pk)
        .join(studies, series.c.study_pk == studies.c.pk)
        .join(patients, studies.c.patient_pk == patients.c.pk)
        .order_by(studies.c.study_uid, series.c.series_uid, instances.c.instance_number)
    )
    if study_uid:
        query = query.where(studies.c.study_uid == study_uid)
    if series_uid:
        query = query.where(series.c.series_uid == series_uid)
    if patient_id:
        query = query.where(patients.c.patient_id == patient_id)
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


def indexed_checksums(engine: Engine) -> dict[str, str]:
    """Every indexed file: path -> its SHA-256 as recorded at ingest."""
    with engine.connect() as conn:
        return {row.path: row.checksum for row in conn.execute(select(instances.c.path, instances.c.checksum))}


@dataclass(frozen=True)
class InstanceFile:
    sop_uid: str
    sop_class_uid: str
    path: str
    size_bytes: int
    checksum: str


def instance_files_by_uid(engine: Engine, sop_uids: Collection[str], chunk: int = 500) -> dict[str, InstanceFile]:
    """The indexed file of each of these SOP Instance UIDs that is indexed (looked up `chunk` at a time)."""
    wanted = sorted(set(sop_uids))
    found: dict[str, InstanceFile] = {}
    with engine.connect() as conn:
        for start in range(0, len(wanted), chunk):
            query = select(instances.c.sop_uid, instances.c.sop_class_uid, instances.c.path, instances.c.size_bytes,
                           instances.c.checksum).where(instances.c.sop_uid.in_(wanted[start:start + chunk]))
            found.update((row.sop_uid, InstanceFile(*row)) for row in conn.execute(query))
    return found


def study_instance_uids(engine: Engine, study_uid: str) -> list[tuple[str, str]]:
    """(SOP Class UID, SOP Instance UID) of each instance of the study, in index order."""
    query = (
        select(instances.c.sop_class_uid, instances.c.sop_uid)
        .join(series, series.c.pk == instances.c.series_pk)
        .join(studies, studies.c.pk == series.c.study_pk)
        .where(studies.c.study_uid == study_uid)
        .order_by(instances.c.pk)
    )
    with engine.connect() as conn:
        return [(row.sop_class_uid, row.sop_uid) for row in conn.execute(query)]


def series_instance_count(engine: Engine, series_uid: str) -> int:
    """Instances indexed in the series (its counter; 0 for a series not indexed)."""
    with engine.connect() as conn:
        return conn.execute(select(series.c.num_instances).where(series.c.series_uid == series_uid)).scalar() or 0


def first_instance_path(engine: Engine, study_uid: str) -> str | None:
    """The path of the study's first indexed instance (its folder is the study's), or None."""
    with engine.connect() as conn:
        return conn.execute(
            select(instances.c.path).join(series, instances.c.series_pk == series.c.pk)
            .join(studies, series.c.study_pk == studies.c.pk)
            .where(studies.c.study_uid == study_uid).order_by(instances.c.pk).limit(1)).scalar()


# -- studies ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudySummary:
    study_uid: str
    account: str
    patient_id: str
    patient_name: str
    first_path: str  # of its first instance: the study's folder
    latest_calling_aet: str  # who sent its latest instance


def study_summary(engine: Engine, study_uid: str) -> StudySummary | None:
    """The study's account, patient, first file and latest sender; None if it has no instance."""
    with engine.connect() as conn:
        study = conn.execute(
            select(studies.c.pk, studies.c.account, patients.c.patient_id, patients.c.patient_name)
            .join(patients, studies.c.patient_pk == patients.c.pk).where(studies.c.study_uid == study_uid)
        ).first()
        if study is None:
            return None
        in_study = select(instances.c.path, instances.c.calling_aet).join(
            series, instances.c.series_pk == series.c.pk).where(series.c.study_pk == study.pk)
        first = conn.execute(in_study.order_by(instances.c.pk).limit(1)).first()
        latest = conn.execute(in_study.order_by(instances.c.received_at.desc(), instances.c.pk.desc())
                              .limit(1)).first()
    if first is None or latest is None:
        return None
    return StudySummary(study_uid, study.account, study.patient_id, study.patient_name, first.path,
                        latest.calling_aet)


@dataclass(frozen=True)
class SeriesFiles:
    series: Row  # the series row
    paths: list[str]  # of its instances, by instance number
    first_header_json: str  # of the first of them


@dataclass(frozen=True)
class StudyRows:
    study: Row  # the study row with patient_name, patient_id, birth_date and sex
    series: list[SeriesFiles]
    first_path: str  # of its first indexed instance: the study's folder


def study_rows(engine: Engine, study_uid: str) -> StudyRows | None:
    """A study with its patient, its series and their files, read in one transaction (for its
    scan sheet); None when it is not indexed or has no instance."""
    with engine.connect() as conn:
        study = conn.execute(
            select(studies, patients.c.patient_name, patients.c.patient_id, patients.c.birth_date, patients.c.sex)
            .join(patients, studies.c.patient_pk == patients.c.pk).where(studies.c.study_uid == study_uid)
        ).first()
        if study is None:
            return None
        first_path = conn.execute(
            select(instances.c.path).join(series, instances.c.series_pk == series.c.pk)
            .where(series.c.study_pk == study.pk).order_by(instances.c.pk).limit(1)
        ).scalar()
        if first_path is None:
            return None
        found = [_series_files(conn, row) for row in conn.execute(select(series).where(series.c.study_pk == study.pk))]
    return StudyRows(study, [files for files in found if files is not None], first_path)


def _series_files(conn: Connection, row: Row) -> SeriesFiles | None:
    members = conn.execute(select(instances.c.pk, instances.c.path).where(instances.c.series_pk == row.pk)
                           .order_by(instances.c.instance_number, instances.c.pk)).all()
    if not members:
        return None
    first_json = conn.execute(select(instances.c.header_json).where(instances.c.pk == members[0].pk)).scalar_one()
    return SeriesFiles(row, [member.path for member in members], first_json)


@dataclass(frozen=True)
class DeletedRows:
    paths: list[str]  # of its instances, in index order
    size_bytes: int


class StudyIsProtected(Exception):
    """The study (or its patient) is protected: nothing was deleted."""


def delete_study_rows(engine: Engine, study_uid: str, now: datetime, spare_protected: bool = False,
                      area_of: Callable[[str], str] | None = None, home: str = "") -> DeletedRows | None:
    """Delete the study's instances, series and study (the patient's counters, or the patient
    when it was their last study) and record `study-deleted`, in one transaction; None when the
    study is not indexed.  `spare_protected`: raise StudyIsProtected instead when the study or
    its patient is protected (read in this transaction, so a flag set meanwhile is honoured);
    `area_of(path)`: the storage area of each file, whose usage totals (other than `home`'s) drop."""
    with engine.begin() as conn:
        study = conn.execute(select(studies, patients.c.protected.label("patient_protected"))
                             .join(patients, studies.c.patient_pk == patients.c.pk)
                             .where(studies.c.study_uid == study_uid)).first()
        if study is None:
            return None
        if spare_protected and (study.protected or study.patient_protected):
            raise StudyIsProtected(study_uid)
        series_pks = select(series.c.pk).where(series.c.study_pk == study.pk).scalar_subquery()
        files = conn.execute(select(instances.c.path, instances.c.size_bytes)
                             .where(instances.c.series_pk.in_(series_pks)).order_by(instances.c.pk)).all()
        paths = [path for path, _ in files]
        if area_of is not None:
            for area, (size, count) in area_usage_of_paths(files, area_of).items():
                add_area_usage(conn, area, -size, -count, home)
        conn.execute(delete(instances).where(instances.c.series_pk.in_(series_pks)))
        series_count = conn.execute(delete(series).where(series.c.study_pk == study.pk)).rowcount
        conn.execute(delete(studies).where(studies.c.pk == study.pk))
        conn.execute(update(patients).where(patients.c.pk == study.patient_pk).values(
            num_studies=patients.c.num_studies - 1, num_series=patients.c.num_series - series_count,
            num_instances=patients.c.num_instances - len(paths)))
        conn.execute(delete(patients).where(patients.c.pk == study.patient_pk, patients.c.num_studies <= 0))
        conn.execute(insert(changes).values(kind="study-deleted", level="study", uid=study_uid, at=now))
    return DeletedRows(paths, study.size_bytes)


# -- study-stable marks ----------------------------------------------------------------------
_stable_pending = or_(studies.c.stable_at.is_(None), studies.c.stable_at < studies.c.updated_at)


@dataclass(frozen=True)
class QuietStudy:
    pk: int
    study_uid: str
    updated_at: datetime


def quiet_studies(engine: Engine, cutoff: datetime, since: datetime | None) -> list[QuietStudy]:
    """Studies changed since their last stable mark and not since `cutoff` (nor before `since`)."""
    query = select(studies.c.pk, studies.c.study_uid, studies.c.updated_at).where(
        studies.c.updated_at <= cutoff, _stable_pending)
    if since is not None:
        query = query.where(studies.c.updated_at >= since)
    with engine.connect() as conn:
        return [QuietStudy(row.pk, row.study_uid, row.updated_at) for row in conn.execute(query)]


def mark_study_stable(engine: Engine, study: QuietStudy, node: str, now: datetime) -> bool:
    """Mark the study stable and claim its end-of-study work for `node`, with a `study-stable`
    change row, unless it changed or another node marked it first (one transaction)."""
    with engine.begin() as conn:
        marked = conn.execute(
            update(studies)
            .where(studies.c.pk == study.pk, studies.c.updated_at == study.updated_at, _stable_pending)
            .values(stable_at=studies.c.updated_at, end_work_node=node, end_work_claimed_at=now)
        ).rowcount
        if marked != 1:
            return False
        conn.execute(insert(changes).values(kind="study-stable", level="study", uid=study.study_uid, at=now))
    return True


# -- end-of-study work -----------------------------------------------------------------------
_end_work_pending = and_(studies.c.stable_at.is_not(None),
                         or_(studies.c.end_work_done_for.is_(None), studies.c.end_work_done_for < studies.c.stable_at))


@dataclass(frozen=True)
class EndOfStudyClaim:
    pk: int
    study_uid: str
    stable_at: datetime
    end_work_node: str | None
    end_work_claimed_at: datetime | None


def end_of_study_pending(engine: Engine) -> list[EndOfStudyClaim]:
    """Stable studies whose end-of-study work is not recorded done, with who claimed it when."""
    with engine.connect() as conn:
        rows = conn.execute(select(studies.c.pk, studies.c.study_uid, studies.c.stable_at,
                                   studies.c.end_work_node, studies.c.end_work_claimed_at)
                            .where(_end_work_pending)).all()
    return [EndOfStudyClaim(*row) for row in rows]


def claim_end_of_study(engine: Engine, claim: EndOfStudyClaim, node: str, now: datetime) -> bool:
    """Take the study's pending work for `node` if the claim is still as read (one node wins)."""
    claimed_at = studies.c.end_work_claimed_at
    with engine.begin() as conn:
        return conn.execute(
            update(studies).where(
                studies.c.pk == claim.pk, studies.c.stable_at == claim.stable_at,
                studies.c.end_work_node == claim.end_work_node,
                claimed_at.is_(None) if claim.end_work_claimed_at is None else claimed_at == claim.end_work_claimed_at,
                _end_work_pending)
            .values(end_work_node=node, end_work_claimed_at=now)
        ).rowcount == 1


def study_stable_at(engine: Engine, study_uid: str) -> datetime | None:
    with engine.connect() as conn:
        return conn.execute(select(studies.c.stable_at).where(studies.c.study_uid == study_uid)).scalar()


def end_of_study_done(engine: Engine, study_uid: str, stable_at: datetime) -> None:
    """Record the work done for the stable mark `stable_at` (never moving the record back)."""
    with engine.begin() as conn:
        conn.execute(update(studies).where(
            studies.c.study_uid == study_uid,
            or_(studies.c.end_work_done_for.is_(None), studies.c.end_work_done_for < stable_at))
            .values(end_work_done_for=stable_at))


# -- storage commitment ----------------------------------------------------------------------
def recent_commitment_requests(engine: Engine, count: int) -> list[dict]:
    """The latest Storage Commitment requests first: who asked, when, and how far they got."""
    c = commitment_requests.c
    query = (select(c.transaction_uid, c.requester_aet, c.received_at, c.state, c.num_requested, c.num_committed,
                    c.num_failed, c.attempts, c.last_error).order_by(c.pk.desc()).limit(count))
    with engine.connect() as conn:
        return [row._asdict() for row in conn.execute(query)]
