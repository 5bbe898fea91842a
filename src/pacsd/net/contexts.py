"""The listener's presentation contexts: shared by every association instead of copied, and
negotiated the requestor's way (its own transfer syntax order; see `follow_requestor_preference`).

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
import logging
from dataclasses import dataclass

from pynetdicom import transport
from pynetdicom.presentation import PresentationContext

log = logging.getLogger(__name__)


def share_contexts(value):
    """The listener's list of PresentationContexts itself; anything else deep-copied as before."""
    if isinstance(value, list) and all(isinstance(cx, PresentationContext) for cx in value):
        return value
    return copy.deepcopy(value)


def share_contexts_between_associations() -> None:
    """Make pynetdicom's association set-up use `share_contexts` (process-wide; idempotent)."""
    transport.deepcopy = share_contexts  # type: ignore[assignment]


# -- which transfer syntax an accepted context gets ----------------------------------------
# pynetdicom's acceptor walks its own list of syntaxes (Implicit VR first) and takes the first
# the requestor proposed: a modality offering [JPEG Baseline, Explicit, Implicit] got Implicit,
# and had to convert (or could not send) what it holds.  pacsd takes the requestor's own order
# instead (the first syntax of its proposal pacsd supports), or `server.transfer_syntax_preference`
# where a site sets one.  pynetdicom has no option for this: its two negotiation functions, as
# `pynetdicom.acse` calls them, are wrapped here and only here.

_NEGOTIATION_NAMES = ("negotiate_as_acceptor", "negotiate_unrestricted")
_POLICY_ATTRIBUTE = "pacsd_negotiation"  # set on the listener's own supported contexts


@dataclass(frozen=True)
class NegotiationPolicy:
    """How one listener answers proposed contexts: `preference` (transfer syntax UIDs tried
    before the requestor's order; empty = the requestor's order alone) and whether storage
    classes it does not list (private ones, ones pynetdicom does not know) are accepted."""

    preference: tuple[str, ...] = ()
    accept_unlisted_storage: bool = False


def missing_negotiation_names() -> list[str]:
    """What `follow_requestor_preference` relies on that this pynetdicom lacks."""
    from pynetdicom import _config, acse

    missing = [f"pynetdicom.acse.{name}" for name in _NEGOTIATION_NAMES if not callable(getattr(acse, name, None))]
    if not hasattr(_config, "UNRESTRICTED_STORAGE_SERVICE"):
        missing.append("pynetdicom._config.UNRESTRICTED_STORAGE_SERVICE")
    return missing


def follow_requestor_preference(ae, policy: NegotiationPolicy) -> bool:
    """Make `ae`'s associations accept, per proposed context, the syntax `policy` picks.

    Also routes every C-STORE on an accepted context to the Storage service (pynetdicom's
    UNRESTRICTED_STORAGE_SERVICE), so storage classes pynetdicom does not know (retired,
    private) work once accepted; which ones are accepted is the policy's business.  False
    (after one warning) when this pynetdicom lacks what it relies on: stock negotiation then."""
    missing = missing_negotiation_names()
    if missing:
        _warn_once(missing)
        return False
    from pynetdicom import _config, acse

    if not getattr(acse.negotiate_as_acceptor, "pacsd_wrapped", False):
        stock_restricted, stock_unrestricted = acse.negotiate_as_acceptor, acse.negotiate_unrestricted
        acse.negotiate_as_acceptor = _wrapped(stock_restricted, stock_restricted, stock_unrestricted)
        acse.negotiate_unrestricted = _wrapped(stock_unrestricted, stock_restricted, stock_unrestricted)
    for context in ae.supported_contexts:
        setattr(context, _POLICY_ATTRIBUTE, policy)
    _config.UNRESTRICTED_STORAGE_SERVICE = True
    return True


_warned: list[bool] = []


def _warn_once(missing: list[str]) -> None:
    if not _warned:
        _warned.append(True)
        import pynetdicom

        log.warning("pynetdicom %s lacks %s: transfer syntaxes are negotiated pynetdicom's way (Implicit VR "
                    "first) and unlisted storage classes follow accept_unknown_sop_classes alone",
                    pynetdicom.__version__, ", ".join(missing))


def _wrapped(stock, stock_restricted, stock_unrestricted):
    def negotiate(rq_contexts, ac_contexts, roles=None):
        policy = next((getattr(cx, _POLICY_ATTRIBUTE, None) for cx in ac_contexts or ()), None)
        if policy is None:  # an AE pacsd did not set up (a client's own): as pynetdicom does
            return stock(rq_contexts, ac_contexts, roles)
        if not policy.accept_unlisted_storage:
            result, reply_roles = stock_restricted(rq_contexts, ac_contexts, roles)
        else:
            result, reply_roles = stock_unrestricted(rq_contexts, ac_contexts, roles)
            reply_roles = refuse_unlisted_standard_classes(result, reply_roles, ac_contexts)
        choose_transfer_syntaxes(result, rq_contexts, ac_contexts, policy.preference)
        return result, reply_roles

    negotiate.pacsd_wrapped = True
    return negotiate


_STANDARD_ROOT = "1.2.840.10008."


def refuse_unlisted_standard_classes(result, reply_roles, ac_contexts) -> list:
    """Refuse (abstract syntax not supported) what pynetdicom's unrestricted negotiation took for
    storage only because its module has no attribute of that name: a standard UID the listener
    does not list is a service pacsd lacks (Modality Worklist ...), every storage class being
    listed.  Private classes stay accepted.  The role replies left for the accepted ones."""
    listed = {str(cx.abstract_syntax) for cx in ac_contexts}
    refused = set()
    for context in result:
        uid = str(context.abstract_syntax)
        if context.result == 0x00 and uid.startswith(_STANDARD_ROOT) and uid not in listed:
            context.result = 0x03
            refused.add(uid)
    return [role for role in reply_roles if str(role.sop_class_uid) not in refused]


def choose_transfer_syntaxes(result, rq_contexts, ac_contexts, preference=()) -> None:
    """Give each accepted context in `result` the first syntax of the requestor's proposal that
    the acceptor supports (any, for a storage class it does not list), syntaxes named in
    `preference` before all others and in that order."""
    proposed = {cx.context_id: cx.transfer_syntax for cx in rq_contexts}
    listed = {cx.abstract_syntax: cx for cx in ac_contexts}  # not their syntaxes: ~200 x 45, per association
    rank = {uid: i for i, uid in enumerate(preference)}
    for context in result:
        if context.result != 0x00:
            continue
        listed_context = listed.get(context.abstract_syntax)
        allowed = None if listed_context is None else listed_context.transfer_syntax
        candidates = [ts for ts in proposed.get(context.context_id, []) if allowed is None or ts in allowed]
        if not candidates:
            continue
        best = min(enumerate(candidates), key=lambda item: (rank.get(item[1], len(rank)), item[0]))[1] \
            if rank else candidates[0]
        if best != context.transfer_syntax[0]:  # the setter checks each UID: only when it changes
            context.transfer_syntax = [best]
