"""The forwarding queue's named operations (table `forward_queue`): claim due items for one
destination, record what became of them, list, count, retry, cancel and purge.  Claims are safe
for several nodes on one PostgreSQL (FOR UPDATE SKIP LOCKED, then a conditional update).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import ColumnElement, Engine, case, delete, exists, func, insert, or_, select, update

from pacsd.index.schema import forward_queue as q
from pacsd.index.schema import instances, series, studies

STATES = ("pending", "in_flight", "delivered", "failed", "cancelled")
OPEN_STATES = ("pending", "in_flight")


DELIVERED, RETRY, FAILED = "delivered", "retry", "failed"


@dataclass(frozen=True)
class Delivery:
    """What became of one item: DELIVERED, RETRY (down, busy, no answer) or FAILED (refused for good)."""

    item: QueueItem
    result: str
    reason: str = ""


@dataclass(frozen=True)
class QueueItem:
    """A claimed item with what sending it needs (`path` None: the instance is gone)."""

    pk: int
    route: str
    destination: str
    sop_uid: str
    study_uid: str
    attempts: int
    enqueued_at: datetime
    transfer_syntax: str
    commitment: bool
    delete_after: bool
    path: str | None
    sop_class_uid: str
    stored_syntax: str


@dataclass(frozen=True)
class Outcome:
    """What became of one item: delivered, retry (at `next_attempt_at`), failed or cancelled."""

    pk: int
    state: str
    error: str = ""
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class DestinationSummary:
    destination: str
    pending: int
    in_flight: int
    delivered: int
    failed: int
    cancelled: int
    oldest_pending: datetime | None
    last_error: str


def _now() -> datetime:
    return datetime.now(timezone.utc)


def aware(moment: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back (stored as UTC)."""
    return moment.replace(tzinfo=timezone.utc) if moment is not None and moment.tzinfo is None else moment


def _at(moment: datetime | None) -> datetime:
    """`aware` of a column that is never null."""
    aware_moment = aware(moment)
    assert aware_moment is not None
    return aware_moment


def claim(engine: Engine, destination: str, node: str, limit: int, now: datetime | None = None) -> list[QueueItem]:
    """Claim up to `limit` due items of `destination` for `node`, oldest first (arrival order).
    Items of a study another sender (association or node) has in flight to the destination are
    left for later, so a study's instances arrive in order."""
    now = now or _now()
    token = str(uuid.uuid4())
    busy = q.alias("busy")
    study_in_flight = exists().where(busy.c.study_uid == q.c.study_uid, busy.c.destination == destination,
                                     busy.c.state == "in_flight")
    with engine.begin() as conn:
        due = (select(q.c.pk).where(q.c.destination == destination, q.c.state == "pending",
                                    q.c.next_attempt_at <= now, ~study_in_flight)
               .order_by(q.c.pk).limit(limit))
        if conn.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        pks = conn.execute(due).scalars().all()
        if not pks:
            return []
        conn.execute(update(q).where(q.c.pk.in_(pks), q.c.state == "pending")
                     .values(state="in_flight", claim=token, claimed_by=node, claimed_at=now))
        rows = conn.execute(
            select(q, instances.c.path, instances.c.sop_class_uid, instances.c.transfer_syntax.label("stored_syntax"))
            .select_from(q.outerjoin(instances, instances.c.sop_uid == q.c.sop_uid))
            .where(q.c.claim == token).order_by(q.c.pk)).all()
    return [QueueItem(r.pk, r.route, r.destination, r.sop_uid, r.study_uid, r.attempts, _at(r.enqueued_at),
                      r.transfer_syntax, bool(r.commitment), bool(r.delete_after), r.path,
                      r.sop_class_uid or "", r.stored_syntax or "") for r in rows]


def record_outcomes(engine: Engine, outcomes: list[Outcome], now: datetime | None = None) -> None:
    """Write what became of claimed items (each attempt counts)."""
    now = now or _now()
    with engine.begin() as conn:
        for outcome in outcomes:
            values: dict[str, object] = {"state": outcome.state, "attempts": q.c.attempts + 1, "claim": "",
                      "last_error": outcome.error[:2000]}
            if outcome.state == "pending":
                values["next_attempt_at"] = outcome.next_attempt_at or now
            else:
                values["finished_at"] = now
            conn.execute(update(q).where(q.c.pk == outcome.pk, q.c.state == "in_flight").values(**values))


def release_claims(engine: Engine, node: str, take_over_before: datetime) -> int:
    """Put back to pending the items this node had in flight (it stopped or died) and other nodes'
    claims older than `take_over_before`; their attempt is not counted.  Returns how many."""
    with engine.begin() as conn:
        return conn.execute(update(q).where(
            q.c.state == "in_flight", or_(q.c.claimed_by == node, q.c.claimed_at < take_over_before))
            .values(state="pending", claim="")).rowcount


def add(engine: Engine, rows: list[dict]) -> None:
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(q), rows)


@dataclass(frozen=True)
class StudyInstance:
    """An instance of a study as routes see it, from the index."""

    sop_uid: str
    sop_class_uid: str
    calling_aet: str
    account: str
    modality: str
    header_json: str
    received_at: datetime


