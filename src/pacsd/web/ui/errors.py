"""Errors as a browser sees them: an HTML page, or the login form when not logged in.

API clients (DICOMweb, JSON endpoints, image requests) keep the JSON errors of `pacsd.web.app`.
"""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

API_PREFIXES = ("/dicom-web", "/dicomweb", "/wado", "/api", "/metrics", "/healthz", "/static")


def wants_page(request: Request) -> bool:
    """A browser navigating to a page (not a script fetching data or an image)."""
    path = request.url.path
    if path.startswith(API_PREFIXES) or path.endswith((".png", ".json", ".zip", ".pdf", ".csv")):
        return False
    return "text/html" in request.headers.get("accept", "")


def page_error(request: Request, status_code: int, message: str) -> Response:
    if status_code == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    from pacsd.web.ui.templating import render

    try:
        title = HTTPStatus(status_code).phrase
    except ValueError:
        title = "Error"
    return render(request, "error.html", status_code=status_code, title=title, message=message)
