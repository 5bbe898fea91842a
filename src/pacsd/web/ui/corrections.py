"""Corrections in the web interface (administrators): a form on each study, a confirmation page that
shows what changes (old -> new, how many instances), then the change itself.

The work is `pacsd.services.corrections`'; a request that cannot be made answers 400 with the reason.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from pacsd.errors import PacsError
from pacsd.index import browse
from pacsd.services import corrections
from pacsd.web.access import require_admin
from pacsd.web.ui.lookups import visible_study
from pacsd.web.ui.templating import render

router = APIRouter(dependencies=[Depends(require_admin)])
OPERATIONS = ("modify", "merge", "move", "split")


@router.get("/ui/studies/{study_uid}/correct")
def correction_form(request: Request, study_uid: str) -> Response:
    study = visible_study(request, study_uid)
    return render(request, "correct.html", study=study, editable=corrections.EDITABLE,
                  series=browse.series_of_study(request.app.state.archive.engine, study.pk))


async def _request_fields(request: Request) -> dict:
    form = await request.form()
    fields = {key: str(value) for key, value in form.multi_items() if key not in ("csrf_token", "series_uids")}
    fields["series_uids"] = [str(v) for v in form.getlist("series_uids") if str(v)]
    return fields


def _plan(archive, fields: dict) -> corrections.Correction:
    """The correction a form asks for (nothing written); raises PacsError when it cannot be made."""
    op = fields.get("op", "")
    if op == "modify":
        changes = {key[4:]: value for key, value in fields.items() if key.startswith("set_") and value.strip()}
        return corrections.plan_modify(archive, fields.get("level", ""), fields.get("uid", ""), changes)[0]
    if op == "merge":
        return corrections.plan_merge(archive, fields.get("uid", ""), fields.get("target", "").strip())[0]
    if op == "move":
        return corrections.plan_move(archive, fields["series_uids"], fields.get("target", "").strip())[0]
    if op == "split":
        return corrections.plan_move(archive, fields["series_uids"], None, source_study_uid=fields.get("uid", ""))[0]
    raise corrections.CorrectionRefused(f"unknown correction {op!r} (one of {', '.join(OPERATIONS)})")


def _apply(archive, fields: dict, by: str) -> corrections.Correction:
    op = fields["op"]
    if op == "modify":
        changes = {key[4:]: value for key, value in fields.items() if key.startswith("set_") and value.strip()}
        return corrections.modify(archive, fields["level"], fields["uid"], changes, by=by)
    if op == "merge":
        return corrections.merge_patients(archive, fields["uid"], fields["target"].strip(), by=by)
    if op == "move":
        return corrections.move_series(archive, fields["series_uids"], fields["target"].strip(), by=by)
    return corrections.split_study(archive, fields["uid"], fields["series_uids"], by=by)


@router.post("/ui/correct/preview")
async def preview(request: Request) -> Response:
    fields = await _request_fields(request)
    visible_study(request, fields.get("study_uid", ""))
    try:
        plan = await run_in_threadpool(_plan, request.app.state.archive, fields)
    except PacsError as exc:
        return render(request, "correct_confirm.html", status_code=400, error=str(exc), fields=fields, plan=None)
    return render(request, "correct_confirm.html", plan=plan, fields=fields, error="")


@router.post("/ui/correct/apply")
async def apply(request: Request) -> Response:
    fields = await _request_fields(request)
    study_uid = fields.get("study_uid", "")
    visible_study(request, study_uid)
    try:
        _plan(request.app.state.archive, fields)
        done = await run_in_threadpool(_apply, request.app.state.archive, fields, request.state.user.name)
    except PacsError as exc:
        return render(request, "correct_confirm.html", status_code=400, error=str(exc), fields=fields, plan=None)
    if done.kind in ("move", "split"):
        study_uid = done.new_study_uid  # where the series went
    return RedirectResponse(f"/ui/studies/{quote(study_uid, safe='')}", status_code=303)
