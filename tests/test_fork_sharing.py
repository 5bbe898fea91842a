"""What `pacsd serve` prepares in its parent before forking, so its children share it.

A module a receiving process imports after the fork, or a schema check it repeats, is memory
each child holds on its own (the issue's target: all processes of `workers: 2` within 1.5x one
process).  These tests name what would creep back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from pacsd.index import engine as index_engine
from tests.conftest import free_port

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork and /proc")


def test_a_receiving_process_imports_nothing_its_parent_did_not(tmp_path):
    """Everything a receiving process builds and starts (the archive, its listeners and built-in
    services, the DICOM server with the fast receive path) is imported by the parent's preload."""
    script = textwrap.dedent(f"""
        import json, sys
        from pacsd.cli.supervisor import _preload
        from pacsd.config import load_settings
        from pacsd.index.engine import open_index
        settings = load_settings(None, {{
            "storage": {{"directory": {str(tmp_path / "s")!r}}},
            "database": {{"url": {"sqlite:///" + str(tmp_path / "index.sqlite")!r}}},
            "http": {{"enabled": False}}, "server": {{"host": "127.0.0.1", "port": {free_port()}}}}})
        open_index(settings.database.target).dispose()  # as the parent does, then its preload
        _preload()
        before = set(sys.modules)
        from pacsd.net.scp import DicomServer
        from pacsd.services.archive import Archive
        archive = Archive(settings, "node")
        server = DicomServer(settings, archive)
        server.start()
        server.stop()
        archive.close()
        print(json.dumps(sorted(set(sys.modules) - before)))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_a_forked_child_does_not_check_the_schema_its_parent_prepared(tmp_path, monkeypatch):
    target = tmp_path / "index.sqlite"
    index_engine.open_index(target).dispose()  # this process prepares it

    def refuse(*_args, **_kwargs):
        raise AssertionError("the schema was checked again")

    monkeypatch.setattr(index_engine, "prepare_schema", refuse)
    with pytest.raises(AssertionError, match="checked again"):
        index_engine.open_index(target)  # the process that checked checks on every open
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        status = 1
        try:
            index_engine.open_index(target).dispose()
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # another database, never prepared by the parent, is checked in the child too
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        status = 1
        try:
            index_engine.open_index(tmp_path / "other.sqlite")
        except AssertionError:
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
