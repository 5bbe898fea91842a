"""Background jobs off the C-STORE path: hooks and scan sheets run on a few worker threads.

A job's exception is logged with what it was doing and never reaches the caller; `close()`
waits for the jobs already queued, or with `cancel_pending` only for those already running.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger(__name__)


class StopRequested(Exception):
    """A job saw a stop request before it had done anything lasting: it is left for later."""


class WorkQueue:
    def __init__(self, workers: int = 2, name: str = "pacsd-work") -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)

    def submit(self, what: str, job: Callable[[], object]) -> Future:
        def guarded() -> object:
            try:
                return job()
            except Exception:
                log.exception("background job failed: %s", what)
                return None

        return self._pool.submit(guarded)

    def close(self, cancel_pending: bool = False) -> None:
        """Wait for the jobs running and, unless `cancel_pending`, for the queued ones too."""
        self._pool.shutdown(wait=True, cancel_futures=cancel_pending)
