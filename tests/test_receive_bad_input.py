"""Bad input over C-STORE: a failure status with a reason, and nothing left behind."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import CTImageStorage, MRImageStorage, generate_uid
from sqlalchemy import select

from pacsd.index.schema import instances
from pacsd.services.ingest import CANNOT_UNDERSTAND, DATASET_DOES_NOT_MATCH_SOP_CLASS, OUT_OF_RESOURCES
from tests.conftest import HOST, RECEIVE_PATHS, pacs_on_receive_path, wait_until
from tests.dicomgen import make_dataset, write_dicom
from tests.mounts import mount, needs_root, read_only
from tests.peers import c_store_raw, dataset_part, raw_part10

pytestmark = pytest.mark.both_databases


@pytest.fixture(params=RECEIVE_PATHS)
def pacs(request, pacs_factory, index_backend):
    """The running pacsd on each receive path (see `pacs_on_receive_path`)."""
    return pacs_on_receive_path(request.param, pacs_factory, index_backend)


def assert_nothing_left(pacs) -> None:
    assert pacs.instance_count() == 0
    assert pacs.stored_files() == []
    assert pacs.incoming_files() == []


@pytest.fixture
def good_file(tmp_path) -> Path:
    return write_dicom(tmp_path / "good.dcm", rows=64, cols=64)


def test_truncated_dataset_is_refused(pacs, good_file, tmp_path):
    ds = make_dataset()
    body = dataset_part(good_file)
    for cut in (len(body) // 2, len(body) - 7, 40):
        bad = raw_part10(tmp_path / f"cut{cut}.dcm", body[:cut], ds.SOPClassUID, str(generate_uid()))
        assert c_store_raw(pacs.port, [bad]) == [CANNOT_UNDERSTAND]
    assert_nothing_left(pacs)


def test_garbage_dataset_is_refused(pacs, tmp_path):
    garbage = raw_part10(tmp_path / "garbage.dcm", os.urandom(5000), make_dataset().SOPClassUID, generate_uid())
    assert c_store_raw(pacs.port, [garbage]) == [CANNOT_UNDERSTAND]
    assert_nothing_left(pacs)


def test_sop_class_disagreeing_with_request_is_refused(pacs, good_file, tmp_path):
    from pydicom import dcmread

    uid = dcmread(good_file).SOPInstanceUID
    liar = raw_part10(tmp_path / "liar.dcm", dataset_part(good_file), MRImageStorage, uid)
    assert c_store_raw(pacs.port, [liar]) == [DATASET_DOES_NOT_MATCH_SOP_CLASS]
    assert_nothing_left(pacs)


def test_sop_instance_disagreeing_with_request_is_refused(pacs, good_file, tmp_path):
    from pydicom import dcmread

    liar = raw_part10(tmp_path / "liar.dcm", dataset_part(good_file), dcmread(good_file).SOPClassUID, generate_uid())
    assert c_store_raw(pacs.port, [liar]) == [CANNOT_UNDERSTAND]
    assert_nothing_left(pacs)


@pytest.mark.parametrize("missing", ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
def test_missing_uid_is_refused(pacs, tmp_path, missing):
    dataset = make_dataset(**{missing: None})
    encoded = DicomBytesIO()
    encoded.is_little_endian, encoded.is_implicit_VR = True, False
    write_dataset(encoded, dataset)
    # the request names a SOP class and instance; the dataset lacks one of its UIDs
    path = raw_part10(tmp_path / "missing.dcm", encoded.getvalue(), CTImageStorage, generate_uid())
    assert c_store_raw(pacs.port, [path]) == [CANNOT_UNDERSTAND]
    assert_nothing_left(pacs)


def test_invalid_uid_is_refused(pacs, tmp_path):
    path = write_dicom(tmp_path / "evil.dcm", StudyInstanceUID="../../etc/passwd")
    assert c_store_raw(pacs.port, [path]) == [CANNOT_UNDERSTAND]
    assert_nothing_left(pacs)


HOSTILE = ["../../etc", "a/b\\c", "x\x00y\x07z\nq", "..", ".hidden", "é" * 300, "  ", "con:*?<>|"]


@pytest.mark.parametrize("naming", ["hierarchical", "{PatientName}/{StudyDescription}/{SeriesDescription}/{SOPInstanceUID}.dcm"])
def test_hostile_values_stay_inside_storage(pacs_factory, tmp_path, naming):
    pacs = pacs_factory(storage={"naming": naming})
    files = [write_dicom(tmp_path / f"h{i}.dcm", PatientID=value, PatientName=value,
                         StudyDescription=value, SeriesDescription=value)
             for i, value in enumerate(HOSTILE)]
    assert c_store_raw(pacs.port, files) == [0] * len(files)
    stored = pacs.stored_files()
    assert len(stored) == len(HOSTILE)
    root = pacs.storage.resolve()
    for path in stored:
        relative = path.resolve().relative_to(root)  # raises if outside
        for part in relative.parts:
            assert part not in ("", ".", "..") and not part.startswith(".")
            assert all(ch.isprintable() for ch in part) and "\\" not in part
            assert len(part.encode()) <= 128
    outside = {p for p in tmp_path.rglob("*.dcm") if root not in p.resolve().parents}
    assert outside == set(files), "a file was written outside the storage folder"


@contextmanager
def incoming_folder_is_a_file(folder: Path):
    """The storage folder's temp folder replaced by a file: no temp file can be made there."""
    incoming = folder / ".incoming"
    incoming.rmdir()
    incoming.write_bytes(b"")
    try:
        yield
    finally:
        incoming.unlink()
        incoming.mkdir()


