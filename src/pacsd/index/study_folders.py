"""Each study's folder and account, claimed once, when its first instance is placed: one insert
guarded by unique study and folder columns, so nodes sharing a database agree on the first
claimant and a folder another study holds is never handed out again (`<folder>_2`, `_3`, ...).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from typing import NamedTuple

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from pacsd.index.schema import study_folders

log = logging.getLogger(__name__)

MAX_SUFFIX = 10_000  # `<folder>_N`: far beyond any real run of studies with the same tags


class ClaimedFolder(NamedTuple):
    account: str
    folder: str  # relative to the storage root


class StudyFolderClaims:
    """`claim(study_uid, account, folder)` -> the study's (account, folder) for good."""

    def __init__(self, engine: Engine, remembered: int = 4096) -> None:
        self.engine = engine
        self.remembered = remembered
        self._known: OrderedDict[str, ClaimedFolder] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, study_uid: str, account: str, folder: str) -> ClaimedFolder:
        """The study's claim; made now with `account` and `folder` (or the first free
        `<folder>_N`) when the study has none yet."""
        with self._lock:
            known = self._known.get(study_uid)
        if known is None:
            known = self._claim(study_uid, account, folder)
            with self._lock:
                self._known[study_uid] = known
                while len(self._known) > self.remembered:
                    self._known.popitem(last=False)
        return known

    def _claim(self, study_uid: str, account: str, folder: str) -> ClaimedFolder:
        for number in range(1, MAX_SUFFIX + 1):
            existing = self.claimed(study_uid)
            if existing is not None:
                return existing
            candidate = folder if number == 1 else f"{folder}_{number}"
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(study_folders).values(
                        study_uid=study_uid, account=account, folder=candidate,
                        claimed_at=datetime.now(timezone.utc)))
            except IntegrityError:
                continue  # the folder is another study's, or this study was claimed meanwhile
            if number > 1:
                log.warning("study %s: folder %r holds another study; this one is filed in %r",
                            study_uid, folder, candidate)
            return ClaimedFolder(account, candidate)
        raise RuntimeError(f"no free folder for study {study_uid} after {folder}_{MAX_SUFFIX}")

    def claimed(self, study_uid: str) -> ClaimedFolder | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(study_folders.c.account, study_folders.c.folder)
                               .where(study_folders.c.study_uid == study_uid)).first()
        return ClaimedFolder(row.account, row.folder) if row is not None else None
