"""Placing a received file: `BlobStore.place` links a temp file to its index path, in the area
that path names, making the folders it needs, never replacing a file already there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pacsd.storage.blobstore import INCOMING, BlobStore


def received(store: BlobStore, content: bytes) -> Path:
    path, fd = store.new_temp_file()
    os.write(fd, content)
    os.close(fd)
    return path


def test_a_file_lands_at_its_index_path_and_the_temp_file_is_gone(tmp_path):
    store = BlobStore(tmp_path / "storage")
    temp = received(store, b"first")
    placed = store.place(temp, "P1/1.2.3/1.2.3.4/1.2.3.4.5.dcm")
    assert placed == "P1/1.2.3/1.2.3.4/1.2.3.4.5.dcm"
    assert (store.root / placed).read_bytes() == b"first"
    assert not temp.exists()
    assert list((store.root / INCOMING).iterdir()) == []


@pytest.mark.parametrize(("relative", "second", "third"), [
    ("a/b/1.2.3.dcm", "a/b/1.2.3_1.dcm", "a/b/1.2.3_2.dcm"),
    ("flat.dcm", "flat_1.dcm", "flat_2.dcm"),
    ("a/README", "a/README_1", "a/README_2"),  # no suffix
    ("a/.hidden", "a/.hidden_1", "a/.hidden_2"),  # a leading dot is no suffix (as PurePath has it)
    ("a/name.", "a/name._1", "a/name._2"),  # nor is a trailing one
])
def test_a_taken_name_gets_a_numbered_one_and_the_stored_file_is_kept(tmp_path, relative, second, third, caplog):
    store = BlobStore(tmp_path / "storage")
    names = [store.place(received(store, content), relative) for content in (b"one", b"two", b"three")]
    assert names == [relative, second, third]
    assert [(store.root / name).read_bytes() for name in names] == [b"one", b"two", b"three"]
    assert "was taken" in caplog.text


def test_a_path_in_another_area_lands_in_that_areas_folder(tmp_path):
    areas = {"fast": tmp_path / "fast", "slow": tmp_path / "slow"}
    store = BlobStore(areas["fast"], areas=areas)
    placed = store.place(received(store, b"old study"), ".areas/slow/P1/s/1.dcm")
    assert placed == ".areas/slow/P1/s/1.dcm"
    assert (tmp_path / "slow" / "P1" / "s" / "1.dcm").read_bytes() == b"old study"
    assert not (tmp_path / "fast" / "P1").exists()
    store.make_durable([placed])  # its folders are found in that area too


def test_a_path_in_an_unknown_area_is_refused(tmp_path):
    store = BlobStore(tmp_path / "storage")
    temp = received(store, b"x")
    with pytest.raises(ValueError, match="storage area 'elsewhere'"):
        store.place(temp, ".areas/elsewhere/1.dcm")


def test_new_folders_are_made_with_the_folder_mode_and_remembered_for_the_flush(tmp_path):
    store = BlobStore(tmp_path / "storage", dir_mode=0o750)
    store.place(received(store, b"x"), "P1/study/series/1.dcm")
    for folder in ("P1", "P1/study", "P1/study/series"):
        assert (store.root / folder).stat().st_mode & 0o777 == 0o750
    assert set(store.take_new_entries()) == {str(store.root), str(store.root / "P1"), str(store.root / "P1/study")}
    store.place(received(store, b"y"), "P1/study/series/2.dcm")
    assert store.take_new_entries() == [], "an existing folder is not made again"
