"""Errors a user can cause (bad config, bad file, unknown AE).

Each is a `PacsError`; the CLI prints its message without a traceback, so the message must say
what is wrong and what to do about it.
"""

import errno


class PacsError(Exception):
    """Base of every error pacsd reports to a user."""


class ConfigError(PacsError):
    """The configuration file or a command-line flag is invalid."""


class InvalidDicom(PacsError):
    """A file or dataset is not readable DICOM, is truncated, or lacks a required element."""


class DatabaseUnreachable(PacsError):
    """The index database cannot be opened (no such server, refused login, unreadable file)."""


class StorageFull(PacsError):
    """The storage volume has no room (or refused the write); nothing was kept."""


_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def is_full_error(exc: OSError) -> bool:
    return exc.errno in _FULL_ERRNOS


def storage_error(exc: OSError, what: str) -> StorageFull:
    """A failed write to the storage volume as the StorageFull its sender is told about."""
    reason = "the storage volume is full" if is_full_error(exc) else f"cannot write: {exc.strerror}"
    return StorageFull(f"{what}: {reason}")


class NoPixelData(PacsError):
    """The object holds no image (SR, encapsulated PDF, RT plan, presentation state...)."""


class PixelDecodeError(PacsError):
    """The pixel data is present but cannot be decoded (unsupported or damaged encoding)."""


class InvalidTagValue(PacsError):
    """A tag name, path or value given by a user does not fit the element or its VR."""


class FrameOutOfRange(PacsError):
    """A frame number was asked for that the multi-frame object does not have."""


class TagNotFound(InvalidTagValue):
    """The element (or a sequence item on the way to it) is not in the file."""


class StartupError(PacsError):
    """The server cannot start here: a port is taken, a folder cannot be written."""
