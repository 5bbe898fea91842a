"""The status page of a real `pacsd serve`: a live association, the connection log's tail, the
ingest count, storage per modality, recent problems; `/metrics` in Prometheus format.
"""

from __future__ import annotations

import base64
import subprocess

import httpx
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.conftest import HOST, VENV_BIN, dcmtk, wait_until
from tests.dicomgen import write_dicom
from tests.webui import PASSWORD, browser, log_in, page, post_login, screenshot  # noqa: F401


def add_user_with_cli(tmp_path, *args: str) -> None:
    subprocess.run([str(VENV_BIN / "pacsd"), "user", "add", *args, "--index-db", str(tmp_path / "index.sqlite"),
                    "--password-stdin"], input=PASSWORD + "\n", text=True, check=True, capture_output=True)


def test_status_page_and_metrics(pacs_process, tmp_path, page):
    add_user_with_cli(tmp_path, "admin", "--admin")
    add_user_with_cli(tmp_path, "smith", "--account", "Smith")
    server = pacs_process()
    base = f"http://{HOST}:{server.http_port}"
    files = [write_dicom(tmp_path / "in" / f"{n}.dcm", InstanceNumber=n, Modality="MR") for n in (1, 2)]
    sent = dcmtk("storescu", "-aet", "MODALITY", "-aec", "PACSD", HOST, str(server.port), *map(str, files))
    assert sent.returncode == 0, sent.stderr
    assert post_login(httpx.Client(base_url=base), "admin", "wrong password").status_code == 401

    ae = AE(ae_title="LIVEPEER")
    ae.add_requested_context(Verification)
    held = ae.associate(HOST, server.port, ae_title="PACSD")
    assert held.is_established
    try:
        credentials = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
        read_status = lambda: httpx.get(f"{base}/ui/status.json",  # noqa: E731
                                        headers={"Authorization": f"Basic {credentials}"}).json()
        # Receiving processes publish their live associations for the web process (at most
        # every half second): the status shows the held one once published.
        status = wait_until(lambda: (s := read_status())["associations"] and s, 10, "the live association shown")
        log_in(page, base, "admin", then="/ui/status")
        page.wait_for_function("document.querySelector('#associations').textContent.includes('LIVEPEER')")
        screenshot(page, "11-status")
    finally:
        held.release()
    assert [a["calling_aet"] for a in status["associations"]] == ["LIVEPEER"]
    assert any("calling=MODALITY" in line and "stored=2" in line for line in status["connections"])
    assert status["ingest"]["since_start"] == 2
    assert status["storage"]["by_modality"]["MR"]["instances"] == 2
    assert status["storage"]["disk_free"] > 0
    assert any("failed login" in problem["message"] for problem in status["problems"])

    physician = base64.b64encode(f"smith:{PASSWORD}".encode()).decode()
    assert httpx.get(f"{base}/ui/status.json", headers={"Authorization": f"Basic {physician}"}).status_code == 403
    metrics = httpx.get(f"{base}/metrics").text
    assert 'pacsd_instances{modality="MR"} 2.0' in metrics
    assert "pacsd_instances_stored_total 2.0" in metrics
    server.stop()


def test_status_and_studies_pages_fit_a_1400_pixel_window(pacs_process, tmp_path, browser):  # noqa: F811
    add_user_with_cli(tmp_path, "admin", "--admin")
    server = pacs_process()
    base = f"http://{HOST}:{server.http_port}"
    long_word = "1.2.826.0.1.3680043.8.498." + "1234567890" * 12  # a long UID-like word, no break in it
    post_login(httpx.Client(base_url=base), long_word, "wrong password")  # a recent problem
    ae = AE(ae_title="A-LONG-AE-TITLE1")
    ae.add_requested_context(Verification)
    held = ae.associate(HOST, server.port, ae_title="PACSD")
    assert held.is_established
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    window = context.new_page()
    try:
        log_in(window, base, "admin", then="/ui/status")
        window.wait_for_function("document.querySelector('#problems').textContent.includes('failed login')")
        window.wait_for_function("document.querySelector('#associations').textContent.includes('A-LONG-AE-TITLE1')")
        screenshot(window, "11b-status-1400")
        assert window.evaluate("document.documentElement.scrollWidth") <= 1400
        overflowing = window.evaluate("[...document.querySelectorAll('.card')].filter("
                                      "card => card.scrollWidth > card.clientWidth).map(card => card.innerText.split('\\n')[0])")
        assert overflowing == [], f"cards wider than their box: {overflowing}"
        cells = window.evaluate("[...document.querySelectorAll('#associations td')].map(td => td.innerText)")
        assert any(f"{HOST}:" in cell and "\n" not in cell for cell in cells), cells  # the peer on one line
        window.goto(f"{base}/ui/studies")
        screenshot(window, "01b-studies-1400")
        search, clear = (window.locator(selector).bounding_box() for selector in
                         ("form.search button[type=submit]", "form.search a.button"))
        assert clear["y"] == search["y"] and clear["x"] > search["x"], (search, clear)  # Clear beside Search
    finally:
        held.release()
        context.close()
        server.stop()
