"""The DICOM listener: Storage SCP and Verification SCP on pynetdicom, with access control.

Handlers are thin: C-STORE hands the received file to `Ingest.store` and answers its status.
Access policy (calling AE and host whitelist) is applied when the association is requested;
SOP classes outside `accepted_sop_classes` are refused at negotiation.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import socket
import sys
import threading
import time
from functools import partial
from pathlib import Path

from pydicom import config as pydicom_config
from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, _config, evt
from pynetdicom.sop_class import Verification

from pacsd.config import Settings
from pacsd.dicom.sopclasses import STORAGE_CLASSES
from pacsd.errors import StorageFull, storage_error
from pacsd.net import seam
from pacsd.net.command_set import shorten_comment
from pacsd.net.connlog import ABORTED_BY_PEER, TIMED_OUT, ConnectionTracker
from pacsd.net.contexts import NegotiationPolicy, follow_requestor_preference
from pacsd.net.handoff import CLOSED, NEGOTIATED, report, server_class_for
from pacsd.net.incoming import IncomingFile, incoming_file_of, new_incoming_file, receive_into
from pacsd.net.listener import listen_with_pacsd_server
from pacsd.net.pdu_limit import refuse_oversized_pdus
from pacsd.net.store_reader import StoreRequest
from pacsd.net.tcp import bound_reads, tune_association_socket
from pacsd.net.tls import certificate_refuses, server_context
from pacsd.services.archive import Archive
from pacsd.services.ingest import OUT_OF_RESOURCES, Expected, Source

log = logging.getLogger(__name__)

# Seconds a thread holding the GIL keeps it while another waits.  Associations mostly wait on
# sockets and flushes; with 5 ms (Python's default) each return from a wait could queue behind
# another association's parsing (4 associations, 64x64: ~80 -> ~100 instances/s).
GIL_SWITCH_INTERVAL = 0.0005

# A-ASSOCIATE-RJ: rejected-permanent, by the service user, calling AE title not recognised.
_REJECT_CALLING_AET = (0x01, 0x01, 0x03)
# A-ASSOCIATE-RJ: rejected-transient, by the service provider (presentation), local limit exceeded.
_REJECT_LOCAL_LIMIT = (0x02, 0x03, 0x02)


def configure_pynetdicom() -> None:
    """Process-wide pynetdicom (and pydicom) settings for a server: quiet standard handlers, no
    value checks while reading.

    pydicom's default checks every value it reads against its VR and warns; it never refuses
    one, so turning the checks off changes no result (files are stored as received anyway) and
    saves about a fifth of the header parsing and JSON conversion at ingest.  A thread back from
    a socket or disk wait gets the GIL within GIL_SWITCH_INTERVAL instead of Python's 5 ms."""
    _config.LOG_HANDLER_LEVEL = "none"
    _config.STORE_RECV_CHUNKED_DATASET = True  # datasets written to a file as they arrive
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)


def keep_startup_objects_out_of_gc() -> None:
    """Move every object alive now (modules, pydicom's dictionaries, the server's own) out of
    the garbage collector's reach.

    pynetdicom's listener runs a full `gc.collect()` every 59 associations (and Python its own
    oldest-generation passes); with ~150,000 objects alive after start-up each took ~100 ms,
    holding the GIL, so every 59th query or C-STORE stalled that long.  Frozen objects are never
    freed, which is what objects alive for the life of the server are anyway."""
    gc.collect()
    gc.freeze()


class DicomService:
    """A DICOM service the listener offers besides Storage (offered by a listener's
    `pacsd_dicom_services`, see `pacsd.net.builtin_services`): its contexts and event handlers;
    `start()` once the listener runs, `stop()` first thing at shutdown (background workers, e.g.
    Storage Commitment's report delivery)."""

    def add_contexts(self, ae: AE) -> None:
        raise NotImplementedError

    def handlers(self) -> list:
        raise NotImplementedError

    def start(self) -> None:
        """Nothing to start unless the service says otherwise."""

    def stop(self) -> None:
        """Nothing to stop unless the service says otherwise."""


