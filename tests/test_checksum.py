"""The ingest checksum: the SHA-256 of the stored bytes, for small files and for large ones
(hashed in a helper thread), even when the temp file is renamed while it is being hashed."""

from __future__ import annotations

import hashlib
import os

import pytest
from sqlalchemy import select

from pacsd.index.schema import instances
from pacsd.services.archive import Archive
from pacsd.services.checksum import PARALLEL_FROM, sha256_soon
from pacsd.services.ingest import Source
from tests.conftest import make_settings
from tests.dicomgen import write_dicom


@pytest.mark.parametrize("size", [0, 1000, PARALLEL_FROM, 3 * PARALLEL_FROM + 7])
def test_digest_of_small_and_large_files(tmp_path, size):
    path = tmp_path / "f"
    path.write_bytes(os.urandom(size))
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    digest = sha256_soon(path)
    path.rename(tmp_path / "g")  # the file is open already: the digest is of the same bytes
    assert digest.result(timeout=10) == expected


def test_a_missing_file_raises_from_result(tmp_path):
    with pytest.raises(FileNotFoundError):
        sha256_soon(tmp_path / "absent").result(timeout=10)


@pytest.mark.parametrize("rows", [16, 512])  # ~0.5 KiB and ~512 KiB of pixels
def test_ingest_records_the_stored_files_digest(tmp_path, rows):
    archive = Archive(make_settings(tmp_path))
    try:
        source = write_dicom(tmp_path / "in.dcm", rows=rows, cols=rows)
        temp = archive.blobs.new_temp_path()
        temp.write_bytes(source.read_bytes())
        result = archive.ingest.store(temp, Source("import"))
        assert result.ok, result
        with archive.engine.connect() as conn:
            row = conn.execute(select(instances.c.path, instances.c.checksum)).one()
        stored = (archive.blobs.root / row.path).read_bytes()
        assert stored == source.read_bytes()
        assert row.checksum == hashlib.sha256(stored).hexdigest()
    finally:
        archive.close()
