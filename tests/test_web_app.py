"""The web server runs with the archive: health, JSON errors, started and stopped by `pacsd serve`."""

from __future__ import annotations

import httpx


def test_healthz_and_json_errors(web):
    assert httpx.get(f"{web}/healthz").json() == {"status": "ok"}
    missing = httpx.get(f"{web}/no/such/page")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}


def test_serve_runs_the_web_server(pacs_process):
    server = pacs_process()
    assert httpx.get(f"http://127.0.0.1:{server.http_port}/healthz").json()["status"] == "ok"
    assert "pacsd stopped" in server.stop()
