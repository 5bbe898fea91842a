"""Lint and types as part of `make test`: ruff (pyflakes, bugbear, isort; pyproject's
[tool.ruff]) over src, tests and bench, and mypy over services, index, storage and dicom
(pyproject's [tool.mypy]: every definition annotated).  Both report what they find in the
failure message.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("rules", [("--extend-ignore", "I"), ("--select", "I")], ids=["pyflakes-bugbear", "isort"])
def test_ruff(rules):
    result = run("ruff", "check", "--no-cache", *rules, "src", "tests", "bench")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_mypy():
    result = run("mypy", "--no-incremental")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
