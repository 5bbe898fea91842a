"""DICOM over TLS with DCMTK's own TLS clients: certificates made here with openssl (a CA, the
server's, a client's); storescu and findscu +tls against `pacsd serve` (several processes) and an
in-process server; a client certificate mapped to the AE titles it may use; no certificate, no
association when one is required."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from pydicom import dcmread

from tests.conftest import HOST, VENV_BIN, dcmtk, free_port
from tests.studies import write_study

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificates")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def certificates(tmp_path) -> Path:
    folder = tmp_path / "tls"
    folder.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=pacsd test CA", cwd=folder)
    for name, subject, extra in (("server", "/CN=127.0.0.1", ["-addext", "subjectAltName=IP:127.0.0.1"]),
                                 ("client", "/CN=modality-1", [])):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", subject, *extra, cwd=folder)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-copy_extensions", "copy", cwd=folder)
    return folder


def tls_settings(certs: Path, port: int, **extra) -> dict:
    return {"port": port, "certificate": str(certs / "server.crt"), "key": str(certs / "server.key"),
            "ca_certificates": str(certs / "ca.crt"), **extra}


def storescu_tls(certs: Path, port: int, files, aet: str = "MODALITY", client_certificate: bool = True):
    identity = ["+tls", str(certs / "client.key"), str(certs / "client.crt")] if client_certificate else ["+tla"]
    return dcmtk("storescu", *identity, "+cf", str(certs / "ca.crt"), "-aet", aet, "-aec", "PACSD",
                 HOST, str(port), *map(str, files))


def test_storescu_and_findscu_over_tls_to_pacsd_serve(pacs_process, tmp_path, certificates):
    tls_port = free_port()
    config = tmp_path / "tls.yaml"
    config.write_text(yaml.safe_dump({"server": {"workers": 2, "tls": tls_settings(
        certificates, tls_port, require_client_certificate=True, certificate_aes={"modality-1": ["MODALITY"]})}}))
    server = pacs_process("--config", str(config))
    files = write_study(tmp_path / "send", series=1, per_series=3, PatientID="TLS-1")

    sent = storescu_tls(certificates, tls_port, files)
    assert sent.returncode == 0, sent.stderr
    found = dcmtk("findscu", "+tls", str(certificates / "client.key"), str(certificates / "client.crt"),
                  "+cf", str(certificates / "ca.crt"), "-aet", "MODALITY", "-aec", "PACSD", "-S",
                  "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=TLS-1", "-k", "StudyInstanceUID",
                  HOST, str(tls_port))
    assert found.returncode == 0 and found.stderr.count("(0020,000d)") == 1, found.stderr

    refused = storescu_tls(certificates, tls_port, files[:1], aet="OTHER")  # not the certificate's AE
    assert refused.returncode != 0
    anonymous = storescu_tls(certificates, tls_port, files[:1], client_certificate=False)  # none required
    assert anonymous.returncode != 0
    plain = dcmtk("storescu", "-aec", "PACSD", HOST, str(tls_port), str(files[0]))  # not TLS at all
    assert plain.returncode != 0
    assert dcmtk("echoscu", "-aec", "PACSD", HOST, str(server.port)).returncode == 0  # the plain port still serves
    log = (tmp_path / "logs" / "pacsd.log").read_text()
    assert "certificate 'modality-1' may not call as 'OTHER'" in log


def test_tls_listener_of_a_single_process(pacs_factory, tmp_path, certificates):
    tls_port = free_port()
    pacs = pacs_factory(server={"tls": tls_settings(certificates, tls_port)})
    files = write_study(tmp_path / "send", series=1, per_series=2)
    sent = storescu_tls(certificates, tls_port, files)
    assert sent.returncode == 0, sent.stderr
    assert pacs.instance_count() == 2
    anonymous = storescu_tls(certificates, tls_port, files, client_certificate=False)  # allowed: not required
    assert anonymous.returncode == 0, anonymous.stderr


def test_c_move_to_a_known_ae_over_tls(pacs_factory, tmp_path, certificates):
    destination_port = free_port()
    received = tmp_path / "received"
    received.mkdir()
    pacs = pacs_factory(server={"tls": tls_settings(certificates, free_port())},
                        known_aes=[{"ae_title": "STORESCP", "host": HOST, "port": destination_port, "tls": True}])
    files = write_study(tmp_path / "send", series=1, per_series=2, PatientID="TLS-MOVE")
    assert storescu_tls(certificates, pacs.settings.server.tls.port, files).returncode == 0
    storescp = subprocess.Popen(["storescp", "+tls", str(certificates / "server.key"), str(certificates / "server.crt"),
                                 "+cf", str(certificates / "ca.crt"), "-aet", "STORESCP", "-od", str(received),
                                 str(destination_port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        moved = dcmtk("movescu", "-aet", "MOVER", "-aec", "PACSD", "-aem", "STORESCP", "-S",
                      "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}", HOST, str(pacs.port))
        assert moved.returncode == 0, moved.stderr
        assert len(list(received.iterdir())) == 2, moved.stderr
    finally:
        storescp.terminate()
        storescp.communicate(timeout=10)


def test_pacsd_echo_and_send_over_tls(pacs_factory, tmp_path, certificates):
    tls_port = free_port()
    pacs = pacs_factory(server={"tls": tls_settings(certificates, tls_port, require_client_certificate=True)})
    files = write_study(tmp_path / "send", series=1, per_series=2)
    client = ["--tls-ca", str(certificates / "ca.crt"), "--tls-cert", str(certificates / "client.crt"),
              "--tls-key", str(certificates / "client.key")]
    pacsd = [str(VENV_BIN / "pacsd")]
    echo = subprocess.run([*pacsd, "echo", HOST, str(tls_port), *client], capture_output=True, text=True, timeout=60)
    assert echo.returncode == 0, echo.stdout + echo.stderr
    sent = subprocess.run([*pacsd, "send", HOST, str(tls_port), *map(str, files), *client],
                          capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0 and "sent 2" in sent.stdout, sent.stdout + sent.stderr
    assert pacs.instance_count() == 2
    without_certificate = subprocess.run([*pacsd, "echo", HOST, str(tls_port), "--tls-ca", str(certificates / "ca.crt")],
                                         capture_output=True, text=True, timeout=60)
    assert without_certificate.returncode != 0  # the server requires one
