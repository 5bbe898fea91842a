"""Corrections of stored instances: change patient/study/series attributes, merge patients, move a
series to another study, split a study. Files are rewritten (pixel data bytes untouched) and the
index rows swapped in one transaction; the old values go to the action log.

Crash safety, in this order (each instance ends old or new, never a mix of file and row):
1. every new header is built and checked in memory (VR rules, lengths) before anything is written;
2. a journal `.pacsd/corrections/<id>.json` (old path -> new path of each instance) is written and
   flushed, and locked while the correction runs;
3. each new file is written beside its old one under a new name (temp file, fsync, rename);
4. one index transaction removes the old rows and indexes the new files;
5. the old files are removed, then the journal.
A crash before 4 commits leaves the old rows naming the old files: recovery removes the new files.
A crash after it leaves the new rows naming the new files: recovery removes the old files.
Recovery (`recover_interrupted`) runs at the start of `pacsd check` and of every correction; a
journal still locked belongs to a correction that is running and is left alone.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from pacsd.dicom.files import write_atomically
from pacsd.dicom.header import read_header
from pacsd.dicom.pixel_span import PixelSpan, read_header_and_pixels, write_part10
from pacsd.dicom.tags import apply_change
from pacsd.errors import PacsError
from pacsd.index.corrections import (
    TouchedInstance,
    instances_of,
    path_is_indexed,
    patient_row,
    replace_instances,
    series_row,
    study_row,
)
from pacsd.services.archive import Archive
from pacsd.services.ingest import instance_record

log = logging.getLogger(__name__)

# What `modify` may change, by level (the attributes the index keeps as columns of that level).
EDITABLE = {
    "patient": ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"),
    "study": ("AccessionNumber", "StudyDescription", "StudyID", "ReferringPhysicianName", "StudyDate", "StudyTime"),
    "series": ("SeriesDescription", "SeriesNumber", "BodyPartExamined", "ProtocolName"),
}
MAX_INSTANCES = 20000  # one correction holds every header in memory: a bound on what it may hold
PAUSE_ENV = "PACSD_PAUSE_CORRECTION_AT"  # tests: files-written | committed (the process then waits)


class CorrectionRefused(PacsError):
    """The correction cannot be made as asked (nothing was changed)."""


@dataclass
class Correction:
    """What a correction changes: a description, the instances, the values before and after."""

    kind: str
    subject: str
    instances: int
    old: dict[str, str] = field(default_factory=dict)
    new: dict[str, str] = field(default_factory=dict)
    new_study_uid: str = ""

    def lines(self) -> list[str]:
        """The change, as a confirmation shows it."""
        shown = [f"{self.kind} {self.subject}: {self.instances} instance(s)"]
        shown += [f"  {key}: {self.old.get(key, '')!r} -> {value!r}" for key, value in self.new.items()]
        return shown


# -- the corrections ---------------------------------------------------------------------------------
def plan_modify(archive: Archive, level: str, uid: str, changes: dict[str, str]) -> tuple[Correction, list[TouchedInstance]]:
    """What `modify` would do (for a confirmation), checking the request; nothing is written."""
    if level not in EDITABLE:
        raise CorrectionRefused(f"level must be one of {', '.join(EDITABLE)}")
    unknown = [key for key in changes if key not in EDITABLE[level]]
    if unknown or not changes:
        raise CorrectionRefused(f"at {level} level these can be changed: {', '.join(EDITABLE[level])}"
                                + (f" (not {', '.join(unknown)})" if unknown else ""))
    with archive.engine.connect() as conn:
        selector: dict[str, dict[str, Any]] = {"patient": {"patient_id": uid}, "study": {"study_uid": uid}, "series": {"series_uids": [uid]}}
        touched = instances_of(conn, **selector[level])
        if not touched:
            raise CorrectionRefused(f"no stored instance of {level} {uid}")
        new_id = changes.get("PatientID")
        if new_id is not None and new_id.strip() != uid and patient_row(conn, new_id.strip()) is not None:
            raise CorrectionRefused(f"patient {new_id.strip()} exists already: merge the patients instead")
    old = _current_values(archive, touched[0], list(changes), check=changes)
    return Correction("modify", f"{level} {uid}", len(touched), old, dict(changes)), touched


def modify(archive: Archive, level: str, uid: str, changes: dict[str, str], by: str = "") -> Correction:
    """Change attributes of every instance of a patient, study or series (see EDITABLE)."""
    recover_interrupted(archive)
    correction, touched = plan_modify(archive, level, uid, changes)
    renew = _uid_renewal(archive, level)
    _rewrite(archive, touched, lambda ds: _set(ds, changes, renew), correction, by)
    return correction


def plan_merge(archive: Archive, source_id: str, target_id: str) -> tuple[Correction, list[TouchedInstance], dict]:
    with archive.engine.connect() as conn:
        target = patient_row(conn, target_id)
        if target is None or patient_row(conn, source_id) is None or source_id == target_id:
            raise CorrectionRefused("merge needs two different patients that are both in the archive")
        touched = instances_of(conn, patient_id=source_id)
    values = {"PatientID": target.patient_id, "PatientName": target.patient_name,
              "PatientBirthDate": target.birth_date, "PatientSex": target.sex}
    old = _current_values(archive, touched[0], list(values))
    return Correction("merge", f"patient {source_id} into {target_id}", len(touched), old, values), touched, values


def merge_patients(archive: Archive, source_id: str, target_id: str, by: str = "") -> Correction:
    """File every study of patient `source_id` under patient `target_id` (its ID, name, birth date, sex)."""
    recover_interrupted(archive)
    correction, touched, values = plan_merge(archive, source_id, target_id)
    _rewrite(archive, touched, lambda ds: _set(ds, values, None), correction, by)
    return correction


def plan_move(archive: Archive, series_uids: list[str], target_study_uid: str | None,
              source_study_uid: str | None = None) -> tuple[Correction, list[TouchedInstance], dict]:
    """Move series to an existing study (target) or, for a split, to a new study like their own."""
    with archive.engine.connect() as conn:
        found = [series_row(conn, uid) for uid in series_uids]
        rows = [row for row in found if row is not None]
        if not series_uids or len(rows) < len(found):
            raise CorrectionRefused("every series to move must be in the archive")
        if source_study_uid is not None and any(row.study_uid != source_study_uid for row in rows):
            raise CorrectionRefused(f"every series to split off must belong to study {source_study_uid}")
        study = study_row(conn, target_study_uid or rows[0].study_uid)
        if study is None:
            raise CorrectionRefused(f"no study {target_study_uid} in the archive")
        if target_study_uid is None and len(series_uids) >= study.num_series:
            raise CorrectionRefused("a split leaves at least one series in the study")
        touched = instances_of(conn, series_uids=series_uids)
    values = {"StudyInstanceUID": target_study_uid or generate_uid(), "StudyDate": study.study_date,
              "StudyTime": study.study_time, "AccessionNumber": study.accession_number, "StudyID": study.study_id,
              "StudyDescription": study.description, "ReferringPhysicianName": study.referring_physician,
              "PatientID": study.patient_id, "PatientName": study.patient_name,
              "PatientBirthDate": study.birth_date, "PatientSex": study.sex}
    kind = "move" if target_study_uid else "split"
    where = f"to study {target_study_uid}" if target_study_uid else f"off study {study.study_uid}"
    old = _current_values(archive, touched[0], list(values))
    correction = Correction(kind, f"series {', '.join(series_uids)} {where}", len(touched), old, values,
                            new_study_uid=values["StudyInstanceUID"])
    return correction, touched, values


def move_series(archive: Archive, series_uids: list[str], target_study_uid: str, by: str = "") -> Correction:
    """File series under another (existing) study: its UID, study attributes and patient."""
    recover_interrupted(archive)
    correction, touched, values = plan_move(archive, series_uids, target_study_uid)
    _rewrite(archive, touched, lambda ds: _set(ds, values, None), correction, by)
    return correction


def split_study(archive: Archive, study_uid: str, series_uids: list[str], by: str = "") -> Correction:
    """Move some series of a study into a new study (new Study Instance UID, the same study attributes)."""
    recover_interrupted(archive)
    correction, touched, values = plan_move(archive, series_uids, None, source_study_uid=study_uid)
    _rewrite(archive, touched, lambda ds: _set(ds, values, None), correction, by)
    return correction


# -- the mechanics -------------------------------------------------------------------------------------
def _set(ds: Dataset, values: dict[str, str], renew: dict | None) -> None:
    for keyword, value in sorted(values.items()):
        apply_change(ds, keyword, value)  # VR rules and length: a hostile value stops everything here
    if renew is not None:
        for keyword in renew["levels"]:
            old = str(ds.get(keyword, ""))
            ds[keyword].value = renew["map"].setdefault((keyword, old), generate_uid())
        if "SOPInstanceUID" in renew["levels"]:
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def _uid_renewal(archive: Archive, level: str) -> dict | None:
    """With `corrections.replace_uids`, the UIDs of the changed level and those below are new (as Orthanc)."""
    if not archive.settings.corrections.replace_uids:
        return None
    below = {"patient": ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"],
             "study": ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"],
             "series": ["SeriesInstanceUID", "SOPInstanceUID"]}
    return {"levels": below[level], "map": {}}


def _current_values(archive: Archive, instance: TouchedInstance, keywords: list[str],
                    check: dict[str, str] | None = None) -> dict[str, str]:
    """The values in the first instance's file; `check`: new values tried on it (VR rules, length)."""
    header, _ = read_header_and_pixels(archive.blobs.absolute(instance.path))
    current = {keyword: str(header.get(keyword, "") or "") for keyword in keywords}
    if check:
        _set(header, check, None)
    return current


