"""STOW-RS against the real `pacsd serve`: every shared test file stored through the same ingest
path as C-STORE (refused ones reported), dicomweb-client round trips, and bad bodies."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.dataset import Dataset

from tests.conftest import HOST
from tests.dicomgen import make_dataset, write_dicom
from tests.dicomweb_support import (
    add_admin_to,
    client,
    dicomweb_admin,  # noqa: F401 (an autouse fixture)
    http,
    shared_files,
    stow,
)
from tests.stored_checks import storable_testdata

pytestmark = pytest.mark.both_databases

CANNOT_UNDERSTAND = 0xC000


def started_with_admin(pacs_process):
    process = pacs_process()
    process.base = f"http://{HOST}:{process.http_port}"
    add_admin_to(process)
    return process


@pytest.fixture
def server(pacs_process):
    return started_with_admin(pacs_process)


@pytest.fixture(scope="module")
def server_storing_nothing(shared_pacs_process):
    """One `pacsd serve` for the module's tests of bodies refused whole: each finds its storage
    still empty (a body stored by mistake fails that test, or the next)."""
    return started_with_admin(shared_pacs_process)


def test_every_storable_test_file_is_stored(server, tmp_path):
    """STOW-RS stores exactly the test files an outside oracle calls storable (pydicom, the
    standard's UI values, the MANIFEST: `storable_testdata`), refuses the others, and gives each
    stored one back unchanged."""
    files = shared_files()
    response = stow(server.base, [("application/dicom", path.read_bytes()) for path in files])
    answer = Dataset.from_json(response.json())
    imported = set(storable_testdata().values())
    referenced = {str(item.ReferencedSOPInstanceUID) for item in answer.get("ReferencedSOPSequence", [])}
    assert response.status_code == 202 and response.headers["content-type"] == "application/dicom+json"
    assert referenced == {str(pydicom.dcmread(p, force=True).SOPInstanceUID) for p in imported}
    failed = answer.FailedSOPSequence
    assert len(failed) == len(files) - len(imported) > 0
    assert all(item.FailureReason == CANNOT_UNDERSTAND and item.TextValue for item in failed)
    for item in answer.ReferencedSOPSequence:
        retrieved = http.get(item.RetrieveURL, headers={"Accept": "application/dicom"})
        original = next(p for p in imported
                        if pydicom.dcmread(p, force=True).SOPInstanceUID == item.ReferencedSOPInstanceUID)
        assert retrieved.content == original.read_bytes()


def test_dicomweb_client_stores_and_finds_it_back(server, tmp_path):
    dicomweb = client(server.base)
    study = make_dataset().StudyInstanceUID
    datasets = [pydicom.dcmread(write_dicom(tmp_path / f"{n}.dcm", InstanceNumber=n, StudyInstanceUID=study))
                for n in (1, 2)]
    answer = dicomweb.store_instances(datasets)
    assert len(answer.ReferencedSOPSequence) == 2 and "FailedSOPSequence" not in answer
    for ds in datasets:
        back = dicomweb.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        assert back.PatientName == ds.PatientName and back.PixelData == ds.PixelData
    assert answer.RetrieveURL.endswith(f"/dicom-web/studies/{datasets[0].StudyInstanceUID}")


def test_non_dicom_part_is_refused_and_the_others_stored(server, tmp_path):
    good = write_dicom(tmp_path / "good.dcm").read_bytes()
    response = stow(server.base, [("application/dicom", b"this is not DICOM"), ("application/dicom", good),
                                  ("application/pdf", b"%PDF-1.4")])
    answer = Dataset.from_json(response.json())
    assert response.status_code == 202
    assert len(answer.ReferencedSOPSequence) == 1
    reasons = [item.TextValue for item in answer.FailedSOPSequence]
    assert [item.FailureReason for item in answer.FailedSOPSequence] == [CANNOT_UNDERSTAND] * 2
    assert "part 1 is not DICOM" in reasons[0] and "part 3 is application/pdf" in reasons[1]


def test_instance_of_another_study_is_refused_on_a_study_url(server, tmp_path):
    ds = make_dataset()
    response = stow(server.base, [("application/dicom", write_dicom(tmp_path / "a.dcm", ds).read_bytes())],
                    path="/dicom-web/studies/1.2.3.4")
    assert response.status_code == 409
    [failed] = Dataset.from_json(response.json()).FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == ds.SOPInstanceUID and failed.FailureReason == 0xC409
    assert http.get(f"{server.base}/dicom-web/studies/{ds.StudyInstanceUID}/metadata").status_code == 404


@pytest.mark.parametrize("content_type, body, status, message", [
    ("application/json", b"{}", 415, "STOW-RS takes multipart/related"),
    ('multipart/related; type="application/dicom+xml"; boundary=x', b"--x--\r\n", 415, "STOW-RS takes"),
    ('multipart/related; type="application/dicom"', b"--x--\r\n", 400, "no boundary"),
    ('multipart/related; type="application/dicom"; boundary=x', b"--x\r\nContent-Type: application/dicom\r\n\r\nDICM",
     400, "ends before the closing boundary"),
    ('multipart/related; type="application/dicom"; boundary=x', b"--x--\r\n", 400, "holds no part"),
    ('multipart/related; type="application/dicom"; boundary=x', b"--x\r\nno header line\r\n\r\nDICM\r\n--x--",
     400, "bad part header"),
])
def test_bad_bodies_are_refused_and_store_nothing(server_storing_nothing, tmp_path, content_type, body, status, message):
    server = server_storing_nothing
    good = write_dicom(tmp_path / "good.dcm").read_bytes()
    truncated_after_a_good_part = body.replace(b"DICM", good)
    response = http.post(f"{server.base}/dicom-web/studies", content=truncated_after_a_good_part,
                          headers={"Content-Type": content_type})
    assert response.status_code == status and message in response.json()["error"]
    assert list((server.data / "storage").rglob("*.dcm")) == []
