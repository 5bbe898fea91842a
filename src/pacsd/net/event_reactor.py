"""Event-driven reactors for accepted associations, with a fast path for P-DATA.

pynetdicom's DUL thread polls (sleep, check socket, check queue), reads each PDU in 4 KiB
`recv` calls, decodes it into objects, runs it through the state machine, and a second thread
polls for the finished message.  For an accepted association we swap in a DUL loop that sleeps in
`select` (socket + a wake-up pipe for messages to send), reads a P-DATA-TF PDU with `recv_into`
and hands its fragments to the C-STORE fast path (`pacsd.net.store_reader`) or straight to
pynetdicom's DIMSE decoder (what the state machine's DT-2 does in Sta6), and serves a complete
C-STORE request in the DUL thread itself.  Association
negotiation, release, abort, other PDUs and other DIMSE services go through pynetdicom as before.
"""

from __future__ import annotations

import logging
import queue
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable

from pynetdicom import _config
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from pacsd.net.incoming import IncomingFile
from pacsd.net.pacing import wake_association_on
from pacsd.net.pdu_limit import abort_for_oversized_pdu, pdu_length_limit
from pacsd.net.store_reader import CommandTooLarge, StoreCallback, StoreReader
from pacsd.net.tcp import quick_ack

log = logging.getLogger(__name__)

IDLE_WAIT = 0.05  # seconds the DUL sleeps in select with nothing to do (timers are checked then)
WHOLE_PDU_LIMIT = 1 << 20  # larger P-DATA-TF PDUs are streamed in pieces of this size
READ_AHEAD = 256 * 1024  # bytes one recv may take beyond the PDU being read (several PDUs at once)
_P_DATA_TF = 0x04
_PDU_TYPES = frozenset(range(1, 8))
_HEADER = struct.Struct(">BBL")
_PDV_HEADER = struct.Struct(">LBB")  # item length, presentation context ID, message control header
_LAST_FRAGMENT = 0x02


class ConnectionBroken(Exception):
    """The peer closed the connection in the middle of a PDU."""


