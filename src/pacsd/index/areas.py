"""Index operations of storage areas, retention and quotas: last access, protected flags, the
per-area usage totals, an instance's path switch, and the studies a move or deletion rule selects.

Paths outside the home area start with `.areas/<area>/` (`pacsd.area_paths`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    and_,
    delete,
    exists,
    func,
    insert,
    not_,
    or_,
    select,
    update,
)

from pacsd.area_paths import area_prefix
from pacsd.index.schema import area_usage, instances, patients, series, studies

log = logging.getLogger(__name__)

TOUCH_EVERY = timedelta(hours=1)  # a study's last access is written at most this often


def touch_studies(engine: Engine, study_uids: Iterable[str], now: datetime | None = None) -> None:
    """Record that the studies were just retrieved (at most once per TOUCH_EVERY each).  A
    failure is logged, never raised: the retrieve it records goes on."""
    uids = sorted(set(study_uids))[:1000]
    if not uids:
        return
    now = now or datetime.now(timezone.utc)
    try:
        with engine.begin() as conn:
            conn.execute(update(studies).where(
                studies.c.study_uid.in_(uids),
                or_(studies.c.last_accessed_at.is_(None), studies.c.last_accessed_at < now - TOUCH_EVERY),
            ).values(last_accessed_at=now))
    except Exception:  # noqa: BLE001 - a busy or unreachable index
        log.warning("could not record the last access of %d studies", len(uids), exc_info=True)


def set_protected(engine: Engine, level: str, uid: str, protected: bool) -> bool:
    """Set or clear the protected flag of a patient (by Patient ID) or study (by UID); False when
    there is no such one."""
    table, key = (patients, patients.c.patient_id) if level == "patient" else (studies, studies.c.study_uid)
    with engine.begin() as conn:
        return conn.execute(update(table).where(key == uid).values(protected=protected)).rowcount > 0


def in_area(area: str, home: str) -> ColumnElement[bool]:
    """An SQL condition: the instance's file is in `area`."""
    prefix = area_prefix(area, home)
    if prefix:
        return func.substr(instances.c.path, 1, len(prefix)) == prefix
    return func.substr(instances.c.path, 1, len(".areas/")) != ".areas/"


# -- usage totals ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Totals:
    """The archive's totals and the bytes in each area (the home area's: the rest)."""

    bytes: int
    studies: int
    patients: int
    area_bytes: dict[str, int]


def usage_totals(engine: Engine, home: str) -> Totals:
    """Read the running totals: three aggregate reads over studies and patients, one over the
    few rows of area_usage; no scan of the instances."""
    with engine.connect() as conn:
        total_bytes, study_count = conn.execute(
            select(func.coalesce(func.sum(studies.c.size_bytes), 0), func.count())).one()
        patient_count = conn.execute(select(func.count()).select_from(patients)).scalar_one()
        others = {area: int(size) for area, size in conn.execute(select(area_usage.c.area, area_usage.c.bytes))}
    others.pop(home, None)
    area_bytes = {**others, home: max(0, int(total_bytes) - sum(others.values()))}
    return Totals(int(total_bytes), int(study_count), int(patient_count), area_bytes)


def area_instance_counts(engine: Engine, home: str) -> dict[str, int]:
    """Instances per area: area_usage's, and the rest in the home area."""
    with engine.connect() as conn:
        counts = {area: int(count) for area, count in conn.execute(select(area_usage.c.area, area_usage.c.instances))}
        total = conn.execute(select(func.coalesce(func.sum(studies.c.num_instances), 0))).scalar_one()
    counts.pop(home, None)
    counts[home] = max(0, int(total) - sum(counts.values()))
    return counts


def add_area_usage(conn: Connection, area: str, size: int, count: int, home: str) -> None:
    """Count `size` bytes and `count` instances more (or fewer, when negative) in `area`."""
    if area == home or (size == 0 and count == 0):
        return
    changed = conn.execute(update(area_usage).where(area_usage.c.area == area).values(
        bytes=area_usage.c.bytes + size, instances=area_usage.c.instances + count)).rowcount
    if not changed:
        conn.execute(insert(area_usage).values(area=area, bytes=max(size, 0), instances=max(count, 0)))


def recount_area_usage(engine: Engine, areas: Iterable[str], home: str) -> dict[str, int]:
    """Count every area's bytes and instances afresh (one pass over the instances) and store them."""
    counted: dict[str, tuple[int, int]] = {}
    with engine.begin() as conn:
        for area in areas:
            if area == home:
                continue
            size, count = conn.execute(select(func.coalesce(func.sum(instances.c.size_bytes), 0), func.count())
                                       .where(in_area(area, home))).one()
            counted[area] = (int(size), int(count))
        conn.execute(delete(area_usage))
        for area, (size, count) in counted.items():
            conn.execute(insert(area_usage).values(area=area, bytes=size, instances=count))
    return {area: size for area, (size, _) in counted.items()}


def area_usage_of_paths(rows: Iterable[tuple[str, int]], area_of: Callable[[str], str]) -> dict[str, tuple[int, int]]:
    """(bytes, instances) per area of (path, size) rows; `area_of(path)` names a path's area."""
    per_area: dict[str, tuple[int, int]] = {}
    for path, size in rows:
        area = area_of(path)
        size_sum, count = per_area.get(area, (0, 0))
        per_area[area] = (size_sum + int(size or 0), count + 1)
    return per_area


