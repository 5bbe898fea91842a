"""Assemble the archive from settings: index engine, writer, blob store, layout, ingest.

One `Archive` per process, with its listeners (`pacsd.services.listeners`: built-in and from
packages); `net`, `web` and the CLI take what they need from it, call `start_background()` to run
the study-stable detector (and resume end-of-study work), the compression job and the storage
lifecycle (moves, retention), and `close()` once at shutdown (the detector stops, end-of-study
work not started is left pending in the index for the next start, the writer drains, the engine
is disposed).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

from pacsd.config import Settings
from pacsd.dicom.sopclasses import resolve_sop_classes
from pacsd.index.engine import open_index
from pacsd.index.shared_writer import WriterClient
from pacsd.index.solo_writer import SoloWhenAloneWriter
from pacsd.index.study_folders import StudyFolderClaims
from pacsd.index.writer import IndexWriter
from pacsd.services.actionlog import ActionLog
from pacsd.services.audit import AuditTrail
from pacsd.services.audit_syslog import syslog_sender
from pacsd.services.compression import CompressionJob, Compressor
from pacsd.services.end_of_study import EndOfStudyWork
from pacsd.services.forwarding import Forwarding
from pacsd.services.hooks import HookRunner
from pacsd.services.ingest import Ingest
from pacsd.services.listeners import Listeners
from pacsd.services.quotas import QuotaGuard
from pacsd.services.remote_nodes import RemoteNodes
from pacsd.services.routes import RouteTable, compile_routes
from pacsd.services.scansheet import ScanSheetWriter
from pacsd.services.study_stable import StudyStableDetector
from pacsd.services.workqueue import WorkQueue
from pacsd.storage.blobstore import BlobStore
from pacsd.storage.schemes import make_layout

log = logging.getLogger(__name__)


class Archive:
    def __init__(self, settings: Settings, node: str | None = None, writer_address: str | None = None,
                 alone: Callable[[], bool] | None = None) -> None:
        """`node` names this process among those sharing the storage folder (default: host and
        DICOM port); its unfinished incoming files from an earlier run are cleared.
        `writer_address`: hand instance rows to the shared writer process there instead of
        committing them in this process; `alone()`: whether this process may commit its rows
        itself for now (a receiving process while no other one receives)."""
        self.settings = settings
        self.routes = RouteTable(compile_routes(settings))  # a bad route stops here, before anything opens
        database = settings.database
        self.engine = open_index(database.target, database.wal_mode, database.auto_upgrade)
        storage = settings.storage
        self.node = node or f"{socket.gethostname()}-{settings.server.port}"
        self.blobs = BlobStore.for_settings(storage, self.node)
        self.writer: IndexWriter | WriterClient | SoloWhenAloneWriter
        if writer_address is None:
            self.writer = self._own_writer()
        elif alone is None:
            self.writer = WriterClient(writer_address, self.engine, self.blobs.take_new_entries)
        else:
            self.writer = SoloWhenAloneWriter(
                self._own_writer(), WriterClient(writer_address, self.engine, self.blobs.take_new_entries), alone)
        self.accepted_sop_classes = resolve_sop_classes(settings.accepted_sop_classes)
        self.layout = make_layout(storage.naming, settings, StudyFolderClaims(self.engine))
        self.actions = ActionLog.from_settings(settings)
        self.audit = AuditTrail(self.engine, syslog_sender(settings.audit, settings.server.ae_title))
        self.instance_work = WorkQueue(settings.hooks.workers, "pacsd-instance-hooks")
        self.hooks = HookRunner(settings.hooks, self.engine, self.layout, self.blobs.path_of, self.instance_work,
                                self.actions)
        self.quotas = QuotaGuard(self)  # a filter among the built-in listeners
        # Set by `end_of_study.request_stop()`: scan sheets in progress give up too.
        background_stop = threading.Event()
        self.scan_sheets = ScanSheetWriter(self.engine, self.blobs, self.layout, settings.scan_sheets, self.actions,
                                           background_stop)
        self.forwarding = Forwarding(self.engine, settings, self.routes, self.node, self.actions, self.blobs.path_of,
                                     self._delete_delivered_study)
        self.listeners = Listeners(self).load()  # after what the built-in listeners are made of
        self.remote = RemoteNodes(settings, self.listeners.dicom_client())
        self.forwarding.client = self.remote.client
        self.ingest = Ingest(self.blobs, self.writer, self.layout, duplicates=settings.duplicates,
                             accepted_sop_classes=self.accepted_sop_classes, listeners=self.listeners)
        self.study_work = WorkQueue(settings.hooks.end_of_study_workers, "pacsd-end-of-study")
        self.end_of_study = EndOfStudyWork(self.engine, self.node, self.study_work, self.actions,
                                           self.listeners.study_stable_steps(), background_stop)
        self.stable_detector = StudyStableDetector(self.engine, settings.stable_after,
                                                   self.end_of_study.study_stable, node=self.node)
        self.compressor = Compressor(self.engine, self.blobs, settings.compression, self.node)
        self.compression_job = CompressionJob(self.compressor) if settings.compression.enabled else None
        from pacsd.services.lifecycle import StorageLifecycle  # it imports this module's Archive

        self.lifecycle = StorageLifecycle(self)

    def _own_writer(self) -> IndexWriter:
        return IndexWriter(self.engine, batch=self.settings.database.commit_batch,
                           make_durable=self.blobs.make_entries_durable)

    def start_background(self) -> None:
        """Queue end-of-study work left undone by an earlier run, and start the study-stable
        detector (the server does; tests may)."""
        self.end_of_study.resume_pending()
        self.stable_detector.start()
        if self.compression_job is not None:
            self.compression_job.start()
        self.lifecycle.start()
        self.forwarding.start()

    def _delete_delivered_study(self, study_uid: str) -> None:
        from pacsd.services.deletion import delete_study

        delete_study(self, study_uid, by="forwarding (delete_after_delivery)")

    def close(self) -> None:
        self.end_of_study.request_stop()  # first: a backlog of end-of-study work never delays a stop
        self.forwarding.stop()  # a batch under way finishes (its timeouts bound it); the rest waits
        self.lifecycle.stop()
        self.stable_detector.stop()
        if self.compression_job is not None:
            self.compression_job.stop()  # the instance being compressed is finished or given up
        self.instance_work.close()
        self.study_work.close(cancel_pending=True)
        self.writer.close()
        if self.audit.forward is not None:
            self.audit.forward.close()
        self.engine.dispose()
        self.actions.close()
