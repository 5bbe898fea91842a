"""The web interface in headless Chromium: log in, search, open a patient, a study and its viewer
(image drawn; window/level drag, presets, invert, zoom, pan, reset, arrow keys and the frames of
a multi-frame image change it as they should), upload through STOW-RS and find it, download the
ZIP and read its DICOMDIR, delete after confirmation, send a series to a DCMTK storescp, hostile
patient names shown as text.  Every page is kept as a screenshot under test-artifacts/webui.
"""

from __future__ import annotations

import io
import re
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageChops, ImageStat
from pydicom import dcmread

from pacsd.services.importer import import_file
from tests.conftest import HOST
from tests.dicomgen import make_dataset, write_dicom
from tests.dicomgen import readable_name as readable
from tests.webui import ACCOUNTS, add_series, add_users, browser, log_in, page, screenshot, storescp  # noqa: F401


@pytest.fixture
def site(pacs_factory, request):
    """A running archive with accounts routing, two users, a web server; returns (pacs, base URL)."""
    from pacsd.web.server import WebServer

    extra = getattr(request, "param", {})
    pacs = pacs_factory(storage={"naming": "accounts"}, accounts=ACCOUNTS, **extra)
    add_users(pacs.archive)
    server = WebServer(pacs.archive, HOST, 0, pacs.server.connections)
    server.start()
    yield pacs, f"http://{HOST}:{server.address[1]}"
    server.stop()


def canvas_image(page) -> Image.Image:
    return Image.open(io.BytesIO(page.locator("#canvas").screenshot())).convert("L")


def wait_drawn(page) -> Image.Image:
    """The viewport once an image is drawn on it (not one uniform colour)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        image = canvas_image(page)
        if ImageStat.Stat(image).stddev[0] > 5:
            return image
        page.wait_for_timeout(100)
    raise AssertionError("the viewer drew no image")


def wait_canvas(page, condition, what: str) -> Image.Image:
    """The viewport once `condition(image)` holds (images load and draw asynchronously)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        image = canvas_image(page)
        if condition(image):
            return image
        page.wait_for_timeout(100)
    raise AssertionError(f"the viewport never {what}")


def differs(a: Image.Image, b: Image.Image) -> bool:
    return ImageChops.difference(a, b).getbbox() is not None


def image_area(image: Image.Image, margin: int = 4) -> Image.Image:
    """The part of the viewport a square image fills when fitted (unzoomed, unpanned)."""
    side = min(image.size)
    x, y = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((x + margin, y + margin, x + side - margin, y + side - margin))


def drag(page, dx: float, dy: float) -> None:
    box = page.locator("#canvas").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y + dy, steps=6)
    page.mouse.up()


