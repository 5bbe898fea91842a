"""Login sessions and CSRF protection for every HTTP request.

A session is a signed (HMAC-SHA256), HTTP-only, SameSite=Lax cookie holding the user name, the
user's session epoch, an expiry and the session's CSRF token.  The middleware puts the user on
`request.state.user` (from the cookie; HTTP Basic credentials of API clients are checked only
when a handler asks who the caller is, through `login_guard`) and refuses a state-changing
request made with the cookie unless it carries the CSRF token (form field `csrf_token` or header
`X-CSRF-Token`).  Access decisions are made in `pacsd.web.access`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from pacsd.config import Settings
from pacsd.secret_files import key_from_file
from pacsd.services.audit import Actor
from pacsd.services.users import User, authenticate, find_user
from pacsd.web.access import LOCAL_USER
from pacsd.web.login_guard import TooManyFailedLogins, guards_for

log = logging.getLogger(__name__)

SESSION_COOKIE = "pacsd_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Paths a state-changing request may reach without a session's CSRF token: the login form
# itself (there is no session yet).
CSRF_EXEMPT = frozenset({"/login"})


@dataclass(frozen=True)
class Session:
    user_name: str
    epoch: int
    expires: float
    csrf_token: str


class SessionSigner:
    """Encodes sessions as `payload.signature` cookie values and checks them back."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def encode(self, session: Session) -> str:
        payload = json.dumps([session.user_name, session.epoch, session.expires, session.csrf_token],
                             separators=(",", ":")).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{body}.{self._sign(body)}"

    def decode(self, value: str) -> Session | None:
        body, _, signature = value.partition(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            name, epoch, expires, csrf = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            session = Session(str(name), int(epoch), float(expires), str(csrf))
        except (ValueError, TypeError, binascii.Error):
            return None
        return session if session.expires > time.time() else None

    def _sign(self, body: str) -> str:
        digest = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def session_key_path(settings: Settings) -> Path:
    """`web.session_secret_file`, by default `.pacsd/session.key` in the storage directory: the
    folder every node of a site shares, so a session opened on one node is valid on all."""
    return Path(settings.web.session_secret_file or Path(settings.storage.directory) / ".pacsd" / "session.key")


def session_key(settings: Settings) -> bytes:
    """The signing key from `session_key_path`, created with 32 random bytes, readable by the
    owner only, when missing."""
    return key_from_file(session_key_path(settings), "session key")


class Sessions:
    """Opens and reads sessions for one app: the signer, the lifetime and the cookie flags."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.signer = SessionSigner(session_key(settings))

    def new(self, user: User) -> Session:
        lifetime = self.settings.web.session_hours * 3600
        return Session(user.name, user.session_epoch, time.time() + lifetime, secrets.token_urlsafe(24))

    def set_cookie(self, request: Request, response: Response, session: Session) -> None:
        response.set_cookie(SESSION_COOKIE, self.signer.encode(session), httponly=True, samesite="lax",
                            secure=cookie_secure(request, self.settings), path="/",
                            max_age=int(session.expires - time.time()))

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/")

    def user_of(self, request: Request, session: Session) -> User | None:
        if not self.settings.web.login:
            return LOCAL_USER
        user = find_user(request.app.state.archive.engine, session.user_name)
        return user if user is not None and user.session_epoch == session.epoch else None


def cookie_secure(request: Request, settings: Settings) -> bool:
    """The Secure flag of our cookies: `web.cookie_secure`, else set when serving HTTPS ourselves
    or when the request came over https."""
    if settings.web.cookie_secure is not None:
        return settings.web.cookie_secure
    return settings.http.https or request.url.scheme == "https"


def csrf_token(request: Request) -> str:
    """The CSRF token forms of this page must carry (opens a session when login is off)."""
    session = getattr(request.state, "session", None)
    if session is None:
        sessions: Sessions = request.app.state.sessions
        session = sessions.new(LOCAL_USER)
        request.state.session = request.state.new_session = session
    return session.csrf_token


def install_auth(app: FastAPI, settings: Settings) -> None:
    app.state.sessions = sessions = Sessions(settings)
    app.state.login_throttle, app.state.verified_credentials = guards_for(settings.web)
    if not settings.web.login:
        log.warning("web login is turned off (web.login: false): everyone who reaches the web "
                    "server is an administrator")

    @app.middleware("http")
    async def authenticate_request(request: Request, call_next):
        request.state.session = request.state.new_session = None
        session = sessions.signer.decode(request.cookies.get(SESSION_COOKIE, ""))
        user = sessions.user_of(request, session) if session is not None else None
        if user is not None:
            request.state.session = session
        elif not settings.web.login:
            user = LOCAL_USER
        elif request.headers.get("authorization"):
            request.state.resolve_user = lambda: _basic_auth_user(request)  # when a handler asks
        request.state.user = user
        refusal = await _csrf_refusal(request)
        if refusal is not None:
            return refusal
        response = await call_next(request)
        if request.state.new_session is not None:
            sessions.set_cookie(request, response, request.state.new_session)
        return response


def _basic_auth_user(request: Request) -> User | None:
    """HTTP Basic credentials of API clients (DICOMweb tools).  No challenge is ever sent, so a
    browser never caches such credentials (which would make them CSRF-able).  Credentials
    verified in the last `web.basic_auth_cache_seconds` are not hashed again; a user name or
    address with too many recent failures gets 429 without hashing."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    engine, cache = request.app.state.archive.engine, request.app.state.verified_credentials
    known_epoch = cache.epoch(name, password)
    if known_epoch is not None:
        user = find_user(engine, name)
        if user is not None and user.session_epoch == known_epoch:
            return user
    user = checked_login(request, name, password)
    if user is not None:
        cache.remember(name, password, user.session_epoch)
    return user


def client_address(request: Request) -> str:
    return request.client.host if request.client else "?"


def checked_login(request: Request, name: str, password: str) -> User | None:
    """`authenticate`, unless the name or the address failed too often lately (then HTTP 429,
    no hashing); a failure is counted and logged."""
    throttle, address = request.app.state.login_throttle, client_address(request)
    try:
        throttle.check(name, address)
    except TooManyFailedLogins as exc:
        log.warning("login for %r from %s refused: %s", name[:64], address, exc)
        request.app.state.archive.audit.record(Actor(name[:64], "user", address), "login-failed",
               outcome="failure", detail="refused: too many failed logins")
        raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
    user = authenticate(request.app.state.archive.engine, name, password)
    if user is None:
        throttle.failed(name, address)
        log.warning("failed login for %r from %s", name[:64], address)
        request.app.state.archive.audit.record(Actor(name[:64], "user", address), "login-failed",
               outcome="failure", detail="wrong user name or password")
    else:
        throttle.succeeded(name)
    return user


async def _csrf_refusal(request: Request) -> Response | None:
    if request.method in SAFE_METHODS or request.url.path in CSRF_EXEMPT:
        return None
    session: Session | None = request.state.session
    if session is None:
        # No session cookie: an API client with Basic credentials or (login off) no credentials
        # at all.  A browser says where a request comes from; refuse one made by another site.
        if request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none"):
            return None
        return JSONResponse({"error": "cross-site request refused"}, status_code=403)
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        sent = parse_qs((await request.body()).decode("latin-1")).get(CSRF_FIELD, [""])[0]
    if sent and hmac.compare_digest(sent, session.csrf_token):
        return None
    log.warning("refused %s %s from %s: missing or wrong CSRF token", request.method, request.url.path,
                request.client.host if request.client else "?")
    return JSONResponse({"error": "missing or wrong CSRF token (reload the page)"}, status_code=403)
