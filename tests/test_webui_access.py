"""Who sees what over HTTP: a physician user sees only their account's studies (pages, images,
tags, ZIP, scan sheets), unauthenticated requests are refused, CSRF tokens are required on
state-changing requests, admins delete studies (files and rows together), login can be off.
"""

from __future__ import annotations

import base64
import subprocess

import httpx
import pytest
from pydicom import dcmread
from sqlalchemy import select

from pacsd.index.schema import patients, series, studies
from tests.conftest import HOST, VENV_BIN
from tests.webui import ACCOUNTS, PASSWORD, add_series, add_users, csrf_of, logged_in, post_login


@pytest.fixture
def two_accounts(pacs_factory, tmp_path):
    """Archive with a Smith study and a Jones study (scan sheets written), users admin and smith;
    yields (pacs, url, uids)."""
    from pacsd.web.server import WebServer

    pacs = pacs_factory(storage={"naming": "accounts"}, accounts=ACCOUNTS)
    add_users(pacs.archive)
    mine = add_series(pacs.archive, tmp_path, count=2, PatientID="MINE", ReferringPhysicianName="SMITH^JOHN")
    theirs = add_series(pacs.archive, tmp_path, count=2, PatientID="THEIRS", ReferringPhysicianName="JONES^MARY")
    for study in (mine, theirs):  # as at the end of the study, without waiting for it
        assert pacs.archive.scan_sheets.write(str(dcmread(study[0]).StudyInstanceUID)) is not None
    server = WebServer(pacs.archive, HOST, 0, pacs.server.connections)
    server.start()
    yield pacs, f"http://{HOST}:{server.address[1]}", {"mine": dcmread(mine[0]), "theirs": dcmread(theirs[0])}
    server.stop()


def study_urls(ds) -> list[str]:
    return [f"/ui/studies/{ds.StudyInstanceUID}", f"/ui/studies/{ds.StudyInstanceUID}/download.zip",
            f"/ui/viewer/{ds.SeriesInstanceUID}", f"/ui/series/{ds.SeriesInstanceUID}/thumbnail.png",
            f"/ui/instances/{ds.SOPInstanceUID}/frames/0.png", f"/ui/instances/{ds.SOPInstanceUID}/tags.json",
            f"/ui/patient?id={ds.PatientID}", f"/ui/studies/{ds.StudyInstanceUID}/scan-sheet.pdf",
            f"/ui/studies/{ds.StudyInstanceUID}/scan-sheet.csv"]


def test_physician_sees_only_their_account(two_accounts):
    _, base, uids = two_accounts
    smith = logged_in(base, "smith")
    listing = smith.get("/ui/studies").text
    assert "MINE" in listing and "THEIRS" not in listing
    searched = smith.get("/ui/studies?patient_id=THEIRS&account=Jones").text
    assert "No study matches" in searched and "/ui/patient?id=THEIRS" not in searched
    for url in study_urls(uids["mine"]):
        assert smith.get(url).status_code == 200, url
    for url in study_urls(uids["theirs"]):
        assert smith.get(url).status_code == 404, url
    admin = logged_in(base, "admin")
    for url in study_urls(uids["theirs"]):
        assert admin.get(url).status_code == 200, url


