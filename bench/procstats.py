"""CPU time and memory of a server's whole process group, read from /proc.

A server may be several processes (pacsd's parent and children, storescp --fork's children), so
figures are summed over every process whose process group is the server's: CPU as user + system
time of the live processes plus what their exited children left in `cutime`/`cstime`, memory as
the sum of RSS (what `ps` shows, shared pages counted in each process) and of PSS (shared pages
split between the processes sharing them: what the group really costs), sampled while it runs.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the command: state ppid pgrp ...
            pids.append(int(name))
    return pids


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the group so far (exited, reaped children included)."""
    total = 0
    for pid in _group_pids(pgid):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / _TICK


def group_memory(pgid: int) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) of the group's processes now, in bytes."""
    rss = pss = 0
    for pid in _group_pids(pgid):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except OSError:
            continue
    return rss, pss


@dataclass
class GroupUsage:
    cpu_seconds: float = 0.0
    peak_rss: int = 0
    peak_pss: int = 0


class GroupMeter:
    """Measures a process group between `start()` and `stop()`: CPU used, peak memory."""

    def __init__(self, pgid: int, interval: float = 0.1) -> None:
        self.pgid = pgid
        self.interval = interval
        self.usage = GroupUsage()
        self._cpu0 = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> "GroupMeter":
        self._cpu0 = group_cpu_seconds(self.pgid)
        self._thread.start()
        return self

    def stop(self) -> GroupUsage:
        self._stop.set()
        self._thread.join()
        self._take_memory()
        self.usage.cpu_seconds = group_cpu_seconds(self.pgid) - self._cpu0
        return self.usage

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._take_memory()

    def _take_memory(self) -> None:
        rss, pss = group_memory(self.pgid)
        self.usage.peak_rss = max(self.usage.peak_rss, rss)
        self.usage.peak_pss = max(self.usage.peak_pss, pss)
