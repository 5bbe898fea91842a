"""README: "Any failure removes the temp file and any placed file".  The index's commit fails during
a C-STORE (the PostgreSQL database refuses connections and its sessions are cut): the sender gets
a failure status, no file of that instance stays in the storage folder, and storing works again
once the database is back.
"""

from __future__ import annotations

import psycopg
import pytest
from pydicom import dcmread
from pynetdicom import AE
from sqlalchemy import select
from sqlalchemy.engine import make_url

from pacsd.index.schema import instances
from tests.conftest import HOST
from tests.dicomgen import write_dicom


def c_store(pacs, path) -> int:
    dataset = dcmread(path)
    ae = AE("OUTAGE")
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    assoc = ae.associate(HOST, pacs.port, ae_title=pacs.aet)
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(dataset).Status)
    finally:
        assoc.release()


def _database(admin_url: str, name: str, allow: bool) -> None:
    """Let the database take connections again, or refuse them and end every session it has."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if allow else "false"}')
        if not allow:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


def _stored_files(pacs) -> dict[str, str]:
    """SOP Instance UID -> file, for every file in the storage folder (as pydicom reads them)."""
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): str(p)
            for p in pacs.storage.rglob("*.dcm") if ".incoming" not in p.parts}


@pytest.mark.parametrize("index_backend", ["postgresql"], indirect=True)
def test_a_failed_index_commit_leaves_nothing_and_storing_resumes(pacs_factory, postgres_server, index_database,
                                                                  tmp_path):
    pacs = pacs_factory()
    name = make_url(index_database["url"]).database
    before, during, after = (write_dicom(tmp_path / f"{n}.dcm") for n in ("before", "during", "after"))
    uids = {n: str(dcmread(p).SOPInstanceUID) for n, p in zip(("before", "during", "after"), (before, during, after))}
    assert c_store(pacs, before) == 0x0000

    _database(postgres_server.admin_url, name, allow=False)
    try:
        status = c_store(pacs, during)
    finally:
        _database(postgres_server.admin_url, name, allow=True)
    assert status != 0x0000 and (status & 0xF000) in (0xA000, 0xC000), hex(status)  # a failure, not a warning
    assert uids["during"] not in _stored_files(pacs), "the placed file of a failed store must be removed"
    incoming = pacs.storage / ".incoming"
    assert not incoming.exists() or [p for p in incoming.rglob("*") if p.is_file()] == [], "no temp file left"

    assert c_store(pacs, after) == 0x0000
    with pacs.archive.engine.connect() as conn:
        indexed = set(conn.execute(select(instances.c.sop_uid)).scalars())
    assert indexed == {uids["before"], uids["after"]}
    assert set(_stored_files(pacs)) == {uids["before"], uids["after"]}