def test_log_in_search_open_study_and_view(site, page, tmp_path):
    pacs, base = site
    add_series(pacs.archive, tmp_path, PatientName="DOE^JANE", PatientID="P-1", StudyDescription="Chest CT",
               ReferringPhysicianName="SMITH^JOHN")
    add_series(pacs.archive, tmp_path, count=1, PatientName="ROE^RICHARD", PatientID="P-2",
               ReferringPhysicianName="JONES^MARY")

    page.goto(f"{base}/ui/studies")
    page.wait_for_selector("input[name=password]")
    screenshot(page, "00-login")
    log_in(page, base, "admin")
    screenshot(page, "01-studies")
    assert page.locator("#studies tbody tr").count() == 2

    page.fill("input[name=patient_name]", "do*")
    page.click("form.search button[type=submit]")
    page.wait_for_url(re.compile(r"patient_name=do"))
    rows = page.locator("#studies tbody tr")
    assert rows.count() == 1 and "DOE, JANE" in rows.inner_text()
    screenshot(page, "02-search")

    page.click("a.study-link")
    page.wait_for_selector(".series-card img")
    assert "Chest CT" in page.inner_text("h1")
    page.wait_for_function("document.querySelector('.series-card img').naturalWidth > 0")
    screenshot(page, "03-study")
    study_url = page.url
    page.click("a[href='/ui/patient?id=P-1']")
    page.wait_for_url(re.compile(r"/ui/patient\?id=P-1$"))
    assert "DOE, JANE" in page.inner_text("h1") and "Chest CT" in page.inner_text("table.list")
    screenshot(page, "03-patient")
    page.goto(study_url)

    page.click(".series-card")
    page.wait_for_url(re.compile(r"/ui/viewer/"))
    before = wait_drawn(page)
    assert "Image 1 / 3" in page.inner_text("#overlay")
    screenshot(page, "04-viewer")

    box = page.locator("#canvas").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 150, y + 120, steps=6)
    page.mouse.up()
    page.wait_for_function("!document.querySelector('#overlay').textContent.includes('W 400 L 140')")
    page.wait_for_timeout(300)
    after = canvas_image(page)
    assert ImageChops.difference(before, after).getbbox() is not None, "window/level drag changed nothing"
    screenshot(page, "05-viewer-window-level")

    page.mouse.move(x, y)
    page.mouse.wheel(0, 120)
    page.wait_for_function("document.querySelector('#overlay').textContent.includes('Image 2 / 3')")
    page.click("#toggle-tags")
    page.wait_for_selector("#tag-table tbody tr")
    assert "DOE^JANE" in page.inner_text("#tag-table")
    screenshot(page, "06-viewer-tags")


def test_upload_goes_through_stow_rs_and_is_found(site, page, tmp_path):
    pacs, base = site
    upload = write_dicom(tmp_path / "upload.dcm", PatientName="UPLOADED^ONE", PatientID="UP-1")
    not_dicom = tmp_path / "notes.dcm"
    not_dicom.write_bytes(b"not a DICOM file at all")
    log_in(page, base, "admin", then="/ui/upload")
    with page.expect_request("**/dicom-web/studies") as sent:
        page.set_input_files("#file-input", str(upload))
    assert sent.value.method == "POST"
    assert sent.value.headers["content-type"].startswith('multipart/related; type="application/dicom"; boundary=')
    page.wait_for_selector("#upload-results tbody tr td.ok")
    assert f"stored ({dcmread(upload).SOPInstanceUID})" in page.inner_text("#upload-results")
    page.set_input_files("#file-input", str(not_dicom))
    page.wait_for_selector("#upload-results tbody tr td.failed")
    assert "refused: part 1 is not DICOM" in page.inner_text("#upload-results")
    screenshot(page, "07-upload")
    page.goto(f"{base}/ui/studies?patient_id=UP-1")
    assert "UPLOADED, ONE" in page.inner_text("#studies")
    assert pacs.instance_count() == 1


def test_a_physician_gets_no_upload_page(site, page, tmp_path):
    """STOW-RS stores for administrators only, so the upload page is theirs alone."""
    _, base = site
    log_in(page, base, "smith")
    assert page.locator("nav a[href='/ui/upload']").count() == 0
    assert page.goto(f"{base}/ui/upload").status == 403


