"""Probe: does a pynetdicom SCP stall on clients that keep Nagle's algorithm on?

Runs a bare pynetdicom Storage SCP (answers success, stores nothing; TCP_NODELAY on its socket)
with and without TCP_QUICKACK re-armed after every recv(), and sends the cached 64x64 images
with storescu with and without TCP_NODELAY=1. Not a benchmark of pacsd: a check of the mechanism.

    .venv/bin/python bench/nagle_probe.py [--count 300]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest  # noqa: E402
import synthetic  # noqa: E402


def serve(port: int, quickack: bool) -> None:
    """The bare SCP (run in a child process)."""
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, _config, evt
    from pynetdicom.sop_class import CTImageStorage, Verification
    from pynetdicom.transport import AssociationSocket

    _config.LOG_HANDLER_LEVEL = "none"
    if quickack:  # Linux clears TCP_QUICKACK after a while: re-arm it after every read
        plain_recv = AssociationSocket.recv

        def recv(self, nr_bytes):
            data = plain_recv(self, nr_bytes)
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            return data

        AssociationSocket.recv = recv

    def on_open(event):
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    ae = AE("PROBE")
    ae.maximum_pdu_size = 0
    ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(CTImageStorage, ALL_TRANSFER_SYNTAXES)
    ae.start_server((ingest.HOST, port), evt_handlers=[(evt.EVT_CONN_OPEN, on_open),
                                                       (evt.EVT_C_STORE, lambda event: 0x0000)])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=300)
    p.add_argument("--serve", nargs=2, metavar=("PORT", "QUICKACK"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1] == "1")
        return 0
    ingest.enter_private_netns()
    files = synthetic.ensure_images(ingest.BENCH_DIR / ".cache", 64, args.count)
    work = ingest.BENCH_DIR / ".work" / "nagle-probe"
    work.mkdir(parents=True, exist_ok=True)
    for quickack in (False, True):
        port = ingest.free_port()
        cmd = [sys.executable, __file__, "--serve", str(port), "1" if quickack else "0"]
        proc = ingest.start_group(cmd, work / "scp.log", ingest.dcmtk_env(False))
        try:
            why = ingest.wait_ready(proc, port, "PROBE")
            if why:
                print(f"probe SCP did not start: {why}\n{ingest.tail(work / 'scp.log')}")
                return 1
            for nodelay in (False, True):
                seconds, failed = ingest.send_all(port, "PROBE", files, 1, nodelay, work, 60 + 0.3 * len(files))
                print(f"SCP quickack={'yes' if quickack else 'no ':3}  client TCP_NODELAY={'1' if nodelay else 'unset'}:"
                      f" {len(files) / seconds:6.0f} inst/s{'  (client errors)' if failed else ''}", flush=True)
        finally:
            ingest.stop_group(proc)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
