"""Background jobs the web interface starts (sending a study or series to an AE, having a
remote PACS move a study), with the progress and result their page polls.  Kept in memory: a restart forgets finished jobs.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)
KEEP_FINISHED = 200


@dataclass
class Job:
    id: int
    title: str
    owner: str
    total: int = 0
    done: int = 0
    failed: int = 0
    state: str = "running"  # running | finished | failed
    message: str = ""
    problems: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def as_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "total": self.total, "done": self.done, "failed": self.failed,
                "state": self.state, "message": self.message, "problems": self.problems[:20]}


class Jobs:
    def __init__(self) -> None:
        self._jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, title: str, owner: str, work: Callable[[Job], None]) -> Job:
        job = Job(next(self._ids), title, owner)
        with self._lock:
            self._jobs[job.id] = job
            finished = [j.id for j in self._jobs.values() if j.state != "running"]
            for old in finished[:-KEEP_FINISHED]:
                del self._jobs[old]
        threading.Thread(target=self._run, args=(job, work), name=f"job-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    @staticmethod
    def _run(job: Job, work: Callable[[Job], None]) -> None:
        try:
            work(job)
        except Exception as exc:
            log.warning("job %d (%s) failed: %s", job.id, job.title, exc)
            job.state, job.message = "failed", str(exc)
        else:
            if job.state == "running":
                job.state = "finished"
