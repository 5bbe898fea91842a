"""Ingest while end-of-study work runs: does a backlog of scan sheets slow receiving down?

For each pacsd variant (default settings: several processes, end-of-study work in its own
process at lower priority; `workers: 1`: everything in one process):

1. idle: a fresh server takes 2,000 CT 64x64 images over 4 storescu associations;
2. backlog: a fresh server first takes 500 studies of 2 images each, waits until they are
   stable (`stable_after: 2`), so 500 scan sheets are waiting to be written, and then takes the
   same 2,000 images while it writes them.

Printed: instances/s of both, their ratio (target >= 0.8), the server's CPU ms per instance,
and how many sheets were written during the measured send.  Interleaved, medians of --repeat.

    make bench-backlog                     # or: .venv/bin/python bench/backlog.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import synthetic  # noqa: E402
from ingest import BENCH_DIR, Pacsd, enter_private_netns, free_port, send_all, stop_group, wait_ready  # noqa: E402
from procstats import GroupMeter  # noqa: E402
from tests.studies import write_study  # noqa: E402

STABLE_AFTER = 2.0


class BacklogPacsd(Pacsd):
    """pacsd with a short stable_after, so studies turn stable (and get sheets) during a run."""

    def command(self, work: Path, port: int) -> list[str]:
        command = super().command(work, port)
        config = work / "pacsd.yaml"
        settings = json.loads(config.read_text())
        settings["stable_after"] = STABLE_AFTER
        config.write_text(json.dumps(settings))
        return command


def backlog_studies(folder: Path, count: int) -> list[Path]:
    marker = folder / f"done-{count}"
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        print(f"generating {count} studies of 2 images in {folder}", flush=True)
        for n in range(count):
            write_study(folder / f"{n:04d}", series=1, per_series=2, PatientName=f"BACKLOG^{n}",
                        PatientID=f"BL{n:04d}")
        marker.touch()
    return sorted(folder.glob("*/*.dcm"))


def sheets_written(storage: Path) -> int:
    return sum(1 for _ in storage.rglob("ScanSheet.pdf"))


def run(server: BacklogPacsd, images: list[Path], backlog: list[Path], work_root: Path) -> dict:
    r = ingest_after_backlog(server, images, backlog, work_root / f"{server.name}-{'backlog' if backlog else 'idle'}",
                             STABLE_AFTER + 2, sheets_written)  # every backlog study is stable: its sheet is due
    return {"rate": r["rate"], "cpu_ms": r["cpu_ms"], "sheets_during": r["done_during"],
            "sheets_before": r["done_before"]}


def ingest_after_backlog(server, images: list[Path], backlog: list[Path], work: Path, settle: float,
                         work_done: Callable[[Path], int]) -> dict:
    """A fresh server takes `backlog` (4 associations), `settle` seconds pass, then the measured
    send of `images`: its instances/s, server CPU ms per instance, and `work_done(storage folder)`
    (sheets written, files compressed...) before and during the measured send."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.sync()
    port = free_port()
    proc = server.start(work, port, nodelay=True)
    try:
        why = wait_ready(proc, port, server.aet)
        if why:
            raise RuntimeError(f"{server.name} did not start: {why}")
        done_before = 0
        if backlog:
            send_all(port, server.aet, backlog, 4, True, work, 600)
            time.sleep(settle)
            done_before = work_done(work / "data")
        meter = GroupMeter(os.getpgid(proc.pid)).start()
        seconds, failed = send_all(port, server.aet, images, 4, True, work, 600)
        usage = meter.stop()
        if failed:
            raise RuntimeError(f"{failed} storescu clients failed")
        return {"rate": len(images) / seconds, "cpu_ms": usage.cpu_seconds * 1000 / len(images),
                "done_during": work_done(work / "data") - done_before, "done_before": done_before}
    finally:
        stop_group(proc)
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--studies", type=int, default=500)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", default="auto,1")
    parser.add_argument("--work-dir", type=Path, default=BENCH_DIR / ".work")
    args = parser.parse_args()
    enter_private_netns()
    images = synthetic.ensure_images(BENCH_DIR / ".cache", 64, args.images)
    backlog = backlog_studies(BENCH_DIR / ".cache" / "backlog", args.studies)
    servers = [BacklogPacsd(w.strip()) for w in args.workers.split(",")]
    results: dict[tuple[str, str], list[dict]] = {}
    for turn in range(args.repeat):
        for server in servers:
            for label, before in (("idle", []), ("backlog", backlog)):
                r = run(server, images, before, args.work_dir)
                results.setdefault((server.name, label), []).append(r)
                print(f"{server.name:8} {label:7} run {turn + 1}: {r['rate']:6.0f} inst/s  {r['cpu_ms']:.2f} cpu ms/inst"
                      f"  sheets waiting {args.studies - r['sheets_before'] if before else 0:3}, "
                      f"written during the send {r['sheets_during']}", flush=True)
    print(f"\n{'server':8}  {'idle inst/s':>11}  {'backlog inst/s':>14}  {'backlog/idle':>12}  {'cpu ms idle':>11}  "
          f"{'cpu ms backlog':>14}  {'sheets during':>13}")
    for server in servers:
        idle = results[(server.name, "idle")]
        busy = results[(server.name, "backlog")]
        rate_idle = statistics.median(r["rate"] for r in idle)
        rate_busy = statistics.median(r["rate"] for r in busy)
        print(f"{server.name:8}  {rate_idle:11.0f}  {rate_busy:14.0f}  {rate_busy / rate_idle:11.2f}x  "
              f"{statistics.median(r['cpu_ms'] for r in idle):11.2f}  {statistics.median(r['cpu_ms'] for r in busy):14.2f}"
              f"  {statistics.median(r['sheets_during'] for r in busy):13.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
