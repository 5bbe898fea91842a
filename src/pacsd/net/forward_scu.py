"""Delivery of forwarding-queue items to a DICOM destination: one association kept open while
there is work, many C-STOREs on it, each answer sorted into delivered / retry / failed, and
Storage Commitment asked for when the route wants it.  The queue itself is `services.forwarding`.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian

from pacsd.config import KnownAE
from pacsd.dicom.commitment import Reference
from pacsd.dicom.transcode import transcoded
from pacsd.index.forward_queue import DELIVERED, FAILED, RETRY, Delivery, QueueItem
from pacsd.net.commitment_scu import CommitmentFailed, request_commitment
from pacsd.net.scu import AssociationFailed, open_association

log = logging.getLogger(__name__)

def classify_status(code: int | None) -> tuple[str, str]:
    """A C-STORE answer as (result, reason): success and warnings deliver; 0xA7xx (out of
    resources) and no answer retry; 0x0111 (duplicate) means the destination has it; other
    failures (0xA9xx, 0xCxxx, 0x0122...) refuse that instance for good."""
    if code is None:
        return RETRY, "no answer (timeout or association aborted)"
    if code == 0x0000 or (code & 0xF000) == 0xB000:
        return DELIVERED, "" if code == 0 else f"warning 0x{code:04X}"
    if code == 0x0111:
        return DELIVERED, "the destination already has this instance (0x0111)"
    if (code & 0xFF00) == 0xA700:
        return RETRY, f"status 0x{code:04X} (out of resources)"
    return FAILED, f"status 0x{code:04X}"


def _wanted_syntax(item: QueueItem) -> str:
    return item.transfer_syntax or item.stored_syntax


def _contexts(items: list[QueueItem]) -> set[tuple[str, str]]:
    """The syntax each item is to go in, and Explicit VR Little Endian as a fallback (a peer that
    takes no compressed syntax gets the pixels decoded, losslessly)."""
    contexts = set()
    for item in items:
        contexts.add((item.sop_class_uid, _wanted_syntax(item)))
        contexts.add((item.sop_class_uid, str(ExplicitVRLittleEndian)))
    return contexts


class DicomDestination:
    """One destination's association, opened on first use and kept while batches come."""

    def __init__(self, known: KnownAE, our_aet: str, locate: Callable[[str], Path], timeout: float,
                 tls: ssl.SSLContext | None = None) -> None:
        self.known, self.our_aet, self.locate, self.timeout, self.tls = known, our_aet, locate, timeout, tls
        self._assoc = None
        self._proposed: set[tuple[str, str]] = set()

    def close(self) -> None:
        if self._assoc is not None and self._assoc.is_established:
            self._assoc.release()
        self._assoc = None

    def deliver(self, items: list[QueueItem]) -> list[Delivery]:
        """Send `items` (C-STORE, then Storage Commitment for those that ask) and say what became of each."""
        wanted = _contexts(items)
        if self._assoc is None or not self._assoc.is_established or not wanted <= self._proposed:
            self.close()
            try:
                self._assoc = open_association(wanted | self._proposed if len(wanted | self._proposed) <= 128
                                               else wanted, self.known.host, self.known.port,
                                               self.known.ae_title, self.our_aet, self.tls, self.timeout)
            except AssociationFailed as exc:
                return [Delivery(item, RETRY, str(exc)) for item in items]
            self._proposed = wanted | self._proposed if len(wanted | self._proposed) <= 128 else wanted
        deliveries = [self._send(item) for item in items]
        to_commit = [d for d in deliveries if d.result == DELIVERED and d.item.commitment]
        if to_commit:
            deliveries = self._commit(deliveries, to_commit)
        return deliveries

    def _send(self, item: QueueItem) -> Delivery:
        assoc = self._assoc
        if assoc is None or not assoc.is_established:
            return Delivery(item, RETRY, "the association was aborted")
        accepted = [cx.transfer_syntax[0] for cx in assoc.accepted_contexts if cx.abstract_syntax == item.sop_class_uid]
        if not accepted:
            return Delivery(item, FAILED, f"{self.known.ae_title} does not accept SOP class {item.sop_class_uid}")
        try:
            if item.stored_syntax in accepted and not item.transfer_syntax:
                payload = self.locate(item.path)  # unchanged, streamed from disk
            else:
                target = _wanted_syntax(item) if _wanted_syntax(item) in accepted else accepted[0]
                payload = transcoded(dcmread(self.locate(item.path)), [target])
            status = assoc.send_c_store(payload)
        except OSError as exc:
            return Delivery(item, RETRY, f"cannot read the stored file: {exc}")
        except Exception as exc:  # noqa: BLE001 - a transcoding or encoding failure is this item's own
            if not assoc.is_established:
                return Delivery(item, RETRY, "the association was aborted")
            return Delivery(item, FAILED, f"{type(exc).__name__}: {exc}")
        code = int(status.Status) if "Status" in status else None
        result, reason = classify_status(code)
        if result != DELIVERED and "ErrorComment" in status:
            reason += f": {status.ErrorComment}"
        return Delivery(item, result, reason)

    def _commit(self, deliveries: list[Delivery], to_commit: list[Delivery]) -> list[Delivery]:
        """Ask for commitment of the sent instances; only those committed count as delivered."""
        references = [Reference(d.item.sop_class_uid, d.item.sop_uid) for d in to_commit]
        try:
            result, _ = request_commitment(self.known.host, self.known.port, references, our_aet=self.our_aet,
                                           called_aet=self.known.ae_title, timeout=self.timeout)
        except CommitmentFailed as exc:
            verdict = {d.item.pk: Delivery(d.item, RETRY, f"sent, not committed: {exc}") for d in to_commit}
        else:
            committed = {ref.sop_uid for ref in result.committed}
            reasons = {f.reference.sop_uid: f.reason for f in result.failed}
            verdict = {d.item.pk: d if d.item.sop_uid in committed else Delivery(
                d.item, RETRY, f"sent, not committed (failure reason 0x{reasons.get(d.item.sop_uid, 0):04X})")
                for d in to_commit}
        return [verdict.get(d.item.pk, d) for d in deliveries]
