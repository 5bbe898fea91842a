"""The audit trail: who (a user or a calling AE, from which address) did what to which patient
and study, when, and whether it worked; one append-only table (`audit_events`) that pacsd only
inserts into.  Web and DICOM handlers call `record`; the administrators' page reads `recent`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Engine, insert, select

from pacsd.index.schema import audit_events

log = logging.getLogger(__name__)

AUDIT_ACTIONS = ("viewed", "searched", "downloaded", "exported", "sent", "moved", "retrieved", "deleted",
                 "changed", "logged-in", "login-failed", "logged-out")
_LIMITS = {"actor": 64, "address": 64, "patient_id": 64, "study_uid": 64, "detail": 512}


@dataclass(frozen=True)
class Actor:
    name: str  # user name, calling AE title, or "pacsd"
    kind: str  # user | ae | system
    address: str = ""


def record(engine: Engine, actor: Actor, action: str, *, outcome: str = "success", patient_id: str = "",
           study_uid: str = "", detail: str = "") -> None:
    """Append one event.  A failure to write is logged and never fails what was audited."""
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    values = {"actor": actor.name, "address": actor.address, "patient_id": patient_id or "",
              "study_uid": study_uid or "", "detail": detail or ""}
    values = {key: _printable(str(value))[:_LIMITS[key]] for key, value in values.items()}
    try:
        with engine.begin() as conn:
            conn.execute(insert(audit_events).values(at=datetime.now(timezone.utc), actor_kind=actor.kind,
                                                     action=action, outcome=outcome, **values))
    except Exception:  # noqa: BLE001 - the index refused: said in the log, the action itself stands
        log.exception("could not record the audit event %s by %s", action, actor.name)


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in text)


def recent(engine: Engine, limit: int = 200, actor: str = "", study_uid: str = "", action: str = "") -> list:
    """The latest events first, optionally only of one actor, study or action."""
    statement = select(audit_events).order_by(audit_events.c.pk.desc()).limit(limit)
    if actor:
        statement = statement.where(audit_events.c.actor == actor)
    if study_uid:
        statement = statement.where(audit_events.c.study_uid == study_uid)
    if action:
        statement = statement.where(audit_events.c.action == action)
    with engine.connect() as conn:
        return conn.execute(statement).all()
