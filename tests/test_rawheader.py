"""The fast header parse (dicom/rawheader) gives what the pydicom path gives, or steps aside.

Every shared test file is read both ways: the same DICOM JSON, the same Header, the same
refusals.  The fast path must actually be taken for the common files, or these tests fail."""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path
from unittest import mock

import pytest
from pydicom.datadict import keyword_for_tag
from pydicom.uid import ImplicitVRLittleEndian
from pydicom.valuerep import VR_REGEXES

from pacsd.dicom import rawheader
from pacsd.dicom.header import FIRST_TEXTS, first_text, read_header
from pacsd.errors import InvalidDicom
from pacsd.index.columns import PATIENT_COLUMNS, SERIES_COLUMNS, STUDY_COLUMNS
from pacsd.services.ingest import header_json
from tests.conftest import shared_testdata_files
from tests.dicomgen import make_dataset, write_dicom

FILES = shared_testdata_files()
_INDEXED_KEYWORDS = sorted({keyword for columns in (PATIENT_COLUMNS, STUDY_COLUMNS, SERIES_COLUMNS)
                            for keyword, _ in columns.values()} | {"InstanceNumber", "EchoNumbers", "NoSuchKeyword"})
MIN_FAST_FILES = 20  # of the shared test data (23 when this was written)


def _both_ways(path: Path):
    """(fast result, pydicom result); each a Header or the InvalidDicom raised."""
    results = []
    for fast in (True, False):
        try:
            if fast:
                results.append(read_header(path))
            else:
                with mock.patch.object(rawheader, "parse", return_value=None):
                    results.append(read_header(path))
        except InvalidDicom as exc:
            results.append(exc)
    return results


def _assert_same(fast, slow) -> None:
    assert isinstance(fast, InvalidDicom) == isinstance(slow, InvalidDicom), (fast, slow)
    if isinstance(slow, InvalidDicom):
        return
    assert slow.header_json is None
    for field in ("transfer_syntax", "sop_class_uid", "sop_instance_uid", "study_uid", "series_uid", "size"):
        assert getattr(fast, field) == getattr(slow, field), field
    expected = json.loads(header_json(slow.dataset))
    if fast.header_json is not None:
        assert fast.header_json == header_json(slow.dataset)  # byte for byte: the stored text
    assert json.loads(header_json(fast.dataset)) == expected  # the lazily converted Dataset too
    assert fast.dataset.file_meta.TransferSyntaxUID == slow.dataset.file_meta.TransferSyntaxUID
    assert fast.dataset.original_character_set == slow.dataset.original_character_set
    assert fast.dataset._character_set == slow.dataset._character_set
    known = fast.dataset.__dict__.get(FIRST_TEXTS)
    assert (known is not None) == (fast.header_json is not None)
    for tag in known or ():  # the first values carried for first_text are pydicom's
        keyword = keyword_for_tag(tag)
        if keyword:
            assert first_text(fast.dataset, keyword) == first_text(slow.dataset, keyword), keyword
    for keyword in _INDEXED_KEYWORDS:  # present or absent, string or number: the same text
        assert first_text(fast.dataset, keyword, "-") == first_text(slow.dataset, keyword, "-"), keyword


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(p.parents[1])) for p in FILES])
def test_the_fast_path_agrees_with_pydicom(path):
    fast, slow = _both_ways(path)
    _assert_same(fast, slow)


def test_the_fast_path_is_taken_for_the_common_files():
    taken = [p for p in FILES if not isinstance(h := _both_ways(p)[0], InvalidDicom) and h.header_json]
    assert len(taken) >= MIN_FAST_FILES, taken


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.1", ImplicitVRLittleEndian])
def test_a_generated_ct_takes_the_fast_path(tmp_path, syntax):
    path = write_dicom(tmp_path / "ct.dcm", syntax=syntax, rows=64, cols=64)
    fast, slow = _both_ways(path)
    assert fast.header_json is not None
    _assert_same(fast, slow)


def _cut(source: Path, target: Path, keep: int) -> Path:
    target.write_bytes(source.read_bytes()[:keep])
    return target


