"""How stored files are made durable before their rows commit (`storage.flush`).

`files`, the default: the data of each file (fdatasync) and each folder that gained an entry
(fsync).  `volume`: one syncfs of each volume the group wrote to, and no per-file flush.  The
real system calls run; the tests record which ones the store made.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest

from pacsd.config import load_settings
from pacsd.errors import ConfigError
from pacsd.storage import blobstore
from pacsd.storage.blobstore import BlobStore


@pytest.fixture
def flushes(monkeypatch):
    """The flushes made, in order: ("file", path), ("folder", path), ("volume", folder)."""
    made: list[tuple[str, Path]] = []
    real_fsync_path, real_volume = blobstore._fsync_path, blobstore._flush_volume_of

    def fsync_path(path: Path, data_only: bool = False) -> None:
        made.append(("file" if data_only else "folder", Path(path)))
        real_fsync_path(path, data_only)

    def flush_volume_of(folder: Path) -> None:
        made.append(("volume", Path(folder)))
        real_volume(folder)

    monkeypatch.setattr(blobstore, "_fsync_path", fsync_path)
    monkeypatch.setattr(blobstore, "_flush_volume_of", flush_volume_of)
    return made


def place_one(store: BlobStore, relative: str) -> str:
    path, fd = store.new_temp_file()
    os.write(fd, b"DICM" * 100)
    os.close(fd)
    return str(store.place(path, PurePosixPath(relative)))


def test_files_flush_each_file_and_each_folder(tmp_path, flushes):
    store = BlobStore(tmp_path / "storage")
    placed = [place_one(store, "a/b/1.dcm"), place_one(store, "a/c/2.dcm")]
    store.make_durable(placed)
    assert [kind for kind, _ in flushes if kind == "file"] == ["file", "file"]
    folders = {path for kind, path in flushes if kind == "folder"}
    assert {store.root / "a" / "b", store.root / "a" / "c"} <= folders
    assert store.root / "a" in folders, "the folder that gained the new folders is flushed too"
    assert not [kind for kind, _ in flushes if kind == "volume"]


def test_volume_flushes_the_volume_once_per_group_and_no_file(tmp_path, flushes):
    store = BlobStore(tmp_path / "storage", flush="volume")
    placed = [place_one(store, f"a/{n}/{n}.dcm") for n in range(5)]
    store.make_durable(placed)
    assert flushes == [("volume", store.root)]


def test_volume_flushes_each_area_a_group_wrote_to(tmp_path, flushes):
    areas = {"fast": tmp_path / "fast", "slow": tmp_path / "slow"}
    store = BlobStore(areas["fast"], areas=areas, flush="volume")
    placed = place_one(store, "x/1.dcm")
    copied = store.copy_in(store.path_of(placed), store.in_area("slow", "y/1.dcm"))
    flushes.clear()
    store.make_entries_durable([placed, copied])
    assert sorted(folder for _, folder in flushes) == sorted(folder.resolve() for folder in areas.values())


def test_volume_starts_no_flush_of_a_large_file(tmp_path, flushes):
    store = BlobStore(tmp_path / "storage", flush="volume")
    path, fd = store.new_temp_file()
    os.write(fd, os.urandom(blobstore.FLUSH_AT_ONCE_FROM + 1))
    os.close(fd)
    flushed = store.flush_data_soon(path)
    assert flushed.done() and flushed.result() is None
    assert flushes == []


def test_flush_is_named_in_the_config(tmp_path):
    assert load_settings(None, {"storage": {"directory": str(tmp_path)}}).storage.flush == "files"
    assert load_settings(None, {"storage": {"flush": "volume"}}).storage.flush == "volume"
    with pytest.raises(ConfigError, match="storage.flush"):
        load_settings(None, {"storage": {"flush": "sometimes"}})


def test_a_store_made_from_the_settings_flushes_as_they_say(tmp_path, flushes):
    settings = load_settings(None, {"storage": {"directory": str(tmp_path / "s"), "flush": "volume"}})
    store = BlobStore.for_settings(settings.storage, "node")
    store.make_durable([place_one(store, "z/1.dcm")])
    assert [kind for kind, _ in flushes] == ["volume"]
