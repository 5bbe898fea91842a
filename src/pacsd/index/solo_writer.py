"""A receiving process's index writer: its own group commit while it receives alone, the shared
writer process's otherwise.

The shared writer process (`pacsd.index.shared_writer`) is what lets several receiving processes
commit in shared groups; but with one sender (one association, the common case of a modality
sending a study) every image pays a round trip to it: two process wake-ups, a pickle each way.
While no other receiving process holds an association, a receiving process commits its rows
itself, exactly as the one-process server does (`IndexWriter`: the same durability step, the
same group commit among its own associations).  As soon as another one receives, its rows go
to the writer process again, so the processes do not fight over SQLite's one write lock.

Either path is correct at any moment; at the switch both may commit at once for a short time,
which SQLite's busy timeout and PostgreSQL's row locks settle (a group that loses a race is
retried one record at a time, as between nodes).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future

from sqlalchemy import Engine

from pacsd.index.rows import WriteOutcome
from pacsd.index.shared_writer import WriterClient
from pacsd.index.writer import DuplicatePolicy, IndexWriter, InstanceRecord


class SoloWhenAloneWriter:
    """`write()` through `local` while `alone()`, through `shared` otherwise."""

    def __init__(self, local: IndexWriter, shared: WriterClient, alone: Callable[[], bool]) -> None:
        self.local = local
        self.shared = shared
        self.alone = alone
        self.local_writes = 0  # counted, for tests and the log
        self.shared_writes = 0

    @property
    def engine(self) -> Engine:
        return self.local.engine

    def write(self, record: InstanceRecord, policy: DuplicatePolicy,
              data_flushed: Future | None = None) -> WriteOutcome:
        """As `IndexWriter.write`: returns once the record's transaction is committed (or raises)."""
        if self.alone():
            self.local_writes += 1
            return self.local.write(record, policy, data_flushed)
        self.shared_writes += 1
        return self.shared.write(record, policy, data_flushed)

    def close(self) -> None:
        self.local.close()
        self.shared.close()