def _store_answer(status: int, comment: str) -> Dataset:
    """The C-STORE response's status and error comment, for pynetdicom's service class."""
    answer = Dataset()
    answer.Status = status
    if comment:
        answer.ErrorComment = shorten_comment(comment)
    return answer


class DicomServer:
    """One listening AE serving Verification, Storage and the extra services for an `Archive`.

    It listens on `server.host`:`server.port` itself, or (`handoff`: a receiving process of
    several) serves the connections its parent accepted and handed over that Unix socket; then
    the services leave their background duties (e.g. sweeping for due commitment reports) to
    the server's background process."""

    def __init__(self, settings: Settings, archive: Archive, handoff: socket.socket | None = None) -> None:
        self.settings = settings
        self.archive = archive
        self.handoff = handoff
        self.background_duties = handoff is None
        self.connections = ConnectionTracker()
        self.services: list[DicomService] = archive.listeners.dicom_services(self)
        self._server = None
        self._tls_server = None  # one process: the TLS listener beside the plain one
        self._fast: seam.FastPath | None = None  # set by start() when the fast receive path is on
        self._in_flight = 0  # C-STOREs being stored now (a stop waits for them)
        self._in_flight_lock = threading.Lock()

    # -- set-up ---------------------------------------------------------------------------
    def build_ae(self) -> AE:
        server = self.settings.server
        ae = AE(ae_title=server.ae_title)
        ae.maximum_associations = server.max_associations
        ae.maximum_pdu_size = server.max_pdu
        ae.acse_timeout = server.acse_timeout
        ae.dimse_timeout = server.dimse_timeout
        ae.network_timeout = server.network_timeout
        ae.require_called_aet = server.require_called_aet
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        accepted = self.archive.accepted_sop_classes
        for uid in sorted(set(STORAGE_CLASSES.values()) | accepted):
            if not accepted or uid in accepted:
                ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)
        for service in self.services:
            service.add_contexts(ae)
        unlisted = bool(self.settings.accept_unknown_sop_classes and not accepted)
        policy = NegotiationPolicy(tuple(server.transfer_syntax_preference), unlisted)
        if not follow_requestor_preference(ae, policy):
            _config.UNRESTRICTED_STORAGE_SERVICE = unlisted
        return ae

    def handlers(self) -> list:
        return [
            (evt.EVT_CONN_OPEN, self._on_conn_open),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_RELEASED, self._on_result, ["released"]),
            (evt.EVT_ACSE_SENT, self._on_acse_sent),
            (evt.EVT_ABORTED, self._on_result, [ABORTED_BY_PEER]),  # ours: noted when sent
            (evt.EVT_CONN_CLOSE, self._on_conn_close),
            (evt.EVT_C_STORE, self._on_store),
            *(handler for service in self.services for handler in service.handlers()),
        ]

    def start(self) -> None:
        """Start listening in background threads."""
        configure_pynetdicom()
        self._fast = seam.install(self.settings.server.fast_receive, lambda: receive_into(self.archive.blobs))
        ae = self.build_ae()
        server = self.settings.server
        address = (server.host, server.port)
        tls = server_context(server.tls) if server.tls.certificate is not None else None
        if self.handoff is not None:  # the parent accepts, on the TLS port too
            listen_with_pacsd_server(ae, server_class_for(self.handoff, address, tls, server.acse_timeout))
        else:
            listen_with_pacsd_server(ae)
        self._server = ae.start_server(address, block=False, evt_handlers=self.handlers())
        if self.handoff is None and server.tls.port is not None:
            self._tls_server = ae.start_server((server.host, server.tls.port), block=False, ssl_context=tls,
                                               evt_handlers=self.handlers())
            log.info("DICOM TLS listener on %s:%d", *self._tls_server.server_address[:2])
        keep_startup_objects_out_of_gc()
        log.info("DICOM listener %s on %s:%d", server.ae_title, *self._server.server_address[:2])
        for service in self.services:
            service.start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def stop(self) -> None:
        """Stop accepting; let C-STOREs being stored finish (for the grace period at most), then
        abort every association.  Idle peers, and connections that never sent anything, are not
        waited for: they would hold up a stop for as long as they like."""
        if self._server is None:
            return
        for service in self.services:
            service.stop()
        servers = [s for s in (self._server, self._tls_server) if s is not None]
        self._server = self._tls_server = None
        for server in servers:
            server.shutdown()
        deadline = time.monotonic() + self.settings.server.shutdown_grace
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        for assoc in [assoc for server in servers for assoc in server.active_associations]:
            log.warning("aborting association from %s at shutdown", assoc.requestor.ae_title or "-")
            assoc.abort()

    # -- handlers -------------------------------------------------------------------------
    def _on_conn_open(self, event) -> None:
        # Until the association is accepted, every read must complete within the ARTIM time
        # (acse_timeout): a peer that sends part of an A-ASSOCIATE-RQ and waits is cut off.
        bound_reads(event.assoc, self.settings.server.acse_timeout)
        self._close_when_thread_ends(event.assoc)
        tune_association_socket(event.assoc)
        max_pdu = self.settings.server.max_pdu
        refuse_oversized_pdus(event.assoc, max_pdu)  # PDUs pynetdicom reads (negotiation)
        if self._fast is not None:
            new_file = partial(new_incoming_file, self.archive.blobs)
            if not self._fast.make_event_driven(event.assoc, max_pdu, self._store, new_file):
                self._fast.shorten_dul_polling(event.assoc)
        address = event.address
        stats = self.connections.opened(event.assoc, f"{address[0]}:{address[1]}")
        raw = event.assoc.dul.socket.socket
        stats.over_limit = getattr(raw, "over_limit", False)
        stats.handoff_number = getattr(raw, "number", 0)

    def _on_requested(self, event) -> None:
        assoc = event.assoc
        stats = self.connections.get(assoc)
        request = assoc.requestor.primitive  # the A-ASSOCIATE-RQ: titles as the peer sent them
        calling = str(request.calling_ae_title).strip()
        if stats is not None:
            stats.calling_aet, stats.called_aet = calling, str(request.called_ae_title).strip()
            if stats.over_limit:
                log.warning("rejected association from %s: %d associations open already", calling,
                            self.settings.server.max_associations)
                stats.result, stats.reason = "rejected", "too many associations"
                assoc.acse.send_reject(*_REJECT_LOCAL_LIMIT)
                return
        refusal = certificate_refuses(self.settings.server.tls, assoc.dul.socket.socket, calling)
        if refusal:
            log.warning("rejected association from %s at %s: %s", calling, assoc.requestor.address, refusal)
            if stats is not None:
                stats.result, stats.reason = "rejected", refusal
            assoc.acse.send_reject(*_REJECT_CALLING_AET)
            return
        allowed = self.settings.access.allowed_aets
        if not allowed:
            return
        host = assoc.requestor.address
        if any(peer.ae_title == calling and peer.host in (None, host) for peer in allowed):
            return
        log.warning("rejected association from %s at %s: calling AE not allowed", calling, host)
        if stats is not None:
            stats.result, stats.reason = "rejected", "calling AE not allowed"
        assoc.acse.send_reject(*_REJECT_CALLING_AET)

    def _on_accepted(self, event) -> None:
        bound_reads(event.assoc, self.settings.server.network_timeout)  # then the network timeout
        stats = self.connections.get(event.assoc)
        if self.handoff is not None and stats is not None:
            report(self.handoff, NEGOTIATED, stats.handoff_number)

    def _on_result(self, event, result: str) -> None:
        stats = self.connections.get(event.assoc)
        if stats is not None:
            stats.end(result)

    def _on_acse_sent(self, event) -> None:
        # Our A-RELEASE-RP, A-ASSOCIATE-RJ or A-ABORT: the DUL may send it and see the connection
        # close (and the line be logged) before the association thread's event, so note it now.
        self.connections.sent(event.assoc, event.primitive)

    def _on_conn_close(self, event) -> None:
        self._closed(event.assoc)

    def _closed(self, assoc, result_if_open: str | None = None) -> None:
        """The association's connection is gone: its log line, and the parent told (once)."""
        closed = self.connections.closed(assoc, result_if_open, self.settings.server.acse_timeout)
        if closed is not None and self.handoff is not None:
            report(self.handoff, CLOSED, closed.handoff_number)

    def _close_when_thread_ends(self, assoc) -> None:
        """pynetdicom closes a connection that never completed its A-ASSOCIATE-RQ (ARTIM
        expired) without EVT_CONN_CLOSE: the association thread's end closes it for us."""
        run = assoc.run

        def run_then_close() -> None:
            try:
                run()
            finally:
                self._closed(assoc, TIMED_OUT)

        assoc.run = run_then_close

    def _on_store(self, event) -> Dataset:
        """EVT_C_STORE: a C-STORE pynetdicom read (the fast path calls `_store` itself)."""
        request = event.request
        incoming = incoming_file_of(request)
        path = Path(event.dataset_path)
        if incoming is None:  # stock pynetdicom wrote it to the system's temp folder: bring it over
            try:
                path = self._copy_to_incoming(path)
            except OSError as exc:
                log.warning("refused %s (status 0xA700): %s", request.AffectedSOPInstanceUID,
                            storage_error(exc, "cannot receive the dataset"))
                return _store_answer(OUT_OF_RESOURCES, str(storage_error(exc, "cannot receive the dataset")))
        status, comment = self._store(event.assoc, StoreRequest(
            request.MessageID, str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID),
            event.context.context_id), incoming, path)
        return _store_answer(status, comment)

    def _copy_to_incoming(self, path: Path) -> Path:
        """A copy of `path` in the storage volume's incoming folder (pynetdicom removes its own)."""
        temp = self.archive.blobs.new_temp_path()
        try:
            shutil.copyfile(path, temp)
        except OSError:
            temp.unlink(missing_ok=True)
            raise
        return temp

    def _store(self, assoc, request: StoreRequest, incoming: IncomingFile | None,
               path: Path | str | None = None) -> tuple[int, str]:
        """Archive a received dataset; the DICOM status and, for a failure, its reason."""
        stats = self.connections.get(assoc)
        path = incoming.name if path is None else path  # text: see BlobStore._text_path
        source = Source("dimse", assoc.requestor.ae_title.strip(), str(assoc.requestor.address))
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            return self._count_store(stats, request, incoming, path, source)
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    def _count_store(self, stats, request: StoreRequest, incoming: IncomingFile | None, path: Path | str,
                     source: Source) -> tuple[int, str]:
        try:
            if incoming is not None:
                incoming.finish()
        except StorageFull as exc:
            log.warning("refused %s from %s (status 0xA700): %s", request.sop_instance_uid, source.calling_aet, exc)
            result_status, reason, ok, size = OUT_OF_RESOURCES, str(exc), False, 0
        else:
            content = incoming.content if incoming is not None else None
            size = len(content) if content is not None else os.stat(path).st_size
            result = self.archive.ingest.store(path, source, Expected(request.sop_class_uid, request.sop_instance_uid),
                                               content)
            result_status, reason, ok = result.status, result.reason, result.ok
        if stats is not None:
            if ok:
                stats.stored += 1
                stats.bytes += size
            else:
                stats.failed += 1
        return result_status, "" if ok else reason
