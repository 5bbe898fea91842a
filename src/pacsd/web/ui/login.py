"""`/login` and `/logout`: a user name and password open a session cookie; logging out ends it.

The login form is protected against cross-site posts (login CSRF): the form carries a token
that must equal the one in a SameSite=Strict cookie set with the form, and a browser's
Sec-Fetch-Site must not name another site.  Logging out ends every session of the user, so a
copied cookie stops working too.  Failed logins are throttled (`pacsd.web.login_guard`).
"""

from __future__ import annotations

import hmac
import logging
import secrets

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from pacsd.services.users import FIRST_USER_COMMAND, end_sessions, has_users
from pacsd.web.auth import checked_login, client_address, cookie_secure
from pacsd.web.ui.audit import audit
from pacsd.web.ui.templating import render

log = logging.getLogger(__name__)
router = APIRouter()
LOGIN_TOKEN_COOKIE = "pacsd_login"
LOGIN_TOKEN_FIELD = "login_token"


def local_target(next_path: str) -> str:
    """Where to go after logging in: a path on this server only (no open redirect)."""
    if next_path.startswith("/") and not next_path.startswith(("//", "/\\")):
        return next_path
    return "/ui/studies"


def _form(request: Request, status_code: int = 200, **context) -> Response:
    """The login form with a fresh login token, in the form and in its cookie."""
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", status_code=status_code, login_token=token, **context)
    response.set_cookie(LOGIN_TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/login",
                        secure=cookie_secure(request, request.app.state.settings), max_age=3600)
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/ui/studies") -> Response:
    if not request.app.state.settings.web.login:
        return RedirectResponse(local_target(next), status_code=303)
    return _form(request, next=local_target(next), error="", username="",
                 first_user_command="" if has_users(request.app.state.archive.engine) else FIRST_USER_COMMAND)


@router.post("/login")
def login(request: Request, username: str = Form(...), password: str = Form(...),
          next: str = Form("/ui/studies"), login_token: str = Form("")) -> Response:
    cookie = request.cookies.get(LOGIN_TOKEN_COOKIE, "")
    cross_site = request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none")
    if cross_site or not cookie or not hmac.compare_digest(cookie, login_token):
        log.warning("login form for %r from %s refused: not posted from our own login page",
                    username[:64], client_address(request))
        return _form(request, status_code=403, next=local_target(next), username="",
                     error="The login form had expired. Please log in again.")
    try:
        user = checked_login(request, username, password)
    except HTTPException as exc:
        return _form(request, status_code=exc.status_code, next=local_target(next), username=username,
                     error="Too many failed logins. Please wait a few minutes and try again.")
    if user is None:
        return _form(request, status_code=401, next=local_target(next),
                     error="Wrong user name or password.", username=username, first_user_command="")
    log.info("user %s logged in from %s", user.name, client_address(request))
    audit(request, "logged-in", name=user.name, detail="login form")
    sessions = request.app.state.sessions
    response = RedirectResponse(local_target(next), status_code=303)
    sessions.set_cookie(request, response, sessions.new(user))
    response.delete_cookie(LOGIN_TOKEN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    session = getattr(request.state, "session", None)
    if session is not None and request.app.state.settings.web.login:
        end_sessions(request.app.state.archive.engine, session.user_name)
        log.info("user %s logged out from %s: their sessions are ended", session.user_name, client_address(request))
        audit(request, "logged-out", name=session.user_name)
    response = RedirectResponse("/login", status_code=303)
    request.app.state.sessions.clear_cookie(response)
    return response
