"""Study-stable events: once per quiet period, again after new images, re-armed after a restart,
and once only when several detectors share one database."""

from __future__ import annotations

import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from pydicom import dcmread
from sqlalchemy import select

from pacsd.index.engine import open_index
from pacsd.index.schema import changes
from pacsd.services.actionlog import ActionLog
from pacsd.services.archive import Archive
from pacsd.services.end_of_study import EndOfStudyWork
from pacsd.services.study_stable import StudyStableDetector
from pacsd.services.workqueue import WorkQueue
from tests.studies import send, wait_for, write_study

pytestmark = pytest.mark.both_databases


def stable_rows(engine, study_uid: str) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(changes.c.seq).where(changes.c.kind == "study-stable",
                                                            changes.c.uid == study_uid)).all())


def study_uid_of(files) -> str:
    return str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def later(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


def test_not_stable_before_the_quiet_period_then_once(pacs_factory, tmp_path):
    pacs = pacs_factory(stable_after=30)
    files = write_study(tmp_path / "s")
    send(pacs, files)
    detector = pacs.archive.stable_detector
    assert detector.check() == []  # just arrived: not quiet for 30 s yet
    uid = study_uid_of(files)
    assert detector.check(now=later(31)) == [uid]
    assert detector.check(now=later(62)) == []  # same quiet period: no second event
    assert stable_rows(pacs.archive.engine, uid) == 1


def test_detector_thread_fires_once_and_again_after_new_images(pacs_factory, tmp_path):
    pacs = pacs_factory(stable_after=0.4)
    files = write_study(tmp_path / "s", per_series=3)
    uid = study_uid_of(files)
    send(pacs, files[:2])
    pacs.archive.start_background()
    engine = pacs.archive.engine
    assert wait_for(lambda: stable_rows(engine, uid) == 1)
    time.sleep(1.0)  # several more polls within the same quiet period
    assert stable_rows(engine, uid) == 1
    send(pacs, files[2:])  # the study changes: a new quiet period begins
    assert wait_for(lambda: stable_rows(engine, uid) == 2)
    # the action log line follows the row's commit: wait for it too, then make sure it is not repeated
    fired = lambda: (tmp_path / "logs" / "actions.log").read_text().count(f'study-stable study="{uid}"')  # noqa: E731
    assert wait_for(lambda: fired() == 2)
    time.sleep(0.5)
    assert fired() == 2


def test_pending_study_is_rearmed_after_restart(pacs_factory, tmp_path):
    first = pacs_factory(stable_after=0.4)  # detector never started: the study stays pending
    files = write_study(tmp_path / "s")
    uid = study_uid_of(files)
    send(first, files)
    first.stop()
    assert stable_rows(first.archive.engine, uid) == 0
    second = pacs_factory(stable_after=0.4)  # same database under tmp_path
    second.archive.start_background()
    assert wait_for(lambda: stable_rows(second.archive.engine, uid) == 1)


def test_several_detectors_on_one_database_fire_once(pacs, tmp_path):
    files = write_study(tmp_path / "s")
    send(pacs, files)
    engines = [open_index(pacs.settings.database.target) for _ in range(4)]
    fired: list[str] = []
    detectors = [StudyStableDetector(engine, 1, on_stable=fired.append) for engine in engines]
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda d: [d.check(now=later(5)) for _ in range(5)], detectors))
    finally:
        for engine in engines:
            engine.dispose()
    assert fired == [study_uid_of(files)]
    assert stable_rows(pacs.archive.engine, study_uid_of(files)) == 1


def test_pacsd_serve_rearms_after_restart_and_writes_the_sheet(pacs_process, tmp_path):
    def config(stable_after: float) -> str:
        path = tmp_path / f"pacsd-{stable_after}.yaml"
        path.write_text(yaml.safe_dump({"stable_after": stable_after, "storage": {"naming": "accounts"}}))
        return str(path)

    files = write_study(tmp_path / "s", RequestingPhysician="NEW^DOC", PatientName="P^Q")
    server = pacs_process("--config", config(600))
    send(server, files)
    assert "pacsd stopped" in server.stop()
    engine = open_index(server.database_target)
    try:
        assert stable_rows(engine, study_uid_of(files)) == 0
        server = pacs_process("--config", config(0.3))
        sheet = tmp_path / "storage" / "Guest" / "NEW^DOC" / "20240115_P^Q_ACC001" / "ScanSheet.pdf"
        assert wait_for(sheet.exists)
        assert stable_rows(engine, study_uid_of(files)) == 1
    finally:
        engine.dispose()


# Writes one empty file per call into the folder named by its first argument.
COUNT_CALLS = [sys.executable, "-c", "import os, sys, uuid; open(os.path.join(sys.argv[1], uuid.uuid4().hex), 'w')"]


