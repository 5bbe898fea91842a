"""Recent problems for the status page: a logging handler keeping the last warnings and errors
of the process in memory (a ring buffer), installed once on the root logger.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

KEEP = 100


class RecentProblems(logging.Handler):
    def __init__(self, keep: int = KEEP) -> None:
        super().__init__(logging.WARNING)
        self._records: deque[dict] = deque(maxlen=keep)
        self._lock_records = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = {"at": record.created, "level": record.levelname, "logger": record.name,
                     "message": record.getMessage()[:1000]}
        except Exception:  # a bad format string must not break logging
            entry = {"at": time.time(), "level": record.levelname, "logger": record.name, "message": str(record.msg)}
        with self._lock_records:
            self._records.append(entry)

    def latest(self, count: int = 20) -> list[dict]:
        with self._lock_records:
            return list(self._records)[-count:][::-1]


_installed: RecentProblems | None = None
_install_lock = threading.Lock()


def recent_problems() -> RecentProblems:
    """The process's handler, attached to the root logger (again, if logging was set up anew)."""
    global _installed
    with _install_lock:
        if _installed is None:
            _installed = RecentProblems()
        root = logging.getLogger()
        if _installed not in root.handlers:
            root.addHandler(_installed)
        return _installed
