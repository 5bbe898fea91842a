"""Retrieve from a remote PACS in headless Chromium: an administrator finds a study on a second,
real pacsd with C-FIND and has it C-MOVEd to this archive (the images arrive and are indexed),
then to a DCMTK storescp (the files arrive there); an AE that does not answer is reported."""

from __future__ import annotations

import re

import pytest
from pydicom import dcmread

from tests.conftest import HOST, free_port, make_settings, start_pacs
from tests.webui import add_series, add_users, browser, log_in, page, screenshot, storescp  # noqa: F401


@pytest.fixture
def remote_and_local(pacs_factory, storescp, tmp_path):
    """(local pacs, its web URL, the remote's study files, storescp's folder): REMOTE holds one study
    and knows PACSD and STORESCP; the local archive knows REMOTE, STORESCP and an AE that is down."""
    from pacsd.web.server import WebServer

    store_port, received = storescp
    local_port = free_port()
    (tmp_path / "remote").mkdir()
    remote = start_pacs(make_settings(tmp_path / "remote", server={"ae_title": "REMOTE"}, known_aes=[
        {"ae_title": "PACSD", "host": HOST, "port": local_port},
        {"ae_title": "STORESCP", "host": HOST, "port": store_port}]))
    local = pacs_factory(server={"port": local_port}, known_aes=[
        {"ae_title": "REMOTE", "host": HOST, "port": remote.port},
        {"ae_title": "STORESCP", "host": HOST, "port": store_port},
        {"ae_title": "DOWN", "host": HOST, "port": free_port()}])
    add_users(local.archive)
    study = add_series(remote.archive, tmp_path / "remote", count=3, PatientName="FAR^AWAY", PatientID="REM-1",
                       StudyDescription="Held remotely")
    server = WebServer(local.archive, HOST, 0, local.server.connections)
    server.start()
    try:
        yield local, f"http://{HOST}:{server.address[1]}", study, received
    finally:
        server.stop()
        remote.stop()


def move_found_study(page, base: str, destination: str) -> str:
    """Find REM-1 on REMOTE, move it to `destination`; the job's final line."""
    page.goto(f"{base}/ui/remote")
    page.select_option("select[name=source]", "REMOTE")
    page.fill("input[name=patient_id]", "REM-1")
    page.click("#remote-search button[type=submit]")
    page.wait_for_selector("#remote-studies tbody tr .move-form")
    assert "FAR, AWAY" in page.inner_text("#remote-studies") and "Held remotely" in page.inner_text("#remote-studies")
    screenshot(page, f"12-remote-find-{destination.lower()}")
    page.select_option("#remote-studies .move-form select[name=destination]", destination)
    page.click("#remote-studies .move-form button[type=submit]")
    page.wait_for_url(re.compile(r"/ui/jobs/\d+$"))
    # The state is blank until the page's first poll answers: wait for a state that is not running.
    page.wait_for_function("(() => { const state = document.querySelector('#job-state').textContent;"
                           " return state !== '' && !state.includes('running'); })()")
    screenshot(page, f"13-remote-move-{destination.lower()}")
    return page.inner_text("#job-state")


def test_have_a_remote_pacs_move_a_study_here_and_elsewhere(remote_and_local, page):
    local, base, study, received = remote_and_local
    wanted = sorted(str(dcmread(p).SOPInstanceUID) for p in study)
    log_in(page, base, "admin", then="/ui/remote")
    assert local.instance_count() == 0

    assert "finished: 3 moved, 0 with warnings, 0 failed" in move_found_study(page, base, "PACSD")
    assert "3 of 3" in page.inner_text("#job-count")
    as_served = page.request.get(page.url).text()  # the page itself, before its script runs
    assert '<p id="job-state" class="big ok">finished: 3 moved, 0 with warnings, 0 failed</p>' in as_served
    assert '<p id="job-count">3 of 3 files</p>' in as_served
    assert local.instance_count() == 3
    page.goto(f"{base}/ui/studies?patient_id=REM-1")
    assert "FAR, AWAY" in page.inner_text("#studies")

    assert "finished: 3 moved" in move_found_study(page, base, "STORESCP")
    assert sorted(str(dcmread(p).SOPInstanceUID) for p in received.iterdir()) == wanted
    actions = (local.storage.parent / "logs" / "actions.log").read_text()
    assert 'move-requested study=' in actions and 'to="STORESCP" outcome="finished"' in actions


def test_a_pacs_that_does_not_answer_is_reported(remote_and_local, page):
    _, base, _, _ = remote_and_local
    log_in(page, base, "admin", then="/ui/remote")
    page.select_option("select[name=source]", "DOWN")
    page.fill("input[name=patient_id]", "REM-1")
    page.click("#remote-search button[type=submit]")
    assert "DOWN" in page.inner_text("#remote-error") and "did not answer" in page.inner_text("#remote-error")


def test_only_administrators_retrieve(remote_and_local, page):
    _, base, study, _ = remote_and_local
    log_in(page, base, "smith")
    assert page.locator("nav a[href='/ui/remote']").count() == 0
    assert page.goto(f"{base}/ui/remote?source=REMOTE&patient_id=REM-1").status == 403
