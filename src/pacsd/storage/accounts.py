"""Physician accounts: which account an instance belongs to, and the `accounts` naming scheme.

`route_to_account` is the routing rule (a pure function of the header and the configured
accounts); `AccountsLayout` turns its answer into `<account>/<study>/Dicom/<series>/NNN-NNN-NNNNNN.dcm`,
keeping every later instance of a study in the account and folder its first one was given.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Protocol

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from pacsd.dicom.header import first_text, integer_or_none
from pacsd.pathnames import path_component
from pacsd.storage.layout import Placement, render_component

log = logging.getLogger(__name__)

REQUESTING, REFERRING = "RequestingPhysician", "ReferringPhysicianName"
_ROLE = {REQUESTING: "requesting physician", REFERRING: "referring physician"}
DICOM_FOLDER = "Dicom"
ACCOUNT_MAX_CHARS = 128  # the index column's width


def normalise_person_name(name: str) -> tuple[str, ...]:
    """A PN's alphabetic, ideographic and phonetic groups, each compared without case, surrounding
    spaces or empty trailing components (`doe ^ john^^` is `DOE^JOHN`); empty groups dropped."""
    keys = []
    for group in str(name).split("="):
        components = [part.strip().upper() for part in group.split("^")]
        while components and not components[-1]:
            components.pop()
        if components:
            keys.append("^".join(components))
    return tuple(keys)


@dataclass(frozen=True)
class AccountBook:
    """Physician name (normalised) -> account name, built from the configured accounts."""

    by_physician: dict[str, str]
    guest: str = "Guest"
    unknown: str = "Unknown"

    @classmethod
    def from_accounts(cls, accounts: Iterable[Any], guest: str = "Guest", unknown: str = "Unknown") -> "AccountBook":
        """`accounts`: objects with `name` and `physicians` (config `accounts.entries`)."""
        by_physician: dict[str, str] = {}
        for account in accounts:
            for physician in account.physicians:
                for key in normalise_person_name(physician):
                    by_physician.setdefault(key, account.name)
        return cls(by_physician, guest, unknown)

    def account_of(self, name: str) -> str | None:
        return next((self.by_physician[key] for key in normalise_person_name(name)
                     if key in self.by_physician), None)


def _names(dataset: Dataset, keyword: str) -> list[str]:
    value = dataset.get(keyword)
    values = value if isinstance(value, MultiValue) else [value]
    return [str(v).strip() for v in values if v is not None and normalise_person_name(str(v))]


def route_to_account(dataset: Dataset, accounts: AccountBook | Iterable[Any]) -> tuple[str, str]:
    """(account, reason): requesting physician's account, else referring physician's, else
    `Guest/<first physician named>`, else `Unknown`."""
    book = accounts if isinstance(accounts, AccountBook) else AccountBook.from_accounts(accounts)
    named = {keyword: _names(dataset, keyword) for keyword in (REQUESTING, REFERRING)}
    for keyword, names in named.items():
        for name in names:
            account = book.account_of(name)
            if account is not None:
                return account, f"{_ROLE[keyword]} {name!r} has account {account!r}"
    for keyword, names in named.items():
        if names:
            account = f"{book.guest}/{names[0]}"[:ACCOUNT_MAX_CHARS]
            return account, f"{_ROLE[keyword]} {names[0]!r} has no account"
    return book.unknown, "no requesting or referring physician named"


def _number(dataset: Dataset, keyword: str) -> int | None:
    """The element's integer; absent for anything else ('inf', '1e999', '1e300': no folder name)."""
    return integer_or_none(first_text(dataset, keyword))


def _padded(number: int, width: int) -> str:
    return f"{number:0{width}d}" if number >= 0 else f"m{-number:0{width}d}"


class StudyFolders(Protocol):
    """Each study's account and folder, fixed by the first claim (`pacsd.index.study_folders`)."""

    def claim(self, study_uid: str, account: str, folder: str) -> tuple[str, str]:
        """The study's (account, folder): these when it has none yet, else the ones it has; a
        folder already held by another study is never returned for this one."""


class AccountsLayout:
    """`<root>/<account>/<study folder>/Dicom/<series number>_<description>/<SSS>-<EEE>-<CCCCCC>.dcm`.

    With `study_folders`, a study stays in the account and folder of its first instance, and a
    study whose tags name a folder another study holds gets its own (`<folder>_2`, ...)."""

    def __init__(self, book: AccountBook, study_folder: str, root: str = "",
                 study_folders: StudyFolders | None = None) -> None:
        self.book = book
        self.study_folder = study_folder
        self.root = PurePosixPath(*[path_component(part) for part in root.split("/") if part])
        self.study_folders = study_folders

    @classmethod
    def from_settings(cls, settings: Any, study_folders: StudyFolders | None = None) -> "AccountsLayout":
        accounts = settings.accounts
        book = AccountBook.from_accounts(accounts.entries, accounts.guest, accounts.unknown)
        return cls(book, accounts.study_folder, accounts.root, study_folders)

    def account_folder(self, account: str) -> PurePosixPath:
        """An account's folder under the root; `Guest/<name>` is two folders, each sanitised."""
        return PurePosixPath(*[path_component(part) for part in account.split("/", 1)])

    def placement(self, dataset: Dataset, arrival_in_series: Callable[[], int]) -> Placement:
        account, reason = route_to_account(dataset, self.book)
        study_dir = self.root / self.account_folder(account) / render_component(self.study_folder, dataset)
        if self.study_folders is not None:
            account, study_dir, reason = self._study_place(self.study_folders, dataset, account, study_dir, reason)
        series_number = _number(dataset, "SeriesNumber")
        description = first_text(dataset, "SeriesDescription") or first_text(dataset, "Modality") or "Series"
        series_folder = path_component(f"{series_number if series_number is not None else 0}_{description}",
                                       max_bytes=128)
        echo = _number(dataset, "EchoNumbers")
        count = _number(dataset, "InstanceNumber")
        if count is None:
            count = arrival_in_series()
        name = f"{_padded(series_number or 0, 3)}-{_padded(1 if echo is None else echo, 3)}-{_padded(count, 6)}.dcm"
        return Placement(study_dir / DICOM_FOLDER / series_folder / name, account, reason)

    def _study_place(self, study_folders: StudyFolders, dataset: Dataset, account: str, study_dir: PurePosixPath,
                     reason: str) -> tuple[str, PurePosixPath, str]:
        """The account and folder the study already has (or claims now), and why."""
        study_uid = first_text(dataset, "StudyInstanceUID")
        claimed_account, claimed_folder = study_folders.claim(study_uid, account, str(study_dir))
        if claimed_account != account:
            log.info("study %s stays in account %r; this instance alone would go to %r",
                     study_uid, claimed_account, account)
            reason = f"its study is filed in account {claimed_account!r} (this instance alone: {reason})"
        if claimed_folder != str(study_dir) and claimed_account == account:
            reason = f"{reason}; kept in the study's folder {claimed_folder!r}, not {str(study_dir)!r}"
        return claimed_account, PurePosixPath(claimed_folder), reason

    def study_dir_of(self, path: PurePosixPath) -> PurePosixPath | None:
        """The folder above `Dicom/<series>/<file>`."""
        if len(path.parts) < 4 or path.parts[-3] != DICOM_FOLDER:
            return None
        return path.parents[2]

