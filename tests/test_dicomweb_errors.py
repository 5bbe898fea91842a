"""DICOMweb error paths with httpx: unknown UIDs 404, bad parameters 400, unmet Accept 406, every
answer JSON with a message; access through `visible_accounts`; CORS; WADO-URI."""

from __future__ import annotations

import io
from types import SimpleNamespace

import httpx
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pacsd.services.importer import import_file
from pacsd.services.users import add_user
from pacsd.web.app import create_app
from tests.conftest import make_settings, start_pacs
from tests.dicomgen import write_dicom
from tests.dicomweb_support import (  # noqa: F401 (one archive for the module)
    ADMIN,
    PASSWORD,
    dicomweb_admin,  # noqa: F401 (an autouse fixture)
    http,
    module_pacs,
    module_web,
    shared_files,
)

pytestmark = pytest.mark.both_databases


@pytest.fixture(scope="module")
def image(pacs, tmp_path_factory):
    """One stored CT image: its path and the WADO-RS URL of its instance."""
    path = write_dicom(tmp_path_factory.mktemp("image") / "ct.dcm", rows=32, cols=32)
    assert import_file(pacs.archive, path).ok
    ds = pydicom.dcmread(path)
    return SimpleNamespace(path=path, ds=ds, url=f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                                                 f"/instances/{ds.SOPInstanceUID}")


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]


@pytest.mark.parametrize("path", [
    "studies/1.2.3", "studies/1.2.3/metadata", "studies/1.2.3/series/4.5/metadata",
    "studies/1.2.3/series/4.5/instances/6.7/frames/1", "studies/1.2.3/thumbnail",
    "studies/1.2.3/series/4.5/instances/6.7/rendered",
])
def test_unknown_uids_are_404(web, image, path):
    assert "no such" in _error(http.get(f"{web}/dicom-web/{path}"), 404)


def test_missing_frames_elements_and_images_are_404(web, image, pacs):
    assert "frame 2 asked for" in _error(http.get(f"{web}/dicom-web/{image.url}/frames/1,2"), 404)
    assert "no bulk data element" in _error(http.get(f"{web}/dicom-web/{image.url}/bulkdata/00091001"), 404)
    report = pydicom.dcmread(next(p for p in shared_files() if p.name == "reportki.dcm"))
    assert import_file(pacs.archive, report.filename).ok
    sr = f"studies/{report.StudyInstanceUID}/series/{report.SeriesInstanceUID}/instances/{report.SOPInstanceUID}"
    assert "no pixel data" in _error(http.get(f"{web}/dicom-web/{sr}/rendered"), 404)


@pytest.mark.parametrize("suffix, params, message", [
    ("/frames/0", {}, "expected frame numbers"),
    ("/frames/1,x", {}, "expected frame numbers"),
    ("/rendered", {"window": "a,b"}, "must be numbers"),
    ("/rendered", {"window": "40,-1"}, "positive"),
    ("/rendered", {"window": "40,400,cubic"}, "function must be"),
    ("/rendered", {"viewport": "0,10"}, "viewport"),
    ("/rendered", {"viewport": "10,10,-1,0,5,5"}, "source region"),
    ("/rendered", {"quality": "500"}, "quality"),
    ("/bulkdata/zz", {}, "8 hexadecimal digits"),
])
def test_bad_parameters_are_400(web, image, suffix, params, message):
    assert message in _error(http.get(f"{web}/dicom-web/{image.url}{suffix}", params=params), 400)


def test_a_uid_that_is_not_a_uid_is_400(web):
    assert "is not a UID" in _error(http.get(f"{web}/dicom-web/studies/1.2.3'%20OR%201=1/metadata"), 400)


