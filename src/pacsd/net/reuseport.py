"""A pynetdicom association server whose listening socket is shared (SO_REUSEPORT).

With `server.workers: N` each worker process binds the same address; the kernel spreads new
associations over them.  The option must be set before `bind`, hence the subclass.
"""

from __future__ import annotations

import socket

from pynetdicom.transport import ThreadedAssociationServer


class SharedPortAssociationServer(ThreadedAssociationServer):
    """ThreadedAssociationServer that lets other processes listen on the same port."""

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def share_port(ae) -> None:
    """Make `ae.start_server` listen with a SharedPortAssociationServer.

    pynetdicom 3's non-blocking `start_server` always asks `make_server` for its own class; this
    AE's `make_server` is wrapped to ask for ours."""
    make_server = ae.make_server

    def make_shared_server(*args, **kwargs):
        return make_server(*args, **{**kwargs, "server_class": SharedPortAssociationServer})

    ae.make_server = make_shared_server
