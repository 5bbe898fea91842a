"""Assemble the archive from settings: index engine, writer, blob store, layout, ingest.

One `Archive` per process; `net`, `web` and the CLI take what they need from it, call
`start_background()` to run the study-stable detector (and resume end-of-study work), and `close()`
once at shutdown (the detector stops, end-of-study work not started is left pending in the index for
the next start, the writer drains, the engine is disposed).
"""

from __future__ import annotations

import logging
import socket
import threading

from pacsd.config import Settings
from pacsd.dicom.sopclasses import resolve_sop_classes
from pacsd.index.engine import open_index
from pacsd.index.study_folders import StudyFolderClaims
from pacsd.index.shared_writer import WriterClient
from pacsd.index.writer import IndexWriter
from pacsd.services.actionlog import ActionLog
from pacsd.services.audit import AuditTrail
from pacsd.services.audit_syslog import syslog_sender
from pacsd.services.endofstudy import EndOfStudyWork
from pacsd.services.forwarding import Forwarding
from pacsd.services.hooks import HookRunner
from pacsd.services.ingest import Ingest
from pacsd.services.routes import RouteTable, compile_routes
from pacsd.services.scansheet import ScanSheetWriter
from pacsd.services.stable import StudyStableDetector
from pacsd.services.workqueue import WorkQueue
from pacsd.storage.blobstore import BlobStore
from pacsd.storage.layout import make_layout

log = logging.getLogger(__name__)


class Archive:
    def __init__(self, settings: Settings, node: str | None = None, writer_address: str | None = None) -> None:
        """`node` names this process among those sharing the storage folder (default: host and
        DICOM port); its unfinished incoming files from an earlier run are cleared.
        `writer_address`: hand instance rows to the shared writer process there instead of
        committing them in this process."""
        self.settings = settings
        self.routes = RouteTable(compile_routes(settings))  # a bad route stops here, before anything opens
        database = settings.database
        self.engine = open_index(database.target, database.wal_mode, database.auto_upgrade)
        storage = settings.storage
        self.node = node or f"{socket.gethostname()}-{settings.server.port}"
        self.blobs = BlobStore(storage.directory, storage.fsync, storage.file_mode, storage.dir_mode, storage.group,
                               self.node)
        if writer_address is None:
            self.writer = IndexWriter(self.engine, batch=settings.database.commit_batch,
                                      make_durable=self.blobs.make_entries_durable)
        else:
            self.writer = WriterClient(writer_address, self.engine, self.blobs.take_new_entries)
        self.accepted_sop_classes = resolve_sop_classes(settings.accepted_sop_classes)
        self.layout = make_layout(storage.naming, settings, StudyFolderClaims(self.engine))
        self.actions = ActionLog.from_settings(settings)
        self.audit = AuditTrail(self.engine, syslog_sender(settings.audit, settings.server.ae_title))
        self.instance_work = WorkQueue(settings.hooks.workers, "pacsd-instance-hooks")
        self.hooks = HookRunner(settings.hooks, self.engine, self.layout, self.blobs.root, self.instance_work,
                                self.actions)
        self.ingest = Ingest(
            self.blobs,
            self.writer,
            self.layout,
            duplicates=settings.duplicates,
            accepted_sop_classes=self.accepted_sop_classes,
            actions=self.actions,
            on_stored=self.hooks.instance_stored,
            companion_rows=self.routes.companion_rows if self.routes.on_stored else None,
        )
        # Set by `end_of_study.request_stop()`: scan sheets in progress give up too.
        background_stop = threading.Event()
        self.scan_sheets = ScanSheetWriter(self.engine, self.blobs, self.layout, settings.scan_sheets, self.actions,
                                           background_stop)
        steps = [("scan-sheet", self.scan_sheets.write)] if settings.scan_sheets.enabled else []
        self.forwarding = Forwarding(self.engine, settings, self.routes, self.node, self.actions, self.blobs.root,
                                     self._delete_delivered_study)
        steps.append(("hook-on_study_stable", self.hooks.study_stable))
        if self.routes.routes:
            steps.append(("forwarding", self.forwarding.study_stable))
        self.study_work = WorkQueue(settings.hooks.end_of_study_workers, "pacsd-end-of-study")
        self.end_of_study = EndOfStudyWork(self.engine, self.node, self.study_work, self.actions, steps,
                                           background_stop)
        self.stable_detector = StudyStableDetector(self.engine, settings.stable_after,
                                                   self.end_of_study.study_stable, node=self.node)

    def start_background(self) -> None:
        """Queue end-of-study work left undone by an earlier run, and start the study-stable
        detector (the server does; tests may)."""
        self.end_of_study.resume_pending()
        self.stable_detector.start()
        self.forwarding.start()

    def _delete_delivered_study(self, study_uid: str) -> None:
        from pacsd.services.deletion import delete_study

        delete_study(self, study_uid, by="forwarding (delete_after_delivery)")

    def close(self) -> None:
        self.end_of_study.request_stop()  # first: a backlog of end-of-study work never delays a stop
        self.forwarding.stop()  # a batch under way finishes (its timeouts bound it); the rest waits
        self.stable_detector.stop()
        self.instance_work.close()
        self.study_work.close(cancel_pending=True)
        self.writer.close()
        if self.audit.forward is not None:
            self.audit.forward.close()
        self.engine.dispose()
        self.actions.close()
