"""Which query keys the index holds as columns, at which level, and how the levels join.

Keys listed here are matched in SQL and answered from the row; any other key is matched and
answered from an instance's stored DICOM JSON header (see `services.query`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, FromClause

from pacsd.index.schema import instances, patients, series, studies

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
LEVEL_TABLES = {"PATIENT": patients, "STUDY": studies, "SERIES": series, "IMAGE": instances}
UNIQUE_KEYS = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
               "IMAGE": "SOPInstanceUID"}
# The first level of each information model (Study Root has no PATIENT level).
MODEL_TOP = {"patient": "PATIENT", "study": "STUDY"}


@dataclass(frozen=True)
class KeyColumn:
    """Where the index keeps one query key."""

    level: str
    column: Column
    folded: Column | None = None  # an upper-cased twin, for case-insensitive person names
    separator: str | None = None  # the column joins several values with this
    integer: bool = False


COLUMN_KEYS: dict[str, KeyColumn] = {
    "PatientID": KeyColumn("PATIENT", patients.c.patient_id),
    "PatientName": KeyColumn("PATIENT", patients.c.patient_name, patients.c.patient_name_upper, "="),
    "PatientBirthDate": KeyColumn("PATIENT", patients.c.birth_date),
    "PatientSex": KeyColumn("PATIENT", patients.c.sex),
    "NumberOfPatientRelatedStudies": KeyColumn("PATIENT", patients.c.num_studies, integer=True),
    "NumberOfPatientRelatedSeries": KeyColumn("PATIENT", patients.c.num_series, integer=True),
    "NumberOfPatientRelatedInstances": KeyColumn("PATIENT", patients.c.num_instances, integer=True),
    "StudyInstanceUID": KeyColumn("STUDY", studies.c.study_uid),
    "StudyDate": KeyColumn("STUDY", studies.c.study_date),
    "StudyTime": KeyColumn("STUDY", studies.c.study_time),
    "AccessionNumber": KeyColumn("STUDY", studies.c.accession_number),
    "StudyID": KeyColumn("STUDY", studies.c.study_id),
    "StudyDescription": KeyColumn("STUDY", studies.c.description),
    "ReferringPhysicianName": KeyColumn("STUDY", studies.c.referring_physician, separator="="),
    "RequestingPhysician": KeyColumn("STUDY", studies.c.requesting_physician, separator="="),
    "InstitutionName": KeyColumn("STUDY", studies.c.institution),
    "ModalitiesInStudy": KeyColumn("STUDY", studies.c.modalities, separator="\\"),
    "SOPClassesInStudy": KeyColumn("STUDY", studies.c.sop_classes, separator="\\"),
    "NumberOfStudyRelatedSeries": KeyColumn("STUDY", studies.c.num_series, integer=True),
    "NumberOfStudyRelatedInstances": KeyColumn("STUDY", studies.c.num_instances, integer=True),
    "SeriesInstanceUID": KeyColumn("SERIES", series.c.series_uid),
    "Modality": KeyColumn("SERIES", series.c.modality),
    "SeriesNumber": KeyColumn("SERIES", series.c.series_number),
    "SeriesDescription": KeyColumn("SERIES", series.c.description),
    "BodyPartExamined": KeyColumn("SERIES", series.c.body_part),
    "ProtocolName": KeyColumn("SERIES", series.c.protocol_name),
    "StationName": KeyColumn("SERIES", series.c.station_name),
    "SeriesDate": KeyColumn("SERIES", series.c.series_date),
    "SeriesTime": KeyColumn("SERIES", series.c.series_time),
    "NumberOfSeriesRelatedInstances": KeyColumn("SERIES", series.c.num_instances, integer=True),
    "SOPInstanceUID": KeyColumn("IMAGE", instances.c.sop_uid),
    "SOPClassUID": KeyColumn("IMAGE", instances.c.sop_class_uid),
    "InstanceNumber": KeyColumn("IMAGE", instances.c.instance_number, integer=True),
}


def levels_down_to(level: str) -> tuple[str, ...]:
    """PATIENT .. `level`, in order."""
    return LEVELS[: LEVELS.index(level) + 1]


def joined_tables(level: str) -> FromClause:
    """patients joined down to the table of `level` (a FROM clause)."""
    clause: FromClause = patients
    if level in ("STUDY", "SERIES", "IMAGE"):
        clause = clause.join(studies, studies.c.patient_pk == patients.c.pk)
    if level in ("SERIES", "IMAGE"):
        clause = clause.join(series, series.c.study_pk == studies.c.pk)
    if level == "IMAGE":
        clause = clause.join(instances, instances.c.series_pk == series.c.pk)
    return clause
