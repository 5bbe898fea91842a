"""`pacsd export` writes a File-set from the archive; `pacsd import` reads one back through it."""

from __future__ import annotations

import zipfile

from pydicom import dcmread
from pydicom.fileset import FileSet

from tests.conftest import dcmtk
from tests.dicomgen import make_dataset, write_dicom
from tests.test_tools import pacsd


def _archive(tmp_path, name: str) -> list[str]:
    return ["--storage-dir", str(tmp_path / name / "s"), "--index-db", str(tmp_path / name / "i.sqlite")]


def test_export_study_and_import_it_elsewhere(tmp_path):
    study = make_dataset()
    other = make_dataset(PatientID="OTHER")
    for i in range(3):
        ds = make_dataset(StudyInstanceUID=study.StudyInstanceUID, SeriesInstanceUID=study.SeriesInstanceUID,
                          InstanceNumber=i + 1)
        write_dicom(tmp_path / "in" / f"{i}.dcm", ds)
    write_dicom(tmp_path / "in" / "other.dcm", other)
    assert pacsd("import", str(tmp_path / "in"), *_archive(tmp_path, "a")).returncode == 0

    out = tmp_path / "export"
    result = pacsd("export", "--study", study.StudyInstanceUID, "--out", str(out),
                   "--zip", str(tmp_path / "study.zip"), *_archive(tmp_path, "a"))
    assert result.returncode == 0, result.stderr
    fileset = FileSet(dcmread(out / "DICOMDIR"))
    exported = {str(dcmread(i.path).SOPInstanceUID) for i in fileset}
    assert len(exported) == 3 and other.SOPInstanceUID not in exported
    listing = dcmtk("dcmdump", str(out / "DICOMDIR"))
    assert listing.returncode == 0 and listing.stdout.count("IMAGE") >= 3
    with zipfile.ZipFile(tmp_path / "study.zip") as archive:
        assert "DICOMDIR" in archive.namelist()

    restored = pacsd("import", str(out), *_archive(tmp_path, "b"))
    assert restored.returncode == 0 and "stored 3," in restored.stdout, restored.stdout + restored.stderr
    restored_uids = {str(dcmread(p).SOPInstanceUID) for p in (tmp_path / "b" / "s").rglob("*.dcm")}
    assert restored_uids == exported


def test_export_of_nothing_is_a_clear_error(tmp_path):
    write_dicom(tmp_path / "in" / "x.dcm")
    pacsd("import", str(tmp_path / "in"), *_archive(tmp_path, "a"))
    result = pacsd("export", "--study", "1.2.3.4", "--out", str(tmp_path / "e"), *_archive(tmp_path, "a"))
    assert result.returncode == 2 and "no stored instance" in result.stderr and "Traceback" not in result.stderr


def _uids_in_fileset(dicomdir) -> set[str]:
    fileset = FileSet(dcmread(dicomdir))
    return {str(dcmread(instance.path).SOPInstanceUID) for instance in fileset}


def _import_three_series(tmp_path) -> dict[str, list[str]]:
    """Patient P1: a study of two series (2 + 1 images) and a second study; patient P2: one image.
    Returns SOP Instance UIDs by what they belong to."""
    made: dict[str, list[str]] = {"series-a": [], "series-b": [], "p1-study-2": [], "p2": []}
    first = make_dataset(PatientID="P1")
    second_series = make_dataset(PatientID="P1", StudyInstanceUID=first.StudyInstanceUID, SeriesNumber=2)
    for name, like, count in (("series-a", first, 2), ("series-b", second_series, 1),
                              ("p1-study-2", make_dataset(PatientID="P1"), 1), ("p2", make_dataset(PatientID="P2"), 1)):
        for i in range(count):
            ds = make_dataset(PatientID=like.PatientID, StudyInstanceUID=like.StudyInstanceUID,
                              SeriesInstanceUID=like.SeriesInstanceUID, InstanceNumber=i + 1)
            write_dicom(tmp_path / "in" / f"{name}-{i}.dcm", ds)
            made[name].append(str(ds.SOPInstanceUID))
        made[f"{name}:series"] = [str(like.SeriesInstanceUID)]
    assert pacsd("import", str(tmp_path / "in"), *_archive(tmp_path, "a")).returncode == 0
    return made


def test_export_patient_takes_all_their_studies(tmp_path):
    made = _import_three_series(tmp_path)
    result = pacsd("export", "--patient", "P1", "--out", str(tmp_path / "e"), *_archive(tmp_path, "a"))
    assert result.returncode == 0 and "exported 4 instances" in result.stdout, result.stdout + result.stderr
    assert _uids_in_fileset(tmp_path / "e" / "DICOMDIR") == {
        *made["series-a"], *made["series-b"], *made["p1-study-2"]}


def test_export_series_takes_that_series_only(tmp_path):
    made = _import_three_series(tmp_path)
    result = pacsd("export", "--series", made["series-a:series"][0], "--out", str(tmp_path / "e"),
                   *_archive(tmp_path, "a"))
    assert result.returncode == 0 and "exported 2 instances" in result.stdout, result.stdout + result.stderr
    assert _uids_in_fileset(tmp_path / "e" / "DICOMDIR") == set(made["series-a"])


def test_import_of_a_fileset_reads_the_dicomdir_and_reports_a_file_it_does_not_list(tmp_path, monkeypatch):
    """The DICOMDIR is the File-set's index: a file beside it that it does not list is not part
    of the File-set, so it is not imported; the report names it (import it by name to add it)."""
    made = _import_three_series(tmp_path)
    out = tmp_path / "e"
    assert pacsd("export", "--series", made["series-a:series"][0], "--out", str(out),
                 *_archive(tmp_path, "a")).returncode == 0
    stray = write_dicom(out / "STRAY" / "IM000001", PatientID="STRAY")
    stray_uid = str(dcmread(stray).SOPInstanceUID)
    monkeypatch.setenv("COLUMNS", "400")  # the report's table shows whole paths
    restored = pacsd("import", str(out), *_archive(tmp_path, "b"))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "stored 2," in restored.stdout and "not listed in the DICOMDIR 1" in restored.stdout, restored.stdout
    assert str(stray) in restored.stderr, restored.stderr  # the table of files not imported
    imported = {str(dcmread(p).SOPInstanceUID) for p in (tmp_path / "b" / "s").rglob("*.dcm")}
    assert imported == set(made["series-a"]) and stray_uid not in imported
    by_name = pacsd("import", str(stray), *_archive(tmp_path, "b"))
    assert by_name.returncode == 0 and "stored 1," in by_name.stdout
