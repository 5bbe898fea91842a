"""The stored instances of a study, a series or one instance, as the index lists them.

Protocol-neutral: WADO-RS, WADO-URI and the web pages ask here which files make up what was
asked for, always through the caller's visible accounts.  It reads the index, never the files.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select

from pacsd.index.schema import instances, series, studies


@dataclass(frozen=True)
class StoredInstance:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    path: str  # relative to the storage root
    size_bytes: int
    header_json: str = ""  # filled only when asked for


def current_instance(engine: Engine, root: Path, stored: StoredInstance) -> StoredInstance:
    """The instance as the index has it now, when its file under `root` is gone since it was
    selected (compressed meanwhile: another path and syntax); unchanged otherwise."""
    if (root / stored.path).is_file():
        return stored
    now = select_instances(engine, None, stored.study_uid, stored.series_uid, stored.sop_uid)
    return now[0] if now else stored


def select_instances(engine: Engine, accounts: Collection[str] | None, study_uid: str,
                     series_uid: str | None = None, sop_uid: str | None = None,
                     with_header: bool = False) -> list[StoredInstance]:
    """The instances under the given UIDs, in series and instance order; [] when none is visible.

    `accounts` None means every study is visible; otherwise only studies of those accounts.
    """
    columns = [studies.c.study_uid, series.c.series_uid, instances.c.sop_uid, instances.c.sop_class_uid,
               instances.c.transfer_syntax, instances.c.path, instances.c.size_bytes]
    if with_header:
        columns.append(instances.c.header_json)
    statement = (
        select(*columns)
        .select_from(studies.join(series, series.c.study_pk == studies.c.pk)
                     .join(instances, instances.c.series_pk == series.c.pk))
        .where(studies.c.study_uid == study_uid)
        .order_by(series.c.pk, instances.c.instance_number, instances.c.pk)
    )
    if series_uid is not None:
        statement = statement.where(series.c.series_uid == series_uid)
    if sop_uid is not None:
        statement = statement.where(instances.c.sop_uid == sop_uid)
    if accounts is not None:
        statement = statement.where(studies.c.account.in_(sorted(accounts)))
    with engine.connect() as conn:
        return [StoredInstance(*row) for row in conn.execute(statement)]
