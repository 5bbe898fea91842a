"""Content negotiation for DICOMweb: parse the Accept header and pick what we send, or 406.

One function per kind of resource (instances, frames, rendered images, JSON, bulk data); each
returns what to send for the first acceptable media range in the client's order of preference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import HTTPException

from pacsd.dicom.frames import FRAME_MEDIA_TYPES, UNCOMPRESSED
from pacsd.dicom.transcode import LOSSLESS_ENCODINGS, NATIVE
from pacsd.services.rendering import RENDERED_MEDIA_TYPES

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
OCTET_STREAM = "application/octet-stream"
MULTIPART = "multipart/related"
_ANY = {"*/*", "multipart/*"}
TRANSCODABLE = {str(uid) for uid in (*NATIVE, *LOSSLESS_ENCODINGS)}  # syntaxes instances are sent in on request


@dataclass(frozen=True)
class MediaRange:
    media_type: str
    params: dict[str, str] = field(default_factory=dict)
    quality: float = 1.0

    @property
    def part_type(self) -> str:
        """The type of the parts for multipart/related (its `type` parameter), else the type."""
        if self.media_type == MULTIPART:
            return self.params.get("type", "*/*")
        return self.media_type

    @property
    def transfer_syntax(self) -> str | None:
        return self.params.get("transfer-syntax")

    @property
    def is_multipart(self) -> bool:
        return self.media_type == MULTIPART or self.media_type in _ANY


def parse_accept(header: str | None) -> list[MediaRange]:
    """The media ranges of an Accept header, most preferred first; none given means */*."""
    ranges = []
    for text in _split_outside_quotes(header or "", ","):
        pieces = _split_outside_quotes(text, ";")
        if not pieces or not pieces[0]:
            continue
        params = {}
        for piece in pieces[1:]:
            name, _, value = piece.partition("=")
            params[name.strip().lower()] = value.strip().strip('"').strip()
        try:
            quality = float(params.pop("q", "1"))
        except ValueError:
            quality = 1.0
        if quality > 0:
            ranges.append(MediaRange(pieces[0].lower(), params, quality))
    ranges.sort(key=lambda r: -r.quality)  # stable: equal preferences keep their order
    return ranges or [MediaRange("*/*")]


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def _not_acceptable(what: str, accept: str | None) -> HTTPException:
    return HTTPException(406, f"cannot send {what} as any of Accept: {accept or '*/*'}")


def choose_instances_encoding(accept: str | None, stored_syntaxes: set[str],
                              single_part_allowed: bool) -> tuple[bool, str | None]:
    """(True for multipart/related of application/dicom, False for one bare application/dicom;
    the transfer syntax to send in, None for each file as stored).

    Files are sent as stored unless a transfer-syntax other than '*' names another one pacsd can
    transcode into losslessly (an uncompressed one, JPEG-LS, JPEG 2000 or RLE Lossless)."""
    for media in parse_accept(accept):
        syntax = media.transfer_syntax
        as_stored = syntax in (None, "*") or stored_syntaxes <= {syntax}
        syntax_ok = as_stored or syntax in TRANSCODABLE
        chosen = None if as_stored else syntax
        if media.is_multipart and media.part_type in (DICOM, "application/*", "*/*") and syntax_ok:
            return True, chosen
        if media.media_type == DICOM and single_part_allowed and syntax_ok:
            return False, chosen
    raise _not_acceptable("DICOM instances stored as " + ", ".join(sorted(stored_syntaxes)), accept)


def choose_frame_encoding(accept: str | None, stored_syntax: str) -> bool:
    """True to send frames compressed as stored, False to send them uncompressed."""
    stored_media_type = FRAME_MEDIA_TYPES.get(stored_syntax)
    for media in parse_accept(accept):
        if not media.is_multipart:
            continue
        syntax, part = media.transfer_syntax, media.part_type
        if syntax == "*":
            return True
        if part in (OCTET_STREAM, "application/*", "*/*") and syntax in (None, UNCOMPRESSED):
            return False
        if stored_media_type and syntax in (None, stored_syntax) and part in (stored_media_type, "image/*"):
            return True
    raise _not_acceptable(f"frames (stored as {stored_syntax}; uncompressed is {UNCOMPRESSED})", accept)


def choose_rendered_type(accept: str | None) -> str:
    for media in parse_accept(accept):
        if media.media_type in ("*/*", "image/*"):
            return "image/jpeg"
        if media.media_type in RENDERED_MEDIA_TYPES:
            return media.media_type
    raise _not_acceptable("a rendered image (image/jpeg or image/png)", accept)


def require_json(accept: str | None) -> None:
    for media in parse_accept(accept):
        if media.media_type in (DICOM_JSON, "application/json", "application/*", "*/*"):
            return
    raise _not_acceptable(DICOM_JSON, accept)


def choose_bulkdata_encoding(accept: str | None) -> bool:
    """True for multipart/related of application/octet-stream, False for the bare bytes."""
    for media in parse_accept(accept):
        if media.is_multipart and media.part_type in (OCTET_STREAM, "application/*", "*/*"):
            return True
        if media.media_type == OCTET_STREAM:
            return False
    raise _not_acceptable(f"bulk data ({OCTET_STREAM})", accept)