@pytest.mark.parametrize("unwritable", [pytest.param(read_only, marks=needs_root, id="read-only-mount"),
                                        pytest.param(incoming_folder_is_a_file, id="incoming-is-a-file")])
def test_unwritable_volume_answers_a700_and_recovers(pacs, good_file, tmp_path, caplog, unwritable):
    second = write_dicom(tmp_path / "second.dcm")
    with unwritable(pacs.storage):
        # both answered in the same association: it survives the refusal
        assert c_store_raw(pacs.port, [good_file, second]) == [OUT_OF_RESOURCES, OUT_OF_RESOURCES]
        assert pacs.instance_count() == 0 and pacs.stored_files() == []
    assert_nothing_left(pacs)
    assert "cannot receive the dataset: cannot write" in caplog.text
    assert c_store_raw(pacs.port, [good_file]) == [0]
    assert pacs.instance_count() == 1 and len(pacs.stored_files()) == 1


@pytest.fixture
def small_volume(tmp_path):
    """A 3 MiB tmpfs for the storage folder: a real full disk."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mount("-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point))
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


@needs_root
def test_full_disk_answers_a700_and_recovers(pacs_factory, small_volume, tmp_path):
    pacs = pacs_factory(storage={"directory": str(small_volume / "storage")})
    filler = small_volume / "filler.bin"
    with open(filler, "wb") as f:  # leave ~200 KiB free
        free = os.statvfs(small_volume).f_bavail * os.statvfs(small_volume).f_frsize
        f.write(b"\0" * (free - 200 * 1024))
    big = write_dicom(tmp_path / "big.dcm", rows=512, cols=512)  # 512 KiB of pixels
    assert c_store_raw(pacs.port, [big]) == [OUT_OF_RESOURCES]
    assert_nothing_left(pacs)
    filler.unlink()
    assert c_store_raw(pacs.port, [big]) == [0]
    assert pacs.instance_count() == 1 and len(pacs.stored_files()) == 1


@pytest.mark.parametrize("keyword,text", [("InstanceNumber", "1e400"), ("InstanceNumber", "inf"),
                                          ("InstanceNumber", "nan"), ("InstanceNumber", "99999999999"),
                                          ("SeriesNumber", "-inf"), ("SliceThickness", "1e400"),
                                          ("SliceThickness", "nan")])
def test_number_that_is_no_number_is_kept_as_text(pacs, tmp_path, keyword, text):
    """A bad optional number must not cost the image: stored unchanged, the text in the header."""
    padded = text.encode() + b" " * (len(text) % 2)
    placeholder = b"7" * len(padded)  # written by pydicom, then swapped: pydicom refuses to write the text
    path = write_dicom(tmp_path / "odd.dcm", **{keyword: placeholder.decode()})
    data = path.read_bytes()
    tag = tag_for_keyword(keyword)  # the element header too: a random UID may hold "7777" as well
    element = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + dictionary_VR(tag).encode() + struct.pack("<H", len(padded))
    assert data.count(element + placeholder) == 1
    path.write_bytes(data.replace(element + placeholder, element + padded))
    assert c_store_raw(pacs.port, [path]) == [0]
    (stored,) = pacs.stored_files()
    assert dataset_part(stored) == dataset_part(path)
    with pacs.archive.engine.connect() as conn:
        row = conn.execute(select(instances.c.instance_number, instances.c.header_json)).one()
    element = json.loads(row.header_json)[f"{tag_for_keyword(keyword):08X}"]
    assert element["Value"] == ([text] if text != "99999999999" else [99999999999])
    assert row.instance_number is None if keyword == "InstanceNumber" else row.instance_number == 1


def test_a_partial_association_request_is_cut_off_at_the_acse_timeout(pacs_factory):
    pacs = pacs_factory(server={"acse_timeout": 1})
    with socket.create_connection((HOST, pacs.port)) as stalled:
        stalled.sendall(b"\x01\x00\x00\x00\x00\xcd\x00\x01")  # 8 of an A-ASSOCIATE-RQ's 211 bytes, then nothing
        stalled.settimeout(20)
        started = time.monotonic()
        try:
            while stalled.recv(4096):  # an A-ABORT may come first; then the close
                pass
        except ConnectionResetError:
            pass
        assert time.monotonic() - started < 15  # cut off, not held until we give up
    wait_until(lambda: not pacs.server.connections.active(), 10, "the association gone from the live list")


def test_endless_command_fragments_abort_the_association(pacs_factory):
    """Command fragments that never set the last-fragment bit: the association is aborted once
    they pass the command-set limit, instead of being buffered without end."""
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    pacs = pacs_factory()
    ae = AE(ae_title="FRAGMENTS")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate(HOST, pacs.port, ae_title=pacs.aet)
    assert assoc.is_established
    context_id = assoc.accepted_contexts[0].context_id
    fragment = b"\x00" * 16384
    pdv = struct.pack(">LBB", len(fragment) + 2, context_id, 0x01) + fragment  # command, not the last
    pdu = struct.pack(">BBL", 0x04, 0, len(pdv)) + pdv
    raw = assoc.dul.socket.socket
    try:
        for _ in range(64):  # 1 MiB of one command set
            raw.sendall(pdu)
    except OSError:
        pass  # the server aborted and closed meanwhile
    wait_until(lambda: assoc.is_aborted or not assoc.is_alive(), 10, "the association aborted by the server")
    assert not pacs.server.connections.active() or wait_until(lambda: not pacs.server.connections.active(), 10)
