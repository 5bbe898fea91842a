"""pacsd's DICOM client as one object (`pacsd.services.remote_nodes.DicomClient`): C-STORE of
files, C-FIND and C-MOVE at a node, and the forwarding queue's destinations (a known AE, or a
DICOMweb STOW-RS base URL).  The CLI uses it directly; services and web get it from the
listener `pacsd.net.builtin_services`.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from pydicom.dataset import Dataset

from pacsd.config import Settings, TlsSettings
from pacsd.net import qr_scu
from pacsd.net.forward_scu import DicomDestination
from pacsd.net.forward_stow import WebDestination
from pacsd.net.scu import scan_files, send_files
from pacsd.net.tls import client_context
from pacsd.services.remote_nodes import Node, SendResult
from pacsd.services.retrieve import RetrieveCounts
from pacsd.services.routes import is_web_destination


def _tls(node: Node) -> ssl.SSLContext | None:
    return client_context(node.tls) if isinstance(node.tls, TlsSettings) else node.tls


def _peer(node: Node) -> qr_scu.Peer:
    return qr_scu.Peer(node.host, node.port, called_aet=node.called_aet, calling_aet=node.calling_aet)


class NetDicomClient:
    def forward_destination(self, destination: str, settings: Settings, locate: Callable[[str], Path],
                            timeout: float) -> DicomDestination | WebDestination:
        """Where the forwarding queue delivers to: a DICOMweb base URL (http(s)://...) or a known
        AE title (compile_routes checked it exists)."""
        if is_web_destination(destination):
            return WebDestination(destination, locate, timeout)
        known = settings.known_ae(destination)
        if known is None:
            raise RuntimeError(f"{destination} is no longer a known AE")
        tls = client_context(settings.server.tls) if known.tls else None
        return DicomDestination(known, settings.server.ae_title, locate, timeout, tls)

    def send(self, paths: list[Path], node: Node, associations: int = 1,
             on_total: Callable[[int], None] = lambda total: None,
             on_file: Callable[[], None] = lambda: None) -> SendResult:
        """The DICOM files among `paths` (files and folders) C-STOREd unchanged."""
        files, skipped = scan_files(paths)
        on_total(len(files))
        report = send_files(files, node.host, node.port, node.called_aet, node.calling_aet, associations,
                            on_file=on_file, tls=_tls(node))
        return SendResult(list(report.sent), list(report.failed), [*report.skipped, *skipped])

    def find(self, node: Node, model: str, level: str, keys: Mapping[str, str]) -> Iterator[Dataset]:
        return qr_scu.find(_peer(node), model, level, keys)

    def move(self, node: Node, model: str, level: str, keys: Mapping[str, str], destination: str,
             progress: Callable[[RetrieveCounts], None]) -> RetrieveCounts:
        return qr_scu.move(_peer(node), model, level, keys, destination, progress)
