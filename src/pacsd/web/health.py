"""`GET /healthz`: is the server up and its index reachable."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter()


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    try:
        with request.app.state.archive.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # the index is what makes us useful: report it
        return JSONResponse({"status": "error", "index": str(exc)}, status_code=503)
    return JSONResponse({"status": "ok"})
