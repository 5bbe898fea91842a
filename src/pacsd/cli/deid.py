"""The `pacsd deidentify` command: files and folders in, de-identified files out (PS3.15 Annex E).

The profile, project key and burned-in handling come from `pacsd.services.deidentify`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

PROFILE_HELP = ("Profile options, comma-separated: basic (alone), retain-uids, retain-safe-private, "
                "retain-device-identity, retain-institution-identity, retain-patient-characteristics, "
                "retain-full-dates | retain-modified-dates, clean-descriptors, clean-structured-content, "
                "clean-graphics [deidentify.options].")
profile_option = click.option("--profile", "profile", help=PROFILE_HELP)
burned_in_option = click.option(
    "--burned-in", type=click.Choice(["refuse", "flag"]),
    help="Burned In Annotation YES (or US/SC without it): refuse, or pass through marked [deidentify.burned_in].")


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write the de-identified files into (<SOP Instance UID>.dcm).")
@profile_option
@burned_in_option
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Project key (same key: same pseudonyms and UIDs) [deidentify.key_file].")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML settings file (see pacsd.example.yaml).")
@click.option("--storage-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Storage folder whose .pacsd/deidentify.key is the default key [storage.directory].")
def deidentify(paths, out_dir, profile, burned_in, key_file, config_path, storage_dir) -> None:
    """De-identify DICOM files and folders (recursive) into OUT; exit 1 if any was refused."""
    from pacsd.cli.archive_commands import print_problems
    from pacsd.config import load_settings
    from pacsd.net.scu import scan_files
    from pacsd.services.deidentify import deidentify_files, site_profile

    settings = load_settings(config_path, {"storage.directory": storage_dir, "deidentify.key_file": key_file})
    chosen = site_profile(settings, profile, burned_in)
    files, skipped = scan_files(paths)
    outcome = deidentify_files([f.path for f in files], out_dir, chosen)
    print_problems("Skipped", skipped)
    print_problems("Refused", outcome.refused)
    click.echo(f"de-identified {len(outcome.written)} files into {out_dir}; "
               f"{len(outcome.refused)} refused, {len(skipped)} skipped")
    if outcome.refused:
        sys.exit(1)


COMMANDS = [deidentify]
