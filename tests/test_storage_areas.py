"""Storage areas: studies moved to a long-term area are retrieved unchanged over C-GET, C-MOVE and
WADO-RS; moves killed (SIGKILL) at random points leave every instance indexed with its file, and
`pacsd check` clean after its repair; the settings refuse areas that overlap."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import create_engine, select

from pacsd.area_paths import split_area_path
from pacsd.errors import ConfigError
from pacsd.index.engine import database_url
from pacsd.index.schema import instances
from pacsd.services.archive import Archive
from pacsd.services.area_moves import run_moves
from pacsd.storage.blobstore import BlobStore
from tests.conftest import HOST, VENV_BIN, dcmtk, make_settings
from tests.dicomweb_support import ADMIN, PASSWORD
from tests.qr_support import archive_files, with_pacsd_and_storescp
from tests.studies import write_study
from tests.test_retrieve_dcmtk import final_counts, movescu, received_by_uid


def two_areas(tmp_path: Path) -> dict:
    return {"directory": str(tmp_path / "fast"), "areas": {"short_term": str(tmp_path / "fast"), "long_term": str(tmp_path / "slow")},
            "move_rules": [{"to_area": "long_term", "not_accessed_days": 0}]}


def indexed(settings) -> dict[str, str]:
    """SOP Instance UID -> index path, read with a connection of our own."""
    engine = create_engine(database_url(settings.database.target))
    try:
        with engine.connect() as conn:
            return dict(conn.execute(select(instances.c.sop_uid, instances.c.path)).all())
    finally:
        engine.dispose()


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*.dcm") if ".incoming" not in p.parts}


@pytest.mark.both_databases
def test_moved_study_is_retrieved_unchanged_over_cget_and_wado(pacs_factory, tmp_path):
    pacs = pacs_factory(storage=two_areas(tmp_path))
    study = generate_uid()
    files = write_study(tmp_path / "src", series=2, per_series=2, StudyInstanceUID=study)
    archive_files(pacs.archive, *files)
    run = run_moves(pacs.archive)
    assert [m.instances for m in run.moved] == [4]
    assert files_in(tmp_path / "fast") == set() and len(files_in(tmp_path / "slow")) == 4
    assert run_moves(pacs.archive, dry_run=True).planned == []  # nothing left to move
    originals = {str(dcmread(f).SOPInstanceUID): f.read_bytes() for f in files}
    out = tmp_path / "got"
    out.mkdir()
    got = dcmtk("getscu", "-v", "-S", "-aet", "GETTER", "-aec", pacs.aet, "-od", str(out), HOST, str(pacs.port),
                "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}")
    assert got.returncode == 0 and final_counts(got.stderr)["completed"] == 4, got.stderr[-2000:]
    assert set(received_by_uid(out)) == set(originals)
    from pacsd.services.users import add_user
    from pacsd.web.server import WebServer

    add_user(pacs.archive.engine, ADMIN, PASSWORD, is_admin=True)
    web = WebServer(pacs.archive, HOST, 0, pacs.server.connections)
    web.start()
    try:
        for path in files[:2]:
            ds = dcmread(path)
            answer = httpx.get(f"http://{HOST}:{web.address[1]}/dicom-web/studies/{study}/series/"
                               f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}",
                               headers={"Accept": "application/dicom"}, auth=(ADMIN, PASSWORD), timeout=30)
            assert answer.status_code == 200 and answer.content == originals[str(ds.SOPInstanceUID)]
    finally:
        web.stop()


def test_moved_study_is_retrieved_over_cmove(tmp_path):
    storage = two_areas(tmp_path)
    archive = Archive(make_settings(tmp_path, storage=storage))
    study = generate_uid()
    files = write_study(tmp_path / "src", per_series=3, StudyInstanceUID=study)
    try:
        archive_files(archive, *files)
        assert len(run_moves(archive).moved) == 1
    finally:
        archive.close()
    assert files_in(tmp_path / "fast") == set()
    run, received = with_pacsd_and_storescp(tmp_path, "+B +xa", *movescu(f"StudyInstanceUID={study}"),
                                            storage=storage)
    assert run.returncode == 0, run.stderr[-2000:]
    assert final_counts(run.stderr)["completed"] == 3
    assert set(received_by_uid(received)) == {str(dcmread(f).SOPInstanceUID) for f in files}


def first_to_move(settings, blobs, target: str) -> tuple[Path, Path] | None:
    """The file a move to `target` handles first (the lowest key outside it), and its copy's
    place; None when every file is there."""
    engine = create_engine(database_url(settings.database.target))
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(instances.c.path).order_by(instances.c.pk)).scalars().all()
    finally:
        engine.dispose()
    first = next((p for p in rows if blobs.area_of(p) != target), None)
    if first is None:
        return None
    _, inside = split_area_path(first, blobs.home)
    return blobs.path_of(first), blobs.path_of(blobs.in_area(target, inside))


def kill_when(process: subprocess.Popen, condition, timeout: float = 30) -> bool:
    """SIGKILL the process as soon as `condition()` holds (polled every 0.2 ms); False when it
    ended first."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if condition():
            process.send_signal(signal.SIGKILL)
            return True
        time.sleep(0.0002)
    return False


