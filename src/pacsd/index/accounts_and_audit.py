"""Named operations on the index's web users and audit trail (tables `users`, `audit_events`):
what `services.users` and `services.audit` call instead of writing SQL.  Password hashing and
the rules for names are theirs; rows are this module's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, insert, select, update

from pacsd.index.schema import audit_events, users


# -- web users -------------------------------------------------------------------------------
def insert_user(engine: Engine, name: str, password_hash: str, account: str, is_admin: bool, at: datetime) -> bool:
    """Add the user; False (nothing changed) when the name is taken."""
    with engine.begin() as conn:
        if conn.execute(select(users.c.pk).where(users.c.name == name)).first() is not None:
            return False
        conn.execute(insert(users).values(name=name, password_hash=password_hash, account=account, is_admin=is_admin,
                                          session_epoch=0, created_at=at))
    return True


def replace_password_hash(engine: Engine, name: str, password_hash: str) -> bool:
    """Set the user's password hash and end their sessions; False when there is no such user."""
    with engine.begin() as conn:
        return conn.execute(update(users).where(users.c.name == name).values(
            password_hash=password_hash, session_epoch=users.c.session_epoch + 1)).rowcount > 0


def end_user_sessions(engine: Engine, name: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(users).where(users.c.name == name).values(session_epoch=users.c.session_epoch + 1))


def user_rows(engine: Engine) -> list[Row]:
    with engine.connect() as conn:
        return list(conn.execute(select(users).order_by(users.c.name)))


def any_user(engine: Engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(users.c.name).limit(1)).first() is not None


def user_row(engine: Engine, name: str) -> Row | None:
    with engine.connect() as conn:
        return conn.execute(select(users).where(users.c.name == name)).first()


# -- audit trail -----------------------------------------------------------------------------
def insert_audit_event(engine: Engine, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(insert(audit_events).values(**values))


def recent_audit_events(engine: Engine, limit: int, actor: str = "", study_uid: str = "",
                        action: str = "") -> list[Row]:
    """The latest events first, only those of the actor, study and action given (non-empty)."""
    wanted = {audit_events.c.actor: actor, audit_events.c.study_uid: study_uid, audit_events.c.action: action}
    statement = select(audit_events).where(*(column == value for column, value in wanted.items() if value))
    with engine.connect() as conn:
        return list(conn.execute(statement.order_by(audit_events.c.pk.desc()).limit(limit)))
