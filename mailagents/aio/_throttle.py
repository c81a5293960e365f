"""The failed-login throttle: failed logins counted per source address within a sliding
window, and the growing delay each is answered after (:class:`AuthThrottle`, exported as
:class:`mailagents.aio.AuthThrottle`); :func:`address_key`, the source a connection is
counted under (also for the per-address connection limit), and :func:`unix_peer`, the
peer and key of a client on a Unix socket (its process, not one bucket for all local
clients)."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import socket
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from mailagents.aio._limits import ListenerLimits

__all__ = ["AuthThrottle", "address_key", "peer_credentials", "unix_key", "unix_peer"]

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


# struct ucred (Linux, <sys/socket.h>): pid_t pid; uid_t uid; gid_t gid.
_UCRED = struct.Struct("3i")
_AF_UNIX: int | None = getattr(socket, "AF_UNIX", None)
# Numbers the Unix-socket clients whose process is unknown, each its own key.
_anonymous = itertools.count(1)


def peer_credentials(sock: Any) -> tuple[int, int, int] | None:
    """``(pid, uid, gid)`` of the process at the other end of a connected ``AF_UNIX``
    socket (``SO_PEERCRED``, Linux), or ``None`` where they are not known: no such
    option on this system, or a process id of 0 (a peer in another pid namespace)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    try:
        data = sock.getsockopt(socket.SOL_SOCKET, option, _UCRED.size)
    except (OSError, AttributeError, TypeError, ValueError):
        return None
    if not isinstance(data, bytes) or len(data) != _UCRED.size:
        return None
    pid, uid, gid = _UCRED.unpack(data)
    if pid <= 0:
        return None
    return pid, uid, gid


def unix_key(credentials: tuple[int, int, int] | None) -> str:
    """The key a Unix-socket client is counted under (the per-address connection limit,
    the failed-login throttle): ``"unix:pid=<pid>"``, its process (Postfix runs many
    LMTP client processes under one uid), or when the process is unknown a key of its
    own, ``"unix:#<n>"``, so that local clients are never lumped together."""
    if credentials is not None:
        return f"unix:pid={credentials[0]}"
    return f"unix:#{next(_anonymous)}"


def unix_peer(transport: asyncio.BaseTransport) -> tuple[tuple[Any, ...], str] | None:
    """For a connection on a Unix socket, the client's peer (``("unix", pid, uid)``,
    or ``("unix",)`` when its process is unknown) and the key it is counted under (see
    :func:`unix_key`); ``None`` for any other transport."""
    sock = transport.get_extra_info("socket")
    if _AF_UNIX is None or sock is None or getattr(sock, "family", None) != _AF_UNIX:
        return None
    credentials = peer_credentials(sock)
    peer: tuple[Any, ...] = (
        ("unix",) if credentials is None else ("unix", credentials[0], credentials[1])
    )
    return peer, unix_key(credentials)


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
