"""Quotas (`quotas.limits`): bytes per area or for the whole archive, and numbers of studies and
patients; when one is reached, refuse new instances (C-STORE status 0xA700) or recycle: delete the
oldest unprotected studies until the new one fits (Orthanc's recycling).

The receive path asks `QuotaGuard.admit(header)` (through the filter listener `QuotaListener` in
`pacsd.services.builtin_listeners`): it compares the index's running totals (studies'
sizes, counts, area_usage: no scan of the instances), re-read at most every `quotas.refresh`
seconds and counted on in between with what this process admitted.  Several receiving processes
each count only their own admissions between re-reads, so a limit may be passed by what they
receive in one refresh interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING

from pacsd.config import Quota
from pacsd.dicom.header import Header
from pacsd.index.areas import Totals, study_exists, unprotected_studies, usage_totals

if TYPE_CHECKING:
    from pacsd.services.archive import Archive

log = logging.getLogger(__name__)

RECYCLE_AT_ONCE = 50  # studies looked at per recycling step
KNOWN_STUDIES = 10_000  # study UIDs remembered as present (a few hundred KB)


class QuotaGuard:
    """Decides whether an instance (or a study moved into an area) fits every quota."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.limits: list[Quota] = archive.settings.quotas.limits
        self.refresh = archive.settings.quotas.refresh
        self.home = archive.blobs.home
        self._totals: Totals | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()
        # Studies known to be in the index (or admitted here): their next instances are no new
        # study, asked of the index once per study rather than once per instance.
        self._known_studies: OrderedDict[str, None] = OrderedDict()

    def admit(self, header: Header) -> str | None:
        """None when the instance may be stored (and it is counted); else why not."""
        if not self.limits:
            return None
        return self.room_for(self.home, header.size, header.study_uid)

    def room_for(self, area: str, size: int, study_uid: str, new_study: bool | None = None) -> str | None:
        """Make room for `size` bytes of `study_uid` in `area` (recycling where configured): None
        when it fits, and then it is counted; else the reason it does not."""
        limits = [q for q in self.limits if not q.area or q.area == area]
        if not limits:
            return None
        with self._lock:
            totals = self._current()
            if new_study is None and any(q.max_studies or q.max_patients for q in limits):
                new_study = not self._known(study_uid)
            for quota in limits:
                over = self._over(quota, totals, area, size, bool(new_study))
                if over and quota.when_full == "recycle":
                    self._recycle(quota, area, size, bool(new_study), study_uid)
                    totals = self._current(force=True)
                    over = self._over(quota, totals, area, size, bool(new_study))
                if over:
                    log.warning("quota reached: %s; refused %d bytes of study %s", over, size, study_uid)
                    return f"quota reached: {over}"
            self._count(area, size, bool(new_study))
            self._remember(study_uid)
        return None

    def _known(self, study_uid: str) -> bool:
        if study_uid in self._known_studies:
            self._known_studies.move_to_end(study_uid)
            return True
        if study_exists(self.archive.engine, study_uid):
            self._remember(study_uid)
            return True
        return False

    def _remember(self, study_uid: str) -> None:
        self._known_studies[study_uid] = None
        self._known_studies.move_to_end(study_uid)
        while len(self._known_studies) > KNOWN_STUDIES:
            self._known_studies.popitem(last=False)

    def _current(self, force: bool = False) -> Totals:
        now = time.monotonic()
        if force or self._totals is None or now - self._read_at >= self.refresh:
            self._totals, self._read_at = usage_totals(self.archive.engine, self.home), now
            self._known_studies.clear()  # studies deleted meanwhile are new again when sent again
        return self._totals

    def _count(self, area: str, size: int, new_study: bool) -> None:
        totals = self._totals
        assert totals is not None  # read by _current() first
        area_bytes = {**totals.area_bytes, area: totals.area_bytes.get(area, 0) + size}
        self._totals = replace(totals, bytes=totals.bytes + size, studies=totals.studies + int(new_study),
                               area_bytes=area_bytes)

    @staticmethod
    def _over(quota: Quota, totals: Totals, area: str, size: int, new_study: bool) -> str:
        """What the quota says no to ('' when it fits)."""
        where = f"area {quota.area}" if quota.area else "the archive"
        used = totals.area_bytes.get(area, 0) if quota.area else totals.bytes
        if quota.max_bytes and used + size > quota.max_bytes:
            return f"{where} holds {used} of {quota.max_bytes} bytes"
        if new_study and quota.max_studies and totals.studies >= quota.max_studies:
            return f"{where} holds {totals.studies} of {quota.max_studies} studies"
        if new_study and quota.max_patients and totals.patients >= quota.max_patients:
            return f"{where} holds {totals.patients} of {quota.max_patients} patients"
        return ""

    def _recycle(self, quota: Quota, area: str, size: int, new_study: bool, keep: str) -> None:
        """Delete the oldest unprotected studies (of the quota's area) until the new data fits."""
        from pacsd.services.deletion import NoSuchStudy, StudyProtected, delete_study

        while True:
            candidates = [s for s in unprotected_studies(self.archive.engine, self.home, RECYCLE_AT_ONCE,
                                                         area=quota.area) if s.study_uid != keep]
            if not candidates:
                return
            for study in candidates:
                try:
                    delete_study(self.archive, study.study_uid, by="quota recycling", spare_protected=True)
                except (NoSuchStudy, StudyProtected):
                    continue
                log.info("quota recycling: deleted study %s (%d bytes)", study.study_uid, study.size_bytes)
                if not self._over(quota, self._current(force=True), area, size, new_study):
                    return
