"""Corrections of stored instances, judged from outside: DCMTK findscu and QIDO-RS before and after,
the files read back with pydicom, and a real `pacsd modify` killed with SIGKILL in the middle of a
merge, after which `pacsd check` finishes it and agrees with the index."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from pacsd.errors import PacsError
from pacsd.index.schema import instances, patients, studies
from pacsd.services import corrections
from pacsd.services.archive import Archive
from tests.conftest import VENV_BIN, make_settings
from tests.dicomgen import write_dicom
from tests.dicomweb_support import (
    dicomweb_admin,  # noqa: F401 (an autouse fixture)
    http,
)
from tests.qr_support import archive_files, findscu


def _two_patients(folder: Path) -> dict[str, list[Path]]:
    """Patient A: one study of two series (2 + 1 images); patient B: one study of one image."""
    study_a, study_b = generate_uid(), generate_uid()
    series = [generate_uid(), generate_uid(), generate_uid()]
    a = dict(PatientID="PAT-A", PatientName="WRONG^NAME", StudyInstanceUID=study_a, AccessionNumber="ACC-A",
             StudyDescription="CT HEAD")
    b = dict(PatientID="PAT-B", PatientName="SAME^PERSON", StudyInstanceUID=study_b, AccessionNumber="ACC-B")
    return {"A": [write_dicom(folder / "a0.dcm", SeriesInstanceUID=series[0], InstanceNumber=1, **a),
                  write_dicom(folder / "a1.dcm", SeriesInstanceUID=series[0], InstanceNumber=2, **a),
                  write_dicom(folder / "a2.dcm", SeriesInstanceUID=series[1], InstanceNumber=1, **a)],
            "B": [write_dicom(folder / "b0.dcm", SeriesInstanceUID=series[2], InstanceNumber=1, **b)]}


def _study_answers(pacs, out: Path, *keys: str) -> list:
    answers, run = findscu(pacs, out, "PatientID", "PatientName", "AccessionNumber", "StudyDescription",
                           "StudyInstanceUID", "NumberOfStudyRelatedInstances", *keys)
    assert run.returncode == 0, run.stderr[-2000:]
    return answers


def _stored_files(archive: Archive) -> dict[str, Path]:
    with archive.engine.connect() as conn:
        return {uid: archive.blobs.absolute(path) for uid, path in conn.execute(
            select(instances.c.sop_uid, instances.c.path)).all()}


@pytest.mark.both_databases
def test_changed_attributes_show_at_once_in_cfind_qido_and_the_files(pacs, web, tmp_path):
    files = _two_patients(tmp_path / "src")
    archive_files(pacs.archive, *files["A"], *files["B"])
    before = _study_answers(pacs, tmp_path / "f1", "PatientID=PAT-A")
    assert [str(a.PatientName) for a in before] == ["WRONG^NAME"]
    originals = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in files["A"]}

    corrections.modify(pacs.archive, "patient", "PAT-A", {"PatientName": "RIGHT^NAME", "PatientSex": "F"}, by="test")
    corrections.modify(pacs.archive, "study", str(before[0].StudyInstanceUID), {"AccessionNumber": "ACC-NEW"})

    after = _study_answers(pacs, tmp_path / "f2", "PatientID=PAT-A")
    assert [(str(a.PatientName), a.AccessionNumber, a.StudyDescription) for a in after] == [
        ("RIGHT^NAME", "ACC-NEW", "CT HEAD")]
    assert int(after[0].NumberOfStudyRelatedInstances) == 3
    qido = http.get(f"{web}/dicom-web/studies", params={"PatientID": "PAT-A", "includefield": "all"}).json()
    assert [s["00100010"]["Value"][0]["Alphabetic"] for s in qido] == ["RIGHT^NAME"]
    assert qido[0]["00080050"]["Value"] == ["ACC-NEW"]
    assert http.get(f"{web}/dicom-web/studies", params={"PatientName": "WRONG*"}).json() == []
    for uid, path in _stored_files(pacs.archive).items():
        ds = pydicom.dcmread(path)
        if uid in originals:
            assert (str(ds.PatientName), ds.PatientSex) == ("RIGHT^NAME", "F")
            assert ds.PixelData == originals[uid].PixelData  # pixel data untouched
            assert ds.SOPInstanceUID == uid  # UIDs kept by default
    log = (tmp_path / "logs" / "actions.log").read_text()
    assert "corrected-modify" in log and "WRONG^NAME" in log and "ACC-A" in log  # the old values
    assert len(list((tmp_path / "storage").rglob("*.dcm"))) == 4  # old files removed


@pytest.mark.both_databases
def test_merge_move_and_split_as_cfind_sees_them(pacs, tmp_path):
    files = _two_patients(tmp_path / "src")
    archive_files(pacs.archive, *files["A"], *files["B"])
    study_a = pydicom.dcmread(files["A"][0]).StudyInstanceUID
    study_b = pydicom.dcmread(files["B"][0]).StudyInstanceUID
    series_a2 = pydicom.dcmread(files["A"][2]).SeriesInstanceUID

    corrections.merge_patients(pacs.archive, "PAT-B", "PAT-A")
    merged = _study_answers(pacs, tmp_path / "m", "PatientID=PAT-A")
    assert sorted(str(a.StudyInstanceUID) for a in merged) == sorted([study_a, study_b])
    assert {str(a.PatientName) for a in merged} == {"WRONG^NAME"}
    assert _study_answers(pacs, tmp_path / "m2", "PatientID=PAT-B") == []

    split = corrections.split_study(pacs.archive, study_a, [series_a2])
    answers = {str(a.StudyInstanceUID): a for a in _study_answers(pacs, tmp_path / "s", "PatientID=PAT-A")}
    assert set(answers) == {study_a, study_b, split.new_study_uid}
    assert int(answers[study_a].NumberOfStudyRelatedInstances) == 2
    assert int(answers[split.new_study_uid].NumberOfStudyRelatedInstances) == 1
    assert answers[split.new_study_uid].AccessionNumber == "ACC-A"

    corrections.move_series(pacs.archive, [series_a2], study_b)
    answers = {str(a.StudyInstanceUID): a for a in _study_answers(pacs, tmp_path / "v", "PatientID=PAT-A")}
    assert set(answers) == {study_a, study_b}  # the split-off study, now empty, is gone
    assert int(answers[study_b].NumberOfStudyRelatedInstances) == 2
    moved = [pydicom.dcmread(p) for p in _stored_files(pacs.archive).values()]
    assert sorted(str(ds.StudyInstanceUID) for ds in moved) == sorted([study_a, study_a, study_b, study_b])
    with pacs.archive.engine.connect() as conn:
        assert conn.execute(select(patients.c.patient_id, patients.c.num_studies, patients.c.num_instances)).all() == [
            ("PAT-A", 2, 4)]
        assert sorted(conn.execute(select(studies.c.num_series, studies.c.num_instances)).all()) == [(1, 2), (2, 2)]


def test_hostile_values_are_refused_before_anything_changes(tmp_path):
    archive = Archive(make_settings(tmp_path))
    try:
        files = _two_patients(tmp_path / "src")
        archive_files(archive, *files["A"])
        before = {p: p.read_bytes() for p in (tmp_path / "storage").rglob("*.dcm")}
        for changes in ({"PatientName": "X" * 400}, {"PatientBirthDate": "2020-13-45"},
                        {"PatientName": "A\x00B"}, {"PatientSex": "FEMALE-AND-MORE-THAN-16"}, {"StudyDate": "x"}):
            with pytest.raises(PacsError):
                corrections.modify(archive, "patient", "PAT-A", changes)
        with pytest.raises(PacsError):
            corrections.modify(archive, "patient", "PAT-A", {"PatientID": "PAT-A/../../etc"} | {"Modality": "MR"})
        after = {p: p.read_bytes() for p in (tmp_path / "storage").rglob("*.dcm")}
        assert after == before
    finally:
        archive.close()


@pytest.mark.both_databases
@pytest.mark.parametrize("point, kept", [("files-written", "old"), ("committed", "new")])
def test_a_merge_killed_midway_is_finished_by_pacsd_check(tmp_path, index_database, point, kept):
    settings = make_settings(tmp_path, database=index_database)
    archive = Archive(settings)
    try:
        files = _two_patients(tmp_path / "src")
        archive_files(archive, *files["A"], *files["B"])
    finally:
        archive.close()
    config = str(tmp_path / "pacsd.yaml")
    pacsd = str(VENV_BIN / "pacsd")
    merge = subprocess.Popen([pacsd, "modify", "--config", config, "--merge-patient", "PAT-A", "--into", "PAT-B",
                              "--yes"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                             env={**os.environ, corrections.PAUSE_ENV: point})
    try:
        line = merge.stderr.readline()
        assert f"paused at {point}" in line, line
        os.kill(merge.pid, signal.SIGKILL)
    finally:
        merge.kill()
        merge.wait(timeout=30)
    assert merge.returncode == -signal.SIGKILL

    check = subprocess.run([pacsd, "check", "--config", config, "--grace", "0", "--checksums"],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "finished 1 interrupted correction" in check.stdout
    again = subprocess.run([pacsd, "check", "--config", config, "--grace", "0", "--checksums", "--json"],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and '"unindexed": []' in again.stdout

    archive = Archive(settings)
    try:
        with archive.engine.connect() as conn:
            ids = dict(conn.execute(select(patients.c.patient_id, patients.c.num_instances)).all())
        stored = _stored_files(archive)
    finally:
        archive.close()
    expected_id = "PAT-A" if kept == "old" else "PAT-B"
    assert ids == ({"PAT-A": 3, "PAT-B": 1} if kept == "old" else {"PAT-B": 4})
    a_uids = {pydicom.dcmread(p).SOPInstanceUID for p in files["A"]}
    for uid, path in stored.items():
        if uid in a_uids:
            assert pydicom.dcmread(path).PatientID == expected_id  # file and row agree
    assert len(list((tmp_path / "storage").rglob("*.dcm"))) == 4  # no copy left behind


def test_replace_uids_gives_the_changed_levels_new_uids(tmp_path):
    archive = Archive(make_settings(tmp_path, corrections={"replace_uids": True}))
    try:
        files = _two_patients(tmp_path / "src")
        archive_files(archive, *files["A"])
        old = [pydicom.dcmread(p) for p in files["A"]]
        corrections.modify(archive, "study", old[0].StudyInstanceUID, {"StudyDescription": "CT HEAD CONTRAST"})
        new = [pydicom.dcmread(p) for p in _stored_files(archive).values()]
    finally:
        archive.close()
    assert {ds.SOPInstanceUID for ds in new}.isdisjoint({ds.SOPInstanceUID for ds in old})
    assert len({ds.StudyInstanceUID for ds in new}) == 1 and new[0].StudyInstanceUID != old[0].StudyInstanceUID
    assert len({ds.SeriesInstanceUID for ds in new}) == 2  # two series stay two series
    assert all(ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID for ds in new)
    assert {ds.StudyDescription for ds in new} == {"CT HEAD CONTRAST"}


def test_a_correction_keeps_every_byte_from_the_pixel_data_on(tmp_path):
    archive = Archive(make_settings(tmp_path))
    try:
        source = tmp_path / "padded.dcm"
        raw = _two_patients(tmp_path / "src")["A"][0].read_bytes()
        source.write_bytes(raw + bytes.fromhex("fcfffcff4f42000004000000") + b"\x00\x00\x00\x00")  # trailing padding
        archive_files(archive, source)
        corrections.modify(archive, "patient", "PAT-A", {"PatientName": "NEW^NAME"})
        stored = next(iter(_stored_files(archive).values()))
    finally:
        archive.close()
    pixel_tag = bytes.fromhex("e07f1000")
    written = stored.read_bytes()
    assert written[written.rindex(pixel_tag):] == source.read_bytes()[raw.rindex(pixel_tag):]
    assert pydicom.dcmread(stored).PatientName == "NEW^NAME"
