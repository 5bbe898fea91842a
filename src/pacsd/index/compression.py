"""The index operations of lossless compression: which instances are left to compress, what was
given up and why, the journal of compressions under way, and the one transaction that points an
instance at its compressed file.  The files themselves are `pacsd.services.compression`'s.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import ColumnElement, Connection, Engine, and_, delete, func, insert, or_, select, true, update

from pacsd.index.areas import in_area
from pacsd.index.schema import changes, compression_journal, compression_outcomes, instances, series, studies

MAX_ATTEMPTS = 3  # a compression failing this often for a passing reason (disk, I/O) is given up


@dataclass(frozen=True)
class Candidate:
    """An uncompressed instance some rule may compress."""

    pk: int
    sop_uid: str
    sop_class_uid: str
    modality: str
    transfer_syntax: str
    path: str
    size_bytes: int
    checksum: str


@dataclass(frozen=True)
class RuleFilter:
    """What one rule matches (empty: anything); candidates match at least one rule."""

    modalities: Collection[str]
    sop_classes: Collection[str]
    areas: Collection[str] = ()  # storage areas (the instance's path names it: pacsd.area_paths)
    home: str = ""  # the home area, whose paths carry no area prefix


@dataclass(frozen=True)
class JournalEntry:
    pk: int
    instance_pk: int
    old_path: str
    new_path: str
    node: str
    started_at: datetime


def candidates(engine: Engine, native_syntaxes: Collection[str], rules: Sequence[RuleFilter],
               received_before: datetime, after_pk: int, limit: int) -> list[Candidate]:
    """Up to `limit` instances past `after_pk` (in pk order) stored in one of `native_syntaxes`,
    received before `received_before`, matching a rule, and neither given up nor failed too often."""
    if not rules:
        return []
    matches = []
    for rule in rules:
        conditions: list[ColumnElement[bool]] = []
        if rule.modalities:
            conditions.append(series.c.modality.in_(sorted(rule.modalities)))
        if rule.sop_classes:
            conditions.append(instances.c.sop_class_uid.in_(sorted(rule.sop_classes)))
        if rule.areas:
            conditions.append(or_(*(in_area(area, rule.home) for area in sorted(rule.areas))))
        matches.append(and_(*conditions) if conditions else true())
    outcome = compression_outcomes
    statement = (
        select(instances.c.pk, instances.c.sop_uid, instances.c.sop_class_uid, series.c.modality,
               instances.c.transfer_syntax, instances.c.path, instances.c.size_bytes, instances.c.checksum)
        .join(series, instances.c.series_pk == series.c.pk)
        .outerjoin(outcome, and_(outcome.c.instance_pk == instances.c.pk, outcome.c.checksum == instances.c.checksum))
        .where(instances.c.pk > after_pk, instances.c.transfer_syntax.in_(sorted(native_syntaxes)),
               instances.c.received_at < received_before, or_(*matches),
               or_(outcome.c.pk.is_(None), and_(outcome.c.permanent.is_(False), outcome.c.attempts < MAX_ATTEMPTS)))
        .order_by(instances.c.pk).limit(limit))
    with engine.connect() as conn:
        return [Candidate(*row) for row in conn.execute(statement).all()]


def record_outcome(engine: Engine, candidate: Candidate, reason: str, permanent: bool) -> None:
    """Remember that compressing this content of the instance was given up (`permanent`) or failed once more."""
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        existing = conn.execute(select(compression_outcomes.c.pk, compression_outcomes.c.checksum,
                                       compression_outcomes.c.attempts)
                                .where(compression_outcomes.c.instance_pk == candidate.pk)).first()
        values = {"checksum": candidate.checksum, "permanent": permanent, "reason": reason[:2000], "at": now}
        if existing is None:
            conn.execute(insert(compression_outcomes).values(instance_pk=candidate.pk, attempts=1, **values))
        else:
            attempts = existing.attempts + 1 if existing.checksum == candidate.checksum else 1
            conn.execute(update(compression_outcomes).where(compression_outcomes.c.pk == existing.pk)
                         .values(attempts=attempts, **values))


def latest_change(engine: Engine) -> int:
    """The newest entry of the changes feed (every stored instance adds one): 0 when none."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(changes.c.seq), 0))).scalar_one())


@dataclass(frozen=True)
class Outcome:
    sop_uid: str
    path: str
    permanent: bool
    attempts: int
    reason: str
    at: datetime


