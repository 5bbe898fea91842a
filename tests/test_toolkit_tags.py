"""Tag reading and writing on real files: round trip, VR checks, atomic write, pixels untouched."""

from __future__ import annotations

import json
import shutil

import pydicom
import pytest

from pacsd.dicom.tags import get_tag, load_tags, write_tags
from pacsd.errors import InvalidTagValue, TagNotFound
from tests.toolkit_testdata import data_file, run_tool

CT = data_file("dicompyler-core/ct.0.dcm")  # implicit VR, Specific Character Set ISO_IR 100
JPEG_LOSSLESS = data_file("pydicom-data/bad_sequence.dcm")  # encapsulated pixel data
PET = data_file("suyashkumar-dicom/1.dcm")  # doubly nested sequences


@pytest.fixture
def ct_copy(tmp_path):
    target = tmp_path / "ct.dcm"
    shutil.copyfile(CT, target)
    return target


def _pixel_bytes(path) -> bytes:
    return pydicom.dcmread(path).PixelData


def test_get_tag_by_keyword_numbers_and_path():
    assert get_tag(PET, "PatientName") == get_tag(PET, 0x0010, 0x0010) == get_tag(PET, "(0010,0010)")
    assert get_tag(PET, "0028,0010") == 168
    assert get_tag(PET, "TransferSyntaxUID") == "1.2.840.10008.1.2.1"
    nested = get_tag(PET, "RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose")
    assert nested == pytest.approx(float(pydicom.dcmread(PET).RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose))
    with pytest.raises(TagNotFound, match="PatientComments"):
        get_tag(PET, "PatientComments")
    with pytest.raises(InvalidTagValue, match="unknown tag"):
        get_tag(PET, "NoSuchKeyword")


def test_load_tags_lists_every_element_with_nested_items():
    entries = load_tags(PET)
    by_keyword = {entry.keyword: entry for entry in entries}
    assert by_keyword["TransferSyntaxUID"].tag == "0002,0010"
    assert by_keyword["PatientName"].vr == "PN"
    assert by_keyword["PixelData"].value is None and by_keyword["PixelData"].length == 168 * 168 * 2
    sequence = by_keyword["RadiopharmaceuticalInformationSequence"]
    assert sequence.vr == "SQ" and sequence.items and sequence.items[0]
    assert len(entries) >= len(pydicom.dcmread(PET))
    json.dumps([entry.as_dict() for entry in entries])  # serialisable as it is


def test_write_tags_round_trip_keeps_pixel_bytes(ct_copy):
    before = _pixel_bytes(ct_copy)
    write_tags(
        ct_copy,
        {"PatientName": "DOE^JANE", "PatientID": None, "ImageType": "DERIVED\\SECONDARY",
         "StudyDescription": "Head", "SliceThickness": "2.5", "Rows": 512},
    )
    ds = pydicom.dcmread(ct_copy)
    assert str(ds.PatientName) == "DOE^JANE"
    assert "PatientID" not in ds
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert ds.StudyDescription == "Head" and float(ds.SliceThickness) == 2.5
    assert ds.PixelData == before
    assert before in ct_copy.read_bytes()  # the same bytes on disk, not re-encoded
    result = run_tool("dcmdump", ct_copy)
    assert result.returncode == 0 and "DOE^JANE" in result.stdout


def test_write_tags_to_another_file_leaves_the_source_alone(ct_copy, tmp_path):
    original = ct_copy.read_bytes()
    out = write_tags(ct_copy, {"PatientName": "X^Y"}, out=tmp_path / "new.dcm")
    assert ct_copy.read_bytes() == original
    assert get_tag(out, "PatientName") == "X^Y"


def test_encapsulated_pixel_data_survives_tag_edit(tmp_path):
    target = tmp_path / "lossless.dcm"
    shutil.copyfile(JPEG_LOSSLESS, target)
    before = _pixel_bytes(target)
    write_tags(target, {"InstitutionName": "Elsewhere"})
    assert _pixel_bytes(target) == before
    assert pydicom.dcmread(target).pixel_array.shape == (512, 512)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"Rows": "abc"}, "Rows"),
        ({"Rows": "70000"}, "outside"),
        ({"StudyDate": "2024-01-01"}, "DA"),
        ({"StudyDate": "20230231"}, "calendar date"),
        ({"Modality": "A" * 17}, "exceeds"),
        ({"SOPInstanceUID": "1.2.abc"}, "UI"),
        ({"InstitutionName": "first\nsecond"}, "control characters"),
        ({"PatientName": "Иванов^Пётр"}, "Specific Character Set"),
        ({"PixelData": "x"}, "pixel data"),
        ({"TransferSyntaxUID": "1.2.840.10008.1.2.1"}, "file meta"),
        ({"0009,1001": "x"}, "VR is unknown"),
    ],
)
def test_invalid_values_are_refused_and_nothing_is_written(ct_copy, change, message):
    original = ct_copy.read_bytes()
    with pytest.raises(InvalidTagValue, match=message):
        write_tags(ct_copy, {"PatientName": "CHANGED", **change})
    assert ct_copy.read_bytes() == original
    assert [p.name for p in ct_copy.parent.iterdir()] == [ct_copy.name]  # no temp file left


def test_non_ascii_value_with_utf8_character_set(ct_copy):
    write_tags(ct_copy, {"PatientName": "Иванов^Пётр", "SpecificCharacterSet": "ISO_IR 192"})
    assert get_tag(ct_copy, "PatientName") == "Иванов^Пётр"
    assert "Иванов^Пётр" in run_tool("dcmdump", "+U8", ct_copy).stdout


def test_changing_the_sop_instance_uid_updates_the_file_meta(ct_copy):
    write_tags(ct_copy, {"SOPInstanceUID": "1.2.3.4.5"})
    ds = pydicom.dcmread(ct_copy)
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID == "1.2.3.4.5"


def test_setting_inside_a_sequence_item(tmp_path):
    target = tmp_path / "pet.dcm"
    shutil.copyfile(PET, target)
    write_tags(target, {"RadiopharmaceuticalInformationSequence[0].Radiopharmaceutical": "FLT"})
    assert get_tag(target, "RadiopharmaceuticalInformationSequence[0].Radiopharmaceutical") == "FLT"
