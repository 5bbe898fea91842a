"""Handler commands: their arguments, no shell, the timeout kill, off the C-STORE path, the
end-of-study hook after the scan sheet, and the action log."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from pydicom import dcmread

from pacsd.errors import ConfigError
from pacsd.services.hooks import fill_arguments, run_hook
from tests.conftest import HOST, make_settings
from tests.studies import send, wait_for, write_study

# Writes its arguments (after the output folder) as JSON to a new file in that folder, plus the
# listing of the folder named by the first argument when it is one.  The file appears whole
# (written beside, then renamed): a test polling the folder never reads half of one.
RECORDER = ("import json, os, sys, uuid; out, args = sys.argv[1], sys.argv[2:]; "
            "listing = sorted(os.listdir(args[0])) if os.path.isdir(args[0]) else []; "
            "name = os.path.join(out, uuid.uuid4().hex); open(name + '.part', 'w').write(json.dumps([args, listing])); "
            "os.replace(name + '.part', name + '.json')")
ACCOUNTS = {"entries": [{"name": "cardiology", "physicians": ["DOE^JOHN"]}]}


def recorded(folder: Path) -> list[list]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def action_lines(tmp_path: Path, prefix: str) -> list[str]:
    log = tmp_path / "logs" / "actions.log"
    return [line for line in log.read_text().splitlines() if f" {prefix}" in line] if log.exists() else []


def test_on_instance_gets_the_right_arguments(pacs_factory, tmp_path):
    out = tmp_path / "calls"
    out.mkdir()
    hook = [sys.executable, "-c", RECORDER, str(out), "{path}", "{study_uid}", "{study_dir}", "{account}",
            "{calling_aet}", "{peer}", "{sop_instance_uid}", "{patient_name}", "uid={study_uid}!"]
    pacs = pacs_factory(storage={"naming": "accounts"}, accounts=ACCOUNTS, hooks={"on_instance": hook})
    files = write_study(tmp_path / "s", RequestingPhysician="DOE^JOHN", PatientName="ÅSE^BÜLOW")
    send(pacs, files, aet="HOOKER")
    assert wait_for(lambda: len(recorded(out)) == 2)
    study_uid = str(dcmread(files[0]).StudyInstanceUID)
    by_sop = {args[6]: args for args, _ in recorded(out)}
    assert set(by_sop) == {str(dcmread(f).SOPInstanceUID) for f in files}
    for args in by_sop.values():
        path, uid, study_dir, account, calling, peer, _, patient, combined = args
        assert Path(path).is_file() and Path(path).parent.parent.parent == Path(study_dir)
        assert Path(study_dir) == pacs.storage.resolve() / "cardiology" / "20240115_ÅSE^BÜLOW_ACC001"
        assert (uid, account, calling, peer, patient) == (study_uid, "cardiology", "HOOKER", HOST, "ÅSE^BÜLOW")
        assert combined == f"uid={study_uid}!"
    # A hook's line is written once it has exited, a moment after its recording is on disk.
    assert wait_for(lambda: len(action_lines(tmp_path, "hook-on_instance")) == 2)
    assert all('status="0"' in line for line in action_lines(tmp_path, "hook-on_instance"))


def test_no_shell_is_involved(pacs_factory, tmp_path):
    canary_dir = Path(tempfile.mkdtemp(prefix="pw-", dir="/tmp"))  # short: a PN component is 64 chars
    try:
        hostile = f"x; touch {canary_dir}/pwned"
        out = tmp_path / "calls"
        out.mkdir()
        hooks = {"on_instance": [sys.executable, "-c", RECORDER, str(out), "{patient_name}", "{patient_id}"]}
        pacs = pacs_factory(hooks=hooks)
        send(pacs, write_study(tmp_path / "s", per_series=1, PatientName=hostile, PatientID="$(touch pwned2)"))
        assert wait_for(lambda: len(recorded(out)) == 1)
        assert recorded(out)[0][0] == [hostile, "$(touch pwned2)"]  # each value one argument, verbatim
        echo = pacs_factory(hooks={"on_instance": ["echo", "{patient_name}"]})
        send(echo, write_study(tmp_path / "t", per_series=1, PatientName=hostile))
        # The output field itself (not the arguments) holds what echo printed.
        assert wait_for(lambda: any(f"output={json.dumps(hostile + chr(10), ensure_ascii=False)}" in line
                                    for line in action_lines(tmp_path, "hook-on_instance") if "echo" in line))
        assert not (canary_dir / "pwned").exists()
        assert not Path("pwned2").exists()
    finally:
        shutil.rmtree(canary_dir)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # a zombie waiting for its reaper no longer runs


def test_a_hanging_hook_and_its_children_are_killed_at_the_timeout(tmp_path):
    pids = tmp_path / "pids"
    script = ("import os, subprocess, sys, time; child = subprocess.Popen(['sleep', '120']); "
              "open(sys.argv[1], 'w').write(f'{os.getpid()} {child.pid}'); time.sleep(120)")
    result = run_hook([sys.executable, "-c", script, str(pids)], timeout=1.0)
    assert result.timed_out and result.exit_status == -9
    parent, child = map(int, pids.read_text().split())
    assert _gone(parent)
    assert wait_for(lambda: _gone(child), timeout=10)


@pytest.mark.parametrize("then, status", [("sleep 60", -9), ("exit 3", 3)], ids=["hangs", "exits-at-once"])
def test_a_child_that_left_the_group_holding_the_output_does_not_block(tmp_path, then, status):
    """`setsid` takes a child out of the hook's process group: the kill misses it and it keeps the
    output pipe open for 60 s; the hook's result (and what it printed) comes back all the same,
    killed at the timeout if it hung, with its own exit status if it had exited."""
    pid_file = tmp_path / "escaped"
    script = f"setsid sleep 60 & echo $! > {pid_file}; echo before the timeout; {then}"
    results: list = []
    runner = threading.Thread(target=lambda: results.append(run_hook(["sh", "-c", script], timeout=1.0)))
    runner.start()
    try:
        runner.join(timeout=30)
        assert not runner.is_alive(), "run_hook still waits for the escaped child's pipe"
        (result,) = results
        assert result.timed_out == (status == -9) and result.exit_status == status
        assert result.output == "before the timeout\n"
    finally:
        escaped = int(pid_file.read_text())
        if not _gone(escaped):
            os.kill(escaped, signal.SIGKILL)
        runner.join()


def test_slow_instance_hooks_do_not_hold_up_scan_sheets(pacs_factory, tmp_path):
    gate = tmp_path / "gate"
    wait_at_gate = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"
    pacs = pacs_factory(stable_after=0.3, hooks={"on_instance": [sys.executable, "-c", wait_at_gate],
                                                 "workers": 1, "timeout": 60})
    pacs.archive.start_background()
    files = write_study(tmp_path / "s", per_series=3, PatientID="P5")
    try:
        send(pacs, files)  # three instance hooks queue behind one worker, all waiting at the gate
        sheet = pacs.storage / "P5" / str(dcmread(files[0]).StudyInstanceUID) / "ScanSheet.pdf"
        assert wait_for(sheet.exists)
        assert action_lines(tmp_path, "hook-on_instance") == []  # still waiting while the sheet was made
    finally:
        gate.touch()
    assert wait_for(lambda: len(action_lines(tmp_path, "hook-on_instance")) == 3)


def test_timeout_is_logged(pacs_factory, tmp_path):
    pacs = pacs_factory(hooks={"on_instance": ["sleep", "60"], "timeout": 0.5})
    send(pacs, write_study(tmp_path / "s", per_series=1))
    assert wait_for(lambda: any('status="killed-at-timeout"' in line
                                for line in action_lines(tmp_path, "hook-on_instance")))


def test_hooks_never_delay_the_c_store_answer(pacs_factory, tmp_path):
    gate = tmp_path / "gate"
    wait_at_gate = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"
    pacs = pacs_factory(hooks={"on_instance": [sys.executable, "-c", wait_at_gate], "timeout": 60})
    send(pacs, write_study(tmp_path / "s", per_series=3))  # answered while every hook still waits
    assert pacs.instance_count() == 3
    assert action_lines(tmp_path, "hook-") == []
    gate.touch()
    assert wait_for(lambda: len(action_lines(tmp_path, "hook-on_instance")) == 3)


def test_end_of_study_hook_runs_after_the_scan_sheet(pacs_factory, tmp_path):
    out = tmp_path / "calls"
    out.mkdir()
    hook = [sys.executable, "-c", RECORDER, str(out), "{study_dir}", "{account}", "{study_uid}", "{calling_aet}",
            "{path}"]
    pacs = pacs_factory(storage={"naming": "accounts"}, accounts=ACCOUNTS, stable_after=0.3,
                        hooks={"on_study_stable": hook})
    pacs.archive.start_background()
    files = write_study(tmp_path / "s", series=2, RequestingPhysician="DOE^JOHN")
    send(pacs, files, aet="ENDER")
    assert wait_for(lambda: len(recorded(out)) == 1)
    (study_dir, account, study_uid, calling, path), listing = recorded(out)[0]
    assert (account, study_uid, calling) == ("cardiology", str(dcmread(files[0]).StudyInstanceUID), "ENDER")
    assert path == study_dir and Path(study_dir).parent == pacs.storage.resolve() / "cardiology"
    assert listing == ["Dicom", "ScanSheet.csv", "ScanSheet.pdf"]
    assert wait_for(lambda: action_lines(tmp_path, "hook-on_study_stable"))  # logged once the hook exits
    assert action_lines(tmp_path, "hook-on_study_stable")[0].count('status="0"') == 1


def test_fill_arguments_substitutes_once():
    assert fill_arguments(["-p{path}", "{account}", "plain"], {"path": "{account}", "account": "a b"}) == \
        ["-p{account}", "a b", "plain"]


def test_a_missing_command_is_reported_not_raised():
    result = run_hook(["/nonexistent/hook-command"], timeout=5)
    assert result.exit_status is None and "cannot start" in result.output


@pytest.mark.parametrize("argument", ["{nope}", "{path!r}", "{path:>9}", "{path"])
def test_bad_placeholders_are_config_errors(tmp_path, argument):
    with pytest.raises(ConfigError, match="hook argument"):
        make_settings(tmp_path, hooks={"on_instance": ["echo", argument]})


def test_action_log_rotates_by_size(pacs_factory, tmp_path):
    pacs = pacs_factory(action_log={"max_bytes": 1024, "backups": 2})
    send(pacs, write_study(tmp_path / "s", series=3, per_series=4))
    logs = sorted(p.name for p in (tmp_path / "logs").glob("actions.log*"))
    assert logs == ["actions.log", "actions.log.1", "actions.log.2"]
    assert all(p.stat().st_size <= 1024 for p in (tmp_path / "logs").glob("actions.log*"))
    assert os.path.getsize(tmp_path / "logs" / "actions.log") > 0
