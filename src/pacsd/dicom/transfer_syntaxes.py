"""Transfer syntaxes by the words a user writes: a UID, or its name ("Explicit VR Little Endian",
"ExplicitVRLittleEndian", "explicit vr little endian").  Unknown words are an error.
"""

from __future__ import annotations

import re

from pydicom.uid import UID, UID_dictionary

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


_BY_SQUASHED_NAME = {_squash(name): uid for uid, (name, kind, _, _, keyword) in UID_dictionary.items()
                     if kind == "Transfer Syntax"}
_BY_SQUASHED_NAME.update({_squash(keyword): uid for uid, (_, kind, _, _, keyword) in UID_dictionary.items()
                          if kind == "Transfer Syntax" and keyword})


def resolve_transfer_syntax(word: str) -> str:
    """The UID `word` names (a UID is taken as it is); ValueError for anything else."""
    word = str(word).strip()
    if _UID_RE.match(word) and len(word) <= 64:
        return word
    uid = _BY_SQUASHED_NAME.get(_squash(word))
    if uid is None:
        raise ValueError(f"{word!r} is not a transfer syntax UID or name (e.g. 'Explicit VR Little Endian')")
    return uid


def transfer_syntax_name(uid: str) -> str:
    """A readable name for a transfer syntax UID (the UID itself when pydicom does not know it)."""
    name = UID(uid).name
    return name if name and name != uid else uid
