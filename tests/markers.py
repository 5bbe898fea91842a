"""The suite's tiers (registered in pyproject.toml): markers put on every test at collection,
from the fixtures it uses and the tools its module drives, so a new test is sorted without anyone
marking it by hand.

`make test-fast` runs `-m "not slow and not browser and not postgres"`; `make test` runs all.
"""

from __future__ import annotations

import re
from functools import cache

import pytest

# Fixtures that start a pacsd (in-process or the real command), or the web server beside one.
SERVER_FIXTURES = {"pacs", "pacs_factory", "pacs_process", "web", "shared_pacs", "shared_pacs_factory",
                   "shared_web", "shared_pacs_process"}
# Fixtures that start the whole `pacsd serve` process tree (several processes, ~2-3 s a start).
PROCESS_FIXTURES = {"pacs_process", "shared_pacs_process"}
BROWSER_FIXTURES = {"browser", "page"}

# Helpers and names in a module's source that start a server or run a DCMTK tool.
_STARTS_A_SERVER = re.compile(r"\b(start_pacs|PacsProcess|DicomServer|WebServer)\(")
_RUNS_DCMTK = re.compile(
    r"\bdcmtk\(|(?<![-\w])(storescu|findscu|movescu|getscu|echoscu|storescp|dcmdump|dciodvfy|dcmodify"
    r"|dcmcjpeg|dcmdjpeg|dcmconv|dcmgpdir|dcmmkdir|img2dcm|dcm2json|dcm2xml)\b"
    r"|\btests\.(qr_support|sender_preference|studies)\b")
_RUNS_A_BROWSER = re.compile(r"\bplaywright\b")
# The `pacsd` command in a subprocess (~1 s of start-up each) or a private network namespace.
_RUNS_THE_COMMAND = re.compile(r"\bVENV_BIN\b|\bunshare\b|\btests\.(qr_support|sender_preference|test_tools)\b")


@cache
def _module_source(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as source:
            return source.read()
    except OSError:
        return ""


def tiers_of(item) -> set[str]:
    """The tier markers of one collected test."""
    fixtures = set(getattr(item, "fixturenames", ()))
    source = _module_source(str(item.path))
    params = getattr(getattr(item, "callspec", None), "params", {})
    tiers = set()
    if fixtures & SERVER_FIXTURES or _STARTS_A_SERVER.search(source):
        tiers.add("dicom")
    if _RUNS_DCMTK.search(source):
        tiers.add("dcmtk")
    if "postgres_server" in fixtures or params.get("index_backend") == "postgresql":
        tiers.add("postgres")
    if fixtures & BROWSER_FIXTURES or _RUNS_A_BROWSER.search(source):
        tiers.add("browser")
    if fixtures & PROCESS_FIXTURES or "browser" in tiers or _RUNS_THE_COMMAND.search(source):
        tiers.add("slow")
    if not tiers:
        tiers.add("unit")
    return tiers


def mark_tiers(items) -> None:
    for item in items:
        present = {mark.name for mark in item.iter_markers()}
        for tier in sorted(tiers_of(item) - present):
            item.add_marker(getattr(pytest.mark, tier))


def slow_first(items) -> None:
    """Slow tests first (otherwise in the order pytest chose): with several workers, the longest
    tests start at once instead of leaving one worker busy with them after the others are done."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
