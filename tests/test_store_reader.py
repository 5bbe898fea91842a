"""The C-STORE fast path (`pacsd.net.store_reader`): what it reads and writes equals what
pynetdicom would, messages it leaves to pynetdicom are answered in between, it copes with
fragmented commands and datasets, and leaves nothing behind when a dataset is cut off."""

from __future__ import annotations

import logging
import time
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dsutils import create_file_meta, encode
from pynetdicom.sop_class import Verification

from pacsd.dicom.file_meta import file_meta_bytes
from pacsd.net import command_set as cs
from pacsd.net.pdv import P_DATA_TF, PDU_HEADER, PDV_HEADER
from tests.conftest import HOST, wait_until
from tests.dicomgen import write_dicom
from tests.stored_checks import dataset_bytes


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.50"])
def test_file_meta_equals_pynetdicoms(syntax):
    f = DicomBytesIO()
    f.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(f, create_file_meta(sop_class_uid=CTImageStorage, sop_instance_uid="1.2.3.45",
                                             transfer_syntax=syntax))
    assert file_meta_bytes(CTImageStorage, "1.2.3.45", syntax) == f.getvalue()


@pytest.mark.parametrize("status, comment", [(0x0000, ""), (0xA700, "disk full"), (0xC000, "an odd comment")])
def test_store_response_equals_pynetdicoms(status, comment):
    response = C_STORE()
    response.MessageIDBeingRespondedTo, response.Status = 7, status
    response.AffectedSOPClassUID, response.AffectedSOPInstanceUID = CTImageStorage, "1.2.3.45"
    if comment:
        response.ErrorComment = comment
    message = C_STORE_RSP()
    message.primitive_to_message(response)
    assert cs.store_response(7, CTImageStorage, "1.2.3.45", status, comment) == encode(message.command_set, True, True)


def test_command_set_parsing():
    command = store_request_command(9, "1.2.3.4")
    elements = cs.parse(command)
    assert cs.us(elements, cs.COMMAND_FIELD) == cs.C_STORE_RQ and cs.us(elements, cs.MESSAGE_ID) == 9
    assert cs.ui(elements, cs.AFFECTED_SOP_INSTANCE_UID) == "1.2.3.4"
    assert cs.ui(elements, cs.AFFECTED_SOP_CLASS_UID) == CTImageStorage
    with pytest.raises(cs.InvalidCommandSet):
        cs.parse(command[:-3])  # the last value runs past the end
    with pytest.raises(cs.InvalidCommandSet):
        cs.parse(b"\x08\x00\x10\x00\x02\x00\x00\x00AB")  # not group 0000


def store_request_command(message_id: int, sop_instance: str) -> bytes:
    request = C_STORE()
    request.MessageID, request.Priority = message_id, 0
    request.AffectedSOPClassUID, request.AffectedSOPInstanceUID = CTImageStorage, sop_instance
    request.DataSet = BytesIO(b"\0")
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    return encode(message.command_set, True, True)


def echo_command(message_id: int) -> bytes:
    request = C_ECHO()
    request.MessageID, request.AffectedSOPClassUID = message_id, Verification
    message = C_ECHO_RQ()
    message.primitive_to_message(request)
    return encode(message.command_set, True, True)


def pdu(*pdvs: tuple[int, int, bytes]) -> bytes:
    """One P-DATA-TF of (context ID, control header, fragment) PDVs."""
    body = b"".join(PDV_HEADER.pack(len(data) + 2, cx, control) + data for cx, control, data in pdvs)
    return PDU_HEADER.pack(P_DATA_TF, 0, len(body)) + body


@pytest.fixture
def peer(pacs):
    """An association to `pacs` proposing CT Image Storage and Verification; its context IDs."""
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    assoc = ae.associate(HOST, pacs.port, ae_title=pacs.aet)
    assert assoc.is_established
    ids = {str(cx.abstract_syntax): cx.context_id for cx in assoc.accepted_contexts}
    assoc._reactor_checkpoint.clear()  # pause its reactor, as pynetdicom does while it awaits a response
    while not assoc._is_paused:
        time.sleep(0.001)
    yield assoc, ids[CTImageStorage], ids[Verification]
    assoc._reactor_checkpoint.set()
    if assoc.is_established:
        assoc.release()


def responses(assoc, count: int) -> list:
    """The next `count` DIMSE messages the peer received (primitives)."""
    got = []
    for _ in range(count):
        _, message = assoc.dimse.get_msg(block=True)
        assert message is not None, "no response"
        got.append(message)
    return got


def test_fragmented_store_is_read_by_the_fast_path(pacs, peer, tmp_path, caplog):
    assoc, ct, _ = peer
    source = write_dicom(tmp_path / "a.dcm", InstanceNumber=1)
    sop_instance = str(dcmread(source).SOPInstanceUID)
    command, dataset = store_request_command(1, sop_instance), dataset_bytes(source)
    thirds = [dataset[:100], dataset[100:1000], dataset[1000:]]
    caplog.set_level(logging.DEBUG, logger="pacsd.net.store_reader")
    assoc.dul.socket.send(pdu((ct, 0x01, command[:10]), (ct, 0x01, command[10:30])))
    assoc.dul.socket.send(pdu((ct, 0x03, command[30:]), (ct, 0x00, thirds[0])))
    assoc.dul.socket.send(pdu((ct, 0x00, thirds[1])) + pdu((ct, 0x02, thirds[2])))
    (response,) = responses(assoc, 1)
    assert response.Status == 0x0000 and response.MessageIDBeingRespondedTo == 1
    assert response.AffectedSOPInstanceUID == sop_instance
    assert f"C-STORE {sop_instance} read by the fast path: 0x0000" in caplog.text
    (stored,) = pacs.stored_files()
    assert dataset_bytes(stored) == dataset
    assert stored.read_bytes().startswith(b"\0" * 128 + b"DICM")


