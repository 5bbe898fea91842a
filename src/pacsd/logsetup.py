"""Process logging: the application log and the connection log, each in its own file.

Both also go to stderr so `pacsd serve` in a terminal shows what happens.  pacsd's own loggers
(receiving, scan sheets, every background job) log at `logging.level`; everything else (fontTools,
fpdf2, PIL, pydicom, pynetdicom, ...) at `logging.libraries_level` (WARNING unless asked).  The
files are created rw-r----- whatever the umask: logs name patients and users.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

from pacsd.config import LoggingSettings

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FILE_MODE = 0o640  # as the images
_MAX_BYTES, _BACKUPS = 10 * 1024 * 1024, 5


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file created with LOG_FILE_MODE whatever the umask (and after each rotation)."""

    def _open(self):
        descriptor = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, LOG_FILE_MODE)
        return open(descriptor, self.mode, encoding=self.encoding, errors=self.errors)


class _LibraryLevel(logging.Filter):
    """Lines of pacsd's own loggers pass at `logging.level`; the libraries' at `libraries_level`."""

    def __init__(self, own: int, libraries: int) -> None:
        super().__init__()
        self.own, self.libraries = own, libraries

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name == "pacsd" or record.name.startswith("pacsd.")
        return record.levelno >= (self.own if own else self.libraries)


def setup_logging(settings: LoggingSettings, console: bool = True) -> None:
    directory = Path(settings.directory)
    directory.mkdir(parents=True, exist_ok=True)
    own, libraries = logging.getLevelName(settings.level), logging.getLevelName(settings.libraries_level)
    root = logging.getLogger()
    root.setLevel(min(own, libraries))
    for handler in list(root.handlers):
        root.removeHandler(handler)
    levels = _LibraryLevel(own, libraries)
    app = _PrivateRotatingFileHandler(directory / settings.app_log, maxBytes=_MAX_BYTES, backupCount=_BACKUPS,
                                      encoding="utf-8")
    app.setFormatter(logging.Formatter(_FORMAT))
    app.addFilter(levels)
    root.addHandler(app)
    if console:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter(_FORMAT))
        stream.addFilter(levels)
        root.addHandler(stream)
    connections = logging.getLogger("pacsd.connections")
    connections.setLevel(logging.INFO)
    conn_file = _PrivateRotatingFileHandler(directory / settings.connection_log, maxBytes=_MAX_BYTES,
                                            backupCount=_BACKUPS, encoding="utf-8")
    # pid: the receiving process that served the association
    conn_file.setFormatter(logging.Formatter("%(asctime)s pid=%(process)d %(message)s"))
    connections.addHandler(conn_file)
    connections.propagate = False  # its own file, not the application log
    if console:
        connections.addHandler(stream)
    # The chattiest are cut at the source too (no record made): pynetdicom logs every PDU at DEBUG
    # and much at INFO, fontTools a line per glyph table of every scan sheet; pacsd.index.migrate
    # says what alembic did.
    for name in ("pynetdicom", "alembic", "fontTools"):
        logging.getLogger(name).setLevel(libraries)
    logging.getLogger(__name__).info("logs in %s: %s (application), %s (one line per association)",
                                     directory.resolve(), settings.app_log, settings.connection_log)
