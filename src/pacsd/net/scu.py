"""DICOM client side: C-ECHO and C-STORE of files to a remote AE.

`send_files` proposes each file's own SOP class and transfer syntax (so files go out unchanged),
splits the work over N associations, streams each file from disk, and reports every file as
sent, failed (with the peer's status or the reason) or skipped (not DICOM).
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import Verification

from pacsd.config import CLIENT_AE_TITLE, SERVER_AE_TITLE
from pacsd.errors import InvalidDicom, PacsError
from pacsd.net import seam
from pacsd.net.reactor_pause import pause_safely
from pacsd.net.tcp import tune_association_socket

log = logging.getLogger(__name__)

MAX_CONTEXTS = 128  # PS3.8: presentation context IDs are odd numbers 1..255
MEDIA_DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"


class AssociationFailed(PacsError):
    """The peer could not be reached or refused the association."""


@dataclass(frozen=True)
class OutgoingFile:
    path: Path
    sop_class_uid: str  # as the dataset says (what storescu sends too)
    sop_instance_uid: str
    transfer_syntax: str
    meta_agrees: bool = True  # the file meta names the same SOP class and instance

    def payload(self) -> Path | Dataset:
        """What to hand pynetdicom: the path (streamed unchanged) when the file meta agrees
        with the dataset; otherwise the dataset, so the request carries the dataset's UIDs."""
        return self.path if self.meta_agrees else dcmread(self.path)


def _outgoing(path: Path) -> OutgoingFile:
    """The file's identity as the sender needs it; raises for a file that is not DICOM Part 10."""
    meta = read_file_meta_info(path)
    ids = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
    meta_ids = (str(meta.get("MediaStorageSOPClassUID", "")), str(meta.get("MediaStorageSOPInstanceUID", "")))
    sop_class = str(ids.get("SOPClassUID", "") or meta_ids[0])
    sop_instance = str(ids.get("SOPInstanceUID", "") or meta_ids[1])
    if not (sop_class and sop_instance and meta.get("TransferSyntaxUID")):
        raise InvalidDicom("no SOP Class, SOP Instance or Transfer Syntax UID")
    agrees = (sop_class, sop_instance) == meta_ids
    return OutgoingFile(path, sop_class, sop_instance, str(meta.TransferSyntaxUID), agrees)


@dataclass
class SendReport:
    sent: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_sent(self, path: Path) -> None:
        with self._lock:
            self.sent.append(path)

    def add_failed(self, path: Path, reason: str) -> None:
        with self._lock:
            self.failed.append((path, reason))


def _client_ae(aet: str) -> AE:
    ae = AE(ae_title=aet)
    ae.maximum_pdu_size = 0
    return ae


def _tune(event) -> None:
    tune_association_socket(event.assoc)
    seam.quicken_client(event.assoc)


def _associate(ae: AE, host: str, port: int, aec: str, tls: ssl.SSLContext | None = None):
    """An association to `aec` at host:port (over TLS with `tls`), or AssociationFailed saying why."""
    tls_args = {"tls_args": (tls, host)} if tls is not None else {}
    assoc = ae.associate(host, port, ae_title=aec, evt_handlers=[(evt.EVT_CONN_OPEN, _tune)], **tls_args)
    if not assoc.is_established:
        raise AssociationFailed(f"{aec} at {host}:{port} {_why_not_established(assoc)}")
    pause_safely(assoc)  # no response lost to pynetdicom's reactor (see net.reactor_pause)
    return assoc


def open_association(contexts: Iterable[tuple[str, str]], host: str, port: int, aec: str, aet: str,
                     tls: ssl.SSLContext | None = None, timeout: float | None = None):
    """An association proposing each (SOP class, transfer syntax) of `contexts` (at most
    MAX_CONTEXTS), or AssociationFailed saying why; `timeout` bounds connect, ACSE and DIMSE waits."""
    ae = _client_ae(aet)
    if timeout is not None:
        ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, syntax)
    _config.STORE_SEND_CHUNKED_DATASET = True  # stream from disk: memory stays flat
    return _associate(ae, host, port, aec, tls)


def _why_not_established(assoc) -> str:
    """Why an association did not come up, in the words of the A-ASSOCIATE answer when there was one."""
    answer = assoc.acceptor.primitive
    if assoc.is_rejected and answer is not None:
        return f"rejected the association: {answer.reason_str.lower()} ({answer.result_str.lower()})"
    if answer is not None and answer.result == 0x00 and not assoc.accepted_contexts:
        refused = sorted({f"{_name(cx.abstract_syntax)} in {_name(cx.transfer_syntax[0])}"
                          for cx in assoc.rejected_contexts})
        return "accepted the association but refused every SOP class and transfer syntax proposed: " + "; ".join(refused)
    if answer is None:
        return "cannot be reached (no answer: wrong host or port, or nothing listening there)"
    return "aborted the association"


def _name(uid) -> str:
    """A UID with its name when pydicom knows it: 'CT Image Storage (1.2.840.10008.5.1.4.1.1.2)'."""
    name = getattr(uid, "name", "")
    return f"{name} ({uid})" if name and name != str(uid) else str(uid)


