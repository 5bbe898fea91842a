"""Query/Retrieve SCP: C-FIND, C-MOVE and C-GET handlers, Patient Root and Study Root.

Thin: permissions, DIMSE statuses and C-CANCEL checks live here; matching and choosing the
instances to send are the query and retrieve services' job.  pynetdicom runs the sub-operation
associations and counts them.  Offered to `DicomServer` by `pacsd.net.builtin_services`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, _config, evt
from pynetdicom.dimse_primitives import C_MOVE

from pacsd.config import QueryRetrievePermission, Settings
from pacsd.dicom.sopclasses import STORAGE_CLASSES
from pacsd.errors import PacsError
from pacsd.index.repository import StoredInstance
from pacsd.net.command_set import shorten_comment
from pacsd.net.find_responses import PendingResponses
from pacsd.net.qr_models import MODEL_OF
from pacsd.net.reactor_pause import pause_safely
from pacsd.net.scp import DicomService
from pacsd.net.tcp import tune_association_socket
from pacsd.net.tls import client_context
from pacsd.services.archive import Archive
from pacsd.services.audit import Actor
from pacsd.services.deidentify import site_profile
from pacsd.services.query import QueryService
from pacsd.services.retrieve import (
    CannotSend,
    RetrieveService,
    accepted_syntaxes,
    deidentified_copy,
    prepare,
    proposed_contexts,
    unsendable,
)

log = logging.getLogger(__name__)


PENDING = 0xFF00
CANCELLED = 0xFE00
IDENTIFIER_DOES_NOT_MATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000
NOT_PERMITTED = 0xC001  # a failure in the "unable to process" range, with an Error Comment


def failure(status: int, comment: str) -> Dataset:
    """A failure status with its reason, as pynetdicom takes it from a handler."""
    answer = Dataset()
    answer.Status = status
    answer.ErrorComment = shorten_comment(comment)
    return answer


def send_files_unchanged(assoc) -> None:
    """Make the sub-operations of `assoc` send a stored file's own bytes.

    pynetdicom's C-MOVE/C-GET loop sends the datasets a handler yields, re-encoded by pydicom
    (which, for one, drops group lengths).  A yielded `file_stand_in` carries the file's path;
    this wrapper hands that path to `send_c_store`, which then streams the file unchanged.
    """
    _config.STORE_SEND_CHUNKED_DATASET = True  # a path is streamed, not read into a Dataset
    send_c_store = assoc.send_c_store

    def send(dataset, *args, **kwargs):
        return send_c_store(getattr(dataset, "stored_path", dataset), *args, **kwargs)

    assoc.send_c_store = send


def file_stand_in(instance: StoredInstance, path: Path) -> Dataset:
    """What the handler yields for a file sent unchanged (see `send_files_unchanged`)."""
    stand_in = Dataset()
    stand_in.SOPClassUID = instance.sop_class_uid
    stand_in.SOPInstanceUID = instance.sop_uid
    stand_in.stored_path = path
    return stand_in


class QueryRetrieveService(DicomService):
    """The C-FIND, C-MOVE and C-GET SCP of one listener."""

    def __init__(self, settings: Settings, archive: Archive) -> None:
        self.settings = settings
        qr = settings.query_retrieve
        self.query = QueryService(archive.engine, settings.server.ae_title, qr.case_insensitive_names,
                                  qr.max_results)
        self.retrieve = RetrieveService(archive.engine, archive.blobs)
        self.audit = archive.audit
        # pynetdicom decodes and renders every request and answer identifier for log lines nobody
        # reads (its handlers are off): that cost more than building the answer.
        _config.LOG_REQUEST_IDENTIFIERS = _config.LOG_RESPONSE_IDENTIFIERS = False

    def add_contexts(self, ae: AE) -> None:
        for uid in MODEL_OF:
            ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)
        # C-GET sends on the requestor's association: accept the Storage SCP role it asks for.
        storage = set(STORAGE_CLASSES.values())
        for context in ae.supported_contexts:
            if context.abstract_syntax in storage:
                ae.add_supported_context(context.abstract_syntax, context.transfer_syntax,
                                         scu_role=True, scp_role=True)

    def handlers(self) -> list:
        return [(evt.EVT_C_FIND, self._on_find), (evt.EVT_C_MOVE, self._on_move), (evt.EVT_C_GET, self._on_get)]

    # -- C-FIND ---------------------------------------------------------------------------
    def _on_find(self, event) -> Iterator:
        calling = event.assoc.requestor.ae_title.strip()
        permission = self.settings.query_retrieve.permission(calling)
        if permission is None or not permission.find:
            log.warning("C-FIND from %s refused: not permitted", calling)
            yield failure(NOT_PERMITTED, f"{calling} may not query"), None
            return
        cancel_seen = []  # event.is_cancelled reports a C-CANCEL once: remember it

        def cancelled() -> bool:
            if not cancel_seen and event.is_cancelled:
                cancel_seen.append(True)
            return bool(cancel_seen)

        try:
            identifier = event.identifier
            matches = self.query.find(identifier.get("QueryRetrieveLevel", ""), identifier,
                                      MODEL_OF[event.request.AffectedSOPClassUID], cancelled=cancelled,
                                      accounts=permission.accounts)
        except PacsError as exc:
            log.warning("C-FIND from %s refused: %s", calling, exc)
            yield failure(IDENTIFIER_DOES_NOT_MATCH, str(exc)), None
            return
        syntax = UID(event.context.transfer_syntax)
        implicit, little, charset = syntax.is_implicit_VR, syntax.is_little_endian, identifier.get("SpecificCharacterSet")
        pending = PendingResponses(event.assoc, event.request, event.context.context_id, syntax.is_deflated)
        for answer in matches:
            if not pending.add(answer.encoded(implicit, little, charset)):
                return  # the association has ended
        pending.finish()
        log.debug("C-FIND from %s: %d answers", calling, pending.sent)
        self._audit(event, "searched", detail=f"C-FIND {identifier.get('QueryRetrieveLevel', '')}: "
                    f"{pending.sent} answer(s)", study_uid=str(identifier.get("StudyInstanceUID", "") or ""))
        if cancelled():
            log.info("C-FIND from %s cancelled", calling)
            yield CANCELLED, None

    # -- C-MOVE ---------------------------------------------------------------------------
    def _on_move(self, event) -> Iterator:
        calling = event.assoc.requestor.ae_title.strip()
        destination = str(event.move_destination).strip()
        known = self.settings.known_ae(destination)
        if known is None:
            log.warning("C-MOVE from %s refused (0xA801): %s is not a known AE (add it to known_aes)",
                        calling, destination)
            yield None, None  # pynetdicom answers 0xA801 Move Destination Unknown
            return
        refusal = _move_refusal(self.settings.query_retrieve.permission(calling), destination)
        if refusal:
            log.warning("C-MOVE from %s to %s refused: %s", calling, destination, refusal)
            yield from _refuse_move(event, NOT_PERMITTED, refusal)
            return
        try:
            selected = self._select(event, calling, "C-MOVE")
        except PacsError as exc:
            yield from _refuse_move(event, IDENTIFIER_DOES_NOT_MATCH, str(exc))
            return
        try:
            profile = site_profile(self.settings) if known.deidentify else None
        except PacsError as exc:
            log.error("C-MOVE from %s to %s refused: %s", calling, destination, exc)
            yield from _refuse_move(event, UNABLE_TO_PROCESS, str(exc))
            return
        sub_association = []
        yield known.host, known.port, {
            **({"tls_args": (client_context(self.settings.server.tls), known.host)} if known.tls else {}),
            "ae_title": known.ae_title,
            "contexts": proposed_contexts(selected),
            "evt_handlers": [(evt.EVT_CONN_OPEN, lambda e: tune_association_socket(e.assoc)),
                             (evt.EVT_ACCEPTED, lambda e: sub_association.append(e.assoc))],
        }
        yield len(selected)
        accepted = {}
        if sub_association:
            pause_safely(sub_association[0])  # no C-STORE response lost to pynetdicom's reactor
            send_files_unchanged(sub_association[0])
            accepted = accepted_syntaxes(sub_association[0].accepted_contexts)
        log.info("C-MOVE from %s: %d instances to %s%s", calling, len(selected), destination,
                 " (de-identified)" if profile else "")
        self._audit_retrieve(event, "moved", selected, f"to {destination}")
        yield from self._sub_operations(event, selected, accepted, profile)

    # -- C-GET ----------------------------------------------------------------------------
    def _on_get(self, event) -> Iterator:
        calling = event.assoc.requestor.ae_title.strip()
        permission = self.settings.query_retrieve.permission(calling)
        if permission is None or not permission.get:
            log.warning("C-GET from %s refused: not permitted", calling)
            yield 1
            yield failure(NOT_PERMITTED, f"{calling} may not retrieve"), None
            return
        try:
            selected = self._select(event, calling, "C-GET")
        except PacsError as exc:
            yield 1
            yield failure(IDENTIFIER_DOES_NOT_MATCH, str(exc)), None
            return
        yield len(selected)
        ours = [cx for cx in event.assoc.accepted_contexts if cx.as_scu]
        log.info("C-GET from %s: %d instances", calling, len(selected))
        self._audit_retrieve(event, "retrieved", selected, "C-GET")
        send_c_store = event.assoc.send_c_store
        send_files_unchanged(event.assoc)
        try:
            yield from self._sub_operations(event, selected, accepted_syntaxes(ours))
        finally:
            event.assoc.send_c_store = send_c_store

    # -- shared ---------------------------------------------------------------------------
    def _select(self, event, calling: str, what: str) -> list[StoredInstance]:
        identifier = event.identifier
        try:
            permission = self.settings.query_retrieve.permission(calling)
            return self.retrieve.select(identifier.get("QueryRetrieveLevel", ""), identifier,
                                        MODEL_OF[event.request.AffectedSOPClassUID],
                                        accounts=permission.accounts if permission else [])
        except PacsError as exc:
            log.warning("%s from %s refused: %s", what, calling, exc)
            raise

    def _audit(self, event, action: str, **fields) -> None:
        """Record what the calling AE (from its address) did in the audit trail."""
        requestor = event.assoc.requestor
        actor = Actor(requestor.ae_title.strip(), "ae", str(requestor.address or ""))
        self.audit.record(actor, action, **fields)

    def _audit_retrieve(self, event, action: str, selected: list[StoredInstance], detail: str) -> None:
        """One event per study of a retrieve (the instances selected, grouped by study)."""
        by_study: dict[str, int] = {}
        for instance in selected:
            by_study[instance.study_uid] = by_study.get(instance.study_uid, 0) + 1
        for study_uid, count in by_study.items():
            self._audit(event, action, study_uid=study_uid, detail=f"{detail}: {count} instance(s)")

    def _sub_operations(self, event, selected: list[StoredInstance], accepted, profile=None) -> Iterator:
        """One sub-operation per instance; with a de-identification `profile`, each is de-identified
        into a temporary folder first and that copy is sent (removed once the sub-operations end)."""
        with tempfile.TemporaryDirectory(prefix="pacsd-deid-") as folder:
            for instance in selected:
                if event.is_cancelled:
                    yield CANCELLED, None
                    return
                try:
                    instance = self.retrieve.current(instance)  # compressed since it was selected?
                    outgoing = deidentified_copy(instance, profile, Path(folder)) if profile else instance
                    prepared = prepare(outgoing, accepted)
                except CannotSend as exc:
                    log.warning("retrieve sub-operation for %s failed: %s", instance.sop_uid, exc)
                    yield _pending_with_comment(str(exc)), unsendable(instance)
                    continue
                yield PENDING, prepared if isinstance(prepared, Dataset) else file_stand_in(outgoing, prepared)


def _pending_with_comment(reason: str) -> Dataset:
    """A Pending status carrying why a sub-operation is about to fail.

    pynetdicom copies a status dataset's elements onto the one response primitive it reuses for
    every response of the request: the Error Comment goes out with this response and stays on
    the later ones, the final one included, where a peer (and `pacsd get`) reads it."""
    return failure(PENDING, reason)


def _refuse_move(event, status: int, comment: str) -> Iterator:
    """End a C-MOVE with `status` and `comment` before any sub-operation.

    pynetdicom's C-MOVE handlers can refuse only with 0xA801 (by yielding no destination): the
    association's next C-MOVE response, that 0xA801, is sent with our status and comment instead.
    """
    dimse = event.assoc.dimse
    send_msg = dimse.send_msg

    def send(primitive, context_id: int) -> None:
        dimse.send_msg = send_msg
        if isinstance(primitive, C_MOVE) and primitive.Status == 0xA801:
            primitive.Status, primitive.ErrorComment = status, shorten_comment(comment)
        send_msg(primitive, context_id)

    dimse.send_msg = send
    yield None, None


def _move_refusal(permission: QueryRetrievePermission | None, destination: str) -> str:
    """Why the calling AE may not move to a known `destination` ('' when it may)."""
    if permission is None or not permission.move:
        return "the calling AE may not move"
    if not permission.may_move_to(destination):
        return "the calling AE may not move to this destination"
    return ""
