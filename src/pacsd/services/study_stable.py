"""Study-stable events: a study is stable once no instance has arrived for `stable_after` seconds.

`StudyStableDetector` polls the index.  A study is pending while its `stable_at` is older than its
`updated_at`; firing sets `stable_at` and writes one `study-stable` change row in the same
transaction, conditional on the study being unchanged, so several nodes sharing a database fire
once; the same update claims the study's end-of-study work for the node that fired
(`pacsd.services.end_of_study`).  Pending studies are found again after a restart because the state
lives in the index.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine

from pacsd.index.repository import QuietStudy, mark_study_stable, quiet_studies

log = logging.getLogger(__name__)

# How far back each poll looks beyond the last cutoff: covers commits that land late (group
# commit) and clocks of several nodes that disagree a little.
LATE_COMMIT_MARGIN = timedelta(seconds=60)


class StudyStableDetector:
    """Background thread: finds quiet studies, records `study-stable`, calls `on_stable(uid)`."""

    def __init__(self, engine: Engine, stable_after: float, on_stable: Callable[[str], object] = lambda uid: None,
                 poll_interval: float | None = None, node: str = "") -> None:
        self.engine = engine
        self.node = node
        self.stable_after = timedelta(seconds=stable_after)
        self.on_stable = on_stable
        self.poll_interval = poll_interval or min(1.0, max(0.05, stable_after / 4))
        self._since: datetime | None = None  # None: look at every study (the first pass re-arms)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="study-stable", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.check()
            except Exception:
                log.exception("study-stable check failed; trying again")

    def check(self, now: datetime | None = None) -> list[str]:
        """One pass: fire every study quiet since the cutoff; return the UIDs this call fired."""
        now = now or datetime.now(timezone.utc)
        cutoff = now - self.stable_after
        candidates = quiet_studies(self.engine, cutoff, self._since)
        fired = [row.study_uid for row in candidates if self._fire(row, now)]
        self._since = cutoff - LATE_COMMIT_MARGIN
        for study_uid in fired:
            try:
                self.on_stable(study_uid)
            except Exception:
                log.exception("study-stable handling of %s failed", study_uid)
        return fired

    def _fire(self, row: QuietStudy, now: datetime) -> bool:
        """Mark one study stable unless it changed or another node did it first."""
        if not mark_study_stable(self.engine, row, self.node, now):
            return False
        log.info("study %s is stable", row.study_uid)
        return True
