"""Forwarding routes (settings `routes`) compiled once: which instances each route takes, and the
queue rows (one per destination) an instance that matches gets.  Matching reads only what ingest
already parsed (header, calling AE, account); it never touches the network or the index.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from pacsd.config import RouteSettings, Settings
from pacsd.dicom.header import Header
from pacsd.dicom.sopclasses import resolve_sop_classes
from pacsd.dicom.tags import parse_tag_path
from pacsd.dicom.transcode import LOSSLESS_ENCODINGS, NATIVE
from pacsd.dicom.transfer_syntaxes import resolve_transfer_syntax
from pacsd.errors import PacsError
from pacsd.index.matching import _NO_WILDCARD_VRS, Condition, matches, parse_condition
from pacsd.index.writer import InstanceRecord

AS_STORED = "as_stored"
SENDABLE_SYNTAXES = {str(uid) for uid in (*NATIVE, *LOSSLESS_ENCODINGS)}


class RouteError(PacsError):
    """A route in the settings cannot work (unknown destination, bad tag, bad wildcard)."""


@dataclass(frozen=True)
class InstanceFacts:
    """What a route may look at: values known at ingest (or from the index for study_stable);
    `tag_value(tag)` gives an element's values as text (None when absent)."""

    calling_aet: str
    modality: str
    sop_class_uid: str
    account: str
    tag_value: Callable[[BaseTag], list[str] | None]


@dataclass(frozen=True)
class _TagCondition:
    tag: BaseTag
    condition: Condition
    separator: str | None


@dataclass(frozen=True)
class Route:
    """A compiled route."""

    name: str
    when: str
    destinations: tuple[str, ...]
    transfer_syntax: str  # '' = as stored
    commitment: bool
    delete_after_delivery: bool
    calling_aet: Condition
    modality: Condition
    sop_classes: frozenset[str]  # empty = any
    account: Condition
    tags: tuple[_TagCondition, ...]

    def takes(self, facts: InstanceFacts) -> bool:
        if self.sop_classes and facts.sop_class_uid not in self.sop_classes:
            return False
        if not (matches(self.calling_aet, facts.calling_aet) and matches(self.modality, facts.modality)
                and matches(self.account, facts.account)):
            return False
        return all(matches(t.condition, facts.tag_value(t.tag), t.separator) for t in self.tags)

    def queue_rows(self, sop_uid: str, study_uid: str, now: datetime) -> list[dict]:
        """One pending forward_queue row per destination."""
        return [{"route": self.name, "destination": destination, "sop_uid": sop_uid, "study_uid": study_uid,
                 "state": "pending", "attempts": 0, "enqueued_at": now, "next_attempt_at": now,
                 "transfer_syntax": self.transfer_syntax, "commitment": self.commitment,
                 "delete_after": self.delete_after_delivery, "last_error": "", "claim": ""}
                for destination in self.destinations]


def is_web_destination(destination: str) -> bool:
    return destination.startswith(("http://", "https://"))


def compile_routes(settings: Settings) -> list[Route]:
    """The routes of `settings`; RouteError (one line naming the route) for one that cannot work."""
    names: set[str] = set()
    compiled = []
    for route in settings.routes:
        if route.name in names:
            raise RouteError(f"route {route.name!r}: another route has this name")
        names.add(route.name)
        try:
            compiled.append(_compile(route, settings))
        except (ValueError, PacsError) as exc:
            raise RouteError(f"route {route.name!r}: {exc}") from None
    return compiled


def _compile(route: RouteSettings, settings: Settings) -> Route:
    for destination in route.to:
        if not is_web_destination(destination) and settings.known_ae(destination) is None:
            raise ValueError(f"unknown destination {destination!r}: add it to known_aes (AE title, host, "
                             "port) or give a DICOMweb base URL (http:// or https://)")
    syntax = ""
    if route.transfer_syntax != AS_STORED:
        syntax = str(resolve_transfer_syntax(route.transfer_syntax))
        if syntax not in SENDABLE_SYNTAXES:
            raise ValueError(f"transfer_syntax {route.transfer_syntax!r}: pacsd converts only without loss; "
                             "use as_stored, an uncompressed syntax, JPEG 2000, JPEG-LS or RLE Lossless")
    if route.commitment and any(is_web_destination(d) for d in route.to):
        raise ValueError("commitment: Storage Commitment is a DICOM service; a DICOMweb destination cannot commit")
    match = route.match
    return Route(
        name=route.name, when=route.when, destinations=tuple(route.to), transfer_syntax=syntax,
        commitment=route.commitment, delete_after_delivery=route.delete_after_delivery,
        calling_aet=_condition("calling_aet", "AE", match.calling_aet),
        modality=_condition("modality", "CS", match.modality),
        sop_classes=frozenset(resolve_sop_classes(match.sop_class)) if match.sop_class else frozenset(),
        account=_condition("account", "LO", match.account),
        tags=tuple(_tag_condition(key, value) for key, value in match.tags.items()),
    )


