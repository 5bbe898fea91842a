"""Who may see what over HTTP: the one place pages, thumbnails, downloads and DICOMweb ask.

`visible_accounts(request)` returns None when the caller may see every study (an admin, or
login turned off), else the set of physician accounts whose studies they may see.  Every
HTTP handler that reads studies filters through it; a study outside the set answers 404.
The web interface's login (users, sessions) fills this in; until then everything is visible.
"""

from __future__ import annotations

from fastapi import Request


def visible_accounts(request: Request) -> set[str] | None:
    user = getattr(request.state, "user", None)
    if user is None or getattr(user, "is_admin", True):
        return None
    return {user.account} if getattr(user, "account", "") else set()
