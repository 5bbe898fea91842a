"""What `pacsd serve` checks before it starts anything: its folders can be written and its ports
are free.  Each failure is a `StartupError` naming the folder or port and the flag that sets it,
printed as one line (exit 2) instead of a traceback from deep inside the start-up.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from pathlib import Path

from pacsd.config import Settings
from pacsd.errors import StartupError


def check_startup(settings: Settings) -> None:
    """Raise StartupError when a folder the server writes to or a port it listens on is not usable
    (RouteError for a forwarding route that cannot work)."""
    from pacsd.services.routes import compile_routes

    compile_routes(settings)
    check_writable(Path(settings.storage.directory), "storage folder", "--storage-dir or storage.directory")
    for name, folder in settings.storage.areas.items():
        check_writable(Path(folder), f"storage area {name}'s folder", f"storage.areas.{name}")
    check_writable(Path(settings.logging.directory), "log folder", "--log-dir or logging.directory")
    check_port_free(settings.server.host, settings.server.port, "DICOM port", "--port or server.port")
    if settings.http.enabled:
        check_port_free(settings.http.host, settings.http.port, "web port", "--http-port or http.port")


def storage_summary(settings: Settings) -> str:
    """The storage folder and how its files are made durable, for the "pacsd ready" line."""
    storage = settings.storage
    flush = storage.flush if storage.fsync else "off (storage.fsync: false)"
    return f"storage {storage.directory} (flush: {flush})"


def check_writable(folder: Path, what: str, setting: str) -> None:
    """Create `folder` if needed and write (then remove) a file in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".pacsd-write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise StartupError(f"cannot write to the {what} {folder}: {reason.lower()}; give a writable folder "
                           f"({setting})") from None


def check_port_free(host: str, port: int, what: str, setting: str) -> None:
    """Bind (host, port) as the listener will, then let it go; a port taken is a StartupError."""
    if port == 0:
        return  # any free port: nothing to collide with
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        if os.name == "posix":  # as the listeners do: a port in TIME_WAIT is free to use
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(f"the {what} {host}:{port} is in use by another program; stop it or choose "
                                   f"another port ({setting})") from None
            raise StartupError(f"cannot listen on {host}:{port} for the {what}: {(exc.strerror or str(exc)).lower()} "
                               f"({setting})") from None
