"""The failed-login throttle: failed logins counted per source address within a sliding
window, and the growing delay each is answered after (:class:`AuthThrottle`, exported as
:class:`mailagents.aio.AuthThrottle`); :func:`address_key`, the source a connection is
counted under (also for the per-address connection limit)."""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from mailagents.aio._limits import ListenerLimits

__all__ = ["AuthThrottle", "address_key"]

# Source addresses remembered by the login throttle at most (oldest forgotten first).
_MAX_TRACKED = 65_536


def address_key(peer: Any, ipv6_prefix: int = 64) -> str:
    """The source a connection is counted under: the IPv4 address (also when it comes
    as an IPv4-mapped IPv6 address), or the IPv6 network of ``ipv6_prefix`` bits."""
    host = peer[0] if isinstance(peer, tuple | list) and peer else peer
    if not isinstance(host, str):
        return repr(host)
    if ":" not in host:
        return host  # IPv4: the kernel's dotted quad is canonical already
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))
    return str(ip)


class AuthThrottle:
    """Failed logins counted per source address within a sliding window, and the delay
    each failure is answered after. One throttle can serve several listeners."""

    def __init__(
        self, limits: ListenerLimits, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        """The limits the throttle applies."""
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is not None:
            horizon = now - self.limits.auth_failure_window
            while failures and failures[0] <= horizon:
                failures.popleft()
            if not failures:
                del self._failures[key]
                return None
        return failures

    def failures(self, key: str) -> int:
        """Failed logins from ``key`` within the window."""
        failures = self._recent(key, self._clock())
        return len(failures) if failures is not None else 0

    def failed(self, key: str, connection_failures: int) -> tuple[float, bool]:
        """Record a failed login from ``key``, the ``connection_failures``-th of its
        session. Returns the delay to wait before answering it, and whether the session
        must then be closed."""
        limits = self.limits
        now = self._clock()
        failures = self._recent(key, now)
        if failures is None:
            failures = deque(maxlen=limits.max_auth_failures_per_address)
            self._failures[key] = failures
            while len(self._failures) > _MAX_TRACKED:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(key)
        failures.append(now)
        count = max(connection_failures, len(failures))
        delay = min(limits.auth_failure_delay * 2.0 ** min(count - 1, 64),
                    limits.max_auth_failure_delay)
        close = (
            connection_failures >= limits.max_auth_failures
            or len(failures) >= limits.max_auth_failures_per_address
        )
        return delay, close
