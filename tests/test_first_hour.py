"""The first hour with pacsd (issue 17), as a new user meets it: commands that agree on their
defaults, read-only commands that create nothing, start-up errors in one line with exit 2.

Each run is the real `pacsd` / `store-scp` command in a fresh folder.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import HOST, REPO, VENV_BIN, free_port
from tests.dicomgen import write_dicom
from tests.mounts import needs_root, read_only

CLIENT_COMMANDS = ["echo", "send", "find", "get", "move", "commit"]


def run(*args: str, cwd: Path | None = None, timeout: float = 60, command: str = "pacsd") -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / command), *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 2, one line on stderr starting `pacsd: `, no traceback; the line is returned."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("pacsd: "), result.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _defaults(command: str) -> dict[str, str]:
    """--aec / --aet defaults as `pacsd COMMAND --help` shows them to the user."""
    text = " ".join(run(command, "--help").stdout.split())
    return {flag: re.search(rf"{flag} TEXT .*?\[default: ([^\]]+)\]", text).group(1).replace(" ", "")
            for flag in ("--aec", "--aet")}


def test_client_commands_share_one_pair_of_ae_defaults():
    defaults = {command: _defaults(command) for command in CLIENT_COMMANDS}
    assert all(d == {"--aec": "PACSD", "--aet": "PACSD-SCU"} for d in defaults.values()), defaults


def test_echo_and_send_with_defaults_reach_a_pacsd(pacs, tmp_path):
    assert pacs.aet == "PACSD"  # pacsd's own default title
    echo = run("echo", HOST, str(pacs.port))
    assert echo.returncode == 0 and "success" in echo.stdout, echo.stderr
    send = run("send", HOST, str(pacs.port), str(write_dicom(tmp_path / "ct.dcm")))
    assert send.returncode == 0 and "sent 1, failed 0" in send.stdout, send.stderr


def test_readme_command_table_names_every_command():
    table = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| `")]
    listed = {m.group(1) for line in table for m in re.finditer(r"`pacsd (\w+)", line)}
    commands = {line.split()[0] for line in run("--help").stdout.split("Commands:")[1].strip().splitlines()}
    assert commands <= listed, commands - listed


@pytest.mark.parametrize("command", [["stats"], ["stats", "--json"], ["check"], ["export", "--study", "1.2.3", "--out", "out"],
                                     ["user", "list"], ["db", "current"]])
def test_read_only_commands_create_no_index(tmp_path, command):
    default = run(*command, cwd=tmp_path)
    assert_one_line_error(default, "no index there")
    assert list(tmp_path.iterdir()) == []
    elsewhere = run(*command, "--index-db", str(tmp_path / "missing" / "x.db"), cwd=tmp_path)
    assert_one_line_error(elsewhere, str(tmp_path / "missing" / "x.db"), "no index there")
    assert list(tmp_path.iterdir()) == []


def _serve(tmp_path: Path, *flags: str, command: str = "pacsd", port: int | None = None) -> subprocess.CompletedProcess:
    where = {"--storage-dir": str(tmp_path / "storage"), "--index-db": str(tmp_path / "index.sqlite"),
             "--log-dir": str(tmp_path / "logs")}
    for flag, value in zip(flags[::2], flags[1::2]):
        where[flag] = value
    port = str(port or free_port())
    head = [port, "SEED"] if command == "store-scp" else ["serve", "--port", port]
    args = [*head, "--host", HOST, "--http-port", str(free_port()), *(item for pair in where.items() for item in pair)]
    return run(*args, cwd=tmp_path, timeout=60, command=command)


@pytest.mark.parametrize("command", ["pacsd", "store-scp"])
def test_a_dicom_port_in_use_is_one_line(tmp_path, command):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve(tmp_path, command=command, port=port)
    assert_one_line_error(result, f"{HOST}:{port}", "in use", "--port")


def test_a_web_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve(tmp_path, "--http-port", str(port))
    assert_one_line_error(result, f"{HOST}:{port}", "in use", "--http-port")


@needs_root
@pytest.mark.parametrize("flag", ["--storage-dir", "--log-dir"])
def test_an_unwritable_folder_is_one_line(tmp_path, flag):
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked):
        result = _serve(tmp_path, flag, str(locked / "inside"))
    assert_one_line_error(result, str(locked / "inside"), "read-only file system", flag)


def test_a_folder_under_a_file_is_one_line(tmp_path):
    (tmp_path / "a-file").write_text("")
    result = _serve(tmp_path, "--storage-dir", str(tmp_path / "a-file" / "storage"))
    assert_one_line_error(result, "storage folder", "--storage-dir")


def test_store_scp_usage_line_and_http_port():
    usage = run("--help", command="store-scp").stdout
    assert usage.startswith("Usage: store-scp [OPTIONS] PORT AET"), usage
    assert "--http-port" in usage and "--log-dir" in usage


def test_echo_refused_says_why(pacs):
    refused = run("echo", HOST, str(pacs.port), "--aec", "NOT-PACSD")
    assert_one_line_error(refused, "NOT-PACSD", "rejected the association", "called ae title not recognised")


def test_echo_to_nobody_is_exit_2():
    port = free_port()
    assert_one_line_error(run("echo", HOST, str(port)), f"{HOST}:{port}", "cannot be reached")


def test_send_says_the_sop_class_was_refused(pacs_factory, tmp_path):
    pacs = pacs_factory(accepted_sop_classes=["CT"])
    mr = write_dicom(tmp_path / "mr.dcm", SOPClassUID="1.2.840.10008.5.1.4.1.1.4", Modality="MR")
    result = run("send", HOST, str(pacs.port), str(mr))
    assert result.returncode == 1 and "sent 0, failed 1" in result.stdout
    assert result.stderr.splitlines() == [
        f"failed: {mr}: PACSD at {HOST}:{pacs.port} accepted the association but refused every SOP class and "
        "transfer syntax proposed: MR Image Storage (1.2.840.10008.5.1.4.1.1.4) in Explicit VR Little Endian "
        "(1.2.840.10008.1.2.1)"]


def test_send_prints_no_library_warnings_and_json_on_request(pacs, tmp_path):
    odd = write_dicom(tmp_path / "in" / "odd.dcm", FrameOfReferenceUID="not-a-uid")
    (tmp_path / "in" / "notes.txt").write_text("not dicom")
    result = run("send", HOST, str(pacs.port), "--json", str(tmp_path / "in"))
    assert result.returncode == 0 and result.stderr == ""
    listed = json.loads(result.stdout)
    assert listed["sent"] == [str(odd)] and listed["failed"] == []
    assert [entry["path"] for entry in listed["skipped"]] == [str(tmp_path / "in" / "notes.txt")]
