"""Client and maintenance commands: echo, send, import, stats, export, check.

They print a progress bar and a summary; `send` and `import` exit 1 when any file failed.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from pacsd.cli.deid import burned_in_option, profile_option
from pacsd.cli.options import archive_options, build_settings, client_tls, peer_ae_options, tls_client_options

console = Console(stderr=True)


def command_archive(config_path, flags: dict, existing: bool = False):
    """The archive for a one-off command (import, export): its incoming files carry this process's
    name, so a server on the same storage keeps its own.  `existing`: a command that reads the
    archive refuses (PacsError) to run on an index that is not there rather than create one."""
    from pacsd.index.engine import require_existing
    from pacsd.services.archive import Archive

    settings = build_settings(config_path, **flags)
    if existing:
        require_existing(settings.database.target)
    node = f"{socket.gethostname()}-{click.get_current_context().info_name}-{os.getpid()}"
    return Archive(settings, node=node)


def _progress() -> Progress:
    """A progress bar on a terminal; nothing when stderr is a file or a pipe (rich draws none there)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=console, transient=False, disable=not console.is_terminal)


def print_problems(title: str, problems: list[tuple[Path, str]], limit: int = 50) -> None:
    """A table in a terminal (long paths and reasons wrap, never cut); one `title: file: reason`
    line each when stderr is a file or a pipe."""
    if not problems:
        return
    if not console.is_terminal:
        for path, reason in problems:
            click.echo(f"{title}: {path}: {reason}", err=True)
        return
    table = Table(title=title, show_lines=False)
    table.add_column("file", overflow="fold")
    table.add_column("reason", overflow="fold")
    for path, reason in problems[:limit]:
        table.add_row(str(path), reason)
    console.print(table)
    if len(problems) > limit:
        console.print(f"... and {len(problems) - limit} more (all of them with --json, or with stderr to a file)")


@click.command()
@click.argument("host")
@click.argument("port", type=int)
@peer_ae_options
@tls_client_options
def echo(host, port, aec, aet, tls_ca, tls_cert, tls_key) -> None:
    """C-ECHO a DICOM peer: is it there and does it talk to us?"""
    from pacsd.net.scu import echo as send_echo

    status = send_echo(host, port, aec, aet, client_tls(tls_ca, tls_cert, tls_key))
    if status != 0:
        click.echo(f"C-ECHO to {aec}@{host}:{port} answered status 0x{status:04X}")
        sys.exit(1)
    click.echo(f"C-ECHO to {aec}@{host}:{port}: success")


@click.command()
@click.argument("host")
@click.argument("port", type=int)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@peer_ae_options
@click.option("--associations", default=1, show_default=True, type=click.IntRange(1, 32),
              help="Associations to use at once.")
@click.option("--json", "as_json", is_flag=True, help="Print every file sent, failed and skipped (with why) as JSON.")
@tls_client_options
def send(host, port, paths, aec, aet, associations, as_json, tls_ca, tls_cert, tls_key) -> None:
    """C-STORE files and folders (recursively) to a DICOM peer, unchanged."""
    from pacsd.net.client import NetDicomClient
    from pacsd.services.remote_nodes import Node

    node = Node(host, port, aec, aet, client_tls(tls_ca, tls_cert, tls_key))
    with _progress() as progress:
        task = progress.add_task(f"sending to {aec}", total=None)
        report = NetDicomClient().send(list(paths), node, associations,
                                       on_total=lambda total: progress.update(task, total=total),
                                       on_file=lambda: progress.advance(task))
    skipped = report.skipped
    if as_json:
        listed = {"sent": [str(path) for path in report.sent]}
        for what, problems in (("failed", report.failed), ("skipped", skipped)):
            listed[what] = [{"path": str(path), "reason": reason} for path, reason in problems]
        click.echo(json.dumps(listed, indent=1))
    else:
        print_problems("failed", report.failed)
        print_problems("skipped", skipped)
        click.echo(f"sent {len(report.sent)}, failed {len(report.failed)}, skipped {len(skipped)}")
    sys.exit(1 if report.failed else 0)


