"""Fill an index with synthetic rows directly (no files): for large C-FIND tests and bench/find.py.

Study i belongs to patient i // 2 (surname SURNAMES[patient % 100]), is dated
START + i // 10 days, and has one CT series of `per_study` instances.  On PostgreSQL the rows
go in with COPY (a million instances in well under a minute), elsewhere in batches.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import Engine, Table, insert, text

from pacsd.index.schema import instances, patients, series, studies

SURNAMES = [f"{a}{b}" for a in ("DOE", "ROE", "LEE", "KIM", "RAY", "FOX", "COX", "MAY", "ASH", "OAK")
            for b in ("", "N", "L", "S", "T", "R", "D", "M", "K", "X")]
START = date(2015, 1, 1)
_BATCH = 10_000


def study_date(study: int) -> str:
    return (START + timedelta(days=study // 10)).strftime("%Y%m%d")


def fill_index(engine: Engine, n_studies: int, per_study: int = 10) -> None:
    now = datetime.now(timezone.utc)
    header = json.dumps({"00080070": {"vr": "LO", "Value": ["SYNTHETIC"]}})
    patient_rows = ({"pk": p + 1, "patient_id": f"PID{p:07d}", "patient_name": f"{SURNAMES[p % 100]}^P{p}",
                     "patient_name_upper": f"{SURNAMES[p % 100]}^P{p}", "birth_date": "19700101", "sex": "O",
                     "num_studies": 2, "num_series": 2, "num_instances": 2 * per_study, "updated_at": now}
                    for p in range((n_studies + 1) // 2))
    study_rows = ({"pk": s + 1, "study_uid": f"2.25.{s + 1}", "patient_pk": s // 2 + 1,
                   "study_date": study_date(s), "study_time": "101500", "accession_number": f"ACC{s:07d}",
                   "study_id": str(s), "description": "Synthetic", "modalities": "CT",
                   "sop_classes": "1.2.840.10008.5.1.4.1.1.2", "num_series": 1, "num_instances": per_study,
                   "size_bytes": 1000 * per_study, "created_at": now, "updated_at": now}
                  for s in range(n_studies))
    series_rows = ({"pk": s + 1, "series_uid": f"2.25.{s + 1}.1", "study_pk": s + 1, "modality": "CT",
                    "series_number": "1", "num_instances": per_study, "updated_at": now} for s in range(n_studies))
    instance_rows = ({"sop_uid": f"2.25.{s + 1}.1.{i}", "series_pk": s + 1,
                      "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2", "instance_number": i,
                      "transfer_syntax": "1.2.840.10008.1.2.1", "path": f"none/{s}/{i}.dcm", "size_bytes": 1000,
                      "received_at": now, "header_json": header}
                     for s in range(n_studies) for i in range(per_study))
    load = _copy if engine.dialect.name == "postgresql" else _insert
    with engine.begin() as conn:
        for table, rows in ((patients, patient_rows), (studies, study_rows), (series, series_rows),
                            (instances, instance_rows)):
            load(conn, table, rows)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            for table in (patients, studies, series, instances):  # explicit pks: move the sequences on
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'pk'), "
                                  f"(SELECT coalesce(max(pk), 1) FROM {table.name}))"))
                conn.execute(text(f"ANALYZE {table.name}"))


def _insert(conn, table: Table, rows: Iterator[dict]) -> None:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == _BATCH:
            conn.execute(insert(table), batch)
            batch = []
    if batch:
        conn.execute(insert(table), batch)


def _copy(conn, table: Table, rows: Iterator[dict]) -> None:
    first = next(rows, None)
    if first is None:
        return
    defaults = {c.name: c.default.arg for c in table.columns  # Python-side defaults COPY would not apply
                if c.name not in first and c.default is not None and c.default.is_scalar}
    given = list(first)
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"COPY {table.name} ({', '.join([*given, *defaults])}) FROM STDIN") as copy:
        for row in itertools.chain([first], rows):
            copy.write_row([row[c] for c in given] + list(defaults.values()))
