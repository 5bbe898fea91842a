"""Query/Retrieve SCU: C-FIND, C-MOVE and C-GET against a remote AE (`pacsd find/move/get`).

Each call opens one association, runs one request, releases it, and raises `RemoteError` when
the peer refuses or fails; partial retrieves return their counts for the caller to judge.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, build_role, evt

from pacsd.config import CLIENT_AE_TITLE, SERVER_AE_TITLE
from pacsd.errors import PacsError
from pacsd.net.qr_models import FIND, GET, MOVE
from pacsd.services.retrieve import RetrieveCounts

_PENDING = (0xFF00, 0xFF01)
_SAFE_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_GET_CONTEXT_ROOM = 127  # 128 contexts per association, one of them the C-GET model


class RemoteError(PacsError):
    """The remote AE refused the association or answered a request with a failure."""


@dataclass(frozen=True)
class Peer:
    host: str
    port: int
    called_aet: str = SERVER_AE_TITLE
    calling_aet: str = CLIENT_AE_TITLE


def identifier(level: str, keys: Mapping[str, str]) -> Dataset:
    """A request identifier: QueryRetrieveLevel plus each keyword with its value ('' = return it)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level.upper()
    for keyword, value in keys.items():
        try:
            setattr(ds, keyword, value)
        except (ValueError, TypeError) as exc:
            raise PacsError(f"-k {keyword}={value}: {exc}") from None
        if keyword not in ds:
            raise PacsError(f"-k {keyword}: not a DICOM keyword")
    if not all(str(v).isascii() for v in keys.values()):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def find(peer: Peer, model: str, level: str, keys: Mapping[str, str]) -> Iterator[Dataset]:
    """The answers of a C-FIND, as the peer sends them."""
    ae = _ae(peer)
    ae.add_requested_context(FIND[model])
    assoc = _associate(ae, peer)
    try:
        for status, answer in assoc.send_c_find(identifier(level, keys), FIND[model]):
            code = _status(status, "C-FIND")
            if code in _PENDING:
                yield answer
            elif code != 0x0000:
                raise RemoteError(f"C-FIND failed with status 0x{code:04X}{_comment(status)}")
    finally:
        assoc.release()


def move(peer: Peer, model: str, level: str, keys: Mapping[str, str], destination: str,
         progress: Callable[[RetrieveCounts], None] = lambda counts: None) -> RetrieveCounts:
    """Ask the peer to send what `keys` names to `destination`; the final counts."""
    ae = _ae(peer)
    ae.add_requested_context(MOVE[model])
    assoc = _associate(ae, peer)
    try:
        responses = assoc.send_c_move(identifier(level, keys), destination, MOVE[model])
        return _follow(responses, "C-MOVE", progress)
    finally:
        assoc.release()


def get(peer: Peer, model: str, level: str, keys: Mapping[str, str], out: Path, sop_classes: list[str],
        progress: Callable[[RetrieveCounts], None] = lambda counts: None) -> RetrieveCounts:
    """Retrieve what `keys` names into `out` (one file per instance, named by its UID)."""
    out.mkdir(parents=True, exist_ok=True)
    ae = _ae(peer)
    ae.add_requested_context(GET[model])
    classes = sop_classes or [cx.abstract_syntax for cx in StoragePresentationContexts]
    # Two contexts per class: the peer picks one syntax per context, so Explicit VR Little Endian
    # (how files are most often stored) gets one of its own and is never traded for another.
    classes = classes[:_GET_CONTEXT_ROOM // 2]
    others = [ts for ts in ALL_TRANSFER_SYNTAXES if ts != ExplicitVRLittleEndian]
    for uid in classes:
        ae.add_requested_context(uid, ExplicitVRLittleEndian)
        ae.add_requested_context(uid, others)
    roles = [build_role(uid, scp_role=True) for uid in classes]
    assoc = _associate(ae, peer, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, _store_into(out))])
    try:
        responses = assoc.send_c_get(identifier(level, keys), GET[model])
        return _follow(responses, "C-GET", progress)
    finally:
        assoc.release()


def _store_into(out: Path):
    def on_store(event) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        if not _SAFE_UID.match(uid):
            return 0xC000  # a UID that is no UID does not become a file name
        (out / f"{uid}.dcm").write_bytes(event.encoded_dataset(include_meta=True))
        return 0x0000

    return on_store


def _follow(responses, what: str, progress) -> RetrieveCounts:
    counts = RetrieveCounts(remaining=0)
    for status, answer in responses:
        code = _status(status, what)
        counts.remaining = int(status.get("NumberOfRemainingSuboperations", 0) or 0)
        counts.completed = int(status.get("NumberOfCompletedSuboperations", counts.completed) or 0)
        counts.failed = int(status.get("NumberOfFailedSuboperations", counts.failed) or 0)
        counts.warning = int(status.get("NumberOfWarningSuboperations", counts.warning) or 0)
        comment = str(status.get("ErrorComment", "") or "")
        counts.reason = "".join(ch if ch.isprintable() else "?" for ch in comment) or counts.reason
        if code in _PENDING:
            progress(counts)
            continue
        if answer is not None and "FailedSOPInstanceUIDList" in answer:
            failed = answer.FailedSOPInstanceUIDList
            counts.failed_uids = [str(u) for u in ([failed] if isinstance(failed, str) else failed) if u]
        if code not in (0x0000, 0xB000):
            raise RemoteError(f"{what} failed with status 0x{code:04X}{_comment(status)} "
                              f"({counts.completed} sent, {counts.failed} failed)")
    progress(counts)
    return counts


def _ae(peer: Peer) -> AE:
    ae = AE(ae_title=peer.calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    return ae


def _associate(ae: AE, peer: Peer, **kwargs):
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.called_aet, **kwargs)
    if not assoc.is_established:
        raise RemoteError(f"{peer.called_aet} at {peer.host}:{peer.port} refused or did not answer the association")
    return assoc


def _status(status: Dataset, what: str) -> int:
    if "Status" not in status:
        raise RemoteError(f"{what}: the peer sent no response (connection lost or timed out)")
    return int(status.Status)


def _comment(status: Dataset) -> str:
    return f": {status.ErrorComment}" if "ErrorComment" in status else ""
