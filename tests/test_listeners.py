"""Listeners from a site's Python package (an entry point in `pacsd.listeners`), without editing
pacsd: its filter refuses an instance before anything is placed, and it is told once per instance
after the row is committed (checked from another connection), once per stable study and deleted
study; in multi-process `pacsd serve` too (each instance once, though stored by two receiving
processes).
"""

from __future__ import annotations

import json
import sqlite3
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from pydicom import dcmread

from pacsd.services.archive import Archive
from pacsd.services.deletion import delete_study
from pacsd.services.importer import import_file
from tests.conftest import make_settings, wait_until
from tests.studies import write_study

SITE_LISTENER = '''
import json, os, sqlite3
from pacsd.services.listeners import Refusal, hookimpl


def _note(**values):
    with open(os.environ["SITE_LISTENER_LOG"], "a") as log:
        log.write(json.dumps({"pid": os.getpid(), **values}) + "\\n")


def _committed(uid):
    with sqlite3.connect(os.environ["SITE_LISTENER_DB"]) as conn:  # another connection: sees only commits
        return conn.execute("select count(*) from instances where sop_uid = ?", (uid,)).fetchone()[0] == 1


@hookimpl
def pacsd_filter_instance(incoming):
    patient = str(incoming.header.dataset.get("PatientID", ""))
    if patient == "REFUSE-ME":
        return Refusal(0xA700, "site quota full")
    return None


@hookimpl
def pacsd_instance_stored(stored):
    _note(signal="stored", uid=stored.sop_instance_uid, committed=_committed(stored.sop_instance_uid),
          exists=stored.path.is_file())


@hookimpl
def pacsd_study_stable(study_uid):
    _note(signal="stable", uid=study_uid)


@hookimpl
def pacsd_study_deleted(study_uid, instances):
    _note(signal="deleted", uid=study_uid, instances=instances)
'''


@pytest.fixture
def site_package(tmp_path, monkeypatch) -> Path:
    """An installed package `site_listener` with its entry point, on sys.path and PYTHONPATH."""
    site = tmp_path / "site-packages"
    (site / "site_listener-1.0.dist-info").mkdir(parents=True)
    (site / "site_listener.py").write_text(SITE_LISTENER)
    (site / "site_listener-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: site-listener\n"
                                                                  "Version: 1.0\n")
    (site / "site_listener-1.0.dist-info" / "entry_points.txt").write_text(
        "[pacsd.listeners]\nsite = site_listener\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("SITE_LISTENER_LOG", str(tmp_path / "signals.jsonl"))
    monkeypatch.setenv("SITE_LISTENER_DB", str(tmp_path / "index.sqlite"))
    yield site
    sys.modules.pop("site_listener", None)


def signals(tmp_path: Path) -> list[dict]:
    log = tmp_path / "signals.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def uid_of(path: Path, keyword: str) -> str:
    return str(dcmread(path, stop_before_pixels=True)[keyword].value)


def test_a_site_listener_filters_and_hears_each_signal_once(site_package, tmp_path):
    archive = Archive(make_settings(tmp_path))
    try:
        files = write_study(tmp_path / "send", per_series=3)
        refused = write_study(tmp_path / "refused", per_series=1, PatientID="REFUSE-ME")[0]
        results = [import_file(archive, path) for path in [*files, files[0], refused]]
        assert [r.status for r in results] == [0, 0, 0, 0, 0xA700]
        assert "site quota full" in results[-1].reason
        placed = [p for p in (tmp_path / "storage").rglob("*") if p.is_file() and ".pacsd" not in p.parts]
        assert len(placed) == 3  # nothing of the refused instance placed, no temp file left
        with sqlite3.connect(tmp_path / "index.sqlite") as conn:
            assert conn.execute("select count(*) from instances").fetchone()[0] == 3
        stored = [s for s in signals(tmp_path) if s["signal"] == "stored"]
        # once each (the duplicate kept out is not signalled), committed and on disk when told
        assert sorted(s["uid"] for s in stored) == sorted(uid_of(f, "SOPInstanceUID") for f in files)
        assert all(s["committed"] and s["exists"] for s in stored)

        study_uid = uid_of(files[0], "StudyInstanceUID")
        assert archive.stable_detector.check(now=datetime.now(timezone.utc) + timedelta(days=1)) == [study_uid]
        wait_until(lambda: any(s["signal"] == "stable" for s in signals(tmp_path)), 20, "the stable signal")
        delete_study(archive, study_uid, by="test")
        assert [s for s in signals(tmp_path) if s["signal"] in ("stable", "deleted")] == [
            {"pid": stored[0]["pid"], "signal": "stable", "uid": study_uid},
            {"pid": stored[0]["pid"], "signal": "deleted", "uid": study_uid, "instances": 3}]
    finally:
        archive.close()


def test_each_instance_signalled_once_in_multi_process_serve(site_package, pacs_process, tmp_path):
    config = tmp_path / "processes.yaml"
    config.write_text(yaml.safe_dump({"server": {"workers": 2, "shutdown_grace": 2}, "stable_after": 0.5}))
    server = pacs_process("--config", str(config))
    files = write_study(tmp_path / "send", series=2, per_series=4)
    half = len(files) // 2
    from tests.test_processes import acknowledged, storescu

    senders = [storescu(server.port, part, "MODALITY") for part in (files[:half], files[half:])]
    outputs = [sender.communicate(timeout=60)[0] for sender in senders]
    assert set().union(*map(acknowledged, outputs)) == set(map(str, files))
    wait_until(lambda: any(s["signal"] == "stable" for s in signals(tmp_path)), 30, "the stable signal")
    server.stop()
    stored = [s for s in signals(tmp_path) if s["signal"] == "stored"]
    assert sorted(s["uid"] for s in stored) == sorted(uid_of(f, "SOPInstanceUID") for f in files)
    assert all(s["committed"] and s["exists"] for s in stored)
    assert [s["uid"] for s in signals(tmp_path) if s["signal"] == "stable"] == [uid_of(files[0], "StudyInstanceUID")]
