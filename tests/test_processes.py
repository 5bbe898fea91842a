"""`pacsd serve` on several processes: an accepting parent hands connections to receiving
processes, one writer process commits for all of them.

What is checked, with the real command and DCMTK's storescu:
- connections are handed out evenly (the connection log's pid), and a stalled connection holds
  up nobody else;
- kill -9 of a receiving process, of the writer, or of the whole server in the middle of four
  storescu associations: the parent restarts what died, every instance storescu saw acknowledged
  is indexed once and byte-identical, what was not is sent again and stored, `pacsd check`
  reports no damage;
- SIGTERM returns within a few seconds with idle peers and bare TCP probes connected.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import Verification
from sqlalchemy import func, select

from pacsd.index.engine import open_index
from pacsd.index.schema import instances
from tests.conftest import HOST, VENV_BIN, wait_until
from tests.stored_checks import dataset_bytes
from tests.studies import write_study

pytestmark = pytest.mark.both_databases


def serve_with(pacs_process, tmp_path, **server):
    config = tmp_path / "processes.yaml"
    config.write_text(yaml.safe_dump({"server": {"workers": 2, "shutdown_grace": 2, **server}}))
    return pacs_process("--config", str(config))


def child_pids(tmp_path: Path, role: str) -> list[int]:
    """The pids of the live `role` processes ("receiver 1", "writer", ...), from the log."""
    log = (tmp_path / "logs" / "pacsd.log").read_text()
    pids = [int(pid) for pid in re.findall(rf"{role} process ready \(pid (\d+)\)", log)]
    return [pid for pid in pids if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def indexed(server) -> dict[str, str]:
    engine = open_index(server.database_target, upgrade=False)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(instances.c.sop_uid, instances.c.path)).all()
    finally:
        engine.dispose()
    return {row.sop_uid: row.path for row in rows}


def count_indexed(server) -> int:
    engine = open_index(server.database_target, upgrade=False)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(instances)).scalar_one()
    finally:
        engine.dispose()


def storescu(port: int, files: list[Path], aet: str) -> subprocess.Popen:
    """storescu in verbose mode (each file and its response logged), going on after failures."""
    return subprocess.Popen(["storescu", "-v", "-nh", "-aet", aet, "-aec", "PACSD", "-xe", HOST, str(port),
                             *map(str, files)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace")


def acknowledged(output: str) -> set[str]:
    """The files storescu was answered Success for."""
    done, current = set(), None
    for line in output.splitlines():
        sending = re.search(r"Sending file: (.+)$", line)
        if sending:
            current = sending.group(1).strip()
        elif "Received Store Response (Success)" in line and current:
            done.add(current)
            current = None
    return done


def send_and_kill(server, tmp_path: Path, kill, associations: int = 4) -> tuple[list[Path], set[str]]:
    """Four studies of 60 images each over `associations` storescu associations; `kill()` once
    40 are indexed.  The files, and those storescu saw acknowledged."""
    files = [f for n in range(4) for f in write_study(tmp_path / "send" / str(n), series=2, per_series=30)]
    clients = [storescu(server.port, files[i::associations], f"MOD{i}") for i in range(associations)]
    wait_until(lambda: count_indexed(server) >= 40, 60, "40 instances indexed")
    kill()
    outputs = [client.communicate(timeout=120)[0] for client in clients]
    return files, set().union(*map(acknowledged, outputs))


def assert_acknowledged_kept_and_resend(server, files: list[Path], acked: set[str], tmp_path: Path) -> None:
    """Every acknowledged file indexed once, byte-identical; the others sent again and stored."""
    rows = indexed(server)
    for path in map(Path, acked):
        uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        assert uid in rows, f"acknowledged {path.name} is not indexed"
        assert dataset_bytes(tmp_path / "storage" / rows[uid]) == dataset_bytes(path)
    missing = [f for f in files if str(f) not in acked]
    if missing:
        resend = storescu(server.port, missing, "RESEND")
        output = resend.communicate(timeout=120)[0]
        assert acknowledged(output) == set(map(str, missing)), output[-2000:]
    rows = indexed(server)
    assert len(rows) == len(files)
    for path in files:
        uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        assert dataset_bytes(tmp_path / "storage" / rows[uid]) == dataset_bytes(path)


def pacsd_check(server, tmp_path: Path) -> subprocess.CompletedProcess:
    where = ["--database-url", str(server.database_target)] if "://" in str(server.database_target) \
        else ["--index-db", str(server.database_target)]
    return subprocess.run([str(VENV_BIN / "pacsd"), "check", "--storage-dir", str(tmp_path / "storage"), *where],
                          capture_output=True, text=True, timeout=120)


def test_connections_are_handed_to_the_least_busy_process(pacs_process, tmp_path):
    server = serve_with(pacs_process, tmp_path)
    ae = AE(ae_title="HOLDER")
    ae.add_requested_context(Verification)
    held = []
    for _ in range(8):  # each stays open, so the parent sees one process busier than the other
        assoc = ae.associate(HOST, server.port, ae_title="PACSD")
        assert assoc.is_established
        held.append(assoc)
    for assoc in held:
        assoc.release()
    server.stop()
    log = (tmp_path / "logs" / "connections.log").read_text().splitlines()
    pids = Counter(re.search(r" pid=(\d+) ", line).group(1) for line in log if "calling=HOLDER" in line)
    assert sorted(pids.values()) == [4, 4], pids
    assert str(server.proc.pid) not in pids  # receiving processes serve, not the parent


def test_a_stalled_connection_holds_up_nobody(pacs_process, tmp_path):
    server = serve_with(pacs_process, tmp_path)
    stalled = [socket.create_connection((HOST, server.port)) for _ in range(2)]  # one per process
    for sock in stalled:
        sock.sendall(b"\x01\x00\x00\x00\x00\xcd\x00\x01")  # the start of an A-ASSOCIATE-RQ, then nothing
    files = write_study(tmp_path / "send", series=1, per_series=10)
    with ThreadPoolExecutor(2) as pool:
        outputs = list(pool.map(lambda i: storescu(server.port, files[i::2], f"MOD{i}").communicate(timeout=60)[0],
                                range(2)))
    assert set().union(*map(acknowledged, outputs)) == set(map(str, files))
    for sock in stalled:
        sock.close()


def test_receiving_process_killed_mid_send(pacs_process, tmp_path):
    server = serve_with(pacs_process, tmp_path)
    victim = child_pids(tmp_path, "receiver 1")[0]
    files, acked = send_and_kill(server, tmp_path, lambda: os.kill(victim, signal.SIGKILL))
    assert len(acked) < len(files)  # the killed process's association broke off
    wait_until(lambda: child_pids(tmp_path, "receiver 1"), 30, "receiver 1 restarted")
    assert child_pids(tmp_path, "receiver 1") != [victim]
    assert_acknowledged_kept_and_resend(server, files, acked, tmp_path)
    assert pacsd_check(server, tmp_path).returncode == 0


def rows_committed(tmp_path: Path) -> dict[int, tuple[int, int]]:
    """Per receiving process, (rows committed in it, rows committed through the writer process),
    from the lines each logs as it stops."""
    log = (tmp_path / "logs" / "pacsd.log").read_text()
    return {int(n): (int(here), int(shared)) for n, here, shared in
            re.findall(r"receiving process (\d+): (\d+) rows committed here, (\d+) through the writer", log)}


def test_a_process_receiving_alone_commits_its_rows_itself(pacs_process, tmp_path):
    server = serve_with(pacs_process, tmp_path)
    files = write_study(tmp_path / "send", series=1, per_series=20)
    output = storescu(server.port, files, "ALONE").communicate(timeout=60)[0]
    assert acknowledged(output) == set(map(str, files))
    assert count_indexed(server) == 20
    server.stop()
    assert sorted(rows_committed(tmp_path).values()) == [(0, 0), (20, 0)]


def test_rows_go_through_the_writer_while_another_process_receives(pacs_process, tmp_path):
    server = serve_with(pacs_process, tmp_path)
    ae = AE(ae_title="HOLDER")
    ae.add_requested_context(Verification)
    held = ae.associate(HOST, server.port, ae_title="PACSD")  # one process busy: the send goes to the other
    assert held.is_established
    files = write_study(tmp_path / "send", series=1, per_series=20)
    output = storescu(server.port, files, "SHARED").communicate(timeout=60)[0]
    held.release()
    assert acknowledged(output) == set(map(str, files))
    server.stop()
    assert sorted(rows_committed(tmp_path).values()) == [(0, 0), (0, 20)]


def test_process_receiving_alone_killed_mid_send(pacs_process, tmp_path):
    """One association, its rows committed in the receiving process itself: kill -9 of that
    process loses nothing acknowledged."""
    server = serve_with(pacs_process, tmp_path)
    victims = child_pids(tmp_path, "receiver 1") + child_pids(tmp_path, "receiver 2")
    files, acked = send_and_kill(server, tmp_path, lambda: [os.kill(pid, signal.SIGKILL) for pid in victims],
                                 associations=1)
    assert 40 <= len(acked) < len(files)
    wait_until(lambda: child_pids(tmp_path, "receiver 1") and child_pids(tmp_path, "receiver 2"), 30,
               "receiving processes restarted")
    assert_acknowledged_kept_and_resend(server, files, acked, tmp_path)
    assert pacsd_check(server, tmp_path).returncode == 0


def test_writer_killed_mid_send(pacs_process, tmp_path):
    server = serve_with(pacs_process, tmp_path)
    victim = child_pids(tmp_path, "writer")[0]
    files, acked = send_and_kill(server, tmp_path, lambda: os.kill(victim, signal.SIGKILL))
    wait_until(lambda: child_pids(tmp_path, "writer"), 30, "writer restarted")
    assert "WriterUnavailable" in (tmp_path / "logs" / "pacsd.log").read_text() or \
        "index writer" in (tmp_path / "logs" / "pacsd.log").read_text()
    assert_acknowledged_kept_and_resend(server, files, acked, tmp_path)
    assert pacsd_check(server, tmp_path).returncode == 0


@pytest.mark.parametrize("flush", ["files", "volume"])
def test_whole_server_killed_mid_send(pacs_process, tmp_path, flush):
    config = tmp_path / "processes.yaml"
    config.write_text(yaml.safe_dump({"server": {"workers": 2, "shutdown_grace": 2}, "storage": {"flush": flush}}))
    first = pacs_process("--config", str(config))
    assert f"(flush: {flush})" in (tmp_path / "logs" / "pacsd.log").read_text()
    files, acked = send_and_kill(first, tmp_path, lambda: os.kill(first.proc.pid, signal.SIGKILL))
    first.proc.wait(10)
    wait_until(lambda: not any(_alive(pid) for role in ("receiver 1", "receiver 2", "writer", "web", "background")
                               for pid in child_pids(tmp_path, role)), 10, "children gone with their parent")
    second = pacs_process("--config", str(config))
    assert_acknowledged_kept_and_resend(second, files, acked, tmp_path)
    assert pacsd_check(second, tmp_path).returncode == 0


def test_sigterm_returns_quickly_with_idle_peers_and_probes(pacs_process, tmp_path):
    server = serve_with(pacs_process, tmp_path, shutdown_grace=10)
    ae = AE(ae_title="IDLE")
    ae.add_requested_context(Verification)
    idle = ae.associate(HOST, server.port, ae_title="PACSD")
    assert idle.is_established
    socket.create_connection((HOST, server.port)).close()  # what a load balancer's health check does
    probe = socket.create_connection((HOST, server.port))  # and one that stays connected, silent
    time.sleep(0.5)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.communicate(timeout=30)
    assert time.monotonic() - started < 3.0
    assert server.proc.returncode == 0
    probe.close()


def test_on_instance_hooks_run_in_the_background_process(pacs_process, tmp_path):
    out = tmp_path / "hook-parents"
    record_parent = "import os, sys; open(sys.argv[1], 'a').write('%d %s\\n' % (os.getppid(), sys.argv[2]))"
    config = tmp_path / "processes.yaml"
    config.write_text(yaml.safe_dump({"server": {"workers": 2},
                                      "hooks": {"on_instance": [sys.executable, "-c", record_parent, str(out),
                                                                "{sop_instance_uid}"]}}))
    server = pacs_process("--config", str(config))
    files = write_study(tmp_path / "send", series=1, per_series=6)
    output = storescu(server.port, files, "MODALITY").communicate(timeout=60)[0]
    assert acknowledged(output) == set(map(str, files))
    wait_until(lambda: out.exists() and len(out.read_text().splitlines()) == 6, 30, "six hooks run")
    parents = {line.split()[0] for line in out.read_text().splitlines()}
    assert parents == {str(pid) for pid in child_pids(tmp_path, "background")}
    assert {line.split()[1] for line in out.read_text().splitlines()} == \
        {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}


def test_connections_still_negotiating_are_limited_per_address(pacs_process, tmp_path):
    server = serve_with(pacs_process, tmp_path, max_negotiating_per_host=3, max_associations=4)
    stalled = []
    for _ in range(3):  # from 127.0.0.2: part of an A-ASSOCIATE-RQ, then nothing
        sock = socket.create_connection((HOST, server.port), source_address=("127.0.0.2", 0))
        sock.sendall(b"\x01\x00\x00\x00\x00\xcd\x00\x01")
        stalled.append(sock)
    time.sleep(0.5)
    with socket.create_connection((HOST, server.port), source_address=("127.0.0.2", 0)) as extra:
        extra.settimeout(10)
        assert extra.recv(100) == b""  # closed at once: that address has 3 still negotiating
    files = write_study(tmp_path / "send", series=1, per_series=4)  # a known peer, from 127.0.0.1
    output = storescu(server.port, files, "MODALITY").communicate(timeout=60)[0]
    assert acknowledged(output) == set(map(str, files))
    for sock in stalled:
        sock.close()


def test_ctrl_c_to_the_whole_process_group_stops_in_order(pacs_process, tmp_path):
    """A terminal's Ctrl-C reaches every process at once; C-STOREs under way still succeed or
    fail cleanly, and the server stops."""
    server = serve_with(pacs_process, tmp_path)
    files = write_study(tmp_path / "send", series=1, per_series=60)
    client = storescu(server.port, files, "MODALITY")
    wait_until(lambda: count_indexed(server) >= 10, 30, "10 instances indexed")
    for pid in [server.proc.pid, *_children(server.proc.pid)]:
        os.kill(pid, signal.SIGINT)
    server.proc.communicate(timeout=30)
    output = client.communicate(timeout=60)[0]
    acked = acknowledged(output)
    answers = re.findall(r"Received Store Response \(([^)]*)\)", output)
    assert set(answers) == {"Success"}, answers  # none refused because the writer stopped first
    rows = indexed(server)
    assert {str(dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in acked} <= set(rows)
    log = (tmp_path / "logs" / "pacsd.log").read_text()
    assert "pacsd stopped" in log and "killed" not in log


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(child) for child in f.read().split()]


def test_sigterm_during_a_scan_sheet_backlog(pacs_process, tmp_path):
    """Stopped while the background process has scan sheets to write: the server exits within
    3 s, and after a restart every stable study has its sheet, written once."""
    config = tmp_path / "processes.yaml"
    config.write_text(yaml.safe_dump({"server": {"workers": 2}, "stable_after": 0.5}))
    server = pacs_process("--config", str(config))
    studies = [write_study(tmp_path / "send" / str(n), series=2, per_series=3) for n in range(40)]
    output = storescu(server.port, [f for study in studies for f in study], "MODALITY").communicate(timeout=120)[0]
    assert "Received Store Response (Success)" in output
    sheets = lambda: list((tmp_path / "storage").rglob("ScanSheet.pdf"))  # noqa: E731
    actions = tmp_path / "logs" / "actions.log"

    def studies_with_a_sheet_logged() -> list[str]:
        # A sheet's PDF is in place a moment before its action line: the line is the end of it.
        return re.findall(r' scan-sheet study="([^"]+)"', actions.read_text())

    wait_until(lambda: len(sheets()) >= 1, 60, "the first sheet written")
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.communicate(timeout=30)
    assert time.monotonic() - started < 3.0
    assert len(sheets()) < len(studies), "the backlog was done before the stop: nothing tested"
    again = server.restarted()  # same port: the same node, which resumes the work it had claimed
    try:
        wait_until(lambda: len(set(studies_with_a_sheet_logged())) == len(studies), 120, "a sheet for every study")
    finally:
        again.proc.send_signal(signal.SIGTERM)
        again.proc.communicate(timeout=30)
    written = studies_with_a_sheet_logged()
    assert len(sheets()) == len(studies)
    assert len(written) == len(studies), f"{len(written)} sheets written for {len(studies)} studies"


def test_a_second_sigterm_stops_at_once(pacs_process, tmp_path):
    server = serve_with(pacs_process, tmp_path, shutdown_grace=20)
    stuck = child_pids(tmp_path, "receiver 1")[0]
    os.kill(stuck, signal.SIGSTOP)  # a receiving process that cannot stop by itself
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(1)
    assert server.proc.poll() is None  # the parent gives it the grace period
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.communicate(timeout=30)
    assert time.monotonic() - started < 3.0
    assert not _alive(stuck)