def test_messages_left_to_pynetdicom_are_answered_in_between(pacs, peer, tmp_path):
    """C-ECHO (pynetdicom's), C-STORE (the fast path's), C-ECHO on one association, each sent
    once the previous one is answered (no asynchronous operations are negotiated)."""
    assoc, ct, verification = peer
    source = write_dicom(tmp_path / "a.dcm")
    sop_instance = str(dcmread(source).SOPInstanceUID)
    answered = []
    for message in (pdu((verification, 0x03, echo_command(5))),
                    pdu((ct, 0x03, store_request_command(6, sop_instance)), (ct, 0x02, dataset_bytes(source))),
                    pdu((verification, 0x03, echo_command(7)))):
        assoc.dul.socket.send(message)
        answered += [(m.__class__.__name__, m.MessageIDBeingRespondedTo, m.Status) for m in responses(assoc, 1)]
    assert answered == [("C_ECHO", 5, 0), ("C_STORE", 6, 0), ("C_ECHO", 7, 0)]
    assert pacs.instance_count() == 1


def test_store_on_a_context_of_another_class_goes_to_pynetdicom(pacs, peer, tmp_path):
    """The fast path takes only a request whose SOP class is its context's; pynetdicom judges
    the rest (here it answers, and ingest refuses the SOP class mismatch)."""
    assoc, _, verification = peer
    source = write_dicom(tmp_path / "a.dcm")
    sop_instance = str(dcmread(source).SOPInstanceUID)
    assoc.dul.socket.send(pdu((verification, 0x03, store_request_command(3, sop_instance)),
                              (verification, 0x02, dataset_bytes(source))))
    (response,) = responses(assoc, 1)
    assert response.MessageIDBeingRespondedTo == 3 and response.Status != 0x0000
    assert pacs.instance_count() == 0


def test_dataset_cut_off_by_an_abort_leaves_nothing(pacs, peer, tmp_path):
    assoc, ct, _ = peer
    source = write_dicom(tmp_path / "a.dcm")
    sop_instance = str(dcmread(source).SOPInstanceUID)
    dataset = dataset_bytes(source)
    incoming = pacs.storage / ".incoming"

    def temp_files() -> list[Path]:
        return [p for p in incoming.rglob("*") if p.is_file()] if incoming.exists() else []

    assoc.dul.socket.send(pdu((ct, 0x03, store_request_command(1, sop_instance)), (ct, 0x00, dataset[:500])))
    wait_until(temp_files, what="the server's temp file of the cut-off dataset")  # it has begun writing
    assoc.abort()
    wait_until(lambda: not temp_files(), what="the temp file removed after the abort")
    assert pacs.instance_count() == 0 and pacs.stored_files() == []


A_RELEASE_RQ = bytes([0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0])


def read_pdus(sock, count: int, timeout: float = 10.0) -> list[tuple[int, bytes]]:
    """The next `count` PDUs on a raw socket: (type, body)."""
    sock.settimeout(timeout)
    data, found = b"", []
    while len(found) < count:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {len(found)} PDUs"
        data += chunk
        while len(data) >= 6 and len(data) >= 6 + int.from_bytes(data[2:6], "big"):
            length = int.from_bytes(data[2:6], "big")
            found.append((data[0], data[6:6 + length]))
            data = data[6 + length:]
    return found


def test_stores_and_a_release_in_one_segment_are_each_answered(pacs, peer, tmp_path):
    """Two C-STOREs and the A-RELEASE-RQ sent in one write: the server reads them in one go
    (several PDUs per `recv`), answers both stores, then the release, whose PDU it read while
    the association was still in data transfer."""
    assoc, ct, _ = peer
    sources = [write_dicom(tmp_path / f"{n}.dcm", InstanceNumber=n) for n in (1, 2)]
    burst = b"".join(
        pdu((ct, 0x03, store_request_command(n, str(dcmread(source).SOPInstanceUID))))
        + pdu((ct, 0x02, dataset_bytes(source)))
        for n, source in enumerate(sources, start=1)
    )
    assoc.dul.kill_dul()  # from here on this test alone reads the socket
    assoc.dul.join(5)
    assert not assoc.dul.is_alive()
    raw = assoc.dul.socket.socket
    raw.sendall(burst + A_RELEASE_RQ)
    kinds = [kind for kind, _ in read_pdus(raw, 3)]
    assert kinds == [0x04, 0x04, 0x06], "two P-DATA-TF (the C-STORE responses), then the A-RELEASE-RP"
    assert pacs.instance_count() == 2
    assert sorted(dataset_bytes(p) for p in pacs.stored_files()) == sorted(dataset_bytes(s) for s in sources)
    assoc.dul.socket.close()
    assoc.is_established = False  # released by hand: the fixture has nothing left to release