def test_viewer_presets_invert_zoom_pan_reset_and_arrow_keys(site, page, tmp_path):
    pacs, base = site
    [first, *_] = add_series(pacs.archive, tmp_path, count=3, PatientName="VIEW^ME")
    log_in(page, base, "admin", then=f"/ui/viewer/{dcmread(first).SeriesInstanceUID}")
    initial = wait_drawn(page)
    assert "W 400 L 140" in page.inner_text("#overlay")

    page.select_option("#preset", "CT lung")
    page.wait_for_function("document.querySelector('#overlay').textContent.includes('W 1500 L -600')")
    lung = wait_canvas(page, lambda image: differs(image, initial), "changed with the CT lung preset")
    screenshot(page, "14-viewer-preset-lung")
    page.select_option("#preset", "CT bone")
    page.wait_for_function("document.querySelector('#overlay').textContent.includes('W 1500 L 300')")
    wait_canvas(page, lambda image: differs(image, lung), "changed from the lung to the bone preset")

    before_invert = canvas_image(page)
    page.click("#invert")
    inverted = wait_canvas(page, lambda image: differs(image, before_invert), "inverted")
    assert ImageStat.Stat(image_area(before_invert)).stddev[0] > 20  # grey levels, not one colour
    expected = ImageChops.invert(image_area(before_invert))
    assert ImageStat.Stat(ImageChops.difference(image_area(inverted), expected)).mean[0] < 2, "not 255 - v"
    screenshot(page, "15-viewer-invert")

    page.select_option("#tool", "zoom")
    drag(page, 0, -150)  # upwards: zoom in
    page.wait_for_function("document.querySelector('#overlay').textContent.includes('×')")
    zoomed = wait_canvas(page, lambda image: differs(image, inverted), "zoomed")
    screenshot(page, "16-viewer-zoom")
    page.select_option("#tool", "pan")
    drag(page, 180, 90)
    wait_canvas(page, lambda image: differs(image, zoomed), "panned")
    screenshot(page, "17-viewer-pan")

    page.click("#reset")
    page.wait_for_function("document.querySelector('#overlay').textContent.includes('W 400 L 140')")
    wait_canvas(page, lambda image: not differs(image, initial), "came back to the first view on reset")
    assert "×" not in page.inner_text("#overlay")
    screenshot(page, "18-viewer-reset")

    page.locator("#canvas").focus()
    page.keyboard.press("ArrowDown")
    page.wait_for_function("document.querySelector('#overlay').textContent.includes('Image 2 / 3')")
    second = wait_canvas(page, lambda image: differs(image, initial), "showed the second image")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("document.querySelector('#overlay').textContent.includes('Image 3 / 3')")
    wait_canvas(page, lambda image: differs(image, second), "showed the third image")
    screenshot(page, "19-viewer-arrow-keys")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("document.querySelector('#overlay').textContent.includes('Image 1 / 3')")
    wait_canvas(page, lambda image: not differs(image, initial), "came back to the first image")


def multi_frame_file(path, frames: int = 4):
    """One CT object of `frames` frames, each a gradient of another direction and slope."""
    rows = cols = 64
    y, x = np.mgrid[0:rows, 0:cols]
    patterns = [(x * 64), (y * 64), ((x + y) * 32), ((cols - 1 - x) * 64)][:frames]
    pixels = np.stack([p.astype(np.uint16) % 4096 for p in patterns])
    ds = make_dataset(rows=rows, cols=cols, NumberOfFrames=frames, WindowCenter=2048, WindowWidth=4096,
                      PatientName="MULTI^FRAME", SeriesDescription="multi-frame")
    ds.PixelData = pixels.tobytes()
    return write_dicom(path, ds)


def test_every_frame_of_a_multi_frame_image_is_reachable(site, page, tmp_path):
    pacs, base = site
    path = multi_frame_file(tmp_path / "multi.dcm")
    assert import_file(pacs.archive, path).ok
    log_in(page, base, "admin", then=f"/ui/viewer/{dcmread(path).SeriesInstanceUID}")
    seen = [wait_drawn(page)]
    assert "Image 1 / 4" in page.inner_text("#overlay") and "frame 1/4" in page.inner_text("#overlay")
    page.locator("#canvas").focus()
    for number in (2, 3, 4):
        page.keyboard.press("ArrowDown")
        page.wait_for_function(f"document.querySelector('#overlay').textContent.includes('frame {number}/4')")
        seen.append(wait_canvas(page, lambda image: differs(image, seen[-1]), f"showed frame {number}"))
    screenshot(page, "20-viewer-multi-frame-last")
    assert all(differs(a, b) for i, a in enumerate(seen) for b in seen[i + 1:]), "two frames look the same"
    page.keyboard.press("Home")
    page.wait_for_function("document.querySelector('#overlay').textContent.includes('frame 1/4')")
    wait_canvas(page, lambda image: not differs(image, seen[0]), "came back to frame 1 on Home")
    page.mouse.move(640, 400)
    page.mouse.wheel(0, 120)
    page.wait_for_function("document.querySelector('#overlay').textContent.includes('frame 2/4')")