def _condition(what: str, vr: str, values: list[str]) -> Condition:
    for value in values:
        _check_pattern(what, vr, value)
    return parse_condition(vr, values or None)


def _check_pattern(what: str, vr: str, value: str) -> None:
    if not value.isprintable() or "\\" in value:
        raise ValueError(f"{what}: {value!r} has a control character or a backslash (give a list for several values)")
    if len(value) > 324:
        raise ValueError(f"{what}: {value[:20]!r}... is longer than any DICOM value (324 characters)")
    if vr in _NO_WILDCARD_VRS and ("*" in value or "?" in value):
        raise ValueError(f"{what}: {value!r}: C-FIND takes no wildcards for VR {vr} (UIDs, numbers, dates, times); "
                         "dates and times take ranges (20240101-20241231)")


def _tag_condition(key: str, value: str | list[str]) -> _TagCondition:
    steps = parse_tag_path(key)
    if len(steps) != 1 or steps[0][1] is not None:
        raise ValueError(f"match.tags: {key!r}: give one top-level element, not a path into a sequence")
    tag = steps[0][0]
    vr = _vr_of(tag)
    if vr == "SQ":
        raise ValueError(f"match.tags: {key!r} is a sequence: match one of its items' elements is not supported")
    values = [value] if isinstance(value, str) else value
    for one in values:
        _check_pattern(f"match.tags {key!r}", vr, one)
    fold = vr == "PN"
    return _TagCondition(tag, parse_condition(vr, values or None, fold_case=fold), "=" if fold else None)


def _vr_of(tag: BaseTag) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"  # private or unknown: matched as text


# -- facts of an instance ----------------------------------------------------------------------

def facts_of_dataset(dataset: Dataset, calling_aet: str, account: str, modality: str,
                     sop_class_uid: str) -> InstanceFacts:
    """Facts of an instance being ingested (its parsed header)."""

    def tag_value(tag: BaseTag) -> list[str] | None:
        element = dataset.get(tag)
        if element is None or element.value is None:
            return None
        value = element.value
        if isinstance(value, (bytes, bytearray)):
            return [value.decode("latin-1", "replace")]
        if isinstance(value, Iterable) and not isinstance(value, str):
            return [str(v) for v in value]
        return [str(value)]

    return InstanceFacts(calling_aet, modality, sop_class_uid, account, tag_value)


def facts_of_json(header_json: str, calling_aet: str, account: str, modality: str,
                  sop_class_uid: str) -> InstanceFacts:
    """Facts of an instance in the index (its stored DICOM JSON header)."""
    header = json.loads(header_json)

    def tag_value(tag: BaseTag) -> list[str] | None:
        element = header.get(f"{int(tag):08X}")
        if not element or "Value" not in element:
            return None
        return [v.get("Alphabetic", "") if isinstance(v, dict) else str(v) for v in element["Value"]]

    return InstanceFacts(calling_aet, modality, sop_class_uid, account, tag_value)


class RouteTable:
    """The compiled routes; `companion_rows` is the one ingest-side entry point (called by the
    forwarding listener, `pacsd.services.builtin_listeners`)."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        self.on_stored = [r for r in routes if r.when == "stored"]
        self.on_stable = [r for r in routes if r.when == "study_stable"]

    def companion_rows(self, header: Header, record: InstanceRecord) -> dict[str, list[dict]]:
        """The forward_queue rows of an instance being stored, committed with its index row
        (through the listeners' `pacsd_rows_with_instance`)."""
        if not self.on_stored:
            return {}
        facts = facts_of_dataset(header.dataset, record.calling_aet, record.account,
                                 record.series.get("modality", ""), record.sop_class_uid)
        now = datetime.now(timezone.utc)
        rows = [row for route in self.on_stored if route.takes(facts)
                for row in route.queue_rows(record.sop_uid, header.study_uid, now)]
        return {"forward_queue": rows} if rows else {}
