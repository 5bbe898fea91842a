"""The "Open in OHIF" link of the study and viewer pages: to our /viewer as soon as the built viewer
is installed in `http.viewer_dir`, to `web.ohif_url` when that is set, and absent otherwise."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from pydicom import dcmread

from tests.conftest import HOST
from tests.webui import add_series, add_users, logged_in

INDEX = "<!doctype html><title>OHIF stand-in</title><p id=ohif-marker>the installed viewer</p>"


@pytest.fixture
def archive_with_viewer_dir(pacs_factory, tmp_path):
    """(pacs, base URL, study dataset, viewer folder) with the viewer folder still empty."""
    from pacsd.web.server import WebServer

    viewer_dir = tmp_path / "viewer"
    viewer_dir.mkdir()

    def start(**web):
        pacs = pacs_factory(http={"viewer_dir": str(viewer_dir)}, web=web)
        add_users(pacs.archive)
        ds = dcmread(add_series(pacs.archive, tmp_path, count=1)[0])
        server = WebServer(pacs.archive, HOST, 0, pacs.server.connections)
        server.start()
        servers.append(server)
        return f"http://{HOST}:{server.address[1]}", ds, viewer_dir

    servers = []
    yield start
    for server in servers:
        server.stop()


def ohif_links(client, ds) -> list[str]:
    pages = [f"/ui/studies/{ds.StudyInstanceUID}", f"/ui/viewer/{ds.SeriesInstanceUID}"]
    found = []
    for page in pages:
        html = client.get(page).text
        found.extend(re.findall(r'id="open-ohif" href="([^"]+)"', html))
    return found


def test_link_to_our_viewer_once_it_is_installed(archive_with_viewer_dir):
    base, ds, viewer_dir = archive_with_viewer_dir()
    admin = logged_in(base, "admin")
    assert ohif_links(admin, ds) == []
    (viewer_dir / "index.html").write_text(INDEX)
    # OHIF 3 opens a study at its mode's route (/viewer under our basename /viewer)
    expected = f"/viewer/viewer?StudyInstanceUIDs={quote(str(ds.StudyInstanceUID))}"
    assert ohif_links(admin, ds) == [expected, expected]
    opened = admin.get(expected)
    assert opened.status_code == 200 and "the installed viewer" in opened.text
    documented = admin.get(f"/viewer?StudyInstanceUIDs={quote(str(ds.StudyInstanceUID))}", follow_redirects=False)
    assert documented.status_code == 307 and documented.headers["location"] == expected


def test_link_to_another_server_when_set(archive_with_viewer_dir):
    base, ds, _ = archive_with_viewer_dir(ohif_url="https://ohif.example.org/")
    links = ohif_links(logged_in(base, "admin"), ds)
    assert links == [f"https://ohif.example.org/viewer?StudyInstanceUIDs={ds.StudyInstanceUID}"] * 2
