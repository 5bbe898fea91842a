"""What each child of a multi-process `pacsd serve` runs (see `pacsd.cli.supervisor`).

Each role builds what it needs from the settings, calls `ready()` once it serves, and returns
after SIGTERM or SIGINT, having stopped cleanly.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable

from pacsd.config import Settings
from pacsd.index.solo_writer import SoloWhenAloneWriter
from pacsd.net.receiving_load import ReceivingLoad
from pacsd.services import hook_relay

log = logging.getLogger(__name__)

BACKGROUND_NICENESS = 10  # end-of-study work yields the CPU to receiving processes


def _stop_event() -> threading.Event:
    """Set by SIGTERM, which the parent sends in order (receivers first, the writer last).
    SIGINT is ignored: Ctrl-C in a terminal reaches every process of the group at once, and the
    parent turns it into that ordered stop."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return stop


def run_writer(settings: Settings, listener: socket.socket, node: str, ready: Callable[[], None]) -> None:
    """The index writer: commits the rows of every process in shared groups."""
    from pacsd.index.engine import open_index
    from pacsd.index.shared_writer import SharedWriterLoop
    from pacsd.storage.blobstore import BlobStore

    database, storage = settings.database, settings.storage
    engine = open_index(database.target, database.wal_mode, upgrade=False)
    files = BlobStore.for_settings(storage, node)
    loop = SharedWriterLoop(listener, engine, database.commit_batch, files)
    signal.signal(signal.SIGTERM, lambda *_: loop.stop())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # see _stop_event
    ready()
    try:
        loop.run()
    finally:
        engine.dispose()


def run_receiver(settings: Settings, number: int, count: int, channel: socket.socket, writer_address: str,
                 hooks_out: socket.socket, node: str, ready: Callable[[], None], load: ReceivingLoad) -> None:
    """A receiving process: the DICOM associations its parent hands over (its on_instance hooks
    are sent to the background process).  While no other receiving process holds an association
    (`load`), it commits its index rows itself (`database.solo_commit`)."""
    from pacsd.net.association_board import BoardPublisher, board_folder
    from pacsd.net.scp import DicomServer
    from pacsd.services.archive import Archive

    stop = _stop_event()
    log.info("receiving process %d of %d (pid %d)", number, count, os.getpid())
    alone = (lambda: not load.others_busy(number)) if settings.database.solo_commit else None
    archive = Archive(settings, node, writer_address=writer_address, alone=alone)
    archive.hooks.relay = hook_relay.sender(hooks_out)
    server = DicomServer(settings, archive, handoff=channel)
    board = BoardPublisher(server.connections, board_folder(settings.storage.directory, os.getppid()))
    try:
        server.start()
        board.start()
        ready()
        stop.wait()
    finally:
        server.stop()
        board.stop()
        writer = archive.writer
        if isinstance(writer, SoloWhenAloneWriter):
            log.info("receiving process %d: %d rows committed here, %d through the writer process",
                     number, writer.local_writes, writer.shared_writes)
        archive.close()


def run_web(settings: Settings, writer_address: str, node: str, ready: Callable[[], None]) -> None:
    """The web process: DICOMweb and the web interface (STOW-RS stores through the writer)."""
    from pacsd.net.association_board import BoardReader, board_folder
    from pacsd.services.archive import Archive
    from pacsd.web.server import WebServer

    stop = _stop_event()
    archive = Archive(settings, node, writer_address=writer_address)
    live = BoardReader(board_folder(settings.storage.directory, os.getppid()))
    web = WebServer(archive, settings.http.host, settings.http.port, live)
    try:
        web.start()
        ready()
        stop.wait()
    finally:
        web.stop()
        archive.close()


def run_background(settings: Settings, writer_address: str, hooks_in: socket.socket, node: str,
                   ready: Callable[[], None]) -> None:
    """The background process, at lower priority: study-stable detection and end-of-study work
    (scan sheets, hooks), resumed from the index after a restart; the receiving processes'
    on_instance hooks; Storage Commitment reports that fall due (retries, after a restart)."""
    from pacsd.net.commitment_scp import commitment_sweeper
    from pacsd.services.archive import Archive

    os.nice(BACKGROUND_NICENESS)
    stop = _stop_event()
    archive = Archive(settings, node, writer_address=writer_address)
    commitments = commitment_sweeper(settings, archive)
    try:
        hook_relay.RelayListener(hooks_in, archive.hooks.run_instance_hook).start()
        archive.start_background()
        commitments.start()
        ready()
        stop.wait()
    finally:
        commitments.stop(settings.server.shutdown_grace)
        archive.close()
