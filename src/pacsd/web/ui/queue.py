"""`/ui/queue`: the forwarding queue for administrators (per destination: pending, in flight,
delivered, failed, oldest pending age, last error; retry and cancel), and `queue_figures`, what
the status page and /metrics show of it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from pacsd.index import forward_queue
from pacsd.web.access import current_user, require_admin
from pacsd.web.ui.templating import render

router = APIRouter()
RATE_WINDOW = timedelta(minutes=1)
_SHOWN_FAILED = 200


def queue_figures(archive) -> list[dict]:
    """Per destination: counts by state, the oldest pending item's age in seconds, the last
    error, and deliveries per second over the last minute."""
    now = datetime.now(timezone.utc)
    delivered = forward_queue.delivered_since(archive.engine, now - RATE_WINDOW)
    return [{"destination": s.destination, "pending": s.pending, "in_flight": s.in_flight,
             "delivered": s.delivered, "failed": s.failed, "cancelled": s.cancelled,
             "oldest_pending_seconds": round((now - s.oldest_pending).total_seconds(), 1) if s.oldest_pending else 0,
             "last_error": s.last_error[:300],
             "delivered_per_second": round(delivered.get(s.destination, 0) / RATE_WINDOW.total_seconds(), 2)}
            for s in forward_queue.summary(archive.engine, now)]


@router.get("/ui/queue", dependencies=[Depends(require_admin)])
def queue_page(request: Request) -> Response:
    archive = request.app.state.archive
    failed = forward_queue.list_items(archive.engine, state="failed", limit=_SHOWN_FAILED)
    return render(request, "queue.html", destinations=queue_figures(archive), failed=failed,
                  routes=archive.routes.routes)


@router.post("/ui/queue/{action}", dependencies=[Depends(require_admin)])
def queue_action(request: Request, action: str, destination: str = Form(""), item: int = Form(0)) -> Response:
    """Retry or cancel the failed and pending items of one destination, or one item."""
    archive = request.app.state.archive
    operation = {"retry": forward_queue.retry, "cancel": forward_queue.cancel}.get(action)
    if operation is None:
        return render(request, "error.html", status_code=404, message="no such queue action")
    count = operation(archive.engine, destination=destination[:512] or None, pks=[item] if item else None)
    archive.actions.record(f"queue-{action}", destination=destination[:512], item=item or "",
                           items=count, by=current_user(request).name)
    return RedirectResponse("/ui/queue", status_code=303)