def echo(host: str, port: int, aec: str = SERVER_AE_TITLE, aet: str = CLIENT_AE_TITLE,
         tls: ssl.SSLContext | None = None) -> int:
    """C-ECHO (over TLS with `tls`); returns the status (0 = success) or raises AssociationFailed."""
    ae = _client_ae(aet)
    ae.add_requested_context(Verification)
    assoc = _associate(ae, host, port, aec, tls)
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if "Status" not in status:
        raise AssociationFailed(f"{aec} at {host}:{port} did not answer the C-ECHO")
    return int(status.Status)


def scan_files(paths: Iterable[Path]) -> tuple[list[OutgoingFile], list[tuple[Path, str]]]:
    """Files under `paths` (recursively) that are DICOM Part 10, and the ones skipped with why."""
    # The files go out unchanged: pydicom's checks of each value against its VR (warnings about
    # values the sender cannot change anyway) are off, as in the server.
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    found, skipped = [], []
    for root in paths:
        candidates = sorted(p for p in Path(root).rglob("*") if p.is_file()) if Path(root).is_dir() else [Path(root)]
        for path in candidates:
            try:
                item = _outgoing(path)
            except InvalidDicom as exc:
                skipped.append((path, f"not a DICOM Part 10 file: {exc}"))
                continue
            except Exception as exc:  # pydicom raises several types for non-DICOM input
                skipped.append((path, f"not a DICOM Part 10 file: {_first_line(exc)}"))
                continue
            if item.sop_class_uid == MEDIA_DIRECTORY_STORAGE:
                skipped.append((path, "a DICOMDIR is an index of files, not an image"))
                continue
            found.append(item)
    return found, skipped


def _first_line(exc: Exception) -> str:
    """pydicom's message up to its advice ('Use force=True ...' is for programmers, not users)."""
    text = str(exc).split(". Use force=True")[0].strip().rstrip(".")
    return text or type(exc).__name__


def _batches(files: list[OutgoingFile]) -> list[list[OutgoingFile]]:
    """Split files into groups whose distinct (SOP class, syntax) pairs fit one association."""
    batches: list[list[OutgoingFile]] = []
    contexts: set[tuple[str, str]] = set()
    current: list[OutgoingFile] = []
    for item in sorted(files, key=lambda f: (f.sop_class_uid, f.transfer_syntax)):
        key = (item.sop_class_uid, item.transfer_syntax)
        if key not in contexts and len(contexts) == MAX_CONTEXTS:
            batches.append(current)
            current, contexts = [], set()
        contexts.add(key)
        current.append(item)
    if current:
        batches.append(current)
    return batches


def _send_batch(batch: list[OutgoingFile], host: str, port: int, aec: str, aet: str,
                report: SendReport, on_file: Callable[[], None], tls: ssl.SSLContext | None = None) -> None:
    ae = _client_ae(aet)
    for sop_class, syntax in sorted({(f.sop_class_uid, f.transfer_syntax) for f in batch}):
        ae.add_requested_context(sop_class, syntax)
    try:
        assoc = _associate(ae, host, port, aec, tls)
    except AssociationFailed as exc:
        for item in batch:
            report.add_failed(item.path, str(exc))
            on_file()
        return
    try:
        accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
        for item in batch:
            if (item.sop_class_uid, item.transfer_syntax) not in accepted:
                report.add_failed(item.path, f"{aec} does not accept SOP class {item.sop_class_uid} "
                                             f"in transfer syntax {item.transfer_syntax}")
            elif not assoc.is_established:
                report.add_failed(item.path, "the association was aborted")
            else:
                _send_one(assoc, item, report)
            on_file()
    finally:
        if assoc.is_established:
            assoc.release()


def _send_one(assoc, item: OutgoingFile, report: SendReport) -> None:
    try:
        status = assoc.send_c_store(item.payload())
    except Exception as exc:  # unreadable file, or the association died while sending
        report.add_failed(item.path, f"{type(exc).__name__}: {exc}")
        return
    code = int(status.Status) if "Status" in status else None
    if code is None:
        report.add_failed(item.path, "no response (timeout or aborted)")
    elif code == 0x0000 or (code & 0xF000) == 0xB000:
        report.add_sent(item.path)
    else:
        comment = f": {status.ErrorComment}" if "ErrorComment" in status else ""
        report.add_failed(item.path, f"status 0x{code:04X}{comment}")


def send_files(files: list[OutgoingFile], host: str, port: int, aec: str = SERVER_AE_TITLE, aet: str = CLIENT_AE_TITLE,
               associations: int = 1, on_file: Callable[[], None] = lambda: None,
               tls: ssl.SSLContext | None = None) -> SendReport:
    """C-STORE `files` over up to `associations` concurrent associations (over TLS with `tls`)."""
    _config.STORE_SEND_CHUNKED_DATASET = True  # stream from disk: memory stays flat
    report = SendReport()
    shares = [files[i::associations] for i in range(max(1, associations))]
    jobs = [batch for share in shares if share for batch in _batches(share)]
    with ThreadPoolExecutor(max_workers=max(1, associations)) as pool:
        for future in [pool.submit(_send_batch, batch, host, port, aec, aet, report, on_file, tls) for batch in jobs]:
            future.result()
    return report
