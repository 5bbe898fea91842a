"""DICOMDIR File-sets: export read back by pydicom and dcmdump, import restores the instances."""

from __future__ import annotations

import re
import zipfile

import pydicom
import pytest
from pydicom.fileset import FileSet

from pacsd.dicom.dicomdir import read_fileset, write_fileset
from pacsd.errors import InvalidDicom
from tests.toolkit_testdata import data_file, run_tool

INSTANCES = [
    data_file(name)
    for name in (
        "dicompyler-core/ct.0.dcm",
        "dicompyler-core/rtss.dcm",
        "debian-dicom3tools/0051.dcm",
        "debian-dicomnifti/0001.dcm",
        "generated-dcmtk/gsps_for_dicom3tools_0051.dcm",
        "pydicom-data/liver_rle.dcm",
        "deid-data/humans/ctbrain1.dcm",
        "generated-pydicom/charset_iso2022_ir87_japanese.dcm",
    )
]


def _uids(paths) -> dict[str, bytes]:
    found = {}
    for path in paths:
        ds = pydicom.dcmread(path)
        found[ds.SOPInstanceUID] = ds.get("PixelData", b"")
    return found


@pytest.fixture
def exported(tmp_path):
    zip_path = tmp_path / "media.zip"
    dicomdir = write_fileset(INSTANCES, tmp_path / "media", zip_path=zip_path)
    return dicomdir, zip_path


def test_export_is_read_back_by_pydicom_with_every_instance(exported):
    dicomdir, _ = exported
    fileset = FileSet(pydicom.dcmread(dicomdir))
    referenced = {instance.SOPInstanceUID for instance in fileset}
    assert referenced == set(_uids(INSTANCES))
    for instance in fileset:
        assert instance.path is not None and pydicom.dcmread(instance.path).SOPInstanceUID
    for file in dicomdir.parent.rglob("*"):
        assert re.fullmatch(r"[A-Z0-9_]{1,8}", file.name), file.name


def test_export_is_listed_by_dcmdump(exported):
    dicomdir, _ = exported
    result = run_tool("dcmdump", dicomdir)
    assert result.returncode == 0, result.stderr
    assert "MediaStorageDirectoryStorage" in result.stdout
    assert result.stdout.count("ReferencedFileID") == len(INSTANCES)
    assert result.stdout.count("CS [IMAGE]") == 6 and "[RT STRUCTURE SET]" in result.stdout
    for uid in _uids(INSTANCES):
        assert uid in result.stdout


def test_import_of_the_export_restores_the_same_instances(exported):
    dicomdir, _ = exported
    restored = read_fileset(dicomdir.parent)
    assert _uids(restored) == _uids(INSTANCES)  # same instances, same pixel bytes


def test_zip_holds_the_dicomdir_and_every_file(exported):
    dicomdir, zip_path = exported
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
    on_disk = {p.relative_to(dicomdir.parent).as_posix() for p in dicomdir.parent.rglob("*") if p.is_file()}
    assert "DICOMDIR" in names and names == on_disk


def test_a_file_that_cannot_go_on_media_is_named(tmp_path):
    lacking = data_file("debian-dicomscope/reportki.dcm")  # empty Patient ID
    with pytest.raises(InvalidDicom, match="reportki.dcm.*Patient ID"):
        write_fileset([INSTANCES[0], lacking], tmp_path / "media")
    assert not (tmp_path / "media" / "DICOMDIR").exists()


def test_references_outside_the_fileset_are_refused(exported):
    dicomdir, _ = exported
    raw = dicomdir.read_bytes()
    honest = b"PT000000\\ST000000\\SE000000\\IM000000"
    hostile = b"..\\" * 11 + b"XX"  # same length, so the record offsets stay valid
    assert len(hostile) == len(honest) and honest in raw
    dicomdir.write_bytes(raw.replace(honest, hostile, 1))
    with pytest.raises(InvalidDicom, match="outside the File-set"):
        read_fileset(dicomdir.parent)


def test_reading_a_folder_without_dicomdir(tmp_path):
    with pytest.raises(InvalidDicom, match="no DICOMDIR"):
        read_fileset(tmp_path)
