"""The pynetdicom association server pacsd listens with.

Two changes to pynetdicom's `ThreadedAssociationServer`:

- **The association is set up in the accepting thread.**  pynetdicom starts a thread per
  connection only to create the `Association` and start it, which is itself a thread (and starts
  the DUL's).  That extra thread start and hand-off cost ~0.5 ms of every association here.  The
  set-up never waits on the network (the A-ASSOCIATE-RQ is read later, by the association's own
  threads), so doing it in the accepting thread delays the next accept by as little.
- Receiving processes of a multi-process server serve connections their parent accepted
  (`pacsd.net.handoff.HandedOffServer`, a subclass).
- **A stop is seen within 50 ms.**  socketserver's accept loop looks for a stop request every
  `poll_interval` (0.5 s by default), so every stop of a listener took up to half a second; a
  select() that wakes 20 times a second on an idle listener costs nothing measurable.
"""

from __future__ import annotations

from pynetdicom.transport import ThreadedAssociationServer

# Seconds between the accept loop's looks for a stop request (socketserver's default: 0.5).
STOP_POLL_INTERVAL = 0.05


class ListenerServer(ThreadedAssociationServer):
    """ThreadedAssociationServer that sets associations up where it accepts them."""

    def serve_forever(self, poll_interval: float = STOP_POLL_INTERVAL) -> None:
        # pynetdicom calls serve_forever() without an interval: ours, not socketserver's 0.5 s.
        super().serve_forever(min(poll_interval, STOP_POLL_INTERVAL))

    def process_request(self, request, client_address) -> None:
        # pynetdicom's body of the per-connection thread: a set-up error is logged and the
        # connection closed; otherwise the association's threads own the socket from here.
        self.process_request_thread(request, client_address)


def listen_with_pacsd_server(ae, server_class: type[ListenerServer] = ListenerServer) -> None:
    """Make `ae.start_server` serve with `server_class` (a ListenerServer).

    pynetdicom 3's non-blocking `start_server` always asks `make_server` for its own class; this
    AE's `make_server` is wrapped to ask for ours."""
    make_server = ae.make_server

    def make_listener_server(*args, **kwargs):
        return make_server(*args, **{**kwargs, "server_class": server_class})

    ae.make_server = make_listener_server
