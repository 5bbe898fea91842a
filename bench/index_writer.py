"""Index writer benchmark: the cost of `IndexWriter.write` for one instance per transaction.

Writes `--writes` single-record groups (the instances of one CT series, as one association sends
them) through `IndexWriter.write` into a fresh index, from one thread, and prints microseconds
per write: wall clock (commit fsync included) and the CPU time of the writing thread (what the
statements and the transaction set-up cost; the fsync waits are not CPU).  Not part of the test
suite: this measures, it does not assert.

    .venv/bin/python bench/index_writer.py [--writes 2000] [--database postgresql://...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pacsd.index.engine import open_index
from pacsd.index.writer import IndexWriter, InstanceRecord


def series_instance(number: int) -> InstanceRecord:
    return InstanceRecord(
        sop_uid=f"1.2.826.0.1.3680043.9.1.{number}", sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax="1.2.840.10008.1.2.1", path=f"study/series/{number}.dcm", size_bytes=8900,
        checksum=f"{number:064x}", header_json='{"00080060": {"vr": "CS", "Value": ["CT"]}}',
        patient={"patient_id": "BENCH", "patient_name": "BENCH^INDEX", "birth_date": "", "sex": ""},
        study={"study_uid": "1.2.826.0.1.3680043.9.1"},
        series={"series_uid": "1.2.826.0.1.3680043.9.1.1", "modality": "CT"},
        instance_number=number, calling_aet="STORESCU",
    )


def measure(target: str, writes: int) -> tuple[float, float]:
    """(wall µs, thread CPU µs) per write, the first write (creating the study) left out."""
    engine = open_index(target)
    writer = IndexWriter(engine)
    writer.write(series_instance(0), "keep")
    wall, cpu = time.perf_counter(), time.thread_time()
    for number in range(1, writes + 1):
        writer.write(series_instance(number), "keep")
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    writer.close()
    engine.dispose()
    return wall / writes * 1e6, cpu / writes * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--database", default=None, help="PostgreSQL URL of an empty database; default: SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        target = args.database or str(Path(folder) / "index.sqlite")
        wall, cpu = measure(target, args.writes)
    print(f"{args.writes} writes: {wall:.0f} µs wall, {cpu:.0f} µs CPU of the writing thread per write")


if __name__ == "__main__":
    main()
