"""Person names (VR PN) as people read them: 'Family, Given Middle' instead of 'Family^Given^Middle'.

One format for the web pages and the scan sheets.  The ideographic and phonetic groups, when
present, follow the alphabetic one as written in those scripts ('山田 太郎'), after ' / '.
"""

from __future__ import annotations


def readable_person_name(value: str | None) -> str:
    """'DOE^JOHN^Q' -> 'DOE, JOHN Q'; 'Yamada^Tarou=山田^太郎' -> 'Yamada, Tarou / 山田 太郎'."""
    groups = (value or "").split("=")[:3]
    readable = [_alphabetic(groups[0]), *(_in_script_order(group) for group in groups[1:])]
    return " / ".join(part for part in readable if part)


def _components(group: str) -> tuple[str, str]:
    family, _, rest = group.partition("^")
    given = " ".join(part.strip() for part in rest.split("^")[:2] if part.strip())
    return family.strip(), given


def _alphabetic(group: str) -> str:
    family, given = _components(group)
    return f"{family}, {given}" if family and given else (family or given)


def _in_script_order(group: str) -> str:
    """Ideographic and phonetic names read family name first, with no comma."""
    return " ".join(part for part in _components(group) if part)
