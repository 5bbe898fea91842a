"""Lossless compression of stored instances, never on the receive path: the background process's
`CompressionJob` (lowest priority) and `pacsd compress` run the same `Compressor`, which writes
the compressed file beside the original, checks its pixels, switches the index row, then removes
the original; a crash at any point leaves one indexed file and a journal entry `recover` clears.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath

from pydicom.uid import UID
from sqlalchemy import Engine

from pacsd.config import CompressionSettings
from pacsd.dicom.compression import LOSSLESS, CannotCompress, assert_same_pixels, compress_into
from pacsd.dicom.transcode import NATIVE
from pacsd.errors import PacsError
from pacsd.index import compression as index
from pacsd.index.compression import Candidate, RuleFilter
from pacsd.services.checksum import sha256_soon
from pacsd.storage.blobstore import BlobStore

log = logging.getLogger(__name__)

LOWEST_PRIORITY = 19  # nice value of the compression thread: receiving always comes first
STOP_WAIT = 10  # seconds a stop waits for the instance being compressed (a crash there is safe too)
TAKE_OVER_AFTER = timedelta(hours=1)  # an unfinished compression this old was abandoned, whoever ran it
RESCAN_EVERY = timedelta(hours=1)  # the job looks again from the start for instances a failure left


class NoCompressionRules(PacsError):
    """`pacsd compress` was asked to run with no `compression.rules` in the config."""


@dataclass
class CompressionReport:
    """What one run did (or, dry, would do); paths relative to the storage folder."""

    compressed: int = 0
    bytes_before: int = 0  # of the files compressed
    bytes_after: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (SOP Instance UID, why), for good
    failed: list[tuple[str, str]] = field(default_factory=list)  # (SOP Instance UID, error), retried later
    planned: list[tuple[str, str, int]] = field(default_factory=list)  # dry run: (SOP Instance UID, syntax, bytes)
    last_pk: int = 0  # the last instance looked at: a later run may go on after it

    @property
    def bytes_saved(self) -> int:
        return self.bytes_before - self.bytes_after

    def as_json(self) -> dict:
        return {"compressed": self.compressed, "bytes_before": self.bytes_before, "bytes_after": self.bytes_after,
                "bytes_saved": self.bytes_saved,
                "skipped": [{"sop_instance_uid": uid, "why": why} for uid, why in self.skipped],
                "failed": [{"sop_instance_uid": uid, "error": error} for uid, error in self.failed],
                "planned": [{"sop_instance_uid": uid, "syntax": syntax, "bytes": size}
                            for uid, syntax, size in self.planned]}


class Compressor:
    """Compresses the instances the rules of `settings` name, one at a time."""

    def __init__(self, engine: Engine, blobs: BlobStore, settings: CompressionSettings, node: str,
                 stop: threading.Event | None = None) -> None:
        self.engine, self.blobs, self.settings, self.node = engine, blobs, settings, node
        self.stop = stop if stop is not None else threading.Event()
        self._filters = [RuleFilter(set(rule.modalities), set(rule.sop_classes), set(rule.areas), blobs.home)
                         for rule in settings.rules]
        self._finished: list[int] = []  # journal entries of compressions done, to remove in one go
        self._last_change: int | None = None  # the changes feed's newest entry when last looked at

    def syntax_for(self, candidate: Candidate) -> str | None:
        """The syntax of the first rule the instance matches."""
        for rule, match in zip(self.settings.rules, self._filters):
            if (not match.modalities or candidate.modality.upper() in match.modalities) and (
                    not match.sop_classes or candidate.sop_class_uid in match.sop_classes) and (
                    not match.areas or self.blobs.area_of(candidate.path) in match.areas):
                return rule.syntax
        return None

    def candidates(self, after_pk: int, received_before: datetime, limit: int) -> list[Candidate]:
        return index.candidates(self.engine, [str(uid) for uid in NATIVE], self._filters, received_before,
                                after_pk, limit)

    def run(self, received_before: datetime | None = None, limit: int | None = None, dry_run: bool = False,
            progress: Callable[[Candidate], None] | None = None, after_pk: int = 0) -> CompressionReport:
        """Compress every candidate received before `received_before` (default: now), at most `limit`;
        `dry_run` only lists them.  Returns early, work left for later, once `stop` is set."""
        if not self.settings.rules:
            raise NoCompressionRules("no compression.rules in the config: nothing says what to compress, or how")
        received_before = received_before or datetime.now(timezone.utc)
        report = CompressionReport()
        try:
            self._run(report, received_before, limit, dry_run, progress, after_pk)
        finally:
            index.journal_finish(self.engine, *self._finished)
            self._finished.clear()
        return report

    def _run(self, report: CompressionReport, received_before: datetime, limit: int | None, dry_run: bool,
             progress: Callable[[Candidate], None] | None, after_pk: int) -> None:
        done = 0
        while not self.stop.is_set() and (limit is None or done < limit):
            batch = self.candidates(after_pk, received_before, min(self.settings.batch, (limit or 1 << 30) - done))
            if not batch:
                break
            for candidate in batch:
                if self.stop.is_set():
                    break
                after_pk = report.last_pk = candidate.pk
                done += 1
                syntax = self.syntax_for(candidate)
                if syntax is None:
                    continue
                if dry_run:
                    report.planned.append((candidate.sop_uid, UID(syntax).name, candidate.size_bytes))
                else:
                    started = time.monotonic()
                    self.compress(candidate, syntax, report)
                    self._pace(time.monotonic() - started)
                if progress is not None:
                    progress(candidate)
            index.journal_finish(self.engine, *self._finished)
            self._finished.clear()

    def _pace(self, took: float) -> None:
        """While instances are arriving, work only `busy_share` of the time: the index lock, the
        disk and the CPU are the receiving processes' first."""
        latest = index.latest_change(self.engine)
        receiving = self._last_change is not None and latest != self._last_change
        self._last_change = latest
        if receiving and self.settings.busy_share < 1:
            self.stop.wait(took * (1 / self.settings.busy_share - 1))

    def compress(self, candidate: Candidate, syntax: str, report: CompressionReport) -> None:
        """Compress one instance; what happened goes into `report` (and the index, when given up)."""
        try:
            size = self._compress(candidate, syntax)
        except CannotCompress as exc:
            log.info("not compressing %s (%s): %s", candidate.sop_uid, candidate.path, exc)
            index.record_outcome(self.engine, candidate, str(exc), permanent=True)
            report.skipped.append((candidate.sop_uid, str(exc)))
            return
        except Exception as exc:  # disk, I/O, memory: may pass; retried up to MAX_ATTEMPTS
            log.warning("compressing %s (%s) failed: %s", candidate.sop_uid, candidate.path, exc)
            index.record_outcome(self.engine, candidate, f"{type(exc).__name__}: {exc}", permanent=False)
            report.failed.append((candidate.sop_uid, str(exc)))
            return
        if size is not None:
            report.compressed += 1
            report.bytes_before += candidate.size_bytes
            report.bytes_after += size

    def _compress(self, candidate: Candidate, syntax: str) -> int | None:
        """The compressed file's size, or None when the instance changed meanwhile (nothing done)."""
        source = self.blobs.absolute(candidate.path)
        if os.path.getsize(source) > self.settings.max_file_bytes:
            raise CannotCompress(f"larger than compression.max_file_bytes ({self.settings.max_file_bytes})")
        temp, fd = self.blobs.new_temp_file()
        try:
            with open(fd, "wb") as out:  # made durable once placed (make_durable), before the switch
                original = compress_into(source, syntax, out)
            assert_same_pixels(temp, original, candidate.sop_uid)
            del original
            size = os.path.getsize(temp)
            if size >= candidate.size_bytes:
                raise CannotCompress(f"{UID(syntax).name} is no smaller ({size} bytes, {candidate.size_bytes} stored)")
            if candidate.checksum and sha256_soon(source).result() != candidate.checksum:
                raise CannotCompress("the stored file no longer has its indexed SHA-256: see `pacsd check --checksums`")
            return self._switch(candidate, syntax, temp, size, sha256_soon(temp).result())
        finally:
            temp.unlink(missing_ok=True)

    def _switch(self, candidate: Candidate, syntax: str, temp: Path, size: int, checksum: str) -> int | None:
        """Place the checked file beside the original, durably; point the row at it; remove the original."""
        new_path = self._free_name(candidate.path, syntax)
        journal = index.journal_start(self.engine, candidate, new_path, self.node)
        placed = False
        try:
            self.blobs.make_private(temp, self.blobs.file_mode)
            if self.blobs.area_of(new_path) == self.blobs.home:
                os.link(temp, self.blobs.path_of(new_path))
                placed = True
                self.blobs.make_durable([new_path])
            else:  # another storage area, maybe another volume: copied there durably
                placed = True
                if self.blobs.copy_in(temp, new_path) != new_path:
                    raise OSError(f"{new_path} was taken meanwhile")
            switched = index.switch_to_compressed(self.engine, journal, candidate, new_path, size, checksum, syntax)
        except BaseException:
            if not placed:
                index.journal_finish(self.engine, journal)
            else:  # the switch may have committed (a connection lost in COMMIT): ask the index which file stays
                self._recover([entry for entry in index.journal_entries(self.engine, self.node)
                               if entry.pk == journal])
            raise
        if not switched:
            log.info("%s changed while it was compressed: left as it is now", candidate.sop_uid)
            self.blobs.remove(new_path)
            index.journal_finish(self.engine, journal)
            return None
        self.blobs.remove(candidate.path)
        self._finished.append(journal)  # removed with others: a crash before leaves nothing to undo
        log.debug("compressed %s: %s, %d -> %d bytes", candidate.sop_uid, UID(syntax).name, candidate.size_bytes, size)
        return size

    def _free_name(self, path: str, syntax: str) -> str:
        """`name.jls.dcm` beside `name.dcm` (`name.jls_1.dcm`, ... when taken)."""
        original = PurePosixPath(path)
        stem = original.name.removesuffix(original.suffix) if original.suffix.lower() == ".dcm" else original.name
        for attempt in range(10_000):
            name = f"{stem}.{LOSSLESS[UID(syntax)]}{f'_{attempt}' if attempt else ''}.dcm"
            candidate = original.with_name(name)
            if not self.blobs.path_of(candidate).exists():
                return str(candidate)
        raise OSError(f"no free name beside {path}")

    def recover(self, node: str | None = None, started_before: datetime | None = None) -> list[str]:
        """Finish compressions a crash interrupted (this node's or, for `pacsd check`, any older than
        a moment): of the two files, remove the one no instance row names.  The removed paths."""
        return self._recover(index.journal_entries(self.engine, node, started_before))

    def _recover(self, entries: list[index.JournalEntry]) -> list[str]:
        removed = []
        for entry in entries:
            for path in index.take_journal_entry(self.engine, entry) or ():
                if self.blobs.path_of(path).exists():
                    self.blobs.remove(path)
                    removed.append(path)
                    log.warning("compression of instance %d was interrupted: removed %s, which no row names",
                                entry.instance_pk, path)
        return removed


