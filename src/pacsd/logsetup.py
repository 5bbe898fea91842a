"""Process logging: the application log and the connection log, each in its own file.

Both also go to stderr so `pacsd serve` in a terminal shows what happens.  pacsd's own loggers
(receiving, scan sheets, every background job) log at `logging.level`; everything else (fontTools,
fpdf2, PIL, pydicom, pynetdicom, ...) at WARNING, whatever the level asked for.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from pacsd.config import LoggingSettings

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
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
    app = logging.handlers.RotatingFileHandler(directory / settings.app_log, maxBytes=_MAX_BYTES,
                                               backupCount=_BACKUPS, encoding="utf-8")
    app.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(app)
    if console:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(stream)
    connections = logging.getLogger("pacsd.connections")
    connections.setLevel(logging.INFO)
    conn_file = logging.handlers.RotatingFileHandler(directory / settings.connection_log, maxBytes=_MAX_BYTES,
                                                     backupCount=_BACKUPS, encoding="utf-8")
    # pid: which process (of server.workers) served the association
    conn_file.setFormatter(logging.Formatter("%(asctime)s pid=%(process)d %(message)s"))
    connections.addHandler(conn_file)
    connections.propagate = False  # its own file, not the application log
    if console:
        connections.addHandler(stream)
