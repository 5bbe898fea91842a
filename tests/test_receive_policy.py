"""Access control, SOP class filter, duplicate policies, association limit, restart."""

from __future__ import annotations

import threading

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import Verification
from sqlalchemy import select

from pacsd.index.schema import instances, studies
from pacsd.services.ingest import DUPLICATE_SOP_INSTANCE
from tests.conftest import HOST, dcmtk, start_pacs
from tests.dicomgen import make_dataset, write_dicom
from tests.mounts import needs_root, read_only
from tests.peers import c_store_raw, dataset_part

pytestmark = pytest.mark.both_databases


def echo(pacs, aet="ECHOER", aec=None) -> bool:
    return dcmtk("echoscu", "-aet", aet, "-aec", aec or pacs.aet, HOST, str(pacs.port), timeout=20).returncode == 0


def test_whitelist_rejects_unknown_calling_ae(pacs_factory):
    pacs = pacs_factory(access={"allowed_aets": ["GOODAE", "HOSTAE@127.0.0.1", "ELSEWHERE@192.0.2.1"]})
    assert echo(pacs, "GOODAE")
    assert echo(pacs, "HOSTAE")
    assert not echo(pacs, "BADAE")
    assert not echo(pacs, "ELSEWHERE"), "allowed from another host only"


def test_wrong_called_ae_is_rejected(pacs):
    assert echo(pacs)
    assert not echo(pacs, aec="NOTPACSD")


def test_sop_class_filter_refuses_at_negotiation(pacs_factory, tmp_path):
    pacs = pacs_factory(accepted_sop_classes=["CT"])
    ct = write_dicom(tmp_path / "ct.dcm")
    mr = write_dicom(tmp_path / "mr.dcm", SOPClassUID="1.2.840.10008.5.1.4.1.1.4", Modality="MR")
    assert dcmtk("storescu", "-aec", pacs.aet, HOST, str(pacs.port), str(ct)).returncode == 0
    refused = dcmtk("storescu", "-aec", pacs.aet, HOST, str(pacs.port), str(mr))
    assert refused.returncode != 0
    assert "no presentation context" in refused.stderr.lower() or "abstract syntax" in refused.stderr.lower()
    assert pacs.instance_count() == 1


def _two_versions(tmp_path):
    """Two files with the same SOP Instance UID and different content."""
    first = make_dataset(PatientName="FIRST^VERSION")
    second = make_dataset(PatientName="SECOND^VERSION", SOPInstanceUID=first.SOPInstanceUID,
                          StudyInstanceUID=first.StudyInstanceUID, SeriesInstanceUID=first.SeriesInstanceUID)
    return write_dicom(tmp_path / "v1.dcm", first), write_dicom(tmp_path / "v2.dcm", second)


def _stored_names(pacs) -> list[str]:
    return [str(dcmread(p).PatientName) for p in pacs.stored_files()]


@pytest.mark.parametrize("policy,second_status,kept", [
    ("keep", 0x0000, "FIRST^VERSION"),
    ("overwrite", 0x0000, "SECOND^VERSION"),
    ("reject", DUPLICATE_SOP_INSTANCE, "FIRST^VERSION"),
])
def test_duplicate_policy(pacs_factory, tmp_path, caplog, policy, second_status, kept):
    pacs = pacs_factory(duplicates=policy)
    v1, v2 = _two_versions(tmp_path)
    assert c_store_raw(pacs.port, [v1]) == [0]
    with caplog.at_level("WARNING"):
        assert c_store_raw(pacs.port, [v2]) == [second_status]
    assert pacs.instance_count() == 1
    assert _stored_names(pacs) == [kept]
    assert pacs.incoming_files() == []
    assert "conflict" in caplog.text, "same UID with other content must be logged as a conflict"
    with pacs.archive.engine.connect() as conn:
        study = conn.execute(select(studies.c.num_instances, studies.c.size_bytes)).one()
        path = conn.execute(select(instances.c.path)).scalar_one()
    assert study.num_instances == 1
    assert study.size_bytes == (pacs.storage / path).stat().st_size


@needs_root
def test_overwrite_succeeds_when_the_old_copy_cannot_be_removed(pacs_factory, tmp_path, caplog):
    pacs = pacs_factory(duplicates="overwrite", storage={"naming": "{SeriesDescription}/{SOPInstanceUID}.dcm"})
    uids = {"SOPInstanceUID": generate_uid(), "StudyInstanceUID": generate_uid(), "SeriesInstanceUID": generate_uid()}
    old = write_dicom(tmp_path / "old.dcm", SeriesDescription="OLD", **uids)
    new = write_dicom(tmp_path / "new.dcm", SeriesDescription="NEW", **uids)
    assert c_store_raw(pacs.port, [old]) == [0]
    with read_only(pacs.storage / "OLD"):  # the old copy's folder refuses the unlink (EROFS)
        assert c_store_raw(pacs.port, [new]) == [0]
    with pacs.archive.engine.connect() as conn:
        path = conn.execute(select(instances.c.path)).scalar_one()
    assert path == f"NEW/{uids['SOPInstanceUID']}.dcm"
    assert dataset_part(pacs.storage / path) == dataset_part(new)
    assert "could not be removed" in caplog.text


