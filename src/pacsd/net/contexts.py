"""The listener's presentation contexts, shared by every association instead of copied.

pynetdicom deep-copies the acceptor's supported contexts for every association it accepts.
With every storage SOP class x every transfer syntax (~180 contexts, ~8,000 transfer syntax
UIDs) that took ~130 ms per association, 89% of a C-ECHO; a shallow copy of each context still
took ~0.3 ms hot and ~0.9 ms on a listener that had been idle, a fifth of an association's set-up.

The copy protects nothing here: pynetdicom only reads an acceptor's supported contexts (to
negotiate, building new context objects for the result), and pacsd never changes them once the
listener runs.  So every association gets the listener's own list.
"""

from __future__ import annotations

import copy

from pynetdicom import transport
from pynetdicom.presentation import PresentationContext


def share_contexts(value):
    """The listener's list of PresentationContexts itself; anything else deep-copied as before."""
    if isinstance(value, list) and all(isinstance(cx, PresentationContext) for cx in value):
        return value
    return copy.deepcopy(value)


def share_contexts_between_associations() -> None:
    """Make pynetdicom's association set-up use `share_contexts` (process-wide; idempotent)."""
    transport.deepcopy = share_contexts  # type: ignore[assignment]
