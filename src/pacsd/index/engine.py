"""Open the index database: SQLite (WAL mode, durable commits) by default, or PostgreSQL.

`open_index` takes a SQLite file path or a database URL (`postgresql://user@host/db`, run with
psycopg 3) and brings the schema up to date through `pacsd.index.migrate`.  The engine is shared
by the single writer and the readers.  A process forked after its parent found or made a
database's schema current does not check it again: the processes `pacsd serve` forks open the
index their parent prepared just before, without each reading the schema (and holding what
reading it costs, about 5 MB each).  The process that checked checks again on every open.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import OperationalError

from pacsd.errors import DatabaseUnreachable
from pacsd.index.driver_sql import check_sqlalchemy
from pacsd.index.migrate import SchemaState, prepare_schema, schema_state


def database_url(target: Path | str) -> URL:
    """The SQLAlchemy URL of a SQLite file path or a database URL (psycopg 3 for PostgreSQL)."""
    if isinstance(target, str) and "://" in target:
        url = make_url(target)
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return url
    return URL.create("sqlite", database=str(Path(target)))


def describe(target: Path | str) -> str:
    """The database for a log line: the file, or the URL without its password."""
    return database_url(target).render_as_string(hide_password=True)


_current_schemas: dict[str, int] = {}  # database -> the pid of the process that found or made it current


def open_index(target: Path | str, wal_mode: bool = True, upgrade: bool = True) -> Engine:
    """Open the index at `target` and bring its schema up to date (`upgrade=False`: only check)."""
    url = database_url(target)
    check_sqlalchemy()  # the writer's driver path: one warning here if this SQLAlchemy lacks what it reads
    engine = _open_sqlite(url, wal_mode) if url.get_backend_name() == "sqlite" else _open_server(url)
    key = url.render_as_string(hide_password=False)
    if _current_schemas.get(key, os.getpid()) != os.getpid():
        return engine  # forked after the parent prepared it
    try:
        prepare_schema(engine, upgrade)
        _current_schemas[key] = os.getpid()
    except OperationalError as exc:
        engine.dispose()
        raise DatabaseUnreachable(f"cannot open the index {describe(target)}: {exc.orig}".strip()) from None
    except BaseException:
        engine.dispose()
        raise
    return engine


def require_existing(target: Path | str) -> None:
    """Raise DatabaseUnreachable when the SQLite index file is not there (commands that only read
    must not create one; a PostgreSQL database that does not exist fails on connecting)."""
    url = database_url(target)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        raise DatabaseUnreachable(f"{url.database}: no index there (`pacsd serve` or `pacsd import` creates it); "
                                  "give --index-db, --database-url or --config")


def inspect_schema(target: Path | str) -> SchemaState:
    """The schema revision of an existing index, changing nothing."""
    require_existing(target)
    url = database_url(target)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return schema_state(conn)
    except OperationalError as exc:
        raise DatabaseUnreachable(f"cannot open the index {describe(target)}: {exc.orig}".strip()) from None
    finally:
        engine.dispose()


def _open_server(url: URL) -> Engine:
    # pre_ping: a node outlives a database restart or a dropped idle connection.
    return create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)


def _open_sqlite(url: URL, wal_mode: bool) -> Engine:
    Path(url.database or "").parent.mkdir(parents=True, exist_ok=True)
    if url.database and url.database != ":memory:":
        # Created here, owner-only, before SQLite makes it with the umask's mode: it holds password
        # hashes and patient data.  SQLite gives its -wal and -shm files the database file's mode.
        os.close(os.open(url.database, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=8,
        max_overflow=8,
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if wal_mode:
            cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before we answer success (an acknowledged image is kept).
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # LIKE case-sensitive, as in PostgreSQL: query matching folds case only where DICOM says.
        cursor.execute("PRAGMA case_sensitive_like=ON")
        cursor.close()

    return engine
