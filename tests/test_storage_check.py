"""`pacsd check`: the storage folder against the index — missing and damaged files, image files
no row names (as a crash between placing a file and committing its row leaves), and the repair
of those through ingest."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import PurePosixPath

import pytest
from pydicom import dcmread
from sqlalchemy import select

from pacsd.index.schema import instances
from pacsd.services.archive import Archive
from pacsd.services.storage_check import check_storage
from tests.conftest import make_settings
from tests.dicomgen import make_dataset, write_dicom
from tests.qr_support import archive_files
from tests.test_tools import pacsd

pytestmark = pytest.mark.both_databases

AN_HOUR_AGO = time.time() - 3600


@pytest.fixture
def archive(tmp_path, index_database):
    archive = Archive(make_settings(tmp_path, database=index_database))
    yield archive
    archive.close()


def stored_paths(archive) -> dict[str, str]:
    """SOP Instance UID -> indexed path."""
    with archive.engine.connect() as conn:
        return dict(conn.execute(select(instances.c.sop_uid, instances.c.path)).all())


def filed(archive, tmp_path, count: int = 2) -> dict[str, str]:
    """`count` instances archived through ingest; their UIDs and indexed paths."""
    archive_files(archive, *(write_dicom(tmp_path / "in" / f"{i}.dcm") for i in range(count)))
    return stored_paths(archive)


def left_behind(archive, source, relative: str, age: float = AN_HOUR_AGO):
    """A file in the storage tree that no row names, as a crash before the commit leaves it."""
    path = archive.blobs.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, path)
    os.utime(path, (age, age))
    return path


def test_an_archive_filed_by_ingest_is_consistent(archive, tmp_path):
    paths = filed(archive, tmp_path, 3)
    archive.blobs.replace_file(PurePosixPath("Sheets/sheet.csv"), b"a,b\n")  # as a scan sheet is written
    report = check_storage(archive, checksums=True)
    assert report.consistent
    assert report.rows == 3 and report.files == 4, "the scan-sheet-like file is seen, not reported"
    assert not (report.missing or report.damaged or report.unindexed)
    assert set(paths.values()) <= {p.relative_to(archive.blobs.root).as_posix()
                                   for p in archive.blobs.root.rglob("*.dcm")}


def test_a_missing_file_is_reported_and_nothing_is_changed(archive, tmp_path):
    paths = filed(archive, tmp_path)
    gone = sorted(paths.values())[0]
    (archive.blobs.root / gone).unlink()
    report = check_storage(archive, repair=True)
    assert report.missing == [gone] and not report.consistent
    assert stored_paths(archive) == paths, "the row stays: only a backup brings the image back"


def test_a_damaged_file_is_found_only_by_reading_checksums(archive, tmp_path):
    paths = filed(archive, tmp_path)
    damaged = sorted(paths.values())[1]
    with open(archive.blobs.root / damaged, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0xFF]))
    assert check_storage(archive).consistent, "without --checksums files are not read"
    report = check_storage(archive, checksums=True)
    assert report.damaged == [damaged] and not report.consistent


def test_a_file_left_by_a_crash_is_found_and_indexed_by_repair(archive, tmp_path):
    before = filed(archive, tmp_path)
    lost = make_dataset(PatientID="LOST")
    orphan = left_behind(archive, write_dicom(tmp_path / "lost.dcm", lost), "Crash/left.dcm")
    report = check_storage(archive)
    assert report.unindexed == ["Crash/left.dcm"] and not report.consistent
    assert stored_paths(archive) == before, "a check without --repair changes nothing"

    report = check_storage(archive, repair=True)
    assert [path for path, _ in report.repaired] == ["Crash/left.dcm"] and report.consistent
    after = stored_paths(archive)
    assert set(after) == set(before) | {lost.SOPInstanceUID}
    indexed = archive.blobs.root / after[lost.SOPInstanceUID]
    assert dcmread(indexed).PatientID == "LOST"
    assert not orphan.exists() and not orphan.parent.exists(), "the orphan and its emptied folder are gone"
    assert check_storage(archive, checksums=True).consistent


def test_an_identical_copy_of_an_indexed_instance_is_removed(archive, tmp_path):
    """The sender never got its answer and sent again: the second copy is the indexed one."""
    paths = filed(archive, tmp_path, 1)
    (uid, indexed), = paths.items()
    copy = left_behind(archive, archive.blobs.root / indexed, indexed + ".orphan.dcm")
    report = check_storage(archive, repair=True)
    assert report.consistent and len(report.repaired) == 1 and "identical copy" in report.repaired[0][1]
    assert not copy.exists() and (archive.blobs.root / indexed).exists()
    assert stored_paths(archive) == paths


def test_other_content_under_an_indexed_uid_is_kept_and_reported(archive, tmp_path):
    paths = filed(archive, tmp_path, 1)
    (uid, indexed), = paths.items()
    other = make_dataset(SOPInstanceUID=uid, PatientName="OTHER^CONTENT")
    conflict = left_behind(archive, write_dicom(tmp_path / "other.dcm", other), "Elsewhere/x.dcm")
    report = check_storage(archive, repair=True)
    assert [path for path, _ in report.not_repaired] == ["Elsewhere/x.dcm"] and not report.consistent
    assert "other content" in report.not_repaired[0][1]
    assert conflict.exists() and stored_paths(archive) == paths


def test_garbage_named_like_an_image_is_reported_and_kept(archive, tmp_path):
    filed(archive, tmp_path, 1)
    garbage = left_behind(archive, write_dicom(tmp_path / "g.dcm"), "Junk/garbage.dcm")
    garbage.write_bytes(b"not DICOM at all")
    os.utime(garbage, (AN_HOUR_AGO, AN_HOUR_AGO))
    report = check_storage(archive, repair=True)
    assert [path for path, _ in report.not_repaired] == ["Junk/garbage.dcm"] and garbage.exists()
    assert "not a readable DICOM file" in report.not_repaired[0][1]


def test_recent_files_and_pacsds_own_folders_are_left_alone(archive, tmp_path):
    filed(archive, tmp_path, 1)
    fresh = left_behind(archive, write_dicom(tmp_path / "f.dcm"), "Busy/now.dcm", age=time.time())
    left_behind(archive, write_dicom(tmp_path / "i.dcm"), ".incoming/partial.dcm")
    left_behind(archive, write_dicom(tmp_path / "p.dcm"), ".pacsd/whatever.dcm")
    report = check_storage(archive, repair=True)
    assert report.consistent and report.recent == 1 and not report.unindexed and fresh.exists()
    report = check_storage(archive, grace=0)
    assert report.unindexed == ["Busy/now.dcm"], "with no grace period the recent file counts"


def test_a_symlink_in_the_tree_is_not_followed(archive, tmp_path):
    filed(archive, tmp_path, 1)
    outside = write_dicom(tmp_path / "outside" / "secret.dcm")
    link = archive.blobs.root / "Link" / "secret.dcm"
    link.parent.mkdir()
    link.symlink_to(outside)
    report = check_storage(archive, repair=True)
    assert report.consistent and not report.unindexed
    assert outside.exists() and link.is_symlink()


def test_the_command_reports_repairs_and_exits_by_the_outcome(tmp_path):
    flags = ["--storage-dir", str(tmp_path / "s"), "--index-db", str(tmp_path / "i.sqlite")]
    write_dicom(tmp_path / "in" / "a.dcm")
    assert pacsd("import", str(tmp_path / "in"), *flags).returncode == 0
    clean = pacsd("check", "--checksums", *flags)
    assert clean.returncode == 0 and "1 indexed instances" in clean.stdout, clean.stdout + clean.stderr

    orphan = tmp_path / "s" / "Crash" / "b.dcm"
    write_dicom(orphan, PatientID="ORPHAN")
    os.utime(orphan, (AN_HOUR_AGO, AN_HOUR_AGO))
    found = pacsd("check", "--json", *flags)
    assert found.returncode == 1
    findings = json.loads(found.stdout)
    assert findings["unindexed"] == ["Crash/b.dcm"] and findings["consistent"] is False

    repaired = pacsd("check", "--repair", *flags)
    assert repaired.returncode == 0 and "repaired 1" in repaired.stdout, repaired.stdout + repaired.stderr
    assert not orphan.exists()
    assert pacsd("check", *flags).returncode == 0
