"""Time study-level C-FIND and QIDO-RS over an index of synthetic instances (100,000 by default).

Each query runs end to end through DCMTK findscu against an in-process pacsd, through the Python
service call (`QueryService.find`), and as a QIDO-RS study search over HTTP; medians are printed.
The floor column is the same findscu run against a peer that answers at once with pacsd's recorded
bytes (`bench/instant_scp.py`): what any server would get here, whose share is then zero.
Targets: under 50 ms on SQLite at 100,000 instances, under 100 ms on PostgreSQL at 1,000,000.
Usage: python bench/find.py [--studies 10000] [--repeat 15] [--database URL|temp]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import MAX_RESULTS, arguments, median_ms, medians_by_turns, synthetic_pacs, web_server  # noqa: E402
from bench.instant_scp import InstantScp, record  # noqa: E402

from pacsd.services.query import QueryService  # noqa: E402
from tests.conftest import HOST  # noqa: E402

QUERIES = {
    "PatientName wildcard": {"PatientName": "DOE^*"},
    "StudyDate range": {"StudyDate": "20150101-20150110"},
    "exact PatientID": {"PatientID": "PID0000042"},
}
RETURN_KEYS = ["PatientName", "PatientID", "StudyDate", "StudyDescription", "ModalitiesInStudy",
               "NumberOfStudyRelatedInstances", "StudyInstanceUID", "AccessionNumber"]
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def main() -> None:
    args = arguments(default_studies=10_000)
    with synthetic_pacs(args.studies, args.database) as pacs, web_server(pacs) as dicomweb, \
            httpx.Client(timeout=60) as http:
        service = QueryService(pacs.archive.engine, "PACSD", max_results=MAX_RESULTS)
        echo = ["echoscu", "-aec", pacs.aet, HOST, str(pacs.port)]
        echo_ms, _ = median_ms(lambda: subprocess.run(echo, check=True, env=DCMTK_ENV) and 0, args.repeat)
        print(f"echoscu (association, C-ECHO, release; the floor of any findscu run): {echo_ms:.1f} ms")
        print(f"medians of {args.repeat}; findscu -v -sr (responses counted, not printed)")
        print(f"{'query':24} {'answers':>8} {'findscu ms':>11} {'floor ms':>9} {'service ms':>11} {'QIDO ms':>8}")
        for name, keys in QUERIES.items():
            all_keys = {k: "" for k in RETURN_KEYS} | keys

            def findscu(port: int, all_keys: dict = all_keys) -> list[str]:
                return ["findscu", "-S", "-v", "-sr", "-aec", pacs.aet, HOST, str(port), "-k", "QueryRetrieveLevel=STUDY",
                        *(arg for k, v in all_keys.items() for arg in ("-k", f"{k}={v}"))]

            def via_findscu(port: int = pacs.port) -> int:
                out = subprocess.run(findscu(port), capture_output=True, text=True, check=True, env=DCMTK_ENV)
                return out.stderr.count("Received Find Response ")

            def via_service(all_keys: dict = all_keys) -> int:
                return sum(1 for _ in service.find("STUDY", all_keys))

            def via_qido(keys: dict = keys) -> int:
                params = {**keys, "includefield": ",".join(RETURN_KEYS)}
                return len(http.get(f"{dicomweb}/studies", params=params).raise_for_status().json())

            with InstantScp(record(findscu, pacs.port, DCMTK_ENV)) as instant:  # run by turns: drift hits both
                (dcmtk_ms, dcmtk_count), (floor_ms, floor_count) = medians_by_turns(
                    [via_findscu, lambda: via_findscu(instant.port)], args.repeat)
            service_ms, count = median_ms(via_service, args.repeat)
            qido_ms, qido_count = median_ms(via_qido, args.repeat)
            assert dcmtk_count == floor_count == count == qido_count, (dcmtk_count, floor_count, count, qido_count)
            print(f"{name:24} {count:>8} {dcmtk_ms:>11.1f} {floor_ms:>9.1f} {service_ms:>11.1f} {qido_ms:>8.1f}")


if __name__ == "__main__":
    main()
