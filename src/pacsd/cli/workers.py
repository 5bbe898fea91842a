"""`server.workers: N`: N receiving processes sharing the DICOM port, each a whole pacsd node.

The parent brings the schema up to date once, spawns the workers (spawned, not forked: no
threads are copied), passes SIGINT/SIGTERM on and waits.  When one worker dies the others are
stopped too, so a service manager sees the failure and restarts the whole.  Worker 1 alone
serves the web port.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable

from pacsd.config import Settings
from pacsd.errors import ConfigError

log = logging.getLogger(__name__)


def worker_settings(settings: Settings, number: int) -> Settings:
    """The settings of worker `number` (1-based): only the first serves HTTP."""
    if number == 1:
        return settings
    return settings.model_copy(update={"http": settings.http.model_copy(update={"enabled": False})})


def run_workers(settings: Settings, run_worker: Callable[[Settings, int], None]) -> None:
    """Run `run_worker(settings, number)` in `server.workers` processes until a signal or a death."""
    from pacsd.index.engine import open_index

    count = settings.server.workers
    if settings.server.port == 0:
        raise ConfigError("server.workers: workers share one port, so server.port cannot be 0")
    database = settings.database
    open_index(database.target, database.wal_mode, database.auto_upgrade).dispose()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=run_worker, args=(worker_settings(settings, n), n), name=f"pacsd-worker-{n}")
               for n in range(1, count + 1)]
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    for worker in workers:
        worker.start()
    log.info("pacsd: %d workers on port %d", count, settings.server.port)
    while not stop.wait(0.5):
        if any(not worker.is_alive() for worker in workers):
            log.error("a worker stopped unexpectedly; stopping the others")
            break
    for worker in workers:
        if worker.is_alive():
            os.kill(worker.pid, signal.SIGTERM)
    for worker in workers:
        worker.join(settings.server.shutdown_grace + 30)
        if worker.is_alive():
            worker.kill()
            worker.join()
    if not stop.is_set() or any(worker.exitcode for worker in workers):
        sys.exit(1)
