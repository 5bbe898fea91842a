"""The order in which instances arrive in their series, for layouts that number files by it.

Counted in memory per series, seeded from the index's instance count the first time a series
is seen (so numbering goes on after a restart); gaps are possible, repeats only across nodes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from sqlalchemy import Engine

from pacsd.index.repository import series_instance_count


class SeriesArrivals:
    """`next(series_uid)` -> 1, 2, 3, ... for the instances of one series, in arrival order."""

    def __init__(self, engine: Engine, remembered: int = 4096) -> None:
        self.engine = engine
        self.remembered = remembered
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def next(self, series_uid: str) -> int:
        with self._lock:
            if series_uid not in self._counts:
                self._counts[series_uid] = self._indexed(series_uid)
                while len(self._counts) > self.remembered:
                    self._counts.popitem(last=False)
            self._counts.move_to_end(series_uid)
            self._counts[series_uid] += 1
            return self._counts[series_uid]

    def _indexed(self, series_uid: str) -> int:
        return series_instance_count(self.engine, series_uid)
