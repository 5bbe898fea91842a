"""Run the web application with uvicorn in a background thread of the pacsd process, over HTTPS
when `http.tls_certificate` and `http.tls_key` are set."""

from __future__ import annotations

import logging
import threading
import time

import uvicorn

from pacsd.errors import StartupError
from pacsd.index.engine import describe
from pacsd.services.archive import Archive
from pacsd.services.users import FIRST_USER_COMMAND, has_users
from pacsd.web.app import create_app

log = logging.getLogger(__name__)


class WebServer:
    def __init__(self, archive: Archive, host: str, port: int, connections=None) -> None:
        http = archive.settings.http
        tls = {"ssl_certfile": str(http.tls_certificate), "ssl_keyfile": str(http.tls_key)} if http.https else {}
        self.scheme = "https" if http.https else "http"
        config = uvicorn.Config(create_app(archive, connections), host=host, port=port, log_level="warning",
                                access_log=False, lifespan="off", **tls)
        self._archive = archive
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # the main thread owns signals
        self._thread = threading.Thread(target=self._server.run, name="web", daemon=True)

    def start(self, timeout: float = 15) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                host, port = self._server.config.host, self._server.config.port
                raise StartupError(f"the web server did not start on {host}:{port} (is the port in use? "
                                   "--http-port or http.port chooses another)")
            time.sleep(0.02)
        log.info("web server on %s://%s:%d", self.scheme, *self.address)
        self._hint_first_user()

    def _hint_first_user(self) -> None:
        """While nobody can log in, say on start how to create the first user (the login page says it too)."""
        settings = self._archive.settings
        if not settings.web.login or has_users(self._archive.engine):
            return
        database = settings.database
        where = f"--database-url '{describe(database.target)}'" if database.url else f"--index-db {database.path}"
        log.warning("the web interface has no user yet: create one with `%s %s`", FIRST_USER_COMMAND, where)

    @property
    def address(self) -> tuple[str, int]:
        sock = self._server.servers[0].sockets[0]
        return sock.getsockname()[:2]

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
