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


@pytest.fixture
def server_with_a_ct(pacs_process, tmp_path):
    config = tmp_path / "viewer.yaml"
    config.write_text(yaml.safe_dump({"http": {"viewer_dir": str(VIEWER)}}))
    server = pacs_process("--config", str(config))
    server.base = f"http://{HOST}:{server.http_port}"
    add_admin_to(server)
    ct = next(p for p in shared_files() if p.name == "ct.0.dcm")
    assert stow(server.base, [("application/dicom", ct.read_bytes())]).status_code == 200
    server.study = pydicom.dcmread(ct, stop_before_pixels=True)
    return server


def test_viewer_lists_opens_and_shows_the_study(server_with_a_ct):
    from playwright.sync_api import sync_playwright

    server = server_with_a_ct
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


def _local_only(route, base: str, off_machine: list[str]) -> None:
    url = route.request.url
    if url.startswith((base, "data:", "blob:")):
        route.continue_()
    else:
        off_machine.append(url)
        route.abort()


def _wait_for_an_image(page, canvas) -> np.ndarray:
    """The viewport's pixels once they are no longer uniform (or the last look after 60 s)."""
    pixels = np.zeros(1)
    for attempt in range(60):
        shot = canvas.screenshot(path=ARTIFACTS / "viewport.png")
        pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), dtype=np.float64)
        if pixels.std() > 5:
            return pixels
        page.wait_for_timeout(1000)
    return pixels
