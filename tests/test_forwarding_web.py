"""The forwarding queue in the web interface (administrators): per-destination figures, failed
items with their reason, retry and cancel buttons (CSRF-protected forms), the status page and
/metrics; driven with headless Chromium."""

from __future__ import annotations

import httpx

from tests.conftest import wait_until
from tests.dicomgen import write_dicom
from tests.forwarding_support import Storescp, queue_rows, sop_uids
from tests.studies import send
from tests.webui import add_users, browser, log_in, logged_in, page, screenshot  # noqa: F401


def test_queue_page_shows_failures_and_its_buttons_work(tmp_path, pacs_factory, page):  # noqa: F811
    from pacsd.web.server import WebServer

    dest = Storescp(tmp_path / "dest", only_ct=True).start()
    pacs = pacs_factory(known_aes=[dest.known_ae()], routes=[{"name": "backup", "to": ["DEST"]}],
                        forwarding={"poll_interval": 0.1, "timeout": 5})
    pacs.archive.start_background()
    add_users(pacs.archive)
    server = WebServer(pacs.archive, "127.0.0.1", 0, pacs.server.connections)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.address[1]}"
        ct = write_dicom(tmp_path / "ct.dcm")
        mr = write_dicom(tmp_path / "mr.dcm", SOPClassUID="1.2.840.10008.5.1.4.1.1.4", Modality="MR")
        send(pacs, [ct, mr])
        wait_until(lambda: {r.state for r in queue_rows(pacs.archive.engine)} == {"delivered", "failed"})
        log_in(page, base, "admin", then="/ui/queue")
        row = page.locator("#destinations tbody tr").first
        assert row.locator("td").nth(0).inner_text() == "DEST"
        assert [row.locator("td").nth(i).inner_text() for i in (1, 3, 4)] == ["0", "1", "1"]
        failed = page.locator("#failed tbody tr").first
        assert sop_uids([mr])[0] in failed.inner_text() and "does not accept SOP class" in failed.inner_text()
        screenshot(page, "forwarding-queue")

        failed.locator("button", has_text="Cancel").click()
        page.wait_for_url(f"{base}/ui/queue")
        states = {r.sop_uid: r.state for r in queue_rows(pacs.archive.engine)}
        assert states == {sop_uids([ct])[0]: "delivered", sop_uids([mr])[0]: "cancelled"}
        assert page.locator("#failed tbody tr").first.inner_text() == "No failed items."

        admin = logged_in(base, "admin")  # a form post without the CSRF token is refused
        assert admin.post("/ui/queue/retry", data={"destination": "DEST"}).status_code == 403
        status = admin.get("/ui/status.json").json()["forwarding"]
        assert [(d["destination"], d["delivered"], d["cancelled"]) for d in status] == [("DEST", 1, 1)]
        metrics = httpx.get(f"{base}/metrics").text
        assert 'pacsd_forward_items{destination="DEST",state="delivered"} 1.0' in metrics
    finally:
        server.stop()
        dest.stop()
