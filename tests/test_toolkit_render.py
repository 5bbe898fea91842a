"""Rendering: every real test file renders or says why not; LUT steps checked on known values."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pacsd.dicom.render import (
    Window,
    apply_window,
    auto_window,
    middle_frame,
    render_frame,
    window_from_dataset,
)
from pacsd.errors import FrameOutOfRange, NoPixelData, PixelDecodeError
from tests.toolkit_testdata import data_file, manifest

ROWS = manifest()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("row", ROWS, ids=[str(r.path.relative_to(r.path.parents[1])) for r in ROWS])
def test_every_test_file_renders_or_says_why_not(row):
    if not row.has_image:
        with pytest.raises((NoPixelData, PixelDecodeError)) as raised:
            render_frame(row.path)
        assert str(raised.value)
        return
    image = render_frame(row.path)
    encoded = io.BytesIO()
    image.save(encoded, format="JPEG", quality=90)
    reopened = Image.open(io.BytesIO(encoded.getvalue()))
    assert reopened.size == (row.columns, row.rows)
    assert reopened.mode in ("L", "RGB")
    assert len(np.unique(np.asarray(image))) > 1, "rendered flat, the source is not"


def test_no_pixel_data_error_names_the_sop_class():
    with pytest.raises(NoPixelData, match="Basic Text SR Storage"):
        render_frame(data_file("debian-dicomscope/reportki.dcm"))
    with pytest.raises(NoPixelData, match="Encapsulated PDF Storage"):
        render_frame(data_file("generated-dcmtk/encapsulated_pdf_dscs360.dcm"))
    with pytest.raises(NoPixelData, match="RT Plan Storage"):
        render_frame(data_file("pydicom/test_files/rtplan.dcm"))


def test_linear_window_follows_the_standard_formula():
    values = np.array([-10.0, 0.0, 49.5, 99.5, 100.0, 200.0])
    out = apply_window(values, Window(center=50, width=101))
    assert out.tolist() == [0, 1, 128, 255, 255, 255]


def test_linear_exact_and_sigmoid_windows():
    values = np.array([0.0, 500.0, 1000.0])
    assert apply_window(values, Window(500, 1000, "LINEAR_EXACT")).tolist() == [0, 128, 255]
    sigmoid = apply_window(values, Window(500, 1000, "SIGMOID")).tolist()
    assert sigmoid == [30, 128, 225]  # 255 / (1 + e^2), 255 / 2, 255 / (1 + e^-2)


def _grey_dataset(values, photometric="MONOCHROME2", **attributes) -> Dataset:
    pixels = np.asarray(values, dtype=np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.astype("<u2").tobytes()
    return ds


def test_rescale_is_applied_before_the_window():
    ds = _grey_dataset(
        [[0, 500], [1000, 1500]],
        RescaleSlope=2,
        RescaleIntercept=-1000,  # stored -> -1000, 0, 1000, 2000
        WindowCenter=500,
        WindowWidth=3000,
        VOILUTFunction="LINEAR_EXACT",
    )
    assert np.asarray(render_frame(ds)).tolist() == [[0, 85], [170, 255]]


def test_a_full_size_ct_follows_the_standard_formula_pixel_for_pixel():
    # 65,536 pixels of 4,096 values: rendered through a table of the values, it must not differ
    # by one pixel from PS3.3 C.11.2.1.2 (LINEAR) applied to each rescaled pixel.
    stored = np.random.default_rng(7).integers(0, 4096, size=(256, 256))
    ds = _grey_dataset(stored, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=40, WindowWidth=400)
    hounsfield = stored.astype(np.float64) - 1024
    expected = np.rint(np.clip((hounsfield - 39.5) / 399 + 0.5, 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(render_frame(ds)), expected)


def test_monochrome1_is_inverted():
    values = [[0, 1000], [2000, 4095]]
    window = {"WindowCenter": 2048, "WindowWidth": 4096}
    mono2 = np.asarray(render_frame(_grey_dataset(values, **window))).astype(int)
    mono1 = np.asarray(render_frame(_grey_dataset(values, "MONOCHROME1", **window))).astype(int)
    assert mono2[0, 0] == 0 and mono2[1, 1] == 255
    assert (mono1 == 255 - mono2).all()


def test_explicit_window_overrides_the_files_window():
    ds = _grey_dataset([[0, 100], [200, 300]], WindowCenter=2000, WindowWidth=10)
    assert np.asarray(render_frame(ds)).tolist() == [[0, 0], [0, 0]]
    # LINEAR: ((x - 149.5) / 299 + 0.5) * 255
    assert np.asarray(render_frame(ds, window=(150, 300))).tolist() == [[0, 85], [171, 255]]


def test_voi_lut_sequence_is_used():
    lut = Dataset()
    lut.LUTDescriptor = [4, 0, 8]
    lut.LUTData = [0, 100, 200, 255]
    ds = _grey_dataset([[0, 1], [2, 3]], VOILUTSequence=[lut])
    assert np.asarray(render_frame(ds)).tolist() == [[0, 100], [200, 255]]


def test_auto_window_ignores_a_lone_outlier():
    values = np.append(np.arange(999, dtype=float), 1_000_000.0)
    window = auto_window(values)
    assert 400 < window.center < 600 and window.width < 1100
    ds = _grey_dataset(np.append(np.arange(999), 4095).reshape(20, 50))
    assert 100 < int(np.asarray(render_frame(ds))[10, 0]) < 160  # stored 500: mid grey


def test_window_from_per_frame_functional_groups():
    shared = Dataset()
    shared.FrameVOILUTSequence = [Dataset()]
    shared.FrameVOILUTSequence[0].WindowCenter = 40
    shared.FrameVOILUTSequence[0].WindowWidth = 400
    second = Dataset()
    second.FrameVOILUTSequence = [Dataset()]
    second.FrameVOILUTSequence[0].WindowCenter = 600
    second.FrameVOILUTSequence[0].WindowWidth = 1200
    ds = Dataset()
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.PerFrameFunctionalGroupsSequence = [Dataset(), second]
    assert window_from_dataset(ds, frame=0) == Window(40, 400)
    assert window_from_dataset(ds, frame=1) == Window(600, 1200)


def test_unusable_window_values_are_ignored():
    assert window_from_dataset(_grey_dataset([[1]], WindowCenter=40, WindowWidth=0)) is None
    assert window_from_dataset(_grey_dataset([[1]])) is None


def test_multi_frame_chosen_frame_and_out_of_range():
    path = data_file("debian-libgdcm3.0/00191113.dcm")  # 4 frames, offset table with 5 entries
    first, last = (np.asarray(render_frame(path, frame=n)) for n in (0, 3))
    assert first.shape == last.shape == (512, 512)
    assert not np.array_equal(first, last)
    with pytest.raises(FrameOutOfRange, match="4 frame"):
        render_frame(path, frame=4)
    assert middle_frame(pydicom.dcmread(path)) == 2


def test_ybr_jpeg_of_a_grey_ct_comes_out_grey():
    rgb = np.asarray(render_frame(data_file("deid-data/humans/ctbrain1.dcm"))).astype(int)
    assert rgb.shape == (456, 510, 3)
    assert np.abs(rgb[..., 0] - rgb[..., 1]).mean() < 3  # a wrong YBR->RGB would tint it


def test_palette_colour_goes_through_its_lut():
    rgb = np.asarray(render_frame(data_file("pydicom-data/gdcm-US-ALOKA-16.dcm")))
    assert rgb.shape == (480, 640, 3)
    assert rgb.std() > 10


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize("center, width", [(50, 101), (40, 400), (1024, 4096), (0.5, 1), (300, 2)])
def test_windowing_agrees_with_pydicom(function, center, width):
    """pydicom's apply_windowing (PS3.3 C.11.2.1.2) as the oracle, on an 8-bit output range."""
    from pydicom.pixels import apply_windowing

    values = np.linspace(center - width, center + width, 257)
    reference = _grey_dataset([[0]], WindowCenter=center, WindowWidth=width, VOILUTFunction=function)
    reference.BitsStored, reference.HighBit = 8, 7  # pydicom's output range: 0..255
    expected = np.rint(apply_windowing(values.copy(), reference))
    got = apply_window(values, Window(center, width, function)).astype(float)
    assert np.abs(got - expected).max() <= 1, (function, center, width)  # rounding at a step edge only
    assert (got == expected).mean() > 0.95


def test_voi_lut_agrees_with_pydicom():
    from pydicom.pixels import apply_voi_lut

    lut = Dataset()
    lut.LUTDescriptor = [6, 2, 12]  # six entries, the first for stored value 2, 12-bit output
    lut.LUTData = [0, 300, 900, 1600, 2300, 4095]
    values = [[0, 2, 3, 4], [5, 6, 7, 4095]]
    ds = _grey_dataset(values, VOILUTSequence=[lut])
    expected = np.rint(apply_voi_lut(np.asarray(values, dtype=np.uint16), ds).astype(float) * 255 / 4095)  # 8 bits
    assert np.asarray(render_frame(ds)).tolist() == expected.astype(int).tolist()
