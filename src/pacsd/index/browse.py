"""Read-only look-ups of the index for browsing the archive, the named operations the web pages
call: study search, a patient, a study, its series and instances, each limited to the accounts
a caller may see (None = all).

Queries use the typed, indexed columns and the counters kept at ingest; lists are paged with
LIMIT/OFFSET and never counted.  Values reach SQL as bound parameters only.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Engine, Row, Select, and_, exists, select

from pacsd.dicom.nesting import load_header_json
from pacsd.index.matching import LIKE_ESCAPE, escape_like, like_pattern
from pacsd.index.schema import instances, patients, series, studies

SORTABLE = {
    "date": (studies.c.study_date, studies.c.study_time),
    "name": (patients.c.patient_name_upper,),
    "patient_id": (patients.c.patient_id,),
    "accession": (studies.c.accession_number,),
    "description": (studies.c.description,),
    "modalities": (studies.c.modalities,),
    "images": (studies.c.num_instances,),
    "received": (studies.c.updated_at,),
}


@dataclass(frozen=True)
class StudyFilter:
    """What the search form asks for; empty fields match everything."""

    patient_name: str = ""  # * and ? wildcards; without any, a prefix
    patient_id: str = ""
    date_from: str = ""  # YYYYMMDD
    date_to: str = ""
    modality: str = ""
    accession: str = ""
    description: str = ""  # words anywhere in the description
    account: str = ""


def search_pattern(text: str) -> str:
    """A search box's text as a LIKE pattern: * and ? are wildcards; without any, a prefix."""
    pattern = like_pattern(text)
    return pattern if "*" in text or "?" in text else pattern + "%"


def _visible(query: Select, accounts: set[str] | None) -> Select:
    return query if accounts is None else query.where(studies.c.account.in_(sorted(accounts)))


def _study_columns() -> tuple:
    return (studies, patients.c.patient_id, patients.c.patient_name, patients.c.birth_date, patients.c.sex,
            patients.c.protected.label("patient_protected"))


def search_studies(engine: Engine, wanted: StudyFilter, accounts: set[str] | None, sort: str = "date",
                   descending: bool = True, page: int = 1, per_page: int = 50) -> tuple[list, bool]:
    """One page of matching studies (with their patient) and whether another page follows."""
    query = select(*_study_columns()).join(patients, studies.c.patient_pk == patients.c.pk)
    conditions: list[ColumnElement[bool]] = []
    if wanted.patient_name:
        name_pattern = search_pattern(wanted.patient_name.upper())
        conditions.append(patients.c.patient_name_upper.like(name_pattern, escape=LIKE_ESCAPE))
    if wanted.patient_id:
        conditions.append(patients.c.patient_id.like(search_pattern(wanted.patient_id), escape=LIKE_ESCAPE))
    if wanted.accession:
        conditions.append(studies.c.accession_number.like(search_pattern(wanted.accession), escape=LIKE_ESCAPE))
    if wanted.description:
        conditions.append(studies.c.description.ilike(f"%{escape_like(wanted.description)}%", escape=LIKE_ESCAPE))
    if wanted.date_from:
        conditions.append(studies.c.study_date >= wanted.date_from)
    if wanted.date_to:
        conditions.append(studies.c.study_date <= wanted.date_to)
    if wanted.account:
        conditions.append(studies.c.account == wanted.account)
    if wanted.modality:
        conditions.append(exists().where(and_(series.c.study_pk == studies.c.pk,
                                              series.c.modality == wanted.modality.upper())))
    query = _visible(query.where(*conditions), accounts)
    columns = SORTABLE.get(sort, SORTABLE["date"])
    query = query.order_by(*(c.desc() if descending else c.asc() for c in columns), studies.c.pk.desc())
    page = max(1, page)
    with engine.connect() as conn:
        rows = conn.execute(query.limit(per_page + 1).offset((page - 1) * per_page)).all()
    return list(rows[:per_page]), len(rows) > per_page


def find_study(engine: Engine, study_uid: str, accounts: set[str] | None) -> Row | None:
    """The study with its patient, or None when it does not exist or is not visible."""
    query = select(*_study_columns()).join(patients, studies.c.patient_pk == patients.c.pk)
    with engine.connect() as conn:
        return conn.execute(_visible(query.where(studies.c.study_uid == study_uid), accounts)).first()


def find_patient(engine: Engine, patient_id: str, accounts: set[str] | None) -> tuple[object, list] | None:
    """The patient and the studies of theirs the caller may see; None when there are none."""
    with engine.connect() as conn:
        patient = conn.execute(select(patients).where(patients.c.patient_id == patient_id)).first()
        if patient is None:
            return None
        query = select(studies).where(studies.c.patient_pk == patient.pk).order_by(studies.c.study_date.desc())
        visible = conn.execute(_visible(query, accounts)).all()
    return (patient, list(visible)) if visible else None


def series_of_study(engine: Engine, study_pk: int) -> list:
    query = select(series).where(series.c.study_pk == study_pk)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return sorted(rows, key=lambda row: (_number(row.series_number), row.series_uid))


def find_series(engine: Engine, series_uid: str, accounts: set[str] | None) -> Row | None:
    """The series with its study's UID, pk and account, or None when not visible."""
    query = (select(series, studies.c.study_uid, studies.c.account)
             .join(studies, series.c.study_pk == studies.c.pk).where(series.c.series_uid == series_uid))
    with engine.connect() as conn:
        return conn.execute(_visible(query, accounts)).first()


def instances_of_series(engine: Engine, series_pk: int) -> list:
    """The series' instances in display order, each with its frame count."""
    query = select(instances.c.sop_uid, instances.c.instance_number, instances.c.header_json).where(
        instances.c.series_pk == series_pk)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    ordered = sorted(rows, key=lambda r: (r.instance_number is None, r.instance_number or 0, r.sop_uid))
    return [InstanceEntry(r.sop_uid, r.instance_number, header_frames(r.header_json)) for r in ordered]


def find_instance(engine: Engine, sop_uid: str, accounts: set[str] | None) -> Row | None:
    """The instance (path, header JSON, series UID) when the caller may see its study."""
    query = (select(instances.c.sop_uid, instances.c.path, instances.c.header_json, series.c.series_uid,
                    studies.c.study_uid)
             .join(series, instances.c.series_pk == series.c.pk)
             .join(studies, series.c.study_pk == studies.c.pk)
             .where(instances.c.sop_uid == sop_uid))
    with engine.connect() as conn:
        return conn.execute(_visible(query, accounts)).first()


@dataclass(frozen=True)
class InstanceEntry:
    sop_uid: str
    instance_number: int | None
    frames: int


def header_frames(header_json: str) -> int:
    """Number of Frames (0028,0008) from a DICOM JSON header; 1 when absent."""
    element = load_header_json(header_json).get("00280008", {})
    try:
        return max(1, int(element.get("Value", [1])[0]))
    except (TypeError, ValueError, IndexError):
        return 1


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("inf")
