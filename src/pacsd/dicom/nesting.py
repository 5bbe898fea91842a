"""One limit on how deeply sequences may nest, for storing and for reading stored headers.

A header nested deeper than `MAX_SEQUENCE_DEPTH` is refused at ingest (`TooDeeplyNested`);
a stored header that cannot be read back (nested too deep for the reader, or not JSON) reads
as empty, with a warning, so one such instance never breaks a query for anyone else.
"""

from __future__ import annotations

import json
import logging

from pacsd.errors import InvalidDicom

# Structured reports, the deepest headers in practice, nest a few tens of levels; each level is
# a handful of Python frames in pydicom's reader and writer and three in a JSON reader.
MAX_SEQUENCE_DEPTH = 64

log = logging.getLogger(__name__)


class TooDeeplyNested(InvalidDicom):
    """A dataset whose sequences nest deeper than MAX_SEQUENCE_DEPTH."""


def check_depth(depth: int) -> None:
    """Raise TooDeeplyNested when a sequence at `depth` (1: a top-level sequence) is too deep."""
    if depth > MAX_SEQUENCE_DEPTH:
        raise TooDeeplyNested(f"sequences nested more than {MAX_SEQUENCE_DEPTH} levels deep")


def load_header_json(text: str | None) -> dict:
    """A stored DICOM JSON header as a dict; {} (and a warning) when it cannot be read back."""
    if not text:
        return {}
    try:
        loaded = json.loads(text)
    except (RecursionError, ValueError) as exc:
        log.warning("a stored header could not be read (%s): treated as empty", type(exc).__name__)
        return {}
    return loaded if isinstance(loaded, dict) else {}
