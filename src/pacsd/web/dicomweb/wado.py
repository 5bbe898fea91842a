"""WADO-RS retrieve of studies, series and instances, their metadata, and bulk data.

Instances stream from disk as stored (multipart/related; type="application/dicom"), or transcoded
when the Accept header names another transfer syntax (e.g. a compressed instance uncompressed); metadata
comes from the index's stored DICOM JSON, its bulk data URIs made absolute; files are read only
for bulk data.  Frames and rendered images are in `wado_pixels`.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydicom.dataset import Dataset

from pacsd.dicom.files import read_dicom
from pacsd.dicom.transcode import transcoded_file
from pacsd.errors import PacsError
from pacsd.index.repository import StoredInstance
from pacsd.web.dicomweb.media import (
    DICOM,
    DICOM_JSON,
    OCTET_STREAM,
    choose_bulkdata_encoding,
    choose_instances_encoding,
    require_json,
)
from pacsd.web.dicomweb.multipart import OutgoingPart, multipart_type, new_boundary, write_parts
from pacsd.web.dicomweb.resources import (
    current_of,
    file_of,
    find_instances,
    instance_url,
    json_string_body,
)
from pacsd.web.ui.audit import audit

log = logging.getLogger(__name__)
router = APIRouter()

_STORED_BULK_URI = '"BulkDataURI":"bulkdata/'
_PIXEL_DATA = 0x7FE00010

SERIES = "/studies/{study}/series/{series}"
INSTANCE = SERIES + "/instances/{instance}"


@router.get("/studies/{study}")
def retrieve_study(request: Request, study: str) -> Response:
    return _retrieve(request, find_instances(request, study))


@router.get(SERIES)
def retrieve_series(request: Request, study: str, series: str) -> Response:
    return _retrieve(request, find_instances(request, study, series))


@router.get(INSTANCE)
def retrieve_instance(request: Request, study: str, series: str, instance: str) -> Response:
    return _retrieve(request, find_instances(request, study, series, instance), single_part_allowed=True)


def _retrieve(request: Request, found: list[StoredInstance], single_part_allowed: bool = False) -> Response:
    syntaxes = {stored.transfer_syntax for stored in found}
    audit(request, "downloaded", study_uid=found[0].study_uid, detail=f"WADO-RS: {len(found)} instance(s)")
    multipart, syntax = choose_instances_encoding(request.headers.get("accept"), syntaxes, single_part_allowed)
    if not multipart:
        only = current_of(request, found[0])
        if syntax is None:
            return FileResponse(file_of(request, only), media_type=f"{DICOM}; transfer-syntax={only.transfer_syntax}")
        return Response(_in_syntax(request, only, syntax), media_type=f"{DICOM}; transfer-syntax={syntax}")
    parts = (_part(request, stored, syntax) for stored in found)
    boundary = new_boundary()
    return StreamingResponse(write_parts(parts, boundary), media_type=multipart_type(DICOM, boundary))


def _part(request: Request, stored: StoredInstance, syntax: str | None) -> OutgoingPart:
    """One instance's part: its file as stored, or transcoded into `syntax` (an instance that
    cannot be is sent as stored, its part labelled so: the stream is under way, no 406 is possible)."""
    stored = current_of(request, stored)
    if syntax is not None and syntax != stored.transfer_syntax:
        try:
            return OutgoingPart(f"{DICOM}; transfer-syntax={syntax}", transcoded_file(file_of(request, stored), syntax),
                                instance_url(request, stored))
        except (PacsError, OSError, ValueError) as exc:
            log.warning("WADO-RS: %s sent as stored (%s): %s", stored.sop_uid, stored.transfer_syntax, exc)
    return OutgoingPart(f"{DICOM}; transfer-syntax={stored.transfer_syntax}", file_of(request, stored),
                        instance_url(request, stored))


def _in_syntax(request: Request, stored: StoredInstance, syntax: str) -> bytes:
    """One instance transcoded into `syntax`; 406 when it cannot be."""
    try:
        return transcoded_file(file_of(request, stored), syntax)
    except PacsError as exc:
        raise HTTPException(406, f"the object is stored as {stored.transfer_syntax}: {exc}") from None


@router.get("/studies/{study}/metadata")
def study_metadata(request: Request, study: str) -> Response:
    return _metadata(request, study)


@router.get(SERIES + "/metadata")
def series_metadata(request: Request, study: str, series: str) -> Response:
    return _metadata(request, study, series)


@router.get(INSTANCE + "/metadata")
def instance_metadata(request: Request, study: str, series: str, instance: str) -> Response:
    return _metadata(request, study, series, instance)


def _metadata(request: Request, study: str, series: str | None = None, instance: str | None = None) -> Response:
    require_json(request.headers.get("accept"))
    found = find_instances(request, study, series, instance, with_header=True)
    body = ",".join(_with_absolute_bulk_uris(request, stored) for stored in found)
    return Response(f"[{body}]", media_type=DICOM_JSON)


def _with_absolute_bulk_uris(request: Request, stored: StoredInstance) -> str:
    """The stored header with its 'bulkdata/<tag>' URIs pointing at our bulk data resource.

    The stored JSON is compact, and a quote inside a string value is escaped, so the pattern
    only ever matches a real BulkDataURI key.
    """
    absolute = json_string_body(instance_url(request, stored) + "/bulkdata/")
    return stored.header_json.replace(_STORED_BULK_URI, f'"BulkDataURI":"{absolute}')


@router.get(INSTANCE + "/bulkdata/{tag}")
def bulkdata(request: Request, study: str, series: str, instance: str, tag: str) -> Response:
    try:
        wanted = int(tag, 16) if len(tag) == 8 else -1
    except ValueError:
        wanted = -1
    if wanted < 0:
        raise HTTPException(400, f"bulk data {tag[:20]!r}: expected a tag as 8 hexadecimal digits")
    multipart = choose_bulkdata_encoding(request.headers.get("accept"))
    stored = find_instances(request, study, series, instance)[0]
    dataset = read_dicom(file_of(request, stored), stop_before_pixels=wanted < _PIXEL_DATA)
    value = _first_binary_value(dataset, wanted)
    if value is None:
        raise HTTPException(404, f"the instance has no bulk data element {tag.upper()}")
    if not multipart:
        return Response(value, media_type=OCTET_STREAM)
    boundary = new_boundary()
    return StreamingResponse(write_parts([OutgoingPart(OCTET_STREAM, value)], boundary),
                             media_type=multipart_type(OCTET_STREAM, boundary))


def _first_binary_value(dataset: Dataset, tag: int) -> bytes | None:
    """The bytes of the element `tag`, at the top level or else in the first item holding it.

    The stored header names bulk data by tag alone, so a nested element is found depth-first.
    """
    if tag in dataset and isinstance(dataset[tag].value, (bytes, bytearray)):
        return bytes(dataset[tag].value)
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value or ():
                found = _first_binary_value(item, tag)
                if found is not None:
                    return found
    return None
