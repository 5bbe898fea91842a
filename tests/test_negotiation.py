"""Association negotiation as senders expect it: each context gets the sender's own first
syntax (or `server.transfer_syntax_preference`'s), and every storage class is accepted,
retired and private ones included, unless `accepted_sop_classes` filters it.  DCMTK storescu
is the sender; files are compared with pydicom, not with pacsd's code."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select

from pacsd.index.schema import instances
from tests.conftest import HOST, dcmtk
from tests.sender_preference import by_syntax, own_syntax_first_profile, received_by_storescp
from tests.stored_checks import dataset_bytes, storable_testdata

IMPLICIT, EXPLICIT = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"
US_IMAGE_RETIRED = "1.2.840.10008.5.1.4.1.1.6"
PRIVATE_CLASS = "1.3.6.1.4.1.5962.99.1.1.77"
# DCMTK 3.6.7 cannot put these on the wire at all ("DIMSE Unsupported transfer syntax").
DCMTK_CANNOT_SEND = {"1.2.840.10008.1.2.8.1"}  # Deflated Image Frame Compression (2024)


def send_own_syntax_first(pacs, files, tmp_path: Path) -> list:
    results = []
    for syntax, group in by_syntax(files).items():
        profile = own_syntax_first_profile(tmp_path, syntax, group)
        results.append(dcmtk("storescu", "-aet", "MODALITY", "-aec", pacs.aet, *profile, HOST, str(pacs.port),
                             *map(str, group)))
    return results


def stored_by_uid(pacs) -> dict[str, Path]:
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in pacs.stored_files()}


def _syntax(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)


def _elements(path: Path) -> dict:
    """The dataset's elements (group lengths left out: storescu drops them)."""
    return {elem.tag: elem.value for elem in dcmread(path) if elem.tag.element != 0}


@pytest.mark.parametrize("listed", [False, True], ids=["every-class", "classes-listed"])
def test_every_test_file_is_kept_as_sent_when_its_own_syntax_is_proposed_first(pacs_factory, tmp_path, listed):
    expected = {uid: path for uid, path in storable_testdata().items() if _syntax(path) not in DCMTK_CANNOT_SEND}
    # Listed classes are negotiated pynetdicom's restricted way; unlisted ones its unrestricted way.
    classes = sorted({str(dcmread(p, stop_before_pixels=True).SOPClassUID) for p in expected.values()})
    pacs = pacs_factory(accepted_sop_classes=classes if listed else [])
    # The oracle: what storescp +B +xa keeps in the file's own syntax (it refuses classes it does
    # not know, and takes Explicit over a proposed Implicit; those files are compared by element).
    reference = {uid: kept for uid, kept in received_by_storescp(tmp_path / "reference", expected.values()).items()
                 if kept[0] == _syntax(expected[uid])}
    assert len(reference) >= 15
    results = send_own_syntax_first(pacs, expected.values(), tmp_path)
    stored = stored_by_uid(pacs)
    assert set(stored) == set(expected), [r.stderr[-500:] for r in results if r.returncode]
    assert [source.name for uid, source in expected.items() if _syntax(stored[uid]) != _syntax(source)] == []
    # Where storescp +B +xa keeps a file (it knows the class), pacsd keeps the very same bytes.
    assert [expected[uid].name for uid, (_, dataset) in reference.items() if dataset_bytes(stored[uid]) != dataset] == []
    # Elsewhere the stored dataset has the source's elements, in the source's syntax.
    assert [source.name for uid, source in expected.items()
            if uid not in reference and _elements(stored[uid]) != _elements(source)] == []
    assert len({_syntax(path) for path in stored.values()}) >= 10


def _one_file(syntax: str) -> Path:
    return next(p for p in storable_testdata().values()
                if str(dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID) == syntax)


def test_transfer_syntax_preference_overrides_the_senders_order(pacs_factory, tmp_path):
    pacs = pacs_factory(server={"transfer_syntax_preference": ["Explicit VR Little Endian"]})
    source = _one_file(IMPLICIT)
    result = send_own_syntax_first(pacs, [source], tmp_path)[0]  # proposes [Implicit, Explicit LE, BE]
    assert result.returncode == 0, result.stderr
    (stored,) = stored_by_uid(pacs).values()
    assert dcmread(stored, stop_before_pixels=True).file_meta.TransferSyntaxUID == EXPLICIT


