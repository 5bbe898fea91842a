"""Handler commands: `hooks.on_instance` after each stored instance, `hooks.on_study_stable` at
the end of a study.

Each is an argument list whose `{placeholders}` are filled with (hostile) values, made safe
(`hook_values`: no control characters, the account as its folder, no leading '-'), run without
a shell on a worker thread (never on the C-STORE path), killed with its process group at the
timeout; the exit status and output go to the action log.  The values as stored (without NUL)
are in the environment too, as PACSD_<PLACEHOLDER>.
"""

from __future__ import annotations

import os
import re
import signal
import string
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from pacsd.config import HookSettings
from pacsd.index.repository import study_summary
from pacsd.pathnames import path_component
from pacsd.services.actionlog import ActionLog
from pacsd.services.listeners import InstanceStored
from pacsd.services.scansheet import study_dir_for
from pacsd.services.workqueue import WorkQueue
from pacsd.storage.layout import Layout

OUTPUT_LOGGED = 4000  # characters of a hook's output kept in the action log
DRAIN_AFTER_KILL = 2.0  # seconds to read what a killed hook wrote before its pipe is closed


@dataclass(frozen=True)
class HookResult:
    arguments: list[str]
    exit_status: int | None  # None: it could not start
    timed_out: bool
    output: str


def fill_arguments(template: list[str], values: dict[str, str]) -> list[str]:
    """Each argument with its placeholders replaced; values are never parsed again."""
    return ["".join(literal + (values.get(field, "") if field is not None else "")
                    for literal, field, _, _ in string.Formatter().parse(argument)) for argument in template]


def hook_values(values: dict[str, str]) -> dict[str, str]:
    """Placeholder values safe as arguments: control characters (NUL included) removed, the
    account as the folder the layout makes of it (each part a sanitised path component: no
    '..', no separator inside a part), and a leading '-' (an option to most commands) as '_'."""
    safe = {}
    for name, value in values.items():
        text = _CONTROL.sub("", str(value or ""))
        if name == "account" and text:
            text = "/".join(path_component(part) for part in text.split("/", 1))
        safe[name] = "_" + text[1:] if text.startswith("-") else text
    return safe


def hook_environment(values: dict[str, str]) -> dict[str, str]:
    """The values as they are (only NUL, which no environment can hold, removed), as
    PACSD_<PLACEHOLDER> variables for hooks that need the exact text."""
    return {f"PACSD_{name.upper()}": str(value or "").replace("\0", "") for name, value in values.items()}


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def run_hook(arguments: list[str], timeout: float, environment: dict[str, str] | None = None) -> HookResult:
    """Run one command (no shell); at the timeout kill it and everything it started.

    A child that left the process group (setsid) survives the kill; if it keeps the output pipe
    open, what was read so far is kept and the pipe is closed `DRAIN_AFTER_KILL` seconds later."""
    try:
        process = subprocess.Popen(arguments, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, **environment} if environment else None)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the configured command
        return HookResult(arguments, None, False, f"cannot start: {exc}")
    try:
        output, _ = process.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = process.poll() is None  # else it exited and something it started holds the pipe
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # nothing is left in its group
        try:
            output, _ = process.communicate(timeout=DRAIN_AFTER_KILL)
        except subprocess.TimeoutExpired as exc:
            output = exc.output or b""
            if process.stdout is not None:
                process.stdout.close()
            process.wait()
    return HookResult(arguments, process.returncode, timed_out, output.decode("utf-8", "replace"))


class HookRunner:
    def __init__(self, settings: HookSettings, engine: Engine, layout: Layout, locate: Callable[[str], Path],
                 work: WorkQueue, actions: ActionLog) -> None:
        """`locate(path)`: the file an index path names, in whichever storage area holds it."""
        self.settings = settings  # HookSettings
        self.engine, self.layout, self.locate = engine, layout, locate
        self.work, self.actions = work, actions
        # relay(values) -> True when another process took the on_instance run (pacsd.services.hook_relay)
        self.relay: Callable[[dict[str, str]], bool] | None = None

    def instance_stored(self, event: InstanceStored) -> None:
        """Queue `on_instance` for a stored instance (returns at once)."""
        if not self.settings.on_instance:
            return
        values = {
            "path": str(event.path), "study_uid": event.study_uid, "study_dir": str(event.study_dir or ""),
            "account": event.account, "calling_aet": event.source.calling_aet, "peer": event.source.peer,
            "series_uid": event.series_uid, "sop_instance_uid": event.sop_instance_uid,
            "patient_id": event.patient_id, "patient_name": event.patient_name,
        }
        if self.relay is not None and self.relay(values):
            return  # the background process runs it
        self.run_instance_hook(values)

    def run_instance_hook(self, values: dict[str, str]) -> None:
        """Queue `on_instance` with its placeholder values (returns at once)."""
        self.work.submit(f"on_instance hook for {values.get('sop_instance_uid', '')}",
                         lambda: self._run("on_instance", self.settings.on_instance, values))

    def study_stable(self, study_uid: str) -> None:
        """Run `on_study_stable` now (the caller is already a background job)."""
        if self.settings.on_study_stable:
            self._run("on_study_stable", self.settings.on_study_stable, self._study_values(study_uid))

    def _run(self, which: str, template: list[str], values: dict[str, str]) -> HookResult:
        result = run_hook(fill_arguments(template, hook_values(values)), self.settings.timeout,
                          hook_environment(values))
        status = "not-started" if result.exit_status is None else (
            "killed-at-timeout" if result.timed_out else str(result.exit_status))
        self.actions.record(f"hook-{which}", status=status, timeout=self.settings.timeout,
                            args=result.arguments, output=result.output[-OUTPUT_LOGGED:])
        return result

    def _study_values(self, study_uid: str) -> dict[str, str]:
        """Placeholders of a study: its folder, account, patient, and the latest sender's AE."""
        study = study_summary(self.engine, study_uid)
        if study is None:
            raise LookupError(f"study {study_uid} has no instance in the index")
        study_dir = str(self.locate(str(study_dir_for(self.layout, study.first_path, study_uid))))
        return {"path": study_dir, "study_dir": study_dir, "study_uid": study_uid, "account": study.account,
                "calling_aet": study.latest_calling_aet, "peer": "", "series_uid": "", "sop_instance_uid": "",
                "patient_id": study.patient_id, "patient_name": study.patient_name}
