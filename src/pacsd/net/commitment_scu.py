"""Storage Commitment SCU: ask a peer to commit instances, then wait for its report.

The report may come back on our own association or, when we listen, on an association the
peer opens to us (we accept it as the Push Model's SCU, the peer as its SCP).  Used by
`pacsd commit`; the archive's SCP side is `net.commitment_scp`.
"""

from __future__ import annotations

import logging
import queue
import threading

from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.sop_class import StorageCommitmentPushModel, StorageCommitmentPushModelInstance

from pacsd.dicom.commitment import (
    REQUEST_COMMITMENT,
    CommitmentResult,
    InvalidCommitment,
    Reference,
    action_information,
    read_event_information,
)
from pacsd.errors import PacsError

log = logging.getLogger(__name__)

SAME, NEW = "same association", "new association"
ANSWER_WAIT = 5.0  # seconds to let our answer to a report on our association go out before releasing it


class CommitmentFailed(PacsError):
    """The peer could not be asked, refused the request, or sent no report in time."""


class _ReportCatcher:
    """Answers N-EVENT-REPORTs; keeps the one for our transaction and where it came.

    A report on our own association is known (the handler runs) before our answer to it is
    even queued; `answered` is set once the answer's P-DATA-TF is on the wire (the next one
    our association sends after the report), so the association is released after the answer.
    A release queued first makes pynetdicom refuse to send the answer (P-DATA in Sta7), and its
    reactor thread dies.  (Not EVT_DIMSE_SENT: pynetdicom triggers it before it queues the PDUs.)"""

    def __init__(self, transaction_uid: str) -> None:
        self.transaction_uid = transaction_uid
        self.reports: queue.Queue[tuple[CommitmentResult, str]] = queue.Queue()
        self.answered = threading.Event()
        self._answering = False  # our report came on our association: its answer is the next P-DATA

    def handlers(self) -> list:
        return [(evt.EVT_N_EVENT_REPORT, self._on_report), (evt.EVT_PDU_SENT, self._on_sent)]

    def _on_sent(self, event) -> None:
        if self._answering and isinstance(event.pdu, P_DATA_TF) and not event.assoc.is_acceptor:
            self._answering = False
            self.answered.set()

    def _on_report(self, event):
        try:
            result = read_event_information(event.event_information)
        except (InvalidCommitment, ValueError, TypeError) as exc:
            log.warning("malformed commitment report refused: %s", exc)
            return 0x0110, None
        if result.transaction_uid != self.transaction_uid:
            log.warning("report for another transaction (%s) acknowledged and ignored", result.transaction_uid)
            return 0x0000, None
        if not event.assoc.is_acceptor:
            self.answered.clear()  # an answer sent before this one (another transaction's) does not count
            self._answering = True
        self.reports.put((result, NEW if event.assoc.is_acceptor else SAME))
        return 0x0000, None


def request_commitment(host: str, port: int, references: list[Reference], *, our_aet: str,
                       called_aet: str, listen: tuple[str, int] | None = None,
                       timeout: float = 60.0) -> tuple[CommitmentResult, str]:
    """Send one commitment request and return (the report's result, how it came back)."""
    catcher = _ReportCatcher(generate_uid())
    ae = AE(ae_title=our_aet)
    ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = timeout
    ae.add_requested_context(StorageCommitmentPushModel)
    ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
    listener = ae.start_server(listen, block=False, evt_handlers=catcher.handlers()) if listen else None
    try:
        assoc = ae.associate(host, port, ae_title=called_aet, evt_handlers=catcher.handlers())
        if not assoc.is_established:
            raise CommitmentFailed(f"{called_aet} at {host}:{port} did not accept an association "
                                   "for Storage Commitment: check the address and AE titles")
        try:
            status, _ = assoc.send_n_action(
                action_information(catcher.transaction_uid, references), REQUEST_COMMITMENT,
                StorageCommitmentPushModel, StorageCommitmentPushModelInstance,
            )
            code = getattr(status, "Status", None)
            if code != 0x0000:
                comment = status.get("ErrorComment", "") if code is not None else "no answer"
                raise CommitmentFailed(f"the commitment request was refused: status "
                                       f"{'none' if code is None else f'0x{code:04X}'} {comment}".rstrip())
            try:
                result, how = catcher.reports.get(timeout=timeout)
            except queue.Empty:
                raise CommitmentFailed(f"no commitment report within {timeout:g} s") from None
            if how == SAME and not catcher.answered.wait(ANSWER_WAIT):
                log.warning("our answer to the commitment report was not sent within %g s", ANSWER_WAIT)
            return result, how
        finally:
            if assoc.is_established:
                assoc.release()
    finally:
        if listener is not None:
            listener.shutdown()
