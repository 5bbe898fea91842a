"""Hostile wildcard patterns (issue 21, point 2): matching a key in Python is linear in the
value's length whatever the pattern, so a QIDO search or a C-FIND with `*?*?*?...!` costs about
what a plain search costs, and does not hold up the web server's other requests meanwhile."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from pacsd.services.importer import import_file
from tests.conftest import HOST, dcmtk
from tests.dicomweb_support import (
    dicomweb_admin,  # noqa: F401 (an autouse fixture)
    http,
)
from tests.studies import write_study

LONG_NAME = "A" * 64
HOSTILE = "*?" * 7 + "!"  # each '*?' pair multiplied a backtracking matcher's time by ~9
PLAIN = "B*"


@pytest.fixture
def studies(pacs, tmp_path):
    for number in range(5):
        for path in write_study(tmp_path / str(number), per_series=1, ReferringPhysicianName=LONG_NAME,
                                InstitutionName=LONG_NAME, PatientID=f"P{number}"):
            assert import_file(pacs.archive, path).ok


def _search_time(web: str, key: str, pattern: str) -> float:
    started = time.perf_counter()
    answer = http.get(f"{web}/dicom-web/studies", params={key: pattern}, timeout=300)
    elapsed = time.perf_counter() - started
    assert answer.status_code in (200, 204) and not (answer.content and answer.json())
    return elapsed


@pytest.mark.parametrize("key", ["ReferringPhysicianName", "InstitutionName"])
def test_a_hostile_pattern_costs_about_what_a_plain_one_costs(web, studies, key):
    """A time budget as a ratio to a plain query on the same server (never an absolute time)."""
    plain = min(_search_time(web, key, PLAIN) for _ in range(3))
    hostile = min(_search_time(web, key, HOSTILE) for _ in range(3))
    assert hostile < 10 * plain + 0.05, f"hostile pattern {hostile:.3f} s vs plain {plain:.3f} s"


def test_a_hostile_pattern_does_not_hold_up_other_requests_or_dicom(web, pacs, studies):
    hostile_calls = [threading.Thread(target=_search_time, args=(web, key, "*?" * 9 + "!"), daemon=True)
                     for key in ("ReferringPhysicianName", "InstitutionName")]
    for call in hostile_calls:
        call.start()
    try:
        assert httpx.get(f"{web}/healthz", timeout=5).status_code == 200
        echo = dcmtk("echoscu", "-to", "5", "-ta", "5", "-td", "5", "-aec", pacs.aet, HOST, str(pacs.port),
                     timeout=10)
        assert echo.returncode == 0, echo.stderr
        found = dcmtk("findscu", "-S", "-to", "5", "-ta", "5", "-td", "5", "-aec", pacs.aet,
                      "-k", "QueryRetrieveLevel=STUDY", "-k", f"ReferringPhysicianName={'*?' * 9}!",
                      HOST, str(pacs.port), timeout=10)
        assert found.returncode == 0, found.stderr
    finally:
        for call in hostile_calls:
            call.join(timeout=1)
