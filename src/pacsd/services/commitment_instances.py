"""Which instances a commitment covers, and whether the archive really holds each one.

An instance is committed when it is indexed, its SOP class matches the request, its file is
present with the size recorded at ingest and readable, and (optionally) its SHA-256 still
matches the ingest checksum.  Reads only; the job bookkeeping is in `services.commitment`.
"""

from __future__ import annotations

import hashlib
import logging
import os

from sqlalchemy import Engine, Row, select

from pacsd.dicom.commitment import (
    CLASS_INSTANCE_CONFLICT,
    NO_SUCH_OBJECT_INSTANCE,
    PROCESSING_FAILURE,
    Reference,
)
from pacsd.index.schema import instances, series, studies
from pacsd.storage.blobstore import BlobStore

log = logging.getLogger(__name__)

_LOOKUP_CHUNK = 500  # bound parameters per query, well under SQLite's limit


def failure_reasons(engine: Engine, blobs: BlobStore, references: list[Reference],
                    verify_checksums: bool = False) -> list[int | None]:
    """One entry per reference: None when committed, else the Failure Reason."""
    rows = _instance_rows(engine, sorted({ref.sop_uid for ref in references}))
    return [_failure_reason(ref, rows.get(ref.sop_uid), blobs, verify_checksums) for ref in references]


def study_references(engine: Engine, study_uid: str) -> list[Reference]:
    """The instances of one study in our index, as commitment references."""
    query = (
        select(instances.c.sop_class_uid, instances.c.sop_uid)
        .join(series, series.c.pk == instances.c.series_pk)
        .join(studies, studies.c.pk == series.c.study_pk)
        .where(studies.c.study_uid == study_uid)
        .order_by(instances.c.pk)
    )
    with engine.connect() as conn:
        return [Reference(row.sop_class_uid, row.sop_uid) for row in conn.execute(query)]


def _instance_rows(engine: Engine, sop_uids: list[str]) -> dict:
    rows = {}
    columns = (instances.c.sop_uid, instances.c.sop_class_uid, instances.c.path,
               instances.c.size_bytes, instances.c.checksum)
    with engine.connect() as conn:
        for start in range(0, len(sop_uids), _LOOKUP_CHUNK):
            chunk = sop_uids[start:start + _LOOKUP_CHUNK]
            for row in conn.execute(select(*columns).where(instances.c.sop_uid.in_(chunk))):
                rows[row.sop_uid] = row
    return rows


def _failure_reason(ref: Reference, row: Row | None, blobs: BlobStore, verify_checksums: bool) -> int | None:
    if row is None:
        return NO_SUCH_OBJECT_INSTANCE
    if row.sop_class_uid != ref.sop_class_uid:
        return CLASS_INSTANCE_CONFLICT
    problem = _file_problem(row, blobs, verify_checksums)
    if problem:
        log.warning("commitment of %s refused: %s", ref.sop_uid, problem)
        return PROCESSING_FAILURE
    return None


def _file_problem(row: Row, blobs: BlobStore, verify_checksums: bool) -> str:
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
