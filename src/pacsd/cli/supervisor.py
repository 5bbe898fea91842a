"""`pacsd serve` on every core: the accepting parent and the processes it runs.

```
parent (this module): listens on the DICOM port, hands each connection to the receiving process
   │                  with the fewest open associations (SCM_RIGHTS), restarts any child that dies
   ├── index writer:  one group commit for the rows of every process (pacsd.index.shared_writer)
   ├── receiving processes x server.workers: DICOM associations, ingest up to "durable"
   ├── web:           DICOMweb, the web interface, status, metrics (STOW-RS through the writer)
   └── background (nice 10): study-stable detection, scan sheets, end-of-study hooks
```

The parent stays single-threaded (it forks its children, also to restart them, and a fork of a
threaded process may copy a lock another thread holds).  A child that dies loses what it had open
(senders retry), never an acknowledged image: a C-STORE is answered only after the writer
committed its row.  SIGINT/SIGTERM stop the receiving processes first (C-STOREs being stored
finish; idle associations are aborted), then the others, then the writer.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pacsd.cli.startup import storage_summary
from pacsd.config import Settings
from pacsd.errors import ConfigError
from pacsd.index.shared_writer import listen as listen_for_writes
from pacsd.index.shared_writer import writer_address
from pacsd.net import seam
from pacsd.net.association_board import clear_old_boards
from pacsd.net.handoff import CLOSED, NEGOTIATED, hand_over, handoff_pair, parse_report
from pacsd.net.receiving_load import ReceivingLoad
from pacsd.services.hook_relay import relay_pair

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0  # seconds a child may take to start
RESTART_BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)  # seconds before restart N of a child that keeps dying
STEADY_AFTER = 30.0  # a child up this long has its restart count forgotten
OTHERS_STOP_WAIT = 2.0  # seconds web and background processes get to stop before SIGKILL
_PR_SET_PDEATHSIG = 1


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class Child:
    """One child process of the parent."""

    role: str  # writer | receiver | web | background
    number: int = 0
    main: Callable[["Child"], None] | None = None
    pid: int = 0
    ready: bool = False
    ready_fd: int = -1  # parent's end of the readiness pipe
    channel: socket.socket | None = None  # receivers: the parent's end of the hand-off socket
    child_channel: socket.socket | None = None
    open: int = 0  # associations handed over and not yet closed
    started: float = 0.0
    restarts: int = 0
    restart_at: float | None = None
    exit_status: int | None = None

    @property
    def name(self) -> str:
        return f"{self.role} {self.number}" if self.role == "receiver" else self.role


@dataclass
class _Handed:
    """A connection handed to a receiving process and not yet reported closed."""

    child: Child
    host: str
    negotiated: bool = False


@dataclass
class _Stopping:
    requested: bool = False
    signals: list[int] = field(default_factory=list)


class Supervisor:
    """The accepting parent of a multi-process `pacsd serve`."""

    def __init__(self, settings: Settings, receivers: int) -> None:
        self.settings = settings
        self.count = receivers
        server = settings.server
        self.node = f"{socket.gethostname()}-{server.port}"
        self.writer_address = writer_address(f"{os.getpid()}-{os.urandom(4).hex()}")
        self.children: list[Child] = []
        self._listener: socket.socket | None = None
        self._tls_listener: socket.socket | None = None  # server.tls.port
        self._writer_listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = _Stopping()
        self._next = 0  # round-robin start among equally busy receivers
        self._handed: dict[int, _Handed] = {}
        self._numbers = 0
        self._refused_logged = 0.0
        self.load = ReceivingLoad(receivers)  # made before any fork: shared with every child

    # -- start-up -----------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until SIGINT/SIGTERM; the exit status (0 after a clean stop)."""
        from pacsd.index.engine import open_index

        database = self.settings.database
        open_index(database.target, database.wal_mode, database.auto_upgrade).dispose()  # migrations once
        self._listener = _listen(self.settings.server.host, self.settings.server.port)
        tls_port = self.settings.server.tls.port
        self._tls_listener = _listen(self.settings.server.host, tls_port) if tls_port is not None else None
        self._writer_listener = listen_for_writes(self.writer_address)
        self._hooks_out, self._hooks_in = relay_pair()
        clear_old_boards(self.settings.storage.directory, os.getpid())
        _preload()
        self._install_signals()
        self.children = [Child("writer", main=self._run_writer),
                         *(Child("receiver", n, main=self._run_receiver) for n in range(1, self.count + 1)),
                         Child("background", main=self._run_background)]
        if self.settings.http.enabled:
            self.children.append(Child("web", main=self._run_web))
        for child in self.children:
            self._start(child)
        if not self._wait_until_ready():
            self._stop_all()
            return 2
        host, port = self._listener.getsockname()[:2]
        log.info("pacsd ready: %d receiving processes on %s:%d (parent pid %d), %s", self.count, host, port,
                 os.getpid(), storage_summary(self.settings))
        try:
            self._serve()
        finally:
            self._stop_all()
        return 0

    def _install_signals(self) -> None:
        self._wake_w.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno())

        def stop(signum, _frame):
            self._stopping.requested = True
            self._stopping.signals.append(signum)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select through the wakeup fd

    def _wait_until_ready(self) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT
        while not all(child.ready for child in self.children):
            if self._stopping.requested:
                return False
            self._reap(restart=False)
            failed = [child for child in self.children if child.exit_status is not None]
            if failed:
                log.error("pacsd: the %s process failed to start (exit status %s)", failed[0].name,
                          failed[0].exit_status)
                return False
            if time.monotonic() > deadline:
                log.error("pacsd: processes not ready after %.0f s", READY_TIMEOUT)
                return False
            self._poll(0.2, accept=False)
        return True

    # -- the loop ---------------------------------------------------------------------------
    def _serve(self) -> None:
        while not self._stopping.requested:
            self._poll(1.0, accept=True)
            self._reap(restart=True)
            now = time.monotonic()
            for child in self.children:
                if child.pid == 0 and child.restart_at is not None and now >= child.restart_at:
                    self._start(child)

    def _poll(self, timeout: float, accept: bool) -> None:
        watched = [self._wake_r, *(c.channel for c in self.children if c.channel is not None and c.pid),
                   *(c.ready_fd for c in self.children if c.ready_fd >= 0)]
        if accept:
            watched += [sock for sock in (self._listener, self._tls_listener) if sock is not None]
        try:
            ready, _, _ = select.select(watched, [], [], timeout)
        except InterruptedError:
            return
        for item in ready:
            if item is self._wake_r:
                _drain(self._wake_r)
            elif item is self._listener or item is self._tls_listener:
                self._accept(item, tls=item is self._tls_listener)
            elif isinstance(item, int):
                self._read_ready(item)
            else:
                self._read_closed(item)

    def _accept(self, listener: socket.socket, tls: bool) -> None:
        for _ in range(64):  # what is waiting, not forever
            try:
                conn, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: the connection stays queued; log, go on
                log.error("accept failed: %s", exc)
                return
            with conn:
                self._hand_over(conn, address, tls)

    def _hand_over(self, conn: socket.socket, address: tuple, tls: bool = False) -> None:
        if not self._may_negotiate(address[0]):
            return
        over_limit = len(self._handed) >= self.settings.server.max_associations
        receivers = [c for c in self.children if c.role == "receiver" and c.ready and c.pid]
        if not receivers:
            log.warning("no receiving process is running: closed the connection from %s", address[0])
            return
        # Fewest open first; among equals, the one after the last chosen (round robin).
        order = sorted(range(len(receivers)), key=lambda i: (receivers[i].open, (i - self._next) % len(receivers)))
        for i in order:
            child = receivers[i]
            self._numbers += 1
            try:
                hand_over(child.channel, conn, self._numbers, address, over_limit, tls)
            except OSError as exc:
                log.warning("could not hand a connection to %s (pid %d): %s", child.name, child.pid, exc)
                continue
            self._handed[self._numbers] = _Handed(child, address[0])
            self._set_open(child, child.open + 1)
            self._next = (i + 1) % len(receivers)
            return
        log.error("no receiving process took the connection from %s", address[0])

    def _set_open(self, child: Child, count: int) -> None:
        """A receiving process's open associations, for the parent's hand-off and for the
        receiving processes (`ReceivingLoad`)."""
        child.open = count
        if child.role == "receiver":
            self.load.set(child.number, count)

    def _may_negotiate(self, host: str) -> bool:
        """Whether a new connection from `host` may negotiate: connections that have not yet
        completed their association (they have sent no AE title we could check) are limited,
        per address and in all, so they cannot hold the slots known peers need."""
        server = self.settings.server
        negotiating = [h.host for h in self._handed.values() if not h.negotiated]
        if negotiating.count(host) < server.max_negotiating_per_host and len(negotiating) < server.max_negotiating:
            return True
        now = time.monotonic()
        if now - self._refused_logged > 10:  # at most one line per 10 s under a flood
            self._refused_logged = now
            log.warning("closed a connection from %s: %d connections (%d from it) are still negotiating", host,
                        len(negotiating), negotiating.count(host))
        return False

    def _read_closed(self, channel: socket.socket) -> None:
        child = next((c for c in self.children if c.channel is channel), None)
        if child is None:
            return
        while True:
            try:
                message = channel.recv(32, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                message = b""
            report = parse_report(message)
            if report is None:
                return  # EOF: the child is gone; _reap restarts it
            kind, number = report
            if kind == NEGOTIATED and number in self._handed:
                self._handed[number].negotiated = True
            elif kind == CLOSED and self._handed.pop(number, None) is not None:
                self._set_open(child, max(0, child.open - 1))

    def _read_ready(self, fd: int) -> None:
        child = next((c for c in self.children if c.ready_fd == fd), None)
        try:
            data = os.read(fd, 16)
        except OSError:
            data = b""
        if child is None:
            return
        if data:
            child.ready = True
            log.info("%s process ready (pid %d)", child.name, child.pid)
        os.close(fd)
        child.ready_fd = -1

    def _reap(self, restart: bool) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = next((c for c in self.children if c.pid == pid), None)
            if child is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            child.pid, child.exit_status, child.ready = 0, code, False
            self._set_open(child, 0)
            self._handed = {n: h for n, h in self._handed.items() if h.child is not child}
            self._close_channels(child)
            if not restart or self._stopping.requested:
                continue
            if time.monotonic() - child.started > STEADY_AFTER:
                child.restarts = 0
            delay = RESTART_BACKOFF[min(child.restarts, len(RESTART_BACKOFF) - 1)]
            child.restarts += 1
            child.restart_at = time.monotonic() + delay
            log.error("the %s process (pid %d) ended with status %s; restarting it in %.1f s",
                      child.name, pid, code, delay)

    # -- children -----------------------------------------------------------------------------
    def _start(self, child: Child) -> None:
        ready_r, ready_w = os.pipe()
        if child.role == "receiver":
            child.channel, child.child_channel = handoff_pair()
            child.channel.setblocking(False)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        for handler in logging.getLogger().handlers:
            handler.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            self._become(child, ready_w, parent)
        os.close(ready_w)
        child.pid, child.ready, child.ready_fd = pid, False, ready_r
        self._set_open(child, 0)
        child.started, child.restart_at, child.exit_status = time.monotonic(), None, None
        if child.child_channel is not None:
            child.child_channel.close()
            child.child_channel = None

    def _become(self, child: Child, ready_w: int, parent: int) -> None:
        """In the forked child: drop the parent's sockets and signals, run the role, exit."""
        code = 1
        try:
            _die_with_parent(parent)
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGTERM, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent orders the stop (cli.roles)
            self._listener.close()
            if self._tls_listener is not None:
                self._tls_listener.close()
            if child.role != "writer":
                self._writer_listener.close()
            self._wake_r.close()
            self._wake_w.close()
            for other in self.children:
                if other.channel is not None:
                    other.channel.close()
                if other.ready_fd >= 0:
                    os.close(other.ready_fd)
            child.ready_fd = ready_w
            child.main(child)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - whatever ends the child is logged, then it exits
            log.exception("the %s process failed", child.name)
        finally:
            for handler in logging.getLogger().handlers + logging.getLogger("pacsd.connections").handlers:
                try:
                    handler.flush()
                except Exception:  # noqa: BLE001
                    pass
            os._exit(code)

    def _close_channels(self, child: Child) -> None:
        if child.channel is not None:
            child.channel.close()
            child.channel = None
        if child.ready_fd >= 0:
            os.close(child.ready_fd)
            child.ready_fd = -1

    # -- the roles (run in the child) ---------------------------------------------------------
    def _run_writer(self, child: Child) -> None:
        from pacsd.cli.roles import run_writer

        run_writer(self.settings, self._writer_listener, f"{self.node}-writer", _ready_signal(child))

    def _run_receiver(self, child: Child) -> None:
        from pacsd.cli.roles import run_receiver

        run_receiver(self.settings, child.number, self.count, child.child_channel, self.writer_address,
                     self._hooks_out, f"{self.node}-r{child.number}", _ready_signal(child), self.load)

    def _run_web(self, child: Child) -> None:
        from pacsd.cli.roles import run_web

        run_web(self.settings, self.writer_address, f"{self.node}-web", _ready_signal(child))

    def _run_background(self, child: Child) -> None:
        from pacsd.cli.roles import run_background

        run_background(self.settings, self.writer_address, self._hooks_in, f"{self.node}-bg", _ready_signal(child))

    # -- stopping ---------------------------------------------------------------------------
    def _stop_all(self) -> None:
        """Receivers first (their C-STOREs being stored still need the writer), then web and
        background, then the writer."""
        for listener in (self._listener, self._tls_listener):
            if listener is not None:
                listener.close()
        grace = self.settings.server.shutdown_grace + 2.0
        self._signal_and_wait([c for c in self.children if c.role == "receiver"], grace)
        self._signal_and_wait([c for c in self.children if c.role in ("web", "background")], OTHERS_STOP_WAIT)
        self._signal_and_wait([c for c in self.children if c.role == "writer"], OTHERS_STOP_WAIT)
        log.info("pacsd stopped")

    def _signal_and_wait(self, children: list[Child], wait: float) -> None:
        for child in children:
            if child.pid:
                _kill(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while any(c.pid for c in children) and time.monotonic() < deadline:
            if len(self._stopping.signals) > 1:  # a second SIGTERM or Ctrl-C: stop at once
                break
            self._reap(restart=False)
            time.sleep(0.02)
        for child in children:
            if child.pid:
                log.warning("the %s process (pid %d) did not stop in time (or a second signal came): killed",
                            child.name, child.pid)
                _kill(child.pid, signal.SIGKILL)
                try:
                    os.waitpid(child.pid, 0)
                except ChildProcessError:
                    pass
                child.pid = 0


def _preload() -> None:
    """Import what the children run before forking them: they start faster (a restarted
    receiving process too) and share these pages with the parent instead of each holding its
    own copy.  Collected and frozen first, so no garbage collection in a child touches (and so
    copies) the pages of these objects."""
    import gc
    import importlib

    import pacsd.net.client  # noqa: F401 - imported for the children; these three by the built-in services
    import pacsd.net.commitment_scp  # noqa: F401
    import pacsd.net.qr_scp  # noqa: F401
    import pacsd.net.scp  # noqa: F401
    import pacsd.services.archive  # noqa: F401
    import pacsd.services.lifecycle  # noqa: F401 - imported by Archive() (an import cycle otherwise)
    import pacsd.web.server  # noqa: F401
    from pacsd.services.listeners import BUILTIN_LISTENERS

    for module_name in BUILTIN_LISTENERS:  # loaded by name when an Archive registers its listeners
        importlib.import_module(module_name)
    seam.preload()
    gc.collect()
    gc.freeze()


def _ready_signal(child: Child) -> Callable[[], None]:
    """What a child calls once it serves: one byte down its readiness pipe."""
    fd = child.ready_fd

    def ready() -> None:
        try:
            os.write(fd, b"R")
            os.close(fd)
        except OSError:
            pass

    return ready


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"server.port: {host}:{port} is in use by another program") from None
        raise ConfigError(f"server.port: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this child when the parent dies (kill -9 of the parent included)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(4096, socket.MSG_DONTWAIT):
            pass
    except OSError:
        pass