def study_instances(engine: Engine, study_uid: str) -> list[StudyInstance]:
    """The instances of a study in arrival order."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(instances.c.sop_uid, instances.c.sop_class_uid, instances.c.calling_aet, instances.c.account,
                   series.c.modality, instances.c.header_json, instances.c.received_at)
            .join(series, instances.c.series_pk == series.c.pk).join(studies, series.c.study_pk == studies.c.pk)
            .where(studies.c.study_uid == study_uid).order_by(instances.c.pk)).all()
    return [StudyInstance(r.sop_uid, r.sop_class_uid, r.calling_aet, r.account, r.modality or "", r.header_json,
                          _at(r.received_at)) for r in rows]


def queued_since(engine: Engine, study_uid: str, route: str) -> dict[tuple[str, str], datetime]:
    """(sop_uid, destination) -> when it was last enqueued by `route`, for one study."""
    with engine.connect() as conn:
        rows = conn.execute(select(q.c.sop_uid, q.c.destination, func.max(q.c.enqueued_at))
                            .where(q.c.study_uid == study_uid, q.c.route == route)
                            .group_by(q.c.sop_uid, q.c.destination)).all()
    return {(r[0], r[1]): _at(r[2]) for r in rows}


def study_settled_for_deletion(engine: Engine, study_uid: str) -> bool:
    """Whether a study may be removed after delivery: some item asks for it, every item is
    delivered or cancelled, and the study is stable (no instance is still arriving)."""
    with engine.connect() as conn:
        row = conn.execute(select(
            func.count().filter(q.c.delete_after.is_(True)),
            func.count().filter(q.c.state.not_in(("delivered", "cancelled"))),
        ).where(q.c.study_uid == study_uid)).one()
        stable = conn.execute(select(studies.c.pk).where(
            studies.c.study_uid == study_uid, studies.c.stable_at.is_not(None),
            studies.c.stable_at >= studies.c.updated_at)).first()
    return row[0] > 0 and row[1] == 0 and stable is not None


def summary(engine: Engine, now: datetime | None = None) -> list[DestinationSummary]:
    """Per destination: items in each state, the oldest pending item's enqueue time, the last error."""
    counts = [func.count().filter(q.c.state == state) for state in STATES]
    with engine.connect() as conn:
        rows = conn.execute(select(q.c.destination, *counts,
                                   func.min(case((q.c.state == "pending", q.c.enqueued_at))))
                            .group_by(q.c.destination).order_by(q.c.destination)).all()
        errors = {}
        for r in rows:
            errors[r[0]] = conn.execute(
                select(q.c.last_error).where(q.c.destination == r[0], q.c.last_error != "")
                .order_by(q.c.pk.desc()).limit(1)).scalar() or ""
    return [DestinationSummary(r[0], r[1], r[2], r[3], r[4], r[5], aware(r[6]), errors[r[0]]) for r in rows]


def delivered_since(engine: Engine, since: datetime) -> dict[str, int]:
    """Items delivered per destination since `since`."""
    with engine.connect() as conn:
        rows = conn.execute(select(q.c.destination, func.count()).where(
            q.c.state == "delivered", q.c.finished_at >= since).group_by(q.c.destination)).all()
    return {r[0]: r[1] for r in rows}


def _filters(route: str | None, state: str | None, destination: str | None,
             pks: list[int] | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if route:
        conditions.append(q.c.route == route)
    if state:
        conditions.append(q.c.state == state)
    if destination:
        conditions.append(q.c.destination == destination)
    if pks:
        conditions.append(q.c.pk.in_(pks))
    return conditions


def list_items(engine: Engine, route: str | None = None, state: str | None = None,
               destination: str | None = None, limit: int = 1000) -> list:
    """Queue rows, newest first, at most `limit`."""
    with engine.connect() as conn:
        return list(conn.execute(select(q).where(*_filters(route, state, destination, None))
                                 .order_by(q.c.pk.desc()).limit(limit)).all())


def retry(engine: Engine, route: str | None = None, destination: str | None = None,
          pks: list[int] | None = None, now: datetime | None = None) -> int:
    """Failed items (and pending ones waiting for a retry) become due now, their attempts reset."""
    now = now or _now()
    with engine.begin() as conn:
        return conn.execute(update(q).where(
            q.c.state.in_(("failed", "pending")), *_filters(route, None, destination, pks))
            .values(state="pending", attempts=0, next_attempt_at=now, finished_at=None, enqueued_at=case(
                (q.c.state == "failed", now), else_=q.c.enqueued_at))).rowcount


def cancel(engine: Engine, route: str | None = None, destination: str | None = None,
           pks: list[int] | None = None, now: datetime | None = None) -> int:
    """Pending and failed items are cancelled (kept listed; never sent).  In-flight ones finish."""
    now = now or _now()
    with engine.begin() as conn:
        return conn.execute(update(q).where(
            q.c.state.in_(("failed", "pending")), *_filters(route, None, destination, pks))
            .values(state="cancelled", finished_at=now, last_error="cancelled")).rowcount


def purge_finished(engine: Engine, before: datetime) -> int:
    """Delete delivered and cancelled items finished before `before`."""
    with engine.begin() as conn:
        return conn.execute(delete(q).where(q.c.state.in_(("delivered", "cancelled")),
                                            q.c.finished_at < before)).rowcount


def fail_expired(engine: Engine, enqueued_before: datetime, now: datetime | None = None) -> list:
    """Pending items enqueued before `enqueued_before` become failed; returns them (pk, route,
    destination, sop_uid) for the action log."""
    now = now or _now()
    with engine.begin() as conn:
        rows = conn.execute(select(q.c.pk, q.c.route, q.c.destination, q.c.sop_uid).where(
            q.c.state == "pending", q.c.enqueued_at < enqueued_before).limit(10000)).all()
        if rows:
            conn.execute(update(q).where(q.c.pk.in_([r.pk for r in rows]), q.c.state == "pending").values(
                state="failed", finished_at=now,
                last_error=case((q.c.last_error == "", "max_age reached"),
                                else_="max_age reached; last error: " + q.c.last_error)))
    return list(rows)
