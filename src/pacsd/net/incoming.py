"""Where pynetdicom writes a C-STORE dataset as it arrives: a file on the storage volume.

pynetdicom's chunked receive (`STORE_RECV_CHUNKED_DATASET`) writes each dataset to a
`NamedTemporaryFile`.  We hand it an `IncomingFile` instead: created in the blob store's
incoming folder (so placing the file is a link, not a copy), buffered (no flush per fragment),
and remembering a write error such as a full disk so the handler can answer 0xA700 instead of
the association dying.  A file that cannot even be created (read-only or missing volume)
starts in that error state: the dataset is read and discarded, and the C-STORE gets 0xA700.

A dataset of up to `KEEP_IN_MEMORY` bytes is also kept in memory once complete (`content`):
ingest hashes and parses those bytes instead of opening the file twice more (for a 64x64
image the two opens, their reads and Python file objects cost more than the parse).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

from pynetdicom import _config, dimse_messages

from pacsd.errors import storage_error

log = logging.getLogger(__name__)

_BUFFER = 1 << 20  # bytes gathered before they are written out
KEEP_IN_MEMORY = 128 * 1024  # a dataset up to this long is kept for ingest (`content`)


class IncomingFolder(Protocol):
    """Where received files are made (`pacsd.storage.blobstore.BlobStore`)."""

    incoming: Path

    def new_temp_file(self, suffix: str = ".dcm") -> tuple[Path, int]: ...

    def uncreated_temp_path(self, suffix: str = ".dcm") -> Path: ...


class IncomingFile:
    """A write-only file with the parts of NamedTemporaryFile that pynetdicom uses.

    `error` set (given, or raised by open/write/close) means the dataset is being discarded:
    writes are dropped, `finish` removes what was written and raises StorageFull."""

    def __init__(self, path: Path, error: OSError | None = None, fd: int | None = None) -> None:
        self.name = str(path)
        self.file = self  # pynetdicom calls `.file.flush()` after each fragment
        self.error = error
        self._fd: int | None = None
        self._pending = bytearray()  # written, not yet written out
        self._length = 0  # bytes written in all
        self._content: bytes | None = None
        self._done = False
        self._exists = error is None  # a file given with an error was never created
        if error is None:
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600) \
                    if fd is None else fd
            except OSError as exc:
                self.error = exc
                self._discard()

    @property
    def content(self) -> bytes | None:
        """The whole dataset file once `finish` succeeded, if it is at most KEEP_IN_MEMORY bytes."""
        return self._content

    def write(self, data: bytes) -> int:
        if self.error is None:
            self._pending += data
            self._length += len(data)
            if len(self._pending) >= _BUFFER:
                self._write_out()
        return len(data)

    def flush(self) -> None:
        """Deliberately nothing: the file is flushed once, when the dataset is complete."""

    def finish(self) -> None:
        """The dataset is complete: write out and close; if anything failed, remove the file and
        raise StorageFull."""
        self._done = True
        small = self._length <= KEEP_IN_MEMORY
        if small and self.error is None:
            self._content = bytes(self._pending)
        self._close()
        if self.error is not None:
            self._content = None
            self._discard()
            raise storage_error(self.error, "cannot receive the dataset")

    def close(self) -> None:
        """Called by pynetdicom after the handler (which has already consumed the file)."""
        self._done = True
        self._close()

    def _write_out(self) -> None:
        view = memoryview(self._pending)
        try:
            while view:
                view = view[os.write(self._fd, view):]  # type: ignore[arg-type]
        except OSError as exc:
            self.error = exc
        finally:
            view.release()
        self._pending.clear()

    def _close(self) -> None:
        if self._fd is None:
            return
        if self.error is None and self._pending:
            self._write_out()
        self._pending = bytearray()
        try:
            os.close(self._fd)
        except OSError as exc:
            self.error = self.error or exc
        self._fd = None

    def __del__(self) -> None:
        # Dropped before completion (the association was aborted mid-dataset): remove the part.
        if not getattr(self, "_done", True):
            self._close()
            self._discard()

    def _discard(self) -> None:
        """Remove the partly written file; a volume that refuses even that is only logged."""
        if not self._exists:
            return
        self._exists = False
        try:
            Path(self.name).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove the unfinished incoming file %s: %s", self.name, exc)


def incoming_file_of(request) -> IncomingFile | None:
    """The IncomingFile pynetdicom wrote a C-STORE request's dataset to."""
    incoming = getattr(request, "_dataset_file", None)
    return incoming if isinstance(incoming, IncomingFile) else None


def new_incoming_file(blobs: IncomingFolder, suffix: str = ".dcm") -> IncomingFile:
    """A new IncomingFile in `blobs`' incoming folder (in its error state if none can be made)."""
    try:
        path, fd = blobs.new_temp_file(suffix=suffix)
        return IncomingFile(path, fd=fd)
    except OSError as exc:  # raised here it would kill the association: answer 0xA700 instead
        log.error("cannot create a file in %s: %s", blobs.incoming, exc)
        return IncomingFile(blobs.uncreated_temp_path(suffix), error=exc)


def receive_into(blobs: IncomingFolder) -> None:
    """Make pynetdicom write every received C-STORE dataset into `blobs`' incoming folder."""
    _config.STORE_RECV_CHUNKED_DATASET = True
    dimse_messages.NamedTemporaryFile = (  # type: ignore[assignment]
        lambda *_args, suffix=".dcm", **_kwargs: new_incoming_file(blobs, suffix))
