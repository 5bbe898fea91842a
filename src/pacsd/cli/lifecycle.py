"""Commands of storage over the years: `pacsd areas` (use per area, moves between areas),
`pacsd retention run`, and `pacsd protect` (the flag retention and recycling respect)."""

from __future__ import annotations

import json
import sys

import click

from pacsd.cli.archive_commands import command_archive
from pacsd.cli.options import archive_options


@click.group()
def areas() -> None:
    """Storage areas: use per area, and moving studies between them (storage.areas, storage.move_rules)."""


@areas.command("list")
@archive_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_areas(config_path, as_json, **flags) -> None:
    """Each area's folder, the bytes of images in it, and the free space on its volume."""
    from pacsd.index.areas import recount_area_usage
    from pacsd.services.area_moves import area_report

    archive = command_archive(config_path, flags, existing=True)
    try:
        recount_area_usage(archive.engine, archive.blobs.area_roots, archive.blobs.home)
        report = area_report(archive)
    finally:
        archive.close()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for name, area in report.items():
        click.echo(f"{name}{' (new instances)' if area['receives'] else ''}: {area['folder']}: "
                   f"{area['bytes']:,} bytes in {area['instances']:,} instances, {area['free']:,} bytes free")


@areas.command("move")
@archive_options
@click.option("--dry-run", is_flag=True, help="Only list the studies the move rules would move now.")
@click.option("--study", help="Move this study (with --to) instead of applying the move rules.")
@click.option("--to", "to_area", help="The area to move --study to.")
def move(config_path, dry_run, study, to_area, **flags) -> None:
    """Apply the move rules once (or move one study): copy, make durable, switch the index, remove
    the old files.  Exit code 1 when a study could not be moved."""
    from pacsd.services.area_moves import move_study, run_moves

    if bool(study) != bool(to_area):
        raise click.UsageError("--study and --to go together")
    archive = command_archive(config_path, flags, existing=True)
    try:
        if study:
            if dry_run:
                click.echo(f"would move {study} to {to_area}")
                return
            moved = move_study(archive, study, to_area)
            click.echo(f"moved {study} to {to_area}: {moved.instances} instances, {moved.bytes:,} bytes")
            return
        run = run_moves(archive, dry_run=dry_run)
    finally:
        archive.close()
    for plan in run.planned:
        click.echo(f"{'would move' if dry_run else 'move'} {plan.study.study_uid} (patient {plan.study.patient_id}, "
                   f"{plan.study.size_bytes:,} bytes) to {plan.to_area} (rule {plan.rule + 1})")
    for uid, why in run.failed:
        click.echo(f"failed: {uid}: {why}", err=True)
    total = sum(plan.study.size_bytes for plan in run.planned)
    click.echo(f"{len(run.planned)} studies, {total:,} bytes" + ("" if dry_run else f"; moved {len(run.moved)}"))
    sys.exit(1 if run.failed else 0)


@click.group()
def retention() -> None:
    """Retention rules (retention.rules): delete studies by age, modality, account or area."""


@retention.command("run")
@archive_options
@click.option("--dry-run", is_flag=True, help="Only list what a run would delete and how much it frees.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def run_retention_command(config_path, dry_run, as_json, **flags) -> None:
    """Apply the retention rules once; protected studies and patients are kept.  Each deletion is
    written to the action log.  Exit code 1 when a study could not be deleted."""
    from pacsd.services.retention import run_retention

    archive = command_archive(config_path, flags, existing=True)
    try:
        run = run_retention(archive, dry_run=dry_run)
    finally:
        archive.close()
    if as_json:
        click.echo(json.dumps({
            "dry_run": dry_run, "bytes": run.bytes, "deleted": run.deleted,
            "failed": [{"study": uid, "why": why} for uid, why in run.failed],
            "selected": [{"study": s.study_uid, "patient": s.patient_id, "bytes": s.size_bytes,
                          "instances": s.num_instances, "study_date": s.study_date, "rule": rule + 1}
                         for s, rule in run.selected]}, indent=2))
    else:
        for study, rule in run.selected:
            click.echo(f"{'would delete' if dry_run else 'delete'} {study.study_uid} (patient {study.patient_id}, "
                       f"date {study.study_date or '-'}, {study.size_bytes:,} bytes) by rule {rule + 1}")
        for uid, why in run.failed:
            click.echo(f"failed: {uid}: {why}", err=True)
        click.echo(f"{len(run.selected)} studies, {run.bytes:,} bytes"
                   + (" would be freed" if dry_run else f"; deleted {len(run.deleted)}"))
    sys.exit(1 if run.failed else 0)


@click.command()
@archive_options
@click.option("--study", help="Study Instance UID to protect.")
@click.option("--patient", help="Patient ID to protect (all their studies).")
@click.option("--off", is_flag=True, help="Clear the flag instead.")
def protect(config_path, study, patient, off, **flags) -> None:
    """Protect a study or a patient from retention and quota recycling (or, with --off, no longer)."""
    from pacsd.errors import PacsError
    from pacsd.index.areas import set_protected

    if bool(study) == bool(patient):
        raise click.UsageError("give one of --study, --patient")
    archive = command_archive(config_path, flags, existing=True)
    try:
        level, uid = ("study", study) if study else ("patient", patient)
        if not set_protected(archive.engine, level, uid, not off):
            raise PacsError(f"no {level} {uid} in the index")
        archive.actions.record("unprotected" if off else "protected", **{level: uid}, by="cli")
    finally:
        archive.close()
    click.echo(f"{level} {uid} {'no longer protected' if off else 'protected'}")


COMMANDS = [areas, retention, protect]