def test_without_login_nothing_is_shown(two_accounts):
    _, base, uids = two_accounts
    anonymous = httpx.Client(base_url=base)
    for url in study_urls(uids["mine"]):
        assert anonymous.get(url).status_code == 401, url
    page = anonymous.get("/ui/studies", headers={"accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/ui/studies"
    wrong = post_login(anonymous, "smith", "not the password")
    assert wrong.status_code == 401 and "pacsd_session" not in anonymous.cookies
    forged = httpx.Client(base_url=base, cookies={"pacsd_session": "eyJ4Ijoi.bm90LXNpZ25lZA"})
    assert forged.get(study_urls(uids["mine"])[0]).status_code == 401


def test_api_clients_may_use_basic_credentials(two_accounts):
    _, base, uids = two_accounts
    token = base64.b64encode(f"smith:{PASSWORD}".encode()).decode()
    client = httpx.Client(base_url=base, headers={"Authorization": f"Basic {token}"})
    assert client.get(study_urls(uids["mine"])[4]).status_code == 200
    assert client.get(study_urls(uids["theirs"])[4]).status_code == 404
    wrong = base64.b64encode(b"smith:nope-nope-nope").decode()
    assert httpx.get(f"{base}{study_urls(uids['mine'])[4]}", headers={"Authorization": f"Basic {wrong}"}).status_code == 401


def test_post_without_csrf_token_is_refused(two_accounts):
    pacs, base, uids = two_accounts
    admin = logged_in(base, "admin")
    study_uid = uids["theirs"].StudyInstanceUID
    refused = admin.post(f"/ui/studies/{study_uid}/delete", data={"confirm": "delete"})
    assert refused.status_code == 403
    wrong = admin.post(f"/ui/studies/{study_uid}/delete", data={"confirm": "delete", "csrf_token": "guess"})
    assert wrong.status_code == 403
    stow = {"content": b"--x\r\nContent-Type: application/dicom\r\n\r\nnot dicom\r\n--x--\r\n",
            "headers": {"Content-Type": 'multipart/related; type="application/dicom"; boundary=x'}}
    upload = admin.post("/dicom-web/studies", **stow)  # what the upload page does, without its token
    assert upload.status_code == 403 and "CSRF" in upload.json()["error"]
    with_token = admin.post("/dicom-web/studies", content=stow["content"],
                            headers={**stow["headers"], "X-CSRF-Token": csrf_of(admin)})
    assert with_token.status_code == 409  # let through, and the part refused as not DICOM
    cross_site = httpx.post(f"{base}/dicom-web/studies", content=stow["content"],
                            headers={**stow["headers"], "Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 403
    with pacs.archive.engine.connect() as conn:
        assert conn.execute(select(studies.c.pk).where(studies.c.study_uid == study_uid)).first() is not None


def test_admin_deletes_a_study_files_and_rows(two_accounts):
    pacs, base, uids = two_accounts
    theirs = uids["theirs"]
    files_before = pacs.stored_files()
    smith = logged_in(base, "smith")
    mine_uid = uids["mine"].StudyInstanceUID
    assert smith.post(f"/ui/studies/{mine_uid}/delete",
                      data={"confirm": "delete", "csrf_token": csrf_of(smith)}).status_code == 403
    admin = logged_in(base, "admin")
    token = csrf_of(admin)
    assert admin.get(f"/ui/studies/{theirs.StudyInstanceUID}/delete").status_code == 200
    unconfirmed = admin.post(f"/ui/studies/{theirs.StudyInstanceUID}/delete", data={"csrf_token": token})
    assert unconfirmed.status_code == 400
    done = admin.post(f"/ui/studies/{theirs.StudyInstanceUID}/delete", data={"confirm": "delete", "csrf_token": token})
    assert done.status_code == 303
    assert admin.get(f"/ui/studies/{theirs.StudyInstanceUID}").status_code == 404
    assert pacs.instance_count() == 2
    assert len(pacs.stored_files()) == len(files_before) - 4  # two images, the scan sheet's PDF and CSV
    assert not any("JONES" in str(path).upper() for path in pacs.stored_files())
    with pacs.archive.engine.connect() as conn:
        assert conn.execute(select(patients.c.patient_id)).scalars().all() == ["MINE"]
        assert conn.execute(select(series.c.pk)).scalars().all() != []
    assert "study-deleted" in (pacs.storage.parent / "logs" / "actions.log").read_text()


def test_changing_the_password_ends_open_sessions(two_accounts):
    pacs, base, _ = two_accounts
    from pacsd.services.users import set_password

    smith = logged_in(base, "smith")
    assert smith.get("/ui/studies").status_code == 200
    set_password(pacs.archive.engine, "smith", "another long password")
    assert smith.get("/ui/studies").status_code == 401


def test_login_off_is_said_at_start_up_and_everyone_is_admin(pacs_process, tmp_path):
    config = tmp_path / "login-off.yaml"
    config.write_text("web:\n  login: false\n")
    server = pacs_process("--config", str(config))
    base = f"http://{HOST}:{server.http_port}"
    page = httpx.get(f"{base}/ui/studies")
    assert page.status_code == 200 and "local (admin)" in page.text
    assert httpx.get(f"{base}/login", follow_redirects=False).status_code == 303
    assert "web login is turned off" in server.stop()


def test_no_user_yet_is_said_at_start_up_and_on_the_login_page(pacs_process, tmp_path):
    server = pacs_process()
    base = f"http://{HOST}:{server.http_port}"
    hint = "pacsd user add admin --admin"
    page = httpx.get(f"{base}/login")
    assert page.status_code == 200 and 'id="no-user"' in page.text and hint in page.text
    where = (["--database-url", str(server.database_target)] if isinstance(server.database_target, str)
             else ["--index-db", str(server.database_target)])
    added = subprocess.run([str(VENV_BIN / "pacsd"), "user", "add", "admin", "--admin", "--password-stdin", *where],
                           input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    assert 'id="no-user"' not in httpx.get(f"{base}/login").text
    output = server.stop()
    assert f"the web interface has no user yet: create one with `{hint} {where[0]}" in output
