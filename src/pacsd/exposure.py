"""Start-up warnings about what the settings expose to the network (DICOM open to any AE title,
every study to any querying AE); `pacsd serve` logs them once, `exposure_warnings` lists them.
"""

from __future__ import annotations

import ipaddress
import logging

from pacsd.config import Settings

log = logging.getLogger("pacsd.exposure")


def listens_beyond_localhost(host: str) -> bool:
    """Whether a listener bound to `host` is reachable from other machines."""
    if host in ("localhost", ""):
        return host == ""
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost: assume it resolves to the network
        return True


def exposure_warnings(settings: Settings) -> list[str]:
    """One sentence per setting that leaves the archive open to anyone who reaches the DICOM port."""
    server = settings.server
    if not listens_beyond_localhost(server.host):
        return []
    where = f"DICOM listens on {server.host}:{server.port}, beyond this machine"
    warnings = []
    if not settings.access.allowed_aets:
        warnings.append(f"{where}, and access.allowed_aets is empty: any calling AE title may store "
                        "(list the senders in access.allowed_aets)")
    if not settings.query_retrieve.permissions:
        warnings.append(f"{where}, and query_retrieve.permissions is empty: any calling AE title may find "
                        "and retrieve every study of every account (list the AEs there, with their accounts)")
    return warnings


def log_exposure_warnings(settings: Settings) -> None:
    """Log each of `exposure_warnings` (called once when the server starts)."""
    for warning in exposure_warnings(settings):
        log.warning("%s", warning)
