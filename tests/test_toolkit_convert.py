"""Conversions: DICOM -> JPEG / thumbnail, JPEG -> DICOM checked by dcmdump and dciodvfy."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import generate_fragments

from pacsd.dicom.convert import dcm_to_jpg, dcm_to_tn, jpg_to_dcm
from pacsd.dicom.jpeg import UnsupportedJpeg
from pacsd.dicom.render import render_frame
from pacsd.errors import InvalidTagValue, NoPixelData
from pacsd.services.thumbnails import thumbnail
from tests.dicomgen import make_dataset, write_dicom
from tests.toolkit_testdata import data_file, run_tool

CT = data_file("dicompyler-core/ct.0.dcm")
MULTI_FRAME = data_file("debian-libgdcm3.0/00191113.dcm")
COOKIES = data_file("deid-data/dicom-cookies/image1.dcm")  # 2048 x 1536 colour


def _ramp(height=120, width=160) -> np.ndarray:
    grey = (np.indices((height, width)).sum(axis=0) % 256).astype(np.uint8)
    return np.stack([grey, 255 - grey, grey // 2], axis=-1)


@pytest.fixture(params=[("rgb", 2), ("rgb", 1), ("rgb", 0), ("grey", None)],
                ids=["ycc420", "ycc422", "ycc444", "grey"])
def photo(request, tmp_path):
    kind, subsampling = request.param
    target = tmp_path / f"{request.node.callspec.id}.jpg"
    if kind == "grey":
        Image.fromarray(_ramp()[..., 0]).save(target, quality=90)
    else:
        Image.fromarray(_ramp()).save(target, quality=90, subsampling=subsampling)
    return target


def _dciodvfy_errors(path) -> list[str]:
    result = run_tool("dciodvfy", path)
    output = result.stdout + result.stderr
    assert "SCImage" in output or "VLPhotographicImage" in output, output
    return [line for line in output.splitlines() if line.startswith("Error")]


@pytest.mark.parametrize("photographic", [False, True], ids=["secondary-capture", "vl-photographic"])
def test_jpg_to_dcm_is_valid_and_keeps_the_jpeg_bytes(photo, tmp_path, photographic):
    out = jpg_to_dcm(photo, tmp_path / "out.dcm", {"PatientName": "DOE^JANE", "PatientID": "P1"},
                     photographic=photographic)
    assert _dciodvfy_errors(out) == []
    dump = run_tool("dcmdump", out)
    assert dump.returncode == 0 and "DOE^JANE" in dump.stdout and "JPEGBaseline" in dump.stdout
    ds = pydicom.dcmread(out)
    original = photo.read_bytes()
    (fragment,) = list(generate_fragments(ds.PixelData))[1:]
    assert fragment[: len(original)] == original and len(fragment) - len(original) <= 1
    with Image.open(photo) as picture:
        assert (ds.Columns, ds.Rows) == picture.size
        expected = "MONOCHROME2" if picture.mode == "L" else "YBR_FULL_422"
    assert ds.PhotometricInterpretation == expected
    assert ds.SOPClassUID == ("1.2.840.10008.5.1.4.1.1.77.1.4" if photographic else "1.2.840.10008.5.1.4.1.1.7")
    decoded = ds.pixel_array
    reference = np.asarray(Image.open(photo).convert("RGB" if decoded.ndim == 3 else "L"))
    assert np.abs(decoded.astype(int) - reference.astype(int)).mean() < 2


def test_jpg_to_dcm_like_copies_patient_and_study(photo, tmp_path):
    reference = pydicom.dcmread(CT)
    out = jpg_to_dcm(photo, tmp_path / "like.dcm", like=CT, like_series=True,
                     demographics={"PatientID": "OVERRIDE"})
    ds = pydicom.dcmread(out)
    assert ds.PatientName == reference.PatientName
    assert ds.PatientID == "OVERRIDE"
    assert ds.StudyInstanceUID == reference.StudyInstanceUID
    assert ds.SeriesInstanceUID == reference.SeriesInstanceUID
    assert ds.SOPInstanceUID != reference.SOPInstanceUID
    assert _dciodvfy_errors(out) == []


def test_jpg_to_dcm_new_uids_each_time(photo, tmp_path):
    first = pydicom.dcmread(jpg_to_dcm(photo, tmp_path / "a.dcm"))
    second = pydicom.dcmread(jpg_to_dcm(photo, tmp_path / "b.dcm"))
    for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
        assert first[keyword].value != second[keyword].value


def test_jpg_to_dcm_refuses_bad_input(tmp_path):
    progressive = tmp_path / "progressive.jpg"
    Image.fromarray(_ramp()).save(progressive, progressive=True)
    with pytest.raises(UnsupportedJpeg, match="progressive"):
        jpg_to_dcm(progressive, tmp_path / "p.dcm")
    png = tmp_path / "picture.png"
    Image.fromarray(_ramp()).save(png)
    with pytest.raises(UnsupportedJpeg, match="not a JPEG"):
        jpg_to_dcm(png, tmp_path / "q.dcm")
    baseline = tmp_path / "ok.jpg"
    Image.fromarray(_ramp()).save(baseline)
    with pytest.raises(InvalidTagValue, match="PatientBirthDate"):
        jpg_to_dcm(baseline, tmp_path / "r.dcm", {"PatientBirthDate": "1990-01-01"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.jpg", "picture.png", "progressive.jpg"]


def test_dcm_to_jpg_writes_a_jpeg_of_the_chosen_frame(tmp_path):
    first = dcm_to_jpg(MULTI_FRAME, tmp_path / "first.jpg")
    last = dcm_to_jpg(MULTI_FRAME, tmp_path / "last.jpg", frame=3, quality=95)
    with Image.open(first) as a, Image.open(last) as b:
        assert a.format == b.format == "JPEG" and a.size == b.size == (512, 512)
        assert not np.array_equal(np.asarray(a), np.asarray(b))


def test_dcm_to_jpg_window_changes_the_picture(tmp_path):
    soft = np.asarray(Image.open(dcm_to_jpg(CT, tmp_path / "soft.jpg", window=(40, 400))))
    bone = np.asarray(Image.open(dcm_to_jpg(CT, tmp_path / "bone.jpg", window=(500, 2000))))
    assert soft.mean() != pytest.approx(bone.mean(), abs=5)


def test_thumbnail_fits_the_box_and_keeps_aspect(tmp_path):
    out = dcm_to_tn(COOKIES, tmp_path / "tn.jpg", size=100)
    with Image.open(out) as thumbnail:
        assert thumbnail.mode == "RGB" and max(thumbnail.size) == 100
        assert thumbnail.size == (100, 75)  # 2048 x 1536 source


def test_thumbnail_of_an_object_without_pixels_says_why(tmp_path):
    with pytest.raises(NoPixelData, match="RT Structure Set"):
        dcm_to_tn(data_file("dicompyler-core/rtss.dcm"), tmp_path / "tn.jpg")
    assert list(tmp_path.iterdir()) == []


def _thumbnail_of_frame(frame: int, size: int) -> np.ndarray:
    image = render_frame(MULTI_FRAME, frame=frame)
    image.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(image).astype(int)


def test_dcm_to_tn_shows_the_middle_frame(tmp_path):
    out = dcm_to_tn(MULTI_FRAME, tmp_path / "tn.jpg", size=128, quality=100)  # 4 frames: the middle is 2
    with Image.open(out) as image:
        written = np.asarray(image).astype(int)
    distance = [np.abs(written - _thumbnail_of_frame(frame, 128)).mean() for frame in range(4)]
    assert min(range(4), key=distance.__getitem__) == 2, distance


def test_scan_sheet_thumbnails_show_the_middle_frame():
    drawn = np.asarray(thumbnail(MULTI_FRAME, 96)).astype(int)
    assert np.array_equal(drawn, _thumbnail_of_frame(2, 96))
    assert not np.array_equal(drawn, _thumbnail_of_frame(0, 96))


def test_a_large_multi_frame_thumbnail_reads_one_frame_and_shows_the_middle_one(tmp_path):
    # 40 frames of 512x512, 16 bits: 20 MiB of pixel data, each frame a different level.
    frames = np.stack([np.full((512, 512), 100 * frame, dtype=np.uint16) for frame in range(40)])
    frames[:, :256, :] += 50  # an edge, so the picture is not flat
    path = write_dicom(tmp_path / "multi.dcm", make_dataset(rows=512, cols=512, NumberOfFrames=40,
                                                            PixelData=frames.tobytes(), WindowCenter=2000,
                                                            WindowWidth=4000))
    whole = pydicom.dcmread(path)
    expected = render_frame(whole, frame=20)
    expected.thumbnail((160, 160), Image.Resampling.LANCZOS, reducing_gap=3.0)
    del whole
    tracemalloc.start()
    try:
        drawn = thumbnail(path, 160)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(np.asarray(drawn), np.asarray(expected))
    assert peak < 6 * 1024 * 1024, peak  # one frame is 0.5 MiB; the file 20 MiB
