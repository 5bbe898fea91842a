"""The test data ships with the repository: every file listed, licensed and checksummed, and the
suite collects from a plain copy of the repository with nothing beside it (no ../shared).

A copy without the data folder stops with one clear line, not a crash during collection.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TESTDATA, shared_testdata_files

REPO_DATA = REPO / "tests" / "data" / "dicom"


def _checksums() -> dict[str, str]:
    lines = (REPO_DATA / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split(maxsplit=1) for line in lines if line.strip())}


def _data_files() -> set[str]:
    return {p.relative_to(REPO_DATA).as_posix() for p in REPO_DATA.rglob("*") if p.is_file()
            and p.name not in ("MANIFEST.tsv", "LICENSES.md", "SHA256SUMS")}


def test_every_data_file_is_listed_licensed_and_intact():
    with open(REPO_DATA / "MANIFEST.tsv", newline="", encoding="utf-8") as handle:
        manifest = {row["path"]: row for row in csv.DictReader(handle, delimiter="\t")}
    checksums = _checksums()
    licences = (REPO_DATA / "LICENSES.md").read_text(encoding="utf-8")
    files = _data_files()
    assert len(files) >= 40
    assert set(manifest) == files == set(checksums)
    for name in files:
        assert hashlib.sha256((REPO_DATA / name).read_bytes()).hexdigest() == checksums[name], name
        assert f"`{name}`" in licences, f"{name} has no licence entry in LICENSES.md"
        assert manifest[name]["source"].strip(), f"{name} has no source in MANIFEST.tsv"


def test_the_suite_uses_the_repository_copy_unless_told_otherwise():
    if not os.environ.get("PACSD_TESTDATA"):
        assert TESTDATA == REPO_DATA
    assert {p.relative_to(TESTDATA).as_posix() for p in shared_testdata_files()} == _data_files()


def _plain_copy(destination: Path) -> Path:
    """The repository's files (tracked, or new and not ignored) copied alone under destination."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    clone = destination / "pacsd"
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    return clone


def _collect(clone: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("PACSD_TESTDATA", "PYTHONPATH")}
    return subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # collects the whole suite in a second pytest
def test_a_plain_copy_of_the_repository_collects_the_whole_suite(tmp_path):
    clone = _plain_copy(tmp_path)
    assert not (clone.parent / "shared").exists()
    result = _collect(clone)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "error" not in result.stdout.splitlines()[-1].lower(), result.stdout[-3000:]
    # the data-driven tests were collected from the copy's own data, not skipped for want of files
    assert "test_rawheader.py::" in result.stdout and "test_toolkit_render.py::" in result.stdout


def test_a_copy_without_the_data_folder_says_so_in_one_line(tmp_path):
    clone = _plain_copy(tmp_path)
    shutil.rmtree(clone / "tests" / "data")
    result = _collect(clone)
    assert result.returncode == 4, result.stdout[-3000:] + result.stderr[-3000:]
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output and "during collection" not in output, output
    assert output.splitlines() == [f"ERROR: pacsd test data not found: {clone / 'tests' / 'data' / 'dicom' / 'MANIFEST.tsv'}"
                                   " is missing (it ships in tests/data/dicom; PACSD_TESTDATA names another copy)"]
