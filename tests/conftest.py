"""Shared fixtures: test data, a running pacsd (in-process or as the real command), DCMTK peers.

Tests marked `both_databases` run twice, on SQLite and on a real PostgreSQL server (the
`index_backend` parameter, which `pacs_factory` and `index_database` follow); others use SQLite.
"""

from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pacsd.config import Settings, load_settings
from pacsd.index.schema import instances
from pacsd.net.scp import DicomServer
from pacsd.services.archive import Archive
from tests.markers import mark_tiers, slow_first
from tests.postgres import PostgresServer

REPO = Path(__file__).resolve().parents[1]
# The DICOM test files ship with the repository (tests/data/dicom: MANIFEST.tsv, LICENSES.md,
# SHA256SUMS); PACSD_TESTDATA points the suite at another copy laid out the same way.
TESTDATA = Path(os.environ.get("PACSD_TESTDATA") or REPO / "tests" / "data" / "dicom")
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"


def shared_testdata_files() -> list[Path]:
    """Every DICOM-looking file of the shared test data (the manifest and licences left out)."""
    return sorted(p for p in TESTDATA.rglob("*") if p.is_file() and p.suffix not in (".md", ".tsv")
                  and p.name not in ("SHA256SUMS", "MANIFEST.tsv"))


def wait_until(condition, timeout: float = 30, what: str = "condition"):
    """Poll `condition` until it returns something true (returned) or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = HOST) -> bool:
    """True when something listens on host:port (a TCP connect, nothing sent)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def dcmtk(tool: str, *args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a DCMTK tool; its output is returned (text, undecodable bytes replaced), never raised on failure."""
    if shutil.which(tool) is None:
        pytest.fail(f"DCMTK tool {tool} is missing: `make test` installs dcmtk")
    return subprocess.run([tool, *args], capture_output=True, text=True, errors="replace", timeout=timeout,
                          env={**os.environ, **(env or {})})


def make_settings(tmp_path: Path, **sections) -> Settings:
    """Settings under tmp_path on a free loopback port; keyword args are top-level sections."""
    data = {
        "server": {"host": HOST, "port": free_port(), "ae_title": "PACSD", "shutdown_grace": 2},
        "storage": {"directory": str(tmp_path / "storage")},
        "database": {"path": str(tmp_path / "index.sqlite")},
        "logging": {"directory": str(tmp_path / "logs")},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    config = tmp_path / "pacsd.yaml"
    import yaml

    config.write_text(yaml.safe_dump(data))
    return load_settings(config)


@dataclass
class RunningPacs:
    settings: Settings
    archive: Archive
    server: DicomServer

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def aet(self) -> str:
        return self.settings.server.ae_title

    @property
    def storage(self) -> Path:
        return Path(self.settings.storage.directory)

    def instance_count(self) -> int:
        with self.archive.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(instances)).scalar_one()

    def stored_files(self) -> list[Path]:
        not_images = {".incoming", ".pacsd"}  # temp files; the web session key
        return sorted(p for p in self.storage.rglob("*") if p.is_file() and not not_images & set(p.parts))

    def incoming_files(self) -> list[Path]:
        return sorted((self.storage / ".incoming").iterdir())

    def stop(self) -> None:
        self.server.stop()
        self.archive.close()


def start_pacs(settings: Settings) -> RunningPacs:
    archive = Archive(settings)
    server = DicomServer(settings, archive)
    server.start()
    return RunningPacs(settings, archive, server)


BACKENDS = ("sqlite", "postgresql")


def pytest_configure(config) -> None:
    if not (TESTDATA / "MANIFEST.tsv").is_file():
        # Checked before collection: test modules list the files when they are imported.
        raise pytest.UsageError(f"pacsd test data not found: {TESTDATA / 'MANIFEST.tsv'} is missing "
                                "(it ships in tests/data/dicom; PACSD_TESTDATA names another copy)")


def pytest_generate_tests(metafunc) -> None:
    if "index_backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_databases"):
        metafunc.parametrize("index_backend", BACKENDS, indirect=True)


def pytest_itemcollected(item) -> None:
    mark_tiers([item])  # unit, dicom, dcmtk, postgres, browser, slow (tests/markers.py), before -m selects


@pytest.hookimpl(trylast=True)  # after pytest grouped the tests by their fixtures' parameters
def pytest_collection_modifyitems(items) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a pytest-xdist worker (make test, make test-fast)
        slow_first(items)


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the session (started on first use, stopped at the end)."""
    server = PostgresServer(os.environ.get("PACSD_TEST_POSTGRES")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def index_backend(request) -> str:
    """sqlite | postgresql: the index database this test runs on (see `both_databases`).

    Module-scoped (it only names the backend) so that a module's shared archive can follow it:
    pytest runs a module's SQLite tests, then its PostgreSQL ones."""
    return getattr(request, "param", "sqlite")


def new_index_database(request, index_backend: str, folder: Path) -> dict:
    """The `database` settings section of a fresh, empty index on `index_backend`."""
    if index_backend == "postgresql":
        return {"url": request.getfixturevalue("postgres_server").new_database()}
    return {"path": str(folder / "index.sqlite")}


@pytest.fixture
def index_database(request, index_backend, tmp_path) -> dict:
    """The `database` settings section of a fresh, empty index on this test's backend."""
    return new_index_database(request, index_backend, tmp_path)


@pytest.fixture
def index_target(index_database) -> str:
    """This test's fresh index as `open_index` takes it: a PostgreSQL URL or a SQLite file."""
    return index_database.get("url") or index_database["path"]


class PacsStarter:
    """Starts in-process servers under one folder on one index database; `stop_all` stops them.

    `another_archive()` (when the starter was given `fresh`, a callable making a folder and an
    empty index database) is a starter of its own storage and index, stopped with this one."""

    def __init__(self, folder: Path, database: dict, fresh=None) -> None:
        self.folder, self.database, self.fresh = folder, database, fresh
        self.started: list[RunningPacs] = []
        self.others: list[PacsStarter] = []

    def __call__(self, **sections) -> RunningPacs:
        sections["database"] = {**self.database, **sections.get("database", {})}
        running = start_pacs(make_settings(self.folder, **sections))
        self.started.append(running)
        return running

    def another_archive(self) -> "PacsStarter":
        other = PacsStarter(*self.fresh(), fresh=self.fresh)
        self.others.append(other)
        return other

    def stop_all(self) -> None:
        for other in self.others:
            other.stop_all()
        for running in self.started:
            running.stop()


@pytest.fixture
def pacs_factory(tmp_path, index_database):
    """Start in-process servers with chosen settings; all are stopped at the end of the test.

    Every server of one test shares the test's index database unless `database=` says otherwise."""
    starter = PacsStarter(tmp_path, index_database)
    yield starter
    starter.stop_all()


@pytest.fixture(scope="module")
def shared_pacs_factory(request, index_backend, tmp_path_factory):
    """`pacs_factory` for a whole module (per index backend): servers started once and stopped
    after the module's last test.  Only for tests that read what the module's fixture stored
    (queries, retrievals, error answers); a test that changes the archive uses `pacs_factory`.
    `shared_pacs_factory.another_archive()` starts servers on a second storage and index."""
    def fresh() -> tuple[Path, dict]:
        folder = tmp_path_factory.mktemp("shared-pacs")
        return folder, new_index_database(request, index_backend, folder)

    starter = PacsStarter(*fresh(), fresh=fresh)
    yield starter
    starter.stop_all()


@pytest.fixture(scope="module")
def shared_pacs(shared_pacs_factory) -> RunningPacs:
    """A running pacsd with default settings, shared by the module's read-only tests."""
    return shared_pacs_factory()


RECEIVE_PATHS = ["fast-receive", "stock-pynetdicom"]


def pacs_on_receive_path(path: str, pacs_factory, index_backend: str) -> RunningPacs:
    """A running pacsd with pacsd's own receive path, or on stock pynetdicom (tried on SQLite
    only: the receive path does not depend on the database)."""
    if path == "stock-pynetdicom" and index_backend != "sqlite":
        pytest.skip("stock pynetdicom is tried on SQLite")
    return pacs_factory(server={"fast_receive": path == "fast-receive"})


@pytest.fixture
def pacs(pacs_factory) -> RunningPacs:
    """A running pacsd with default settings on a free loopback port."""
    return pacs_factory()


@contextmanager
def serving_web(pacs: RunningPacs):
    """The web application of `pacs` served on a free loopback port, for the block; its base URL."""
    from pacsd.web.server import WebServer

    server = WebServer(pacs.archive, HOST, 0, pacs.server.connections)
    server.start()
    try:
        yield f"http://{HOST}:{server.address[1]}"
    finally:
        server.stop()


@pytest.fixture
def web(pacs):
    """The web application of the running `pacs`, served on a free loopback port; yields its base URL."""
    with serving_web(pacs) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def shared_web(shared_pacs):
    """`web` of the module's `shared_pacs`."""
    with serving_web(shared_pacs) as base_url:
        yield base_url


class PacsProcess:
    """The real `pacsd serve` command in a subprocess."""

    def __init__(self, tmp_path: Path, *extra: str, database: dict | None = None) -> None:
        self.port = free_port()
        self.http_port = free_port()
        self.data = tmp_path
        database = database or {"path": str(tmp_path / "index.sqlite")}
        self.database_target = database.get("url") or Path(database["path"])
        where = ["--database-url", database["url"]] if "url" in database else ["--index-db", database["path"]]
        self.args = [str(VENV_BIN / "pacsd"), "serve", "--host", HOST, "--port", str(self.port),
                     "--storage-dir", str(tmp_path / "storage"), *where,
                     "--log-dir", str(tmp_path / "logs"), "--http-port", str(self.http_port), *extra]
        self.proc: subprocess.Popen | None = None

    def start(self) -> "PacsProcess":
        """Start the command; return once it answers /healthz and C-ECHO (DCMTK echoscu).

        The web process is the last one ready: a TCP connect to its port every 0.05 s, then one
        /healthz and one echoscu, instead of forking echoscu every 0.2 s from the start."""
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pacsd serve exited: {self.proc.stdout.read()}")
            if port_open(self.http_port) and self._web_up() and dcmtk("echoscu", "-aec", "PACSD", HOST, str(self.port), timeout=10).returncode == 0:
                return self
            time.sleep(0.05)
        raise RuntimeError("pacsd serve did not answer C-ECHO within 30 s")

    def _web_up(self) -> bool:
        import httpx

        try:
            return httpx.get(f"http://{HOST}:{self.http_port}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def restarted(self) -> "PacsProcess":
        """The same command (same ports, so the same node name) started again; this one must
        have exited.  The caller stops it."""
        twin = copy.copy(self)
        twin.proc = None
        return twin.start()

    def stop(self, sig: int = 2) -> str:
        assert self.proc is not None
        self.proc.send_signal(sig)
        out, _ = self.proc.communicate(timeout=30)
        return out


@contextmanager
def process_starter(folder: Path, database: dict, graceful: bool = False):
    """A function starting `pacsd serve` on `folder` and `database`; every one started is killed
    at the end of the block if still running (`graceful`: stopped with SIGINT first)."""
    processes: list[PacsProcess] = []

    def factory(*extra: str) -> PacsProcess:
        process = PacsProcess(folder, *extra, database=database).start()
        processes.append(process)
        return process

    try:
        yield factory
    finally:
        for process in processes:
            if process.proc and process.proc.poll() is None:
                if graceful:
                    try:
                        process.stop()
                        continue
                    except subprocess.TimeoutExpired:
                        pass
                process.proc.kill()
                process.proc.wait()


@pytest.fixture
def pacs_process(tmp_path, index_database):
    """Start the real `pacsd serve` on this test's storage and index database."""
    with process_starter(tmp_path, index_database) as factory:
        yield factory


@pytest.fixture(scope="module")
def shared_pacs_process(request, index_backend, tmp_path_factory):
    """`pacs_process` for a whole module (per index backend), for tests that read or that change
    nothing the others look at: processes started once and stopped after the module."""
    folder = tmp_path_factory.mktemp("shared-process")
    with process_starter(folder, new_index_database(request, index_backend, folder), graceful=True) as factory:
        yield factory
