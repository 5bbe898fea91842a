"""Retention: delete the studies `retention.rules` select (by age of study date or arrival,
modality, account, area), never a protected one (its own flag or its patient's).

`pacsd retention run --dry-run` lists what a run would delete and how many bytes it frees; a real
run deletes each study through `pacsd.services.deletion` (index rows first, then files) and the
action log records each deletion.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from pacsd.config import RetentionRule
from pacsd.index.areas import StudyChoice, unprotected_studies
from pacsd.services.archive import Archive
from pacsd.services.deletion import NoSuchStudy, StudyProtected, delete_study

log = logging.getLogger(__name__)

STUDIES_PER_RUN = 10_000  # per rule; the next run goes on


@dataclass
class RetentionRun:
    selected: list[tuple[StudyChoice, int]] = field(default_factory=list)  # (study, rule number)
    deleted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(study.size_bytes for study, _ in self.selected)


def rule_selects(archive: Archive, rule: RetentionRule, now: datetime, limit: int = STUDIES_PER_RUN) -> list[StudyChoice]:
    cutoff = now - timedelta(days=rule.older_than_days)
    by_date = rule.age_of == "study_date"
    return unprotected_studies(archive.engine, archive.blobs.home, limit,
                               older_than=None if by_date else cutoff,
                               study_date_before=cutoff.strftime("%Y%m%d") if by_date else "",
                               modality=rule.modality, account=rule.account, area=rule.area)


def run_retention(archive: Archive, dry_run: bool = False, now: datetime | None = None,
                  stop: Callable[[], bool] = lambda: False) -> RetentionRun:
    """Apply every retention rule once (`dry_run`: only list what would go)."""
    now = now or datetime.now(timezone.utc)
    run = RetentionRun()
    chosen: set[str] = set()
    for number, rule in enumerate(archive.settings.retention.rules):
        for study in rule_selects(archive, rule, now):
            if study.study_uid not in chosen:
                chosen.add(study.study_uid)
                run.selected.append((study, number))
    if dry_run:
        return run
    for study, number in run.selected:
        if stop():
            break
        try:
            delete_study(archive, study.study_uid, by=f"retention rule {number + 1}", spare_protected=True)
        except (NoSuchStudy, StudyProtected):
            continue  # deleted or protected meanwhile
        except Exception as exc:  # one study failing never stops the others
            log.exception("retention: deleting %s failed", study.study_uid)
            run.failed.append((study.study_uid, str(exc)))
            continue
        run.deleted.append(study.study_uid)
    return run
