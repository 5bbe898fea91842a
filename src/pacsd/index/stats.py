"""Archive statistics from the index: counts of each level, bytes, and instances per modality."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from pacsd.index.schema import instances, patients, series, studies


def archive_statistics(engine: Engine) -> dict:
    with engine.connect() as conn:
        counts = {
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
