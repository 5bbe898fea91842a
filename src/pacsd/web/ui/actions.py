"""Actions on studies: download as a ZIP with a DICOMDIR, the upload page (files go in through
STOW-RS), send to a known AE (C-STORE, as a background job with progress), delete
(administrators, after confirmation).

Every action first finds the study through the caller's visible accounts (else 404).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.background import BackgroundTask

from pacsd.dicom.person_names import readable_person_name
from pacsd.index.areas import set_protected
from pacsd.pathnames import path_component
from pacsd.services.deidentify import site_profile
from pacsd.services.deletion import delete_study
from pacsd.services.export import DeidentifiedExportIncomplete, export_fileset, instance_files
from pacsd.web.access import current_user, require_admin
from pacsd.web.ui.audit import audit
from pacsd.web.ui.jobs import Job
from pacsd.web.ui.lookups import visible_series, visible_study
from pacsd.web.ui.templating import dicom_date, render

log = logging.getLogger(__name__)
router = APIRouter(dependencies=[Depends(current_user)])


@router.get("/ui/studies/{study_uid}/download.zip")
def download_zip(request: Request, study_uid: str, deidentify: bool = False) -> FileResponse:
    """The study as a ZIP with a DICOMDIR; `?deidentify=1`: every instance de-identified by the site's
    profile (all or nothing: 409 naming why when one cannot be, e.g. burned-in annotation)."""
    study = visible_study(request, study_uid)
    archive = request.app.state.archive
    work = Path(tempfile.mkdtemp(prefix="pacsd-zip-"))
    try:
        zip_path = work / "study.zip"
        profile = site_profile(archive.settings) if deidentify else None
        export_fileset(archive, work / "fileset", zip_path, deidentify=profile, study=study_uid)
    except DeidentifiedExportIncomplete as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise HTTPException(409, str(exc)) from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    audit(request, "exported", patient_id=study.patient_id, study_uid=study_uid,
          detail="de-identified ZIP" if deidentify else "ZIP with DICOMDIR")
    name = ("deidentified" if deidentify else
            path_component(f"{study.patient_id}_{study.study_date}", default="study")) + ".zip"
    return FileResponse(zip_path, media_type="application/zip", filename=name,
                        background=BackgroundTask(shutil.rmtree, work, ignore_errors=True))


# -- upload ------------------------------------------------------------------------------------
@router.get("/ui/upload", dependencies=[Depends(require_admin)])
def upload_page(request: Request) -> Response:
    """The drag-and-drop page; its script stores each file with STOW-RS (POST /dicom-web/studies),
    which only administrators may do, so only they get the page."""
    return render(request, "upload.html")


# -- send --------------------------------------------------------------------------------------
@router.post("/ui/send")
def send(request: Request, study_uid: str = Form(...), ae_title: str = Form(...),
         series_uid: str = Form("")) -> Response:
    archive = request.app.state.archive
    study = visible_study(request, study_uid)
    one_series = visible_series(request, series_uid) if series_uid else None
    peer = archive.settings.known_ae(ae_title)
    if peer is None:
        raise HTTPException(400, f"{ae_title} is not a known AE (known_aes in the settings)")
    paths = instance_files(archive, series_uid=series_uid) if series_uid else instance_files(archive, study=study_uid)
    what = f"series {series_uid}" if series_uid else f"study {study_uid}"
    audit(request, "sent", study_uid=study_uid, detail=f"{what} to {ae_title}")
    user_name = current_user(request).name

    def work(job: Job) -> None:
        def total(count: int) -> None:
            job.total = count

        def one_done() -> None:
            job.done += 1

        report = archive.remote.send(peer, paths, on_total=total, on_file=one_done)
        job.problems.extend(f"{p.name}: {why}" for p, why in report.skipped)
        job.failed = len(report.failed)
        job.problems.extend(f"{p.name}: {why}" for p, why in report.failed)
        job.message = f"{len(report.sent)} sent, {len(report.failed)} failed"
        job.state = "finished" if not report.failed else "failed"
        archive.actions.record("sent", what=what, to=peer.ae_title, sent=len(report.sent), failed=len(report.failed),
                               by=user_name)

    job = request.app.state.jobs.start(f"Send {_readable_study(study, one_series)} to {peer.ae_title}", user_name, work)
    return RedirectResponse(f"/ui/jobs/{job.id}", status_code=303)


def _readable_study(study, one_series=None) -> str:
    """A study (or one of its series) as people know it: 'the CT study of DOE, JOHN of 2024-01-15
    (Chest)'; 'series 3 (Axial) of ...' for a series."""
    modalities = "/".join(m for m in (study.modalities or "").split("\\") if m)
    parts = [f"{modalities} study" if modalities else "study"]
    name = readable_person_name(study.patient_name)
    parts.append(f"of {name}" if name else f"of patient {study.patient_id or '-'}")
    if study.study_date:
        parts.append(f"of {dicom_date(study.study_date)}")
    if study.description:
        parts.append(f"({study.description})")
    text = " ".join(parts)
    if one_series is not None:
        label = " ".join(part for part in (one_series.series_number, f"({one_series.description})"
                                          if one_series.description else "") if part)
        text = f"series {label or one_series.series_uid} of the {text}"
    return text


def _own_job(request: Request, job_id: int) -> Job:
    job = request.app.state.jobs.get(job_id)
    if job is None or (job.owner != current_user(request).name and not current_user(request).is_admin):
        raise HTTPException(404, "no such job")
    return job


@router.get("/ui/jobs/{job_id}.json")
def job_state(request: Request, job_id: int) -> JSONResponse:
    return JSONResponse(_own_job(request, job_id).as_dict())


@router.get("/ui/jobs/{job_id}")
def job_page(request: Request, job_id: int) -> Response:
    return render(request, "job.html", job=_own_job(request, job_id))


# -- protect from retention and recycling ------------------------------------------------------
@router.post("/ui/studies/{study_uid}/protect", dependencies=[Depends(require_admin)])
def protect(request: Request, study_uid: str, change: str = Form("")) -> Response:
    """Set or clear the protected flag of the study or of its patient (`change`: study:on,
    study:off, patient:on, patient:off)."""
    study = visible_study(request, study_uid)
    level, _, state = change.partition(":")
    if level not in ("study", "patient") or state not in ("on", "off"):
        raise HTTPException(400, "change is study:on, study:off, patient:on or patient:off")
    now = state == "on"
    uid = study_uid if level == "study" else study.patient_id
    set_protected(request.app.state.archive.engine, level, uid, now)
    request.app.state.archive.actions.record("protected" if now else "unprotected", **{level: uid},
                                             by=current_user(request).name)
    return RedirectResponse(f"/ui/studies/{quote(study_uid, safe='')}", status_code=303)


# -- delete ------------------------------------------------------------------------------------
@router.get("/ui/studies/{study_uid}/delete", dependencies=[Depends(require_admin)])
def confirm_delete(request: Request, study_uid: str) -> Response:
    return render(request, "delete.html", study=visible_study(request, study_uid))


@router.post("/ui/studies/{study_uid}/delete", dependencies=[Depends(require_admin)])
def delete(request: Request, study_uid: str, confirm: str = Form("")) -> Response:
    study = visible_study(request, study_uid)
    if confirm != "delete":
        return render(request, "delete.html", status_code=400, study=study, error="Type delete to confirm.")
    delete_study(request.app.state.archive, study_uid, by=current_user(request).name)
    audit(request, "deleted", patient_id=study.patient_id, study_uid=study_uid)
    return RedirectResponse("/ui/studies", status_code=303)
