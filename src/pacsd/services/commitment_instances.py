"""Which instances a commitment covers, and whether the archive really holds each one.

An instance is committed when it is indexed, its SOP class matches the request, its file is
present with the size recorded at ingest and readable, and (optionally) its SHA-256 still
matches the ingest checksum.  Reads only; the job bookkeeping is in `services.commitment`.
"""

from __future__ import annotations

import hashlib
import logging
import os

from sqlalchemy import Engine

from pacsd.dicom.commitment import (
    CLASS_INSTANCE_CONFLICT,
    NO_SUCH_OBJECT_INSTANCE,
    PROCESSING_FAILURE,
    Reference,
)
from pacsd.index.repository import InstanceFile, instance_files_by_uid, study_instance_uids
from pacsd.storage.blobstore import BlobStore

log = logging.getLogger(__name__)

_LOOKUP_CHUNK = 500  # bound parameters per query, well under SQLite's limit


def failure_reasons(engine: Engine, blobs: BlobStore, references: list[Reference],
                    verify_checksums: bool = False) -> list[int | None]:
    """One entry per reference: None when committed, else the Failure Reason."""
    rows = instance_files_by_uid(engine, {ref.sop_uid for ref in references}, _LOOKUP_CHUNK)
    return [_failure_reason(ref, rows.get(ref.sop_uid), blobs, verify_checksums) for ref in references]


def study_references(engine: Engine, study_uid: str) -> list[Reference]:
    """The instances of one study in our index, as commitment references."""
    return [Reference(sop_class, sop_uid) for sop_class, sop_uid in study_instance_uids(engine, study_uid)]


def _failure_reason(ref: Reference, row: InstanceFile | None, blobs: BlobStore, verify_checksums: bool) -> int | None:
    if row is None:
        return NO_SUCH_OBJECT_INSTANCE
    if row.sop_class_uid != ref.sop_class_uid:
        return CLASS_INSTANCE_CONFLICT
    problem = _file_problem(row, blobs, verify_checksums)
    if problem:
        log.warning("commitment of %s refused: %s", ref.sop_uid, problem)
        return PROCESSING_FAILURE
    return None


def _file_problem(row: InstanceFile, blobs: BlobStore, verify_checksums: bool) -> str:
    """Why the stored file cannot be vouched for, or '' when it is sound."""
    try:
        path = blobs.absolute(row.path)
        size = os.stat(path).st_size
        if size != row.size_bytes:
            return f"{row.path} is {size} bytes, {row.size_bytes} were stored"
        with open(path, "rb") as f:
            if not verify_checksums:
                f.read(1)
                return ""
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    except (OSError, ValueError) as exc:
        return f"{row.path} cannot be read: {exc}"
    if row.checksum and digest != row.checksum:
        return f"{row.path} no longer matches its ingest checksum"
    return ""
