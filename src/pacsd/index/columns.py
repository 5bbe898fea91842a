"""Which DICOM attribute each typed index column holds, and how long it may be.

Ingest fills the columns from a header through this table; query matching can translate a key
to its column through it.  Lengths are the VR maxima (PN components allowed their 64 x 5).
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from pacsd.dicom.header import first_text

PATIENT_COLUMNS: dict[str, tuple[str, int]] = {
    "patient_id": ("PatientID", 64),
    "patient_name": ("PatientName", 324),
    "birth_date": ("PatientBirthDate", 8),
    "sex": ("PatientSex", 16),
}
STUDY_COLUMNS: dict[str, tuple[str, int]] = {
    "study_date": ("StudyDate", 8),
    "study_time": ("StudyTime", 16),
    "accession_number": ("AccessionNumber", 64),
    "study_id": ("StudyID", 16),
    "description": ("StudyDescription", 64),
    "referring_physician": ("ReferringPhysicianName", 324),
    "requesting_physician": ("RequestingPhysician", 324),
    "institution": ("InstitutionName", 64),
}
SERIES_COLUMNS: dict[str, tuple[str, int]] = {
    "modality": ("Modality", 16),
    "series_number": ("SeriesNumber", 12),
    "description": ("SeriesDescription", 64),
    "body_part": ("BodyPartExamined", 16),
    "protocol_name": ("ProtocolName", 64),
    "station_name": ("StationName", 16),
    "series_date": ("SeriesDate", 8),
    "series_time": ("SeriesTime", 16),
}


def column_values(dataset: Dataset, columns: dict[str, tuple[str, int]]) -> dict[str, str]:
    """The values of `columns` taken from a header, each cut to its column's length."""
    return {column: first_text(dataset, keyword)[:length] for column, (keyword, length) in columns.items()}
