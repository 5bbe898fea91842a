"""The one place pacsd changes pynetdicom's behaviour: what it relies on, checked at start-up.

The fast receive path (`server.fast_receive: true`, the default) replaces parts of pynetdicom
for speed, through names pynetdicom does not promise to keep:

- `pacsd.net.pacing`: the association reactor's 1 ms naps (`association.time`,
  `Association._run_reactor`, `Association._reactor_checkpoint`);
- `pacsd.net.event_reactor`: the DUL loop of an accepted association (its queues, timers and
  PDU decoding) and C-STOREs served in the DUL thread;
- `pacsd.net.store_reader`: C-STORE requests read and answered without pynetdicom's objects;
- `pacsd.net.incoming`: where pynetdicom's chunked receive writes a dataset
  (`dimse_messages.NamedTemporaryFile`);
- `pacsd.net.contexts`: the listener's presentation contexts shared, not deep-copied
  (`transport.deepcopy`).

They are put to work only from here (`install` for a listener, `quicken_client` for pacsd's
own client associations); other modules import their plain data types at most.  `install`
checks, before anything is replaced, that every name they use exists on this pynetdicom; if one
does not (a newer release changed it), it logs one warning and the server runs on stock
pynetdicom, slower but correct.  pyproject pins the pynetdicom version these were tested with.

(The transfer-syntax choice at negotiation, `pacsd.net.contexts.follow_requestor_preference`, is
behaviour rather than speed and has a check of its own with the same fallback.)
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

import pynetdicom

log = logging.getLogger(__name__)

TESTED_VERSION = "3.0.4"

# Module-level names, classes' attributes, and attributes every Association (and its DUL, DIMSE
# provider and socket) has once made: what the fast path reads, calls or replaces.
_MODULE_NAMES = {
    "pynetdicom.association": ["time", "Association"],
    "pynetdicom.dimse_messages": ["NamedTemporaryFile"],
    "pynetdicom.transport": ["deepcopy", "AssociationSocket"],
    "pynetdicom.pdu_primitives": ["P_DATA"],
    "pynetdicom.pdu": ["A_ABORT_RQ"],
    "pynetdicom.dimse_primitives": ["C_STORE"],
    "pynetdicom.service_class": ["StorageServiceClass"],
    "pynetdicom.sop_class": ["uid_to_service_class"],
}
_CLASS_ATTRIBUTES = {
    "pynetdicom.association.Association": ["_run_reactor", "_abort_nonblocking"],
    "pynetdicom.dul.DULServiceProvider": ["_process_recv_primitive", "_is_transport_event", "_decode_pdu",
                                          "kill_dul"],
    "pynetdicom.transport.AssociationSocket": ["ready", "send", "recv"],
}
_INSTANCE_ATTRIBUTES = {
    "assoc": ["_reactor_checkpoint", "_accepted_cx", "_sent_release", "_dul_ready", "_kill", "dul", "dimse",
              "acceptor", "requestor", "is_established"],
    "assoc.dul": ["_target", "_kill_thread", "_idle_timer", "_recv_pdu", "_run_loop_delay", "artim_timer",
                  "event_queue", "to_provider_queue", "to_user_queue", "state_machine", "socket"],
    "assoc.dimse": ["msg_queue", "receive_primitive"],
    "primitive": ["_presentation_data_value_list"],
    "socket": ["_is_connected", "socket"],
}


@dataclass(frozen=True)
class FastPath:
    """What a listener calls per association when the fast path is on (see `install`)."""

    make_event_driven: Callable
    shorten_dul_polling: Callable


def missing_names() -> list[str]:
    """Every name the fast path relies on that this pynetdicom lacks (empty: all there)."""
    import importlib

    missing: list[str] = []
    for module_name, names in _MODULE_NAMES.items():
        module = importlib.import_module(module_name)
        missing += [f"{module_name}.{name}" for name in names if not hasattr(module, name)]
    for dotted, names in _CLASS_ATTRIBUTES.items():
        module_name, _, class_name = dotted.rpartition(".")
        cls = getattr(importlib.import_module(module_name), class_name, None)
        missing += [f"{dotted}.{name}" for name in names if cls is None or not hasattr(cls, name)]
    missing += _missing_on_instances()
    return missing


def _missing_on_instances() -> list[str]:
    """Attributes set in constructors: looked for on a real (never connected) association."""
    from pynetdicom import AE
    from pynetdicom.association import Association
    from pynetdicom.pdu_primitives import P_DATA
    from pynetdicom.transport import AssociationSocket

    try:
        assoc = Association(AE(), "acceptor")
        with socket.socket() as unconnected:
            objects = {"assoc": assoc, "assoc.dul": assoc.dul, "assoc.dimse": assoc.dimse, "primitive": P_DATA(),
                       "socket": AssociationSocket(assoc, client_socket=unconnected)}
    except Exception as exc:  # noqa: BLE001 - any change in how these are made
        return [f"an acceptor Association could not be made ({exc})"]
    missing = []
    for where, names in _INSTANCE_ATTRIBUTES.items():
        missing += [f"{where}.{name}" for name in names if not hasattr(objects[where], name)]
    return missing


@functools.lru_cache(maxsize=1)
def _all_names_here() -> bool:
    missing = missing_names()
    if missing:
        log.warning("pynetdicom %s lacks what the fast receive path relies on (%s; tested with %s): "
                    "stock pynetdicom", pynetdicom.__version__, ", ".join(missing[:5]), TESTED_VERSION)
    return not missing


def quicken_client(assoc) -> None:
    """Shorter polling for an association pacsd requests (call from its EVT_CONN_OPEN), when this
    pynetdicom has what `pacsd.net.pacing` relies on; otherwise nothing (stock pynetdicom)."""
    if not _all_names_here():
        return
    from pacsd.net.pacing import shorten_association_polling, shorten_dul_polling

    shorten_association_polling()
    shorten_dul_polling(assoc)


def preload() -> None:
    """Import the fast path's modules now, when this pynetdicom has every name they rely on: a
    parent about to fork its receiving processes shares them instead of each importing its own."""
    if _all_names_here():
        import pacsd.net.contexts  # noqa: F401
        import pacsd.net.event_reactor  # noqa: F401
        import pacsd.net.pacing  # noqa: F401


def install(enabled: bool, receive_into) -> FastPath | None:
    """Turn the fast receive path on for this process (idempotent) and return what a listener
    applies per association; None when `enabled` is false or this pynetdicom lacks a name it
    relies on (one warning then, and the listener stays on stock pynetdicom).

    `receive_into()` makes pynetdicom's chunked receive write into the storage volume.  Turned
    off, what an earlier `install` replaced process-wide is put back."""
    if not enabled:
        _put_back_stock()
        return None
    if not _all_names_here():
        return None
    from pacsd.net.contexts import share_contexts_between_associations
    from pacsd.net.event_reactor import make_event_driven
    from pacsd.net.pacing import shorten_association_polling, shorten_dul_polling

    shorten_association_polling()
    share_contexts_between_associations()
    receive_into()
    return FastPath(make_event_driven, shorten_dul_polling)


def _put_back_stock() -> None:
    """pynetdicom's own module-level names, where `install` replaced them."""
    import copy
    import tempfile
    import time

    from pynetdicom import association, dimse_messages, transport

    association.time = time
    transport.deepcopy = copy.deepcopy
    dimse_messages.NamedTemporaryFile = tempfile.NamedTemporaryFile
