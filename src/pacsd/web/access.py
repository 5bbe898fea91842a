"""Who may see what over HTTP: the one place pages, thumbnails, downloads and DICOMweb ask.

`visible_accounts(request)` returns None when the caller may see every study (an admin, or
login turned off), else the set of physician accounts whose studies they may see.  Every
HTTP handler that reads studies filters through it; a study outside the set answers 404.
It fails closed: with login on and nobody logged in it raises `LoginRequired` (401).
"""

from __future__ import annotations

from fastapi import HTTPException, Request

from pacsd.services.users import User

# Who everyone is when login is turned off (a single-user desktop install).
LOCAL_USER = User(name="local", account="", is_admin=True)


class LoginRequired(HTTPException):
    def __init__(self) -> None:
        super().__init__(401, "login required")


def current_user(request: Request) -> User:
    """The logged-in user (set by `pacsd.web.auth`'s middleware, or HTTP Basic credentials
    checked now, on first asking), or `LoginRequired`."""
    user = getattr(request.state, "user", None)
    if user is None and getattr(request.state, "resolve_user", None) is not None:
        resolve, request.state.resolve_user = request.state.resolve_user, None
        user = request.state.user = resolve()
    if user is None:
        raise LoginRequired()
    return user


def require_admin(request: Request) -> User:
    user = current_user(request)
    if not user.is_admin:
        raise HTTPException(403, "only an administrator may do that")
    return user


def visible_accounts(request: Request) -> set[str] | None:
    user = current_user(request)
    if user.is_admin:
        return None
    return {user.account} if user.account else set()
