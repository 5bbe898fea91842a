"""HTTPS served directly (issue 21): with http.tls_certificate and http.tls_key the web server
speaks TLS only (httpx verifies it against the certificate made here by openssl), and the
session and login cookies are Secure."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import httpx
import pytest

from pacsd.errors import ConfigError
from tests.conftest import HOST, make_settings
from tests.webui import PASSWORD, add_users, post_login


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1, made by openssl in the test set-up."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is missing: scripts/install-system-deps.sh installs it")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=pacsd-test",
                    "-addext", f"subjectAltName=IP:{HOST}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture
def https_web(pacs_factory, certificate):
    from pacsd.web.server import WebServer

    cert, key = certificate
    pacs = pacs_factory(http={"tls_certificate": str(cert), "tls_key": str(key)})
    add_users(pacs.archive)
    server = WebServer(pacs.archive, HOST, 0, pacs.server.connections)
    server.start()
    yield f"https://{HOST}:{server.address[1]}", f"http://{HOST}:{server.address[1]}", cert
    server.stop()


def test_https_with_verified_certificate_and_secure_cookies(https_web):
    base, plain, cert = https_web
    context = ssl.create_default_context(cafile=str(cert))
    client = httpx.Client(base_url=base, verify=context)
    assert client.get("/healthz").status_code == 200
    form = client.get("/login")
    assert "secure" in form.headers["set-cookie"].lower()
    logged_in = post_login(client, "smith", PASSWORD)
    assert logged_in.status_code == 303
    session_cookie = [h for h in logged_in.headers.get_list("set-cookie") if h.startswith("pacsd_session=")]
    assert session_cookie and "secure" in session_cookie[0].lower()
    assert client.get("/ui/studies").status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{plain}/healthz", timeout=5)  # no plain HTTP on the TLS port
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz", timeout=5)  # an unknown certificate is refused by default


def test_a_certificate_without_its_key_is_a_config_error(tmp_path, certificate):
    cert, _ = certificate
    with pytest.raises(ConfigError, match="tls_key"):
        make_settings(tmp_path, http={"tls_certificate": str(cert)})
