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
