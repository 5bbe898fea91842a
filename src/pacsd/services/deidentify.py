"""De-identification as a service: the site's profile and project key, files in, de-identified files out.

Every way out that de-identifies calls here: `pacsd deidentify`, export and the web ZIP, C-MOVE to a
known AE marked `deidentify: true`, and (later) forwarding routes through `deidentify_instance`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

from pacsd.config import Settings
from pacsd.dicom.deidentify import Profile, deidentify, parse_options
from pacsd.dicom.files import read_dicom, write_atomically
from pacsd.dicom.pixel_span import PixelSpan, read_header_and_pixels, write_part10
from pacsd.errors import PacsError
from pacsd.secret_files import key_from_file

log = logging.getLogger(__name__)


def key_path(settings: Settings) -> Path:
    """`deidentify.key_file`, by default `.pacsd/deidentify.key` in the storage directory."""
    return Path(settings.deidentify.key_file or Path(settings.storage.directory) / ".pacsd" / "deidentify.key")


def site_profile(settings: Settings, options: str | Iterable[str] | None = None,
                 burned_in: str | None = None) -> Profile:
    """The profile of the site's settings; `options` (e.g. 'retain-uids,clean-descriptors') replaces
    the configured options, `burned_in` the configured handling of burned-in annotation."""
    config = settings.deidentify
    try:
        key = key_from_file(key_path(settings), "de-identification key")
    except (OSError, ValueError) as exc:
        raise PacsError(f"cannot read the de-identification key: {exc}") from None
    safe = set()
    for item in config.safe_private:
        creator, _, byte = item.rpartition(":")
        safe.add((creator.strip(), int(byte, 16)))
    return Profile(key=key, options=parse_options(config.options if options is None else options),
                   uid_root=config.uid_root, burned_in=burned_in or config.burned_in,
                   safe_private=frozenset(safe))


def deidentify_instance(source: Path | Dataset, profile: Profile) -> Dataset:
    """One instance de-identified, as a whole dataset (read whole when given a path).

    Raises InvalidDicom for an unreadable file, DeidentificationRefused for burned-in annotation.
    This is the call a forwarding route makes for `deidentify:` when it holds a dataset; with a
    file, `write_deidentified` keeps the pixel data bytes exactly as stored.
    """
    dataset = read_dicom(source) if isinstance(source, Path) else source
    return deidentify(dataset, profile)


def write_deidentified(source: Path, profile: Profile, out_dir: Path) -> Path:
    """De-identify the file at `source` into `<out_dir>/<new SOP Instance UID>.dcm`, atomically: the
    header rewritten, the pixel data element copied byte for byte from the stored file."""
    header, pixels = read_header_and_pixels(source)
    deidentify(header, profile)
    return write_instance(header, out_dir, pixels)


def write_instance(dataset: Dataset, out_dir: Path, pixels: PixelSpan | None = None) -> Path:
    """Write a de-identified dataset (followed by `pixels`, the stored pixel data element) atomically
    as a Part 10 file `<out_dir>/<SOP Instance UID>.dcm`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_atomically(out_dir / f"{dataset.SOPInstanceUID}.dcm", lambda out: write_part10(dataset, out, pixels))


@dataclass
class Outcome:
    written: list[Path] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)


def deidentify_files(paths: Iterable[Path], out_dir: Path, profile: Profile) -> Outcome:
    """De-identify each file into `out_dir`; files that cannot be are listed with why, never half-written."""
    outcome = Outcome()
    for path in paths:
        try:
            outcome.written.append(write_deidentified(path, profile, out_dir))
        except PacsError as exc:
            log.warning("not de-identified: %s: %s", path, exc)
            outcome.refused.append((path, str(exc)))
    return outcome
