"""Work with other DICOM nodes on a user's behalf: send files (C-STORE), ask a known AE for its
studies (C-FIND) or to move one (C-MOVE).  The web interface calls this, the CLI the same client.

The DIMSE clients are the `net` layer's: a listener hands them over (`pacsd_dicom_client`,
`pacsd.net.builtin_services`), so services and web never import `net`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pacsd.config import KnownAE, Settings
from pacsd.services.retrieve import RetrieveCounts


@dataclass(frozen=True)
class Node:
    """Where to connect and as whom: `tls` None for plain TCP, else `TlsSettings` (the client
    context is made from them) or an `ssl.SSLContext`."""

    host: str
    port: int
    called_aet: str
    calling_aet: str
    tls: Any = None


@dataclass
class SendResult:
    sent: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # not DICOM, or unreadable


class DicomClient(Protocol):
    """What `net` offers (`pacsd.net.client.NetDicomClient`)."""

    def send(self, paths: list[Path], node: Node, associations: int = 1,
             on_total: Callable[[int], None] = lambda total: None,
             on_file: Callable[[], None] = lambda: None) -> SendResult: ...

    def find(self, node: Node, model: str, level: str, keys: Mapping[str, str]) -> Generator[Any, None, None]: ...

    def move(self, node: Node, model: str, level: str, keys: Mapping[str, str], destination: str,
             progress: Callable[[RetrieveCounts], None]) -> RetrieveCounts: ...

    def forward_destination(self, destination: str, settings: Settings, locate: Callable[[str], Path],
                            timeout: float) -> Any:  # a pacsd.services.forwarding.ForwardDestination
        ...


class RemoteNodes:
    """The known AEs of the settings, reached through a `DicomClient`."""

    def __init__(self, settings: Settings, client: DicomClient) -> None:
        self.settings, self.client = settings, client

    def node(self, known: KnownAE) -> Node:
        return Node(known.host, known.port, known.ae_title, self.settings.server.ae_title,
                    self.settings.server.tls if known.tls else None)

    def send(self, known: KnownAE, paths: list[Path], on_total: Callable[[int], None] = lambda total: None,
             on_file: Callable[[], None] = lambda: None) -> SendResult:
        return self.client.send(paths, self.node(known), on_total=on_total, on_file=on_file)

    def find_studies(self, known: KnownAE, keys: Mapping[str, str], most: int) -> list[Any]:
        """At most `most` answers of a study-level C-FIND (the association released early)."""
        found = []
        with closing(self.client.find(self.node(known), "study", "STUDY", keys)) as answers:
            for answer in answers:
                found.append(answer)
                if len(found) == most:
                    break
        return found

    def move_study(self, known: KnownAE, study_uid: str, destination: str,
                   progress: Callable[[RetrieveCounts], None]) -> RetrieveCounts:
        return self.client.move(self.node(known), "study", "STUDY", {"StudyInstanceUID": study_uid}, destination,
                                progress)
