"""`/ui/audit`: the audit trail for administrators (latest first, filtered by actor, study or
action), and `audit(request, ...)`, how web handlers record what their caller did."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from pacsd.services.audit import AUDIT_ACTIONS, Actor
from pacsd.web.access import current_user, require_admin
from pacsd.web.ui.templating import render

router = APIRouter()
_SHOWN = 500


def web_actor(request: Request, name: str | None = None) -> Actor:
    """The caller as an audit actor: `name`, else the logged-in user, from the client address."""
    if name is None:
        user = getattr(request.state, "user", None)
        name = user.name if user is not None else "anonymous"
    return Actor(name, "user", request.client.host if request.client else "")


def audit(request: Request, action: str, *, name: str | None = None, **fields) -> None:
    """Record `action` of this request's caller (see `services.audit.record` for the fields)."""
    request.app.state.archive.audit.record(web_actor(request, name), action, **fields)


@router.get("/ui/audit", dependencies=[Depends(require_admin)])
def audit_page(request: Request, actor: str = "", study: str = "", action: str = "") -> Response:
    current_user(request)
    action = action if action in AUDIT_ACTIONS else ""
    events = request.app.state.archive.audit.recent(_SHOWN, actor[:64], study[:64], action)
    return render(request, "audit.html", events=events, actions=AUDIT_ACTIONS,
                  form={"actor": actor[:64], "study": study[:64], "action": action})