def test_moves_killed_at_random_points_lose_nothing(tmp_path):
    """SIGKILL `pacsd areas move` back and forth between the areas at random moments, the moment
    the first copy is in place, and the moment the first old file is gone (right after a row
    switch): after each kill every instance is still indexed and its indexed file is there;
    `pacsd check --repair` clears the other copies and a second check finds the archive
    consistent."""
    settings = make_settings(tmp_path, storage=two_areas(tmp_path))
    config = tmp_path / "pacsd.yaml"
    study = generate_uid()
    files = write_study(tmp_path / "src", series=4, per_series=60, StudyInstanceUID=study)
    archive = Archive(settings)
    try:
        archive_files(archive, *files)
    finally:
        archive.close()
    expected = set(indexed(settings))
    blobs = BlobStore(settings.storage.directory, areas=settings.storage.areas, node="test")
    rng = random.Random(20)
    killed = 0
    for round_ in range(9):
        target = "long_term" if round_ % 2 == 0 else "short_term"
        if first_to_move(settings, blobs, target) is None:  # all there already: the other way
            target = "short_term" if target == "long_term" else "long_term"
        old, copy = first_to_move(settings, blobs, target)
        mover = subprocess.Popen([str(VENV_BIN / "pacsd"), "areas", "move", "--config", str(config),
                                  "--study", study, "--to", target], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        trigger = round_ % 3
        if trigger == 0:
            start = time.monotonic() + rng.uniform(0.6, 2.5)  # start-up ~0.5 s; the move a few seconds
            hit = kill_when(mover, lambda start=start: time.monotonic() >= start)
        elif trigger == 1:
            hit = kill_when(mover, copy.exists)
        else:
            hit = kill_when(mover, lambda old=old: not old.exists())
        killed += hit
        mover.wait(timeout=60)
        paths = indexed(settings)
        assert set(paths) == expected  # nothing acknowledged lost
        missing = [p for p in paths.values() if not blobs.path_of(p).is_file()]
        assert missing == [], f"round {round_} (trigger {trigger}): indexed without its file"
        repair = subprocess.run([str(VENV_BIN / "pacsd"), "check", "--config", str(config), "--repair",
                                 "--grace", "0"], capture_output=True, text=True, timeout=120)
        assert repair.returncode == 0, repair.stdout + repair.stderr
        check = subprocess.run([str(VENV_BIN / "pacsd"), "check", "--config", str(config), "--grace", "0",
                                "--checksums", "--json"], capture_output=True, text=True, timeout=120)
        assert check.returncode == 0 and '"unindexed": []' in check.stdout, check.stdout
        on_disk = files_in(tmp_path / "fast") | {f".areas/long_term/{p}" for p in files_in(tmp_path / "slow")}
        assert on_disk == set(indexed(settings).values())  # one copy each, no orphan left
    assert killed >= 6, "kills did not land during moves: the test proved little"
    stats = subprocess.run([str(VENV_BIN / "pacsd"), "stats", "--json", "--config", str(config)],
                           capture_output=True, text=True, timeout=60)
    per_area = json.loads(stats.stdout)["areas"]
    on_disk = {area: sum(p.stat().st_size for p in (tmp_path / folder).rglob("*.dcm") if ".incoming" not in p.parts)
               for area, folder in (("short_term", "fast"), ("long_term", "slow"))}
    assert per_area == on_disk
    listed = subprocess.run([str(VENV_BIN / "pacsd"), "areas", "list", "--json", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    areas = json.loads(listed.stdout)
    assert {name: area["bytes"] for name, area in areas.items()} == on_disk
    assert sum(area["instances"] for area in areas.values()) == 240 and areas["short_term"]["receives"]


def test_overlapping_areas_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="inside area"):
        make_settings(tmp_path, storage={"directory": str(tmp_path / "x"),
                                         "areas": {"a": str(tmp_path / "x"), "b": str(tmp_path / "x" / "y")}})
    with pytest.raises(ConfigError, match="no storage area"):
        make_settings(tmp_path, storage={"directory": str(tmp_path / "x"), "areas": {"a": str(tmp_path / "x")},
                                         "move_rules": [{"to_area": "b"}]})
    with pytest.raises(ConfigError, match="no storage area"):
        make_settings(tmp_path, quotas={"limits": [{"area": "nowhere", "max_bytes": 1}]})


def test_existing_config_is_one_default_area(tmp_path):
    settings = make_settings(tmp_path)
    assert settings.storage.areas == {"default": settings.storage.directory}
    assert settings.storage.home_area == "default"


def test_background_job_moves_idle_studies(pacs_factory, tmp_path):
    """The background process's job (started as `pacsd serve` starts it) applies the move rules
    every storage.move_every seconds."""
    pacs = pacs_factory(storage={**two_areas(tmp_path), "move_every": 0.5})
    files = write_study(tmp_path / "src", per_series=3, StudyInstanceUID=generate_uid())
    archive_files(pacs.archive, *files)
    pacs.archive.lifecycle.start()
    from tests.conftest import wait_until

    wait_until(lambda: len(files_in(tmp_path / "slow")) == 3 and not files_in(tmp_path / "fast"),
               timeout=60, what="the study moved to long_term")
    assert all(p.startswith(".areas/long_term/") for p in indexed(pacs.settings).values())


def test_a_full_target_area_keeps_the_study_where_it_is(tmp_path):
    storage = two_areas(tmp_path)
    archive = Archive(make_settings(tmp_path, storage=storage,
                                    quotas={"limits": [{"area": "long_term", "max_bytes": 1000}]}))
    try:
        archive_files(archive, *write_study(tmp_path / "src", per_series=3, StudyInstanceUID=generate_uid()))
        run = run_moves(archive)
        assert run.moved == [] and "quota reached: area long_term" in run.failed[0][1]
        assert len(files_in(tmp_path / "fast")) == 3 and files_in(tmp_path / "slow") == set()
    finally:
        archive.close()


def test_move_dry_run_lists_and_moves_nothing(tmp_path):
    settings = make_settings(tmp_path, storage=two_areas(tmp_path))
    study = generate_uid()
    archive = Archive(settings)
    try:
        archive_files(archive, *write_study(tmp_path / "src", per_series=2, StudyInstanceUID=study))
    finally:
        archive.close()
    before = indexed(settings)
    command = [str(VENV_BIN / "pacsd"), "areas", "move", "--config", str(tmp_path / "pacsd.yaml")]
    dry = subprocess.run([*command, "--dry-run"], capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0 and f"would move {study}" in dry.stdout and "to long_term (rule 1)" in dry.stdout
    assert indexed(settings) == before and files_in(tmp_path / "slow") == set()
    real = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert real.returncode == 0 and "moved 1" in real.stdout, real.stdout + real.stderr
    assert len(files_in(tmp_path / "slow")) == 2 and files_in(tmp_path / "fast") == set()


def test_rules_plan_only_idle_studies_not_yet_in_the_target(tmp_path):
    from datetime import datetime, timedelta, timezone

    from pacsd.index.areas import touch_studies
    from pacsd.services.area_moves import move_study, planned_moves

    storage = {**two_areas(tmp_path), "move_rules": [{"to_area": "long_term", "not_accessed_days": 1}]}
    archive = Archive(make_settings(tmp_path, storage=storage))
    try:
        uids = []
        for name in ("moved", "idle", "retrieved"):
            uids.append(generate_uid())
            archive_files(archive, *write_study(tmp_path / name, per_series=1, StudyInstanceUID=uids[-1]))
        move_study(archive, uids[0], "long_term")
        assert planned_moves(archive) == []  # none idle for a day yet
        later = datetime.now(timezone.utc) + timedelta(days=2)
        touch_studies(archive.engine, [uids[2]], now=later - timedelta(hours=1))  # retrieved an hour "ago"
        assert [plan.study.study_uid for plan in planned_moves(archive, now=later)] == [uids[1]]
    finally:
        archive.close()
