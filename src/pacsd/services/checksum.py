"""The SHA-256 of a file being ingested, computed beside the header parse when the file is large.

hashlib releases the GIL while it hashes, so a large image's digest (~0.4 ms for 512 KiB) costs
the receive path nothing when a helper thread computes it while the header is parsed.  Small
files are hashed at once: handing them to a thread costs more than hashing them.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from io import BufferedReader
from pathlib import Path

PARALLEL_FROM = 128 * 1024  # bytes: from this size on the digest is computed in a helper thread

_hashers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sha256")


def sha256_soon(path: Path | str) -> Future:
    """A future of the file's hex digest.  The file is opened here, so the caller may rename or
    remove it meanwhile; an error opening or reading it is raised by `result()`."""
    done: Future = Future()
    try:
        f = open(path, "rb")
        size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        done.set_exception(exc)
        return done
    if size >= PARALLEL_FROM:
        return _hashers.submit(_digest_and_close, f)
    try:
        with f:  # at once, in one read: file_digest's 256 KiB buffer costs more than the hash
            done.set_result(hashlib.sha256(f.read()).hexdigest())
    except OSError as exc:
        done.set_exception(exc)
    return done


class KnownDigest:
    """A digest computed already, read as a future's: `result()` (no Future's lock and condition,
    made for every small received image)."""

    __slots__ = ("digest",)

    def __init__(self, digest: str) -> None:
        self.digest = digest

    def result(self) -> str:
        return self.digest


def sha256_of(content: bytes) -> KnownDigest:
    """The digest of bytes in memory, read as `sha256_soon`'s future is read."""
    return KnownDigest(hashlib.sha256(content).hexdigest())


def _digest_and_close(f: BufferedReader) -> str:
    with f:
        return hashlib.file_digest(f, "sha256").hexdigest()
