"""The one path every image takes into the archive: `Ingest.store(temp file, source)`.

C-STORE, `pacsd import` and STOW-RS all hand a complete file on the storage volume to
`store`.  It checks policy, parses the header (never the pixels), decides the path, makes the
file durable, indexes it in one transaction, and returns a DICOM status.  On any failure the
temp file and any placed file are removed: nothing half-done stays behind.  Listeners
(`pacsd.services.listeners`) may refuse an instance before it is placed and are told once it is stored.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from pacsd.dicom.header import Header, first_text, integer_or_none, read_header
from pacsd.errors import InvalidDicom, StorageFull
from pacsd.index.columns import PATIENT_COLUMNS, SERIES_COLUMNS, STUDY_COLUMNS, column_values
from pacsd.index.shared_writer import CommitUnknown, WriterClient
from pacsd.index.solo_writer import SoloWhenAloneWriter
from pacsd.index.writer import DuplicatePolicy, IndexWriter, InstanceRecord, WriteOutcome
from pacsd.services.checksum import sha256_of, sha256_soon
from pacsd.services.listeners import IncomingInstance, InstanceStored, Listeners
from pacsd.services.series_numbering import SeriesArrivals
from pacsd.storage.blobstore import BlobStore, remove_if_there
from pacsd.storage.layout import Layout, Placement

log = logging.getLogger(__name__)

# C-STORE statuses (PS3.4 Annex B.2.3, and 0x0111 as used by archives for duplicates).
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
SOP_CLASS_NOT_SUPPORTED = 0x0122
DUPLICATE_SOP_INSTANCE = 0x0111

BULK_DATA_THRESHOLD = 1024  # bytes: larger binary values are left out of the stored JSON header


@dataclass(frozen=True)
class Source:
    """Who sent an instance: the calling AE and peer for DICOM, a label for other ways in."""

    kind: str  # "dimse", "import", "stow"
    calling_aet: str = ""
    peer: str = ""


@dataclass(frozen=True)
class Expected:
    """What the C-STORE request said it carries; the dataset must agree."""

    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True)
class StoreResult:
    status: int
    action: str  # stored | kept-existing | overwritten | rejected-duplicate | failed
    sop_instance_uid: str = ""
    path: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS


class Ingest:
    """Receives complete files on the storage volume and archives them."""

    def __init__(self, blobs: BlobStore, writer: IndexWriter | WriterClient | SoloWhenAloneWriter, layout: Layout, duplicates: DuplicatePolicy = "keep",
                 accepted_sop_classes: set[str] | None = None, listeners: Listeners | None = None) -> None:
        """`listeners`: filters asked before an instance is placed, told once it is stored."""
        self.blobs = blobs
        self.writer = writer
        self.layout = layout
        self.duplicates = duplicates
        self.accepted_sop_classes = accepted_sop_classes or set()
        self.arrivals = SeriesArrivals(writer.engine)
        self.listeners = listeners if listeners is not None else Listeners()

    def store(self, temp: Path | str, source: Source, expected: Expected | None = None,
              content: bytes | None = None) -> StoreResult:
        """Archive the file at `temp` (which this call consumes) and return the DICOM status.

        `content`: the file's bytes, when the caller still has them (read, not the file)."""
        flushed = self.blobs.flush_data_soon(temp)  # a large file: the disk works during the parse
        try:
            return self._store(temp, source, expected, flushed, content)
        finally:
            self.blobs.abandon_flush(flushed)  # nothing to do once the index writer waited for it

    def _store(self, temp: Path | str, source: Source, expected: Expected | None, flushed: Future | None,
               content: bytes | None) -> StoreResult:
        placed: str | None = None
        # A helper thread hashes a large file meanwhile.
        checksum = sha256_soon(temp) if content is None else sha256_of(content)
        try:
            header = read_header(temp, content)
            self._check(header, expected)
            record = self._record(header, source)
            placement = self.layout.placement(header.dataset, lambda: self.arrivals.next(header.series_uid))
            record.account = placement.account
            incoming = IncomingInstance(header, source, header.size, placement.account)
            self._filter(incoming)
            record.companion_rows = self.listeners.rows_with_instance(incoming, record)  # e.g. forwarding work
            placed = self.blobs.place(temp, placement.path)
            record.path = placed
            record.checksum = checksum.result()
            # The writer's group makes data and folder entries durable, and commits then.
            outcome = self.writer.write(record, self.duplicates, data_flushed=flushed)
        except InvalidDicom as exc:
            return self._fail(temp, placed, CANNOT_UNDERSTAND, str(exc), source, expected)
        except _Refused as exc:
            return self._fail(temp, placed, exc.status, str(exc), source, expected)
        except StorageFull as exc:
            return self._fail(temp, placed, OUT_OF_RESOURCES, str(exc), source, expected)
        except OSError as exc:
            return self._fail(temp, placed, OUT_OF_RESOURCES, f"storage error: {exc}", source, expected)
        except CommitUnknown as exc:  # its row may be committed: the file must stay
            remove_if_there(temp)
            return self._fail(temp, None, OUT_OF_RESOURCES, f"{exc}; left in place: {placed}", source, expected)
        except Exception as exc:  # the index refused: nothing may stay behind
            log.exception("ingest failed")
            return self._fail(temp, placed, OUT_OF_RESOURCES, str(exc), source, expected)
        return self._finish(header, outcome, placed, source, placement)

    def _finish(self, header: Header, outcome: WriteOutcome, placed: str, source: Source,
                placement: Placement) -> StoreResult:
        uid = header.sop_instance_uid
        if outcome.conflict:
            log.warning("conflict: %s from %s has the UID of a stored instance but other content",
                        uid, source.calling_aet or source.kind)
        if outcome.replaced_path:
            self._remove_unindexed(outcome.replaced_path)
        if outcome.action == "kept-existing":
            log.info("duplicate %s from %s: kept the stored copy", uid, source.calling_aet or source.kind)
            return StoreResult(SUCCESS, outcome.action, uid, reason="duplicate; stored copy kept")
        if outcome.action == "rejected-duplicate":
            log.warning("duplicate %s from %s rejected", uid, source.calling_aet or source.kind)
            return StoreResult(DUPLICATE_SOP_INSTANCE, outcome.action, uid, reason="duplicate SOP Instance UID")
        log.debug("%s %s as %s", outcome.action, uid, placed)
        self._announce(header, placed, source, placement, outcome.action)
        return StoreResult(SUCCESS, outcome.action, uid, placed)

    def _remove_unindexed(self, relative: str) -> None:
        """Remove a file the committed index no longer names (an old copy, a duplicate kept out).

        The instance is stored by now, so a failure here is logged and never fails the store."""
        try:
            self.blobs.remove(relative)
        except Exception:
            log.exception("stored, but the file %s the index no longer names could not be removed", relative)

    def _filter(self, incoming: IncomingInstance) -> None:
        refusal = self.listeners.filter_instance(incoming)
        if refusal is not None:
            raise _Refused(refusal.status, refusal.reason)

    def _announce(self, header: Header, placed: str, source: Source, placement: Placement, action: str) -> None:
        """Tell the listeners (the action log, hooks, ...); their failures never fail the store."""
        try:
            stored = InstanceStored(
                relative_path=placed, storage_root=self.blobs.root, study_dir_of=self.layout.study_dir_of,
                account=placement.account, source=source, sop_instance_uid=header.sop_instance_uid,
                series_uid=header.series_uid, study_uid=header.study_uid,
                patient_id=first_text(header.dataset, "PatientID"),
                patient_name=first_text(header.dataset, "PatientName"),
                action=action, routed_because=placement.reason,
            )
        except Exception:
            log.exception("after storing %s: announcing it failed", header.sop_instance_uid)
            return
        self.listeners.instance_stored(stored)

    def _check(self, header: Header, expected: Expected | None) -> None:
        if self.accepted_sop_classes and header.sop_class_uid not in self.accepted_sop_classes:
            raise _Refused(SOP_CLASS_NOT_SUPPORTED, f"SOP Class {header.sop_class_uid} is not accepted here")
        if expected is None:
            return
        if expected.sop_class_uid != header.sop_class_uid:
            raise _Refused(
                DATASET_DOES_NOT_MATCH_SOP_CLASS,
                f"the dataset's SOP Class UID {header.sop_class_uid} differs from the request's "
                f"{expected.sop_class_uid}",
            )
        if expected.sop_instance_uid != header.sop_instance_uid:
            raise _Refused(
                CANNOT_UNDERSTAND,
                f"the dataset's SOP Instance UID {header.sop_instance_uid} differs from the "
                f"request's {expected.sop_instance_uid}",
            )

    def _record(self, header: Header, source: Source) -> InstanceRecord:
        return instance_record(header, source.calling_aet)

    def _fail(self, temp: Path | str, placed: str | None, status: int, reason: str, source: Source,
              expected: Expected | None) -> StoreResult:
        remove_if_there(temp)
        if placed:
            self.blobs.remove(placed)
        uid = expected.sop_instance_uid if expected else ""
        log.warning("refused %s from %s (status 0x%04X): %s", uid or os.path.basename(temp),
                    source.calling_aet or source.kind, status, reason)
        return StoreResult(status, "failed", uid, reason=reason)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def instance_record(header: Header, calling_aet: str = "") -> InstanceRecord:
    """The index record of a parsed header (path and checksum left for the caller to fill)."""
    ds = header.dataset
    return InstanceRecord(
        sop_uid=header.sop_instance_uid,
        sop_class_uid=header.sop_class_uid,
        transfer_syntax=header.transfer_syntax,
        path="",
        size_bytes=header.size,
        checksum="",  # set once computed (sha256_soon)
        header_json=header.header_json if header.header_json is not None else header_json(ds),
        instance_number=integer_or_none(first_text(ds, "InstanceNumber")),
        calling_aet=calling_aet,
        patient=column_values(ds, PATIENT_COLUMNS),
        study={"study_uid": header.study_uid, **column_values(ds, STUDY_COLUMNS)},
        series={"series_uid": header.series_uid, **column_values(ds, SERIES_COLUMNS)},
    )


def header_json(dataset: Dataset) -> str:
    """The header as DICOM JSON; binary values above the threshold are left out (BulkDataURI).

    Element by element rather than `Dataset.to_json_dict(suppress_invalid_tags=True)`: that
    switches pydicom's process-wide reading mode to RAISE while it runs, so a header parsed at the
    same moment in another association's thread would be refused for a value pydicom only warns
    about.  An element that cannot be written as JSON is left out, and logged."""
    as_dict = {}
    for element in dataset:
        try:
            as_dict[f"{element.tag:08X}"] = element.to_json_dict(
                bulk_data_element_handler=lambda e: f"bulkdata/{e.tag:08X}",
                bulk_data_threshold=BULK_DATA_THRESHOLD)
        except Exception as exc:  # noqa: BLE001 - whatever pydicom raises for one element
            log.warning("element %s left out of the stored header: %s", element.tag, exc)
    return json.dumps(as_dict, separators=(",", ":"), ensure_ascii=False)
