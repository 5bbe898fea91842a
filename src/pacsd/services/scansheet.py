"""Scan sheets: one PDF and one CSV per study, in the study's folder, from the index.

`read_study_sheet` gathers what the sheet shows (study, patient, one row per series with its
acquisition parameters); `ScanSheetWriter` renders and (re)writes both files atomically.  The PDF
layout itself is `pacsd.services.sheetpdf`.
"""

from __future__ import annotations

import csv
import io
import logging
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from sqlalchemy import Engine, Row

from pacsd.area_paths import area_path, split_area_path
from pacsd.config import ScanSheetSettings
from pacsd.dicom.header import first_text
from pacsd.dicom.nesting import load_header_json
from pacsd.dicom.person_names import readable_person_name
from pacsd.index.repository import SeriesFiles, study_rows
from pacsd.pathnames import path_component
from pacsd.services.actionlog import ActionLog
from pacsd.services.sheetfonts import SheetFonts
from pacsd.services.sheetpdf import render_sheet_pdf
from pacsd.services.thumbnails import thumbnail
from pacsd.services.workqueue import StopRequested
from pacsd.storage.blobstore import BlobStore
from pacsd.storage.layout import Layout

log = logging.getLogger(__name__)

SHEETS_FOLDER = "ScanSheets"  # for layouts without a study folder (e.g. flat)

# (column title, SeriesRow attribute): the PDF table and the CSV share these.
SERIES_COLUMNS = [
    ("Series", "number"), ("Description", "description"), ("Modality", "modality"),
    ("Protocol", "protocol"), ("Images", "images"), ("TR", "repetition_time"), ("TE", "echo_time"),
    ("TI", "inversion_time"), ("Flip", "flip_angle"), ("Slice", "slice_thickness"),
    ("Matrix", "matrix"), ("Acq. time", "acquisition_time"),
]


@dataclass
class SeriesRow:
    number: str
    description: str
    modality: str
    protocol: str
    images: str
    repetition_time: str = ""
    echo_time: str = ""
    inversion_time: str = ""
    flip_angle: str = ""
    slice_thickness: str = ""
    matrix: str = ""
    acquisition_time: str = ""
    thumbnail_source: Path | None = None

    def cells(self) -> list[str]:
        return [getattr(self, attribute) for _, attribute in SERIES_COLUMNS]


@dataclass
class StudySheet:
    study_uid: str
    study_dir: PurePosixPath
    fields: list[tuple[str, str]]  # (label, value), in the order printed
    series: list[SeriesRow] = field(default_factory=list)


def _date(text: str) -> str:
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) >= 8 and text[:8].isdigit() else text


def _time(text: str) -> str:
    digits = text.split(".")[0]
    return ":".join(digits[i:i + 2] for i in range(0, len(digits), 2)) if digits.isdigit() else text


def _decimal(text: str) -> str:
    """A DS value as people write it: 2000 not 2000.0, 7.38 as is."""
    try:
        return f"{float(text):g}"
    except ValueError:
        return text


def _series_sort_key(row: Row) -> tuple:
    number = row.series_number.strip()
    return (0, int(number), row.pk) if number.lstrip("-").isdigit() else (1, 0, row.pk)


# What a series row shows of its first instance's header (the rest of the header is not parsed).
_ROW_KEYWORDS = ("RepetitionTime", "EchoTime", "InversionTime", "FlipAngle", "SliceThickness", "Rows", "Columns",
                 "AcquisitionTime")
_ROW_TAGS = frozenset(f"{tag_for_keyword(keyword):08X}" for keyword in _ROW_KEYWORDS)


def _header(header_json: str) -> Dataset:
    """The elements of `_ROW_KEYWORDS` of a stored DICOM JSON header (one too deep to read: none)."""
    shown = {tag: element for tag, element in load_header_json(header_json).items() if tag in _ROW_TAGS}
    return Dataset.from_json(shown, bulk_data_uri_handler=lambda *_: b"")


