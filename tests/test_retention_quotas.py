"""Retention and quotas: a dry run deletes nothing and lists what a run frees; a run spares
protected studies and patients and logs each deletion; runs killed (SIGKILL) leave no row without
its file; quotas refuse with 0xA700 (as DCMTK storescu reports it) or recycle the oldest
unprotected study."""

from __future__ import annotations

import json
import random
import re
import subprocess
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import create_engine, func, select

from pacsd.index.engine import database_url
from pacsd.index.schema import instances, series, studies
from pacsd.services.archive import Archive
from pacsd.storage.blobstore import BlobStore
from tests.conftest import HOST, VENV_BIN, dcmtk, make_settings
from tests.qr_support import archive_files
from tests.studies import write_study
from tests.test_storage_areas import kill_when

OLD = "19990101"


def pacsd(*args: str, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "pacsd"), *args, "--config", str(config)], capture_output=True,
                          text=True, timeout=180)


def study_uids(settings) -> set[str]:
    engine = create_engine(database_url(settings.database.target))
    try:
        with engine.connect() as conn:
            return set(conn.execute(select(studies.c.study_uid)).scalars())
    finally:
        engine.dispose()


def filed_studies(tmp_path: Path, settings, dates: dict[str, str], per_series: int = 2) -> dict[str, list[Path]]:
    """Studies (UID -> source files) archived through ingest, each its own patient."""
    made = {}
    archive = Archive(settings)
    try:
        for number, (name, date) in enumerate(dates.items()):
            uid = generate_uid()
            made[name] = write_study(tmp_path / "src" / name, per_series=per_series, StudyInstanceUID=uid,
                                     StudyDate=date, PatientID=f"P{number}")
            archive_files(archive, *made[name])
    finally:
        archive.close()
    return made


def uid_of(files: list[Path]) -> str:
    return str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


@pytest.mark.both_databases
def test_dry_run_lists_and_deletes_nothing_then_the_run_spares_protected(tmp_path, index_database):
    settings = make_settings(tmp_path, database=index_database, retention={
        "rules": [{"older_than_days": 365, "age_of": "study_date"}]})
    config = tmp_path / "pacsd.yaml"
    made = filed_studies(tmp_path, settings, {"old": OLD, "old_kept": OLD, "old_patient_kept": OLD, "new": "20260101"})
    uids = {name: uid_of(files) for name, files in made.items()}
    assert pacsd("protect", "--study", uids["old_kept"], config=config).returncode == 0
    assert pacsd("protect", "--patient", "P2", config=config).returncode == 0  # old_patient_kept's patient
    files_before = sorted(p for p in Path(settings.storage.directory).rglob("*.dcm"))

    dry = pacsd("retention", "run", "--dry-run", "--json", config=config)
    assert dry.returncode == 0, dry.stderr
    listed = json.loads(dry.stdout)
    assert [s["study"] for s in listed["selected"]] == [uids["old"]]
    assert listed["bytes"] == sum(p.stat().st_size for p in made["old"])  # the files as sent
    assert study_uids(settings) == set(uids.values())  # the dry run deleted nothing
    assert sorted(Path(settings.storage.directory).rglob("*.dcm")) == files_before

    real = pacsd("retention", "run", config=config)
    assert real.returncode == 0, real.stderr
    assert study_uids(settings) == {uids["old_kept"], uids["old_patient_kept"], uids["new"]}
    assert len(list(Path(settings.storage.directory).rglob("*.dcm"))) == len(files_before) - len(made["old"])
    log = (Path(settings.logging.directory) / "actions.log").read_text()
    assert f'study-deleted study="{uids["old"]}"' in log and "retention rule 1" in log
    assert pacsd("check", "--grace", "0", config=config).returncode == 0


