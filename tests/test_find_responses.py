"""Pending C-FIND responses framed by pacsd itself (`pacsd.net.find_responses`): PDUs a DICOM peer
reads back, within the peer's maximum PDU length, and a long answer through findscu."""

from __future__ import annotations

import struct
import zlib
from io import BytesIO

import pytest
from pydicom.uid import generate_uid
from pynetdicom.dimse_messages import C_FIND_RSP
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.dsutils import decode, encode
from pynetdicom.pdu import P_DATA_TF

from pacsd.net.command_set import find_response
from pacsd.net.find_responses import deflate, pending_command_set
from pacsd.net.pdv import message_pdus
from tests.dicomgen import write_dicom
from tests.qr_support import archive_files, findscu


def split_pdus(data: bytes) -> list[P_DATA_TF]:
    """The P-DATA-TF PDUs of a byte stream, decoded by pynetdicom."""
    pdus, offset = [], 0
    while offset < len(data):
        pdu_type, _, length = struct.unpack_from(">BBL", data, offset)
        assert pdu_type == 0x04
        pdu = P_DATA_TF()
        pdu.decode(data[offset:offset + 6 + length])
        pdus.append(pdu)
        offset += 6 + length
    assert offset == len(data)
    return pdus


def request() -> C_FIND:
    primitive = C_FIND()
    primitive.MessageID = 7
    primitive.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.1"
    return primitive


def test_command_set_is_a_pending_response_to_the_request():
    command = decode(BytesIO(pending_command_set(request())), True, True)
    assert command.CommandField == 0x8020  # C-FIND-RSP
    assert command.MessageIDBeingRespondedTo == 7
    assert command.Status == 0xFF00
    assert command.CommandDataSetType != 0x0101  # a dataset follows
    assert command.AffectedSOPClassUID == "1.2.840.10008.5.1.4.1.2.2.1"
    assert command.CommandGroupLength == len(pending_command_set(request())) - 12


@pytest.mark.parametrize("status, identifier", [(0xFF00, True), (0x0000, False), (0xFE00, False)])
def test_find_response_command_sets_equal_pynetdicoms(status, identifier):
    response = C_FIND()
    response.MessageIDBeingRespondedTo, response.Status = 7, status
    response.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.1"
    if identifier:
        response.Identifier = BytesIO(b"\0")
    message = C_FIND_RSP()
    message.primitive_to_message(response)
    assert find_response(7, "1.2.840.10008.5.1.4.1.2.2.1", status, identifier) == encode(message.command_set, True, True)


def test_small_message_is_one_pdu_with_command_then_dataset():
    (pdu,) = split_pdus(message_pdus(3, b"C" * 80, b"D" * 200, 16384))
    values = [(item.presentation_context_id, item.data) for item in pdu.presentation_data_value_items]
    assert values == [(3, b"\x03" + b"C" * 80), (3, b"\x02" + b"D" * 200)]


@pytest.mark.parametrize("max_pdu", [4096, 1000])
def test_large_message_is_fragmented_within_the_max_pdu(max_pdu):
    dataset = bytes(range(256)) * 40  # 10,240 bytes
    pdus = split_pdus(message_pdus(5, b"C" * 80, dataset, max_pdu))
    assert all(len(pdu.encode()) - 6 <= max_pdu for pdu in pdus)
    items = [item for pdu in pdus for item in pdu.presentation_data_value_items]
    headers = [item.data[0] for item in items]
    assert headers[0] == 0x03  # the command, whole and last
    assert headers[1:-1] == [0x00] * (len(items) - 2) and headers[-1] == 0x02
    assert b"".join(item.data[1:] for item in items[1:]) == dataset


def test_deflate_is_raw_deflate():
    data = b"(\x00\x10\x00" * 300
    assert zlib.decompress(deflate(data), -zlib.MAX_WBITS) == data


def test_answer_longer_than_the_peers_max_pdu_arrives_whole(pacs, tmp_path):
    comment = "".join(f"{i:05d}," for i in range(1000))[:6000]  # LT, 6,000 characters
    study = generate_uid()
    archive_files(pacs.archive, *(write_dicom(tmp_path / f"{n}.dcm", StudyInstanceUID=study, InstanceNumber=n,
                                               ImageComments=comment) for n in (1, 2)))
    answers, run = findscu(pacs, tmp_path / "q", f"StudyInstanceUID={study}", "SeriesInstanceUID",
                           "SOPInstanceUID", "ImageComments", level="IMAGE", extra=("--max-pdu", "4096"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert [str(a.ImageComments) for a in answers] == [comment, comment]
    assert "Final Find Response (Success)" in run.stderr
