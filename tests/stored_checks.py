"""What every "send the shared test data" test checks: each accepted file stored intact, once.

`storable_testdata` picks the test files pacsd must accept; `assert_all_stored` proves each is
stored with its dataset byte-identical to what was sent, indexed once, under the right patient,
study and series.  Used for storescu, `pacsd send` and `pacsd import` alike.
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from pathlib import Path

from pydicom import dcmread
from sqlalchemy import select
from sqlalchemy.engine import Engine

from pacsd.index.schema import instances, patients, series, studies
from tests.conftest import TESTDATA, shared_testdata_files


def dataset_bytes(path: Path) -> bytes:
    """The encoded dataset after the file meta information (what a C-STORE carries)."""
    data = path.read_bytes()
    meta = dcmread(path, stop_before_pixels=True).file_meta
    meta_end = 132 + 12 + int(meta.FileMetaInformationGroupLength)
    return data[meta_end:]


_REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
_UI_VALUE = re.compile(r"(?=.{1,64}$)[0-9]+(\.[0-9]+)*")


def storable_testdata() -> dict[str, Path]:
    """SOP Instance UID -> file, for the test files pacsd must accept, decided without pacsd:
    pydicom reads the whole file (no force), the four UIDs a stored instance is filed under are
    there and are UI values by PS3.5 6.2 (digits and dots, at most 64 characters; leading zeros in
    a component, which PS3.5 9.1 forbids but old modalities write, are accepted), and the test
    data's MANIFEST does not describe it as truncated.  A UID in several files: the first file (by
    path) is expected."""
    damaged = {row["path"] for row in _manifest() if re.search(r"\btruncated\b", row["notes"])}
    chosen: dict[str, Path] = {}
    for path in shared_testdata_files():
        if path.relative_to(TESTDATA).as_posix() in damaged:
            continue
        try:
            with warnings.catch_warnings():  # pydicom warns of odd values it still reads
                warnings.simplefilter("ignore")
                dataset = dcmread(path)
                for element in dataset.iterall():
                    element.value  # noqa: B018 - parse every element: a damaged one raises here
        except Exception:  # pydicom raises several types for files it cannot read
            continue
        uids = [str(dataset.get(keyword, "") or "") for keyword in _REQUIRED_UIDS]
        if all(_UI_VALUE.fullmatch(uid) for uid in uids):
            chosen.setdefault(uids[1], path)
    return chosen


def _manifest() -> list[dict[str, str]]:
    with open(TESTDATA / "MANIFEST.tsv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def assert_all_stored(engine: Engine, storage: Path, expected: dict[str, Path],
                      sent: dict[str, bytes | tuple[bytes, ...]]) -> None:
    """Exactly the `expected` instances are indexed, once each, their files holding `sent`.

    A UID sent in several files (duplicates kept by policy) maps to a tuple: any one may win."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(instances.c.sop_uid, instances.c.path, series.c.series_uid, studies.c.study_uid,
                   patients.c.patient_id, instances.c.header_json)
            .join(series, instances.c.series_pk == series.c.pk)
            .join(studies, series.c.study_pk == studies.c.pk)
            .join(patients, studies.c.patient_pk == patients.c.pk)
        ).all()
    by_uid = {row.sop_uid: row for row in rows}
    assert len(rows) == len(by_uid), "an instance is indexed twice"
    assert set(by_uid) == set(expected)
    for uid, source in expected.items():
        row = by_uid[uid]
        stored = storage / row.path
        acceptable = sent[uid] if isinstance(sent[uid], tuple) else (sent[uid],)
        assert dataset_bytes(stored) in acceptable, f"{source.name}: stored dataset differs from what was sent"
        original = dcmread(source, stop_before_pixels=True)
        assert row.study_uid == original.StudyInstanceUID
        assert row.series_uid == original.SeriesInstanceUID
        assert row.patient_id == str(original.get("PatientID", ""))
        assert json.loads(row.header_json)["00080018"]["Value"] == [uid]
    assert sorted((storage / ".incoming").iterdir()) == []
