"""Storage Commitment datasets: the N-ACTION request and the N-EVENT-REPORT result, both ways.

Builds and reads the Action Information and Event Information of PS3.4 Annex J; values from a
peer are hostile, so reading checks every UID and raises `InvalidCommitment` naming what is wrong.
No networking and no index here.
"""

from __future__ import annotations

from typing import NamedTuple

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pacsd.dicom.header import _require_uid
from pacsd.errors import InvalidDicom, PacsError

REQUEST_COMMITMENT = 1  # N-ACTION Action Type ID
ALL_COMMITTED, SOME_FAILED = 1, 2  # N-EVENT-REPORT Event Type ID

# Failure Reason (0008,1197) values the archive reports.
PROCESSING_FAILURE = 0x0110
NO_SUCH_OBJECT_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119


class InvalidCommitment(PacsError):
    """A commitment request or report is missing an element or carries a malformed UID."""


class Reference(NamedTuple):
    """One referenced instance: its SOP class and SOP instance UIDs."""

    sop_class_uid: str
    sop_uid: str


class Failure(NamedTuple):
    reference: Reference
    reason: int


class CommitmentResult(NamedTuple):
    """What a report says: the transaction, the instances committed and those that failed."""

    transaction_uid: str
    committed: list[Reference]
    failed: list[Failure]

    @property
    def event_type(self) -> int:
        return SOME_FAILED if self.failed else ALL_COMMITTED


def _uid(dataset: Dataset, keyword: str, where: str) -> str:
    try:
        return _require_uid(dataset, keyword)  # the receive path's check: present, a valid UID
    except InvalidDicom as exc:
        raise InvalidCommitment(f"{where}: {exc}") from None


def _reference_item(reference: Reference) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = reference.sop_class_uid
    item.ReferencedSOPInstanceUID = reference.sop_uid
    return item


def _read_references(dataset: Dataset, keyword: str) -> list[tuple[Reference, Dataset]]:
    items = dataset.get(keyword) or []
    return [
        (Reference(_uid(item, "ReferencedSOPClassUID", f"{keyword} item {n}"),
                   _uid(item, "ReferencedSOPInstanceUID", f"{keyword} item {n}")), item)
        for n, item in enumerate(items, start=1)
    ]


def action_information(transaction_uid: str, references: list[Reference]) -> Dataset:
    """The Action Information of a commitment request."""
    dataset = Dataset()
    dataset.TransactionUID = transaction_uid
    dataset.ReferencedSOPSequence = Sequence([_reference_item(ref) for ref in references])
    return dataset


def read_action_information(dataset: Dataset | None) -> tuple[str, list[Reference]]:
    """(Transaction UID, references) of a request; raises InvalidCommitment when malformed."""
    if dataset is None:
        raise InvalidCommitment("the request has no Action Information")
    transaction_uid = _uid(dataset, "TransactionUID", "request")
    references = [ref for ref, _ in _read_references(dataset, "ReferencedSOPSequence")]
    if not references:
        raise InvalidCommitment("request: ReferencedSOPSequence is empty")
    return transaction_uid, references


def event_information(result: CommitmentResult, retrieve_aet: str = "") -> Dataset:
    """The Event Information of a report (send with `result.event_type`)."""
    dataset = Dataset()
    dataset.TransactionUID = result.transaction_uid
    if retrieve_aet:
        dataset.RetrieveAETitle = retrieve_aet
    if result.committed:
        dataset.ReferencedSOPSequence = Sequence([_reference_item(ref) for ref in result.committed])
    if result.failed:
        failed_items = []
        for failure in result.failed:
            item = _reference_item(failure.reference)
            item.FailureReason = failure.reason
            failed_items.append(item)
        dataset.FailedSOPSequence = Sequence(failed_items)
    return dataset


def read_event_information(dataset: Dataset | None) -> CommitmentResult:
    """The result a report carries; raises InvalidCommitment when malformed."""
    if dataset is None:
        raise InvalidCommitment("the report has no Event Information")
    transaction_uid = _uid(dataset, "TransactionUID", "report")
    committed = [ref for ref, _ in _read_references(dataset, "ReferencedSOPSequence")]
    failed = [Failure(ref, int(item.get("FailureReason", PROCESSING_FAILURE) or PROCESSING_FAILURE))
              for ref, item in _read_references(dataset, "FailedSOPSequence")]
    return CommitmentResult(transaction_uid, committed, failed)