class WakingQueue(queue.Queue):
    """A queue that calls `wake()` whenever a thread other than `quiet_thread` puts into it."""

    def __init__(self, wake, quiet_thread: "ThreadRef | None" = None) -> None:
        super().__init__()
        self._wake, self._quiet = wake, quiet_thread

    def put(self, item, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        if self._quiet is None or threading.get_ident() != self._quiet.ident:
            self._wake()


class ThreadRef:
    """The identity of a thread that starts later (set by the thread itself)."""

    ident: int | None = None


class StoreServingQueue(WakingQueue):
    """The DIMSE message queue: a C-STORE request completed by the DUL thread is served at once,
    in that thread; other messages wait for the association thread as before."""

    def __init__(self, wake, assoc, dul_thread: ThreadRef) -> None:
        super().__init__(wake)
        self._assoc, self._dul_thread = assoc, dul_thread

    def put(self, item, block: bool = True, timeout: float | None = None) -> None:
        context_id, message = item
        in_dul_thread = threading.get_ident() == self._dul_thread.ident
        if not (in_dul_thread and serve_store_now(self._assoc, message, context_id)):
            super().put(item, block, timeout)


def serve_store_now(assoc, message, context_id: int) -> bool:
    """Serve a C-STORE request in this thread, as `Association._serve_request` would; False
    (nothing done) for anything else, or anything unusual, which then goes the usual way.

    Not `_serve_request` itself: it raises and lowers the association's pause flag, which
    belongs to the association thread (another thread sending on the association waits for it,
    and would wait forever if we lowered it while the association thread is paused)."""
    if not isinstance(message, C_STORE) or not message.is_valid_request or assoc._sent_release:
        return False
    context = assoc._accepted_cx.get(context_id)
    if context is None:
        return False
    class_uid = message.AffectedSOPClassUID
    class_uid = assoc.acceptor.accepted_common_extended.get(class_uid, (class_uid,))[0]
    if _config.UNRESTRICTED_STORAGE_SERVICE:
        class_uid = "1.2.840.10008.5.1.4.1.1.1"
    service_class = uid_to_service_class(class_uid)
    if not issubclass(service_class, StorageServiceClass):
        return False
    try:
        service_class(assoc).SCP(message, context)
    except Exception as exc:  # as _serve_request: the handler's own errors are answered inside
        log.exception("C-STORE service failed, aborting the association: %s", exc)
        assoc._abort_nonblocking()  # the blocking abort would wait for this (the DUL) thread
    return True


def make_event_driven(assoc, max_pdu: int = 0, store: StoreCallback | None = None,
                      new_incoming: Callable[[], IncomingFile] | None = None) -> bool:
    """Give an accepted association (before it starts) the event-driven DUL loop and
    association wake-ups; PDUs longer than `max_pdu` allows (0: no limit) abort it.  With
    `store` (and `new_incoming`, where datasets are written), C-STORE requests are read and
    answered by a `StoreReader` calling `store`.
    False, changing nothing, if its socket is not a plain TCP socket."""
    dul = assoc.dul
    raw = getattr(dul.socket, "socket", None)
    if not isinstance(raw, socket.socket) or isinstance(raw, ssl.SSLSocket):
        return False
    reactor = EventDrivenDul(dul, raw, max_pdu)
    if store is not None and new_incoming is not None:
        reactor.reader = StoreReader(assoc, store, new_incoming, reactor.to_pynetdicom)
    wake_association = wake_association_on(assoc)
    dul.to_provider_queue = _replaced(dul.to_provider_queue, WakingQueue(reactor.wake, reactor.thread))
    dul.event_queue = _replaced(dul.event_queue, WakingQueue(reactor.wake, reactor.thread))
    dul.to_user_queue = _replaced(dul.to_user_queue, WakingQueue(wake_association))
    assoc.dimse.msg_queue = _replaced(assoc.dimse.msg_queue,
                                      StoreServingQueue(wake_association, assoc, reactor.thread))
    kill_dul = dul.kill_dul

    def kill_and_wake() -> None:
        kill_dul()
        reactor.wake()

    dul.kill_dul = kill_and_wake
    reactor.on_exit = wake_association
    dul._target = reactor.run
    return True


def _replaced(old: queue.Queue, new: queue.Queue) -> queue.Queue:
    """`new`, holding what `old` held (the socket queues Evt5 before the threads start)."""
    with old.mutex:
        new.queue.extend(old.queue)
    return new


class EventDrivenDul:
    """The DUL reactor of one accepted association (runs in pynetdicom's DUL thread)."""

    def __init__(self, dul, raw: socket.socket, max_pdu: int = 0) -> None:
        self.dul = dul
        self.raw = raw
        self.max_pdu = max_pdu
        # Socket objects, not pipe fds: once closed they refuse to write, whereas a closed fd
        # number may already belong to another file when a late wake() comes.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._header = bytearray(6)
        self._stream_buffer: bytearray | None = None
        # Bytes received beyond what was asked for: [_ahead_start, _ahead_end) of _ahead.
        self._ahead = memoryview(bytearray(READ_AHEAD))
        self._ahead_start = self._ahead_end = 0
        self.thread = ThreadRef()
        self.on_exit = lambda: None
        self.reader: StoreReader | None = None  # takes the PDVs first, when set

    def wake(self) -> None:
        try:
            self._wake_w.send(b"!")
        except OSError:
            pass  # full: it wakes the loop just as well; closed: the loop has ended

    def run(self) -> None:
        """pynetdicom's `DULServiceProvider.run_reactor`, waiting in select instead of polling."""
        dul = self.dul
        self.thread.ident = threading.get_ident()
        dul._idle_timer.start()
        assoc = dul.assoc
        idle = False
        try:
            while True:
                if not assoc._dul_ready.is_set():
                    assoc._dul_ready.set()
                if idle:
                    self._wait()
                if dul._kill_thread:
                    break
                if dul.artim_timer.expired:
                    dul.event_queue.put("Evt18")
                worked = False
                try:
                    if dul.to_provider_queue.queue and dul._process_recv_primitive():
                        pass  # (a look first: on an empty queue it raises and catches IndexError)
                    elif self._transport_event():
                        dul._idle_timer.restart()
                        worked = True
                except Exception as exc:
                    self._abort(exc)
                    return
                if not dul.event_queue.queue:  # a look first: get() raising Empty costs more
                    idle = not worked
                    continue
                try:
                    event = dul.event_queue.get(block=False)
                except queue.Empty:
                    idle = not worked
                    continue
                dul.state_machine.do_action(event)
                idle = False
        finally:
            if self.reader is not None:
                self.reader.abandon()  # a dataset cut off by the end of the association
            self._wake_r.close()
            self._wake_w.close()
            self.on_exit()

    def _wait(self) -> None:
        """Sleep until the socket is readable, something is to be sent, or IDLE_WAIT passes."""
        if self._ahead_end > self._ahead_start:
            return  # a PDU (or its start) was read ahead: the socket may have nothing more
        sock = self.dul.socket
        watched = [self._wake_r]
        if sock is not None and sock.socket is not None and sock._is_connected:
            watched.append(sock.socket)
        try:
            ready, _, _ = select.select(watched, [], [], IDLE_WAIT)
        except (OSError, ValueError):
            return  # the socket was closed meanwhile: the next check finds out
        if self._wake_r in ready:
            try:
                while self._wake_r.recv(4096):
                    pass
            except OSError:
                pass  # drained

    def _abort(self, exc: Exception) -> None:
        """As pynetdicom's reactor does on an exception: A-ABORT, bypassing the state machine."""
        dul = self.dul
        if isinstance(exc, CommandTooLarge):  # a peer's doing, not ours: no traceback
            log.warning("aborting the association from %s: %s", dul.assoc.requestor.address, exc)
        else:
            log.error("exception in the DUL reactor, aborting the association: %s", exc, exc_info=exc)
        abort_pdu = A_ABORT_RQ()
        abort_pdu.source = 0x02
        abort_pdu.reason_diagnostic = 0x00
        dul.socket.send(abort_pdu.encode())
        dul.assoc.is_aborted = True
        dul.assoc.is_established = False
        dul.assoc._kill = True
        dul._kill_thread = True

    # -- reading ----------------------------------------------------------------------------
    def _transport_event(self) -> bool:
        """Read one PDU if one is waiting; the fast path for P-DATA-TF in Sta6."""
        dul = self.dul
        read_ahead = self._ahead_end > self._ahead_start
        fast = dul.state_machine.current_state == "Sta6"
        if not fast and not read_ahead:
            return dul._is_transport_event()
        if not read_ahead and not dul.socket.ready:
            return False
        try:
            self._read_pdu(fast)
        except ConnectionBroken:
            dul.event_queue.put("Evt17")  # transport connection closed
        except (OSError, TimeoutError) as exc:
            log.error("connection closed before the entire PDU was received: %s", exc)
            dul.event_queue.put("Evt17")
        return True

    def _read_pdu(self, fast: bool = True) -> None:
        """Read one PDU; `fast` (Sta6): P-DATA-TF PDUs take the fast path, else every PDU is
        decoded and queued as pynetdicom's reactor does (bytes read ahead in Sta6 and left
        when the state changed)."""
        dul = self.dul
        header = self._header
        self._recv_into(memoryview(header))
        pdu_type, _, length = _HEADER.unpack(header)
        if pdu_type not in _PDU_TYPES:
            log.error("unknown PDU type received 0x%02X", pdu_type)
            dul.event_queue.put("Evt19")  # unrecognised or invalid PDU
            return
        limit = pdu_length_limit(pdu_type, self.max_pdu)
        if limit is not None and length > limit:
            abort_for_oversized_pdu(dul.assoc, self.raw, length, limit)
            raise ConnectionBroken()
        if fast and pdu_type == _P_DATA_TF and length <= WHOLE_PDU_LIMIT:
            self._read_p_data(length)
            return
        if fast and pdu_type == _P_DATA_TF:
            self._stream_p_data(length)
            return
        body = bytearray(6 + length)
        body[:6] = header
        self._recv_into(memoryview(body)[6:])
        try:
            pdu, event = dul._decode_pdu(body)
        except Exception as exc:
            log.error("unable to decode the received PDU: %s", exc)
            dul.event_queue.put("Evt19")
            return
        dul.event_queue.put(event)
        dul._recv_pdu.put(pdu)

    def _read_p_data(self, length: int) -> None:
        """A P-DATA-TF read whole: its PDVs go to the DIMSE decoder as one P-DATA primitive."""
        body = bytearray(length)
        view = memoryview(body)
        self._recv_into(view)
        values, offset = [], 0
        while offset < length:
            if offset + 6 > length:
                return self._invalid("a PDV header runs past the end of its PDU")
            item_length, context_id, _ = _PDV_HEADER.unpack_from(body, offset)
            end = offset + 4 + item_length
            if item_length < 2 or end > length:
                return self._invalid("a PDV runs past the end of its PDU")
            values.append((context_id, view[offset + 5:end]))  # control header + fragment
            offset = end
        self._deliver(values)

    def _stream_p_data(self, length: int) -> None:
        """A large P-DATA-TF read in pieces: each piece of a fragment is delivered on its own
        (only the last keeps the fragment's last-fragment bit), so memory stays bounded."""
        if self._stream_buffer is None:
            self._stream_buffer = bytearray(1 + WHOLE_PDU_LIMIT)
        buffer = self._stream_buffer
        view = memoryview(buffer)
        pdv_header = bytearray(6)
        remaining = length
        while remaining > 0:
            if remaining < 6:
                return self._invalid("a PDV header runs past the end of its PDU")
            self._recv_into(memoryview(pdv_header))
            item_length, context_id, control = _PDV_HEADER.unpack(pdv_header)
            if item_length < 2 or 4 + item_length > remaining:
                return self._invalid("a PDV runs past the end of its PDU")
            remaining -= 4 + item_length
            left = item_length - 2
            while True:
                piece = min(left, WHOLE_PDU_LIMIT)
                left -= piece
                buffer[0] = control if left == 0 else control & ~_LAST_FRAGMENT
                self._recv_into(view[1:1 + piece])
                self._deliver([(context_id, view[:1 + piece])])
                if left == 0:
                    break

    def _deliver(self, values: list) -> None:
        """Hand the PDVs of a P-DATA-TF on: to the store reader if there is one, else pynetdicom."""
        if self.reader is not None:
            self.reader.feed(values)
        else:
            self.to_pynetdicom(values)

    def to_pynetdicom(self, values: list) -> None:
        """Hand PDVs to pynetdicom's DIMSE provider, as DT-2 does with a decoded P-DATA-TF."""
        primitive = P_DATA()
        primitive._presentation_data_value_list = values
        self.dul.assoc.dimse.receive_primitive(primitive)

    def _invalid(self, why: str) -> None:
        log.error("invalid P-DATA-TF PDU: %s", why)
        self.dul.event_queue.put("Evt19")

    def _recv_into(self, view: memoryview) -> None:
        """Fill `view`: from bytes read ahead, then from the socket (blocking);
        ConnectionBroken if the peer closes first.

        A short read (a PDU header, a small PDU) receives as much as is waiting, up to
        READ_AHEAD, and keeps the rest for the next calls: one `recv` for several PDUs instead
        of two per PDU.  A long read goes straight into `view`.  Each read is acknowledged at
        once: a peer with Nagle on may hold back the rest of a PDU until what it sent so far is
        acknowledged (see pacsd.net.tcp)."""
        wanted = len(view)
        got = min(wanted, self._ahead_end - self._ahead_start)
        if got:
            start = self._ahead_start
            view[:got] = self._ahead[start:start + got]
            self._ahead_start = start + got
            if got == wanted:
                return
        raw, ahead = self.raw, self._ahead
        while got < wanted:
            left = wanted - got
            if left >= READ_AHEAD // 2:
                n = raw.recv_into(view[got:])
                if n == 0:
                    raise ConnectionBroken()
                quick_ack(raw)
                got += n
                continue
            n = raw.recv_into(ahead)
            if n == 0:
                raise ConnectionBroken()
            quick_ack(raw)
            taken = min(n, left)
            view[got:got + taken] = ahead[:taken]
            self._ahead_start, self._ahead_end = taken, n
            got += taken
