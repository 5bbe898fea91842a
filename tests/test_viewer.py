"""The OHIF viewer at /viewer in headless Chromium (Debian's, driven by Playwright): the study list
comes from our QIDO-RS after logging in, a study opens, its viewport shows the image, and nothing
loads off the machine.

Skipped when the viewer is not built: `make test` builds it first (`make viewer`, npm, ~50 MB)."""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import yaml
from PIL import Image

from tests.conftest import HOST, REPO
from tests.dicomweb_support import ADMIN, PASSWORD, add_admin_to, shared_files, stow

VIEWER = Path(os.environ.get("PACSD_VIEWER_DIR", REPO / "pacs-data" / "viewer"))
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts" / "viewer"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.skipif(not (VIEWER / "index.html").is_file(), reason="OHIF viewer not built: run `make viewer`"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium missing: `make test` installs it"),
]


def test_viewer_lists_opens_and_shows_the_study(server_with_all_testdata):
    from playwright.sync_api import sync_playwright

    server = server_with_all_testdata
    server.study = server.studies["ct.0.dcm"]
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    off_machine: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.route("**/*", lambda route: _local_only(route, server.base, off_machine))
        try:
            page.goto(f"{server.base}/viewer/", wait_until="domcontentloaded")
            page.wait_for_url(re.compile(r"/login\?next="))  # the viewer is for logged-in users
            page.fill("input[name=username]", ADMIN)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r"/viewer/"))
            patient_id = str(server.study.PatientID)
            page.get_by_text(patient_id).first.wait_for(timeout=60_000)
            page.screenshot(path=ARTIFACTS / "1-study-list.png")
            page.get_by_text(patient_id).first.click()
            page.get_by_role("button", name="Basic Viewer").first.click(timeout=30_000)
            canvas = page.locator(".cornerstone-canvas").first
            canvas.wait_for(timeout=60_000)
            pixels = _wait_for_an_image(page, canvas)
            page.screenshot(path=ARTIFACTS / "2-viewer.png")
        except Exception:
            page.screenshot(path=ARTIFACTS / "failure.png")
            raise
        finally:
            browser.close()
    assert pixels.std() > 5, "the viewport stayed uniform: no image drawn"
    assert off_machine == [], f"the viewer tried to load from elsewhere: {off_machine}"


# (what it shows, the test file): each study is opened by following the study page's OHIF link
OPENED_FROM_THE_STUDY_PAGE = [
    ("ct", "ct.0.dcm"),
    ("compressed", "TOSHIBA_J2K_SIZ1_PixRep0.dcm"),  # JPEG 2000 lossless
    ("multi-frame", "00191113.dcm"),  # XA, 4 frames, JPEG lossless
]


@pytest.fixture(scope="module")
def server_with_all_testdata(tmp_path_factory):
    """A `pacsd serve` with every shared test file it accepts, a study without Modality among them
    (one such study once broke OHIF's whole study list)."""
    from tests.conftest import PacsProcess

    tmp_path = tmp_path_factory.mktemp("viewer-all")
    config = tmp_path / "viewer.yaml"
    config.write_text(yaml.safe_dump({"http": {"viewer_dir": str(VIEWER)}}))
    server = PacsProcess(tmp_path, "--config", str(config)).start()
    server.base = f"http://{HOST}:{server.http_port}"
    add_admin_to(server)
    files = shared_files()
    without_modality = 0
    for path in files:
        if stow(server.base, [("application/dicom", path.read_bytes())]).status_code == 200:
            without_modality += "Modality" not in pydicom.dcmread(path, stop_before_pixels=True)
    assert without_modality, "the test data should hold a study without Modality"
    server.studies = {name: pydicom.dcmread(next(p for p in files if p.name == name), stop_before_pixels=True)
                      for _, name in OPENED_FROM_THE_STUDY_PAGE}
    yield server
    server.stop()


@pytest.mark.parametrize("what,name", OPENED_FROM_THE_STUDY_PAGE, ids=[w for w, _ in OPENED_FROM_THE_STUDY_PAGE])
def test_the_study_pages_ohif_link_shows_the_image(server_with_all_testdata, what, name):
    from playwright.sync_api import sync_playwright

    server = server_with_all_testdata
    study = server.studies[name]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    off_machine: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.route("**/*", lambda route: _local_only(route, server.base, off_machine))
        page = context.new_page()
        viewer = page
        try:
            page.goto(f"{server.base}/ui/studies/{study.StudyInstanceUID}", wait_until="domcontentloaded")
            page.wait_for_url(re.compile(r"/login\?next="))
            page.fill("input[name=username]", ADMIN)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r"/ui/studies/"))
            with context.expect_page() as opened:
                page.click("#open-ohif")
            viewer = opened.value
            viewer.wait_for_url(re.compile(r"/viewer/viewer\?StudyInstanceUIDs="))
            canvas = viewer.locator(".cornerstone-canvas").first
            canvas.wait_for(timeout=90_000)
            pixels = _wait_for_an_image(viewer, canvas, f"{what}-viewport.png")
            viewer.screenshot(path=ARTIFACTS / f"{what}-viewer.png")
        except Exception:
            viewer.screenshot(path=ARTIFACTS / f"{what}-failure.png")
            raise
        finally:
            browser.close()
    assert pixels.std() > 5, f"{what}: the viewport stayed uniform: no image drawn"
    assert off_machine == [], f"the viewer tried to load from elsewhere: {off_machine}"


def _local_only(route, base: str, off_machine: list[str]) -> None:
    url = route.request.url
    if url.startswith((base, "data:", "blob:")):
        route.continue_()
    else:
        off_machine.append(url)
        route.abort()


def _wait_for_an_image(page, canvas, name: str = "viewport.png") -> np.ndarray:
    """The viewport's pixels once they are no longer uniform (or the last look after 60 s)."""
    pixels = np.zeros(1)
    for _ in range(60):
        shot = canvas.screenshot(path=ARTIFACTS / name)
        pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), dtype=np.float64)
        if pixels.std() > 5:
            return pixels
        page.wait_for_timeout(1000)
    return pixels
