"""DeferredFuture: the work runs once, in the thread that first needs it, or is dropped."""

from __future__ import annotations

import os
import threading

import pytest

from pacsd.deferred import DeferredFuture
from pacsd.storage.blobstore import FLUSH_AT_ONCE_FROM, BlobStore


def test_the_work_runs_once_in_the_thread_that_asks():
    ran: list[str] = []
    future = DeferredFuture(lambda: ran.append(threading.current_thread().name) or 42)
    assert not future.done() and ran == []
    worker = threading.Thread(target=future.run, name="runner")
    worker.start()
    worker.join()
    assert future.result() == 42 and future.result() == 42
    assert ran == ["runner"]


def test_result_runs_it_and_raises_what_it_raised():
    future = DeferredFuture(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        future.result()
    future.run()  # done already: nothing happens
    assert isinstance(future.exception(), ZeroDivisionError)


def test_cancel_drops_the_work_and_releases():
    released: list[bool] = []
    future = DeferredFuture(lambda: pytest.fail("must not run"), on_cancel=lambda: released.append(True))
    assert future.cancel() and future.cancelled()
    future.run()
    assert released == [True]


def test_cancel_after_the_work_ran_changes_nothing():
    future = DeferredFuture(lambda: "done", on_cancel=lambda: pytest.fail("must not release"))
    future.run()
    assert not future.cancel() and future.result() == "done"


@pytest.mark.parametrize("size", [1000, FLUSH_AT_ONCE_FROM])
def test_a_given_up_flush_leaves_no_open_descriptor(tmp_path, size):
    blobs = BlobStore(tmp_path / "store")
    path = tmp_path / "store" / "f.dcm"
    path.write_bytes(b"x" * size)
    before = len(os.listdir("/proc/self/fd"))
    flush = blobs.flush_data_soon(path)
    assert isinstance(flush, DeferredFuture) == (size < FLUSH_AT_ONCE_FROM)  # large: under way now
    blobs.abandon_flush(flush)
    if not isinstance(flush, DeferredFuture):
        flush.result(timeout=10)
    assert len(os.listdir("/proc/self/fd")) == before
