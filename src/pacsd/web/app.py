"""The FastAPI application: one app per process, built around the running `Archive`.

Routers live in modules of their own (`health`, `dicomweb`, `ui`, `ohif`) and are included
here; each reaches the archive through `request.app.state.archive`.  Errors are JSON with a
message, never a traceback; a browser asking for a page gets an HTML error page instead (and
the login form when it is not logged in).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from pacsd import __version__
from pacsd.errors import PacsError
from pacsd.services.archive import Archive

log = logging.getLogger(__name__)


def create_app(archive: Archive, connections=None) -> FastAPI:
    """The app around `archive`; `connections` is the DICOM listener's ConnectionTracker (the
    status page shows its live associations) when the listener runs in this process."""
    from fastapi.staticfiles import StaticFiles

    from pacsd.web.auth import install_auth
    from pacsd.web.ui.jobs import Jobs
    from pacsd.web.ui.status import install_status
    from pacsd.web.ui.templating import STATIC

    docs = archive.settings.http.api_docs
    app = FastAPI(title="pacsd", version=__version__, redoc_url=None, docs_url=DOCS_PATHS[0] if docs else None,
                  openapi_url=DOCS_PATHS[1] if docs else None)
    app.state.archive = archive
    app.state.settings = archive.settings
    app.state.connections = connections
    app.state.jobs = Jobs()
    _add_error_handlers(app)
    _add_page_safety(app)  # inside the login middleware (added after it: outside): it knows the user
    install_auth(app, archive.settings)
    install_status(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in _routers():
        app.include_router(router)
    _allow_cross_origin(app, archive.settings.http.cors_origins)
    return app


DOCS_PATHS = ("/api/docs", "/openapi.json")
# Headers on every answer: no page of ours inside another site's frame (clickjacking), no plugins,
# forms and <base> only to ourselves, no content-type guessing, no full URLs (UIDs) to other sites.
SAFETY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'; object-src 'none'; base-uri 'self'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _add_page_safety(app: FastAPI) -> None:
    """The safety headers on every answer; the API description only for logged-in users."""
    from pacsd.web.access import current_user

    @app.middleware("http")
    async def page_safety(request: Request, call_next):
        if request.url.path in DOCS_PATHS and request.app.docs_url:
            try:
                await run_in_threadpool(current_user, request)
            except StarletteHTTPException as exc:  # 401, or 429 for a throttled guesser
                return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)
        response = await call_next(request)
        for name, value in SAFETY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def _routers() -> list:
    from pacsd.web import dicomweb, health, ohif
    from pacsd.web.ui import ROUTERS as ui_routers

    return [health.router, *ui_routers, *dicomweb.routers(), ohif.router]


def _allow_cross_origin(app: FastAPI, origins: list[str]) -> None:
    """CORS for the configured origins (http.cors_origins); none by default."""
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["*"], expose_headers=["Content-Type", "Content-Location"])


def _add_error_handlers(app: FastAPI) -> None:
    from pacsd.web.ui.errors import page_error, wants_page

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if wants_page(request):
            return page_error(request, exc.status_code, str(exc.detail))
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=400)

    @app.exception_handler(PacsError)
    async def user_error(request: Request, exc: PacsError) -> Response:
        if wants_page(request):
            return page_error(request, 400, str(exc))
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("error serving %s %s", request.method, request.url.path)
        if wants_page(request):
            return page_error(request, 500, "internal error (see the server log)")
        return JSONResponse({"error": "internal error (see the server log)"}, status_code=500)
