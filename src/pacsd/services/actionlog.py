"""The action log: one line per action taken (stored where, routed why, scan sheet, hook result).

Its own file beside the application log, rotated by size.  Values are quoted as JSON strings so
a hostile tag value stays on one line.  Each line is one `write` to the file, appended, as soon
as it is recorded (a reader sees it at once); no logging machinery: the receive path records a
line per image, and a LogRecord, its formatter, the handler's locks and the two `stat` calls
`RotatingFileHandler` makes per line cost ~100 us of an image's ~3 ms.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from pacsd.config import Settings
from pacsd.logsetup import LOG_FILE_MODE

log = logging.getLogger(__name__)


def quoted(value: object) -> str:
    """A value as one JSON string: newlines and control characters escaped, Unicode kept."""
    return json.dumps(str(value), ensure_ascii=False)


class ActionLog:
    """Writes `<local time> <action> key="value" ...` lines to a file rotated by size.

    When a line would take the file to `max_bytes`, the file becomes `<name>.1` (`.1` becomes
    `.2` ..., up to `backups` old files; with none kept the file starts anew) and the line
    starts a new file.  Safe for the threads of one process."""

    def __init__(self, path: Path | str, max_bytes: int = 10 * 1024 * 1024, backups: int = 5) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.backups = max_bytes, backups
        self._lock = threading.Lock()
        self._fd: int | None = self._open()
        self._size = os.fstat(self._fd).st_size
        self._second, self._second_text = -1, ""

    @classmethod
    def from_settings(cls, settings: Settings) -> ActionLog:
        config = settings.action_log
        return cls(Path(settings.logging.directory) / config.file, config.max_bytes, config.backups)

    def record(self, action: str, **fields: object) -> None:
        text = " ".join([action, *(f"{key}={quoted(value)}" for key, value in fields.items())])
        with self._lock:
            if self._fd is None:
                return  # closed
            line = f"{self._timestamp()} {text}\n".encode("utf-8")
            try:
                if self._size and self._size + len(line) >= self.max_bytes:
                    self._rotate()
                self._size += os.write(self._fd, line)
            except OSError as exc:  # as a logging handler does: the action itself stands
                log.warning("cannot write the action log %s: %s", self.path, exc)

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, LOG_FILE_MODE)

    def _timestamp(self) -> str:
        """Local time as the logging module writes it: `2026-12-01 14:42:53,123`."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._second_text = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._second_text},{int((now - second) * 1000):03d}"

    def _rotate(self) -> None:
        try:
            if self.backups > 0:
                for number in range(self.backups - 1, 0, -1):
                    older = self.path.with_name(f"{self.path.name}.{number}")
                    if older.exists():
                        os.replace(older, self.path.with_name(f"{self.path.name}.{number + 1}"))
                os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
            else:
                self.path.unlink(missing_ok=True)
        finally:  # rotated or not, lines go on to the file of that name
            if self._fd is not None:
                os.close(self._fd)
            self._fd = self._open()
            self._size = os.fstat(self._fd).st_size
