"""Browsing pages: study search, a patient's studies, and a study with its series.

Every look-up goes through `pacsd.index.browse` with the caller's visible accounts, so a
study or patient outside them is simply not found (404).
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from pacsd.index import browse
from pacsd.services.users import User
from pacsd.web.access import current_user, visible_accounts
from pacsd.web.ohif import ohif_study_link
from pacsd.web.ui.audit import audit
from pacsd.web.ui.lookups import visible_study
from pacsd.web.ui.sheets import scan_sheet_links
from pacsd.web.ui.templating import render

router = APIRouter(dependencies=[Depends(current_user)])
PER_PAGE = 50
FILTER_FIELDS = ("patient_name", "patient_id", "date_from", "date_to", "modality", "accession",
                 "description", "account")


@router.get("/")
def home() -> Response:
    return RedirectResponse("/ui/studies", status_code=303)


def _dicom_date(form_value: str) -> str:
    """An <input type=date> value (YYYY-MM-DD) or YYYYMMDD as YYYYMMDD; anything else ignored."""
    digits = form_value.replace("-", "").strip()
    return digits if len(digits) == 8 and digits.isdigit() else ""


@router.get("/ui/studies")
def search(request: Request, sort: str = "date", order: str = "desc", page: int = 1) -> Response:
    user: User = current_user(request)
    form = {name: request.query_params.get(name, "").strip()[:64] for name in FILTER_FIELDS}
    if not user.is_admin:
        form["account"] = ""  # their own account is applied by visible_accounts
    wanted = browse.StudyFilter(**{**form, "date_from": _dicom_date(form["date_from"]),
                                   "date_to": _dicom_date(form["date_to"])})
    sort = sort if sort in browse.SORTABLE else "date"
    rows, has_more = browse.search_studies(request.app.state.archive.engine, wanted, visible_accounts(request),
                                           sort, order != "asc", page, PER_PAGE)
    query = {k: v for k, v in form.items() if v}

    def link(**changes) -> str:
        return "/ui/studies?" + urlencode({**query, "sort": sort, "order": order, "page": page, **changes})

    return render(request, "studies.html", rows=rows, form=form, sort=sort, order=order, page=page,
                  has_more=has_more, link=link)


@router.get("/ui/patient")
def patient(request: Request, id: str) -> Response:
    found = browse.find_patient(request.app.state.archive.engine, id, visible_accounts(request))
    if found is None:
        raise HTTPException(404, "no such patient")
    patient_row, studies = found
    return render(request, "patient.html", patient=patient_row, studies=studies)


@router.get("/ui/studies/{study_uid}")
def study(request: Request, study_uid: str) -> Response:
    archive = request.app.state.archive
    row = visible_study(request, study_uid)
    audit(request, "viewed", patient_id=row.patient_id, study_uid=study_uid)
    return render(request, "study.html", study=row, series=browse.series_of_study(archive.engine, row.pk),
                  known_aes=archive.settings.known_aes, sheets=scan_sheet_links(archive, study_uid),
                  ohif_link=ohif_study_link(archive.settings, study_uid))