class CompressionJob:
    """The background process's compression thread: recovers what a crash left, then compresses
    what the rules name as it arrives (`compression.after` seconds after), at the lowest priority."""

    def __init__(self, compressor: Compressor) -> None:
        self.compressor = compressor
        self._thread = threading.Thread(target=self._run, name="pacsd-compression", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.compressor.stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=STOP_WAIT)

    def _run(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)  # this thread only (Linux)
        except OSError as exc:
            log.warning("compression runs at normal priority: %s", exc)
        compressor, settings = self.compressor, self.compressor.settings
        try:
            compressor.recover(node=compressor.node)
            # another node's (or a `pacsd compress` that died): its entries live seconds, not this long
            compressor.recover(started_before=datetime.now(timezone.utc) - TAKE_OVER_AFTER)
        except Exception:
            log.exception("recovering interrupted compressions failed")
        cursor, rescan_at = 0, datetime.now(timezone.utc) + RESCAN_EVERY
        while not compressor.stop.is_set():
            now = datetime.now(timezone.utc)
            if now >= rescan_at:
                cursor, rescan_at = 0, now + RESCAN_EVERY
            try:
                report = compressor.run(now - timedelta(seconds=settings.after), limit=settings.batch, after_pk=cursor)
            except Exception:
                log.exception("compression pass failed")
                compressor.stop.wait(settings.idle_wait)
                continue
            if report.compressed or report.skipped or report.failed:
                log.info("compressed %d instance(s), %d bytes saved; %d skipped, %d failed", report.compressed,
                         report.bytes_saved, len(report.skipped), len(report.failed))
            if report.last_pk:
                cursor = report.last_pk
            else:
                compressor.stop.wait(settings.idle_wait)
