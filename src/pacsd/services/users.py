"""Web interface users in the index: names, argon2 password hashes, account, admin flag.

Used by `pacsd user ...` and by the web login; knows nothing of HTTP.  Changing a password
bumps the user's session epoch, which ends every session opened before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, Row, insert, select, update

from pacsd.errors import PacsError
from pacsd.index.schema import users

_hasher = PasswordHasher()
# Verified against when the user does not exist, so an unknown name costs as much as a wrong password.
_DUMMY_HASH = _hasher.hash("not a password of anyone")
MIN_PASSWORD_LENGTH = 8


class UserError(PacsError):
    """A user command that cannot be done as asked (unknown user, name taken, weak password)."""


@dataclass(frozen=True)
class User:
    name: str
    account: str = ""
    is_admin: bool = False
    session_epoch: int = 0


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 64 or not name.isprintable():
        raise UserError(f"{name!r} is not a user name (1-64 printable characters)")
    return name


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")


def _as_user(row: Row) -> User:
    return User(row.name, row.account, bool(row.is_admin), row.session_epoch)


def add_user(engine: Engine, name: str, password: str, account: str = "", is_admin: bool = False) -> User:
    name = _check_name(name)
    _check_password(password)
    with engine.begin() as conn:
        if conn.execute(select(users.c.pk).where(users.c.name == name)).first() is not None:
            raise UserError(f"user {name} exists already (change the password with `pacsd user passwd`)")
        conn.execute(insert(users).values(name=name, password_hash=_hasher.hash(password), account=account,
                                          is_admin=is_admin, session_epoch=0,
                                          created_at=datetime.now(timezone.utc)))
    return User(name, account, is_admin)


def set_password(engine: Engine, name: str, password: str) -> None:
    _check_password(password)
    with engine.begin() as conn:
        done = conn.execute(update(users).where(users.c.name == name).values(
            password_hash=_hasher.hash(password), session_epoch=users.c.session_epoch + 1)).rowcount
    if not done:
        raise UserError(f"no user {name!r} (list them with `pacsd user list`)")


def end_sessions(engine: Engine, name: str) -> None:
    """End every session of the user (logging out: a copied cookie stops working too)."""
    with engine.begin() as conn:
        conn.execute(update(users).where(users.c.name == name).values(session_epoch=users.c.session_epoch + 1))


def list_users(engine: Engine) -> list[User]:
    with engine.connect() as conn:
        return [_as_user(row) for row in conn.execute(select(users).order_by(users.c.name))]


def has_users(engine: Engine) -> bool:
    """Whether anyone can log in to the web interface (until then: `pacsd user add NAME --admin`)."""
    with engine.connect() as conn:
        return conn.execute(select(users.c.name).limit(1)).first() is not None


FIRST_USER_COMMAND = "pacsd user add admin --admin"


def find_user(engine: Engine, name: str) -> User | None:
    with engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.name == name)).first()
    return _as_user(row) if row is not None else None


def authenticate(engine: Engine, name: str, password: str) -> User | None:
    """The user when `password` is theirs, else None (same work whether the name exists or not)."""
    with engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.name == name)).first()
    try:
        _hasher.verify(row.password_hash if row is not None else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return _as_user(row) if row is not None else None
