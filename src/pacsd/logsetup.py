"""Process logging: the application log and the connection log, each in its own file.

Both also go to stderr so `pacsd serve` in a terminal shows what happens.  pacsd's own loggers
(receiving, scan sheets, every background job) log at `logging.level`; everything else (fontTools,
fpdf2, PIL, pydicom, pynetdicom, ...) at WARNING, whatever the level asked for.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

from pacsd.config import LoggingSettings

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FILE_MODE = 0o640  # as the images: logs name patients and users


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file created rw-r----- whatever the umask (and after each rotation)."""

    def _open(self):
        descriptor = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, LOG_FILE_MODE)
        return open(descriptor, self.mode, encoding=self.encoding, errors=self.errors)
_MAX_BYTES, _BACKUPS = 10 * 1024 * 1024, 5


def setup_logging(settings: LoggingSettings, console: bool = True) -> None:
    directory = Path(settings.directory)
    directory.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    # Libraries log a line per subset font table, PNG chunk or PDU at INFO/DEBUG: only their
    # warnings reach the log.  pacsd's loggers, all under "pacsd", log at the level asked for.
    root.setLevel(logging.WARNING)
    logging.getLogger("pacsd").setLevel(settings.level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    app = _PrivateRotatingFileHandler(directory / settings.app_log, maxBytes=_MAX_BYTES,
                                               backupCount=_BACKUPS, encoding="utf-8")
    app.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(app)
    if console:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(stream)
    connections = logging.getLogger("pacsd.connections")
    connections.setLevel(logging.INFO)
    conn_file = _PrivateRotatingFileHandler(directory / settings.connection_log, maxBytes=_MAX_BYTES,
                                                     backupCount=_BACKUPS, encoding="utf-8")
    # pid: which process (of server.workers) served the association
    conn_file.setFormatter(logging.Formatter("%(asctime)s pid=%(process)d %(message)s"))
    connections.addHandler(conn_file)
    connections.propagate = False  # its own file, not the application log
    if console:
        connections.addHandler(stream)
