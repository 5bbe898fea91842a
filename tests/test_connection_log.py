"""The connection log says how each association ended, against real peers: released, aborted by
the peer (A-ABORT or a dropped connection), aborted by us, timed out, rejected with the reason.
"""

from __future__ import annotations

import logging
import socket

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import MRImageStorage, Verification

from tests.conftest import HOST, dcmtk, wait_until


@pytest.fixture
def ended(caplog):
    """calling AE (or '-') -> the connection log line of its association, once written."""
    caplog.set_level(logging.INFO, logger="pacsd.connections")

    def line_of(calling: str, peer_port: int | None = None) -> str:
        def find():
            for record in caplog.records:
                text = record.getMessage()
                if record.name == "pacsd.connections" and f"calling={calling} " in text and (
                        peer_port is None or f":{peer_port} " in text):
                    return text
            return None
        return wait_until(find, what=f"the connection log line of {calling}")
    return line_of


@pytest.fixture
def server(pacs_factory):
    return pacs_factory(accepted_sop_classes=["CT"], server={"acse_timeout": 1, "network_timeout": 2})


def test_released(server, ended):
    assert dcmtk("echoscu", "-aet", "RELEASER", "-aec", "PACSD", HOST, str(server.port)).returncode == 0
    assert " result=released " in ended("RELEASER")


def test_aborted_by_the_peer(server, ended):
    dcmtk("echoscu", "--abort", "-aet", "ABORTER", "-aec", "PACSD", HOST, str(server.port))
    assert " result=aborted-by-peer " in ended("ABORTER")


def test_a_dropped_connection_is_aborted_by_the_peer(server, ended):
    ae = AE("DROPPER")
    ae.add_requested_context(Verification)
    assoc = ae.associate(HOST, server.port, ae_title="PACSD")
    assert assoc.is_established
    assoc.dul.socket.socket.shutdown(socket.SHUT_RDWR)  # no A-RELEASE, no A-ABORT
    line = ended("DROPPER")
    assoc.abort()
    assert " result=aborted-by-peer " in line


def test_refused_sop_classes_are_the_reason(server, ended):
    ae = AE("MRONLY")
    ae.add_requested_context(MRImageStorage)
    assoc = ae.associate(HOST, server.port, ae_title="PACSD")
    assert not assoc.is_established  # pynetdicom aborts when nothing was accepted
    line = ended("MRONLY")
    assert " result=aborted-by-peer " in line
    assert "reason='no presentation context accepted; refused: 1.2.840.10008.5.1.4.1.1.4'" in line


def test_rejected_with_the_reason(server, ended):
    dcmtk("echoscu", "-aet", "LOST", "-aec", "NOT-PACSD", HOST, str(server.port))
    line = ended("LOST")
    assert " result=rejected " in line and "reason='called ae title not recognised'" in line


def test_a_silent_connection_times_out(server, ended):
    with socket.create_connection((HOST, server.port)) as silent:
        line = ended("-", silent.getsockname()[1])
    assert " result=timed-out " in line and "acse_timeout" in line


def test_an_idle_association_times_out(server, ended):
    ae = AE("IDLER")
    ae.add_requested_context(Verification)
    assoc = ae.associate(HOST, server.port, ae_title="PACSD")
    assert assoc.is_established
    line = ended("IDLER")
    assoc.release()
    assert " result=timed-out " in line and "network_timeout" in line


def test_aborted_by_us_at_shutdown(pacs_factory, ended):
    server = pacs_factory(server={"shutdown_grace": 0})
    ae = AE("STAYER")
    ae.add_requested_context(Verification)
    assoc = ae.associate(HOST, server.port, ae_title="PACSD")
    assert assoc.is_established
    server.server.stop()
    line = ended("STAYER")
    assoc.release()
    assert " result=aborted-by-us " in line