@dataclass
class _Prepared:
    old: TouchedInstance
    header: Dataset
    pixels: PixelSpan | None
    new_path: str


def _write_prepared(prepared: _Prepared, out: BinaryIO) -> None:
    write_part10(prepared.header, out, prepared.pixels)


def _rewrite(archive: Archive, touched: list[TouchedInstance], change: Callable[[Dataset], None],
             correction: Correction, by: str) -> None:
    if len(touched) > MAX_INSTANCES:
        raise CorrectionRefused(f"{len(touched)} instances: one correction changes at most {MAX_INSTANCES}")
    blobs = archive.blobs
    correction_id = f"{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(4)}"
    prepared = []
    for item in touched:  # 1: all in memory, checked, before anything is written
        header, pixels = read_header_and_pixels(blobs.absolute(item.path), with_trailing=True)
        change(header)
        prepared.append(_Prepared(item, header, pixels, _new_name(item.path, correction_id)))
    journal = _journal_path(archive, correction_id)
    entries = [{"old": p.old.path, "new": p.new_path} for p in prepared]
    with _locked_journal(journal, entries):  # 2
        records = []
        try:
            for p in prepared:  # 3
                target = blobs.absolute(p.new_path)
                write_atomically(target, partial(_write_prepared, p))
                record = instance_record(read_header(target), p.old.calling_aet)
                record.path, record.checksum, record.account = p.new_path, _sha256(target), p.old.account
                records.append(record)
            _pause("files-written")
            with archive.engine.begin() as conn:  # 4
                replace_instances(conn, touched, records)
        except BaseException:
            for p in prepared:  # not committed: the old rows name the old files; the new ones go
                blobs.remove(p.new_path)
            journal.unlink(missing_ok=True)
            raise
        _pause("committed")
        for p in prepared:  # 5
            _remove_quietly(archive, p.old.path)
    journal.unlink(missing_ok=True)
    archive.actions.record(f"corrected-{correction.kind}", subject=correction.subject, instances=correction.instances,
                           old=json.dumps(correction.old, ensure_ascii=False),
                           new=json.dumps(correction.new, ensure_ascii=False), by=by)
    log.info("%s by %s", "; ".join(correction.lines()), by or "?")


