"""Forwarding tests' peers and helpers: a DCMTK storescp destination that can be started late,
stopped and restricted to some SOP classes, and a look at pacsd's forwarding queue."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from pydicom import dcmread
from sqlalchemy import select

from tests.conftest import HOST, free_port

_ONLY_CT_CONFIG = """\
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LocalEndianExplicit
TransferSyntax2 = LittleEndianImplicit
[[PresentationContexts]]
[OnlyCT]
PresentationContext1 = VerificationSOPClass\\Uncompressed
PresentationContext2 = CTImageStorage\\Uncompressed
[[Profiles]]
[OnlyCT]
PresentationContexts = OnlyCT
"""


class Storescp:
    """A DCMTK storescp (AE `aet`) on a free port; every file it receives kept under a unique
    name (+uf), so a second reception of the same instance shows as a second file."""

    def __init__(self, folder: Path, aet: str = "DEST", only_ct: bool = False, accept_any_syntax: bool = False) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.aet = aet
        self.port = free_port()
        self.only_ct = only_ct
        self.accept_any_syntax = accept_any_syntax  # +xa: compressed syntaxes too
        self.proc: subprocess.Popen | None = None

    def known_ae(self) -> dict:
        return {"ae_title": self.aet, "host": HOST, "port": self.port}

    def start(self) -> "Storescp":
        args = ["storescp", "+uf", "-od", str(self.folder), "-aet", self.aet]
        if self.accept_any_syntax:
            args.append("+xa")
        if self.only_ct:
            config = self.folder.parent / f"{self.aet}-only-ct.cfg"
            config.write_text(_ONLY_CT_CONFIG)
            args += ["-xf", str(config), "OnlyCT"]
        self.log = open(self.folder.parent / f"{self.aet}-storescp.log", "ab")
        self.proc = subprocess.Popen([*args, "-v", str(self.port)], stdout=self.log, stderr=subprocess.STDOUT)
        from tests.conftest import wait_until

        # Listening is enough: storescp serves one association at a time, so a C-ECHO can wait
        # behind pacsd's forwarding association, which connects as soon as storescp listens.
        wait_until(self._listening, 60, what="storescp up")
        return self

    def _listening(self) -> bool:
        try:
            socket.create_connection((HOST, self.port), timeout=2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.log.close()

    def received(self) -> list[str]:
        """SOP Instance UIDs of every file received (repeats included), read with pydicom."""
        return [str(dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                for p in sorted(self.folder.iterdir()) if p.is_file()]


def queue_rows(engine) -> list:
    from pacsd.index.schema import forward_queue

    with engine.connect() as conn:
        return conn.execute(select(forward_queue).order_by(forward_queue.c.pk)).all()


def sop_uids(files) -> list[str]:
    return [str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