def test_retention_killed_at_random_points_leaves_no_row_without_its_file(tmp_path):
    settings = make_settings(tmp_path, retention={"rules": [{"older_than_days": 1, "age_of": "study_date"}]})
    config = tmp_path / "pacsd.yaml"
    made = filed_studies(tmp_path, settings, {f"s{n}": OLD for n in range(30)}, per_series=6)
    blobs = BlobStore(settings.storage.directory, node="test")
    engine = create_engine(database_url(settings.database.target))
    rng = random.Random(7)
    killed = 0
    try:
        for round_ in range(6):
            runner = subprocess.Popen([str(VENV_BIN / "pacsd"), "retention", "run", "--config", str(config)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if round_ % 2 == 0:  # at a random moment
                start = time.monotonic() + rng.uniform(0.6, 1.6)
                killed += kill_when(runner, lambda start=start: time.monotonic() >= start)
            else:  # the moment the first file of the first study to go is gone
                first = blobs.path_of(first_file_to_delete(engine))
                killed += kill_when(runner, lambda first=first: not first.exists())
            runner.wait(timeout=60)
            with engine.connect() as conn:
                paths = conn.execute(select(instances.c.path)).scalars().all()
                counted = conn.execute(select(func.coalesce(func.sum(studies.c.num_instances), 0))).scalar_one()
            assert [p for p in paths if not blobs.path_of(p).is_file()] == []  # no row without its file
            assert counted == len(paths)  # the study counters agree with the rows
            # a kill between a study's commit and its files' removal leaves files no row names:
            # the check indexes them again (an image is never silently lost), a later run deletes them
            assert pacsd("check", "--repair", "--grace", "0", config=config).returncode == 0
            assert pacsd("check", "--grace", "0", config=config).returncode == 0
        assert pacsd("retention", "run", config=config).returncode == 0
        assert study_uids(settings) == set()
        assert list(Path(settings.storage.directory).rglob("*.dcm")) == []
    finally:
        engine.dispose()
    assert killed >= 4 and len(made) == 30


def first_file_to_delete(engine) -> str:
    """The index path retention removes first: the first instance of the oldest arrival."""
    with engine.connect() as conn:
        study_pk = conn.execute(select(studies.c.pk).order_by(studies.c.created_at, studies.c.pk)).scalars().first()
        return conn.execute(select(instances.c.path).join(series, instances.c.series_pk == series.c.pk)
                            .where(series.c.study_pk == study_pk).order_by(instances.c.pk)).scalars().first()


def storescu(pacs, *files: Path) -> subprocess.CompletedProcess:
    return dcmtk("storescu", "-d", "-aec", pacs.aet, HOST, str(pacs.port), *map(str, files))


def refused_a700(run: subprocess.CompletedProcess) -> bool:
    """storescu -d printed the C-STORE response's status: 0xA700, Refused: Out of Resources."""
    return re.search(r"Status\s*:\s*0xa700", run.stdout + run.stderr, re.IGNORECASE) is not None


def test_quota_refuses_with_a700(pacs_factory, tmp_path):
    pacs = pacs_factory(quotas={"limits": [{"max_studies": 1, "when_full": "refuse"}]})
    first = write_study(tmp_path / "a", per_series=2, StudyInstanceUID=generate_uid())
    second = write_study(tmp_path / "b", per_series=2, StudyInstanceUID=generate_uid())
    assert storescu(pacs, *first).returncode == 0
    refused = storescu(pacs, second[0])
    assert refused_a700(refused)
    assert pacs.instance_count() == 2  # only the first study's
    more_of_first = write_study(tmp_path / "a2", per_series=1, StudyInstanceUID=uid_of(first))
    assert storescu(pacs, *more_of_first).returncode == 0  # the study already counted still grows
    assert pacs.instance_count() == 3


def test_quota_recycles_the_oldest_unprotected_study(pacs_factory, tmp_path):
    pacs = pacs_factory(quotas={"limits": [{"max_studies": 2, "when_full": "recycle"}]})
    made = [write_study(tmp_path / f"s{n}", per_series=2, StudyInstanceUID=generate_uid(), PatientID=f"P{n}")
            for n in range(5)]
    for files in made[:2]:
        assert storescu(pacs, *files).returncode == 0
    from pacsd.index.areas import set_protected

    assert set_protected(pacs.archive.engine, "study", uid_of(made[0]), True)
    assert storescu(pacs, *made[2]).returncode == 0  # the oldest unprotected (made[1]) goes
    with pacs.archive.engine.connect() as conn:
        kept = set(conn.execute(select(studies.c.study_uid)).scalars())
    assert kept == {uid_of(made[0]), uid_of(made[2])}
    assert set_protected(pacs.archive.engine, "study", uid_of(made[2]), True)
    refused = storescu(pacs, made[3][0])  # everything left is protected: nothing to recycle
    assert refused_a700(refused)
    assert pacs.instance_count() == 4


def test_administrator_protects_a_study_from_the_study_page(pacs, tmp_path):
    """The form posts with the session's CSRF token; without it the server refuses; the flag then
    keeps retention away (checked through the index's own selection)."""
    import re as regex

    import httpx

    from pacsd.index.areas import protected_flags
    from pacsd.services.users import add_user
    from pacsd.web.server import WebServer
    from tests.webui import post_login

    files = write_study(tmp_path / "s", per_series=1, StudyInstanceUID=generate_uid(), StudyDate=OLD)
    archive_files(pacs.archive, *files)
    study = uid_of(files)
    add_user(pacs.archive.engine, "boss", "a long enough password", is_admin=True)
    web = WebServer(pacs.archive, HOST, 0, pacs.server.connections)
    web.start()
    try:
        with httpx.Client(base_url=f"http://{HOST}:{web.address[1]}", timeout=30) as client:
            assert post_login(client, "boss", "a long enough password").status_code == 303
            page = client.get(f"/ui/studies/{study}")
            token = regex.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            assert 'value="study:on"' in page.text
            forged = client.post(f"/ui/studies/{study}/protect", data={"change": "study:on"})
            assert forged.status_code == 403 and protected_flags(pacs.archive.engine, study) == (False, False)
            done = client.post(f"/ui/studies/{study}/protect", data={"change": "patient:on", "csrf_token": token})
            assert done.status_code == 303 and protected_flags(pacs.archive.engine, study) == (False, True)
            assert 'value="patient:off"' in client.get(f"/ui/studies/{study}").text
    finally:
        web.stop()
    from datetime import datetime, timezone

    from pacsd.config import RetentionRule
    from pacsd.services.retention import rule_selects

    rule = RetentionRule(older_than_days=1, age_of="study_date")
    assert rule_selects(pacs.archive, rule, datetime.now(timezone.utc)) == []


@pytest.mark.parametrize("rule, kept", [
    ({"modality": "MR"}, {"ct_fast", "ct_slow"}),
    ({"area": "long_term"}, {"ct_fast"}),
    ({"account": "nobody"}, {"ct_fast", "mr_slow", "ct_slow"}),
    ({}, set()),
])
def test_rules_by_arrival_modality_area_and_account(tmp_path, rule, kept):
    """Arrival age (a run two days ahead), narrowed by modality, area or account."""
    from datetime import datetime, timedelta, timezone

    from pacsd.services.area_moves import move_study
    from pacsd.services.retention import run_retention

    storage = {"directory": str(tmp_path / "fast"),
               "areas": {"short_term": str(tmp_path / "fast"), "long_term": str(tmp_path / "slow")}}
    settings = make_settings(tmp_path, storage=storage,
                             retention={"rules": [{"older_than_days": 1, "age_of": "arrival", **rule}]})
    archive = Archive(settings)
    try:
        uids = {}
        for number, (name, modality) in enumerate((("ct_fast", "CT"), ("mr_slow", "MR"), ("ct_slow", "CT"))):
            files = write_study(tmp_path / name, per_series=1, StudyInstanceUID=generate_uid(),
                                PatientID=f"P{number}", Modality=modality)
            archive_files(archive, *files)
            uids[name] = uid_of(files)
        for name in ("mr_slow", "ct_slow"):
            move_study(archive, uids[name], "long_term")
        assert run_retention(archive, dry_run=True).selected == []  # nothing is a day old yet
        later = datetime.now(timezone.utc) + timedelta(days=2)
        run = run_retention(archive, now=later)
        assert set(run.deleted) == {uids[name] for name in uids if name not in kept}
        assert study_uids(settings) == {uids[name] for name in kept}
    finally:
        archive.close()


def test_an_area_quota_counts_only_that_area(tmp_path):
    """short_term may hold 3 KB: a study moved to long_term makes room there; the whole archive
    is not limited."""
    import shutil

    from pacsd.services.area_moves import move_study
    from pacsd.services.ingest import OUT_OF_RESOURCES, Source

    storage = {"directory": str(tmp_path / "fast"),
               "areas": {"short_term": str(tmp_path / "fast"), "long_term": str(tmp_path / "slow")}}
    archive = Archive(make_settings(tmp_path, storage=storage, quotas={
        "limits": [{"area": "short_term", "max_bytes": 3000, "when_full": "refuse"}], "refresh": 0.001}))

    def store(path: Path):
        temp = archive.blobs.new_temp_path()
        shutil.copyfile(path, temp)
        return archive.ingest.store(temp, Source("import"))

    try:
        first = write_study(tmp_path / "a", per_series=2, StudyInstanceUID=generate_uid())  # ~1.4 KB each
        assert [store(f).ok for f in first] == [True, True]
        second = write_study(tmp_path / "b", per_series=2, StudyInstanceUID=generate_uid())
        assert store(second[0]).status == OUT_OF_RESOURCES
        move_study(archive, uid_of(first), "long_term")
        assert [store(f).ok for f in second] == [True, True]
        assert len(list((tmp_path / "slow").rglob("*.dcm"))) == 2
    finally:
        archive.close()
