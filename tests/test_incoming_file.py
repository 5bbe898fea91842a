"""The file a C-STORE's dataset is written to as it arrives (`pacsd.net.incoming.IncomingFile`):
what it keeps in memory for ingest, and what a failed write leaves behind."""

from __future__ import annotations

import os

import pytest

from pacsd.errors import StorageFull
from pacsd.net.incoming import KEEP_IN_MEMORY, IncomingFile


def test_a_small_dataset_is_on_disk_and_in_memory_byte_for_byte(tmp_path):
    path = tmp_path / "small.dcm"
    incoming = IncomingFile(path)
    fragments = [os.urandom(1000), os.urandom(16000), os.urandom(7)]
    for fragment in fragments:
        incoming.write(fragment)
    assert incoming.content is None, "nothing is handed out before the dataset is complete"
    incoming.finish()
    assert path.read_bytes() == b"".join(fragments)
    assert incoming.content == b"".join(fragments)


def test_a_large_dataset_is_written_out_as_it_comes_and_not_kept(tmp_path):
    path = tmp_path / "large.dcm"
    incoming = IncomingFile(path)
    fragments = [os.urandom(16384) for _ in range(80)]  # 1.3 MB: written out once 1 MiB waits
    for fragment in fragments[:70]:
        incoming.write(fragment)
    assert path.stat().st_size >= 1 << 20, "a large dataset is not held whole in memory"
    for fragment in fragments[70:]:
        incoming.write(fragment)
    incoming.finish()
    assert path.read_bytes() == b"".join(fragments)
    assert incoming.content is None


def test_exactly_the_limit_is_kept_one_byte_more_is_not(tmp_path):
    for length, kept in ((KEEP_IN_MEMORY, True), (KEEP_IN_MEMORY + 1, False)):
        incoming = IncomingFile(tmp_path / f"{length}.dcm")
        incoming.write(b"\x01" * length)
        incoming.finish()
        assert (incoming.content is not None) == kept, length


def test_a_failed_write_raises_storage_full_and_leaves_no_file(tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)  # writing now fails (EPIPE), as a full or failed volume would
    path = tmp_path / "failed.dcm"
    path.write_bytes(b"")  # the file the descriptor stands for
    incoming = IncomingFile(path, fd=write_end)
    incoming.write(os.urandom(2 << 20))  # past the buffer: written out at once, and fails
    incoming.write(b"more")  # dropped
    with pytest.raises(StorageFull):
        incoming.finish()
    assert not path.exists()
    assert incoming.content is None
