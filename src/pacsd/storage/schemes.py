"""The layout `storage.naming` names: a path template (named or written out), or a scheme that
is more than a template (the physician accounts of `pacsd.storage.accounts`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pacsd.pathnames import OTHER_SCHEMES
from pacsd.storage.accounts import AccountsLayout
from pacsd.storage.layout import Layout, TemplateLayout

# Factories taking the Settings and the index's study folder claims.
SCHEMES: dict[str, Callable[[Any, Any], Layout]] = {"accounts": AccountsLayout.from_settings}
assert set(SCHEMES) == set(OTHER_SCHEMES), "pacsd.pathnames.OTHER_SCHEMES names the schemes settings accept"


def make_layout(naming: str, settings: Any = None, study_folders: Any = None) -> Layout:
    """`study_folders`: where a scheme keeps each study's folder once chosen (see
    `pacsd.storage.accounts.StudyFolders`); template layouts need none (the UID names the folder)."""
    factory = SCHEMES.get(naming)
    return factory(settings, study_folders) if factory is not None else TemplateLayout(naming)
