"""Retrieve: the stored instances a C-MOVE, C-GET or "send to AE" asks for, ready to send.

`select` turns a retrieve identifier (level + unique keys) into stored instances;
`proposed_contexts` says what to propose to a destination (each stored syntax first); `prepare`
gives one instance as stored when the destination accepted that, transcoded when it did not.
Sending and counting over DIMSE is the `net` layer's job.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.presentation import PresentationContext, build_context
from sqlalchemy import Engine, select

from pacsd.dicom.deidentify import Profile
from pacsd.dicom.transcode import CannotTranscode, transcoded
from pacsd.errors import PacsError
from pacsd.index.areas import touch_studies
from pacsd.index.query_keys import UNIQUE_KEYS, joined_tables, levels_down_to
from pacsd.index.repository import StoredInstance
from pacsd.index.schema import instances, studies
from pacsd.services.deidentify import write_deidentified
from pacsd.services.query import InvalidQuery, check_level, parse_keys, sql_condition, visible_only
from pacsd.storage.blobstore import BlobStore

log = logging.getLogger(__name__)

UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
MAX_CONTEXTS = 127  # an association carries at most 128; one is kept for the caller


class CannotSend(PacsError):
    """An instance cannot be sent in any transfer syntax the destination accepted."""


@dataclass
class RetrieveCounts:
    """Sub-operation counts of one retrieve, as its responses report them."""

    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)
    reason: str = ""  # the Error Comment the peer gave with its last response, if any


class RetrieveService:
    def __init__(self, engine: Engine, blobs: BlobStore) -> None:
        self.engine = engine
        self.blobs = blobs

    def select(self, level: str, keys: Dataset | Mapping[str, Any], model: str = "study",
               accounts: Collection[str] | None = None) -> list[StoredInstance]:
        """The instances under the unique keys of a retrieve identifier, in archive order.

        The level's own unique key is required (one UID or a list); unique keys of the levels
        above narrow the selection when present.  `accounts` (None = all) keeps only studies
        of those physician accounts.
        """
        level = check_level(level, model)
        unique = {UNIQUE_KEYS[lv] for lv in levels_down_to(level)}
        parsed = [k for k in parse_keys(keys, fold_person_names=False) if k.keyword in unique]
        own = next((k for k in parsed if k.keyword == UNIQUE_KEYS[level]), None)
        if own is None or own.condition.kind not in ("single", "any"):
            raise InvalidQuery(f"a {level} level retrieve needs {UNIQUE_KEYS[level]} (one value or a list)")
        statement = select(instances.c.sop_uid, instances.c.sop_class_uid, instances.c.transfer_syntax,
                           instances.c.path, studies.c.study_uid).select_from(joined_tables("IMAGE"))
        for key in parsed:
            if not key.condition.is_universal:
                statement = statement.where(sql_condition(key))
        statement = visible_only(statement, "IMAGE", accounts)
        with self.engine.connect() as conn:
            rows = conn.execute(statement.order_by(instances.c.pk)).all()
        touch_studies(self.engine, {r.study_uid for r in rows})  # move rules: last retrieved
        return [StoredInstance(r.sop_uid, r.sop_class_uid, r.transfer_syntax, r.path, r.study_uid,
                               file=self.blobs.path_of(r.path)) for r in rows]


    def current(self, instance: StoredInstance) -> StoredInstance:
        """The instance as the index has it now, when its file is gone since it was selected (it was
        compressed meanwhile: another path, another syntax); unchanged otherwise."""
        if instance.file is not None and instance.file.is_file():
            return instance
        with self.engine.connect() as conn:
            row = conn.execute(select(instances.c.transfer_syntax, instances.c.path)
                               .where(instances.c.sop_uid == instance.sop_uid)).first()
        if row is None:
            return instance
        return replace(instance, transfer_syntax=row.transfer_syntax, path=row.path, file=self.blobs.path_of(row.path))


def proposed_contexts(selected: Iterable[StoredInstance]) -> list[PresentationContext]:
    """Per SOP class: one context per stored transfer syntax (sent unchanged when accepted) and
    one offering uncompressed syntaxes (the fallback when a compressed one is refused)."""
    wanted: dict[tuple[str, tuple[str, ...]], None] = {}
    for instance in selected:
        wanted[(instance.sop_class_uid, (instance.transfer_syntax,))] = None
    for sop_class, (syntax,) in list(wanted):
        if syntax not in UNCOMPRESSED:
            wanted[(sop_class, UNCOMPRESSED)] = None
    exact = [key for key in wanted if len(key[1]) == 1]
    fallback = [key for key in wanted if len(key[1]) > 1]
    chosen = (exact + fallback)[:MAX_CONTEXTS]
    if len(chosen) < len(wanted):
        log.warning("%d presentation contexts needed, %d proposed: some instances may fail",
                    len(wanted), len(chosen))
    return [build_context(sop_class, list(syntaxes)) for sop_class, syntaxes in chosen]


def accepted_syntaxes(contexts: Iterable[PresentationContext]) -> dict[str, set[str]]:
    """SOP class -> the transfer syntaxes a peer accepted for it."""
    accepted: dict[str, set[str]] = {}
    for context in contexts:
        accepted.setdefault(str(context.abstract_syntax), set()).update(map(str, context.transfer_syntax))
    return accepted


def prepare(instance: StoredInstance, accepted: Mapping[str, set[str]]) -> Path | Dataset:
    """The instance in a form the destination accepts: its file, to send unchanged, when the
    stored syntax was accepted; else a dataset transcoded (`pacsd.dicom.transcode`): decoded to
    an uncompressed syntax it accepted, or re-encoded losslessly in a compressed one.

    Raises CannotSend, its message the reason (short: it becomes the response's Error Comment).
    """
    syntaxes = accepted.get(instance.sop_class_uid, set())
    stored = UID(instance.transfer_syntax)
    file = resolved(instance)
    if not syntaxes:
        raise CannotSend("the destination accepted no context for its SOP class")
    if stored in syntaxes:
        if not file.is_file():
            raise CannotSend(f"its file {file.name} is missing")
        return file
    try:
        dataset: Dataset = dcmread(file)
    except (OSError, ValueError) as exc:
        raise CannotSend(f"cannot read {file.name}: {exc}") from None
    try:
        dataset = transcoded(dataset, syntaxes)
    except CannotTranscode as exc:
        raise CannotSend(str(exc)) from None
    log.info("sending %s transcoded from %s to %s", instance.sop_uid, stored.name,
             UID(dataset.file_meta.TransferSyntaxUID).name)
    return dataset


def deidentified_copy(instance: StoredInstance, profile: Profile, folder: Path) -> StoredInstance:
    """The instance de-identified into `folder` (same SOP class and transfer syntax, new UIDs), for a
    destination configured as de-identifying. Raises CannotSend when it cannot be (burned-in text)."""
    try:
        path = write_deidentified(resolved(instance), profile, folder)
    except PacsError as exc:
        raise CannotSend(f"{instance.sop_uid}: not de-identified: {exc}") from None
    return StoredInstance(path.stem, instance.sop_class_uid, instance.transfer_syntax, file=path)


def resolved(instance: StoredInstance) -> Path:
    """The file a selected instance is read from (set by `RetrieveService.select`)."""
    if instance.file is None:
        raise CannotSend(f"{instance.sop_uid}: no file resolved")
    return instance.file


def unsendable(instance: StoredInstance) -> Dataset:
    """A stand-in for an instance that cannot be sent: it names the instance and nothing else,
    so the sub-operation fails and the instance is listed among the failed ones."""
    stand_in = Dataset()
    stand_in.SOPInstanceUID = instance.sop_uid
    return stand_in
