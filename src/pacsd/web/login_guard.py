"""What stands between a password guesser and argon2: failed logins counted per user name and
per client address (over the limit: refused without hashing, 429), and a short cache of
verified HTTP Basic credentials so a DICOMweb client does not cost a hash per request.

Both live in the web process's memory, bounded in size; a restart forgets them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque

from pacsd.config import WebSettings

_MAX_TRACKED = 10_000  # user names and addresses with recent failures; the oldest are forgotten
_MAX_CACHED = 1_000  # verified credentials held


class TooManyFailedLogins(Exception):
    """The user name or the address failed too often lately; `retry_after` seconds to wait."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after} s")
        self.retry_after = retry_after


class LoginThrottle:
    """Failed logins in the last `window` seconds, per user name and per address."""

    def __init__(self, per_user: int, per_address: int, window: float) -> None:
        self.limits = {"user": per_user, "address": per_address}
        self.window = window
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, user_name: str, address: str) -> None:
        """Raise TooManyFailedLogins when either has reached its limit (before any hashing)."""
        now = time.monotonic()
        with self._lock:
            waits = [self._wait(kind, key, now) for kind, key in (("user", user_name.lower()), ("address", address))]
        if max(waits) > 0:
            raise TooManyFailedLogins(int(max(waits)) + 1)

    def failed(self, user_name: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (("user", user_name.lower()), ("address", address)):
                times = self._failures.pop(key, None) or deque()
                times.append(now)
                while len(times) > self.limits[key[0]]:
                    times.popleft()
                self._failures[key] = times
            while len(self._failures) > _MAX_TRACKED:
                self._failures.popitem(last=False)

    def succeeded(self, user_name: str) -> None:
        with self._lock:
            self._failures.pop(("user", user_name.lower()), None)

    def _wait(self, kind: str, key: str, now: float) -> float:
        times = self._failures.get((kind, key))
        if not times or len(times) < self.limits[kind]:
            return 0
        return max(0.0, times[0] + self.window - now)


class VerifiedCredentials:
    """HTTP Basic credentials verified lately: (keyed digest of name and password) -> the user's
    session epoch then, for `seconds`.  The password itself is never kept; a new password (or a
    logout) bumps the epoch, which makes the entry stale."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _digest(self, name: str, password: str) -> bytes:
        return hmac.new(self._key, f"{name}\0{password}".encode(), hashlib.sha256).digest()

    def epoch(self, name: str, password: str) -> int | None:
        """The session epoch of the user when these credentials were verified, while still fresh."""
        if self.seconds <= 0:
            return None
        digest = self._digest(name, password)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None or entry[1] < time.monotonic():
                self._entries.pop(digest, None)
                return None
            return entry[0]

    def remember(self, name: str, password: str, epoch: int) -> None:
        if self.seconds <= 0:
            return
        with self._lock:
            self._entries[self._digest(name, password)] = (epoch, time.monotonic() + self.seconds)
            while len(self._entries) > _MAX_CACHED:
                self._entries.popitem(last=False)


def guards_for(settings: WebSettings) -> tuple[LoginThrottle, VerifiedCredentials]:
    return (LoginThrottle(settings.login_failures_per_user, settings.login_failures_per_address,
                          settings.login_failure_window),
            VerifiedCredentials(settings.basic_auth_cache_seconds))
