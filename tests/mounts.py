"""Real filesystem conditions for tests, made with mount(8): read-only folders, small volumes.

These need root (CI runs as root); as root a refused mount fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a filesystem needs root (CI runs as root)")


def mount(*args: str) -> None:
    """Run mount(8); as root (where these tests run) a refusal fails the test rather than skips it."""
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"mount {' '.join(args)} failed: {result.stderr.strip()}")


@contextmanager
def read_only(folder: Path):
    """`folder` as a read-only bind mount of itself: root ignores chmod, not a read-only mount."""
    mount("--bind", str(folder), str(folder))
    try:
        mount("-o", "remount,bind,ro", str(folder))
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)