def outcomes(engine: Engine, limit: int) -> list[Outcome]:
    """What compression gave up on or failed at, for instances still stored as then, newest first."""
    statement = (select(instances.c.sop_uid, instances.c.path, compression_outcomes.c.permanent,
                        compression_outcomes.c.attempts, compression_outcomes.c.reason, compression_outcomes.c.at)
                 .join(instances, and_(instances.c.pk == compression_outcomes.c.instance_pk,
                                       instances.c.checksum == compression_outcomes.c.checksum))
                 .order_by(compression_outcomes.c.at.desc()).limit(limit))
    with engine.connect() as conn:
        return [Outcome(*row) for row in conn.execute(statement).all()]


def journal_start(engine: Engine, candidate: Candidate, new_path: str, node: str) -> int:
    """Record a compression about to place `new_path` beside the instance's file; its journal key."""
    with engine.begin() as conn:
        return conn.execute(insert(compression_journal).values(
            instance_pk=candidate.pk, old_path=candidate.path, new_path=new_path, node=node, state="placing",
            started_at=datetime.now(timezone.utc))).inserted_primary_key[0]  # type: ignore[index]  # an insert: a key


def switch_to_compressed(engine: Engine, journal_pk: int, candidate: Candidate, new_path: str, size: int,
                         checksum: str, syntax: str) -> bool:
    """In one transaction: point the instance at its compressed file (path, size, checksum, syntax),
    correct its study's size, and mark the journal entry switched.  False (nothing changed) when
    the instance is no longer the file compressed (overwritten or deleted meanwhile) or the journal
    entry was taken by a recovery."""
    try:
        with engine.begin() as conn:
            _switch(conn, journal_pk, candidate, new_path, size, checksum, syntax)
        return True
    except _NotSwitched:
        return False


class _NotSwitched(Exception):
    """Rolls the switch back."""


def _switch(conn: Connection, journal_pk: int, candidate: Candidate, new_path: str, size: int, checksum: str,
            syntax: str) -> None:
    if conn.execute(update(compression_journal)
                    .where(compression_journal.c.pk == journal_pk, compression_journal.c.state == "placing")
                    .values(state="switched")).rowcount != 1:
        raise _NotSwitched
    changed = conn.execute(update(instances).where(
        instances.c.pk == candidate.pk, instances.c.path == candidate.path,
        instances.c.checksum == candidate.checksum, instances.c.transfer_syntax == candidate.transfer_syntax)
        .values(path=new_path, size_bytes=size, checksum=checksum, transfer_syntax=syntax)).rowcount
    if changed != 1:
        raise _NotSwitched
    study_pk = select(series.c.study_pk).where(
        series.c.pk == select(instances.c.series_pk).where(instances.c.pk == candidate.pk).scalar_subquery())
    conn.execute(update(studies).where(studies.c.pk == study_pk.scalar_subquery())
                 .values(size_bytes=studies.c.size_bytes + (size - candidate.size_bytes)))


def journal_finish(engine: Engine, *journal_pks: int) -> None:
    """Remove the entries of compressions done (or undone): nothing is left to recover of them."""
    if not journal_pks:
        return
    with engine.begin() as conn:
        conn.execute(delete(compression_journal).where(compression_journal.c.pk.in_(journal_pks)))


def journal_entries(engine: Engine, node: str | None = None, started_before: datetime | None = None) -> list[JournalEntry]:
    """Compressions not finished: of one node (None: any), started before a moment (None: any)."""
    statement = select(compression_journal.c.pk, compression_journal.c.instance_pk, compression_journal.c.old_path,
                       compression_journal.c.new_path, compression_journal.c.node, compression_journal.c.started_at)
    if node is not None:
        statement = statement.where(compression_journal.c.node == node)
    if started_before is not None:
        statement = statement.where(compression_journal.c.started_at < started_before)
    with engine.connect() as conn:
        return [JournalEntry(*row) for row in conn.execute(statement.order_by(compression_journal.c.pk)).all()]


def take_journal_entry(engine: Engine, entry: JournalEntry) -> list[str] | None:
    """Remove an unfinished compression's entry and say which of its two files no instance row
    names (to be removed); None when another recovery took it first.  In one transaction with the
    removal, so a compression still running cannot switch to a file the caller then removes."""
    with engine.begin() as conn:
        if conn.execute(delete(compression_journal).where(compression_journal.c.pk == entry.pk)).rowcount != 1:
            return None
        named = set(conn.execute(select(instances.c.path).where(
            instances.c.path.in_([entry.old_path, entry.new_path]))).scalars())
    return [path for path in (entry.new_path, entry.old_path) if path not in named]
