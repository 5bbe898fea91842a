"""What the status page and `/metrics` report: live associations, recent connections (tail of
the connection log), ingest rate (from the changes feed), storage use, commitment requests.

Slow figures (bytes per modality, studies per day) are cached for a short while.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pacsd.index import stats
from pacsd.index.repository import recent_commitment_requests
from pacsd.services.archive import Archive
from pacsd.services.area_moves import area_report

RATE_WINDOW = 60.0  # seconds the ingest rate is averaged over
STORAGE_CACHE_SECONDS = 30.0
CHART_DAYS = 14


class IngestRate:
    """Instances stored per second, from the changes feed: each reading counts the new
    instance-stored rows since the last one (an index range scan, not a table count)."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.total = 0  # stored since this meter started
        self._seq = stats.last_change_seq(archive.engine)
        self._samples: deque[tuple[float, int]] = deque([(time.monotonic(), 0)])
        self._lock = threading.Lock()

    def read(self) -> dict:
        with self._lock:
            count, self._seq = stats.instances_stored_after(self.archive.engine, self._seq)
            self.total += count
            now = time.monotonic()
            self._samples.append((now, self.total))
            while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW:
                self._samples.popleft()
            then, total_then = self._samples[0]
            per_second = (self.total - total_then) / (now - then) if now > then else 0.0
        return {"per_second": round(per_second, 2), "since_start": self.total}


class StorageFigures:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self._cached: tuple[float, dict] | None = None
        self._lock = threading.Lock()

    def read(self) -> dict:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > STORAGE_CACHE_SECONDS:
                self._cached = (time.monotonic(), self._gather())
            return self._cached[1]

    def _gather(self) -> dict:
        used, free = self.archive.blobs.usage()
        today = datetime.now(timezone.utc).date()
        first = today - timedelta(days=CHART_DAYS - 1)
        counts = stats.studies_per_day(self.archive.engine, datetime.combine(first, datetime.min.time(), timezone.utc))
        days = [(first + timedelta(days=n)).isoformat() for n in range(CHART_DAYS)]
        return {"disk_used": used, "disk_free": free, "by_modality": stats.storage_by_modality(self.archive.engine),
                "areas": area_report(self.archive),
                "studies_per_day": [{"day": day, "studies": counts.get(day, 0)} for day in days]}


def active_associations(tracker) -> list[dict]:
    if tracker is None:
        return []
    now = time.monotonic()
    return [{"peer": a.peer, "calling_aet": a.calling_aet, "called_aet": a.called_aet, "state": a.result,
             "stored": a.stored, "failed": a.failed, "bytes": a.bytes, "seconds": round(now - a.started, 1)}
            for a in tracker.active()]


def tail_lines(path: Path, count: int = 20, block: int = 16384) -> list[str]:
    """The last `count` lines of a text file, read from its end."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            data = b""
            while size > 0 and data.count(b"\n") <= count:
                step = min(block, size)
                size -= step
                f.seek(size)
                data = f.read(step) + data
    except FileNotFoundError:
        return []
    return [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()][-count:][::-1]


def recent_connections(archive: Archive, count: int = 20) -> list[str]:
    logging_settings = archive.settings.logging
    return tail_lines(Path(logging_settings.directory) / logging_settings.connection_log, count)


def commitment_requests_recent(archive: Archive, count: int = 10) -> list[dict]:
    return [{**row, "received_at": row["received_at"].isoformat(timespec="seconds")}
            for row in recent_commitment_requests(archive.engine, count)]
