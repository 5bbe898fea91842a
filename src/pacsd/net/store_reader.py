"""C-STORE requests read, stored and answered without pynetdicom's per-message objects.

For a C-STORE, pynetdicom decodes the command set into a pydicom Dataset, builds a request
primitive, writes the file meta with pydicom, triggers EVT_C_STORE through its service class,
then builds, validates and encodes a response primitive: about a quarter of the CPU time per
small image.  `StoreReader` sits between the event-driven DUL (`pacsd.net.event_reactor`) and
pynetdicom's DIMSE decoder and takes the PDVs of a message first:

- a C-STORE-RQ on an accepted storage context whose abstract syntax is the request's SOP class:
  its command set is read here (`pacsd.net.command_set`), its dataset written as it arrives into
  an `IncomingFile` after the same file meta pynetdicom writes (`pacsd.dicom.file_meta`), the
  complete request handed to the store callback (the listener's, as for EVT_C_STORE), and the
  C-STORE-RSP written in one piece;
- any other message (C-ECHO, C-FIND, N-ACTION, a C-STORE pynetdicom should judge) goes to
  pynetdicom whole and unchanged, fragment by fragment, in order.

It runs in the DUL thread, which is also the thread that writes pynetdicom's queued messages,
so the bytes of two responses never interleave.  (pacsd negotiates no asynchronous operations,
so a peer sends its next request only once the last one is answered.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pynetdicom import _config
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from pacsd.dicom.file_meta import file_meta_bytes
from pacsd.net import command_set as cs
from pacsd.net.incoming import IncomingFile
from pacsd.net.pdv import LAST_COMMAND, message_pdus

log = logging.getLogger(__name__)

PROCESSING_FAILURE = 0xC211  # what pynetdicom answers when the C-STORE handler raises
MAX_COMMAND_SET = 64 * 1024  # bytes: a command set is a few hundred; more is a peer that never ends one


class CommandTooLarge(Exception):
    """A peer sent command fragments past MAX_COMMAND_SET without ending the command set (the
    DUL loop aborts the association on it)."""


@dataclass(frozen=True)
class StoreRequest:
    """A C-STORE request as the store callback sees it."""

    message_id: int
    sop_class_uid: str
    sop_instance_uid: str
    context_id: int


# (association, request, the file holding the dataset) -> (status, error comment)
StoreCallback = Callable[[object, StoreRequest, IncomingFile], tuple[int, str]]


class StoreReader:
    """The DIMSE messages of one accepted association, C-STORE requests served here."""

    def __init__(self, assoc, store: StoreCallback, new_incoming: Callable[[], IncomingFile],
                 deliver: Callable[[list], None]) -> None:
        self.assoc = assoc
        self.store = store
        self.new_incoming = new_incoming
        self.deliver = deliver  # hands PDVs to pynetdicom's DIMSE decoder
        self._command = bytearray()
        self._to_pynetdicom = False  # the rest of the current message is pynetdicom's
        self._request: StoreRequest | None = None
        self._file: IncomingFile | None = None
        self._storage_contexts: dict[int, bool] = {}

    def feed(self, values: list) -> None:
        """Take the PDVs (context ID, control header + fragment) of one P-DATA-TF, in order."""
        for context_id, data in values:
            control = data[0]
            is_command, is_last = control & 1, control & 2
            if self._to_pynetdicom:
                self.deliver([(context_id, data)])
                if is_last and not is_command:
                    self._to_pynetdicom = False
            elif self._file is not None:
                if is_command:  # a new message before the dataset ended: the peer broke off
                    log.error("C-STORE %s: a command arrived before its dataset was complete; dropped",
                              self._request.sop_instance_uid)
                    self.abandon()
                    self._take_command(context_id, data)
                    continue
                self._file.write(data[1:])
                if is_last:
                    self._complete()
            elif is_command:
                self._take_command(context_id, data)
            else:
                self.deliver([(context_id, data)])  # a dataset with no command: pynetdicom's error

    def abandon(self) -> None:
        """Drop a C-STORE whose dataset will not be completed (the association ended)."""
        incoming, self._file, self._request = self._file, None, None
        if incoming is not None:
            _close_and_remove(incoming)

    # -- a message's command ------------------------------------------------------------------
    def _take_command(self, context_id: int, data) -> None:
        if len(self._command) + len(data) - 1 > MAX_COMMAND_SET:
            self._command.clear()
            raise CommandTooLarge(f"command set longer than {MAX_COMMAND_SET} bytes")
        self._command += data[1:]
        if not data[0] & 2:
            return  # more command fragments follow
        command = bytes(self._command)
        self._command.clear()
        try:
            elements = cs.parse(command)
        except cs.InvalidCommandSet:
            elements = None
        if elements is not None and self._begin_store(context_id, elements):
            return
        self.deliver([(context_id, memoryview(bytes([LAST_COMMAND]) + command))])
        self._to_pynetdicom = elements is not None and cs.us(elements, cs.COMMAND_DATA_SET_TYPE) != cs.NO_DATA_SET

    def _begin_store(self, context_id: int, elements: dict[int, bytes]) -> bool:
        """Start reading a C-STORE's dataset into a file; False (nothing done) if pynetdicom
        should handle this message."""
        message_id = cs.us(elements, cs.MESSAGE_ID)
        sop_class = cs.ui(elements, cs.AFFECTED_SOP_CLASS_UID)
        sop_instance = cs.ui(elements, cs.AFFECTED_SOP_INSTANCE_UID)
        data_set_type = cs.us(elements, cs.COMMAND_DATA_SET_TYPE)
        if (cs.us(elements, cs.COMMAND_FIELD) != cs.C_STORE_RQ or message_id is None or not sop_class
                or not sop_instance or data_set_type in (None, cs.NO_DATA_SET)):
            return False
        assoc = self.assoc
        context = assoc._accepted_cx.get(context_id)
        if (context is None or assoc._sent_release or not assoc.is_established
                or str(context.abstract_syntax) != sop_class or not self._is_storage(context_id, sop_class)):
            return False
        self._request = StoreRequest(message_id, sop_class, sop_instance, context_id)
        self._file = self.new_incoming()
        self._file.write(file_meta_bytes(sop_class, sop_instance, str(context.transfer_syntax[0])))
        return True

    def _is_storage(self, context_id: int, sop_class: str) -> bool:
        known = self._storage_contexts.get(context_id)
        if known is None:
            known = _config.UNRESTRICTED_STORAGE_SERVICE or issubclass(uid_to_service_class(sop_class),
                                                                       StorageServiceClass)
            self._storage_contexts[context_id] = known
        return known

    # -- a complete request ----------------------------------------------------------------------
    def _complete(self) -> None:
        request, incoming = self._request, self._file
        self._request = self._file = None
        try:
            status, comment = self.store(self.assoc, request, incoming)
        except Exception as exc:  # as pynetdicom does for a failing EVT_C_STORE handler
            log.exception("C-STORE %s: the store failed", request.sop_instance_uid)
            status, comment = PROCESSING_FAILURE, str(exc)
            _close_and_remove(incoming)
        else:
            incoming.close()  # the store consumed the file: placed it, or removed it on failure
        log.debug("C-STORE %s read by the fast path: 0x%04X", request.sop_instance_uid, status)
        if not self.assoc.is_established:
            return
        response = cs.store_response(request.message_id, request.sop_class_uid, request.sop_instance_uid,
                                     status, comment)
        self.assoc.dul.socket.send(message_pdus(request.context_id, response, None,
                                                self.assoc.dimse.maximum_pdu_size))


def _close_and_remove(incoming: IncomingFile) -> None:
    """Close the file and remove it if it is still there (as pynetdicom does, best effort)."""
    incoming.close()
    try:
        Path(incoming.name).unlink(missing_ok=True)
    except OSError:  # a read-only volume refuses even the removal of a file that is not there
        pass
