"""Jinja2 templates of the web interface (autoescaped) and the context every page gets.

`render(request, name, **context)` adds the user, the CSRF token and display helpers for DICOM
values (dates, person names); templates never build HTML from strings.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from pacsd import __version__
from pacsd.dicom.person_names import readable_person_name
from pacsd.web.auth import csrf_token

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
STATIC = Path(__file__).resolve().parents[1] / "static"

templates = Jinja2Templates(directory=str(TEMPLATES))  # .html templates are autoescaped


def dicom_date(value: str | None) -> str:
    """YYYYMMDD as YYYY-MM-DD (anything else shown as it is)."""
    value = value or ""
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else value


def human_bytes(count: int | None) -> str:
    size = float(count or 0)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


templates.env.filters.update(dicom_date=dicom_date, person_name=readable_person_name, human_bytes=human_bytes)
templates.env.globals["version"] = __version__


def render(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
    user = getattr(request.state, "user", None)
    context.update(user=user, csrf_token=csrf_token(request) if user is not None else "",
                   login_enabled=request.app.state.settings.web.login)
    return templates.TemplateResponse(request, name, context, status_code=status_code)
