"""Open the index database: SQLite (WAL mode, durable commits) by default.

Creates the schema when missing.  The engine is shared by the single writer and the readers;
SQLite's WAL mode lets readers run while the writer commits.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event

from pacsd.index.schema import metadata


def open_index(path: Path | str, wal_mode: bool = True) -> Engine:
    """Open (creating if needed) the SQLite index at `path` and its schema."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=8,
        max_overflow=8,
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        if wal_mode:
            cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before we answer success (an acknowledged image is kept).
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # LIKE case-sensitive, as in PostgreSQL: query matching folds case only where DICOM says.
        cursor.execute("PRAGMA case_sensitive_like=ON")
        cursor.close()

    metadata.create_all(engine)
    return engine
