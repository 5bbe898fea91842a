"""What every DICOMweb route needs: UIDs from the path checked, the instances they name found
through the caller's visible accounts (404 otherwise), and URLs of the resources we serve.

Files are only ever opened through a path the index holds, never one built from the request.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

from fastapi import HTTPException, Request

from pacsd.errors import FrameOutOfRange, NoPixelData, PixelDecodeError
from pacsd.index.areas import touch_studies
from pacsd.index.repository import StoredInstance, current_instance, instances_of
from pacsd.services.archive import Archive
from pacsd.web.access import visible_accounts

ROOT = "/dicom-web"
_UID = re.compile(r"[0-9A-Za-z._-]{1,64}")


def archive_of(request: Request) -> Archive:
    return request.app.state.archive


def check_uid(value: str, what: str) -> str:
    if not _UID.fullmatch(value):
        raise HTTPException(400, f"{what} {value[:80]!r} is not a UID")
    return value


def find_instances(request: Request, study: str, series: str | None = None, instance: str | None = None,
                   with_header: bool = False) -> list[StoredInstance]:
    """The visible instances under the UIDs; 404 when there are none."""
    check_uid(study, "study")
    if series is not None:
        check_uid(series, "series")
    if instance is not None:
        check_uid(instance, "instance")
    found = instances_of(archive_of(request).engine, visible_accounts(request), study, series, instance,
                         with_header=with_header)
    if not found:
        what = "instance" if instance else "series" if series else "study"
        raise HTTPException(404, f"no such {what}")
    touch_studies(archive_of(request).engine, [study])  # move rules: last retrieved
    return found


def current_of(request: Request, stored: StoredInstance) -> StoredInstance:
    """`stored` as the index has it now when its file went since it was found (compressed meanwhile)."""
    archive = archive_of(request)
    return current_instance(archive.engine, archive.blobs.path_of, stored)


def file_of(request: Request, stored: StoredInstance) -> Path:
    return archive_of(request).blobs.absolute(stored.path)


def public_base(request: Request) -> str:
    """Scheme and authority of the URLs we hand out: `http.public_url`, else the address the
    request came in on (this server's own socket address).  Never the Host header: a client
    chooses it, and it would be echoed into every RetrieveURL (a site behind a proxy or with a
    DNS name sets `http.public_url`)."""
    configured = request.app.state.settings.http.public_url
    if configured:
        return configured.rstrip("/")
    server = request.scope.get("server")
    if server is None:
        return str(request.base_url).rstrip("/")
    host, port = server[0], server[1]
    host = f"[{host}]" if ":" in host else host
    default_port = 443 if request.url.scheme == "https" else 80
    return f"{request.url.scheme}://{host}" + ("" if port == default_port else f":{port}")


def dicomweb_root(request: Request) -> str:
    return public_base(request) + ROOT


def study_url(request: Request, study_uid: str) -> str:
    return f"{dicomweb_root(request)}/studies/{study_uid}"


def instance_url(request: Request, stored: StoredInstance) -> str:
    return (f"{study_url(request, stored.study_uid)}/series/{stored.series_uid}"
            f"/instances/{stored.sop_uid}")


def json_string_body(text: str) -> str:
    """`text` escaped to sit between the quotes of a JSON string."""
    return json.dumps(text)[1:-1]


@contextlib.contextmanager
def pixel_errors() -> Iterator[None]:
    """Pixel problems as HTTP answers: no image or frame is 404, an undecodable one 406."""
    try:
        yield
    except (NoPixelData, FrameOutOfRange) as exc:
        raise HTTPException(404, str(exc)) from None
    except PixelDecodeError as exc:
        raise HTTPException(406, f"{exc}; ask for the frames with transfer-syntax=*") from None
