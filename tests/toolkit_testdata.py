"""Shared helpers of the toolkit tests: where the real test files live and how to list them.

The files live in tests/data/dicom (or $PACSD_TESTDATA), described by its MANIFEST.tsv.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TESTDATA


@dataclass(frozen=True)
class ManifestRow:
    """One test file as MANIFEST.tsv describes it."""

    path: Path
    sop_class_name: str
    transfer_syntax_name: str
    rows: int | None
    columns: int | None
    frames: int | None

    @property
    def has_image(self) -> bool:
        return bool(self.frames)


def manifest() -> list[ManifestRow]:
    """Every file of the test data, with its expected size and frame count."""
    with open(TESTDATA / "MANIFEST.tsv", newline="", encoding="utf-8") as handle:
        return [_row(record) for record in csv.DictReader(handle, delimiter="\t")]


def _row(record: dict[str, str]) -> ManifestRow:
    size = record["rows_x_cols_x_frames"]
    rows = columns = frames = None
    if size != "-":
        rows, columns, frames = (int(part) for part in size.split("x"))
    return ManifestRow(
        TESTDATA / record["path"],
        record["sop_class_name"],
        record["transfer_syntax_name"],
        rows,
        columns,
        frames,
    )


def data_file(relative: str) -> Path:
    """A test file by its path relative to the test data folder."""
    return TESTDATA / relative


def run_tool(*command: str | os.PathLike) -> subprocess.CompletedProcess:
    """Run a DCMTK / dicom3tools program; fail (not skip) when it is not installed."""
    if shutil.which(str(command[0])) is None:
        pytest.fail(f"{command[0]} not installed: run scripts/install-system-deps.sh test")
    return subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=60, check=False
    )