def _with_sop_class(source: Path, sop_class: str, out: Path) -> Path:
    dataset = dcmread(source)
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = sop_class
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = f"{sop_class}.{len(sop_class)}.7"
    dataset.save_as(out, enforce_file_format=True)
    return out


@pytest.mark.parametrize("sop_class", [US_IMAGE_RETIRED, PRIVATE_CLASS], ids=["retired", "private"])
def test_retired_and_private_storage_classes_are_kept(pacs, tmp_path, sop_class):
    sent = _with_sop_class(_one_file(EXPLICIT), sop_class, tmp_path / "odd-class.dcm")
    result = send_own_syntax_first(pacs, [sent], tmp_path)[0]
    assert result.returncode == 0, result.stderr
    (stored,) = stored_by_uid(pacs).values()
    assert dcmread(stored, stop_before_pixels=True).SOPClassUID == sop_class
    assert dataset_bytes(stored) == dataset_bytes(sent)


def test_accepted_sop_classes_still_filters_retired_and_private_classes(pacs_factory, tmp_path):
    pacs = pacs_factory(accepted_sop_classes=["CT"])
    for sop_class in (US_IMAGE_RETIRED, PRIVATE_CLASS):
        sent = _with_sop_class(_one_file(EXPLICIT), sop_class, tmp_path / f"{sop_class}.dcm")
        result = send_own_syntax_first(pacs, [sent], tmp_path)[0]
        assert result.returncode != 0
    assert pacs.instance_count() == 0


def test_a_listed_retired_class_is_stored(pacs_factory, tmp_path):
    pacs = pacs_factory(accepted_sop_classes=["US"])  # the shorthand covers the retired US classes
    sent = _with_sop_class(_one_file(EXPLICIT), US_IMAGE_RETIRED, tmp_path / "us.dcm")
    result = send_own_syntax_first(pacs, [sent], tmp_path)[0]
    assert result.returncode == 0, result.stderr
    assert pacs.instance_count() == 1


def test_a_private_element_not_fitting_its_dictionary_vr_costs_nothing(pacs, tmp_path, caplog):
    """(0019,1021) of SIEMENS MED SMS USG S2000 is FD in pydicom's private dictionary; sent in
    Implicit VR with 2 bytes, DCMTK's storescp keeps the image, and so must pacsd."""
    dataset = dcmread(_one_file(IMPLICIT))
    dataset.add_new(0x00190010, "LO", "SIEMENS MED SMS USG S2000")
    dataset.add_new(0x00191021, "OB", b"\x01\x02")  # written without a VR: read as FD, 2 bytes
    sent = tmp_path / "private.dcm"
    dataset.save_as(sent, implicit_vr=True, little_endian=True)
    result = send_own_syntax_first(pacs, [sent], tmp_path)[0]
    assert result.returncode == 0, result.stderr
    (stored,) = stored_by_uid(pacs).values()
    kept = dcmread(stored)
    assert kept.get_item(0x00191021).value == b"\x01\x02" and kept.SOPInstanceUID == dataset.SOPInstanceUID
    with pacs.archive.engine.connect() as conn:
        header = json.loads(conn.execute(select(instances.c.header_json)).scalar_one())
    assert header["00191021"] == {"vr": "UN", "InlineBinary": base64.b64encode(b"\x01\x02").decode()}
    assert "(0019,1021)" in caplog.text and "kept as UN" in caplog.text


def test_a_pynetdicom_without_what_negotiation_relies_on_means_stock_negotiation_and_one_warning(
        pacs_factory, tmp_path, monkeypatch, caplog):
    """pacsd.net.contexts checks the names it wraps; one missing: pynetdicom's own order (Implicit
    VR first), one warning, and the server still serves."""
    from pynetdicom import acse

    from pacsd.net import contexts

    monkeypatch.setattr(acse, "negotiate_unrestricted", None)  # as if a release had renamed it
    monkeypatch.setattr(contexts, "_warned", [])
    pacs = pacs_factory(accept_unknown_sop_classes=False)  # pynetdicom then never calls that name
    pacs_factory(accept_unknown_sop_classes=False)
    assert caplog.text.count("lacks pynetdicom.acse.negotiate_unrestricted") == 1
    source = _one_file(EXPLICIT)
    result = send_own_syntax_first(pacs, [source], tmp_path)[0]  # proposes [Explicit LE, BE, Implicit]
    assert result.returncode == 0, result.stderr
    (stored,) = stored_by_uid(pacs).values()
    assert _syntax(stored) == IMPLICIT
