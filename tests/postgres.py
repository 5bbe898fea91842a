"""A real, throw-away PostgreSQL server for the tests: initdb in a temp folder, loopback only.

`PostgresServer.start()` finds the server binaries (PATH, then Debian's /usr/lib/postgresql/*/bin),
runs them as the `postgres` user when we are root, and listens on 127.0.0.1 and a socket in its
folder.  PACSD_TEST_POSTGRES=postgresql://user@host/db uses an existing server instead.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg
from sqlalchemy import make_url

_SETTINGS = {  # a test server: speed over durability, small memory, room for several nodes
    "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
    "shared_buffers": "32MB", "max_connections": "300", "dynamic_shared_memory_type": "mmap",
}


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is missing: `make test` installs the Debian package postgresql")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One server; `new_database()` gives each test a database of its own."""

    def __init__(self, admin_url: str | None = None) -> None:
        self.admin_url = admin_url
        self.folder: Path | None = None
        self._names = itertools.count(1)

    def start(self) -> "PostgresServer":
        if self.admin_url is not None:
            return self
        self.folder = Path(tempfile.mkdtemp(prefix="pacsd-pg-"))
        port = _free_port()
        self._run(_binary("initdb"), "-D", str(self.folder / "data"), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        options = " ".join(f"-c {key}={value}" for key, value in {
            **_SETTINGS, "listen_addresses": "127.0.0.1", "port": port, "unix_socket_directories": self.folder,
        }.items())
        self._run(_binary("pg_ctl"), "-D", str(self.folder / "data"), "-l", str(self.folder / "server.log"),
                  "-w", "-t", "60", "-o", options, "start")
        self.admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        return self

    def new_database(self) -> str:
        """Create an empty database; return its URL."""
        name = f"pacsd_test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # a name we made: no user input here
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def stop(self) -> None:
        if self.folder is None:
            return
        self._run(_binary("pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None

    def _run(self, *command: str) -> None:
        """Run a server command, as `postgres` when we are root (the server refuses root)."""
        assert self.folder is not None
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            command = ("runuser", "-u", "postgres", "--", *command)
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr or done.stdout}\n{tail}")
