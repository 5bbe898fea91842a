"""The application log: pacsd's own lines at `logging.level`, the libraries' (fontTools,
pynetdicom, uvicorn...) at `logging.libraries_level` (WARNING unless asked), and where the logs go."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import logging, sys
from pacsd.config import LoggingSettings
from pacsd.logsetup import setup_logging
setup_logging(LoggingSettings(directory=sys.argv[1], **dict(a.split("=") for a in sys.argv[2:])), console=False)
logging.getLogger("fontTools.subset").info("glyph table")
logging.getLogger("fontTools.subset").warning("font trouble")
logging.getLogger("uvicorn.error").info("uvicorn chatter")
logging.getLogger("pacsd.services.ingest").info("stored one")
"""


def _app_log(tmp_path, *settings: str) -> str:
    subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), *settings], check=True, timeout=60)
    return (tmp_path / "pacsd.log").read_text()


def test_libraries_log_their_warnings_only(tmp_path):
    log = _app_log(tmp_path)
    assert "stored one" in log and "font trouble" in log
    assert "glyph table" not in log and "uvicorn chatter" not in log
    assert f"logs in {tmp_path.resolve()}: pacsd.log (application), connections.log" in log


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_libraries_level_lets_them_through_when_asked(tmp_path, level):
    log = _app_log(tmp_path, f"libraries_level={level}")
    assert "glyph table" in log and "uvicorn chatter" in log and "stored one" in log
