"""The background worker that checks commitment requests and delivers their reports.

It wakes when a request is answered, when a requester calls again, or when a retry falls due;
how a report reaches the requester is the `deliver` callable's business (the DICOM layer's).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Callable, Literal, NamedTuple

from pacsd.services.commitment import CommitmentJobs, Report

log = logging.getLogger(__name__)

_IDLE_WAKE = 60.0  # seconds: look for due work at least this often


class Delivery(NamedTuple):
    """How one delivery attempt went: `method` is same | new; `detail` says why it failed."""

    outcome: Literal["delivered", "failed", "no-route"]
    method: str = ""
    detail: str = ""


class CommitmentWorker:
    """One thread: due requests are checked, then their reports handed to `deliver`."""

    def __init__(self, jobs: CommitmentJobs, deliver: Callable[[Report], Delivery]) -> None:
        self.jobs = jobs
        self.deliver = deliver
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.jobs.schedule_all_after_restart()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="commitment-worker", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("commitment worker still busy at shutdown; its report is retried at next start")
        self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            pause = self._work_through_due()
            self._wake.wait(pause)

    def _work_through_due(self) -> float:
        """Process every due request; return how long to sleep before the next one is due."""
        try:
            for pk in self.jobs.due():
                if self._stopping.is_set():
                    return 0
                self._process(pk)
            next_due = self.jobs.next_due_at()
        except Exception:
            log.exception("commitment worker: the index failed; trying again later")
            return self.jobs.settings.retry_first_delay
        if next_due is None:
            return _IDLE_WAKE
        return min(_IDLE_WAKE, max(0.0, (next_due - datetime.now(timezone.utc)).total_seconds()))

    def _process(self, pk: int) -> None:
        report = self.jobs.report(pk)
        try:
            delivery = self.deliver(report)
        except Exception as exc:  # a peer's misbehaviour must not stop the worker
            log.exception("commitment report %s: delivery raised", report.result.transaction_uid)
            delivery = Delivery("failed", "", f"{type(exc).__name__}: {exc}")
        if delivery.outcome == "delivered":
            self.jobs.delivered(report, delivery.method)
        elif delivery.outcome == "failed":
            self.jobs.failed(report, delivery.method, delivery.detail)
        else:
            self.jobs.wait_for_requester(report, delivery.detail)
