"""Retrieve from a remote PACS (administrators): find studies on a known AE with C-FIND, then ask
it to C-MOVE one to a destination (this archive or another known AE), as a background job whose
page shows the sub-operation counts.  The DICOM work is `pacsd.services.remote_nodes`'s.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydicom.uid import UID

from pacsd.config import KnownAE, Settings
from pacsd.errors import PacsError
from pacsd.services.archive import Archive
from pacsd.services.retrieve import RetrieveCounts
from pacsd.web.access import current_user, require_admin
from pacsd.web.ui.jobs import Job
from pacsd.web.ui.templating import render

router = APIRouter(dependencies=[Depends(require_admin)])
MOST_ANSWERS = 200
SEARCH_FIELDS = ("patient_id", "patient_name", "accession")
STUDY_KEYS = {"StudyInstanceUID": "", "PatientName": "", "PatientID": "", "StudyDate": "", "StudyDescription": "",
              "AccessionNumber": "", "ModalitiesInStudy": "", "NumberOfStudyRelatedInstances": ""}


def _known(settings: Settings, ae_title: str, what: str) -> KnownAE:
    known = settings.known_ae(ae_title)
    if known is None:
        raise HTTPException(400, f"{what} {ae_title[:16]!r} is not a known AE (known_aes in the settings)")
    return known


def _destinations(settings: Settings) -> list[str]:
    """Where a move may send to: this archive first, then every known AE."""
    own = settings.server.ae_title
    return [own, *(ae.ae_title for ae in settings.known_aes if ae.ae_title != own)]


def _find_studies(archive: Archive, source: KnownAE, form: dict[str, str]) -> list[dict[str, str]]:
    """The studies the source answers for the filled-in form fields (wildcards as in C-FIND)."""
    keys = {**STUDY_KEYS, "PatientID": form["patient_id"], "PatientName": form["patient_name"],
            "AccessionNumber": form["accession"]}
    return [{keyword: str(answer.get(keyword, "") or "") for keyword in STUDY_KEYS}
            for answer in archive.remote.find_studies(source, keys, MOST_ANSWERS)]


@router.get("/ui/remote")
def remote_page(request: Request, source: str = "", study_uid: str = "") -> Response:
    """The form; with a source and some search field, that source's matching studies."""
    settings = request.app.state.settings
    form = {name: request.query_params.get(name, "").strip()[:64] for name in SEARCH_FIELDS}
    studies, error = None, ""
    if source and any(form.values()):
        try:
            studies = _find_studies(request.app.state.archive, _known(settings, source, "source"), form)
        except PacsError as exc:
            error = str(exc)
    return render(request, "remote.html", status_code=502 if error else 200, known_aes=settings.known_aes,
                  destinations=_destinations(settings), source=source, study_uid=study_uid[:64], form=form,
                  studies=studies, error=error, most=MOST_ANSWERS)


@router.post("/ui/remote/move")
def move(request: Request, source: str = Form(...), study_uid: str = Form(...),
         destination: str = Form(...)) -> Response:
    """Ask `source` to C-MOVE the study to `destination`; the job page follows it."""
    settings = request.app.state.settings
    archive = request.app.state.archive
    remote = _known(settings, source, "source")
    if destination not in _destinations(settings):
        raise HTTPException(400, f"destination {destination[:16]!r} is neither this archive nor a known AE")
    study_uid = study_uid.strip()
    if not UID(study_uid).is_valid:
        raise HTTPException(400, f"{study_uid[:80]!r} is not a Study Instance UID")
    user_name = current_user(request).name

    def work(job: Job) -> None:
        def progress(counts: RetrieveCounts) -> None:
            job.done = counts.completed + counts.warning + counts.failed
            job.total, job.failed = job.done + counts.remaining, counts.failed

        outcome = "error"
        try:
            counts = archive.remote.move_study(remote, study_uid, destination, progress)
            job.problems.extend(f"not sent: {uid}" for uid in counts.failed_uids)
            job.message = f"{counts.completed} moved, {counts.warning} with warnings, {counts.failed} failed"
            job.state = "failed" if counts.failed else "finished"
            outcome = job.state
        finally:
            archive.actions.record("move-requested", study=study_uid, source=remote.ae_title, to=destination,
                                   outcome=outcome, moved=job.done - job.failed, failed=job.failed, by=user_name)

    job = request.app.state.jobs.start(f"{remote.ae_title}: move study {study_uid} to {destination}", user_name, work)
    return RedirectResponse(f"/ui/jobs/{job.id}", status_code=303)
