"""`pacsd tags` and `pacsd convert` as a user types them."""

from __future__ import annotations

import json
import shutil

import pydicom
import pytest
from click.testing import CliRunner
from PIL import Image

from pacsd.cli import main
from pacsd.cli.file_commands import printable
from tests.toolkit_testdata import data_file

CT = data_file("dicompyler-core/ct.0.dcm")
RTSS = data_file("dicompyler-core/rtss.dcm")


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_tags_show_text_and_json():
    text = _run("tags", "show", CT)
    assert text.exit_code == 0 and "(0010,0010) PN PatientName" in text.output
    listed = json.loads(_run("tags", "show", CT, "--json").output)
    assert any(entry["keyword"] == "PixelData" and entry["length"] == 512 * 512 * 2 for entry in listed)


def test_tags_get_set_delete(tmp_path):
    target = tmp_path / "ct.dcm"
    shutil.copyfile(CT, target)
    assert _run("tags", "set", target, "PatientName=DOE^JANE", "ImageType=DERIVED\\SECONDARY").exit_code == 0
    assert _run("tags", "get", target, "0010,0010").output.strip() == "DOE^JANE"
    assert _run("tags", "get", target, "ImageType").output.strip() == "DERIVED\\SECONDARY"
    assert _run("tags", "delete", target, "PatientID").exit_code == 0
    missing = _run("tags", "get", target, "PatientID")
    assert missing.exit_code == 2 and "not in the file" in missing.output


def test_tags_set_refuses_a_bad_value_without_traceback(tmp_path):
    target = tmp_path / "ct.dcm"
    shutil.copyfile(CT, target)
    result = _run("tags", "set", target, "Rows=abc")
    assert result.exit_code == 2 and "Rows" in result.output and "Traceback" not in result.output
    assert target.read_bytes() == CT.read_bytes()


def test_hostile_values_are_escaped_on_the_terminal():
    assert printable("DOE\x1b[31m^JANE\n") == "DOE\\x1b[31m^JANE\\x0a"


def test_convert_dcm2jpg_reports_failures_and_converts_the_rest(tmp_path):
    result = _run("convert", "dcm2jpg", CT, RTSS, "--out", tmp_path, "--window", "40,400")
    assert result.exit_code == 2 and "no pixel data" in result.output
    with Image.open(tmp_path / "ct.0.jpg") as image:
        assert image.size == (512, 512)


@pytest.mark.parametrize("window", ["nan,nan", "nan,400", "40,nan", "inf,400", "40,-1", "40,0", "40", "a,b",
                                    "40,400,cubic"])
def test_convert_dcm2jpg_refuses_a_window_that_is_not_one(tmp_path, window):
    result = _run("convert", "dcm2jpg", CT, "--out", tmp_path, "--window", window)
    assert result.exit_code == 2 and "Invalid value for --window" in result.output, result.output
    assert not (tmp_path / "ct.0.jpg").exists()


def test_convert_dcm2jpg_takes_a_window_function(tmp_path):
    assert _run("convert", "dcm2jpg", CT, "--out", tmp_path, "--window", "40,400,sigmoid").exit_code == 0
    assert (tmp_path / "ct.0.jpg").is_file()


def test_convert_thumbnail_and_jpg2dcm(tmp_path):
    assert _run("convert", "thumbnail", CT, "--size", "64", "--out", tmp_path).exit_code == 0
    thumbnail = tmp_path / "ct.0.tn.jpg"
    with Image.open(thumbnail) as image:
        assert image.size == (64, 64)
    out = tmp_path / "photo.dcm"
    result = _run("convert", "jpg2dcm", thumbnail, "--out", out, "--like", CT, "--patient-id", "P7")
    assert result.exit_code == 0, result.output
    ds = pydicom.dcmread(out)
    assert ds.PatientID == "P7" and ds.StudyInstanceUID == pydicom.dcmread(CT).StudyInstanceUID
