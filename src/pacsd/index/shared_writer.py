"""One index writer for several processes: the writer process's loop and its clients.

The receiving processes (and the web process, for STOW-RS) hand their instance records to one
writer process over a Unix socket; it commits whatever is waiting from all of them in one group
(the same `IndexWriter` group commit a single process uses) and answers each record once its
transaction is committed.  Before the commit it makes the group's files durable: the data of
files the client left unflushed (small files) and the folders that gained entries.

`WriterClient` is what a receiving process's `Ingest` calls instead of an `IndexWriter`: the
same `write(record, policy, data_flushed)`.  A writer that dies fails every record it had not
answered (the caller answers the C-STORE with a failure, never success); the next write
connects again once the parent has restarted the writer.

Wire format: a 4-byte big-endian length, then a pickle.  Only processes of the same user may
connect (SO_PEERCRED), since a pickle is trusted input.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from sqlalchemy import Engine

from pacsd.deferred import DeferredFuture
from pacsd.index.rows import WriteOutcome
from pacsd.index.writer import DuplicatePolicy, IndexWriter, InstanceRecord, WriteJob

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
MAX_MESSAGE = 64 << 20  # bytes: a record's header JSON is bounded well below this
CONNECT_WAIT = 10.0  # seconds a client waits for a (re)starting writer before a write fails
ANSWER_TIMEOUT = 300.0  # seconds without a single answer before the writer counts as gone
_PEERCRED = struct.Struct("3i")


class FileDurability(Protocol):
    """What the writer needs of the storage folder (a `BlobStore`)."""

    def make_data_durable(self, relative: str) -> None: ...

    def make_entries_durable(self, relatives: list[str], extra_folders: set[str] = ...) -> None: ...


class WriterUnavailable(RuntimeError):
    """The writer process could not be reached: the record was not committed."""


class CommitUnknown(RuntimeError):
    """The writer process went away after the record was handed to it: it may or may not be
    committed, so its file must stay where it is (`pacsd check` settles it; the sender, who got
    a failure, sends it again)."""


@dataclass
class WriteRequest:
    """One record for the shared writer; `flush_data`: a file whose data is not yet durable."""

    request_id: int
    record: InstanceRecord
    policy: DuplicatePolicy
    flush_data: str | None
    new_folders: list[str]


def writer_address(tag: str) -> str:
    """An abstract-namespace Unix socket address (no file, no path-length limit)."""
    return f"\0pacsd-writer-{tag}"


def listen(address: str) -> socket.socket:
    """The writer's listening socket, made by the parent so a restarted writer inherits it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(address)
    sock.listen(64)
    return sock


def _send(sock: socket.socket, message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_LENGTH.pack(len(data)) + data)


class _Reader:
    """Complete messages out of a stream socket's bytes (non-blocking use)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes | memoryview) -> list:
        self.buffer += data
        messages = []
        while len(self.buffer) >= 4:
            (length,) = _LENGTH.unpack_from(self.buffer)
            if length > MAX_MESSAGE:
                raise ValueError(f"message of {length} bytes is too large")
            if len(self.buffer) < 4 + length:
                break
            messages.append(pickle.loads(bytes(self.buffer[4:4 + length])))
            del self.buffer[:4 + length]
        return messages


def _same_user(conn: socket.socket) -> bool:
    _pid, uid, _gid = _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return uid == os.getuid()


# -- the writer process ----------------------------------------------------------------------

class SharedWriterLoop:
    """The writer process: one thread, every client's records committed in shared groups."""

    def __init__(self, listener: socket.socket, engine: Engine, batch: int, files: FileDurability) -> None:
        self.listener = listener
        self.files = files
        self.writer = IndexWriter(engine, batch=batch, make_durable=self._folders_durable)
        self._clients: dict[socket.socket, _Reader] = {}
        self._stop_r, self._stop_w = socket.socketpair()
        self._group_folders: set[str] = set()
        self._buffer = bytearray(1 << 20)
        self._view = memoryview(self._buffer)

    def stop(self) -> None:
        """Ask the loop to end after the group under way (callable from a signal handler)."""
        try:
            self._stop_w.send(b"!")
        except OSError:
            pass

    def run(self) -> None:
        self.listener.setblocking(False)
        waiting: list[tuple[socket.socket, WriteRequest]] = []
        while True:
            timeout = 0 if waiting else None
            ready, _, _ = select.select([self.listener, self._stop_r, *self._clients], [], [], timeout)
            if self._stop_r in ready:
                break
            for sock in ready:
                if sock is self.listener:
                    self._accept()
                elif sock in self._clients:
                    waiting.extend((sock, request) for request in self._read(sock))
            while waiting:
                group, waiting = waiting[: self.writer.batch], waiting[self.writer.batch:]
                self._commit(group)
        self.writer.close()

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        if not _same_user(conn):
            log.warning("refused a writer connection from another user")
            conn.close()
            return
        conn.setblocking(True)
        self._clients[conn] = _Reader()

    def _read(self, sock: socket.socket) -> list[WriteRequest]:
        try:
            count = sock.recv_into(self._buffer, 0, socket.MSG_DONTWAIT)  # no 1 MiB allocation per read
        except BlockingIOError:
            return []
        except OSError:
            count = 0
        data = self._view[:count]
        if not count:
            self._clients.pop(sock, None)
            sock.close()
            return []
        try:
            return self._clients[sock].feed(data)
        except Exception as exc:  # noqa: BLE001 - a client speaking garbage is dropped, not fatal
            log.error("dropping a writer client: %s", exc)
            self._clients.pop(sock, None)
            sock.close()
            return []

    def _commit(self, group: list[tuple[socket.socket, WriteRequest]]) -> None:
        jobs = []
        for _, request in group:
            flush = None
            if request.flush_data is not None:
                flush = DeferredFuture(partial(self.files.make_data_durable, request.flush_data))
            self._group_folders.update(request.new_folders)
            jobs.append(WriteJob(request.record, request.policy, flush))
        self.writer.commit_group(jobs)
        for (sock, request), job in zip(group, jobs):
            exc = job.future.exception()
            reply = (request.request_id, True, job.future.result()) if exc is None else \
                (request.request_id, False, f"{type(exc).__name__}: {exc}")
            try:
                _send(sock, reply)
            except OSError:
                pass  # the client died; its callers are failed on its side

    def _folders_durable(self, paths: list[str]) -> None:
        """The group's folder entries: the folders of its files and the folders made for them."""
        folders, self._group_folders = self._group_folders, set()
        self.files.make_entries_durable(paths, extra_folders=folders)


