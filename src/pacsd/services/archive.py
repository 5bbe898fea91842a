"""Assemble the archive from settings: index engine, writer, blob store, layout, ingest.

One `Archive` per process; `net`, `web` and the CLI take what they need from it, call
`start_background()` to run the study-stable detector, and `close()` once at shutdown (the
detector stops, queued jobs finish, the writer drains, the engine is disposed).
"""

from __future__ import annotations

import logging
import socket

from pacsd.config import Settings
from pacsd.dicom.sopclasses import resolve_sop_classes
from pacsd.index.engine import open_index
from pacsd.index.writer import IndexWriter
from pacsd.services.actionlog import ActionLog
from pacsd.services.hooks import HookRunner
from pacsd.services.ingest import Ingest
from pacsd.services.scansheet import ScanSheetWriter
from pacsd.services.stable import StudyStableDetector
from pacsd.services.workqueue import WorkQueue
from pacsd.storage.blobstore import BlobStore
from pacsd.storage.layout import make_layout

log = logging.getLogger(__name__)


class Archive:
    def __init__(self, settings: Settings, node: str | None = None) -> None:
        """`node` names this process among those sharing the storage folder (default: host and
        DICOM port); its unfinished incoming files from an earlier run are cleared."""
        self.settings = settings
        database = settings.database
        self.engine = open_index(database.target, database.wal_mode, database.auto_upgrade)
        storage = settings.storage
        self.blobs = BlobStore(storage.directory, storage.fsync, storage.file_mode, storage.dir_mode, storage.group,
                               node or f"{socket.gethostname()}-{settings.server.port}")
        self.writer = IndexWriter(self.engine, batch=settings.database.commit_batch,
                                  make_durable=self.blobs.make_entries_durable)
        self.accepted_sop_classes = resolve_sop_classes(settings.accepted_sop_classes)
        self.layout = make_layout(storage.naming, settings)
        self.actions = ActionLog.from_settings(settings)
        self.work = WorkQueue(settings.hooks.workers)
        self.hooks = HookRunner(settings.hooks, self.engine, self.layout, self.blobs.root, self.work, self.actions)
        self.ingest = Ingest(
            self.blobs,
            self.writer,
            self.layout,
            duplicates=settings.duplicates,
            accepted_sop_classes=self.accepted_sop_classes,
            actions=self.actions,
            on_stored=self.hooks.instance_stored,
        )
        self.scan_sheets = ScanSheetWriter(self.engine, self.blobs, self.layout, settings.scan_sheets, self.actions)
        self.stable_detector = StudyStableDetector(self.engine, settings.stable_after, self._on_study_stable)

    def start_background(self) -> None:
        """Start the study-stable detector (the server does; tests may)."""
        self.stable_detector.start()

    def _on_study_stable(self, study_uid: str) -> None:
        self.actions.record("study-stable", study=study_uid)
        self.work.submit(f"end of study {study_uid}", lambda: self._end_of_study(study_uid))

    def _end_of_study(self, study_uid: str) -> None:
        if self.settings.scan_sheets.enabled:
            try:
                self.scan_sheets.write(study_uid)
            except Exception as exc:
                log.exception("scan sheet of %s failed", study_uid)
                self.actions.record("scan-sheet-failed", study=study_uid, error=exc)
        self.hooks.study_stable(study_uid)

    def close(self) -> None:
        self.stable_detector.stop()
        self.work.close()
        self.writer.close()
        self.engine.dispose()
        self.actions.close()
