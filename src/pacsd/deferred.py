"""A Future whose work runs in the thread that first needs it, not in a pool.

For work worth doing later rather than in a helper thread now: handing it to a thread costs two
wake-ups, and on a virtual machine with two cores those cost more than the work (a small file's
flush, when the thread that would wait for it is about to flush its folder anyway).  `run()`
does the work once (later calls do nothing); `result()` runs it if nobody has; `cancel()` drops
it if nobody has, running `on_cancel` (to release what the work would have released).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class DeferredFuture(Future):
    def __init__(self, work: Callable[[], Any], on_cancel: Callable[[], None] | None = None) -> None:
        super().__init__()
        self._work: Callable[[], Any] | None = work
        self._on_cancel = on_cancel
        self._claim = threading.Lock()

    def _take_work(self) -> Callable[[], Any] | None:
        with self._claim:
            work, self._work = self._work, None
        return work

    def cancel(self) -> bool:
        if self._take_work() is None:
            return super().cancel()  # done, or being done: as a running pool future, not cancelled
        if self._on_cancel is not None:
            self._on_cancel()
        return super().cancel()

    def run(self) -> None:
        """Do the work here, unless it was done (or is being done, or cancelled) already."""
        work = self._take_work()
        if work is None:
            return
        try:
            self.set_result(work())
        except BaseException as exc:  # noqa: BLE001 - delivered by result(), as a pool would
            self.set_exception(exc)

    def result(self, timeout: float | None = None) -> Any:
        self.run()
        return super().result(timeout)
