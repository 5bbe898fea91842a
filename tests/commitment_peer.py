"""A pynetdicom modality for Storage Commitment tests: stores, asks for commitment, hears reports.

It builds its requests and reads the reports with plain pydicom (not pacsd's own code), and
notes whether each report came on its own association ("same") or on its listener ("new").
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
)

from tests.conftest import HOST


@dataclass
class HeardReport:
    route: str  # "same": on the requesting association; "new": on our listener
    event_type: int
    transaction_uid: str
    committed: list[tuple[str, str]]  # (SOP class, SOP instance)
    failed: list[tuple[str, str, int]]  # (SOP class, SOP instance, Failure Reason)
    calling_aet: str
    our_roles: tuple[bool, bool]  # (SCU, SCP) we hold on the context the report came on


def _pairs(dataset: Dataset, keyword: str) -> list[tuple]:
    return [(item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID, *([item.FailureReason]
             if "FailureReason" in item else [])) for item in dataset.get(keyword, [])]


class Modality:
    def __init__(self, aet: str = "MODALITY", refuse_reports: int = 0) -> None:
        self.aet = aet
        self.reports: queue.Queue[HeardReport] = queue.Queue()
        self.refuse_reports = refuse_reports  # answer this many reports with a failure first
        self.ae = AE(ae_title=aet)
        self.ae.add_requested_context(CTImageStorage)
        self.ae.add_requested_context(StorageCommitmentPushModel)
        self.ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
        self.listener = None
        self.assoc = None
        self._report_threads: list[threading.Thread] = []

    def _on_report(self, event):
        # pynetdicom serves a report arriving on our own association in a thread of its own,
        # which lowers the association's pause flag when it ends: release() before that end
        # would wait for the flag forever, so close() joins these threads first.
        if not event.assoc.is_acceptor:
            self._report_threads.append(threading.current_thread())
        if self.refuse_reports > 0:
            self.refuse_reports -= 1
            return 0x0110, None
        info = event.event_information
        self.reports.put(HeardReport(
            route="new" if event.assoc.is_acceptor else "same",
            event_type=event.event_type,
            transaction_uid=info.TransactionUID,
            committed=_pairs(info, "ReferencedSOPSequence"),
            failed=_pairs(info, "FailedSOPSequence"),
            calling_aet=event.assoc.requestor.ae_title.strip() if event.assoc.is_acceptor else "",
            our_roles=next((cx.as_scu, cx.as_scp) for cx in event.assoc.accepted_contexts
                           if cx.abstract_syntax == StorageCommitmentPushModel),
        ))
        return 0x0000, None

    def _handlers(self) -> list:
        return [(evt.EVT_N_EVENT_REPORT, self._on_report)]

    def listen(self, port: int) -> None:
        self.listener = self.ae.start_server((HOST, port), block=False, evt_handlers=self._handlers())

    def connect(self, port: int, called: str = "PACSD"):
        assoc = self.ae.associate(HOST, port, ae_title=called, evt_handlers=self._handlers())
        assert assoc.is_established, "pacsd refused the modality's association"
        return assoc

    def store(self, port: int, datasets: list[Dataset]) -> None:
        assoc = self.connect(port)
        try:
            for ds in datasets:
                ds.file_meta = FileMetaDataset()
                ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
                status = assoc.send_c_store(ds)
                assert status.Status == 0x0000, f"C-STORE failed: 0x{status.Status:04X}"
        finally:
            assoc.release()

    def request(self, port: int, references: list[tuple[str, str]], keep_open: bool = True) -> str:
        """Send an N-ACTION for `references`; return its Transaction UID."""
        transaction_uid = generate_uid()
        info = Dataset()
        info.TransactionUID = transaction_uid
        info.ReferencedSOPSequence = [_item(sop_class, sop_uid) for sop_class, sop_uid in references]
        self.assoc = self.connect(port)
        status, _ = self.assoc.send_n_action(info, 1, StorageCommitmentPushModel,
                                             StorageCommitmentPushModelInstance)
        assert status.Status == 0x0000, f"N-ACTION failed: 0x{status.Status:04X}"
        if not keep_open:
            self.close()
        return transaction_uid

    def wait_report(self, timeout: float = 30) -> HeardReport:
        try:
            return self.reports.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no commitment report within {timeout} s") from None

    def close(self) -> None:
        for thread in self._report_threads:
            if thread is not threading.current_thread():
                thread.join(timeout=10)
        self._report_threads.clear()
        if self.assoc is not None and self.assoc.is_established:
            self.assoc.release()
        self.assoc = None

    def shutdown(self) -> None:
        self.close()
        if self.listener is not None:
            self.listener.shutdown()
            self.listener = None


def _item(sop_class: str, sop_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_uid
    return item
