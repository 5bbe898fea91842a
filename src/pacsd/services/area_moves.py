"""Move whole studies between storage areas, as `storage.move_rules` say (`pacsd areas move`,
and the background process every `storage.move_every` seconds).

Each batch of a study's instances: copy into the target area and make the copies durable, switch
their index rows in one transaction, then remove the old files.  A crash at any point leaves
every instance indexed with a complete file; the other copy is unindexed, and `pacsd check
--repair` removes it (an identical copy of an indexed instance).  `on_moved` is where a later step
(compress when moved) hooks in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from pacsd.area_paths import split_area_path
from pacsd.config import MoveRule
from pacsd.errors import PacsError
from pacsd.index.areas import (
    StudyChoice,
    area_instance_counts,
    recount_area_usage,
    studies_to_move,
    study_files_outside,
    switch_paths,
    usage_totals,
)
from pacsd.pathnames import path_component
from pacsd.services.archive import Archive
from pacsd.services.scansheet import study_dir_for

log = logging.getLogger(__name__)

BATCH = 200  # instances copied, then switched in one transaction
STUDIES_PER_RUN = 10_000  # a run moves at most this many studies per rule; the next run goes on


class UnknownArea(PacsError):
    """A storage area was named that storage.areas does not have."""


@dataclass(frozen=True)
class PlannedMove:
    study: StudyChoice
    to_area: str
    rule: int  # its index in storage.move_rules


@dataclass
class MovedStudy:
    study_uid: str
    to_area: str
    instances: int = 0
    bytes: int = 0
    skipped: int = 0  # instances overwritten or deleted while being moved: left as they were
    paths: list[str] = field(default_factory=list)  # the new index paths


def planned_moves(archive: Archive, now: datetime | None = None) -> list[PlannedMove]:
    """What the move rules would move now, rule by rule (a study once, by its first rule)."""
    now = now or datetime.now(timezone.utc)
    storage = archive.settings.storage
    planned: dict[str, PlannedMove] = {}
    for number, rule in enumerate(storage.move_rules):
        for study in _due(archive, rule, now):
            planned.setdefault(study.study_uid, PlannedMove(study, rule.to_area, number))
    return list(planned.values())


def _due(archive: Archive, rule: MoveRule, now: datetime) -> list[StudyChoice]:
    return studies_to_move(archive.engine, rule.to_area, rule.from_area, now - timedelta(days=rule.not_accessed_days),
                           rule.modality, archive.blobs.home, STUDIES_PER_RUN)


def move_study(archive: Archive, study_uid: str, to_area: str,
               stop: Callable[[], bool] = lambda: False) -> MovedStudy:
    """Move every instance of the study not yet in `to_area` there (see the module docstring)."""
    blobs = archive.blobs
    if to_area not in blobs.area_roots:
        raise UnknownArea(f"there is no storage area {to_area!r} (storage.areas: {', '.join(blobs.area_roots)})")
    moved = MovedStudy(study_uid, to_area)
    after_pk = 0
    while not stop():
        batch = study_files_outside(archive.engine, study_uid, to_area, blobs.home, BATCH, after_pk)
        if not batch:
            break
        after_pk = batch[-1].pk
        copies = []
        for stored in batch:
            _, inside = split_area_path(stored.path, blobs.home)
            copies.append((stored, blobs.copy_in(blobs.path_of(stored.path), blobs.in_area(to_area, inside))))
        switched = switch_paths(archive.engine, copies, blobs.area_of, blobs.home)
        for (stored, new_path), done in zip(copies, switched):
            _remove(archive, stored.path if done else new_path)
            if done:
                moved.instances += 1
                moved.bytes += stored.size_bytes
                moved.paths.append(new_path)
            else:
                moved.skipped += 1
        if moved.paths:
            _move_scan_sheets(archive, study_uid, [f.path for f in batch], moved.paths[-1])
    if moved.instances:
        archive.actions.record("study-moved", study=study_uid, area=to_area, instances=moved.instances,
                               bytes=moved.bytes)
        log.info("moved study %s to area %s (%d instances, %d bytes)", study_uid, to_area, moved.instances,
                 moved.bytes)
    return moved


def _remove(archive: Archive, path: str) -> None:
    try:
        archive.blobs.remove(path)
    except OSError as exc:  # the index is right; `pacsd check --repair` removes the copy later
        log.warning("area move: cannot remove %s: %s", path, exc)


def _move_scan_sheets(archive: Archive, study_uid: str, old_paths: list[str], new_path: str) -> None:
    """Take the study's scan sheet files along (they are rewritten from the index, so a crash here
    loses nothing)."""
    name = path_component(archive.settings.scan_sheets.file_name)
    old_dirs = {study_dir_for(archive.layout, path, study_uid) for path in old_paths}
    new_dir = study_dir_for(archive.layout, new_path, study_uid)
    for old_dir in old_dirs - {new_dir}:
        for kind in ("csv", "pdf"):
            old = archive.blobs.path_of(old_dir / f"{name}.{kind}")
            if old.is_file():
                archive.blobs.replace_file(new_dir / f"{name}.{kind}", old.read_bytes())
                _remove(archive, str(old_dir / f"{name}.{kind}"))


@dataclass
class MoveRun:
    planned: list[PlannedMove]
    moved: list[MovedStudy] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (study UID, why)


def run_moves(archive: Archive, dry_run: bool = False, stop: Callable[[], bool] = lambda: False,
              on_moved: Callable[[MovedStudy], None] | None = None) -> MoveRun:
    """Apply the move rules once (`dry_run`: only say what would move).  The area totals are
    recounted first, so drift (an overwritten duplicate) never outlives a run.  A study that
    does not fit the target area's quota stays (or, with `when_full: recycle`, the area's oldest
    unprotected studies are deleted to make room)."""
    if not dry_run:
        recount_area_usage(archive.engine, archive.blobs.area_roots, archive.blobs.home)
    run = MoveRun(planned_moves(archive))
    if dry_run:
        return run
    for plan in run.planned:
        if stop():
            break
        full = archive.quotas.room_for(plan.to_area, plan.study.size_bytes, plan.study.study_uid, new_study=False)
        if full:
            run.failed.append((plan.study.study_uid, full))
            continue
        try:
            moved = move_study(archive, plan.study.study_uid, plan.to_area, stop)
        except PacsError as exc:
            log.warning("area move of %s to %s failed: %s", plan.study.study_uid, plan.to_area, exc)
            run.failed.append((plan.study.study_uid, str(exc)))
            continue
        run.moved.append(moved)
        if on_moved is not None:
            on_moved(moved)
    return run


def area_report(archive: Archive) -> dict[str, dict]:
    """Per area: folder, bytes and instances of images in it (the index's totals), free space."""
    totals = usage_totals(archive.engine, archive.blobs.home)
    counts = area_instance_counts(archive.engine, archive.blobs.home)
    report = {}
    for name, root in archive.blobs.area_roots.items():
        try:
            free = archive.blobs.usage(name)[1]
        except OSError:
            free = 0
        report[name] = {"folder": str(root), "receives": name == archive.blobs.home,
                        "bytes": totals.area_bytes.get(name, 0), "free": free,
                        "instances": counts.get(name, 0)}
    return report
