"""Where pynetdicom writes a C-STORE dataset as it arrives: a file on the storage volume.

pynetdicom's chunked receive (`STORE_RECV_CHUNKED_DATASET`) writes each dataset to a
`NamedTemporaryFile`.  We hand it an `IncomingFile` instead: created in the blob store's
incoming folder (so placing the file is a link, not a copy), buffered (no flush per fragment),
and remembering a write error such as a full disk so the handler can answer 0xA700 instead of
the association dying.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pynetdicom import _config, dimse_messages

from pacsd.storage.blobstore import BlobStore, storage_error

log = logging.getLogger(__name__)

_BUFFER = 1 << 20


class IncomingFile:
    """A write-only file with the parts of NamedTemporaryFile that pynetdicom uses."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self.file = self  # pynetdicom calls `.file.flush()` after each fragment
        self.error: OSError | None = None
        self._fp = open(path, "wb", buffering=_BUFFER)
        self._done = False

    def write(self, data: bytes) -> int:
        if self.error is None:
            try:
                self._fp.write(data)
            except OSError as exc:
                self.error = exc
        return len(data)

    def flush(self) -> None:
        """Deliberately nothing: the file is flushed once, when the dataset is complete."""

    def finish(self) -> None:
        """The dataset is complete: flush and close; raise StorageFull if any write failed."""
        self._done = True
        try:
            self._fp.close()
        except OSError as exc:
            self.error = self.error or exc
        if self.error is not None:
            raise storage_error(self.error, "cannot receive the dataset")

    def close(self) -> None:
        """Called by pynetdicom after the handler (which has already consumed the file)."""
        self._done = True
        self._fp.close()

    def __del__(self) -> None:
        # Dropped before completion (the association was aborted mid-dataset): remove the part.
        if not getattr(self, "_done", True):
            self._fp.close()
            Path(self.name).unlink(missing_ok=True)


def incoming_file_of(request) -> IncomingFile | None:
    """The IncomingFile pynetdicom wrote a C-STORE request's dataset to."""
    incoming = getattr(request, "_dataset_file", None)
    return incoming if isinstance(incoming, IncomingFile) else None


def receive_into(blobs: BlobStore) -> None:
    """Make pynetdicom write every received C-STORE dataset into `blobs`' incoming folder."""

    def new_incoming_file(*_args, suffix: str = ".dcm", **_kwargs) -> IncomingFile:
        return IncomingFile(blobs.new_temp_path(suffix=suffix))

    _config.STORE_RECV_CHUNKED_DATASET = True
    dimse_messages.NamedTemporaryFile = new_incoming_file  # type: ignore[assignment]