def test_a_file_cut_in_its_header_or_pixels_is_refused_by_the_fast_path(tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", rows=64, cols=64)
    whole = read_header(path)
    assert whole.header_json is not None
    data = path.read_bytes()
    pixel_at = data.index(b"\xe0\x7f\x10\x00")
    for keep in (pixel_at // 2, pixel_at + 6, pixel_at + 200, len(data) - 1):
        cut = _cut(path, tmp_path / f"cut{keep}.dcm", keep)
        with mock.patch.object(rawheader, "_Unusual", AssertionError):  # no stepping aside
            with pytest.raises(InvalidDicom, match="truncated"):
                read_header(cut)
        fast, slow = _both_ways(cut)
        assert isinstance(slow, InvalidDicom)


def _element_bytes(data: bytes, tag: int, vr: bytes) -> tuple[int, int]:
    """Where a short-VR element (explicit VR little endian) starts and ends in `data`."""
    start = data.index(struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr)
    return start, start + 8 + struct.unpack_from("<H", data, start + 6)[0]


def test_elements_out_of_order_are_written_in_tag_order(tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", rows=8, cols=8)
    data = path.read_bytes()
    date_at, date_end = _element_bytes(data, 0x00080020, b"DA")  # StudyDate, then StudyTime
    time_at, time_end = _element_bytes(data, 0x00080030, b"TM")
    assert date_end <= time_at
    swapped = (data[:date_at] + data[time_at:time_end] + data[date_end:time_at]
               + data[date_at:date_end] + data[time_end:])
    path.write_bytes(swapped)
    fast, slow = _both_ways(path)
    assert fast.header_json is not None
    _assert_same(fast, slow)
    assert fast.header_json.index('"00080020"') < fast.header_json.index('"00080030"')


def test_the_fast_path_reads_any_buffer_as_it_reads_bytes(tmp_path):
    data = write_dicom(tmp_path / "ct.dcm", rows=8, cols=8).read_bytes()
    expected = rawheader.parse(data, len(data)).header_json
    for buffer in (bytearray(data), memoryview(data)):
        assert rawheader.parse(buffer, len(data)).header_json == expected


def test_every_vr_the_fast_path_reads_has_a_json_writer():
    assert set(rawheader._MEMBER_WRITERS) == rawheader._KNOWN_VRS - {"SQ"}


@pytest.mark.parametrize("text", [
    "1.5", " -2.25e-3 ", "+7.", ".5", "1E5", "0\\1\\-1", "1e999", "-1e999", "1.2.3", "--1", "1e", "e5",
    ".", "+", "1 2", "1_0", "inf", "nan", "\t1.5", "1.5\\", "\\1", "1\x002", "٣",
])
def test_decimal_strings_are_taken_exactly_as_the_standard_defines_them(text):
    """The fast path takes a DS value exactly when it is one by PS3.5 6.2 (pydicom's pattern for
    DS, held to the standard's ASCII digits) and finite; anything else goes to pydicom's reader."""
    texts = text.rstrip(" \x00").split("\\")
    standard = re.compile(VR_REGEXES["DS"], re.ASCII)
    plain = all(standard.match(t) for t in texts) and all(math.isfinite(float(t)) for t in texts)
    parser = rawheader._Parser(b"", 0)
    if not plain:
        with pytest.raises(rawheader._Unusual):
            rawheader._decimals_member(parser, 0x00180050, "DS", text.encode("latin-1", "replace"))
        return
    member, _ = rawheader._decimals_member(parser, 0x00180050, "DS", text.encode("latin-1"))
    assert json.loads("{" + member + "}")["00180050"]["Value"] == [float(t) for t in texts]


def test_raw_elements_are_those_pydicom_would_build(tmp_path):
    """The fast path builds RawDataElements as plain tuples: they must equal the NamedTuple's own."""
    from pydicom.dataelem import RawDataElement

    data = write_dicom(tmp_path / "ct.dcm", rows=8, cols=8).read_bytes()
    elements = list(rawheader.parse(data, len(data)).dataset._dict.values())
    raw = [e for e in elements if isinstance(e, RawDataElement)]
    assert len(raw) > 10
    for element in raw:
        assert element == RawDataElement(*element[:7])
        assert len(element) == len(RawDataElement._fields)


@pytest.mark.parametrize("instance_number", ["+007", " 12", "3 ", "-4", "1\\2\\3", ""])
def test_integer_strings_give_pydicoms_first_text(tmp_path, instance_number):
    """IS elements carry their first text too (the index reads InstanceNumber and SeriesNumber):
    the same text pydicom's str() of the value gives, signs and leading zeros kept."""
    from pydicom.dataelem import DataElement

    ds = make_dataset(rows=8, cols=8)
    ds["InstanceNumber"] = DataElement(0x00200013, "IS", instance_number)
    path = write_dicom(tmp_path / "ct.dcm", ds)
    fast, slow = _both_ways(path)
    assert fast.header_json is not None  # the fast path read it
    assert 0x00200013 in fast.dataset.__dict__[FIRST_TEXTS]
    assert first_text(fast.dataset, "InstanceNumber", "-") == first_text(slow.dataset, "InstanceNumber", "-")
    assert first_text(fast.dataset, "SeriesNumber") == first_text(slow.dataset, "SeriesNumber") == "1"


def test_text_read_before_the_character_set_steps_aside_also_when_remembered(tmp_path):
    """Text decoded before a Specific Character Set that comes late (elements out of order) may
    have been decoded wrongly: the fast path steps aside, also when it remembers that text from
    an earlier image instead of decoding it again."""
    plain = write_dicom(tmp_path / "plain.dcm", rows=8, cols=8, Manufacturer="ACME").read_bytes()
    data = write_dicom(tmp_path / "utf8.dcm", rows=8, cols=8, Manufacturer="ACME",
                       SpecificCharacterSet="ISO_IR 192").read_bytes()
    charset_at, charset_end = _element_bytes(data, 0x00080005, b"CS")
    maker_at, maker_end = _element_bytes(data, 0x00080070, b"LO")
    assert charset_end <= maker_at
    late_charset = (data[:charset_at] + data[charset_end:maker_end] + data[charset_at:charset_end]
                    + data[maker_end:])
    assert rawheader.parse(late_charset, len(late_charset)) is None  # decoded here: it steps aside
    assert rawheader.parse(plain, len(plain)).header_json  # "ACME" remembered, decoded as the default
    assert rawheader.parse(late_charset, len(late_charset)) is None  # remembered: it steps aside too
    assert rawheader.parse(data, len(data)).header_json  # in order, the same file is read
