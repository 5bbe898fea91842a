"""Storage Commitment SCP: the N-ACTION handler and the routes a report can take back.

Thin: a request is validated, persisted by `CommitmentJobs` and answered at once; once the
answer is on the wire this process takes the request and its `CommitmentWorker` checks it and
delivers the report through `ReportRoutes`: the requester's open association or a new one,
according to its `commitment_reply` setting.  Of a server's several receiving processes none
sweeps for due requests (retries, after a restart): the background process does
(`commitment_sweeper`), with no association of its own to answer on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_messages import N_ACTION_RSP
from pynetdicom.sop_class import StorageCommitmentPushModel

from pacsd.config import Settings
from pacsd.dicom.commitment import REQUEST_COMMITMENT, InvalidCommitment, read_action_information
from pacsd.net.command_set import shorten_comment
from pacsd.net.commitment_report import send_report, send_report_on_new_association
from pacsd.net.scp import DicomService
from pacsd.services.archive import Archive
from pacsd.services.commitment import CommitmentJobs, Report
from pacsd.services.commitment_worker import CommitmentWorker, Delivery

log = logging.getLogger(__name__)

_NO_SUCH_ACTION, _INVALID_ARGUMENT, _PROCESSING_FAILURE = 0x0123, 0x0115, 0x0110


def _failure(status: int, comment: str) -> tuple[Dataset, None]:
    answer = Dataset()
    answer.Status = status
    answer.ErrorComment = shorten_comment(comment)
    return answer, None


def _calling_aet(assoc: Association) -> str:
    return str(assoc.requestor.ae_title).strip()


class StorageCommitmentService(DicomService):
    """The listener's Storage Commitment Push Model SCP (an extra service of `DicomServer`); its
    worker `sweeps` for due requests unless another process of the server does."""

    def __init__(self, settings: Settings, archive: Archive, sweeps: bool = True) -> None:
        self.settings = settings
        self.jobs = CommitmentJobs(archive.engine, archive.blobs, settings.commitment)
        self.deliver = ReportRoutes(settings, self._open_association).deliver
        self.worker = CommitmentWorker(self.jobs, self.deliver, sweeps)
        self._lock = threading.Lock()
        self._open: dict[str, list[Association]] = {}  # requester AE -> its open commitment associations
        self._unanswered: dict[Association, list[int]] = {}  # jobs whose N-ACTION answer is not yet sent

    # -- DicomService ---------------------------------------------------------------------
    def add_contexts(self, ae) -> None:
        # Role selection from a requester: it may be SCU (and hear reports here); never SCP.
        ae.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=False)

    def handlers(self) -> list:
        return [
            (evt.EVT_N_ACTION, self._on_action),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_DIMSE_SENT, self._on_sent),
            (evt.EVT_RELEASED, self._on_closed),
            (evt.EVT_ABORTED, self._on_closed),
            (evt.EVT_CONN_CLOSE, self._on_closed),
        ]

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop(self.settings.server.shutdown_grace)

    # -- handlers -------------------------------------------------------------------------
    def _on_action(self, event):
        assoc = event.assoc
        aet = _calling_aet(assoc)
        if event.action_type != REQUEST_COMMITMENT:
            return _failure(_NO_SUCH_ACTION, f"action type {event.action_type} is not 1")
        try:
            transaction_uid, references = read_action_information(event.action_information)
        except Exception as exc:  # InvalidCommitment, or a dataset pydicom cannot decode
            reason = str(exc) if isinstance(exc, InvalidCommitment) else "undecodable Action Information"
            log.warning("commitment request from %s refused: %s", aet, reason)
            return _failure(_INVALID_ARGUMENT, reason)
        try:
            pk = self.jobs.record_request(transaction_uid, references, aet, str(assoc.requestor.address))
        except Exception:
            log.exception("commitment request %s from %s could not be recorded", transaction_uid, aet)
            return _failure(_PROCESSING_FAILURE, "the request could not be recorded")
        with self._lock:
            self._unanswered.setdefault(assoc, []).append(pk)
        return 0x0000, None

    def _on_sent(self, event) -> None:
        if isinstance(event.message, N_ACTION_RSP):
            self._schedule_answered(event.assoc)

    def _on_accepted(self, event) -> None:
        assoc = event.assoc
        if not any(cx.abstract_syntax == StorageCommitmentPushModel for cx in assoc.accepted_contexts):
            return
        aet = _calling_aet(assoc)
        with self._lock:
            self._open.setdefault(aet, []).append(assoc)
        kept = self.jobs.take_waiting(aet)
        if kept:
            log.info("%s called again: sending the %d commitment reports kept for it", aet, len(kept))
            self.worker.hand(kept)

    def _on_closed(self, event) -> None:
        assoc = event.assoc
        with self._lock:
            for aet, associations in list(self._open.items()):
                if assoc in associations:
                    associations.remove(assoc)
                if not associations:
                    del self._open[aet]
        self._schedule_answered(assoc)

    def _schedule_answered(self, assoc: Association) -> None:
        with self._lock:
            pks = self._unanswered.pop(assoc, [])
        if pks:
            self.worker.hand(self.jobs.take(pks))

    def _open_association(self, aet: str) -> Association | None:
        with self._lock:
            candidates = [assoc for assoc in self._open.get(aet, []) if assoc.is_established]
        return candidates[-1] if candidates else None


def _no_association(aet: str) -> None:
    return None


class ReportRoutes:
    """How a report reaches its requester: on the requester's open association (which
    `open_association` finds, in the process that has it) or on a new one."""

    def __init__(self, settings: Settings,
                 open_association: Callable[[str], Association | None] = _no_association) -> None:
        self.settings = settings
        self.open_association = open_association

    def deliver(self, report: Report) -> Delivery:
        """Send one report the way the requester's `commitment_reply` asks."""
        aet = report.requester_aet
        known = self.settings.known_ae(aet)
        mode = known.commitment_reply if known else "same"
        if mode in ("same", "auto"):
            assoc = self.open_association(aet)
            if assoc is not None:
                error = send_report(assoc, report.result, self.settings.server.ae_title)
                return Delivery("failed" if error else "delivered", "same", error)
        if known is None:
            return Delivery("no-route", "", f"{aet} is not a known AE and has no open association")
        if mode == "same":
            return Delivery("no-route", "", f"{aet} has no open association (commitment_reply: same)")
        log.info("commitment report %s: opening an association to %s at %s:%d",
                 report.result.transaction_uid, aet, known.host, known.port)
        error = send_report_on_new_association(
            self.settings.server.ae_title, aet, known.host, known.port, report.result,
            self.settings.commitment.connect_timeout,
        )
        return Delivery("failed" if error else "delivered", "new", error)


def commitment_sweeper(settings: Settings, archive: Archive) -> CommitmentWorker:
    """The worker of a process that holds no association (a server's background process): it
    delivers the requests that fall due on new associations, or keeps them for their requester."""
    jobs = CommitmentJobs(archive.engine, archive.blobs, settings.commitment)
    return CommitmentWorker(jobs, ReportRoutes(settings).deliver, sweeps=True)
