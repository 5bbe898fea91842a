"""`pacsd tags ...` and `pacsd convert ...`: the file toolkit on the command line.

Thin wrappers over `pacsd.dicom.tags` and `pacsd.dicom.convert`; tag values printed to the
terminal have their control characters escaped (a file's values are not trusted).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from pacsd.dicom.convert import dcm_to_jpg, dcm_to_tn, jpg_to_dcm
from pacsd.dicom.render import Window
from pacsd.dicom.tags import TagEntry, get_tag, load_tags, write_tags
from pacsd.errors import InvalidTagValue, PacsError
from pacsd.services.rendering import InvalidRenderParameter, parse_window

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SHOWN_TEXT = 80


def printable(text: str) -> str:
    """Escape control characters so a hostile value cannot drive the terminal."""
    return _UNPRINTABLE.sub(lambda match: f"\\x{ord(match[0]):02x}", text)


_dicom_file_argument = click.argument(
    "file", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
_write_to_option = click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path),
    help="Write the result here instead of changing FILE.",
)


@click.group("tags")
def tags_group() -> None:
    """Show and change the tags of a DICOM file."""


@tags_group.command("show")
@_dicom_file_argument
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of elements.")
def tags_show(file: Path, as_json: bool) -> None:
    """List every element of FILE, sequences indented."""
    entries = load_tags(file)
    if as_json:
        click.echo(json.dumps([entry.as_dict() for entry in entries], ensure_ascii=False, indent=1))
        return
    for line in _lines(entries, depth=0):
        click.echo(line)


@tags_group.command("get")
@_dicom_file_argument
@click.argument("tag")
def tags_get(file: Path, tag: str) -> None:
    """Print one value: TAG is a keyword (PatientName), gggg,eeee or Seq[0].Keyword."""
    value = get_tag(file, tag)
    if isinstance(value, list) and value and isinstance(value[0], (list, TagEntry)):
        click.echo(json.dumps(_json_items(value), ensure_ascii=False))
    elif isinstance(value, list):
        click.echo(printable("\\".join("" if v is None else str(v) for v in value)))
    else:
        click.echo(printable("" if value is None else str(value)))


@tags_group.command("set")
@_dicom_file_argument
@click.argument("assignments", nargs=-1, required=True)
@_write_to_option
def tags_set(file: Path, assignments: tuple[str, ...], out: Path | None) -> None:
    """Set elements: TAG=VALUE ... (use \\ between multiple values)."""
    changes = {}
    for assignment in assignments:
        tag, separator, value = assignment.partition("=")
        if not separator or not tag.strip():
            raise InvalidTagValue(f"expected TAG=VALUE, got {assignment!r}")
        changes[tag.strip()] = value
    written = write_tags(file, changes, out=out)
    click.echo(f"wrote {written}")


@tags_group.command("delete")
@_dicom_file_argument
@click.argument("tags", nargs=-1, required=True)
@_write_to_option
def tags_delete(file: Path, tags: tuple[str, ...], out: Path | None) -> None:
    """Delete elements: TAG ..."""
    written = write_tags(file, dict.fromkeys(tags), out=out)
    click.echo(f"wrote {written}")


@click.group("convert")
def convert_group() -> None:
    """Convert between DICOM and JPEG."""


@convert_group.command("dcm2jpg")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the JPEGs (default: next to each input).")
@click.option("--frame", type=click.IntRange(min=1), help="Frame number, 1 = first.")
@click.option("--window", help="Window as CENTER,WIDTH[,linear|linear-exact|sigmoid] "
              "(default: the file's, else automatic).")
@click.option("--quality", type=click.IntRange(1, 100), default=90, show_default=True)
def convert_dcm2jpg(files, out_dir, frame, window, quality) -> None:
    """Render DICOM images to JPEG files."""
    chosen_window = _parse_window(window)
    index = None if frame is None else frame - 1
    _convert_each(
        _targets(files, out_dir, ".jpg"),
        lambda source, target: dcm_to_jpg(source, target, index, chosen_window, quality),
    )


@convert_group.command("thumbnail")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--size", type=click.IntRange(min=8, max=4096), default=128, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the thumbnails (default: next to each input).")
def convert_thumbnail(files, size, out_dir) -> None:
    """Write a JPEG thumbnail (middle frame) of each DICOM image."""
    _convert_each(
        _targets(files, out_dir, ".tn.jpg"),
        lambda source, target: dcm_to_tn(source, target, size=size),
    )


@convert_group.command("jpg2dcm")
@click.argument("jpg", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--like", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Copy patient and study from this DICOM file.")
@click.option("--like-series", is_flag=True, help="With --like, also join its series.")
@click.option("--photographic", is_flag=True, help="VL Photographic Image instead of Secondary Capture.")
@click.option("--patient-name")
@click.option("--patient-id")
def convert_jpg2dcm(jpg, out, like, like_series, photographic, patient_name, patient_id) -> None:
    """Wrap a JPEG photograph as a DICOM instance (the JPEG bytes are kept as they are)."""
    demographics = {
        keyword: value
        for keyword, value in (("PatientName", patient_name), ("PatientID", patient_id))
        if value is not None
    }
    written = jpg_to_dcm(jpg, out, demographics, like=like, photographic=photographic,
                         like_series=like_series)
    click.echo(f"wrote {written}")


def _convert_each(pairs, convert) -> None:
    """Convert every file; report the ones that fail and exit 2 at the end if any did."""
    failures = 0
    for source, target in pairs:
        try:
            click.echo(convert(source, target))
        except PacsError as exc:
            failures += 1
            click.echo(f"pacsd: {source}: {exc}", err=True)
    if failures:
        raise click.exceptions.Exit(2)


def _lines(entries: list[TagEntry], depth: int):
    indent = "  " * depth
    for entry in entries:
        name = entry.keyword or "(private or unknown)"
        yield f"{indent}({entry.tag}) {entry.vr} {name:<36} {_shown(entry)}"
        for number, item in enumerate(entry.items or []):
            yield f"{indent}  item {number}"
            yield from _lines(item, depth + 2)


def _shown(entry: TagEntry) -> str:
    if entry.items is not None:
        return f"<{len(entry.items)} item(s)>"
    if entry.length is not None:
        return f"<{entry.length} bytes>"
    value = entry.value
    text = "\\".join("" if v is None else str(v) for v in value) if isinstance(value, list) else str(
        "" if value is None else value
    )
    text = printable(text)
    return text if len(text) <= _SHOWN_TEXT else text[:_SHOWN_TEXT] + "..."


def _json_items(items):
    return [[entry.as_dict() for entry in item] if isinstance(item, list) else item.as_dict()
            for item in items]


def _parse_window(text: str | None) -> Window | None:
    """--window as the web parameter takes it (`pacsd.services.rendering.parse_window`)."""
    try:
        return parse_window(text)
    except InvalidRenderParameter as exc:
        raise click.BadParameter(f"{exc}; e.g. 40,400", param_hint="--window") from None


def _targets(files: tuple[Path, ...], out_dir: Path | None, suffix: str):
    """(source, target) pairs; the target name comes from the input file name, never from tags."""
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    taken: set[Path] = set()
    for source in files:
        folder = out_dir if out_dir is not None else source.parent
        target = folder / f"{source.stem}{suffix}"
        number = 2
        while target in taken:
            target = folder / f"{source.stem}-{number}{suffix}"
            number += 1
        taken.add(target)
        yield source, target


COMMANDS = [tags_group, convert_group]
