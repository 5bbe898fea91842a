"""Storage areas: how the index names a file in an area other than the storage folder.

The area that is `storage.directory` (the home area, where new instances go) keeps paths
relative to it, as before areas existed.  A file in another area is named
`.areas/<area>/<path in that area>`: no layout makes a path starting with a dot, so the two never
meet, and one column switch moves an instance (see `pacsd.services.area_moves`).
"""

from __future__ import annotations

from pathlib import PurePosixPath

AREAS_FOLDER = ".areas"
_PREFIX = AREAS_FOLDER + "/"


def area_path(area: str, relative: str | PurePosixPath, home: str) -> str:
    """The index path of `relative` inside `area`."""
    return str(relative) if area == home else f"{_PREFIX}{area}/{relative}"


def split_area_path(path: str | PurePosixPath, home: str) -> tuple[str, str]:
    """(area, path inside that area) of an index path."""
    text = str(path)
    if not text.startswith(_PREFIX):
        return home, text
    area, _, relative = text[len(_PREFIX):].partition("/")
    return area, relative


def area_prefix(area: str, home: str) -> str:
    """What every index path of a file in `area` starts with ('' for the home area)."""
    return "" if area == home else f"{_PREFIX}{area}/"