# -- the client in each process --------------------------------------------------------------

class _Connection:
    """One connection to the writer, and the answers read from it that nobody has taken yet."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = _Reader()
        self.answers: dict[int, tuple[bool, object]] = {}
        self.reading = False  # a waiting caller is reading answers for everyone
        self.dead = False


class WriterClient:
    """Hands records to the writer process; `write` blocks until the record's group commits.

    Thread-safe: many associations write at once over one connection.  No reader thread: one
    of the waiting callers reads the answers for all (leader/followers), so a lone association
    is woken by its own answer, not by a thread that then has to wake it."""

    def __init__(self, address: str, engine: Engine, take_new_folders: Callable[[], list[str]] = list,
                 answer_timeout: float = ANSWER_TIMEOUT) -> None:
        """`engine`: this process's own engine (for reads, e.g. series numbering);
        `take_new_folders()`: folders this process made since it last asked (their entries must
        be flushed with the next group); `answer_timeout`: seconds without any answer from the
        writer after which it counts as gone."""
        self.address = address
        self.engine = engine
        self.take_new_folders = take_new_folders
        self.answer_timeout = answer_timeout
        self._answered = threading.Condition()
        self._conn: _Connection | None = None
        self._next_id = 0
        self._closed = False

    def write(self, record: InstanceRecord, policy: DuplicatePolicy,
              data_flushed: Future | None = None) -> WriteOutcome:
        """As `IndexWriter.write`: returns once the record's transaction is committed (or raises)."""
        flush_data = None
        if isinstance(data_flushed, DeferredFuture) and data_flushed.cancel():
            flush_data = record.path  # a small file: the writer's group flushes it by name
        elif data_flushed is not None:
            data_flushed.result()  # a large file's flush under way here: durable before we ask
        with self._answered:
            if self._closed:
                raise RuntimeError("the index writer is closed")
            conn = self._connected()
            self._next_id += 1
            request = WriteRequest(self._next_id, record, policy, flush_data, self.take_new_folders())
            try:
                _send(conn.sock, request)
            except OSError as exc:
                self._lost(conn)
                raise WriterUnavailable(f"the index writer is unavailable: {exc}") from None
        ok, answer = self._await(conn, request.request_id)
        if ok:
            assert isinstance(answer, WriteOutcome)
            return answer
        if answer is None:
            raise CommitUnknown("the index writer stopped before answering; the image may or may not be indexed")
        raise RuntimeError(answer)

    def close(self) -> None:
        with self._answered:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.sock.close()

    def _connected(self) -> _Connection:
        """The connection, made (waiting for a restarting writer up to CONNECT_WAIT) if need be."""
        if self._conn is not None:
            return self._conn
        deadline = time.monotonic() + CONNECT_WAIT
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.address)
                break
            except OSError as exc:
                sock.close()
                if time.monotonic() > deadline:
                    raise WriterUnavailable(f"cannot reach the index writer: {exc}") from None
                time.sleep(0.05)
        sock.settimeout(self.answer_timeout)
        self._conn = _Connection(sock)
        return self._conn

    def _await(self, conn: _Connection, request_id: int) -> tuple[bool, object]:
        """(ok, outcome or reason) of a request; (False, None) if the writer went away first."""
        with self._answered:
            while True:
                if request_id in conn.answers:
                    return conn.answers.pop(request_id)
                if conn.dead:
                    return False, None
                if not conn.reading:
                    conn.reading = True  # nobody reads: we do, for everyone
                    break
                self._answered.wait()
        try:
            while True:
                try:
                    data = conn.sock.recv(1 << 16)
                except OSError:  # timed out or broken
                    data = b""
                with self._answered:
                    if data:
                        for answered_id, ok, answer in conn.reader.feed(data):
                            conn.answers[answered_id] = (ok, answer)
                    else:
                        self._lost(conn)
                    self._answered.notify_all()
                    if request_id in conn.answers or conn.dead:
                        return conn.answers.pop(request_id, (False, None))
        finally:
            with self._answered:
                conn.reading = False
                self._answered.notify_all()

    def _lost(self, conn: _Connection) -> None:
        """The writer went away (called holding the condition): requests it had not answered
        have an unknown outcome."""
        conn.dead = True
        if self._conn is conn:
            self._conn = None
        try:
            conn.sock.close()
        except OSError:
            pass