@pytest.mark.parametrize("suffix, accept", [
    ("", "application/dicom+json"),
    ("", 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'),
    ("/metadata", 'multipart/related; type="application/dicom+xml"'),
    ("/frames/1", 'multipart/related; type="image/jls"; transfer-syntax=1.2.840.10008.1.2.4.80'),
    ("/rendered", "image/gif"),
    ("/bulkdata/7FE00010", "text/plain"),
])
def test_unmet_accept_is_406(web, image, suffix, accept):
    assert "cannot send" in _error(http.get(f"{web}/dicom-web/{image.url}{suffix}", headers={"Accept": accept}), 406)


def test_accept_with_quality_and_alternatives_picks_what_we_can_send(web, image):
    response = http.get(f"{web}/dicom-web/{image.url}/rendered", headers={"Accept": "image/gif, image/png;q=0.5"})
    assert response.headers["content-type"] == "image/png"
    response = http.get(f"{web}/dicom-web/{image.url}", headers={
        "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50, '
                  'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'})
    assert response.status_code == 200 and image.ds.SOPInstanceUID.encode() in response.content


def test_studies_outside_the_visible_accounts_are_404(pacs_factory, tmp_path):
    """A physician user fetches their account's study (200) and not another's (404), at every level."""
    from pacsd.web.server import WebServer

    pacs = pacs_factory(storage={"naming": "accounts"},
                        accounts={"entries": [{"name": "Smith", "physicians": ["SMITH^JOHN"]}]})
    add_user(pacs.archive.engine, ADMIN, PASSWORD, is_admin=True)
    add_user(pacs.archive.engine, "smith", PASSWORD, account="Smith")
    mine, theirs = (write_dicom(tmp_path / f"{name}.dcm", rows=32, cols=32, ReferringPhysicianName=physician)
                    for name, physician in (("mine", "SMITH^JOHN"), ("theirs", "JONES^MARY")))
    for path in (mine, theirs):
        assert import_file(pacs.archive, path).ok
    server = WebServer(pacs.archive, "127.0.0.1", 0, pacs.server.connections)
    server.start()
    web = f"http://127.0.0.1:{server.address[1]}"
    as_smith = httpx.Client(auth=("smith", PASSWORD))
    try:
        for path, expected in ((mine, 200), (theirs, 404)):
            ds = pydicom.dcmread(path)
            study = f"studies/{ds.StudyInstanceUID}"
            instance = f"{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
            for url in (f"{instance}/metadata", instance, f"{instance}/rendered", f"{instance}/frames/1", study,
                        f"{study}/metadata", f"{study}/thumbnail"):
                answer = as_smith.get(f"{web}/dicom-web/{url}")
                assert answer.status_code == expected, (path.name, url, answer.text[:200])
            series_found = as_smith.get(f"{web}/dicom-web/{study}/series").json()  # a search: none, not 404
            assert len(series_found) == (1 if expected == 200 else 0), path.name
            wado_uri = as_smith.get(f"{web}/wado", params={
                "requestType": "WADO", "studyUID": ds.StudyInstanceUID, "seriesUID": ds.SeriesInstanceUID,
                "objectUID": ds.SOPInstanceUID})
            assert wado_uri.status_code == expected, path.name
            assert http.get(f"{web}/dicom-web/{instance}/metadata").status_code == 200  # the administrator sees both
        listed = as_smith.get(f"{web}/dicom-web/studies").json()
        assert [s["0020000D"]["Value"][0] for s in listed] == [pydicom.dcmread(mine).StudyInstanceUID]
        refused = as_smith.post(f"{web}/dicom-web/studies", content=b"",
                                headers={"Content-Type": "multipart/related; boundary=x"})
        assert "may see every study" in _error(refused, 403)
    finally:
        server.stop()


def test_nobody_logged_in_gets_401(web, image):
    wado_uri = "wado?requestType=WADO&studyUID=1&seriesUID=2&objectUID=3"
    for path in (f"dicom-web/{image.url}/metadata", "dicom-web/studies", wado_uri):
        assert _error(httpx.get(f"{web}/{path}"), 401) == "login required"


def test_cors_is_off_by_default_and_follows_the_setting(tmp_path, web, image):
    headers = {"Origin": "http://viewer.example", "Accept": "application/dicom+json"}
    plain = http.get(f"{web}/dicom-web/{image.url}/metadata", headers=headers)
    assert "access-control-allow-origin" not in plain.headers
    (tmp_path / "cors").mkdir()
    other = start_pacs(make_settings(tmp_path / "cors", http={"cors_origins": ["http://viewer.example"]}))
    try:
        with TestClient(create_app(other.archive)) as browser:
            allowed = browser.get("/healthz", headers=headers)
            assert allowed.headers["access-control-allow-origin"] == "http://viewer.example"
    finally:
        other.stop()


def test_wado_uri(web, image):
    base = {"requestType": "WADO", "studyUID": image.ds.StudyInstanceUID, "seriesUID": image.ds.SeriesInstanceUID,
            "objectUID": image.ds.SOPInstanceUID}
    jpeg = http.get(f"{web}/wado", params=base)
    assert jpeg.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(jpeg.content)).size == (32, 32)
    png = http.get(f"{web}/wado", params={**base, "contentType": "image/png", "rows": "16",
                                           "windowCenter": "100", "windowWidth": "50"})
    assert Image.open(io.BytesIO(png.content)).size == (16, 16)
    dicom = http.get(f"{web}/wado", params={**base, "contentType": "application/dicom"})
    assert dicom.content == image.path.read_bytes()
    assert "requestType" in _error(http.get(f"{web}/wado", params={**base, "requestType": "X"}), 400)
    assert "no such" in _error(http.get(f"{web}/wado", params={**base, "objectUID": "1.2.3"}), 404)
    assert _error(http.get(f"{web}/wado", params={**base, "contentType": "text/html"}), 406)
    assert _error(http.get(f"{web}/wado", params={**base, "frameNumber": "0"}), 400)
