"""The action log: one line per action taken (stored where, routed why, scan sheet, hook result).

Its own file beside the application log, rotated by size, through a logger of its own that does
not propagate.  Values are quoted as JSON strings so a hostile tag value stays on one line.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
from pathlib import Path


def quoted(value: object) -> str:
    """A value as one JSON string: newlines and control characters escaped, Unicode kept."""
    return json.dumps(str(value), ensure_ascii=False)


class ActionLog:
    """Writes `<action> key="value" ...` lines to a size-rotated file."""

    def __init__(self, path: Path | str, max_bytes: int = 10 * 1024 * 1024, backups: int = 5) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A logger per archive, outside the global registry: two archives never share a file.
        self.logger = logging.Logger("pacsd.actions", logging.INFO)
        self._handler = logging.handlers.RotatingFileHandler(self.path, maxBytes=max_bytes,
                                                             backupCount=backups, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        self.logger.addHandler(self._handler)

    @classmethod
    def from_settings(cls, settings) -> "ActionLog":
        config = settings.action_log
        return cls(Path(settings.logging.directory) / config.file, config.max_bytes, config.backups)

    def record(self, action: str, **fields: object) -> None:
        self.logger.info(" ".join([action, *(f"{key}={quoted(value)}" for key, value in fields.items())]))

    def close(self) -> None:
        self.logger.removeHandler(self._handler)
        self._handler.close()
