"""Audit events exported as DICOM audit messages (PS3.15 A.5) over syslog (RFC 5424), to a real
UDP or TCP listener socket opened by the test: a C-FIND by an AE and a failed web login arrive
as messages whose header follows RFC 5424 and whose XML (read by ElementTree) names the event,
the actor and the study."""

from __future__ import annotations

import re
import socket
import threading
import xml.etree.ElementTree as ElementTree

import httpx
import pytest
from pydicom import dcmread

from tests.conftest import HOST, dcmtk, wait_until
from tests.qr_support import archive_files
from tests.studies import write_study
from tests.webui import post_login

# RFC 5424: <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]
RFC5424 = re.compile(rb"<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) (\S+) (\S+) (\S+) (\S+) - ")


class Listener:
    """A syslog collector on a free loopback port: UDP datagrams, or TCP with octet counting."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.messages: list[bytes] = []
        kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind((HOST, 0))
        self.port = self.sock.getsockname()[1]
        if protocol == "tcp":
            self.sock.listen(1)
        self.sock.settimeout(0.5)
        self.running = True
        self.thread = threading.Thread(target=self._udp if protocol == "udp" else self._tcp, daemon=True)
        self.thread.start()

    def _udp(self) -> None:
        while self.running:
            try:
                self.messages.append(self.sock.recv(65535))
            except TimeoutError:
                pass

    def _tcp(self) -> None:
        buffer = b""
        while self.running:
            try:
                connection, _ = self.sock.accept()
            except TimeoutError:
                continue
            connection.settimeout(0.5)
            while self.running:
                try:
                    chunk = connection.recv(65535)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                buffer += chunk
                while b" " in buffer:
                    length, _, rest = buffer.partition(b" ")
                    if len(rest) < int(length):
                        break
                    self.messages.append(rest[:int(length)])
                    buffer = rest[int(length):]
            connection.close()

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=5)
        self.sock.close()


def audit_xml(message: bytes) -> ElementTree.Element:
    header = RFC5424.match(message)
    assert header is not None, message[:120]
    assert 0 <= int(header.group(1)) <= 191 and header.group(6) == b"IHE+RFC-3881"
    body = message[header.end():]
    assert body.startswith(b"\xef\xbb\xbf")
    return ElementTree.fromstring(body[3:].decode("utf-8"))


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
def test_audit_messages_reach_a_syslog_listener(pacs_factory, tmp_path, protocol):
    from pacsd.web.server import WebServer

    listener = Listener(protocol)
    try:
        pacs = pacs_factory(audit={"syslog": {"host": HOST, "port": listener.port, "protocol": protocol}})
        files = write_study(tmp_path / "s")
        archive_files(pacs.archive, *files)
        study = str(dcmread(files[0]).StudyInstanceUID)
        dcmtk("findscu", "-S", "-aet", "SNOOPER", "-aec", pacs.aet, "-k", "QueryRetrieveLevel=STUDY",
              "-k", f"StudyInstanceUID={study}", HOST, str(pacs.port))
        web = WebServer(pacs.archive, HOST, 0, pacs.server.connections)
        web.start()
        try:
            post_login(httpx.Client(base_url=f"http://{HOST}:{web.address[1]}"), "mallory", "guess")
        finally:
            web.stop()
        wait_until(lambda: len(listener.messages) >= 2, timeout=10, what="two audit messages")
        by_event = {}
        for message in listener.messages:
            root = audit_xml(message)
            by_event[root.find("EventIdentification/EventID").get("csd-code")] = root
        query = by_event["110112"]  # Query
        assert query.find("ActiveParticipant").get("UserID") == "SNOOPER"
        assert query.find("ActiveParticipant").get("NetworkAccessPointID") == HOST
        assert study in [p.get("ParticipantObjectID") for p in query.iter("ParticipantObjectIdentification")]
        login = by_event["110114"]  # User Authentication
        assert login.find("EventIdentification").get("EventOutcomeIndicator") == "4"
        assert login.find("EventIdentification/EventTypeCode").get("csd-code") == "110122"
        assert login.find("ActiveParticipant").get("UserID") == "mallory"
    finally:
        listener.close()
