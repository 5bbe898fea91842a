"""QIDO-RS: search for studies, series and instances, answered in application/dicom+json.

Matching is `QueryService.find`, the same code as C-FIND; this module turns the query string
into keys (limit, offset, fuzzymatching, includefield), filters by the caller's visible
accounts, and adds each match's RetrieveURL.
"""

from __future__ import annotations

import itertools
import json

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.tag import Tag

from pacsd.index.query_keys import COLUMN_KEYS, levels_down_to
from pacsd.services.answers import Answer
from pacsd.services.query import QueryService
from pacsd.web.access import visible_accounts
from pacsd.web.dicomweb.media import DICOM_JSON, require_json
from pacsd.web.dicomweb.resources import archive_of, check_uid, dicomweb_root
from pacsd.web.ui.audit import audit

router = APIRouter()

_CONTROL_PARAMS = {"limit", "offset", "fuzzymatching", "includefield"}
_STUDY_UID, _SERIES_UID, _SOP_UID = 0x0020000D, 0x0020000E, 0x00080018
_RETRIEVE_URL = "00081190"
_STUDY_KEYS = ("StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "ReferringPhysicianName",
               "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID", "StudyDescription",
               "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "InstanceAvailability")
_SERIES_KEYS = ("Modality", "SeriesDescription", "SeriesNumber", "SeriesDate", "SeriesTime", "BodyPartExamined",
                "NumberOfSeriesRelatedInstances")
_INSTANCE_KEYS = ("SOPClassUID", "InstanceNumber", "Rows", "Columns", "NumberOfFrames", "InstanceAvailability")


@router.get("/studies")
def search_studies(request: Request) -> Response:
    return _search(request, "STUDY", _STUDY_KEYS)


@router.get("/series")
def search_series(request: Request) -> Response:
    return _search(request, "SERIES", _STUDY_KEYS + _SERIES_KEYS)


@router.get("/instances")
def search_instances(request: Request) -> Response:
    return _search(request, "IMAGE", _STUDY_KEYS + _SERIES_KEYS + _INSTANCE_KEYS)


@router.get("/studies/{study}/series")
def search_series_of_study(request: Request, study: str) -> Response:
    return _search(request, "SERIES", _SERIES_KEYS, StudyInstanceUID=check_uid(study, "study"))


@router.get("/studies/{study}/instances")
def search_instances_of_study(request: Request, study: str) -> Response:
    return _search(request, "IMAGE", _SERIES_KEYS + _INSTANCE_KEYS, StudyInstanceUID=check_uid(study, "study"))


@router.get("/studies/{study}/series/{series}/instances")
def search_instances_of_series(request: Request, study: str, series: str) -> Response:
    return _search(request, "IMAGE", _INSTANCE_KEYS, StudyInstanceUID=check_uid(study, "study"),
                   SeriesInstanceUID=check_uid(series, "series"))


def _search(request: Request, level: str, default_keys: tuple[str, ...], **fixed: str) -> Response:
    require_json(request.headers.get("accept"))
    params = request.query_params
    limit, offset = _count_param(params, "limit"), _count_param(params, "offset")
    keys: dict[str, object] = dict.fromkeys(default_keys, "")
    keys.update(dict.fromkeys(_included_keys(params.getlist("includefield"), level), ""))
    fuzzy = _fuzzy_param(params.get("fuzzymatching"))
    for name, value in params.multi_items():
        if name not in _CONTROL_PARAMS:
            keys[name] = _query_value(name, value, fuzzy)
    keys.update(fixed)
    archive = archive_of(request)
    caps = [n for n in (limit, archive.settings.query_retrieve.max_results) if n]
    most = min(caps) if caps else 0
    service = QueryService(archive.engine, archive.settings.server.ae_title,
                           archive.settings.query_retrieve.case_insensitive_names)
    matches = iter(service.find(level, keys, limit=most + 1 if most else 0, offset=offset,
                                accounts=visible_accounts(request)))
    try:  # one answer beyond `most` tells whether there are more
        answers = list(itertools.islice(matches, most + 1)) if most else list(matches)
    finally:
        matches.close()  # the query's connection goes back to the pool here, not at garbage collection
    audit(request, "searched", detail=f"QIDO-RS {level}: " + "&".join(
        f"{name}={value}" for name, value in params.multi_items())[:400])
    headers = {}
    if most and len(answers) > most:
        answers = answers[:most]
        if not limit:
            headers["Warning"] = "299 pacsd: more matches than the server returns at once; use limit and offset"
    root = dicomweb_root(request)
    body = json.dumps([_as_json(answer, level, root) for answer in answers], ensure_ascii=False)
    return Response(body, media_type=DICOM_JSON, headers=headers)


# Attributes OHIF's study list iterates without looking for a Value first (getModalities in
# @ohif/core 3.12: `ModalitiesInStudy.Value.length`): answered as {"vr": "CS"} when empty, one
# study without a Modality broke the whole list.  An empty one is left out of the answer instead.
_READ_WITHOUT_CHECKS = ("00080061", "00080062")


def _as_json(answer: Answer, level: str, root: str) -> dict:
    url = f"{root}/studies/{answer.text(_STUDY_UID)}"
    if level in ("SERIES", "IMAGE"):
        url += f"/series/{answer.text(_SERIES_UID)}"
    if level == "IMAGE":
        url += f"/instances/{answer.text(_SOP_UID)}"
    as_dict = answer.as_json()
    for tag in _READ_WITHOUT_CHECKS:
        if tag in as_dict and not as_dict[tag].get("Value"):
            del as_dict[tag]
    as_dict[_RETRIEVE_URL] = {"vr": "UR", "Value": [url]}
    return as_dict


def _count_param(params, name: str) -> int:
    text = params.get(name)
    if text is None or text == "":
        return 0
    if not text.isdigit() or len(text) > 9:  # 10^9 and more: past any archive, and past SQL's integers
        raise HTTPException(400, f"{name}={text[:20]!r}: expected a whole number from 0 to 999999999")
    return int(text)


def _fuzzy_param(text: str | None) -> bool:
    if text in (None, "", "false"):
        return False
    if text == "true":
        return True
    raise HTTPException(400, f"fuzzymatching={text[:20]!r}: expected true or false")


def _included_keys(values: list[str], level: str) -> list[str]:
    """includefield: attribute names or tags, comma-separated or repeated; 'all' = every indexed key."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if "all" in names:
        reach = set(levels_down_to(level))
        names = [n for n in names if n != "all"] + [k for k, c in COLUMN_KEYS.items() if c.level in reach]
    return names


def _query_value(name: str, value: str, fuzzy: bool) -> object:
    """A query parameter's value as a key: UID lists split at commas; with fuzzymatching a
    person name matches wherever its text appears (case-insensitively, as names always are)."""
    vr = _vr_of(name)
    if vr == "UI" and "," in value:
        return [part.strip() for part in value.split(",")]
    if vr == "PN" and fuzzy and value and not set(value) & {"*", "?"}:
        return f"*{value}*"
    return value


def _vr_of(name: str) -> str:
    tag = tag_for_keyword(name)
    try:
        tag = tag if tag is not None else Tag(name)
        return dictionary_VR(tag)
    except (KeyError, ValueError, TypeError, OverflowError):
        return ""  # unknown names are refused by the query service with a clear message
