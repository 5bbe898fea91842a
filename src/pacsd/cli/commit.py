"""`pacsd commit`: ask a DICOM peer to commit to keeping instances (Storage Commitment SCU).

The request is built from files (folders are searched) or from a study in our own index; the
committed and failed instances are printed, and the exit code is 0 only when all were committed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pacsd.cli.options import peer_ae_options
from pacsd.dicom.commitment import (
    CLASS_INSTANCE_CONFLICT,
    NO_SUCH_OBJECT_INSTANCE,
    PROCESSING_FAILURE,
    Reference,
)
from pacsd.errors import InvalidDicom, PacsError

_REASONS = {
    NO_SUCH_OBJECT_INSTANCE: "no such object instance",
    CLASS_INSTANCE_CONFLICT: "class-instance conflict",
    PROCESSING_FAILURE: "processing failure",
}


def references_from_paths(paths: list[Path]) -> list[Reference]:
    """The SOP class and instance of each file; files found in folders that are not DICOM are skipped."""
    from pacsd.dicom.header import read_header

    references = []
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            try:
                header = read_header(file)
            except InvalidDicom as exc:
                if not path.is_dir():
                    raise PacsError(f"{file}: {exc}") from None
                click.echo(f"skipped {file}: {exc}", err=True)
                continue
            references.append(Reference(header.sop_class_uid, header.sop_instance_uid))
    return references


def references_of_study(study_uid: str, config_path: Path | None, index_db: Path | None) -> list[Reference]:
    from pacsd.config import load_settings
    from pacsd.index.engine import describe, open_index, require_existing
    from pacsd.services.commitment_instances import study_references

    settings = load_settings(config_path, {"database.path": index_db})
    require_existing(settings.database.target)
    engine = open_index(settings.database.target)
    try:
        references = study_references(engine, study_uid)
    finally:
        engine.dispose()
    if not references:
        raise PacsError(f"study {study_uid} has no instances in {describe(settings.database.target)}")
    return references


@click.command()
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--study", "study_uid", help="Commit the instances of this study in our own index.")
@peer_ae_options
@click.option("--listen-port", type=click.IntRange(1, 65535),
              help="Also accept the report on an association the peer opens to this port.")
@click.option("--listen-host", default="0.0.0.0", show_default=True, help="Address of that listener.")
@click.option("--timeout", type=float, default=60, show_default=True, help="Seconds to wait for the report.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Settings file (for --study: where the index is).")
@click.option("--index-db", type=click.Path(dir_okay=False, path_type=Path), help="SQLite index (for --study).")
def commit(host, port, paths, study_uid, aet, aec, listen_port, listen_host, timeout, config_path, index_db) -> None:
    """Storage Commitment: ask HOST PORT to commit PATH... (files or folders) or --study UID."""
    from pacsd.net.commitment_scu import request_commitment

    references = references_from_paths(list(paths))
    if study_uid:
        references += references_of_study(study_uid, config_path, index_db)
    if not references:
        raise PacsError("nothing to commit: give DICOM files, folders or --study UID")
    listen = (listen_host, listen_port) if listen_port else None
    result, route = request_commitment(host, port, references, our_aet=aet, called_aet=aec,
                                       listen=listen, timeout=timeout)
    for reference in result.committed:
        click.echo(f"committed  {reference.sop_uid}  {reference.sop_class_uid}")
    for failure in result.failed:
        reason = _REASONS.get(failure.reason, "failure")
        click.echo(f"FAILED     {failure.reference.sop_uid}  {failure.reference.sop_class_uid}  "
                   f"0x{failure.reason:04X} {reason}")
    click.echo(f"{len(result.committed)} committed, {len(result.failed)} failed "
               f"(transaction {result.transaction_uid}, report on a {route})")
    sys.exit(1 if result.failed or len(result.committed) < len(references) else 0)


COMMANDS = [commit]
