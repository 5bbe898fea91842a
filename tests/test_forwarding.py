"""Forwarding routes against real peers: a DCMTK storescp destination that is down and then up,
one that refuses a SOP class, route matching, and the queue's state as `pacsd queue` shows it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.dicomgen import write_dicom
from tests.forwarding_support import Storescp, queue_rows, sop_uids
from tests.studies import send, write_study

FAST_RETRIES = {"retry_first_delay": 0.2, "retry_backoff": 2, "retry_max_delay": 1, "poll_interval": 0.1,
                "timeout": 5}


@pytest.fixture
def storescp(tmp_path):
    started = []

    def factory(name: str = "DEST", **options) -> Storescp:
        peer = Storescp(tmp_path / name, name, **options)
        started.append(peer)
        return peer

    yield factory
    for peer in started:
        peer.stop()


def forwarding_pacs(pacs_factory, destinations, routes, **sections):
    pacs = pacs_factory(known_aes=[d.known_ae() for d in destinations], routes=routes,
                        forwarding={**FAST_RETRIES, **sections.pop("forwarding", {})}, **sections)
    pacs.archive.start_background()
    return pacs


def test_destination_down_then_up_gets_everything_once(tmp_path, pacs_factory, storescp):
    dest = storescp()
    pacs = forwarding_pacs(pacs_factory, [dest], [{"name": "backup", "to": ["DEST"]}])
    files = write_study(tmp_path / "study", series=2, per_series=3)
    send(pacs, files)
    # Down: every item is retried and says why
    wait_until(lambda: all(r.attempts >= 2 for r in queue_rows(pacs.archive.engine)), what="retries")
    rows = queue_rows(pacs.archive.engine)
    assert len(rows) == len(files) and {r.state for r in rows} <= {"pending", "in_flight"}
    assert all("cannot be reached" in r.last_error for r in rows if r.state == "pending")
    dest.start()
    wait_until(lambda: {r.state for r in queue_rows(pacs.archive.engine)} == {"delivered"}, what="delivered")
    assert Counter(dest.received()) == Counter(sop_uids(files))  # each exactly once


def test_destination_refusing_a_sop_class_fails_that_item_only(tmp_path, pacs_factory, storescp):
    dest = storescp(only_ct=True).start()
    pacs = forwarding_pacs(pacs_factory, [dest], [{"name": "all", "to": ["DEST"]}])
    ct = [write_dicom(tmp_path / f"ct{i}.dcm", InstanceNumber=i) for i in range(3)]
    mr = write_dicom(tmp_path / "mr.dcm", SOPClassUID="1.2.840.10008.5.1.4.1.1.4", Modality="MR")
    send(pacs, [ct[0], mr, ct[1], ct[2]])
    wait_until(lambda: {r.state for r in queue_rows(pacs.archive.engine)} <= {"delivered", "failed"}, what="settled")
    rows = {r.sop_uid: r for r in queue_rows(pacs.archive.engine)}
    refused = rows.pop(sop_uids([mr])[0])
    assert refused.state == "failed" and "does not accept SOP class 1.2.840.10008.5.1.4.1.1.4" in refused.last_error
    assert refused.attempts == 1  # refused for good: not retried
    assert {r.state for r in rows.values()} == {"delivered"}
    assert Counter(dest.received()) == Counter(sop_uids(ct))


ACCOUNTS = {"entries": [{"name": "cardiology", "physicians": ["DOE^JOHN"]}]}


def test_routes_match_by_modality_ae_account_tag_wildcards_and_study_stable(tmp_path, pacs_factory, storescp):
    dest = storescp().start()
    routes = [
        {"name": "by-modality", "to": ["DEST"], "match": {"modality": "MR"}},
        {"name": "by-ae", "to": ["DEST"], "match": {"calling_aet": "CT_*"}},
        {"name": "by-account", "to": ["DEST"], "match": {"account": "cardiology"}},
        {"name": "by-tag", "to": ["DEST"], "match": {"tags": {"StationName": "SCANNER?2*",
                                                             "0008,0080": ["*General*", "Clinic"]}}},
        {"name": "ct-when-stable", "when": "study_stable", "to": ["DEST"], "match": {"sop_class": "CT"}},
    ]
    pacs = forwarding_pacs(pacs_factory, [dest], routes, storage={"naming": "accounts"}, accounts=ACCOUNTS,
                           stable_after=0.5)
    a = write_dicom(tmp_path / "a.dcm", RequestingPhysician="DOE^JOHN", StationName="SCANNER12",
                    InstitutionName="General")
    b = write_dicom(tmp_path / "b.dcm", SOPClassUID="1.2.840.10008.5.1.4.1.1.4", Modality="MR",
                    StationName="SCANNER3", InstitutionName="City General Hospital")
    c = write_dicom(tmp_path / "c.dcm", StationName="SCANNER22", InstitutionName="Big General")
    d = write_dicom(tmp_path / "d.dcm", StationName="SCANNER22", InstitutionName="Other")
    send(pacs, [a], aet="CT_ONE")
    send(pacs, [b, c, d], aet="MODALITY")
    uid_a, uid_b, uid_c, uid_d = sop_uids([a, b, c, d])
    wait_until(lambda: len({r.sop_uid for r in queue_rows(pacs.archive.engine) if r.route == "ct-when-stable"}) == 3,
               what="study_stable route queued")
    wait_until(lambda: {r.state for r in queue_rows(pacs.archive.engine)} == {"delivered"}, what="delivered")
    by_route: dict[str, set[str]] = {}
    for row in queue_rows(pacs.archive.engine):
        by_route.setdefault(row.route, set()).add(row.sop_uid)
    assert by_route == {"by-modality": {uid_b}, "by-ae": {uid_a}, "by-account": {uid_a},
                        "by-tag": {uid_a, uid_c}, "ct-when-stable": {uid_a, uid_c, uid_d}}
    assert Counter(dest.received()) == Counter({uid_a: 4, uid_b: 1, uid_c: 2, uid_d: 1})


@pytest.mark.parametrize("route, message", [
    ({"name": "r1", "to": ["NOWHERE"]}, "route 'r1': unknown destination 'NOWHERE'"),
    ({"name": "r2", "to": ["DEST"], "match": {"tags": {"NoSuchKeyword": "x"}}}, "route 'r2': unknown tag"),
    ({"name": "r3", "to": ["DEST"], "match": {"tags": {"StudyInstanceUID": "1.2.*"}}},
     "route 'r3': match.tags 'StudyInstanceUID': '1.2.*': C-FIND takes no wildcards for VR UI"),
    ({"name": "r4", "to": ["DEST"], "transfer_syntax": "JPEG Baseline (Process 1)"}, "route 'r4': transfer_syntax"),
    ({"name": "r5", "to": ["http://x.example/dicom-web"], "commitment": True}, "route 'r5': commitment"),
    ({"name": "r6", "to": ["DEST"], "match": {"tags": {"ReferencedImageSequence": "x"}}}, "route 'r6': match.tags"),
])
def test_a_bad_route_stops_start_up_with_one_line_naming_it(tmp_path, route, message):
    import subprocess

    import yaml

    from tests.conftest import VENV_BIN, free_port

    config = tmp_path / "pacsd.yaml"
    config.write_text(yaml.safe_dump({"known_aes": [{"ae_title": "DEST", "host": "127.0.0.1", "port": 104}],
                                      "routes": [route]}))
    run = subprocess.run([str(VENV_BIN / "pacsd"), "serve", "--config", str(config), "--port", str(free_port()),
                          "--http-port", str(free_port()), "--storage-dir", str(tmp_path / "s"), "--log-dir", str(tmp_path / "l"),
                          "--index-db", str(tmp_path / "i.sqlite")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and message in run.stderr, run.stderr


def second_pacs(tmp_path, pacs_factory, name: str, **sections):
    """Another pacsd (own storage and index) as a destination."""
    return pacs_factory(server={"ae_title": name}, storage={"directory": str(tmp_path / name / "storage")},
                        database={"path": str(tmp_path / name / "index.sqlite"), "url": None},
                        logging={"directory": str(tmp_path / name / "logs")}, **sections)


def stored_uids(pacs) -> list[str]:
    from sqlalchemy import select

    from pacsd.index.schema import instances

    with pacs.archive.engine.connect() as conn:
        return list(conn.execute(select(instances.c.sop_uid)).scalars())


def test_commitment_on_and_delete_after_delivery(tmp_path, pacs_factory):
    archive2 = second_pacs(tmp_path, pacs_factory, "ARCHIVE2", known_aes=[
        {"ae_title": "PACSD", "host": "127.0.0.1", "port": 1, "commitment_reply": "same"}])
    route = {"name": "router", "to": ["ARCHIVE2"], "commitment": True, "delete_after_delivery": True}
    pacs = pacs_factory(known_aes=[{"ae_title": "ARCHIVE2", "host": "127.0.0.1", "port": archive2.port}],
                        # the report comes from the other archive's commitment worker: on a loaded
                        # machine (the suite's workers) it can take longer than FAST_RETRIES' 5 s
                        routes=[route], forwarding={**FAST_RETRIES, "timeout": 30}, stable_after=0.3)
    pacs.archive.start_background()
    files = write_study(tmp_path / "study", series=1, per_series=4)
    send(pacs, files)
    actions = tmp_path / "logs" / "actions.log"
    wait_until(lambda: "study-deleted" in actions.read_text(), 90, what="the delivered study removed here")
    assert pacs.instance_count() == 0
    assert sorted(stored_uids(archive2)) == sorted(sop_uids(files))
    rows = queue_rows(pacs.archive.engine)
    assert [r.state for r in rows] == ["delivered"] * len(files)
    assert actions.read_text().count(" forwarded ") == len(files)
    assert pacs.stored_files() == []


def test_commitment_refused_keeps_the_local_copy(tmp_path, pacs_factory, storescp):
    dest = storescp().start()  # storescp does not offer Storage Commitment
    route = {"name": "router", "to": ["DEST"], "commitment": True, "delete_after_delivery": True}
    pacs = forwarding_pacs(pacs_factory, [dest], [route], stable_after=0.3,
                           forwarding={"max_attempts": 2})
    files = write_study(tmp_path / "study", series=1, per_series=2)
    send(pacs, files)
    wait_until(lambda: {r.state for r in queue_rows(pacs.archive.engine)} == {"failed"}, what="failed")
    assert all("not committed" in r.last_error for r in queue_rows(pacs.archive.engine))
    assert pacs.instance_count() == len(files)


def test_a_second_pacsd_over_stow_rs(tmp_path, pacs_factory):
    from pacsd.web.server import WebServer

    archive2 = second_pacs(tmp_path, pacs_factory, "WEB2", web={"login": False})
    server = WebServer(archive2.archive, "127.0.0.1", 0, archive2.server.connections)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.address[1]}/dicom-web"
        pacs = pacs_factory(routes=[{"name": "web", "to": [base]}], forwarding=FAST_RETRIES)
        pacs.archive.start_background()
        files = write_study(tmp_path / "study", series=2, per_series=3)
        send(pacs, files)
        wait_until(lambda: {r.state for r in queue_rows(pacs.archive.engine)} == {"delivered"}, what="delivered")
        assert sorted(stored_uids(archive2)) == sorted(sop_uids(files))
    finally:
        server.stop()


def pacsd_queue(tmp_path, *args: str):
    import json
    import subprocess

    from tests.conftest import VENV_BIN

    run = subprocess.run([str(VENV_BIN / "pacsd"), "queue", *args, "--index-db", str(tmp_path / "index.sqlite")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout) if "--json" in args else run.stdout


def test_queue_command_lists_retries_and_cancels(tmp_path, pacs_factory, storescp):
    dest = storescp()  # down: items wait for their retry
    pacs = forwarding_pacs(pacs_factory, [dest], [{"name": "backup", "to": ["DEST"]}],
                           forwarding={"max_attempts": 1})
    files = [write_dicom(tmp_path / f"{i}.dcm", InstanceNumber=i) for i in range(3)]
    send(pacs, files)
    wait_until(lambda: {r.state for r in queue_rows(pacs.archive.engine)} == {"failed"}, what="failed")
    failed = pacsd_queue(tmp_path, "list", "--state", "failed", "--json")
    assert sorted(item["sop_uid"] for item in failed) == sorted(sop_uids(files))
    assert all(item["route"] == "backup" and "cannot be reached" in item["last_error"] for item in failed)
    assert pacsd_queue(tmp_path, "cancel", "--id", str(failed[0]["id"])) == "1 items cancelled\n"
    dest.start()
    assert pacsd_queue(tmp_path, "retry", "--route", "backup") == "2 items due again\n"
    wait_until(lambda: sorted(r.state for r in queue_rows(pacs.archive.engine)) ==
               ["cancelled", "delivered", "delivered"], what="retried items delivered")
    assert sorted(dest.received()) == sorted(item["sop_uid"] for item in failed[1:])
    assert pacsd_queue(tmp_path, "list", "--state", "delivered", "--route", "nothing", "--json") == []


def test_orthanc_as_destination(tmp_path, pacs_factory):
    import json
    import shutil
    import subprocess

    import httpx

    from tests.conftest import dcmtk, free_port

    exe = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    if not Path(exe).exists():
        pytest.skip("Orthanc is not installed here (Debian package orthanc)")
    port, http_port = free_port(), free_port()
    config = tmp_path / "orthanc.json"
    config.write_text(json.dumps({"Name": "pacsd-test", "StorageDirectory": str(tmp_path / "orthanc"),
                                  "IndexDirectory": str(tmp_path / "orthanc"), "DicomAet": "ORTHANC",
                                  "DicomPort": port, "HttpPort": http_port, "RemoteAccessAllowed": False}))
    orthanc = subprocess.Popen([exe, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: dcmtk("echoscu", "-aec", "ORTHANC", "127.0.0.1", str(port), timeout=10).returncode == 0,
                   what="Orthanc up")
        pacs = pacs_factory(known_aes=[{"ae_title": "ORTHANC", "host": "127.0.0.1", "port": port}],
                            routes=[{"name": "to-orthanc", "to": ["ORTHANC"]}], forwarding=FAST_RETRIES)
        pacs.archive.start_background()
        files = write_study(tmp_path / "study", series=2, per_series=3)
        send(pacs, files)
        wait_until(lambda: {r.state for r in queue_rows(pacs.archive.engine)} == {"delivered"}, what="delivered")
        found = set()
        for instance in httpx.get(f"http://127.0.0.1:{http_port}/instances?expand", timeout=10).json():
            found.add(instance["MainDicomTags"]["SOPInstanceUID"])
        assert found == set(sop_uids(files))
    finally:
        orthanc.terminate()
        orthanc.wait(timeout=20)


def test_route_transcodes_for_its_destination(tmp_path, pacs_factory, storescp):
    import numpy as np
    from pydicom import dcmread
    from pydicom.uid import RLELossless

    dest = storescp(accept_any_syntax=True).start()
    pacs = forwarding_pacs(pacs_factory, [dest], [{"name": "rle", "to": ["DEST"], "transfer_syntax": "RLE Lossless"}])
    original = write_dicom(tmp_path / "ct.dcm", rows=32, cols=32)
    send(pacs, [original])
    wait_until(lambda: {r.state for r in queue_rows(pacs.archive.engine)} == {"delivered"}, what="delivered")
    (received,) = [p for p in dest.folder.iterdir() if p.is_file()]
    sent = dcmread(received)
    assert sent.file_meta.TransferSyntaxUID == RLELossless
    assert np.array_equal(sent.pixel_array, dcmread(original).pixel_array)  # lossless


def test_a_destination_without_the_routes_syntax_gets_it_uncompressed(tmp_path, pacs_factory, storescp):
    import numpy as np
    from pydicom import dcmread
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless

    dest = storescp().start()  # storescp's default: uncompressed syntaxes only
    pacs = forwarding_pacs(pacs_factory, [dest], [{"name": "all", "to": ["DEST"]}])
    original = write_dicom(tmp_path / "rle.dcm", rows=32, cols=32)
    compressed = dcmread(original)
    compressed.compress(RLELossless)
    compressed.save_as(original)
    from tests.peers import c_store_raw

    assert c_store_raw(pacs.port, [original]) == [0]  # sent as RLE, kept so
    wait_until(lambda: {r.state for r in queue_rows(pacs.archive.engine)} == {"delivered"}, what="delivered")
    (received,) = [p for p in dest.folder.iterdir() if p.is_file()]
    sent = dcmread(received)
    assert sent.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(sent.pixel_array, dcmread(original).pixel_array)
