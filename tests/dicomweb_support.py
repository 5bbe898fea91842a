"""Shared by the DICOMweb tests: the shared test data stored in a running pacsd, and clients that
log in as a DICOMweb tool does (HTTP Basic, as an administrator made for the test)."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_auth
from pydicom.dataset import Dataset
from requests.auth import HTTPBasicAuth

from pacsd.services.importer import import_file
from pacsd.services.users import add_user, find_user
from tests.conftest import VENV_BIN, shared_testdata_files

ADMIN, PASSWORD = "dicomweb-admin", "correct horse battery staple"
# httpx as an administrator; plain `httpx` calls are anonymous.
http = httpx.Client(auth=(ADMIN, PASSWORD), timeout=60)


@pytest.fixture(autouse=True)
def dicomweb_admin(request):
    """The administrator every DICOMweb client here logs in as, in the in-process archive (once:
    a module may share one archive among its tests, see `module_pacs`)."""
    if "pacs" in request.fixturenames:
        engine = request.getfixturevalue("pacs").archive.engine
        if find_user(engine, ADMIN) is None:
            add_user(engine, ADMIN, PASSWORD, is_admin=True)


@pytest.fixture(scope="module", name="pacs")
def module_pacs(shared_pacs):
    """`pacs` for a module whose tests only read, or add what none of the others looks at:
    one archive for the module (per index backend).  A module imports it (and `module_web`)."""
    return shared_pacs


@pytest.fixture(scope="module", name="web")
def module_web(pacs, shared_web):
    """`web` on `module_pacs` (asking for `pacs` too, so that `dicomweb_admin` sees it: a test
    that takes only `web` may be the first of the module on its worker)."""
    return shared_web


def add_admin_to(process) -> None:
    """The same administrator in the index of a `pacsd serve` process (SQLite or PostgreSQL),
    with `pacsd user add`."""
    target = process.database_target
    where = ["--database-url", target] if isinstance(target, str) else ["--index-db", str(target)]
    subprocess.run([str(VENV_BIN / "pacsd"), "user", "add", ADMIN, "--admin", "--password-stdin", *where],
                   input=PASSWORD, text=True, check=True, capture_output=True)


@dataclass(frozen=True)
class StoredFile:
    """A test file the server accepted, with the UIDs to ask for it by."""

    path: Path
    dataset: Dataset  # as read by pydicom, pixels included

    @property
    def uids(self) -> tuple[str, str, str]:
        ds = self.dataset
        return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)

    @property
    def has_pixels(self) -> bool:
        return "PixelData" in self.dataset


def store_testdata(pacs) -> list[StoredFile]:
    """Import every shared test file; the ones the server accepts (the others it must refuse)."""
    stored = []
    for path in shared_testdata_files():
        if import_file(pacs.archive, path).action == "stored":
            stored.append(StoredFile(path, pydicom.dcmread(path, force=True)))
    assert len(stored) >= 20, "the shared test data should mostly be accepted"
    return stored


def shared_files() -> list[Path]:
    """The shared test files (under a name pytest does not collect as a test)."""
    return shared_testdata_files()


def client(web: str) -> DICOMwebClient:
    return DICOMwebClient(f"{web}/dicom-web", session=create_session_from_auth(HTTPBasicAuth(ADMIN, PASSWORD)))


def multipart_body(parts: list[tuple[str, bytes]], boundary: str) -> bytes:
    """A multipart/related body written here, independently of the server's code."""
    body = b""
    for content_type, data in parts:
        body += f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def stow(base: str, parts: list[tuple[str, bytes]], path: str = "/dicom-web/studies") -> httpx.Response:
    boundary = uuid.uuid4().hex
    return http.post(f"{base}{path}", content=multipart_body(parts, boundary), timeout=60,
                      headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
