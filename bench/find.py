"""Time study-level C-FIND over an index of 100,000 synthetic instances.

Each query runs end to end through DCMTK findscu against an in-process pacsd, and through the
Python service call (`QueryService.find`); medians are printed.  Target: under 50 ms.
Usage: python bench/find.py [--studies 10000] [--repeat 15]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pacsd.services.query import QueryService  # noqa: E402
from bench.harness import arguments, median_ms, synthetic_pacs  # noqa: E402
from tests.conftest import HOST  # noqa: E402

QUERIES = {
    "PatientName wildcard": {"PatientName": "DOE^*"},
    "StudyDate range": {"StudyDate": "20150101-20150110"},
    "exact PatientID": {"PatientID": "PID0000042"},
}
RETURN_KEYS = ["PatientName", "PatientID", "StudyDate", "StudyDescription", "ModalitiesInStudy",
               "NumberOfStudyRelatedInstances", "StudyInstanceUID", "AccessionNumber"]


def main() -> None:
    args = arguments(default_studies=10_000)
    with synthetic_pacs(args.studies) as pacs:
        service = QueryService(pacs.archive.engine, "PACSD")
        echo = ["echoscu", "-aec", pacs.aet, HOST, str(pacs.port)]
        echo_ms, _ = median_ms(lambda: subprocess.run(echo, check=True, env={**os.environ, "TCP_NODELAY": "1"})
                               and 0, args.repeat)
        print(f"echoscu (association, C-ECHO, release; the floor of any findscu run): {echo_ms:.1f} ms")
        print(f"{'query':24} {'answers':>8} {'findscu ms':>11} {'service ms':>11}")
        for name, keys in QUERIES.items():
            all_keys = {k: "" for k in RETURN_KEYS} | keys
            findscu = ["findscu", "-S", "-aec", pacs.aet, HOST, str(pacs.port), "-k", "QueryRetrieveLevel=STUDY",
                       *(arg for k, v in all_keys.items() for arg in ("-k", f"{k}={v}"))]

            def via_findscu() -> int:
                out = subprocess.run([*findscu, "-v"], capture_output=True, text=True, check=True,
                                     env={**os.environ, "TCP_NODELAY": "1"})
                return out.stderr.count("Find Response:")

            def via_service() -> int:
                return sum(1 for _ in service.find("STUDY", all_keys))

            dcmtk_ms, dcmtk_count = median_ms(via_findscu, args.repeat)
            service_ms, count = median_ms(via_service, args.repeat)
            assert dcmtk_count == count, (dcmtk_count, count)
            print(f"{name:24} {count:>8} {dcmtk_ms:>11.1f} {service_ms:>11.1f}")


if __name__ == "__main__":
    main()
