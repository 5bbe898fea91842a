"""The audit trail: who (a user or a calling AE, from which address) did what to which patient
and study, when, and whether it worked; one append-only table (`audit_events`) that pacsd only
inserts into, and, when `audit.syslog` is set, each event also sent as a DICOM audit message
(`audit_syslog`).  Web and DICOM handlers call `Archive.audit.record`; /ui/audit reads `recent`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from pacsd.index.accounts_and_audit import insert_audit_event, recent_audit_events

if TYPE_CHECKING:  # it imports this module
    from pacsd.services.audit_syslog import SyslogSender

log = logging.getLogger(__name__)

AUDIT_ACTIONS = ("viewed", "searched", "downloaded", "exported", "sent", "moved", "retrieved", "deleted",
                 "changed", "logged-in", "login-failed", "logged-out")
_LIMITS = {"actor": 64, "address": 64, "patient_id": 64, "study_uid": 64, "detail": 512}


@dataclass(frozen=True)
class Actor:
    name: str  # user name, calling AE title, or "pacsd"
    kind: str  # user | ae | system
    address: str = ""


@dataclass(frozen=True)
class AuditEvent:
    at: datetime
    actor: Actor
    action: str
    outcome: str  # success | failure
    patient_id: str = ""
    study_uid: str = ""
    detail: str = ""


class AuditTrail:
    """Appends events to the index and hands each to `forward` (the syslog sender) when set."""

    def __init__(self, engine: Engine, forward: SyslogSender | None = None) -> None:
        self.engine = engine
        self.forward = forward  # callable(AuditEvent) that never blocks, or None

    def record(self, actor: Actor, action: str, *, outcome: str = "success", patient_id: str = "",
               study_uid: str = "", detail: str = "") -> None:
        """Append one event.  A failure to write is logged and never fails what was audited."""
        if action not in AUDIT_ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        texts = {"actor": actor.name, "address": actor.address, "patient_id": patient_id or "",
                 "study_uid": study_uid or "", "detail": detail or ""}
        texts = {key: _printable(str(value))[:_LIMITS[key]] for key, value in texts.items()}
        event = AuditEvent(datetime.now(timezone.utc), Actor(texts["actor"], actor.kind, texts["address"]),
                           action, outcome, texts["patient_id"], texts["study_uid"], texts["detail"])
        try:
            insert_audit_event(self.engine, at=event.at, actor_kind=actor.kind, action=action, outcome=outcome,
                               **texts)
        except Exception:  # noqa: BLE001 - the index refused: said in the log, the action itself stands
            log.exception("could not record the audit event %s by %s", action, actor.name)
        if self.forward is not None:
            self.forward(event)

    def recent(self, limit: int = 200, actor: str = "", study_uid: str = "", action: str = "") -> list:
        """The latest events first, optionally only of one actor, study or action."""
        return recent_audit_events(self.engine, limit, actor, study_uid, action)


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in text)
