"""`/login` and `/logout`: a user name and password open a session cookie; logging out ends it."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from pacsd.services.users import FIRST_USER_COMMAND, authenticate, has_users
from pacsd.web.ui.templating import render

log = logging.getLogger(__name__)
router = APIRouter()


def local_target(next_path: str) -> str:
    """Where to go after logging in: a path on this server only (no open redirect)."""
    if next_path.startswith("/") and not next_path.startswith(("//", "/\\")):
        return next_path
    return "/ui/studies"


@router.get("/login")
def login_form(request: Request, next: str = "/ui/studies") -> Response:
    if not request.app.state.settings.web.login:
        return RedirectResponse(local_target(next), status_code=303)
    return render(request, "login.html", next=local_target(next), error="", username="",
                  first_user_command="" if has_users(request.app.state.archive.engine) else FIRST_USER_COMMAND)


@router.post("/login")
def login(request: Request, username: str = Form(...), password: str = Form(...),
          next: str = Form("/ui/studies")) -> Response:
    user = authenticate(request.app.state.archive.engine, username, password)
    if user is None:
        log.warning("failed login for %r from %s", username, request.client.host if request.client else "?")
        return render(request, "login.html", status_code=401, next=local_target(next),
                      error="Wrong user name or password.", username=username, first_user_command="")
    log.info("user %s logged in from %s", user.name, request.client.host if request.client else "?")
    sessions = request.app.state.sessions
    response = RedirectResponse(local_target(next), status_code=303)
    sessions.set_cookie(request, response, sessions.new(user))
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    request.app.state.sessions.clear_cookie(response)
    return response
