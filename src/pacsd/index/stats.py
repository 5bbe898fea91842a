"""Archive statistics from the index: counts of each level, bytes, and instances per modality;
for the status page also bytes per modality, studies per day and the ingest change feed."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine, String, func, select

from pacsd.index.schema import changes, instances, patients, series, studies

if TYPE_CHECKING:
    from pacsd.config import StorageSettings


def archive_statistics(engine: Engine) -> dict:
    with engine.connect() as conn:
        counts: dict[str, object] = {
            name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in (("patients", patients), ("studies", studies), ("series", series),
                                ("instances", instances))
        }
        counts["bytes"] = int(conn.execute(select(func.coalesce(func.sum(instances.c.size_bytes), 0))).scalar_one())
        per_modality = conn.execute(
            select(series.c.modality, func.count(series.c.pk), func.sum(series.c.num_instances))
            .group_by(series.c.modality).order_by(series.c.modality)
        ).all()
    counts["modalities"] = {
        (modality or "(none)"): {"series": n_series, "instances": int(n_instances or 0)}
        for modality, n_series, n_instances in per_modality
    }
    return counts


def storage_by_modality(engine: Engine) -> dict[str, dict[str, int]]:
    """Instances and bytes per modality (of their series); one pass over the instances."""
    query = (select(series.c.modality, func.count(instances.c.pk), func.coalesce(func.sum(instances.c.size_bytes), 0))
             .join(series, instances.c.series_pk == series.c.pk).group_by(series.c.modality)
             .order_by(series.c.modality))
    with engine.connect() as conn:
        return {(modality or "(none)"): {"instances": int(count), "bytes": int(size)}
                for modality, count, size in conn.execute(query)}


def studies_per_day(engine: Engine, since: datetime) -> dict[str, int]:
    """Studies first received on each day (UTC, YYYY-MM-DD) since `since`."""
    day = func.substr(func.cast(studies.c.created_at, String), 1, 10)
    query = select(day, func.count()).where(studies.c.created_at >= since).group_by(day)
    with engine.connect() as conn:
        return {str(date): int(count) for date, count in conn.execute(query)}


def instances_stored_after(engine: Engine, seq: int) -> tuple[int, int]:
    """(count, highest seq) of instance-stored changes after change `seq` (an index range scan)."""
    query = select(func.count(), func.coalesce(func.max(changes.c.seq), seq)).where(
        changes.c.kind == "instance-stored", changes.c.seq > seq)
    with engine.connect() as conn:
        count, highest = conn.execute(query).one()
    return int(count), int(highest)


def last_change_seq(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(changes.c.seq), 0))).scalar_one())


def bytes_per_area(engine: Engine, storage: StorageSettings) -> dict[str, int]:
    """Bytes of images in each storage area (`StorageSettings`), from the running totals."""
    from pacsd.index.areas import usage_totals

    totals = usage_totals(engine, storage.home_area or "default")  # validated settings always name it
    return {name: totals.area_bytes.get(name, 0) for name in storage.areas}
