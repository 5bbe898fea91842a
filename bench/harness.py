"""What the query benchmarks share: their command-line arguments, an in-process pacsd whose index
is filled with synthetic rows (tests/synthetic_index.py), and the median of repeated runs."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from tests.conftest import RunningPacs, make_settings, start_pacs
from tests.synthetic_index import fill_index

Result = TypeVar("Result")


def arguments(default_studies: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=default_studies, help="synthetic studies of 10 instances each")
    parser.add_argument("--repeat", type=int, default=15)
    return parser.parse_args()


@contextmanager
def synthetic_pacs(studies: int) -> Iterator[RunningPacs]:
    """A running pacsd (no fsync) whose index holds `studies` synthetic studies of 10 instances."""
    with tempfile.TemporaryDirectory() as tmp:
        # No login: requests are timed without the per-request check of HTTP Basic credentials
        # (an argon2 verification by design), as a browser's session cookie would be.
        pacs = start_pacs(make_settings(Path(tmp), storage={"fsync": False}, web={"login": False}))
        try:
            start = time.perf_counter()
            fill_index(pacs.archive.engine, studies, per_study=10)
            print(f"index of {studies * 10:,} synthetic instances filled in {time.perf_counter() - start:.1f} s")
            yield pacs
        finally:
            pacs.stop()


def median_ms(run: Callable[[], Result], repeat: int) -> tuple[float, Result]:
    """Median wall time of `repeat` runs, in ms, and what the last run returned."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result
