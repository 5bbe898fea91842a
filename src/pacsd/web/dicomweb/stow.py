"""STOW-RS: POST /dicom-web/studies[/{study}] with multipart/related; type="application/dicom".

Each part is streamed to a temp file on the storage volume and handed to `Ingest.store`, the
path every image takes.  The answer is the PS3.18 store response (Referenced and Failed SOP
sequences) in application/dicom+json: 200 all stored, 202 some failed, 409 none stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydicom.dataset import Dataset
from starlette.concurrency import run_in_threadpool

from pacsd.dicom.header import read_header
from pacsd.errors import InvalidDicom
from pacsd.services.archive import Archive
from pacsd.services.ingest import CANNOT_UNDERSTAND, Expected, Source
from pacsd.web.access import visible_accounts
from pacsd.web.dicomweb.media import DICOM, DICOM_JSON, MULTIPART, parse_accept
from pacsd.web.dicomweb.multipart import IncomingPart, boundary_of, read_parts
from pacsd.web.dicomweb.resources import archive_of, check_uid, dicomweb_root

router = APIRouter()

# Failure reason for an instance of another study than the one in the URL (dcm4chee uses it too).
STUDY_UID_MISMATCH = 0xC409


@dataclass(frozen=True)
class PartOutcome:
    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    failure: int | None  # None = stored (or an identical copy was already kept)
    reason: str = ""


@router.post("/studies")
async def store(request: Request) -> JSONResponse:
    return await _store(request, None)


@router.post("/studies/{study}")
async def store_in_study(request: Request, study: str) -> JSONResponse:
    return await _store(request, check_uid(study, "study"))


async def _store(request: Request, study: str | None) -> JSONResponse:
    if await run_in_threadpool(visible_accounts, request) is not None:  # a password hash: not on the event loop
        raise HTTPException(403, "storing needs an account that may see every study")
    content_type = request.headers.get("content-type", "")
    media = parse_accept(content_type)[0]
    if media.media_type != MULTIPART or media.params.get("type", DICOM).lower() != DICOM:
        raise HTTPException(415, f'STOW-RS takes {MULTIPART}; type="{DICOM}", not {content_type or "no Content-Type"}')
    archive = archive_of(request)
    parts = await read_parts(request.stream(), boundary_of(content_type), archive.blobs.new_temp_path)
    peer = request.client.host if request.client else ""
    outcomes = await run_in_threadpool(lambda: [_store_part(archive, part, n, study, peer)
                                                for n, part in enumerate(parts, 1)])
    failed = sum(o.failure is not None for o in outcomes)
    status = 200 if not failed else 409 if failed == len(outcomes) else 202
    return JSONResponse(_response_dataset(request, outcomes, study).to_json_dict(), status_code=status,
                        media_type=DICOM_JSON)


def _store_part(archive: Archive, part: IncomingPart, number: int, study: str | None, peer: str) -> PartOutcome:
    """Ingest one part (its temp file is always consumed)."""
    part_type = part.content_type.split(";")[0].strip().lower()
    if part_type not in ("", DICOM):
        part.path.unlink(missing_ok=True)
        return PartOutcome("", "", "", "", CANNOT_UNDERSTAND, f"part {number} is {part_type}, not {DICOM}")
    try:
        header = read_header(part.path)
    except InvalidDicom as exc:
        part.path.unlink(missing_ok=True)
        return PartOutcome("", "", "", "", CANNOT_UNDERSTAND, f"part {number} is not DICOM: {exc}")
    uids = (header.sop_class_uid, header.sop_instance_uid, header.study_uid, header.series_uid)
    if study is not None and header.study_uid != study:
        part.path.unlink(missing_ok=True)
        return PartOutcome(*uids, STUDY_UID_MISMATCH, f"part {number} belongs to study {header.study_uid}")
    result = archive.ingest.store(part.path, Source("stow", peer=peer),
                                  Expected(header.sop_class_uid, header.sop_instance_uid))
    return PartOutcome(*uids, None if result.ok else result.status, result.reason)


def _response_dataset(request: Request, outcomes: list[PartOutcome], study: str | None) -> Dataset:
    root = dicomweb_root(request)
    response = Dataset()
    studies = {o.study_uid for o in outcomes if o.failure is None}
    if study or len(studies) == 1:
        response.RetrieveURL = f"{root}/studies/{study or studies.pop()}"
    referenced, failed = [], []
    for outcome in outcomes:
        item = Dataset()
        item.ReferencedSOPClassUID = outcome.sop_class_uid
        item.ReferencedSOPInstanceUID = outcome.sop_instance_uid
        if outcome.failure is None:
            item.RetrieveURL = (f"{root}/studies/{outcome.study_uid}/series/{outcome.series_uid}"
                                f"/instances/{outcome.sop_instance_uid}")
            referenced.append(item)
        else:
            item.FailureReason = outcome.failure
            item.TextValue = outcome.reason[:1024]  # the reason in words, beside the code
            failed.append(item)
    if referenced:
        response.ReferencedSOPSequence = referenced
    if failed:
        response.FailedSOPSequence = failed
    return response
