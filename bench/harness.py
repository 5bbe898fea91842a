"""What the query benchmarks share: their command-line arguments, an in-process pacsd whose index
(SQLite, or PostgreSQL with --database) is filled with synthetic rows (tests/synthetic_index.py),
a web server in front of it, and the median of repeated runs."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import psycopg
from sqlalchemy import make_url

from pacsd.web.server import WebServer
from tests.conftest import HOST, RunningPacs, make_settings, start_pacs
from tests.postgres import PostgresServer
from tests.synthetic_index import fill_index

Result = TypeVar("Result")
THROW_AWAY = "temp"
MAX_RESULTS = 100  # the result limit setting: a query "returning up to 100 studies" at any index size


def arguments(default_studies: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=default_studies, help="synthetic studies of 10 instances each")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--database", default=None,
                        help=f"PostgreSQL server URL (a fresh database is made on it and dropped after), or "
                             f"'{THROW_AWAY}' for a throw-away server started from Debian's binaries; "
                             f"default: SQLite")
    return parser.parse_args()


@contextmanager
def synthetic_pacs(studies: int, database: str | None = None) -> Iterator[RunningPacs]:
    """A running pacsd (no fsync, no web login, at most MAX_RESULTS answers) whose index holds
    `studies` synthetic studies of 10 instances, on SQLite or on a fresh PostgreSQL database of the
    server `database`."""
    with tempfile.TemporaryDirectory() as tmp, _index_database(database) as url:
        # No login: requests are timed without the per-request check of HTTP Basic credentials
        # (an argon2 verification by design), as a browser's session cookie would be.
        sections = {"storage": {"fsync": False}, "web": {"login": False},
                    "query_retrieve": {"max_results": MAX_RESULTS}}
        if url:
            sections["database"] = {"url": url}
        pacs = start_pacs(make_settings(Path(tmp), **sections))
        try:
            start = time.perf_counter()
            fill_index(pacs.archive.engine, studies, per_study=10)
            backend = pacs.archive.engine.dialect.name
            print(f"{backend} index of {studies * 10:,} synthetic instances filled in "
                  f"{time.perf_counter() - start:.1f} s")
            yield pacs
        finally:
            pacs.stop()
            pacs.archive.engine.dispose()


@contextmanager
def _index_database(database: str | None) -> Iterator[str | None]:
    """None for SQLite; else the URL of a new database on the server (dropped afterwards)."""
    if database is None:
        yield None
        return
    server = PostgresServer(None if database == THROW_AWAY else database).start()
    try:
        url = server.new_database()
        try:
            yield url
        finally:
            admin = make_url(server.admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')  # a name we made
    finally:
        server.stop()


@contextmanager
def web_server(pacs: RunningPacs) -> Iterator[str]:
    """The DICOMweb root of a web server on `pacs`, for as long as the block runs."""
    web = WebServer(pacs.archive, HOST, 0)
    web.start()
    try:
        yield f"http://{HOST}:{web.address[1]}/dicom-web"
    finally:
        web.stop()


def median_ms(run: Callable[[], Result], repeat: int) -> tuple[float, Result]:
    """Median wall time of `repeat` runs, in ms, and what the last run returned."""
    return medians_by_turns([run], repeat)[0]


def medians_by_turns(runs: list[Callable[[], Result]], repeat: int) -> list[tuple[float, Result]]:
    """`median_ms` of each run, the runs taking turns (one of each, `repeat` times), so that a
    machine getting busier or quieter meanwhile weighs on all of them alike."""
    times: list[list[float]] = [[] for _ in runs]
    results: list = [None] * len(runs)
    for _ in range(repeat):
        for i, run in enumerate(runs):
            start = time.perf_counter()
            results[i] = run()
            times[i].append((time.perf_counter() - start) * 1000)
    return [(statistics.median(t), result) for t, result in zip(times, results)]