def marked_stable_then_crashed(pacs, files) -> str:
    """Send the study and mark it stable without running its end-of-study work (as if the process
    died right after the mark was committed)."""
    send(pacs, files)
    detector = pacs.archive.stable_detector
    detector.on_stable = lambda uid: None
    uid = study_uid_of(files)
    assert detector.check(now=later(3600)) == [uid]
    pacs.stop()
    return uid


def test_end_of_study_work_lost_in_a_crash_runs_once_after_restart(pacs_factory, tmp_path):
    calls = tmp_path / "calls"
    calls.mkdir()
    first = pacs_factory(stable_after=600, hooks={"on_study_stable": [*COUNT_CALLS, str(calls)]})
    files = write_study(tmp_path / "s", PatientID="P7")
    uid = marked_stable_then_crashed(first, files)
    sheet = first.storage / "P7" / uid / "ScanSheet.pdf"
    assert not sheet.exists() and list(calls.iterdir()) == []

    restarted = Archive(first.settings, node=first.archive.node)  # the same node comes back
    try:
        restarted.start_background()
        assert wait_for(lambda: sheet.exists() and len(list(calls.iterdir())) == 1)
        assert wait_for(lambda: 'hook-on_study_stable status="0"' in (tmp_path / "logs" / "actions.log").read_text())
        restarted.study_work.close()  # the job has finished and recorded itself done
        assert restarted.end_of_study.resume_pending() == []
    finally:
        restarted.close()
    again = Archive(first.settings, node=first.archive.node)
    try:
        assert again.end_of_study.resume_pending() == []  # done: nothing to run a second time
    finally:
        again.close()
    assert len(list(calls.iterdir())) == 1
    assert stable_rows(first.archive.engine, uid) == 1


def test_abandoned_end_of_study_work_is_taken_over_by_one_node_only(pacs_factory, tmp_path):
    pacs = pacs_factory(stable_after=600)
    uid = marked_stable_then_crashed(pacs, write_study(tmp_path / "s"))
    ran: list[str] = []
    nodes = []
    for number in range(4):
        engine = open_index(pacs.settings.database.target)
        work = WorkQueue(1)
        actions = ActionLog(tmp_path / f"{number}.log")
        nodes.append((engine, work, EndOfStudyWork(engine, f"other-{number}", work, actions, [("count", ran.append)])))
    try:
        assert [node.resume_pending() for _, _, node in nodes] == [[]] * 4  # the claim is fresh
        with ThreadPoolExecutor(4) as pool:
            resumed = list(pool.map(lambda node: node.resume_pending(now=later(3 * 3600)),
                                    [node for _, _, node in nodes]))
    finally:
        for engine, work, node in nodes:
            work.close()
            node.actions.close()
            engine.dispose()
    assert sorted(map(len, resumed)) == [0, 0, 0, 1] and ran == [uid]


def test_a_stop_during_a_backlog_leaves_the_rest_for_the_next_start_and_writes_each_sheet_once(
        pacs_factory, tmp_path):
    pacs = pacs_factory(stable_after=600)
    studies = [write_study(tmp_path / f"s{number}", PatientID=f"P{number}") for number in range(6)]
    send(pacs, [path for files in studies for path in files])
    sheet_of = {study_uid_of(files): pacs.storage / f"P{number}" / study_uid_of(files) / "ScanSheet.pdf"
                for number, files in enumerate(studies)}
    archive = pacs.archive
    what, write_sheet = archive.end_of_study.steps[0]
    assert what == "scan-sheet"
    started: list[str] = []
    third_started, stop_requested = threading.Event(), threading.Event()

    def sheet_step(study_uid):  # the real step; the third one waits, mid-job, for the stop
        started.append(study_uid)
        if len(started) == 3:
            third_started.set()
            assert stop_requested.wait(30)
        return write_sheet(study_uid)

    archive.end_of_study.steps[0] = (what, sheet_step)
    assert sorted(archive.stable_detector.check(now=later(3600))) == sorted(sheet_of)  # a backlog of six
    assert third_started.wait(30)
    archive.end_of_study.request_stop()
    stop_requested.set()
    pacs.stop()  # returns without working off the backlog
    done_before = [uid for uid, sheet in sheet_of.items() if sheet.exists()]
    assert done_before == started[:2]  # the third gave up before writing; the others never began
    first_files = {uid: sheet_of[uid].stat().st_ino for uid in done_before}

    restarted = Archive(pacs.settings, node=archive.node)
    try:
        restarted.start_background()
        assert wait_for(lambda: all(sheet.exists() for sheet in sheet_of.values()))
        restarted.study_work.close()  # the resumed jobs have finished and recorded themselves done
        assert restarted.end_of_study.resume_pending() == []
    finally:
        restarted.close()
    assert {uid: sheet_of[uid].stat().st_ino for uid in done_before} == first_files  # not written again
    actions = (tmp_path / "logs" / "actions.log").read_text()
    for uid in sheet_of:
        assert len(re.findall(rf'scan-sheet study="{uid}"', actions)) == 1, uid
