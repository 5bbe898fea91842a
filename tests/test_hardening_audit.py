"""The audit trail (issue 21): who did what to which patient and study, recorded for logins
(and failed ones), searches (QIDO-RS, C-FIND), downloads (WADO-RS), views, exports, deletes,
C-GET and C-MOVE retrievals; shown to administrators at /ui/audit, to nobody else."""

from __future__ import annotations

import httpx
import pytest
from pydicom import dcmread
from sqlalchemy import select

from pacsd.index.schema import audit_events
from tests.conftest import HOST, dcmtk
from tests.qr_support import archive_files
from tests.studies import write_study
from tests.webui import PASSWORD, add_users, browser, csrf_of, log_in, logged_in, page, post_login, screenshot  # noqa: F401

pytestmark = pytest.mark.both_databases


def _events(pacs) -> list:
    with pacs.archive.engine.connect() as conn:
        return conn.execute(select(audit_events).order_by(audit_events.c.pk)).all()


def _one(pacs, action: str, actor: str):
    found = [e for e in _events(pacs) if e.action == action and e.actor == actor]
    assert found, f"no {action} event by {actor}: {[(e.action, e.actor) for e in _events(pacs)]}"
    return found[-1]


def test_web_actions_are_recorded_with_who_what_and_which_study(pacs, web, tmp_path):
    add_users(pacs.archive)
    files = write_study(tmp_path / "s", PatientID="P-AUDIT")
    archive_files(pacs.archive, *files)
    study = str(dcmread(files[0]).StudyInstanceUID)
    assert post_login(httpx.Client(base_url=web), "smith", "wrong").status_code == 401
    admin = logged_in(web, "admin")
    assert admin.get(f"/ui/studies/{study}").status_code == 200
    assert admin.get(f"/ui/studies/{study}/download.zip").status_code == 200
    basic = httpx.Client(base_url=web, auth=("admin", PASSWORD))
    assert basic.get("/dicom-web/studies", params={"PatientID": "P-AUDIT"}).status_code == 200
    assert basic.get(f"/dicom-web/studies/{study}", headers={"Accept": "multipart/related; type=application/dicom"}).status_code == 200
    assert admin.post(f"/ui/studies/{study}/delete", data={"confirm": "delete", "csrf_token": csrf_of(admin)},
                      follow_redirects=False).status_code == 303
    failed = _one(pacs, "login-failed", "smith")
    assert failed.outcome == "failure" and failed.address == "127.0.0.1"
    assert _one(pacs, "logged-in", "admin").outcome == "success"
    for action in ("viewed", "exported", "downloaded", "deleted"):
        event = _one(pacs, action, "admin")
        assert event.study_uid == study and event.actor_kind == "user", action
    assert _one(pacs, "viewed", "admin").patient_id == "P-AUDIT"
    assert "PatientID=P-AUDIT" in _one(pacs, "searched", "admin").detail


def test_dicom_searches_and_retrievals_are_recorded_with_the_calling_ae(pacs, tmp_path):
    files = write_study(tmp_path / "s")
    archive_files(pacs.archive, *files)
    study = str(dcmread(files[0]).StudyInstanceUID)
    dcmtk("findscu", "-S", "-aet", "SNOOPER", "-aec", pacs.aet, "-k", "QueryRetrieveLevel=STUDY",
          "-k", f"StudyInstanceUID={study}", HOST, str(pacs.port))
    out = tmp_path / "got"
    out.mkdir()
    dcmtk("getscu", "-S", "-aet", "GETTER", "-aec", pacs.aet, "-od", str(out), HOST, str(pacs.port),
          "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}")
    searched = _one(pacs, "searched", "SNOOPER")
    assert searched.actor_kind == "ae" and searched.address == HOST and searched.study_uid == study
    retrieved = _one(pacs, "retrieved", "GETTER")
    assert retrieved.study_uid == study and "2 instance" in retrieved.detail


def test_the_audit_page_is_for_administrators_only(pacs, web, tmp_path):
    add_users(pacs.archive)
    assert post_login(httpx.Client(base_url=web), "nobody", "wrong").status_code == 401
    page = logged_in(web, "admin").get("/ui/audit", params={"action": "login-failed"})
    assert page.status_code == 200 and "nobody" in page.text and "login-failed" in page.text
    assert logged_in(web, "smith").get("/ui/audit").status_code == 403
    assert httpx.get(f"{web}/ui/audit").status_code in (303, 401)


def test_the_audit_page_in_a_browser(pacs, web, tmp_path, page):
    add_users(pacs.archive)
    files = write_study(tmp_path / "s", PatientID="P-SHOWN")
    archive_files(pacs.archive, *files)
    study = str(dcmread(files[0]).StudyInstanceUID)
    log_in(page, web, "admin")
    page.goto(f"{web}/ui/studies/{study}")
    page.goto(f"{web}/ui/audit")
    rows = page.locator("#audit-events tbody tr")
    assert rows.count() >= 2
    assert "viewed" in rows.nth(0).inner_text() and "P-SHOWN" in rows.nth(0).inner_text()
    screenshot(page, "audit-trail")
