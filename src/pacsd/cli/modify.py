"""The `pacsd modify` command: correct stored instances (attributes, merge, move, split).

It shows what changes and asks before doing it (`--yes` skips the question); the work is
`pacsd.services.corrections`'.
"""

from __future__ import annotations

import click

from pacsd.cli.options import archive_options


@click.command()
@click.option("--patient", "patient_id", help="Change attributes of this patient (Patient ID).")
@click.option("--study", "study_uid", help="Change attributes of this study.")
@click.option("--series", "series_uid", help="Change attributes of this series.")
@click.option("--set", "assignments", multiple=True, metavar="KEYWORD=VALUE",
              help="The new value of an attribute (repeatable), e.g. PatientName='DOE^JANE'.")
@click.option("--merge-patient", metavar="ID", help="File every study of this patient under --into.")
@click.option("--into", metavar="ID", help="The patient --merge-patient goes into.")
@click.option("--move-series", multiple=True, metavar="UID", help="Series to move (repeatable) to --to-study.")
@click.option("--to-study", metavar="UID", help="The existing study --move-series goes to.")
@click.option("--split-study", metavar="UID", help="Move the --split-series of this study into a new study.")
@click.option("--split-series", multiple=True, metavar="UID", help="Series to split off (repeatable).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@archive_options
def modify(patient_id, study_uid, series_uid, assignments, merge_patient, into, move_series, to_study,
           split_study, split_series, yes, config_path, **flags) -> None:
    """Correct stored instances: change patient/study/series attributes (files rewritten, pixel data
    untouched, index updated at once, old values in the action log), merge two patients, move
    series to another study, split a study."""
    from pacsd.cli.archive_commands import command_archive
    from pacsd.services import corrections

    chosen = [bool(patient_id or study_uid or series_uid), bool(merge_patient), bool(move_series), bool(split_study)]
    if sum(chosen) != 1 or sum(bool(x) for x in (patient_id, study_uid, series_uid)) > 1:
        raise click.UsageError("give one of --patient/--study/--series with --set, --merge-patient with "
                               "--into, --move-series with --to-study, --split-study with --split-series")
    archive = command_archive(config_path, flags)
    try:
        if chosen[0]:
            level, uid = next((lv, u) for lv, u in (("patient", patient_id), ("study", study_uid),
                                                    ("series", series_uid)) if u)
            changes = dict(_assignment(text) for text in assignments)
            plan, _ = corrections.plan_modify(archive, level, uid, changes)
            run = lambda: corrections.modify(archive, level, uid, changes, by="cli")  # noqa: E731
        elif merge_patient:
            _require(into, "--merge-patient needs --into")
            plan = corrections.plan_merge(archive, merge_patient, into)[0]
            run = lambda: corrections.merge_patients(archive, merge_patient, into, by="cli")  # noqa: E731
        elif move_series:
            _require(to_study, "--move-series needs --to-study")
            plan = corrections.plan_move(archive, list(move_series), to_study)[0]
            run = lambda: corrections.move_series(archive, list(move_series), to_study, by="cli")  # noqa: E731
        else:
            _require(split_series, "--split-study needs --split-series")
            plan = corrections.plan_move(archive, list(split_series), None, source_study_uid=split_study)[0]
            run = lambda: corrections.split_study(archive, split_study, list(split_series), by="cli")  # noqa: E731
        for line in plan.lines():
            click.echo(line)
        if not yes and not click.confirm("Make this change?", default=False):
            raise click.Abort()
        done = run()
    finally:
        archive.close()
    click.echo(f"corrected {done.instances} instance(s)"
               + (f"; new study {done.new_study_uid}" if done.kind == "split" else ""))


def _assignment(text: str) -> tuple[str, str]:
    keyword, sep, value = text.partition("=")
    if not sep or not keyword.strip():
        raise click.UsageError(f"--set {text!r}: expected KEYWORD=VALUE")
    return keyword.strip(), value


def _require(value, message: str) -> None:
    if not value:
        raise click.UsageError(message)


COMMANDS = [modify]
