"""The index writer's own connection: kept checked out between transactions, replaced after a failure.

`engine.begin()` per transaction checks a connection out of the pool and resets it on return,
which costs as much as the statements of a one-instance group.  The writer instead keeps one
`Connection` and begins and commits on it.  A transaction that raises anything discards the
connection (invalidated: never handed out again, whatever broke) and the next transaction
checks out a fresh one; so does a transaction after the connection sat idle for a while, so the
pool's pre-ping (PostgreSQL) checks a connection that may have been dropped meanwhile instead
of the next group failing on it.  Used by one thread at a time (the writer's leader).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

IDLE_SECONDS = 10.0  # a connection unused this long goes back to the pool (pinged on checkout)


class WriterConnection:
    def __init__(self, engine: Engine, idle_seconds: float = IDLE_SECONDS) -> None:
        self.engine = engine
        self.idle_seconds = idle_seconds
        self._conn: Connection | None = None
        self._last_used = 0.0

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A transaction on the kept connection: committed when the block ends, rolled back and
        the connection discarded when it raises."""
        conn = self._connection()
        try:
            with conn.begin():
                yield conn
        except BaseException:
            self._discard()
            raise
        self._last_used = time.monotonic()

    def close(self) -> None:
        """Return the connection to the pool (a later transaction checks one out again)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> Connection:
        if self._conn is not None and time.monotonic() - self._last_used > self.idle_seconds:
            self.close()
        if self._conn is None:
            self._conn = self.engine.connect()
        return self._conn

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.invalidate()
            conn.close()
