"""Key files: read a secret key, made with random bytes (owner-only) when it does not exist yet.

Used for the session-signing key and the de-identification project key; nothing else lives here.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

MIN_KEY_BYTES = 16


def key_from_file(path: Path, what: str) -> bytes:
    """The key in `path`, created with 32 random bytes, readable by the owner only, when missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(32))
    key = path.read_bytes()
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"{path}: the {what} is too short (remove it to have a new one made)")
    return key