def _new_name(path: str, correction_id: str) -> str:
    """Beside the old file: its name without an earlier correction's mark, with this one's."""
    old = PurePosixPath(path)
    stem = old.name.split(".c-", 1)[0].removesuffix(".dcm")
    return str(old.with_name(f"{stem}.c-{correction_id}.dcm"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _remove_quietly(archive: Archive, path: str) -> None:
    try:
        archive.blobs.remove(path)
    except OSError as exc:
        log.warning("correction: cannot remove the old file %s: %s (pacsd check lists it)", path, exc)


def _pause(point: str) -> None:
    """Tests stop here to kill the process at a known point (a real kill -9, by the test)."""
    if os.environ.get(PAUSE_ENV) == point:
        print(f"correction paused at {point}", file=sys.stderr, flush=True)
        signal.pause()


# -- the journal and recovery -----------------------------------------------------------------------
def _journal_folder(archive: Archive) -> Path:
    return archive.blobs.root / ".pacsd" / "corrections"


def _journal_path(archive: Archive, correction_id: str) -> Path:
    folder = _journal_folder(archive)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder / f"{correction_id}.json"


class _locked_journal:
    """Write the journal durably and hold an exclusive lock on it while the correction runs."""

    def __init__(self, path: Path, entries: list[dict]) -> None:
        self.path, self.entries = path, entries
        self.handle: BinaryIO | None = None

    def __enter__(self) -> None:
        write_atomically(self.path, lambda out: out.write(json.dumps({"instances": self.entries}).encode()))
        self.handle = open(self.path, "rb")
        fcntl.flock(self.handle, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()


def recover_interrupted(archive: Archive) -> list[str]:
    """Finish every correction a crash interrupted (see the module docstring); the journals handled."""
    folder = _journal_folder(archive)
    if not folder.is_dir():
        return []
    finished = []
    for journal in sorted(folder.glob("*.json")):
        with open(journal, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a correction running now
            try:
                entries = json.loads(handle.read() or b"{}").get("instances", [])
            except ValueError:
                entries = []  # never completely written: nothing was done after it
            _finish(archive, entries, journal.name)
            journal.unlink(missing_ok=True)
            finished.append(journal.name)
    return finished


def _finish(archive: Archive, entries: list[dict], name: str) -> None:
    # one transaction swapped every row: all new or all old, so one entry tells
    committed = bool(entries) and path_is_indexed(archive.engine, entries[0]["new"])
    for entry in entries:
        _remove_quietly(archive, entry["old"] if committed else entry["new"])
    log.warning("interrupted correction %s finished: %d instance(s) %s", name, len(entries),
                "kept new (it had committed)" if committed else "kept old (it had not committed)")
    archive.actions.record("correction-recovered", journal=name, instances=len(entries),
                           kept="new" if committed else "old")
