"""pacsd's own listeners (see `pacsd.services.listeners`): the storage quotas' filter, the
forwarding queue's rows and study-level routes, the action log line of each stored instance and deleted study, the `on_instance` / `on_study_stable`
hooks, and the scan sheet of a stable study.  Built from the `Archive` that owns their state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pacsd.services.listeners import IncomingInstance, InstanceStored, Refusal, hookimpl

if TYPE_CHECKING:
    from pacsd.index.writer import InstanceRecord
    from pacsd.services.actionlog import ActionLog
    from pacsd.services.archive import Archive
    from pacsd.services.forwarding import Forwarding
    from pacsd.services.hooks import HookRunner
    from pacsd.services.quotas import QuotaGuard
    from pacsd.services.routes import RouteTable
    from pacsd.services.scansheet import ScanSheetWriter


OUT_OF_RESOURCES = 0xA700  # C-STORE status: Refused, Out of Resources


class QuotaListener:
    """Refuses an instance with 0xA700 (Out of Resources) once a quota is reached (after
    recycling, where configured): `QuotaGuard.admit`, from running totals."""

    def __init__(self, quotas: QuotaGuard) -> None:
        self.quotas = quotas

    @hookimpl
    def pacsd_filter_instance(self, incoming: IncomingInstance) -> Refusal | None:
        reason = self.quotas.admit(incoming.header)
        return None if reason is None else Refusal(OUT_OF_RESOURCES, reason)


class ForwardingListener:
    """The forward_queue rows of each stored instance that `stored` routes take, committed with
    its index row; the `study_stable` routes' rows of a stable study."""

    def __init__(self, routes: RouteTable, forwarding: Forwarding) -> None:
        self.routes, self.forwarding = routes, forwarding

    @hookimpl
    def pacsd_rows_with_instance(self, incoming: IncomingInstance,
                                 record: InstanceRecord) -> dict[str, list[dict]] | None:
        return self.routes.companion_rows(incoming.header, record)

    @hookimpl
    def pacsd_study_stable(self, study_uid: str) -> None:
        self.forwarding.study_stable(study_uid)


class ActionLogListener:
    """One action log line per stored instance (where, from whom, routed why) and deleted study."""

    def __init__(self, actions: ActionLog) -> None:
        self.actions = actions

    @hookimpl(tryfirst=True)
    def pacsd_instance_stored(self, stored: InstanceStored) -> None:
        routed = {"routed_to": stored.account, "because": stored.routed_because} if stored.account else {}
        self.actions.record(stored.action, sop=stored.sop_instance_uid, path=stored.relative_path,
                            source=stored.source.calling_aet or stored.source.kind, **routed)

    @hookimpl
    def pacsd_study_deleted(self, study_uid: str, instances: int, by: str) -> None:
        self.actions.record("study-deleted", study=study_uid, instances=instances, by=by)


class HookListener:
    """The configured handler commands: `on_instance` queued per instance, `on_study_stable`."""

    def __init__(self, hooks: HookRunner) -> None:
        self.hooks = hooks

    @hookimpl
    def pacsd_instance_stored(self, stored: InstanceStored) -> None:
        self.hooks.instance_stored(stored)

    @hookimpl(trylast=True)  # after the scan sheet, which the command may read
    def pacsd_study_stable(self, study_uid: str) -> None:
        self.hooks.study_stable(study_uid)


class ScanSheetListener:
    """The scan sheet (PDF and CSV) of a stable study, first of its end-of-study steps."""

    def __init__(self, sheets: ScanSheetWriter) -> None:
        self.sheets = sheets

    @hookimpl(tryfirst=True)
    def pacsd_study_stable(self, study_uid: str) -> None:
        self.sheets.write(study_uid)


def listeners(archive: Archive) -> list[tuple[str, object]]:
    """(name, listener) of each built-in listener; the name is also the end-of-study step's
    name in the action log (`<name>-failed`)."""
    made: list[tuple[str, object]] = [("action-log", ActionLogListener(archive.actions))]
    if archive.quotas.limits:
        made.append(("quota", QuotaListener(archive.quotas)))
    if archive.settings.scan_sheets.enabled:
        made.append(("scan-sheet", ScanSheetListener(archive.scan_sheets)))
    made.append(("hook-on_study_stable", HookListener(archive.hooks)))
    if archive.routes.routes:
        made.append(("forwarding", ForwardingListener(archive.routes, archive.forwarding)))
    return made
