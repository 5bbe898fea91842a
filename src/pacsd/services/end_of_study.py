"""End-of-study work of a stable study (scan sheet, then `on_study_stable`), pending in the index
from the stable mark (which claims it for the marking node) until done: at start-up a node runs
again what it had claimed, and what another node claimed over `TAKE_OVER_AFTER` ago.
`request_stop()` ends the work promptly: jobs not started stay pending for the next start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine

from pacsd.index.repository import (
    EndOfStudyClaim,
    claim_end_of_study,
    end_of_study_done,
    end_of_study_pending,
    study_stable_at,
)
from pacsd.services.actionlog import ActionLog
from pacsd.services.workqueue import StopRequested, WorkQueue

log = logging.getLogger(__name__)

# Another node's claim this old is taken to be abandoned (it crashed and has not come back).
TAKE_OVER_AFTER = timedelta(hours=1)

class EndOfStudyWork:
    """Queues each stable study's work on its own pool and records when it is done."""

    def __init__(self, engine: Engine, node: str, work: WorkQueue, actions: ActionLog,
                 steps: list[tuple[str, Callable[[str], object]]], stop: threading.Event | None = None) -> None:
        """`steps`: (what, function of the study UID), run in order; one failing is logged and
        does not stop the next.  `stop` (set by `request_stop`) may be shared with the steps: one
        that sees it before doing anything lasting raises `StopRequested`."""
        self.engine, self.node, self.work, self.actions = engine, node, work, actions
        self.steps = steps
        self.stop = stop if stop is not None else threading.Event()

    def request_stop(self) -> None:
        """Stop promptly (returns at once, from any thread): no job starts any more, a scan sheet
        still being drawn is given up, and a job whose sheet is written goes on to its other steps
        (an `on_study_stable` hook runs to its end or its timeout).  What is not done stays pending
        in the index; `resume_pending` runs it, once, after the next start.  Then close the
        WorkQueue with `cancel_pending=True` (`Archive.close` does both)."""
        self.stop.set()

    def study_stable(self, study_uid: str) -> Future:
        """The detector marked the study stable and claimed its work for this node: queue it."""
        self.actions.record("study-stable", study=study_uid)
        return self._queue(study_uid)

    def resume_pending(self, now: datetime | None = None) -> list[str]:
        """Claim and queue the work a crash left undone: this node's own, and other nodes' claims
        older than `TAKE_OVER_AFTER`.  Each claim is a conditional update: one node wins."""
        now = now or datetime.now(timezone.utc)
        resumed = [row.study_uid for row in end_of_study_pending(self.engine)
                   if self._claimable(row, now) and claim_end_of_study(self.engine, row, self.node, now)]
        for study_uid in resumed:
            log.info("end-of-study work of %s was left undone: running it now", study_uid)
            self.actions.record("end-of-study-resumed", study=study_uid)
            self._queue(study_uid)
        return resumed

    def _claimable(self, row: EndOfStudyClaim, now: datetime) -> bool:
        claimed_at = _aware(row.end_work_claimed_at)
        return row.end_work_node == self.node or claimed_at is None or claimed_at < now - TAKE_OVER_AFTER

    def _queue(self, study_uid: str) -> Future:
        return self.work.submit(f"end of study {study_uid}", lambda: self.run(study_uid))

    def run(self, study_uid: str) -> None:
        """Run the steps now, then record the work done for the stable mark they started from."""
        if self.stop.is_set():
            log.debug("end-of-study work of %s left for the next start: stopping", study_uid)
            return
        stable_at = study_stable_at(self.engine, study_uid)
        for what, step in self.steps:
            try:
                step(study_uid)
            except StopRequested:
                log.debug("%s of %s given up and left for the next start: stopping", what, study_uid)
                return
            except Exception as exc:
                log.exception("%s of %s failed", what, study_uid)
                self.actions.record(f"{what}-failed", study=study_uid, error=exc)
        if stable_at is None:
            return  # deleted meanwhile, or never marked
        end_of_study_done(self.engine, study_uid, stable_at)


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back (stored as UTC)."""
    return moment.replace(tzinfo=timezone.utc) if moment is not None and moment.tzinfo is None else moment
