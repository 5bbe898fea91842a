"""The worker that checks commitment requests and delivers their reports.

The process that answered an N-ACTION (or that a requester called again) takes those requests
and hands them to its worker, which delivers them at once.  A worker that `sweeps` also
delivers every request that falls due: undelivered ones after a restart, retries of failed
ones, and those of a process that died holding them.  One process of a server sweeps (the
background process, or the only one); how a report reaches the requester is the `deliver`
callable's business (the DICOM layer's).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import datetime, timezone
from typing import Callable, Literal, NamedTuple

from pacsd.services.commitment import CLAIM_LEASE, CommitmentJobs, Report

log = logging.getLogger(__name__)

_IDLE_WAKE = 60.0  # seconds: a sweeping worker looks for due work at least this often


class Delivery(NamedTuple):
    """How one delivery attempt went: `method` is same | new; `detail` says why it failed."""

    outcome: Literal["delivered", "failed", "no-route"]
    method: str = ""
    detail: str = ""


class CommitmentWorker:
    """One thread: requests handed to it (taken by this process) and, when it `sweeps`, due ones
    are checked, then their reports handed to `deliver`."""

    def __init__(self, jobs: CommitmentJobs, deliver: Callable[[Report], Delivery], sweeps: bool = True) -> None:
        self.jobs = jobs
        self.deliver = deliver
        self.sweeps = sweeps
        # Other processes schedule retries too: a sweeper looks at least once per first retry delay.
        self._idle_wake = min(_IDLE_WAKE, jobs.settings.retry_first_delay)
        self._handed: deque[int] = deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.sweeps:
            self.jobs.schedule_all_after_restart()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="commitment-worker", daemon=True)
        self._thread.start()

    def hand(self, pks: list[int]) -> None:
        """Deliver these requests, which this process has taken (`CommitmentJobs.take`)."""
        self._handed.extend(pks)
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("commitment worker still busy at shutdown; its report is sent again once its claim "
                        "runs out (%d minutes)", CLAIM_LEASE.total_seconds() // 60)
        self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            pause = self._work_through_due()
            self._wake.wait(pause)

    def _work_through_due(self) -> float | None:
        """Deliver what was handed over, then (sweeping) every due request; return how long to
        sleep before the next one is due (None: until woken)."""
        try:
            while self._handed:
                if self._stopping.is_set():
                    return 0
                self._process(self._handed.popleft())
            if not self.sweeps:
                return None
            for pk in self.jobs.due():
                if self._stopping.is_set():
                    return 0
                if self.jobs.claim(pk):  # unless another process or node took it
                    self._process(pk)
            next_due = self.jobs.next_due_at()
        except Exception:  # a handed request whose delivery this cut short is swept after its lease
            log.exception("commitment worker: the index failed; trying again later")
            return self.jobs.settings.retry_first_delay
        if next_due is None:
            return self._idle_wake
        return min(self._idle_wake, max(0.0, (next_due - datetime.now(timezone.utc)).total_seconds()))

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
