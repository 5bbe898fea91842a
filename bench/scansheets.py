"""Scan-sheet benchmark: how many scan sheets (PDF + CSV) pacsd writes per second on one core.

Generates studies of 2 series x 10 CT images (bench/synthetic.py's CT headers) with Latin,
Cyrillic and Japanese patient names, imports them into a fresh archive (no background work),
pins the process to one CPU, then times `ScanSheetWriter.write` for every study, name set by name
set.  Every sheet is checked: pdftotext shows the patient's name, and pdfimages lists one
thumbnail per series; the first sheet of each set is rendered with pdftoppm and its thumbnail
area must not be blank.  Not part of the test suite: this measures, it does not assert.

    .venv/bin/python bench/scansheets.py [--studies 40] [--size 512] [--names latin,cyrillic,japanese] [--no-fsync]
        [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
SERIES, IMAGES = 2, 10

# (name set, character set, patient name): one study per index gets "<name><index>".
NAME_SETS = [
    ("latin", "ISO_IR 100", "Müller^Jürgen"),
    ("cyrillic", "ISO_IR 144", "Иванов^Пётр"),
    ("japanese", "ISO_IR 192", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
]


@dataclass
class SetResult:
    """One name set's sheets; the rates leave out the first sheet, which pays for what a process
    does once (reading the fonts it needs), shown apart."""

    name_set: str
    sheets: int
    seconds: float
    cpu_seconds: float  # this process's CPU time: what the figure would be on an idle core
    first_sheet_seconds: float
    first_sheet_cpu_seconds: float

    @property
    def per_second(self) -> float:
        return (self.sheets - 1) / (self.seconds - self.first_sheet_seconds)

    @property
    def per_cpu_second(self) -> float:
        return (self.sheets - 1) / (self.cpu_seconds - self.first_sheet_cpu_seconds)


def write_studies(folder: Path, size: int, studies: int, name_sets: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Files of `studies` studies per name set under `folder`; {set: [(study UID, name)]}."""
    base = synthetic._phantom(size)
    made: dict[str, list[tuple[str, str]]] = {}
    for set_number, (name_set, charset, name) in enumerate(NAME_SETS):
        if name_set not in name_sets:
            continue
        made[name_set] = []
        for study in range(studies):
            study_uid = synthetic._uid("sheets", size, name_set, "study", study)
            patient_name = f"{name}{study}"
            for series in range(SERIES):
                series_uid = synthetic._uid("sheets", size, name_set, "series", study, series)
                for image in range(IMAGES):
                    index = (set_number * studies + study) * SERIES * IMAGES + series * IMAGES + image
                    ds = synthetic.make_ct(size, image, base, np.random.default_rng(index))
                    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = synthetic._uid(
                        "sheets", size, name_set, "instance", study, series, image)
                    ds.SpecificCharacterSet = charset
                    ds.PatientName, ds.PatientID = patient_name, f"{name_set.upper()}-{study:04d}"
                    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
                    ds.SeriesNumber, ds.SeriesDescription = series + 1, f"AXIAL {series + 1}"
                    ds.AccessionNumber = f"{name_set[:3].upper()}{study:05d}"
                    ds.save_as(folder / f"{name_set}-{study:04d}-{series}-{image:02d}.dcm", enforce_file_format=True)
            made[name_set].append((study_uid, patient_name))
    return made


def check_sheet(pdf: Path, patient_name: str, render_to: Path | None) -> str | None:
    """What is wrong with a written sheet (None: nothing)."""
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    if patient_name not in text:
        return f"{pdf}: patient name {patient_name!r} not in its text"
    listing = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    images = [line for line in listing.splitlines()[2:] if line.split()[2:3] == ["image"]]
    if len(images) != SERIES:
        return f"{pdf}: {len(images)} thumbnails, expected {SERIES}"
    if render_to is not None:
        from PIL import Image

        subprocess.run(["pdftoppm", "-r", "60", "-png", "-f", "1", "-l", "1", "-singlefile", str(pdf),
                        str(render_to)], check=True)
        page = Image.open(render_to.with_suffix(".png")).convert("L")
        area = page.crop((0, int(page.height * 0.35), int(page.width * 0.25), int(page.height * 0.65)))
        low, high = area.getextrema()
        if high - low < 100:
            return f"{pdf}: the thumbnail area of the rendered page is blank"
    return None