@click.command(name="import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@archive_options
def import_(paths, config_path, **flags) -> None:
    """Import files and folders from disk through the same path as received images.

    A folder holding a DICOMDIR is read through it: files it does not list are not imported
    (they are named in the report)."""
    from pacsd.services.importer import files_under, import_paths

    archive = command_archive(config_path, flags)
    try:
        with _progress() as progress:
            task = progress.add_task("importing", total=len(files_under(paths)))
            report = import_paths(archive, paths, on_file=lambda: progress.advance(task))
    finally:
        archive.close()
    print_problems("failed", report.failed)
    print_problems("not imported", [(path, "beside a DICOMDIR that does not list it; import it by name to add it")
                                     for path in report.not_listed])
    click.echo(f"stored {len(report.stored)}, duplicates {len(report.duplicates)}, failed {len(report.failed)}"
               + (f", not listed in the DICOMDIR {len(report.not_listed)}" if report.not_listed else ""))
    sys.exit(1 if report.failed else 0)


@click.command()
@archive_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def stats(config_path, as_json, **flags) -> None:
    """Counts of patients, studies, series, instances, bytes, and per modality."""
    from pacsd.index.engine import open_index, require_existing
    from pacsd.index.stats import archive_statistics, bytes_per_area

    settings = build_settings(config_path, **flags)
    require_existing(settings.database.target)
    engine = open_index(settings.database.target, settings.database.wal_mode, settings.database.auto_upgrade)
    try:
        figures = archive_statistics(engine)
        figures["areas"] = bytes_per_area(engine, settings.storage)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    table = Table(title="pacsd archive")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in ("patients", "studies", "series", "instances", "bytes"):
        table.add_row(key, f"{figures[key]:,}")
    for modality, counts in figures["modalities"].items():
        table.add_row(f"  {modality}", f"{counts['instances']:,} instances in {counts['series']:,} series")
    for area, size in figures["areas"].items():
        table.add_row(f"area {area}", f"{size:,} bytes")
    Console().print(table)


@click.command()
@click.option("--study", help="Study Instance UID to export.")
@click.option("--series", "series_uid", help="Series Instance UID to export.")
@click.option("--patient", help="Patient ID to export (all their studies).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Empty folder to write the File-set (DICOMDIR + files) into.")
@click.option("--zip", "zip_path", type=click.Path(dir_okay=False, path_type=Path), help="Also zip it here.")
@click.option("--deidentify", "deidentify", is_flag=True,
              help="De-identify every instance (PS3.15 profile; all or nothing) [deidentify settings].")
@profile_option
@burned_in_option
@archive_options
def export(study, series_uid, patient, out_dir, zip_path, deidentify, profile, burned_in, config_path,
           **flags) -> None:
    """Export a study, series or patient as a DICOM File-set with a DICOMDIR."""
    from pacsd.services.deidentify import site_profile
    from pacsd.services.export import export_fileset

    if sum(bool(x) for x in (study, series_uid, patient)) != 1:
        raise click.UsageError("give exactly one of --study, --series, --patient")
    if (profile or burned_in) and not deidentify:
        raise click.UsageError("--profile and --burned-in go with --deidentify")
    archive = command_archive(config_path, flags, existing=True)
    try:
        chosen = site_profile(archive.settings, profile, burned_in) if deidentify else None
        dicomdir, count = export_fileset(archive, out_dir, zip_path, deidentify=chosen, study=study,
                                         series_uid=series_uid, patient=patient)
    finally:
        archive.close()
    click.echo(f"exported {count} instances: {dicomdir}" + (f" (zipped to {zip_path})" if zip_path else ""))


@click.command()
@archive_options
@click.option("--checksums", is_flag=True,
              help="Also read every indexed file and compare its SHA-256 with the index (reads the whole archive).")
@click.option("--repair", is_flag=True,
              help="Index image files no row names (as `pacsd import` would) and remove them once indexed.")
@click.option("--grace", default=600, show_default=True, type=click.FloatRange(0),
              help="Seconds: files changed more recently are left alone (a running server may be storing them).")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def check(config_path, checksums, repair, grace, as_json, **flags) -> None:
    """Check that the storage folder and the index agree: indexed files that are missing or
    damaged, image files the index does not know.  Exit code 1 when anything is (still) wrong."""
    from pacsd.services.storage_check import check_storage

    archive = command_archive(config_path, flags, existing=True)
    try:
        report = check_storage(archive, checksums=checksums, repair=repair, grace=grace)
    finally:
        archive.close()
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        print_problems("missing: indexed, but not in the storage folder",
                        [(Path(p), "restore it from a backup") for p in report.missing])
        print_problems("damaged: content differs from what was stored",
                        [(Path(p), "restore it from a backup") for p in report.damaged])
        if repair:
            print_problems("repaired", [(Path(p), how) for p, how in report.repaired])
            print_problems("not repaired", [(Path(p), why) for p, why in report.not_repaired])
        else:
            print_problems("not indexed", [(Path(p), "run pacsd check --repair to index it")
                                            for p in report.unindexed])
        click.echo(f"{report.rows} indexed instances, {report.files} files: missing {len(report.missing)}, "
                   + (f"damaged {len(report.damaged)}, " if checksums else "")
                   + f"not indexed {len(report.unindexed)}"
                   + (f" (repaired {len(report.repaired)})" if repair else "")
                   + (f", {report.recent} changed in the last {grace:g} s not checked" if report.recent else "")
                   + (f"; finished {len(report.corrections_finished)} interrupted correction(s)"
                      if report.corrections_finished else "")
                   + (f"; removed {len(report.compression_leftovers)} file(s) of interrupted compressions"
                      if report.compression_leftovers else ""))
    sys.exit(0 if report.consistent else 1)


COMMANDS = [echo, send, import_, stats, export, check]
