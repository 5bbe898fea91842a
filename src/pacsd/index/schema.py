"""The index schema: patients, studies, series, instances, and the changes feed.

Main query keys are real, indexed columns; counters (related series/instances, modalities and
SOP classes in study) are kept current at ingest so listings never count rows.  Each instance
keeps its header as DICOM JSON (bulk data left out) for WADO-RS metadata.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    CursorResult,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData()


def inserted_key(result: CursorResult) -> int:
    """The primary key of the one row an INSERT made."""
    key = result.inserted_primary_key
    if key is None:
        raise ValueError("the statement inserted no row")
    return int(key[0])

patients = Table(
    "patients",
    metadata,
    Column("pk", Integer, primary_key=True),
    Column("patient_id", String(64), nullable=False, unique=True),
    Column("patient_name", String(324), nullable=False, default=""),
    Column("patient_name_upper", String(324), nullable=False, default="", index=True),
    Column("birth_date", String(8), nullable=False, default=""),
    Column("sex", String(16), nullable=False, default=""),
    Column("num_studies", Integer, nullable=False, default=0),
    Column("num_series", Integer, nullable=False, default=0),
    Column("num_instances", Integer, nullable=False, default=0),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # Retention and quota recycling never delete a protected patient's studies.
    Column("protected", Boolean, nullable=False, server_default=false()),
    sqlite_autoincrement=True,  # keys are never reused: cached keys cannot point elsewhere
)

studies = Table(
    "studies",
    metadata,
    Column("pk", Integer, primary_key=True),
    Column("study_uid", String(64), nullable=False, unique=True),
    Column("patient_pk", Integer, ForeignKey("patients.pk"), nullable=False, index=True),
    Column("study_date", String(8), nullable=False, default="", index=True),
    Column("study_time", String(16), nullable=False, default=""),
    Column("accession_number", String(64), nullable=False, default="", index=True),
    Column("study_id", String(16), nullable=False, default=""),
    Column("description", String(64), nullable=False, default=""),
    Column("referring_physician", String(324), nullable=False, default="", index=True),
    Column("requesting_physician", String(324), nullable=False, default="", index=True),
    Column("institution", String(64), nullable=False, default=""),
    Column("account", String(128), nullable=False, default="", index=True),
    Column("modalities", String(256), nullable=False, default=""),
    Column("sop_classes", Text, nullable=False, default=""),
    Column("num_series", Integer, nullable=False, default=0),
    Column("num_instances", Integer, nullable=False, default=0),
    Column("size_bytes", BigInteger, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, index=True),
    # updated_at of the study when it was last found stable; pending while older than updated_at.
    Column("stable_at", DateTime(timezone=True), nullable=True),
    # End-of-study work (scan sheet, on_study_stable hook) of a stable study: the stable_at it last
    # completed for (pending while older than stable_at), and which node runs it since when.
    Column("end_work_done_for", DateTime(timezone=True), nullable=True),
    Column("end_work_node", String(128), nullable=False, default=""),
    Column("end_work_claimed_at", DateTime(timezone=True), nullable=True),
    # When a retrieve (C-GET, C-MOVE, WADO) last read the study (NULL: never); move rules use it.
    Column("last_accessed_at", DateTime(timezone=True), nullable=True, index=True),
    # Retention and quota recycling never delete a protected study.
    Column("protected", Boolean, nullable=False, server_default=false()),
    sqlite_autoincrement=True,  # keys are never reused: cached keys cannot point elsewhere
)

series = Table(
    "series",
    metadata,
    Column("pk", Integer, primary_key=True),
    Column("series_uid", String(64), nullable=False, unique=True),
    Column("study_pk", Integer, ForeignKey("studies.pk"), nullable=False, index=True),
    Column("modality", String(16), nullable=False, default="", index=True),
    Column("series_number", String(12), nullable=False, default=""),
    Column("description", String(64), nullable=False, default=""),
    Column("body_part", String(16), nullable=False, default=""),
    Column("protocol_name", String(64), nullable=False, default=""),
    Column("station_name", String(16), nullable=False, default=""),
    Column("series_date", String(8), nullable=False, default=""),
    Column("series_time", String(16), nullable=False, default=""),
    Column("num_instances", Integer, nullable=False, default=0),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    sqlite_autoincrement=True,  # keys are never reused: cached keys cannot point elsewhere
)

instances = Table(
    "instances",
    metadata,
    Column("pk", Integer, primary_key=True),
    Column("sop_uid", String(64), nullable=False, unique=True),
    Column("series_pk", Integer, ForeignKey("series.pk"), nullable=False, index=True),
    Column("sop_class_uid", String(64), nullable=False),
    Column("instance_number", Integer, nullable=True),
    Column("transfer_syntax", String(64), nullable=False),
    Column("path", String(1024), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("checksum", String(64), nullable=False, default=""),
    Column("account", String(128), nullable=False, default="", index=True),
    Column("calling_aet", String(16), nullable=False, default=""),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("header_json", Text, nullable=False),
    sqlite_autoincrement=True,  # keys are never reused: cached keys cannot point elsewhere
)

changes = Table(
    "changes",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("level", String(16), nullable=False),
    Column("uid", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_changes_kind_seq", "kind", "seq"),
)

# -- The folder (relative to the storage root) and account each study is filed in, claimed when
# its first instance is placed (layouts with study folders that tags alone could make collide).
study_folders = Table(
    "study_folders",
    metadata,
    Column("pk", Integer, primary_key=True),
    Column("study_uid", String(64), nullable=False, unique=True),
    Column("account", String(128), nullable=False, default=""),
    Column("folder", String(1024), nullable=False, unique=True),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
)

# -- Storage Commitment: every request, its per-instance results and each delivery attempt ------
# state: received (not yet checked) -> ready (checked, report to send) -> delivered; or waiting
# (no way to reach the requester until it calls again).  next_attempt_at NULL = not scheduled.
commitment_requests = Table(
    "commitment_requests",
    metadata,
    Column("pk", Integer, primary_key=True),
    Column("transaction_uid", String(64), nullable=False, index=True),
    Column("requester_aet", String(16), nullable=False, index=True),
    Column("requester_host", String(64), nullable=False, default=""),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("num_requested", Integer, nullable=False),
    Column("num_committed", Integer, nullable=False, default=0),
    Column("num_failed", Integer, nullable=False, default=0),
    Column("checked_at", DateTime(timezone=True), nullable=True),
    Column("event_type", Integer, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True, index=True),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Column("delivered_via", String(8), nullable=False, default=""),
    Column("last_error", Text, nullable=False, default=""),
)

commitment_items = Table(
    "commitment_items",
    metadata,
    Column("pk", Integer, primary_key=True),
    Column("request_pk", Integer, ForeignKey("commitment_requests.pk"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("sop_class_uid", String(64), nullable=False),
    Column("sop_uid", String(64), nullable=False),
    Column("failure_reason", Integer, nullable=True),  # NULL = committed (once the request is checked)
)

commitment_deliveries = Table(
    "commitment_deliveries",
    metadata,
    Column("pk", Integer, primary_key=True),
    Column("request_pk", Integer, ForeignKey("commitment_requests.pk"), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("method", String(8), nullable=False),  # same | new
    Column("outcome", String(16), nullable=False),  # delivered | failed
    Column("detail", Text, nullable=False, default=""),
)

# -- Web interface users: argon2 password hashes; session_epoch bumps end every open session --
users = Table(
    "users",
    metadata,
    Column("pk", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("password_hash", String(256), nullable=False),
    Column("account", String(128), nullable=False, default=""),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("session_epoch", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# The audit trail: who (a user or a calling AE, from which address) did what to which patient and
# study, when, and whether it worked.  Append-only: pacsd inserts rows and never changes one.
audit_events = Table(
    "audit_events",
    metadata,
    Column("pk", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(64), nullable=False),  # user name, calling AE title, or "pacsd"
    Column("actor_kind", String(8), nullable=False),  # user | ae | system
    Column("address", String(64), nullable=False, default=""),
    Column("action", String(16), nullable=False),  # viewed, searched, downloaded, ... (AUDIT_ACTIONS)
    Column("outcome", String(8), nullable=False),  # success | failure
    Column("patient_id", String(64), nullable=False, default=""),
    Column("study_uid", String(64), nullable=False, default=""),
    Column("detail", String(512), nullable=False, default=""),
    Index("ix_audit_events_at", "at"),
    Index("ix_audit_events_study_uid", "study_uid"),
    Index("ix_audit_events_actor", "actor"),
)

# -- Lossless compression (pacsd.services.compression) ----------------------------------------
# An instance compression gave up on, for the file content it was tried on (checksum): skipped
# (permanent: it cannot be compressed losslessly, the reason says why) or failed (attempts so far,
# retried until MAX_ATTEMPTS).  A new file for the instance (overwritten) is tried afresh.
compression_outcomes = Table(
    "compression_outcomes",
    metadata,
    Column("pk", Integer, primary_key=True),
    Column("instance_pk", Integer, nullable=False, unique=True),
    Column("checksum", String(64), nullable=False, default=""),
    Column("permanent", Boolean, nullable=False, default=False),
    Column("attempts", Integer, nullable=False, default=1),
    Column("reason", Text, nullable=False, default=""),
    Column("at", DateTime(timezone=True), nullable=False),
)

# A compression under way: written before the compressed file is placed beside the original,
# marked switched when the instance row names the compressed file, removed once the file the row
# no longer names is gone.  A crash leaves the row: recovery removes whichever file no row names.
compression_journal = Table(
    "compression_journal",
    metadata,
    Column("pk", Integer, primary_key=True),
    Column("instance_pk", Integer, nullable=False, index=True),
    Column("old_path", String(1024), nullable=False),
    Column("new_path", String(1024), nullable=False),
    Column("node", String(128), nullable=False, default=""),
    Column("state", String(16), nullable=False),  # placing | switched
    Column("started_at", DateTime(timezone=True), nullable=False),
)

# Bytes and instances in each storage area other than the home area (whose use is the archive's
# total minus these): kept current by area moves and deletions in their own transactions, and
# recounted by every run of the move rules.  Quotas read it on the receive path.
area_usage = Table(
    "area_usage",
    metadata,
    Column("area", String(64), primary_key=True),
    Column("bytes", BigInteger, nullable=False, default=0),
    Column("instances", Integer, nullable=False, default=0),
)

# -- The forwarding queue: one row per instance and destination, inserted in the transaction of the
# instance's own row (routes `when: stored`) or by the study's end-of-study work (`study_stable`).
# state: pending -> in_flight (claimed: `claim`, `claimed_by`) -> delivered | failed | cancelled;
# a retry goes back to pending with a later next_attempt_at.
forward_queue = Table(
    "forward_queue",
    metadata,
    Column("pk", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("route", String(64), nullable=False),
    Column("destination", String(512), nullable=False),  # a known_aes title or a DICOMweb base URL
    Column("sop_uid", String(64), nullable=False, index=True),
    Column("study_uid", String(64), nullable=False, index=True),
    Column("state", String(12), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("enqueued_at", DateTime(timezone=True), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("claim", String(36), nullable=False, default=""),
    Column("claimed_by", String(128), nullable=False, default=""),
    Column("claimed_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),  # delivered, failed or cancelled
    Column("transfer_syntax", String(64), nullable=False, default=""),  # '' = as stored
    Column("commitment", Boolean, nullable=False, default=False),
    Column("delete_after", Boolean, nullable=False, default=False),
    Column("last_error", Text, nullable=False, default=""),
    # the delivery query: due items of one destination in arrival order
    Index("ix_forward_queue_due", "destination", "state", "next_attempt_at", "pk"),
    Index("ix_forward_queue_claim", "claim"),
)
