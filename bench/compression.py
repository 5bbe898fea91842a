"""Compression benchmark: how fast pacsd compresses CT 512x512 losslessly, and what compressing in
the background costs ingest.

1. throughput: synthetic CT 512x512 images (bench/synthetic.py) are archived, then compressed by
   the `Compressor` that `pacsd compress` and the background job run (read, encode, write, fsync,
   decode and compare, switch the index row, remove the original), per syntax: images/s and MB
   saved per CPU second of this process.
2. ingest: a fresh `pacsd serve` takes a backlog of --backlog CT 512x512 images, then the measured
   --images others over 4 storescu associations, with compression on (`after: 0`: the backlog is
   being compressed by the background process while the measured images arrive) or off; turns are
   interleaved, medians of --repeat.  Target: with / without >= 0.8.

    make bench-compression        # or: .venv/bin/python bench/compression.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import synthetic  # noqa: E402
from backlog import ingest_after_backlog  # noqa: E402
from ingest import BENCH_DIR, Pacsd, enter_private_netns  # noqa: E402
from pacsd.config import load_settings  # noqa: E402
from pacsd.services.archive import Archive  # noqa: E402
from pacsd.services.ingest import Source  # noqa: E402

SYNTAXES = ("jpeg-ls", "jpeg2000", "rle")


def compression_throughput(images: list[Path], syntax: str, work: Path) -> dict:
    """Archive `images` (not timed), then compress them all: rates of the compression alone."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    config = work / "pacsd.yaml"
    config.write_text(json.dumps({"storage": {"directory": str(work / "storage")},
                                  "database": {"path": str(work / "index.sqlite")},
                                  "logging": {"directory": str(work / "logs")},
                                  "compression": {"rules": [{"syntax": syntax}], "after": 0}}))
    archive = Archive(load_settings(config), node="bench")
    try:
        for image in images:
            temp = archive.blobs.new_temp_path()
            shutil.copyfile(image, temp)
            if not archive.ingest.store(temp, Source("import")).ok:
                raise RuntimeError(f"{image} was not archived")
        os.sync()
        wall, cpu = time.perf_counter(), time.process_time()
        report = archive.compressor.run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        archive.close()
        shutil.rmtree(work, ignore_errors=True)
    if report.compressed != len(images):
        raise RuntimeError(f"{syntax}: {report.compressed} of {len(images)} compressed: {report.skipped[:3]} {report.failed[:3]}")
    return {"images_per_s": len(images) / wall, "mb_saved_per_cpu_s": report.bytes_saved / 1e6 / cpu,
            "cpu_ms_per_image": cpu * 1000 / len(images), "ratio": report.bytes_after / report.bytes_before}


class CompressingPacsd(Pacsd):
    """pacsd (default workers) with background compression on or off."""

    def __init__(self, compress: bool) -> None:
        super().__init__("auto")
        self.compress = compress
        self.name = "compressing" if compress else "plain"

    def command(self, work: Path, port: int) -> list[str]:
        command = super().command(work, port)
        config = work / "pacsd.yaml"
        settings = json.loads(config.read_text())
        if self.compress:
            settings["compression"] = {"enabled": True, "after": 0, "idle_wait": 1,
                                       "rules": [{"syntax": "jpeg-ls"}]}
        config.write_text(json.dumps(settings))
        return command


def compressed_files(storage: Path) -> int:
    return sum(1 for _ in storage.rglob("*.jls.dcm"))


def ingest_run(server: CompressingPacsd, images: list[Path], backlog: list[Path], work_root: Path) -> dict:
    return ingest_after_backlog(server, images, backlog, work_root / f"ingest-{server.name}", 0, compressed_files)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compress-images", type=int, default=200, help="images compressed per syntax")
    parser.add_argument("--images", type=int, default=1000, help="images of the measured send")
    parser.add_argument("--backlog", type=int, default=400, help="images received (to compress) before it")
    parser.add_argument("--work-dir", type=Path, default=BENCH_DIR / ".work")
    parser.add_argument("--parts", default="throughput,ingest", help="which parts to run")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    enter_private_netns()
    cts = synthetic.ensure_images(BENCH_DIR / ".cache", 512, args.images + args.backlog)
    measured, backlog = cts[:args.images], cts[args.images:]
    results: dict = {}
    if "throughput" in args.parts:
        results["throughput"] = throughput(cts[:args.compress_images], args)
    if "ingest" in args.parts:
        results["ingest"] = ingest(measured, backlog, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def throughput(images: list[Path], args: argparse.Namespace) -> dict:
    """The throughput part: medians per syntax of --repeat runs."""
    results = {}
    print(f"compression of {len(images)} CT 512x512 (one process, one thread)")
    for syntax in SYNTAXES:
        runs = [compression_throughput(images, syntax, args.work_dir / "throughput") for _ in range(args.repeat)]
        median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        results[syntax] = median
        print(f"  {syntax:9} {median['images_per_s']:6.1f} images/s  {median['mb_saved_per_cpu_s']:6.1f} MB saved "
              f"per CPU s  {median['cpu_ms_per_image']:6.1f} CPU ms/image  size {median['ratio']:.0%} of the original",
              flush=True)
    return results


def ingest(measured: list[Path], backlog: list[Path], args: argparse.Namespace) -> dict:
    """The ingest part: medians per server of interleaved runs, and their ratio."""
    results: dict = {}
    print(f"\ningest of {args.images} CT 512x512 over 4 associations after a backlog of {args.backlog}")
    servers = [CompressingPacsd(False), CompressingPacsd(True)]
    runs: dict[str, list[dict]] = {}
    for turn in range(args.repeat):
        for server in servers:  # interleaved: the machine's state drifts alike for both
            r = ingest_run(server, measured, backlog, args.work_dir)
            runs.setdefault(server.name, []).append(r)
            print(f"  {server.name:11} run {turn + 1}: {r['rate']:6.0f} inst/s  {r['cpu_ms']:.2f} cpu ms/inst  "
                  f"compressed before {r['done_before']}, during the send {r['done_during']}", flush=True)
    for name, rs in runs.items():
        results[name] = {key: statistics.median(r[key] for r in rs) for key in rs[0]}
    plain, compressing = results["plain"], results["compressing"]
    ratio = compressing["rate"] / plain["rate"]
    results["ratio"] = ratio
    print(f"\n  without compression {plain['rate']:6.0f} inst/s, while compressing {compressing['rate']:6.0f} inst/s"
          f" ({compressing['done_during']:.0f} compressed during the send): {ratio:.2f}x (target >= 0.8)")
    return results


if __name__ == "__main__":
    sys.exit(main())
