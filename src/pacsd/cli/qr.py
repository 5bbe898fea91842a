"""`pacsd find`, `pacsd move` and `pacsd get`: Query/Retrieve against any DICOM AE.

Thin: parse the options, call `pacsd.net.qr_scu`, show a table or progress and a summary.
Exit status 0 when all went well, 1 when sub-operations failed, 2 on refusal or failure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from pacsd.cli.options import peer_ae_options
from pacsd.errors import PacsError
from pacsd.net import qr_scu
from pacsd.services.retrieve import RetrieveCounts

DEFAULT_KEYS = {
    "PATIENT": ["PatientID", "PatientName", "PatientBirthDate", "NumberOfPatientRelatedStudies"],
    "STUDY": ["PatientID", "PatientName", "StudyDate", "StudyDescription", "ModalitiesInStudy",
              "NumberOfStudyRelatedInstances", "StudyInstanceUID"],
    "SERIES": ["Modality", "SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances",
               "SeriesInstanceUID"],
    "IMAGE": ["InstanceNumber", "SOPClassUID", "SOPInstanceUID"],
}


def peer_options(func):
    """HOST PORT and the AE titles, shared by find, move and get."""
    for option in reversed([peer_ae_options,
        click.argument("host"),
        click.argument("port", type=click.IntRange(1, 65535)),
        click.option("--model", type=click.Choice(["study", "patient"]), default="study", show_default=True,
                     help="Query/Retrieve information model (root)."),
    ]):
        func = option(func)
    return func


def retrieve_options(func):
    """What to retrieve: studies, or series of one study."""
    for option in reversed([
        click.option("--study", "studies", multiple=True, required=True, help="Study Instance UID (repeatable)."),
        click.option("--series", "series", multiple=True, help="Series Instance UID (repeatable; one study)."),
    ]):
        func = option(func)
    return func


def parse_keys(pairs: tuple[str, ...]) -> dict[str, str]:
    keys = {}
    for pair in pairs:
        keyword, _, value = pair.partition("=")
        keys[keyword.strip()] = value
    return keys


@click.command()
@peer_options
@click.option("--level", type=click.Choice(list(DEFAULT_KEYS), case_sensitive=False), default="STUDY",
              show_default=True)
@click.option("-k", "--key", "pairs", multiple=True, help="Keyword=value to match, or Keyword to return.")
@click.option("--json", "as_json", is_flag=True, help="Print the answers as DICOM JSON.")
def find(host, port, aec, aet, model, level, pairs, as_json) -> None:
    """C-FIND: e.g. pacsd find HOST PORT -k PatientName='DOE*' -k StudyDate=20200101-"""
    level = level.upper()
    keys = {keyword: "" for keyword in DEFAULT_KEYS[level]} | parse_keys(pairs)
    answers = list(qr_scu.find(qr_scu.Peer(host, port, aec, aet), model, level, keys))
    if as_json:
        click.echo(json.dumps([answer.to_json_dict() for answer in answers], ensure_ascii=False, indent=1))
        return
    rows = [[_text(answer.data_element(keyword)) for keyword in keys] for answer in answers]
    console = Console()
    if not console.is_terminal:  # a file or a pipe: one tab-separated line per match, nothing cut
        click.echo("\t".join(keys))
        for row in rows:
            click.echo("\t".join(value.replace("\t", " ").replace("\n", " ") for value in row))
        return
    table = Table(title=f"{len(answers)} {level.lower()} match(es) from {aec}")
    for keyword in keys:
        table.add_column(keyword, overflow="fold")  # UIDs wrap, never end in an ellipsis
    for row in rows:
        table.add_row(*row)
    console.print(table)


@click.command()
@peer_options
@retrieve_options
@click.option("--dest", required=True, help="The AE title the peer sends to (one it knows).")
def move(host, port, aec, aet, model, studies, series, dest) -> None:
    """C-MOVE: have the peer send studies (or series) to --dest."""
    level, keys = _retrieve_keys(studies, series)
    peer = qr_scu.Peer(host, port, aec, aet)
    counts = _with_progress(f"moving to {dest}", lambda progress: qr_scu.move(peer, model, level, keys, dest, progress))
    _summary(counts, f"sent to {dest}")


@click.command()
@peer_options
@retrieve_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder the instances are written to.")
def get(host, port, aec, aet, model, studies, series, out) -> None:
    """C-GET: retrieve studies (or series) into --out."""
    level, keys = _retrieve_keys(studies, series)
    peer = qr_scu.Peer(host, port, aec, aet)
    sop_classes = _sop_classes_in(peer, studies)
    counts = _with_progress("retrieving", lambda progress: qr_scu.get(peer, model, level, keys, out, sop_classes,
                                                                      progress))
    _summary(counts, f"written to {out}")


def _retrieve_keys(studies: tuple[str, ...], series: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    if series and len(studies) != 1:
        raise PacsError("--series needs exactly one --study")
    keys = {"StudyInstanceUID": "\\".join(studies)}
    if series:
        return "SERIES", keys | {"SeriesInstanceUID": "\\".join(series)}
    return "STUDY", keys


def _sop_classes_in(peer: qr_scu.Peer, studies: tuple[str, ...]) -> list[str]:
    """The SOP classes the peer says the studies hold ([] when it does not say)."""
    try:
        answers = qr_scu.find(peer, "study", "STUDY", {"StudyInstanceUID": "\\".join(studies), "SOPClassesInStudy": ""})
        return sorted({str(uid) for answer in answers for uid in _values(answer.data_element("SOPClassesInStudy"))})
    except PacsError:
        return []


def _with_progress(description: str, run) -> RetrieveCounts:
    with Progress(transient=True) as bar:
        task = bar.add_task(description, total=None)

        def progress(counts: RetrieveCounts) -> None:
            done = counts.completed + counts.failed + counts.warning
            bar.update(task, completed=done, total=done + counts.remaining)

        return run(progress)


def _summary(counts: RetrieveCounts, what: str) -> None:
    click.echo(f"{counts.completed} {what}, {counts.warning} with warnings, {counts.failed} failed")
    for uid in counts.failed_uids:
        click.echo(f"failed: {uid}")
    if counts.failed and counts.reason:
        click.echo(f"reason given: {counts.reason}")
    if counts.failed:
        sys.exit(1)


def _values(element) -> list:
    if element is None or element.value in (None, ""):
        return []
    return list(element.value) if element.VM > 1 else [element.value]


def _text(element) -> str:
    return "\\".join(str(v) for v in _values(element))


COMMANDS = [find, move, get]
