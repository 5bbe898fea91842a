"""`pacsd user add|passwd|list` on the index a server uses, SQLite or PostgreSQL (--index-db or
--database-url), and one login valid on two nodes that share the database and storage folder."""

from __future__ import annotations

import subprocess

import pytest
from fastapi.testclient import TestClient

from pacsd.index.engine import open_index
from pacsd.services.users import authenticate, list_users
from pacsd.web.app import create_app
from tests.conftest import VENV_BIN, make_settings, start_pacs
from tests.webui import post_login

pytestmark = pytest.mark.both_databases
PASSWORD, NEW_PASSWORD = "first password 1", "second password 2"


def pacsd_user(index_target, *args: str, password: str = "") -> subprocess.CompletedProcess:
    where = ["--database-url", index_target] if "://" in str(index_target) else ["--index-db", str(index_target)]
    return subprocess.run([str(VENV_BIN / "pacsd"), "user", *args, *where], input=password, text=True,
                          capture_output=True, timeout=60)


def test_add_passwd_and_list_work_on_the_given_index(index_target, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a command that ignored the flag would use ./pacs-data/index.sqlite here
    for args in (["add", "admin", "--admin"], ["add", "smith", "--account", "Smith"]):
        added = pacsd_user(index_target, *args, "--password-stdin", password=PASSWORD)
        assert added.returncode == 0, added.stderr
    changed = pacsd_user(index_target, "passwd", "smith", "--password-stdin", password=NEW_PASSWORD)
    assert changed.returncode == 0, changed.stderr
    listed = pacsd_user(index_target, "list")
    assert listed.stdout.splitlines() == ["admin\t-\tadmin", "smith\tSmith"]
    assert not (tmp_path / "pacs-data").exists()

    engine = open_index(index_target)
    try:
        assert [u.name for u in list_users(engine)] == ["admin", "smith"]
        assert authenticate(engine, "smith", NEW_PASSWORD).account == "Smith"
        assert authenticate(engine, "smith", PASSWORD) is None
    finally:
        engine.dispose()


def test_a_session_opened_on_one_node_is_valid_on_another(index_database, index_target, tmp_path):
    """Two nodes: one index, one storage folder, each its own folder for everything else."""
    assert pacsd_user(index_target, "add", "admin", "--admin", "--password-stdin", password=PASSWORD).returncode == 0
    shared_storage = {"directory": str(tmp_path / "shared-storage")}
    nodes = []
    for name in ("node1", "node2"):
        (tmp_path / name).mkdir()
        database = {**index_database}
        if "url" in database:  # a node's own database.path (unused beside the URL) must not matter
            database["path"] = str(tmp_path / name / "index.sqlite")
        nodes.append(start_pacs(make_settings(tmp_path / name, storage=shared_storage, database=database)))
    try:
        with TestClient(create_app(nodes[0].archive)) as first, TestClient(create_app(nodes[1].archive)) as second:
            logged_in = post_login(first, "admin", PASSWORD, follow_redirects=False)
            assert logged_in.status_code == 303
            second.cookies.update(first.cookies)
            page = second.get("/ui/studies", follow_redirects=False)
            assert page.status_code == 200 and "Log out" in page.text
        assert (tmp_path / "shared-storage" / ".pacsd" / "session.key").is_file()
    finally:
        for node in nodes:
            node.stop()