def test_delete_confirmation_page(site, page, tmp_path):
    pacs, base = site
    [path] = add_series(pacs.archive, tmp_path, count=1, PatientName="DELETE^ME", StudyDescription="to delete")
    study_uid = dcmread(path).StudyInstanceUID
    log_in(page, base, "admin", then=f"/ui/studies/{study_uid}")
    page.click("a.button.danger")
    page.wait_for_url(re.compile(r"/delete$"))
    assert "DELETE, ME" in page.inner_text("form.card") and "1 images" in page.inner_text("form.card")
    screenshot(page, "21-delete-confirm")
    page.fill("input[name=confirm]", "delete")
    page.click("button.danger")
    page.wait_for_url(re.compile(r"/ui/studies$"))
    assert "DELETE, ME" not in page.inner_text("#studies")
    assert pacs.instance_count() == 0


def _downloaded_zip(site, page, tmp_path, link: str, **attrs) -> tuple[list[Path], Path]:
    """An administrator downloads a new two-image study's ZIP by `link`: the sent files, the unzipped folder."""
    pacs, base = site
    sent = add_series(pacs.archive, tmp_path, count=2, ReferringPhysicianName="SMITH^JOHN", **attrs)
    log_in(page, base, "admin")
    page.click("a.study-link")
    with page.expect_download() as download:
        page.click(link)
    target = tmp_path / "study.zip"
    download.value.save_as(target)
    out = tmp_path / "unzipped"
    zipfile.ZipFile(target).extractall(out)
    return sent, out


