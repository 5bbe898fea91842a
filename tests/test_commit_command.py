"""`pacsd commit` (the real command) against pacsd itself: reports on the same and a new association."""

from __future__ import annotations

import subprocess

from tests.conftest import HOST, VENV_BIN, dcmtk, free_port
from tests.dicomgen import write_dicom


def run_commit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "pacsd"), "commit", *args], capture_output=True, text=True, timeout=120)


def stored_files(pacs, tmp_path, count: int = 2) -> list:
    files = [write_dicom(tmp_path / "sent" / f"{n}.dcm", InstanceNumber=n + 1) for n in range(count)]
    result = dcmtk("storescu", "-aec", pacs.aet, HOST, str(pacs.port), *map(str, files))
    assert result.returncode == 0, result.stderr
    return files


def known_committer(reply: str, port: int) -> dict:
    return {"known_aes": [{"ae_title": "COMMITTER", "host": HOST, "port": port, "commitment_reply": reply}]}


def sop_uid(path) -> str:
    from pydicom import dcmread

    return dcmread(path, stop_before_pixels=True).SOPInstanceUID


def test_commit_same_association_reports_a_missing_instance(pacs_factory, tmp_path):
    pacs = pacs_factory(**known_committer("same", free_port()))
    files = stored_files(pacs, tmp_path)
    never_sent = write_dicom(tmp_path / "unsent" / "x.dcm")

    result = run_commit(HOST, str(pacs.port), *map(str, files), str(never_sent),
                        "--aet", "COMMITTER", "--timeout", "30")

    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert {line.split()[1] for line in lines if line.startswith("committed")} == set(map(sop_uid, files))
    assert [line.split()[1:4] for line in lines if line.startswith("FAILED")] == [
        [sop_uid(never_sent), "1.2.840.10008.5.1.4.1.1.2", "0x0112"]]
    assert "2 committed, 1 failed" in lines[-1] and "same association" in lines[-1]


def test_commit_new_association_all_committed(pacs_factory, tmp_path):
    listen_port = free_port()
    pacs = pacs_factory(**known_committer("new", listen_port))
    files = stored_files(pacs, tmp_path, count=3)

    result = run_commit(HOST, str(pacs.port), str(tmp_path / "sent"), "--aet", "COMMITTER",
                        "--listen-host", HOST, "--listen-port", str(listen_port), "--timeout", "30")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 committed, 0 failed" in result.stdout and "new association" in result.stdout
    assert {line.split()[1] for line in result.stdout.splitlines() if line.startswith("committed")} == \
        set(map(sop_uid, files))


def test_commit_study_from_our_index(pacs, tmp_path):
    files = stored_files(pacs, tmp_path)
    from pydicom import dcmread

    study_uid = dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    result = run_commit(HOST, str(pacs.port), "--study", study_uid, "--index-db",
                        str(pacs.settings.database.path), "--timeout", "30")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 committed, 0 failed" in result.stdout  # each generated file is its own study


def test_commit_without_a_report_in_time_fails(pacs_factory, tmp_path):
    pacs = pacs_factory(**known_committer("new", free_port()), commitment={"retry_first_delay": 3600})
    files = stored_files(pacs, tmp_path, count=1)
    result = run_commit(HOST, str(pacs.port), str(files[0]), "--aet", "COMMITTER", "--timeout", "2")
    assert result.returncode == 2
    assert "no commitment report within 2 s" in result.stderr
