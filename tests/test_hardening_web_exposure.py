"""What the web server shows to anyone (issue 21, point 14): the API description only when
turned on and then only after login, safety headers on every answer, a bounded set of modality
labels in /metrics, and RetrieveURLs that never echo a client's Host header."""

from __future__ import annotations

import httpx
import pytest

from pacsd.services.importer import import_file
from pacsd.web.ui.status import MAX_MODALITY_LABELS
from tests.conftest import HOST
from tests.dicomgen import make_dataset, write_dicom
from tests.dicomweb_support import (
    ADMIN,
    PASSWORD,
    dicomweb_admin,  # noqa: F401 (an autouse fixture)
    http,
)


@pytest.fixture
def web_with(pacs_factory):
    from pacsd.services.users import add_user
    from pacsd.web.server import WebServer

    servers = []

    def start(**http_settings) -> str:
        pacs = pacs_factory(http=http_settings)
        add_user(pacs.archive.engine, ADMIN, PASSWORD, is_admin=True)
        server = WebServer(pacs.archive, HOST, 0, pacs.server.connections)
        server.start()
        servers.append((server, pacs))
        return f"http://{HOST}:{server.address[1]}"
    yield start
    for server, _ in servers:
        server.stop()


def test_the_api_description_is_off_by_default(web):
    for path in ("/api/docs", "/openapi.json"):
        assert httpx.get(f"{web}{path}").status_code == 404
        assert http.get(f"{web}{path}").status_code == 404


def test_the_api_description_when_on_needs_a_login(web_with):
    base = web_with(api_docs=True)
    for path in ("/api/docs", "/openapi.json"):
        assert httpx.get(f"{base}{path}").status_code == 401
        assert http.get(f"{base}{path}").status_code == 200
    assert "paths" in http.get(f"{base}/openapi.json").json()


def test_every_answer_carries_the_safety_headers(web):
    for path in ("/login", "/healthz", "/ui/studies", "/dicom-web/studies", "/nothing-here"):
        headers = httpx.get(f"{web}{path}").headers
        assert headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert headers["x-content-type-options"] == "nosniff", path


def test_metrics_modality_labels_are_bounded(pacs, web, tmp_path):
    hostile = [f"M{n}" for n in range(MAX_MODALITY_LABELS + 20)] + ["<script>", "x" * 200]
    for number, modality in enumerate(hostile):
        path = write_dicom(tmp_path / f"{number}.dcm", make_dataset(rows=2, cols=2, Modality=modality))
        assert import_file(pacs.archive, path).ok
    pacs_web = httpx.get(f"{web}/metrics").text
    labels = {line.split('modality="')[1].split('"')[0] for line in pacs_web.splitlines()
              if line.startswith("pacsd_instances{")}
    assert len(labels) <= MAX_MODALITY_LABELS and "OTHER" in labels
    assert "<script>" not in labels and not any(len(label) > 16 for label in labels)
    total = sum(float(line.rsplit(" ", 1)[1]) for line in pacs_web.splitlines() if line.startswith("pacsd_instances{"))
    assert total == len(hostile)


def test_retrieve_urls_never_echo_the_host_header(pacs, web, tmp_path):
    ds = make_dataset()
    assert import_file(pacs.archive, write_dicom(tmp_path / "ct.dcm", ds)).ok
    [study] = http.get(f"{web}/dicom-web/studies", headers={"Host": "evil.example:666"}).json()
    url = study["00081190"]["Value"][0]
    assert "evil.example" not in url and url.startswith(f"{web}/dicom-web/studies/")

