"""A study, series or instance the caller may see, or 404: the look-ups every page and image
endpoint starts with (`pacsd.index.browse` filtered by `visible_accounts`)."""

from __future__ import annotations

from fastapi import HTTPException, Request

from pacsd.index import browse
from pacsd.web.access import visible_accounts


def _found(row, what: str):
    if row is None:
        raise HTTPException(404, f"no such {what}")
    return row


def visible_study(request: Request, study_uid: str):
    engine = request.app.state.archive.engine
    return _found(browse.find_study(engine, study_uid, visible_accounts(request)), "study")


def visible_series(request: Request, series_uid: str):
    engine = request.app.state.archive.engine
    return _found(browse.find_series(engine, series_uid, visible_accounts(request)), "series")


def visible_instance(request: Request, sop_uid: str):
    engine = request.app.state.archive.engine
    return _found(browse.find_instance(engine, sop_uid, visible_accounts(request)), "instance")
