"""Time DICOMweb over HTTP at 100,000 instances: QIDO-RS study searches and the WADO-RS metadata
of one 500-instance series.  Targets: QIDO under 50 ms, that metadata under 200 ms (medians).

The index is filled directly (tests/synthetic_index.py) plus one series of 500 instances whose
stored headers are the real header of a CT from the shared test data.
Usage: python bench/dicomweb.py [--studies 9950] [--repeat 15] [--database URL|temp]
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import httpx
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import arguments, median_ms, synthetic_pacs, web_server  # noqa: E402

from pacsd.dicom.header import read_header  # noqa: E402
from pacsd.index.schema import instances, patients, series, studies  # noqa: E402
from pacsd.services.ingest import header_json  # noqa: E402
from tests.conftest import TESTDATA  # noqa: E402

BIG_SERIES = 500
STUDY_QUERIES = {
    "first page (as OHIF opens)": {"limit": "101", "offset": "0"},
    "PatientName wildcard": {"PatientName": "DOE*", "limit": "101"},
    "StudyDate range": {"StudyDate": "20150101-20150110"},
    "exact PatientID": {"PatientID": "PID0000042"},
}


def add_big_series(engine, n_studies: int) -> tuple[str, str]:
    """One more study with one series of BIG_SERIES instances carrying a real CT header."""
    text = header_json(read_header(TESTDATA / "dicompyler-core" / "ct.0.dcm").dataset)
    now = datetime.now(timezone.utc)
    study_uid, series_uid = f"2.25.{n_studies + 1}", f"2.25.{n_studies + 1}.1"
    with engine.begin() as conn:
        patient = conn.execute(insert(patients).values(
            patient_id="PID-BIG", patient_name="BIG^SERIES", patient_name_upper="BIG^SERIES",
            num_studies=1, num_series=1, num_instances=BIG_SERIES, updated_at=now)).inserted_primary_key[0]
        study = conn.execute(insert(studies).values(
            study_uid=study_uid, patient_pk=patient, modalities="CT", num_series=1, num_instances=BIG_SERIES,
            created_at=now, updated_at=now)).inserted_primary_key[0]
        series_pk = conn.execute(insert(series).values(
            series_uid=series_uid, study_pk=study, modality="CT", num_instances=BIG_SERIES,
            updated_at=now)).inserted_primary_key[0]
        conn.execute(insert(instances), [
            {"sop_uid": f"{series_uid}.{i}", "series_pk": series_pk, "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
             "instance_number": i, "transfer_syntax": "1.2.840.10008.1.2", "path": f"none/big/{i}.dcm",
             "size_bytes": 525682, "received_at": now, "header_json": text} for i in range(BIG_SERIES)])
    return study_uid, series_uid


def main() -> None:
    args = arguments(default_studies=9_950)
    with synthetic_pacs(args.studies, args.database) as pacs:
        study_uid, series_uid = add_big_series(pacs.archive.engine, args.studies)
        print(f"+ one series of {BIG_SERIES} CT instances; medians of {args.repeat} requests over HTTP (keep-alive)")
        with web_server(pacs) as base:
            with httpx.Client(timeout=60) as http:
                for name, params in STUDY_QUERIES.items():
                    ms, response = median_ms(lambda params=params: http.get(f"{base}/studies", params=params).raise_for_status(),
                                             args.repeat)
                    print(f"QIDO studies, {name:28} {len(response.json()):>5} answers {ms:8.1f} ms  (target 50)")
                url = f"{base}/studies/{study_uid}/series/{series_uid}/metadata"
                ms, response = median_ms(lambda: http.get(url).raise_for_status(), args.repeat)
                size = len(response.content) / 1e6
                print(f"WADO-RS series metadata, {len(json.loads(response.content))} instances ({size:.1f} MB)"
                      f" {ms:8.1f} ms  (target 200)")


if __name__ == "__main__":
    main()
