"""Logins an attacker cannot wear down (issue 21, points 7 and 10): failed logins throttled per
user name and per address, a verified Basic credential not hashed again for a while, endpoints
that need no login never hashing, logging out revoking a copied cookie, the login form refusing
a cross-site post."""

from __future__ import annotations

import httpx
import pytest

import pacsd.web.auth
from tests.conftest import HOST
from tests.webui import PASSWORD, add_users, post_login


@pytest.fixture
def web_of(pacs_factory):
    """A running archive with users admin and smith, its web server started with `web` settings."""
    from pacsd.web.server import WebServer

    servers = []

    def start(**web) -> str:
        pacs = pacs_factory(web=web)
        add_users(pacs.archive)
        server = WebServer(pacs.archive, HOST, 0, pacs.server.connections)
        server.start()
        servers.append(server)
        return f"http://{HOST}:{server.address[1]}"
    yield start
    for server in servers:
        server.stop()


def _qido(base: str, name: str, password: str) -> int:
    return httpx.get(f"{base}/dicom-web/studies", auth=(name, password)).status_code


def test_failed_logins_are_throttled_per_user_name(web_of):
    base = web_of(login_failures_per_user=3, login_failures_per_address=100)
    assert [_qido(base, "smith", "guess") for _ in range(3)] == [401, 401, 401]
    assert _qido(base, "smith", "guess") == 429
    assert _qido(base, "smith", PASSWORD) == 429, "locked for a while even with the right password"
    assert post_login(httpx.Client(base_url=base), "smith", PASSWORD).status_code == 429
    assert _qido(base, "admin", PASSWORD) in (200, 204), "another user is not affected"


def test_failed_logins_are_throttled_per_address(web_of):
    base = web_of(login_failures_per_user=100, login_failures_per_address=4)
    assert [_qido(base, f"user{n}", "guess") for n in range(4)] == [401] * 4
    assert _qido(base, "admin", PASSWORD) == 429
    answer = httpx.get(f"{base}/dicom-web/studies", auth=("admin", PASSWORD))
    assert int(answer.headers["retry-after"]) > 0


def test_endpoints_needing_no_login_never_check_credentials(web_of):
    base = web_of(login_failures_per_user=3)
    for _ in range(10):
        assert httpx.get(f"{base}/healthz", auth=("smith", "guess")).status_code == 200
    assert _qido(base, "smith", PASSWORD) in (200, 204), "no failure was counted: nothing was checked"


def test_a_verified_basic_credential_is_not_hashed_again(web_of, monkeypatch):
    base = web_of()
    hashed = []
    real = pacsd.web.auth.authenticate
    monkeypatch.setattr(pacsd.web.auth, "authenticate", lambda *a: hashed.append(a[1]) or real(*a))
    assert all(_qido(base, "admin", PASSWORD) in (200, 204) for _ in range(5))
    assert hashed == ["admin"]
    assert _qido(base, "admin", "wrong") == 401 and hashed == ["admin", "admin"]


def test_logging_out_revokes_a_copied_session_cookie(web_of):
    base = web_of()
    browser = httpx.Client(base_url=base)
    assert post_login(browser, "smith", PASSWORD).status_code == 303
    copied = httpx.Client(base_url=base, cookies={"pacsd_session": browser.cookies["pacsd_session"]})
    assert copied.get("/ui/studies").status_code == 200
    csrf = browser.get("/ui/studies").text.split('name="csrf-token" content="')[1].split('"')[0]
    assert browser.post("/logout", data={"csrf_token": csrf}).status_code == 303
    assert copied.get("/ui/studies", follow_redirects=False).status_code in (303, 401)


def test_the_login_form_refuses_a_cross_site_post(web_of):
    base = web_of()
    forged = httpx.post(f"{base}/login", data={"username": "smith", "password": PASSWORD})
    assert forged.status_code == 403 and "pacsd_session" not in forged.cookies
    client = httpx.Client(base_url=base)
    token = client.get("/login").text.split('name="login_token" value="')[1].split('"')[0]
    cross = client.post("/login", headers={"Sec-Fetch-Site": "cross-site"},
                        data={"username": "smith", "password": PASSWORD, "login_token": token})
    assert cross.status_code == 403 and "pacsd_session" not in client.cookies
