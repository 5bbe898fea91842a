"""Web interface users in the index: names, argon2 password hashes, account, admin flag.

Used by `pacsd user ...` and by the web login; knows nothing of HTTP.  Changing a password
bumps the user's session epoch, which ends every session opened before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, Row

from pacsd.errors import PacsError
from pacsd.index.accounts_and_audit import (
    any_user,
    end_user_sessions,
    insert_user,
    replace_password_hash,
    user_row,
    user_rows,
)

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
    if not insert_user(engine, name, _hasher.hash(password), account, is_admin, datetime.now(timezone.utc)):
        raise UserError(f"user {name} exists already (change the password with `pacsd user passwd`)")
    return User(name, account, is_admin)


def set_password(engine: Engine, name: str, password: str) -> None:
    _check_password(password)
    if not replace_password_hash(engine, name, _hasher.hash(password)):
        raise UserError(f"no user {name!r} (list them with `pacsd user list`)")


def end_sessions(engine: Engine, name: str) -> None:
    """End every session of the user (logging out: a copied cookie stops working too)."""
    end_user_sessions(engine, name)


def list_users(engine: Engine) -> list[User]:
    return [_as_user(row) for row in user_rows(engine)]


def has_users(engine: Engine) -> bool:
    """Whether anyone can log in to the web interface (until then: `pacsd user add NAME --admin`)."""
    return any_user(engine)


FIRST_USER_COMMAND = "pacsd user add admin --admin"


def find_user(engine: Engine, name: str) -> User | None:
    row = user_row(engine, name)
    return _as_user(row) if row is not None else None


def authenticate(engine: Engine, name: str, password: str) -> User | None:
    """The user when `password` is theirs, else None (same work whether the name exists or not)."""
    row = user_row(engine, name)
    try:
        _hasher.verify(row.password_hash if row is not None else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return _as_user(row) if row is not None else None
