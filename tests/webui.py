"""Helpers for the web interface tests: an archive with users and studies, logged-in HTTP
clients, and headless Chromium (Debian's, driven by Playwright) with screenshots kept under
test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from pydicom.uid import generate_uid

from pacsd.services.importer import import_file
from pacsd.services.users import add_user
from tests.conftest import HOST, free_port
from tests.dicomgen import write_dicom

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "webui"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "correct horse battery"
# Physician accounts of the archive: a study is routed by its referring physician.
ACCOUNTS = {"entries": [{"name": "Smith", "physicians": ["SMITH^JOHN"]},
                        {"name": "Jones", "physicians": ["JONES^MARY"]}]}


def add_series(archive, folder: Path, count: int = 3, rows: int = 64, **attrs) -> list[Path]:
    """Import `count` CT images of one new series (attrs override any element); their paths."""
    attrs.setdefault("StudyInstanceUID", generate_uid())
    attrs.setdefault("SeriesInstanceUID", generate_uid())
    paths = []
    for number in range(1, count + 1):
        path = write_dicom(folder / f"{attrs['SeriesInstanceUID']}-{number}.dcm", rows=rows, cols=rows,
                           InstanceNumber=number, RescaleSlope=1, RescaleIntercept=-1024,
                           WindowCenter=40 + 100 * number, WindowWidth=400, **attrs)
        assert import_file(archive, path).ok
        paths.append(path)
    return paths


def add_users(archive) -> None:
    add_user(archive.engine, "admin", PASSWORD, is_admin=True)
    add_user(archive.engine, "smith", PASSWORD, account="Smith")


def post_login(client, name: str, password: str, **options):
    """Log in through the form as a browser does: fetch it (its login token and cookie), post it."""
    form = client.get("/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)
    return client.post("/login", data={"username": name, "password": password, "next": "/ui/studies",
                                       "login_token": token}, **options)


def logged_in(base_url: str, name: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url)
    answer = post_login(client, name, PASSWORD)
    assert answer.status_code == 303 and "pacsd_session" in client.cookies
    return client


def csrf_of(client: httpx.Client, page: str = "/ui/studies") -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', client.get(page).text).group(1)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is missing: scripts/install-system-deps.sh test installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    yield opened
    context.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page, base_url: str, name: str, then: str = "/ui/studies") -> None:
    page.goto(f"{base_url}{then}")
    page.wait_for_url(re.compile(r"/login\?next="))
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(then) + "$"))


@pytest.fixture
def storescp(tmp_path):
    """A DCMTK storescp on a free high port (it listens on every address: DCMTK 3.6.7 cannot
    bind one; the port is random and the process lives for one test)."""
    port, out = free_port(), tmp_path / "received"
    out.mkdir()
    process = subprocess.Popen(["storescp", "-aet", "STORESCP", "-od", str(out), str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 10
    while subprocess.run(["echoscu", "-aec", "STORESCP", HOST, str(port)], capture_output=True).returncode:
        assert time.monotonic() < deadline and process.poll() is None, "storescp did not start"
        time.sleep(0.1)
    yield port, out
    process.terminate()
    process.wait(timeout=10)