def test_download_zip_holds_a_dicomdir(site, page, tmp_path):
    sent, out = _downloaded_zip(site, page, tmp_path, "#download-zip", PatientName="ZIP^ME")
    dicomdir = dcmread(next(out.rglob("DICOMDIR")))
    images = [r for r in dicomdir.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    assert sorted(r.ReferencedSOPInstanceUIDInFile for r in images) == sorted(
        dcmread(p).SOPInstanceUID for p in sent)


def test_send_a_series_to_storescp(pacs_factory, storescp, page, tmp_path):
    from pacsd.web.server import WebServer
    from tests.webui import add_users as make_users

    port, received = storescp
    pacs = pacs_factory(known_aes=[{"ae_title": "STORESCP", "host": HOST, "port": port}])
    make_users(pacs.archive)
    wanted = add_series(pacs.archive, tmp_path, count=3, PatientName="SEND^ME", SeriesDescription="to send")
    study_uid = dcmread(wanted[0]).StudyInstanceUID
    add_series(pacs.archive, tmp_path, count=2, StudyInstanceUID=study_uid, SeriesDescription="to keep")
    server = WebServer(pacs.archive, HOST, 0, pacs.server.connections)
    server.start()
    try:
        base = f"http://{HOST}:{server.address[1]}"
        log_in(page, base, "admin")
        page.click("a.study-link")
        series_uid = dcmread(wanted[0]).SeriesInstanceUID
        page.select_option("select[name=series_uid]", series_uid)
        screenshot(page, "08-send-form")
        page.click(".send-form button[type=submit]")
        page.wait_for_url(re.compile(r"/ui/jobs/\d+$"))
        # titled by what people know the study as, not a bare UID
        assert page.inner_text("#job h1").startswith(f"Send series 1 (to send) of the CT study of {readable('SEND^ME')}")
        page.wait_for_selector("#job-state.ok")
        assert "3 sent, 0 failed" in page.inner_text("#job-state")
        screenshot(page, "09-send-job")
        page.evaluate("document.querySelector('#job-progress').value = 0")  # the empty track must show
        track = Image.open(io.BytesIO(page.locator("#job-progress").screenshot())).convert("L")
        assert track.getextrema()[0] < 240, "the progress bar has no visible track"
    finally:
        server.stop()
    arrived = sorted(dcmread(p).SOPInstanceUID for p in received.iterdir())
    assert arrived == sorted(dcmread(p).SOPInstanceUID for p in wanted)


def test_hostile_patient_name_is_shown_as_text(site, page, tmp_path):
    pacs, base = site
    hostile = "<script>alert(1)</script>"
    add_series(pacs.archive, tmp_path, count=1, PatientName=hostile, StudyDescription='"><img src=x onerror=alert(2)>')
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    log_in(page, base, "admin")
    assert hostile in page.inner_text("#studies")
    page.click("a.study-link")
    page.wait_for_selector(".series-card")
    assert hostile in page.inner_text("h1")
    page.click(".series-card")
    wait_drawn(page)
    page.click("#toggle-tags")
    page.wait_for_selector("#tag-table tbody tr")
    assert hostile in page.inner_text("#tag-table")
    screenshot(page, "10-hostile-name")
    assert dialogs == []


def test_download_a_deidentified_zip(site, page, tmp_path):
    sent, out = _downloaded_zip(site, page, tmp_path, "#download-zip-deidentified", PatientName="ZIP^SECRET",
                                PatientID="ZIP-SECRET-ID")
    images = [dcmread(p) for p in out.rglob("*") if p.is_file() and p.name != "DICOMDIR"]
    originals = {str(dcmread(p).SOPInstanceUID) for p in sent}
    assert len(images) == 2
    for ds in images:
        assert ds.PatientIdentityRemoved == "YES"
        assert "SECRET" not in str(ds.PatientName) + str(ds.PatientID) and "SMITH" not in str(ds.ReferringPhysicianName)
        assert str(ds.SOPInstanceUID) not in originals


def _correction_form(site, page, tmp_path, count: int, **attrs):
    """An administrator on the correction page of a new study; the running pacs."""
    pacs, base = site
    add_series(pacs.archive, tmp_path, count=count, ReferringPhysicianName="SMITH^JOHN", **attrs)
    log_in(page, base, "admin")
    page.click("a.study-link")
    page.click("#correct-study")
    return pacs


def test_an_administrator_corrects_a_patient_name_after_a_confirmation(site, page, tmp_path):
    pacs = _correction_form(site, page, tmp_path, 2, PatientName="WRONG^NAME", PatientID="CORR-1")
    page.fill("#correct-patient input[name=set_PatientName]", "RIGHT^NAME")
    page.click("#correct-patient button[type=submit]")
    confirm = page.inner_text("#confirm-correction")
    screenshot(page, "30-correction-confirm")
    assert "WRONG^NAME" in confirm and "RIGHT^NAME" in confirm and "2 instance(s)" in confirm
    page.click("#confirm-correction button.danger")
    page.wait_for_url(re.compile(r"/ui/studies/[0-9.]+$"))
    assert "Right" in page.inner_text("body") or "RIGHT" in page.inner_text("body")
    with pacs.archive.engine.connect() as conn:
        from sqlalchemy import select

        from pacsd.index.schema import patients
        assert conn.execute(select(patients.c.patient_name)).scalars().all() == ["RIGHT^NAME"]


def test_a_correction_with_a_bad_value_shows_why_and_changes_nothing(site, page, tmp_path):
    _correction_form(site, page, tmp_path, 1, PatientName="KEEP^ME", PatientID="CORR-2")
    page.fill("#correct-patient input[name=set_PatientBirthDate]", "<script>alert(1)</script>")
    page.click("#correct-patient button[type=submit]")
    assert "cannot be made" in page.inner_text("#confirm-correction")
    assert "PatientBirthDate" in page.inner_text(".error")
    assert page.locator("#confirm-correction button.danger").count() == 0
