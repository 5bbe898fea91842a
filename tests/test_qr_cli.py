"""`pacsd find`, `pacsd move` and `pacsd get` against a running pacsd."""

from __future__ import annotations

import json
import subprocess

from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import select

from pacsd.index.schema import instances
from tests.conftest import HOST, VENV_BIN
from tests.dicomgen import write_dicom
from tests.qr_support import archive_files, with_pacsd_and_storescp
from tests.test_receive_dcmtk import dataset_bytes
from tests.test_retrieve_dcmtk import _archive, received_by_uid

STUDY = generate_uid()


def pacsd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "pacsd"), *args], capture_output=True, text=True, timeout=60)


def _two_instances(pacs, tmp_path):
    files = [write_dicom(tmp_path / f"{i}.dcm", StudyInstanceUID=STUDY, PatientName="Иванов^Пётр", InstanceNumber=i)
             for i in range(2)]
    archive_files(pacs.archive, *files)
    return files


def test_find_json(pacs, tmp_path):
    _two_instances(pacs, tmp_path)
    run = pacsd("find", HOST, str(pacs.port), "--aec", pacs.aet, "--json", "-k", "PatientName=иван*",
                "-k", "NumberOfStudyRelatedInstances")
    assert run.returncode == 0, run.stderr
    (answer,) = json.loads(run.stdout)
    assert answer["00100010"]["Value"] == [{"Alphabetic": "Иванов^Пётр"}]
    assert answer["00201208"]["Value"] == [2]
    assert answer["0020000D"]["Value"] == [STUDY]


def test_find_lines_and_refusal(pacs, tmp_path):
    files = _two_instances(pacs, tmp_path)
    run = pacsd("find", HOST, str(pacs.port), "--level", "series", "-k", f"StudyInstanceUID={STUDY}")
    assert run.returncode == 0, run.stderr
    # stdout is a pipe: a header line, then one tab-separated line per match, no value cut
    header, *rows = run.stdout.splitlines()
    assert header.split("\t") == ["Modality", "SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances",
                                   "SeriesInstanceUID", "StudyInstanceUID"]
    assert sorted(row.split("\t")[4:] for row in rows) == sorted(
        [str(dcmread(f).SeriesInstanceUID), STUDY] for f in files)  # one series per file
    refused = pacsd("find", HOST, str(pacs.port), "--aec", pacs.aet, "--model", "study", "--level", "patient")
    assert refused.returncode == 2 and "0xA900" in refused.stderr


def test_get_writes_the_stored_datasets(pacs, tmp_path):
    _two_instances(pacs, tmp_path)
    run = pacsd("get", HOST, str(pacs.port), "--aec", pacs.aet, "--study", STUDY, "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert "2 written to" in run.stdout and "0 failed" in run.stdout
    with pacs.archive.engine.connect() as conn:
        stored = dict(conn.execute(select(instances.c.sop_uid, instances.c.path)).all())
    got = received_by_uid(tmp_path / "out")
    assert set(got) == set(stored)
    for uid, path in stored.items():
        assert dataset_bytes(got[uid]) == dataset_bytes(pacs.storage / path)
        assert dcmread(got[uid]).StudyInstanceUID == STUDY


def test_move_to_a_storescp_and_to_an_unknown_ae(tmp_path):
    series = generate_uid()
    stored = _archive(tmp_path, [write_dicom(tmp_path / "src" / f"{i}.dcm", StudyInstanceUID=STUDY,
                                             SeriesInstanceUID=series) for i in range(2)])
    command = f"{VENV_BIN / 'pacsd'} move 127.0.0.1 11112 --aec PACSD --study {STUDY}"
    script = f"{command} --dest DEST; echo exit=$?; {command} --dest NOWHERE; echo exit=$?"
    run, received = with_pacsd_and_storescp(tmp_path, "+B", "bash", "-c", script)
    assert "2 sent to DEST, 0 with warnings, 0 failed" in run.stdout, run.stdout + run.stderr[-2000:]
    assert run.stdout.count("exit=0") == 1 and "exit=2" in run.stdout
    assert "0xA801" in run.stderr
    assert set(received_by_uid(received)) == set(stored)