def _series_row(files: SeriesFiles, locate: Callable[[str], Path]) -> SeriesRow:
    row = files.series
    ds = _header(files.first_header_json)
    rows_, columns = first_text(ds, "Rows"), first_text(ds, "Columns")
    return SeriesRow(
        number=row.series_number, description=row.description, modality=row.modality,
        protocol=row.protocol_name, images=str(row.num_instances),
        repetition_time=_decimal(first_text(ds, "RepetitionTime")), echo_time=_decimal(first_text(ds, "EchoTime")),
        inversion_time=_decimal(first_text(ds, "InversionTime")), flip_angle=_decimal(first_text(ds, "FlipAngle")),
        slice_thickness=_decimal(first_text(ds, "SliceThickness")),
        matrix=f"{rows_}x{columns}" if rows_ and columns else "",
        acquisition_time=_time(first_text(ds, "AcquisitionTime")),
        thumbnail_source=locate(files.paths[len(files.paths) // 2]),
    )


def study_dir_for(layout: Layout, first_instance_path: str, study_uid: str) -> PurePosixPath:
    """The study's folder (where its scan sheet goes): the layout's, else ScanSheets/<uid>."""
    area_prefix, inside = split_area_path(first_instance_path, "")
    study_dir = layout.study_dir_of(PurePosixPath(inside))
    if study_dir is None:
        study_dir = PurePosixPath(SHEETS_FOLDER, path_component(study_uid))
    return PurePosixPath(area_path(area_prefix, study_dir, "")) if area_prefix else study_dir


def read_study_sheet(engine: Engine, study_uid: str, layout: Layout,
                     locate: Callable[[str], Path]) -> StudySheet | None:
    """What the scan sheet of `study_uid` shows, from the index (None: no such study); `locate`
    gives the file of an index path (`BlobStore.path_of`)."""
    found = study_rows(engine, study_uid)
    if found is None:
        return None
    study, first_path = found.study, found.first_path
    in_order = sorted(found.series, key=lambda files: _series_sort_key(files.series))
    series_rows = [files.series for files in in_order]
    rows = [_series_row(files, locate) for files in in_order]
    study_dir = study_dir_for(layout, first_path, study_uid)
    stations = sorted({row.station_name for row in series_rows if row.station_name})
    fields = [
        ("Patient name", readable_person_name(study.patient_name)), ("Patient ID", study.patient_id),
        ("Birth date", _date(study.birth_date)), ("Sex", study.sex),
        ("Study date", _date(study.study_date)), ("Study time", _time(study.study_time)),
        ("Description", study.description), ("Accession", study.accession_number),
        ("Requesting physician", readable_person_name(study.requesting_physician)),
        ("Referring physician", readable_person_name(study.referring_physician)),
        ("Institution", study.institution), ("Station", ", ".join(stations)),
        ("Account", study.account), ("Study UID", study.study_uid),
    ]
    return StudySheet(study_uid, study_dir, fields, rows)


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: str) -> str:
    """Keep a spreadsheet from running a tag value as a formula (CSV injection)."""
    if value.startswith(_FORMULA_STARTS):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def sheet_csv(sheet: StudySheet) -> bytes:
    """The series table as CSV (UTF-8), one row per series under a header row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([title for title, _ in SERIES_COLUMNS])
    for row in sheet.series:
        writer.writerow([_csv_cell(cell) for cell in row.cells()])
    return out.getvalue().encode("utf-8")


class ScanSheetWriter:
    """Writes `<study dir>/<file_name>.pdf` and `.csv` for a study, replacing earlier versions."""

    def __init__(self, engine: Engine, blobs: BlobStore, layout: Layout, settings: ScanSheetSettings, actions: ActionLog,
                 stop: threading.Event | None = None) -> None:
        """`stop`: once set, a sheet not yet written is given up (`StopRequested`)."""
        self.engine, self.blobs, self.layout = engine, blobs, layout
        self.stop = stop if stop is not None else threading.Event()
        self.settings = settings  # ScanSheetSettings
        self.actions = actions
        self.fonts = SheetFonts(settings.fonts)
        # Sheets of one study are written one at a time, each from what the index says once it
        # has the lock, so an older sheet never lands after a newer one.
        self._locks = [threading.Lock() for _ in range(64)]

    def write(self, study_uid: str) -> tuple[Path, Path] | None:
        with self._locks[zlib.crc32(study_uid.encode()) % len(self._locks)]:
            return self._write(study_uid)

    def _write(self, study_uid: str) -> tuple[Path, Path] | None:
        sheet = read_study_sheet(self.engine, study_uid, self.layout, self.blobs.path_of)
        if sheet is None:
            log.warning("no scan sheet for %s: the study is not in the index", study_uid)
            return None
        thumbnails = []
        for row in sheet.series:
            self._stop_if_asked(study_uid)
            thumbnails.append((row, thumbnail(row.thumbnail_source, self.settings.thumbnail_size)
                               if row.thumbnail_source else None))
        pdf = render_sheet_pdf(sheet, SERIES_COLUMNS, thumbnails, self.fonts)
        self._stop_if_asked(study_uid)
        name = path_component(self.settings.file_name)
        # The CSV first: whoever sees a new PDF can rely on the CSV beside it being as new.
        csv_path, pdf_path = self.blobs.replace_files([(sheet.study_dir / f"{name}.csv", sheet_csv(sheet)),
                                                       (sheet.study_dir / f"{name}.pdf", pdf)])
        self.actions.record("scan-sheet", study=study_uid, pdf=pdf_path, csv=csv_path, series=len(sheet.series))
        log.debug("scan sheet of %s written: %s", study_uid, pdf_path)
        return pdf_path, csv_path

    def _stop_if_asked(self, study_uid: str) -> None:
        if self.stop.is_set():
            raise StopRequested(f"scan sheet of {study_uid} not written: stopping")
