"""Forwarding throughput beside ingest throughput, and ingest with a 100,000-item queue backlog.

For CT 64x64 and CT 512x512 (bench/synthetic.py, cached), against a real `pacsd serve` (default
settings) with one route to a DCMTK storescp (one association per destination, pacsd's default):

1. together: storescp up; one storescu association sends N images; ingest rate = N / send time,
   forwarding rate = N / (send start -> last image at storescp); ratio forward/ingest (target >= 1.0:
   a router never falls behind);
2. drain: storescp down while the N images arrive, then started: forwarding alone = N / drain time;
3. backlog (64x64): ingest of N images with every image routed, on an empty queue and on one
   holding 100,000 pending items (for a destination that is down): ingest rate of each and ratio.

    make bench-forwarding                 # or: .venv/bin/python bench/forwarding.py --count-small 1000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import synthetic  # noqa: E402
from ingest import (  # noqa: E402
    BENCH_DIR,
    HOST,
    REPO_DIR,
    count_dicom_files,
    free_port,
    send_all,
    start_group,
    stop_group,
    wait_ready,
)

BACKLOG = 100_000
TIMEOUT = 900.0


class Router:
    """A `pacsd serve` routing everything to DEST (a storescp at `dest_port`)."""

    def __init__(self, work: Path, dest_port: int) -> None:
        self.work, self.port = work, free_port()
        self.data = work / "pacsd"
        self.data.mkdir(parents=True)
        config = work / "pacsd.yaml"
        config.write_text(json.dumps({
            "http": {"enabled": False},
            "known_aes": [{"ae_title": "DEST", "host": HOST, "port": dest_port}],
            "routes": [{"name": "all", "to": ["DEST"]}],
            "forwarding": {"poll_interval": 0.2, "retry_first_delay": 0.5, "retry_max_delay": 2},
        }))
        self.command = [str(REPO_DIR / ".venv" / "bin" / "pacsd"), "serve", "--config", str(config), "--host", HOST,
                        "--port", str(self.port), "--storage-dir", str(self.data), "--index-db",
                        str(self.data / "index.sqlite"), "--log-dir", str(self.data / "logs")]
        self.proc = None

    def start(self) -> "Router":
        self.proc = start_group(self.command, self.work / "pacsd.out", {**os.environ})
        problem = wait_ready(self.proc, self.port, "PACSD")
        if problem:
            raise SystemExit(f"pacsd did not start: {problem}")
        return self

    def stop(self) -> None:
        stop_group(self.proc)

    def unanswered(self) -> int:
        """C-STORE responses pynetdicom dropped as 'unexpected' (a race in its reactor), each
        waited for until forwarding.timeout and the instance sent again."""
        return (self.data / "logs" / "pacsd.log").read_text().count("DIMSE timeout reached")

    def add_backlog(self, count: int) -> None:
        """`count` pending items for a destination that is down, not due for an hour."""
        from pacsd.index.engine import open_index
        from pacsd.index.forward_queue import add

        engine = open_index(self.data / "index.sqlite")
        now = datetime.now(timezone.utc)
        later = now + timedelta(hours=1)
        rows = [{"route": "old", "destination": "DOWN", "sop_uid": f"2.25.{i}", "study_uid": f"2.25.{i // 100}",
                 "state": "pending", "attempts": 1, "enqueued_at": now, "next_attempt_at": later,
                 "transfer_syntax": "", "commitment": False, "delete_after": False, "last_error": "", "claim": "",
                 "claimed_by": ""} for i in range(count)]
        for start in range(0, count, 10_000):
            add(engine, rows[start:start + 10_000])
        engine.dispose()


class Destination:
    def __init__(self, work: Path) -> None:
        self.work, self.port, self.out = work, free_port(), work / "dest"
        self.out.mkdir(parents=True)
        self.proc = None

    def start(self) -> "Destination":
        self.proc = start_group(["storescp", "+B", "-dhl", "-aet", "DEST", "-od", str(self.out), str(self.port)],
                                self.work / "storescp.log", {**os.environ})
        problem = wait_ready(self.proc, self.port, "DEST")
        if problem:
            raise SystemExit(f"storescp did not start: {problem}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)

    def wait_for(self, count: int) -> float:
        deadline = time.monotonic() + TIMEOUT
        while count_dicom_files(self.out) < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {count_dicom_files(self.out)} of {count} images forwarded in {TIMEOUT} s")
            time.sleep(0.02)
        return time.perf_counter()


def together(files: list[Path], work: Path) -> dict:
    dest = Destination(work).start()
    router = Router(work, dest.port).start()
    try:
        t0 = time.perf_counter()
        elapsed, failed = send_all(router.port, "PACSD", files, 1, True, work, TIMEOUT)
        forwarded_at = dest.wait_for(len(files))
    finally:
        router.stop()
        dest.stop()
    ingest, forward = len(files) / elapsed, len(files) / (forwarded_at - t0)
    return {"ingest_per_s": round(ingest, 1), "forward_per_s": round(forward, 1),
            "ratio": round(forward / ingest, 2), "failed_clients": failed,
            "responses_waited_for_in_vain": router.unanswered()}


def drain(files: list[Path], work: Path) -> dict:
    dest = Destination(work)
    router = Router(work, dest.port).start()
    try:
        send_all(router.port, "PACSD", files, 1, True, work, TIMEOUT)
        time.sleep(1.0)  # the first attempts fail: the items wait for their retry
        dest.start()
        t0 = time.perf_counter()
        done = dest.wait_for(len(files))
    finally:
        router.stop()
        dest.stop()
    return {"forward_alone_per_s": round(len(files) / (done - t0), 1),
            "drain_responses_waited_for_in_vain": router.unanswered()}


def ingest_with_backlog(files: list[Path], work: Path, backlog: int) -> float:
    router = Router(work, free_port())  # the destination is down: every image adds a pending item
    if backlog:
        router.add_backlog(backlog)
    router.start()
    try:
        elapsed, _ = send_all(router.port, "PACSD", files, 1, True, work, TIMEOUT)
    finally:
        router.stop()
    return len(files) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count-small", type=int, default=2000, help="CT 64x64 images")
    parser.add_argument("--count-large", type=int, default=500, help="CT 512x512 images")
    parser.add_argument("--backlog", type=int, default=BACKLOG)
    parser.add_argument("--cache-dir", type=Path, default=BENCH_DIR / ".cache")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    if shutil.which("storescp") is None:
        raise SystemExit("DCMTK storescp is missing: scripts/install-system-deps.sh bench installs it")
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="pacsd-bench-forwarding-") as tmp:
        root = Path(tmp)
        for size, count in ((64, args.count_small), (512, args.count_large)):
            files = synthetic.ensure_images(args.cache_dir, size, count)
            figures = together(files, root / f"together-{size}")
            print(f"CT {size}x{size} x{count}: ingest {figures['ingest_per_s']}/s, forwarding beside it "
                  f"{figures['forward_per_s']}/s (x{figures['ratio']} of ingest; "
                  f"{figures['responses_waited_for_in_vain']} responses waited for in vain)", flush=True)
            figures.update(drain(files, root / f"drain-{size}"))
            print(f"CT {size}x{size} x{count}: forwarding alone {figures['forward_alone_per_s']}/s "
                  f"({figures['drain_responses_waited_for_in_vain']} responses waited for in vain)", flush=True)
            results[f"CT {size}x{size}"] = figures
        files = synthetic.ensure_images(args.cache_dir, 64, args.count_small)
        empty = ingest_with_backlog(files, root / "backlog-none", 0)
        full = ingest_with_backlog(files, root / "backlog-full", args.backlog)
        results["backlog"] = {"ingest_empty_queue_per_s": round(empty, 1),
                              f"ingest_{args.backlog}_pending_per_s": round(full, 1), "ratio": round(full / empty, 2)}
        print(f"ingest CT 64x64 x{len(files)}, every image routed: empty queue {empty:.1f}/s, "
              f"{args.backlog:,} pending items {full:.1f}/s (x{full / empty:.2f})", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
