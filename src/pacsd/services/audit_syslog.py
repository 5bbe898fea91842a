"""Audit events as DICOM audit messages (PS3.15 A.5, the RFC 3881 schema) sent over syslog
(RFC 5424 messages; UDP, one per datagram (RFC 5426), or TCP with octet counting (RFC 6587)).

A thread sends them from a bounded queue, so no request waits on the network; when the queue is
full or the collector unreachable, the event stays in the index table and a warning is logged.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from xml.sax.saxutils import quoteattr

from pacsd.config import AuditSettings
from pacsd.services.audit import AuditEvent

log = logging.getLogger(__name__)

_QUEUE_SIZE = 10_000
_PRI = 10 * 8 + 5  # facility authpriv (10), severity notice (5)
_MSGID = "IHE+RFC-3881"  # what IHE ATNA collectors expect
# action -> (EventID code, its meaning, EventActionCode, EventTypeCode or None) from PS3.15 A.5.3
_EVENTS = {
    "viewed": ("110103", "DICOM Instances Accessed", "R", None),
    "downloaded": ("110106", "Export", "R", None),
    "exported": ("110106", "Export", "R", None),
    "retrieved": ("110106", "Export", "R", None),
    "sent": ("110104", "DICOM Instances Transferred", "R", None),
    "moved": ("110104", "DICOM Instances Transferred", "R", None),
    "searched": ("110112", "Query", "E", None),
    "deleted": ("110103", "DICOM Instances Accessed", "D", None),
    "changed": ("110103", "DICOM Instances Accessed", "U", None),
    "logged-in": ("110114", "User Authentication", "E", ("110122", "Login")),
    "login-failed": ("110114", "User Authentication", "E", ("110122", "Login")),
    "logged-out": ("110114", "User Authentication", "E", ("110123", "Logout")),
}


def audit_message(event: AuditEvent, source_id: str) -> str:
    """The DICOM audit message (XML) of one event."""
    code, meaning, action_code, type_code = _EVENTS[event.action]
    outcome = "0" if event.outcome == "success" else "4"
    when = event.at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    parts = [f'<AuditMessage><EventIdentification EventActionCode="{action_code}" EventDateTime="{when}" '
             f'EventOutcomeIndicator="{outcome}"><EventID csd-code="{code}" codeSystemName="DCM" '
             f'originalText="{meaning}"/>']
    if type_code is not None:
        parts.append(f'<EventTypeCode csd-code="{type_code[0]}" codeSystemName="DCM" originalText="{type_code[1]}"/>')
    parts.append("</EventIdentification>")
    parts.append(f"<ActiveParticipant UserID={quoteattr(event.actor.name)} UserIsRequestor=\"true\" "
                 f"NetworkAccessPointID={quoteattr(event.actor.address)} NetworkAccessPointTypeCode=\"2\"/>")
    parts.append(f"<AuditSourceIdentification AuditSourceID={quoteattr(source_id)}/>")
    if event.study_uid:
        parts.append(f'<ParticipantObjectIdentification ParticipantObjectID={quoteattr(event.study_uid)} '
                     f'ParticipantObjectTypeCode="2" ParticipantObjectTypeCodeRole="3">'
                     f'<ParticipantObjectIDTypeCode csd-code="110180" codeSystemName="DCM" '
                     f'originalText="Study Instance UID"/></ParticipantObjectIdentification>')
    if event.patient_id:
        parts.append(f'<ParticipantObjectIdentification ParticipantObjectID={quoteattr(event.patient_id)} '
                     f'ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1">'
                     f'<ParticipantObjectIDTypeCode csd-code="2" codeSystemName="RFC-3881" '
                     f'originalText="Patient Number"/></ParticipantObjectIdentification>')
    if event.action == "searched" and event.detail:
        parts.append(f'<ParticipantObjectIdentification ParticipantObjectID="query" ParticipantObjectTypeCode="2" '
                     f'ParticipantObjectTypeCodeRole="24"><ParticipantObjectIDTypeCode csd-code="110181" '
                     f'codeSystemName="DCM" originalText="SOP Class UID"/>'
                     f'<ParticipantObjectDetail type="QueryEncoding" value={quoteattr(event.detail)}/>'
                     f'</ParticipantObjectIdentification>')
    parts.append("</AuditMessage>")
    return "".join(parts)


def syslog_frame(event: AuditEvent, source_id: str, hostname: str) -> bytes:
    """One RFC 5424 message carrying the audit message (UTF-8 with BOM, as RFC 5424 6.4 asks)."""
    when = event.at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    header = f"<{_PRI}>1 {when} {hostname or '-'} pacsd {os.getpid()} {_MSGID} - "
    return header.encode("ascii", "replace") + b"\xef\xbb\xbf" + audit_message(event, source_id).encode("utf-8")


class SyslogSender:
    """Sends each event to the collector from its own thread; `__call__` never blocks."""

    def __init__(self, host: str, port: int, protocol: str, source_id: str, timeout: float = 5.0) -> None:
        self.host, self.port, self.protocol, self.source_id, self.timeout = host, port, protocol, source_id, timeout
        self.hostname = socket.gethostname()
        self._queue: queue.Queue[AuditEvent | None] = queue.Queue(_QUEUE_SIZE)
        self._socket: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name="pacsd-audit-syslog", daemon=True)
        self._thread.start()

    def __call__(self, event: AuditEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            log.warning("audit syslog queue full: event %s by %s kept in the index only", event.action, event.actor.name)

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            frame = syslog_frame(event, self.source_id, self.hostname)
            try:
                self._send(frame)
            except OSError as exc:
                log.warning("cannot send an audit message to %s:%d (%s): %s", self.host, self.port, self.protocol, exc)
                if self._socket is not None:
                    self._socket.close()
                    self._socket = None

    def _send(self, frame: bytes) -> None:
        if self.protocol == "udp":
            if self._socket is None:
                self._socket = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM)
            self._socket.sendto(frame, (self.host, self.port))
            return
        if self._socket is None:
            self._socket = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self._socket.sendall(f"{len(frame)} ".encode("ascii") + frame)  # RFC 6587 octet counting


def syslog_sender(settings: AuditSettings, source_id: str) -> SyslogSender | None:
    """The sender `audit.syslog` asks for, or None when it is not set."""
    target = settings.syslog
    if target is None:
        return None
    return SyslogSender(target.host, target.port, target.protocol, source_id)
