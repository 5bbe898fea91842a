"""DICOM over TLS (PS3.15 Annex B): the contexts pacsd listens and connects with, and which AE a
client certificate may speak for.

`server.tls` names the server's certificate and key, and optionally the CA certificates peers
are checked against: a client's certificate (asked for, and required with
`require_client_certificate`) and, when pacsd connects out to a known AE with `tls: true`, that
AE's server certificate.  `certificate_aes` maps a client certificate's subject common name to
the calling AE titles it may use; when set, a TLS association whose calling AE its certificate
does not name is rejected.
"""

from __future__ import annotations

import ssl

from pacsd.config import TlsSettings


def server_context(tls: TlsSettings) -> ssl.SSLContext:
    """The context TLS connections to pacsd are accepted with."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls.certificate), str(tls.key))
    if tls.ca_certificates is not None:
        context.load_verify_locations(str(tls.ca_certificates))
        context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_certificate else ssl.CERT_OPTIONAL
    return context


def client_context(tls: TlsSettings) -> ssl.SSLContext:
    """The context pacsd connects to a known AE with `tls: true` (its certificate checked against
    `ca_certificates`, or the system's CAs; pacsd's own certificate offered when it has one)."""
    context = ssl.create_default_context(cafile=str(tls.ca_certificates) if tls.ca_certificates else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.certificate is not None and tls.key is not None:
        context.load_cert_chain(str(tls.certificate), str(tls.key))
    return context


def certificate_name(sock) -> str | None:
    """The subject common name of the peer's certificate on a TLS socket (None: no TLS, or no
    certificate)."""
    if not isinstance(sock, ssl.SSLSocket):
        return None
    certificate = sock.getpeercert()
    for field in (certificate or {}).get("subject", ()):
        for key, value in field:
            if key == "commonName":
                return value
    return None


def certificate_refuses(tls: TlsSettings, sock, calling_aet: str) -> str | None:
    """Why a TLS association's calling AE is refused by `certificate_aes` (None: allowed)."""
    if not tls.certificate_aes or not isinstance(sock, ssl.SSLSocket):
        return None
    name = certificate_name(sock)
    if name is None:
        return "no client certificate"
    if calling_aet not in tls.certificate_aes.get(name, []):
        return f"certificate {name!r} may not call as {calling_aet!r}"
    return None
