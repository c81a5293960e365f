"""The protocol-neutral side of every server adapter: the :class:`Listener` (listening
sockets, connection limits, graceful shutdown) and the pieces each of its sessions is
made of, one private module each:

- :mod:`~mailagents.aio._limits`: :class:`~mailagents.aio.ListenerLimits`, every limit
  and deadline, with defaults fit for a public server;
- :mod:`~mailagents.aio._throttle`: the failed-login throttle
  (:class:`~mailagents.aio.AuthThrottle`) and the source address a connection is
  counted under;
- :mod:`~mailagents.aio._session`: :class:`~mailagents.aio._session.StreamSession`,
  one client connection (transport callbacks, back-pressure, the login delay, the TLS
  upgrade, the session task);
- :mod:`~mailagents.aio._deadlines`: the client's deadlines (idle, command, transfer,
  send), which the session asks for the next one to arm its timer;
- :mod:`~mailagents.aio._input`: the bounded input buffer.

The SMTP and POP3 servers use it: a protocol adapter subclasses
:class:`~mailagents.aio._session.StreamSession` and writes only its session loop (read,
feed the core, answer the core's events, write); every reply (a refusal greeting, a
time-out, a shutdown) comes from the protocol core, never from here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

from mailagents.aio._limits import ListenerLimits
from mailagents.aio._throttle import AuthThrottle

if TYPE_CHECKING:
    from mailagents.aio._session import StreamSession

__all__ = ["Listener", "Refusal"]

log = logging.getLogger(__name__)

Refusal = Literal["connections", "address", "shutdown"]
"""Why a new connection is refused: the global limit, the per-address limit, or the
listener is closing."""


class Listener:
    """Listening sockets (several addresses, IPv4 and IPv6, optional implicit TLS) and
    the sessions they accepted, within :class:`ListenerLimits`.

    ``session_factory`` makes the :class:`~mailagents.aio._session.StreamSession`
    subclass of the protocol for each connection."""

    def __init__(
        self,
        session_factory: Callable[[Listener, asyncio.AbstractEventLoop], StreamSession],
        limits: ListenerLimits | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        throttle: AuthThrottle | None = None,
        name: str = "server",
    ) -> None:
        self.limits = limits if limits is not None else ListenerLimits()
        """The limits of the listener and its sessions."""
        self.ssl_context = ssl_context
        """Every connection starts with a TLS handshake with this context (implicit
        TLS), unless ``None``."""
        self.throttle = throttle if throttle is not None else AuthThrottle(self.limits)
        """The failed-login throttle (shared by all sessions; can be shared between
        listeners)."""
        self.name = name
        """A name for the logs."""
        self.sessions: set[StreamSession] = set()
        """The sessions being served."""
        self._factory = session_factory
        self._per_address: dict[str, int] = {}
        self._server: asyncio.Server | None = None
        self._closing = False

    async def start(self, host: str | Sequence[str] = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host`` (one address or name, or several) and ``port``
        (``0``: an ephemeral port)."""
        if self._server is not None:
            raise RuntimeError("the listener is already started")
        loop = asyncio.get_running_loop()
        hosts = host if isinstance(host, str) else list(host)
        tls = self.ssl_context
        self._closing = False
        self._server = await loop.create_server(
            lambda: self._factory(self, loop),
            hosts,
            port,
            backlog=self.limits.backlog,
            ssl=tls,
            ssl_handshake_timeout=self.limits.tls_handshake_timeout if tls else None,
            reuse_address=True,
            reuse_port=self.limits.reuse_port or None,
        )
        for sock in self._server.sockets:
            log.info("%s listening on %s", self.name, sock.getsockname())

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (empty when not listening)."""
        if self._server is None:
            return ()
        return tuple(self._server.sockets)

    def connections_from(self, address: str) -> int:
        """Sessions served now for a source address key."""
        return self._per_address.get(address, 0)

    def _admit(self, session: StreamSession) -> Refusal | None:
        limits = self.limits
        if self._closing:
            return "shutdown"
        if len(self.sessions) >= limits.max_connections:
            return "connections"
        count = self._per_address.get(session.address, 0)
        if count >= limits.max_connections_per_address:
            return "address"
        self._per_address[session.address] = count + 1
        self.sessions.add(session)
        return None

    def _release(self, session: StreamSession) -> None:
        if session in self.sessions:
            self.sessions.discard(session)
            count = self._per_address.get(session.address, 0) - 1
            if count > 0:
                self._per_address[session.address] = count
            else:
                self._per_address.pop(session.address, None)

    async def close(self, grace: float | None = None) -> None:
        """Stop listening; let sessions finish what they are doing for ``grace`` seconds
        (default ``limits.shutdown_grace``): each ends with the protocol's shutdown reply
        at its next transaction boundary. Then the others get that reply as soon as they
        wait for the client, and after ``limits.shutdown_timeout`` more seconds those
        still busy are cancelled."""
        server = self._server
        if server is None:
            return
        self._server = None
        self._closing = True
        server.close()
        grace = self.limits.shutdown_grace if grace is None else grace
        for session in list(self.sessions):
            session.stop("drain")
        pending = {s.task for s in self.sessions if s.task is not None}
        if pending and grace > 0:
            _, pending = await asyncio.wait(pending, timeout=grace)
        if pending:
            for session in list(self.sessions):
                session.stop("shutdown")
            _, pending = await asyncio.wait(pending, timeout=self.limits.shutdown_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await server.wait_closed()
