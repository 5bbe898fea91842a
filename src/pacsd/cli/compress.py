"""`pacsd compress`: compress the instances already archived that `compression.rules` name, losslessly,
as the background job of `pacsd serve` does (safe beside a running server: the same steps, the same
checks); `--dry-run` lists them and what they would become, `--skipped` what was given up and why.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pacsd.cli.archive_commands import _progress, command_archive, print_problems
from pacsd.cli.options import archive_options
from pacsd.index.compression import MAX_ATTEMPTS, Outcome, outcomes


@click.command()
@archive_options
@click.option("--dry-run", is_flag=True, help="List what would be compressed, in which syntax; change nothing.")
@click.option("--limit", type=click.IntRange(1), help="Look at no more than this many instances.")
@click.option("--skipped", is_flag=True, help="List the instances compression gave up on (or failed at) and why; "
                                             "compress nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print every instance compressed, skipped or failed as JSON.")
def compress(config_path, dry_run, limit, skipped, as_json, **flags) -> None:
    """Compress archived uncompressed images losslessly by the config's compression.rules (JPEG-LS,
    JPEG 2000 or RLE Lossless).  Exit code 1 when an instance failed (it is tried again later)."""
    archive = command_archive(config_path, flags, existing=True)
    if skipped:
        try:
            _print_skipped(outcomes(archive.engine, limit or 10_000), as_json)
        finally:
            archive.close()
        return
    try:
        with _progress() as progress:
            task = progress.add_task("compressing" if not dry_run else "looking", total=None)
            report = archive.compressor.run(limit=limit, dry_run=dry_run,
                                            progress=lambda _candidate: progress.advance(task))
    finally:
        archive.close()
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    elif dry_run:
        for uid, syntax, size in report.planned:
            click.echo(f"{uid}\t{syntax}\t{size}")
        total = sum(size for _, _, size in report.planned)
        click.echo(f"{len(report.planned)} instance(s) would be compressed ({total / 1e6:.1f} MB now)")
    else:
        print_problems("skipped", [(Path(uid), why) for uid, why in report.skipped])
        print_problems("failed (tried again later)", [(Path(uid), error) for uid, error in report.failed])
        click.echo(f"compressed {report.compressed} instance(s): {report.bytes_before / 1e6:.1f} MB -> "
                   f"{report.bytes_after / 1e6:.1f} MB, {report.bytes_saved / 1e6:.1f} MB saved; "
                   f"skipped {len(report.skipped)}, failed {len(report.failed)}")
    sys.exit(1 if report.failed else 0)


def _print_skipped(found: list[Outcome], as_json: bool) -> None:
    rows = [{"sop_instance_uid": o.sop_uid, "path": o.path, "why": o.reason, "attempts": o.attempts,
             "for_good": o.permanent or o.attempts >= MAX_ATTEMPTS, "at": o.at.isoformat()} for o in found]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "skipped" if row["for_good"] else f"failed {row['attempts']} time(s), tried again"
        click.echo(f"{row['sop_instance_uid']}\t{state}\t{row['why']}")
    click.echo(f"{len(rows)} instance(s) not compressed")


COMMANDS = [compress]