def run(studies: int, size: int, work: Path, name_sets: list[str], fsync: bool) -> tuple[list[SetResult], list[str]]:
    from pacsd.config import Settings
    from pacsd.services.archive import Archive
    from pacsd.services.importer import import_paths

    settings = Settings.model_validate({
        "storage": {"directory": str(work / "storage"), "fsync": fsync},
        "database": {"path": str(work / "index.sqlite")},
        "logging": {"directory": str(work / "logs")},
    })
    source = work / "source"
    source.mkdir()
    made = write_studies(source, size, studies, name_sets)
    archive = Archive(settings, node="bench")
    try:
        report = import_paths(archive, [source])
        if report.failed:
            raise SystemExit(f"import failed: {report.failed[:3]}")
        results, problems = [], []
        for name_set, members in made.items():
            pdfs = []
            started, cpu_started = time.perf_counter(), time.process_time()
            first = first_cpu = 0.0
            for study_uid, _ in members:
                pdf, _csv = archive.scan_sheets.write(study_uid)
                if not pdfs:
                    first, first_cpu = time.perf_counter() - started, time.process_time() - cpu_started
                pdfs.append(pdf)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            results.append(SetResult(name_set, len(members), elapsed, cpu, first, first_cpu))
            for index, (pdf, (_, patient_name)) in enumerate(zip(pdfs, members)):
                problem = check_sheet(pdf, patient_name, work / f"page-{name_set}" if index == 0 else None)
                if problem:
                    problems.append(problem)
        return results, problems
    finally:
        archive.close()


def git_revision() -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=BENCH_DIR)
    return result.stdout.strip() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=40, help="studies per name set (default 40)")
    parser.add_argument("--size", type=int, default=512, help="image rows and columns (default 512)")
    parser.add_argument("--names", default=",".join(name for name, _, _ in NAME_SETS),
                        help="name sets to run, comma-separated (default: all)")
    parser.add_argument("--no-fsync", dest="fsync", action="store_false",
                        help="storage.fsync off (default on, as pacsd runs): CPU alone, without the disk's waits")
    parser.add_argument("--cpu", type=int, default=None, help="the CPU to pin to (default: the last one)")
    parser.add_argument("--json", type=Path, default=None, help="where to write the results")
    args = parser.parse_args()
    for tool in ("pdftotext", "pdfimages", "pdftoppm"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: install poppler-utils")
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    with tempfile.TemporaryDirectory(prefix="pacsd-bench-sheets-") as temp:
        results, problems = run(args.studies, args.size, Path(temp), args.names.split(","), args.fsync)
    steady_sheets = sum(r.sheets - 1 for r in results)
    steady_seconds = sum(r.seconds - r.first_sheet_seconds for r in results)
    steady_cpu = sum(r.cpu_seconds - r.first_sheet_cpu_seconds for r in results)
    print(f"scan sheets, {SERIES} series x {IMAGES} CT images {args.size}x{args.size}, one core (CPU {cpu}), "
          f"fsync {'on' if args.fsync else 'off'}, pacsd {git_revision()}; rates without each set's first sheet")
    print(f"{'names':<10} {'sheets':>6} {'seconds':>8} {'sheets/s':>9} {'CPU s':>7} {'sheets/CPU s':>13} "
          f"{'first sheet s':>14}")
    for r in results:
        print(f"{r.name_set:<10} {r.sheets:>6} {r.seconds:>8.2f} {r.per_second:>9.1f} {r.cpu_seconds:>7.2f} "
              f"{r.per_cpu_second:>13.1f} {r.first_sheet_seconds:>14.3f}")
    print(f"{'all':<10} {steady_sheets + len(results):>6} {'':>8} {steady_sheets / steady_seconds:>9.1f} {'':>7} "
          f"{steady_sheets / steady_cpu:>13.1f}")
    for problem in problems:
        print("PROBLEM:", problem)
    out = args.json or BENCH_DIR / "results" / f"scansheets-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "revision": git_revision(), "machine": platform.node(), "size": args.size, "cpu": cpu,
        "series": SERIES, "images_per_series": IMAGES,
        "results": [{**asdict(r), "per_second": r.per_second, "per_cpu_second": r.per_cpu_second} for r in results],
        "sheets_per_second": steady_sheets / steady_seconds, "sheets_per_cpu_second": steady_sheets / steady_cpu,
        "fsync": args.fsync, "problems": problems,
    }, indent=2))
    print(f"results: {out}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
