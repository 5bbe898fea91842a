"""The command-line tools as a user runs them: echo, send, import, stats, store-scp."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom.dsutils import encode

from pacsd.index.engine import open_index
from pacsd.net.scu import scan_files
from tests.conftest import HOST, TESTDATA, VENV_BIN, dcmtk, free_port
from tests.dicomgen import write_dicom
from tests.stored_checks import assert_all_stored, dataset_bytes, storable_testdata


def pacsd(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "pacsd"), *args], capture_output=True, text=True, timeout=timeout)


def test_echo(pacs):
    ok = pacsd("echo", HOST, str(pacs.port), "--aec", pacs.aet)
    assert ok.returncode == 0 and "success" in ok.stdout
    refused = pacsd("echo", HOST, str(pacs.port), "--aec", "WRONG")
    assert refused.returncode == 2 and "rejected" in refused.stderr


def sent_by_pacsd_send(folder: Path) -> dict[str, tuple[bytes, ...]]:
    """SOP Instance UID -> the dataset bytes `pacsd send` puts on the wire for it, per file.

    A file whose meta agrees with its dataset is streamed unchanged.  Otherwise pynetdicom sends
    the dataset pydicom read, encoded in the file's syntax, after reading its SOP UIDs for the
    request (which re-encodes those two: a UID's space padding becomes a NUL).  DCMTK's storescp
    cannot be the oracle here: it aborts on the odd-length fragments pynetdicom sends."""
    sent: dict[str, tuple[bytes, ...]] = {}
    for item in scan_files([folder])[0]:
        if item.meta_agrees:
            data = dataset_bytes(item.path)
        else:
            dataset = dcmread(item.path)
            dataset.SOPClassUID, dataset.SOPInstanceUID  # noqa: B018 - read as send_c_store does
            syntax = dataset.file_meta.TransferSyntaxUID
            data = encode(dataset, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)
        sent[item.sop_instance_uid] = (*sent.get(item.sop_instance_uid, ()), data)
    return sent


@pytest.mark.both_databases
def test_send_testdata_folder(pacs):
    result = pacsd("send", HOST, str(pacs.port), "--aec", pacs.aet, "--associations", "2", str(TESTDATA))
    expected = storable_testdata()
    summary = result.stdout.strip().splitlines()[-1]
    sent = int(summary.split("sent ")[1].split(",")[0])
    failed = int(summary.split("failed ")[1].split(",")[0])
    assert sent >= len(expected)  # two test files share one UID: the second is a duplicate, kept out
    assert failed > 0 and result.returncode == 1, "the malformed test files must be reported as failed"
    assert_all_stored(pacs.archive.engine, pacs.storage, expected, sent_by_pacsd_send(TESTDATA))


def test_import_testdata_folder(tmp_path):
    storage, index = tmp_path / "s", tmp_path / "i.sqlite"
    result = pacsd("import", str(TESTDATA), "--storage-dir", str(storage), "--index-db", str(index))
    expected = storable_testdata()
    assert result.returncode == 1, "the malformed test files must be reported as failed"
    assert f"stored {len(expected)}, duplicates 0, failed " in result.stdout
    engine = open_index(index)
    try:
        assert_all_stored(engine, storage, expected, {uid: dataset_bytes(path) for uid, path in expected.items()})
    finally:
        engine.dispose()


def test_send_reports_skipped_and_unreachable(tmp_path):
    (tmp_path / "notes.txt").write_text("not dicom")
    write_dicom(tmp_path / "one.dcm")
    port = free_port()
    result = pacsd("send", HOST, str(port), str(tmp_path))
    assert result.returncode == 1
    assert "sent 0, failed 1, skipped 1" in result.stdout
    # stderr is a pipe: no progress bar, one plain line per problem, nothing cut
    assert sorted(result.stderr.splitlines()) == [
        f"failed: {tmp_path / 'one.dcm'}: PACSD at {HOST}:{port} cannot be reached (no answer: wrong host or port, "
        "or nothing listening there)",
        f"skipped: {tmp_path / 'notes.txt'}: not a DICOM Part 10 file: File is missing DICOM File Meta Information "
        "header or the 'DICM' prefix is missing from the header"]


def test_import_then_stats(tmp_path):
    source = tmp_path / "in"
    for i in range(3):
        write_dicom(source / f"ct{i}.dcm", InstanceNumber=i)
    write_dicom(source / "mr.dcm", SOPClassUID="1.2.840.10008.5.1.4.1.1.4", Modality="MR")
    (source / "junk.dcm").write_bytes(b"garbage")
    before = {p: p.read_bytes() for p in source.iterdir()}
    where = ["--storage-dir", str(tmp_path / "s"), "--index-db", str(tmp_path / "i.sqlite")]
    result = pacsd("import", str(source), *where)
    assert result.returncode == 1
    assert "stored 4, duplicates 0, failed 1" in result.stdout
    assert {p: p.read_bytes() for p in source.iterdir()} == before, "import must not change its sources"
    again = pacsd("import", str(source / "ct0.dcm"), *where)
    assert again.returncode == 0 and "stored 0, duplicates 1, failed 0" in again.stdout
    figures = json.loads(pacsd("stats", "--json", *where).stdout)
    assert (figures["patients"], figures["studies"], figures["instances"]) == (1, 4, 4)
    assert figures["modalities"]["CT"]["instances"] == 3 and figures["modalities"]["MR"]["instances"] == 1
    assert figures["bytes"] == sum(p.stat().st_size for p in (tmp_path / "s").rglob("*.dcm"))


def test_store_scp_seed_command(tmp_path):
    port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "store-scp"), str(port), "SEEDSCP", "--host", HOST,
                             "--storage-dir", str(tmp_path / "s"), "--index-db", str(tmp_path / "i.sqlite"),
                             "--log-dir", str(tmp_path / "logs"), "--accept", "CT,MR"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(100):
            if dcmtk("echoscu", "-aec", "SEEDSCP", HOST, str(port), timeout=10).returncode == 0:
                break
            subprocess.run(["sleep", "0.1"])
        ct = write_dicom(tmp_path / "ct.dcm")
        us = write_dicom(tmp_path / "us.dcm", SOPClassUID="1.2.840.10008.5.1.4.1.1.6.1", Modality="US")
        assert dcmtk("storescu", "-aec", "SEEDSCP", HOST, str(port), str(ct)).returncode == 0
        assert dcmtk("storescu", "-aec", "SEEDSCP", HOST, str(port), str(us)).returncode != 0
    finally:
        proc.send_signal(2)
        output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    assert len(list((tmp_path / "s").rglob("*.dcm"))) == 1