def test_identical_duplicate_is_not_a_conflict(pacs, tmp_path, caplog):
    v1 = write_dicom(tmp_path / "v1.dcm")
    with caplog.at_level("WARNING"):
        assert c_store_raw(pacs.port, [v1, v1]) == [0, 0]
    assert pacs.instance_count() == 1 and len(pacs.stored_files()) == 1
    assert "conflict" not in caplog.text


def test_max_associations_enforced(pacs_factory):
    pacs = pacs_factory(server={"max_associations": 1})
    ae = AE(ae_title="HOLDER")
    ae.add_requested_context(Verification)
    held = ae.associate(HOST, pacs.port, ae_title=pacs.aet)
    assert held.is_established
    try:
        assert not echo(pacs), "a second association must be refused"
    finally:
        held.release()
    for _ in range(50):  # the server notices the release asynchronously
        if echo(pacs):
            break
        threading.Event().wait(0.1)
    else:
        pytest.fail("association refused after the first one was released")


def test_restart_keeps_everything(pacs_factory, tmp_path):
    pacs = pacs_factory()
    files = [write_dicom(tmp_path / f"{i}.dcm", InstanceNumber=i) for i in range(3)]
    assert c_store_raw(pacs.port, files) == [0, 0, 0]
    stale = pacs.storage / ".incoming" / "left-by-a-crash.dcm"
    pacs.stop()
    stale.write_bytes(b"partial")
    again = start_pacs(pacs.settings)
    try:
        assert again.instance_count() == 3
        assert len(again.stored_files()) == 3
        assert not stale.exists(), "unacknowledged temp files are cleared at start"
        assert c_store_raw(again.port, [write_dicom(tmp_path / "new.dcm")]) == [0]
        assert again.instance_count() == 4
    finally:
        again.stop()


def test_negotiations_leave_the_shared_contexts_unchanged(pacs):
    """Associations share the listener's supported contexts (pacsd.net.contexts): negotiating
    accepted, refused and role-selected contexts must not change them."""
    from pynetdicom import build_role
    from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelGet

    listener = pacs.server._server
    before = [str(cx) for cx in listener.contexts]
    seen = []
    ae = AE(ae_title="NEGOTIATOR")
    ae.add_requested_context(CTImageStorage, ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2"])
    ae.add_requested_context("1.2.3.4.5.6.7", "1.2.840.10008.1.2")  # a private class: taken as storage
    ae.add_requested_context("1.2.840.10008.5.1.4.31")  # Modality Worklist FIND: a service pacsd lacks
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(Verification, "1.2.3.999")  # a transfer syntax nobody knows
    roles = [build_role(CTImageStorage, scp_role=True)]
    for _ in range(2):
        assoc = ae.associate(HOST, pacs.port, ae_title=pacs.aet, ext_neg=roles)
        assert assoc.is_established
        seen.extend(listener.active_associations)
        accepted = {str(cx.abstract_syntax): cx for cx in assoc.accepted_contexts}
        assert set(accepted) == {CTImageStorage, "1.2.3.4.5.6.7", StudyRootQueryRetrieveInformationModelGet}
        assert accepted[CTImageStorage].transfer_syntax == ["1.2.840.10008.1.2.4.50"], "the sender's first"
        assert accepted[CTImageStorage].as_scp, "the C-GET role was negotiated"
        assoc.release()
    assert seen and all(a.acceptor.supported_contexts is listener.contexts for a in seen)
    assert [str(cx) for cx in listener.contexts] == before
    assert echo(pacs), "a later association negotiates as before"


def test_a_silent_connection_does_not_hold_up_other_associations(pacs):
    """Associations are set up in the accepting thread (pacsd.net.listener): that must not wait
    for a peer that connected and sent nothing yet."""
    import socket

    silent = [socket.create_connection((HOST, pacs.port)) for _ in range(3)]
    try:
        assert echo(pacs), "an association made while others stay silent"
        assert c_store_raw(pacs.port, [write_dicom(pacs.storage.parent / "x.dcm")]) == [0]
    finally:
        for sock in silent:
            sock.close()
