"""Hook arguments made safe (issue 21, point 11): the Guest account of a hostile physician name
arrives as its sanitised folder, a value starting with '-' cannot pass for an option, a NUL byte
does not stop the hook, and the exact values are in the environment (PACSD_<PLACEHOLDER>)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.studies import send, wait_for, write_study

# Writes its arguments and its PACSD_ environment as JSON to a new file in the folder named first.
RECORDER = ("import json, os, sys, uuid; out, args = sys.argv[1], sys.argv[2:]; "
            "env = dict((k, v) for k, v in os.environ.items() if k.startswith('PACSD_')); "
            "open(os.path.join(out, uuid.uuid4().hex + '.json'), 'w').write(json.dumps([args, env]))")
ACCOUNTS = {"entries": [{"name": "cardiology", "physicians": ["DOE^JOHN"]}]}


def test_hostile_values_reach_a_hook_sanitised_and_exact_in_the_environment(pacs_factory, tmp_path):
    out = tmp_path / "calls"
    out.mkdir()
    hook = [sys.executable, "-c", RECORDER, str(out), "{account}", "{patient_name}", "{patient_id}", "{study_dir}"]
    pacs = pacs_factory(storage={"naming": "accounts"}, accounts=ACCOUNTS, hooks={"on_instance": hook})
    send(pacs, write_study(tmp_path / "s", per_series=1, RequestingPhysician="a/../../Smith",
                           PatientName="-rf", PatientID="P\x00X"))
    assert wait_for(lambda: len(list(out.glob("*.json"))) == 1)
    [(args, env)] = [json.loads(p.read_text()) for p in out.glob("*.json")]
    account, name, patient_id, study_dir = args
    assert account.startswith("Guest/") and ".." not in account.split("/") and account.count("/") == 1
    assert Path(study_dir).relative_to(pacs.storage.resolve()).parts[:2] == tuple(account.split("/"))
    assert name == "_rf" and not name.startswith("-")
    assert "\x00" not in patient_id and patient_id.startswith("P")
    assert env["PACSD_PATIENT_NAME"] == "-rf"
    assert env["PACSD_ACCOUNT"] == "Guest/a/../../Smith"
    assert "\x00" not in env["PACSD_PATIENT_ID"]
