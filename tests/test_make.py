"""The set-up `make run` and `make test` do on a fresh Debian machine.

python3-venv is installed before the venv is made when the interpreter lacks ensurepip, and
`make run` goes on (without /viewer) when npm is there but fetching the viewer fails.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import REPO, free_port

DEPS_SCRIPT = REPO / "scripts" / "install-system-deps.sh"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={key: value for key, value in {**os.environ, **(env or {})}.items() if value is not None})


def test_python3_venv_is_wanted_when_python_lacks_ensurepip(tmp_path):
    assert run("python3", "-c", "import ensurepip", env={"PYTHONPATH": None}).returncode == 0
    assert run(str(DEPS_SCRIPT), "--dry-run", "venv", env={"PYTHONPATH": None}).stdout == ""
    # Debian ships ensurepip in python3-venv; without it the import fails as it does here:
    shadow = tmp_path / "without-ensurepip" / "ensurepip"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('ensurepip is not installed')\n")
    missing = run(str(DEPS_SCRIPT), "--dry-run", "venv", env={"PYTHONPATH": str(shadow.parent)})
    assert missing.returncode == 0 and missing.stdout.strip() == "would install: python3-venv"


@pytest.mark.parametrize("goal", ["run", "test"])
def test_python3_venv_comes_before_the_venv(tmp_path, goal):
    plan = run("make", "-n", goal, f"VENV={tmp_path / 'venv'}").stdout.splitlines()
    installs = [i for i, line in enumerate(plan) if "install-system-deps.sh venv" in line]
    creates = [i for i, line in enumerate(plan) if " -m venv " in line]
    assert installs and creates and installs[0] < creates[0], plan


def test_make_run_goes_on_when_the_viewer_fetch_fails(tmp_path):
    unreachable = {"npm_config_registry": f"http://127.0.0.1:{free_port()}/", "npm_config_fetch_retries": "0",
                   "npm_config_cache": str(tmp_path / "npm-cache"), "npm_config_offline": None}
    result = run("make", "--no-print-directory", "viewer-if-npm", f"DATA={tmp_path / 'data'}", env=unreachable)
    assert result.returncode == 0, result.stderr
    assert "fetching the viewer failed, /viewer stays off" in result.stderr
    assert not (tmp_path / "data" / "viewer" / "index.html").exists()


def test_make_run_honours_port_http_port_data_and_args(tmp_path):
    plan = run("make", "-n", "run", "PORT=11199", "HTTP_PORT=8099", f"DATA={tmp_path}", "ARGS=--aet SITEPACS").stdout
    serve = " ".join(line.strip().rstrip("\\") for line in plan.splitlines() if "pacsd serve" in line or "--index-db" in line)
    for expected in ("--port 11199", "--http-port 8099", f"--storage-dir {tmp_path}/storage",
                     f"--index-db {tmp_path}/index.sqlite", f"--log-dir {tmp_path}/logs", "--aet SITEPACS"):
        assert expected in serve, serve
    default = run("make", "-n", "run").stdout
    assert "--port 11112 --http-port 8042" in default and "--storage-dir ./pacs-data/storage" in default
