"""Files that hold patient data or secrets are not world-readable (issue 21, point 12): under a
umask of 022 the index (and its WAL), the logs and the session key are created 0600/0640."""

from __future__ import annotations

import os
import stat

import httpx

from tests.conftest import HOST, PacsProcess


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_index_logs_and_session_key_are_private_under_umask_022(tmp_path):
    old = os.umask(0o022)
    try:
        server = PacsProcess(tmp_path).start()
    finally:
        os.umask(old)
    try:
        assert httpx.get(f"http://{HOST}:{server.http_port}/healthz", timeout=10).status_code == 200
        made = {"index": tmp_path / "index.sqlite", "app log": tmp_path / "logs" / "pacsd.log",
                "connection log": tmp_path / "logs" / "connections.log",
                "session key": tmp_path / "storage" / ".pacsd" / "session.key"}
        made.update({p.name: p for p in tmp_path.glob("index.sqlite-*")})
        made.update({p.name: p for p in (tmp_path / "logs").iterdir()})
        for what, path in made.items():
            assert path.exists(), what
            assert _mode(path) & 0o007 == 0, f"{what} {path} is {oct(_mode(path))}"
            assert _mode(path) & 0o020 == 0, f"{what} {path} is group-writable: {oct(_mode(path))}"
    finally:
        server.stop()