# -- moving a study's instances -------------------------------------------------------------------

@dataclass(frozen=True)
class StoredFile:
    pk: int
    path: str
    size_bytes: int


def study_files_outside(engine: Engine, study_uid: str, area: str, home: str, limit: int,
                        after_pk: int = 0) -> list[StoredFile]:
    """Up to `limit` instances of the study (after key `after_pk`) whose file is not in `area`."""
    query = (select(instances.c.pk, instances.c.path, instances.c.size_bytes)
             .join(series, instances.c.series_pk == series.c.pk).join(studies, series.c.study_pk == studies.c.pk)
             .where(studies.c.study_uid == study_uid, instances.c.pk > after_pk, not_(in_area(area, home)))
             .order_by(instances.c.pk).limit(limit))
    with engine.connect() as conn:
        return [StoredFile(pk, path, size) for pk, path, size in conn.execute(query)]


def switch_paths(engine: Engine, moves: list[tuple[StoredFile, str]], area_of: Callable[[str], str], home: str) -> list[bool]:
    """In one transaction, point each instance at its new path, if it still names the old one
    (an instance overwritten or deleted meanwhile is left alone); returns which were switched."""
    switched = []
    with engine.begin() as conn:
        for stored, new_path in moves:
            done = conn.execute(update(instances).where(instances.c.pk == stored.pk, instances.c.path == stored.path)
                                .values(path=new_path)).rowcount > 0
            switched.append(done)
            if done:
                add_area_usage(conn, area_of(stored.path), -stored.size_bytes, -1, home)
                add_area_usage(conn, area_of(new_path), stored.size_bytes, 1, home)
    return switched


# -- what the rules select ------------------------------------------------------------------------

@dataclass(frozen=True)
class StudyChoice:
    study_uid: str
    patient_id: str
    size_bytes: int
    num_instances: int
    study_date: str
    created_at: datetime


def _choice_query() -> Select:
    return (select(studies.c.study_uid, patients.c.patient_id, studies.c.size_bytes, studies.c.num_instances,
                   studies.c.study_date, studies.c.created_at)
            .join(patients, studies.c.patient_pk == patients.c.pk))


def _has_instances(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    """An SQL condition on the study of the enclosing query: one of its instances meets `conditions`."""
    return exists(select(instances.c.pk).join(series, instances.c.series_pk == series.c.pk)
                  .where(series.c.study_pk == studies.c.pk, *conditions))


def _has_instances_in(area: str, home: str) -> ColumnElement[bool]:
    return _has_instances(in_area(area, home))


def _modality_is(modality: str) -> ColumnElement[bool]:
    return exists(select(series.c.pk).where(series.c.study_pk == studies.c.pk, series.c.modality == modality))


def studies_to_move(engine: Engine, to_area: str, from_area: str, idle_since: datetime, modality: str,
                    home: str, limit: int) -> list[StudyChoice]:
    """Studies not retrieved (nor changed) since `idle_since` with files outside `to_area` (in
    `from_area`, when given), oldest access first."""
    last_use = func.coalesce(studies.c.last_accessed_at, studies.c.updated_at)
    conditions: list[ColumnElement[bool]] = [studies.c.updated_at < idle_since,
                  or_(studies.c.last_accessed_at.is_(None), studies.c.last_accessed_at < idle_since),
                  _has_instances(not_(in_area(to_area, home)))]
    if from_area:
        conditions.append(_has_instances_in(from_area, home))
    if modality:
        conditions.append(_modality_is(modality))
    with engine.connect() as conn:
        rows = conn.execute(_choice_query().where(and_(*conditions)).order_by(last_use, studies.c.pk).limit(limit))
        return [StudyChoice(*row) for row in rows]


def unprotected_studies(engine: Engine, home: str, limit: int, *, older_than: datetime | None = None,
                        study_date_before: str = "", modality: str = "", account: str = "",
                        area: str = "") -> list[StudyChoice]:
    """Studies no flag protects (neither theirs nor their patient's) that match every condition
    given, oldest arrival first: what retention deletes and what recycling frees room with."""
    conditions: list[ColumnElement[bool]] = [studies.c.protected.is_(False), patients.c.protected.is_(False)]
    if older_than is not None:
        conditions.append(studies.c.created_at < older_than)
    if study_date_before:
        conditions += [studies.c.study_date != "", studies.c.study_date < study_date_before]
    if modality:
        conditions.append(_modality_is(modality))
    if account:
        conditions.append(studies.c.account == account)
    if area:
        conditions.append(_has_instances_in(area, home))
    with engine.connect() as conn:
        rows = conn.execute(_choice_query().where(and_(*conditions))
                            .order_by(studies.c.created_at, studies.c.pk).limit(limit))
        return [StudyChoice(*row) for row in rows]


def study_exists(engine: Engine, study_uid: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(studies.c.pk).where(studies.c.study_uid == study_uid)).first() is not None


def protected_flags(engine: Engine, study_uid: str) -> tuple[bool, bool] | None:
    """(study protected, patient protected), None when there is no such study."""
    with engine.connect() as conn:
        row = conn.execute(select(studies.c.protected, patients.c.protected)
                           .join(patients, studies.c.patient_pk == patients.c.pk)
                           .where(studies.c.study_uid == study_uid)).first()
    return None if row is None else (bool(row[0]), bool(row[1]))
