"""What every protocol server (SMTP, POP3) does around its
:class:`~mailagents.aio._listener.Listener`, written once: the constructor's shortcuts
for the limits, the listener with the implicit-TLS context, and the lifecycle (start,
the listening sockets and port, the sessions open, close, the async context manager).

A server subclasses :class:`ListeningServer`, builds its limits with
:func:`server_limits`, calls :meth:`ListeningServer._listen` with its session factory,
and re-binds the public members in its own class body (``start =
ListeningServer.start``) so that they are documented as its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

from mailagents.aio._limits import ListenerLimits
from mailagents.aio._listener import Listener
from mailagents.aio._session import StreamSession
from mailagents.aio._throttle import AuthThrottle

__all__ = ["ListeningServer", "server_limits"]


def server_limits(
    limits: ListenerLimits, timeout: float | None, max_connections: int | None
) -> ListenerLimits:
    """``limits`` with a server constructor's shortcuts applied: ``timeout`` sets the
    idle and command deadlines (and caps the TLS handshake's), ``max_connections`` the
    number of sessions served at once."""
    if timeout is not None:
        limits = dataclasses.replace(
            limits,
            idle_timeout=timeout,
            command_timeout=timeout,
            tls_handshake_timeout=min(timeout, limits.tls_handshake_timeout),
        )
    if max_connections is not None:
        limits = dataclasses.replace(limits, max_connections=max_connections)
    return limits


class ListeningServer:
    """The lifecycle of a protocol server over one :class:`Listener`."""

    limits: ListenerLimits
    """The :class:`~mailagents.aio.ListenerLimits` of the server and its sessions."""
    _listener: Listener

    def _listen(
        self,
        factory: Callable[[Listener, asyncio.AbstractEventLoop], StreamSession],
        *,
        ssl_context: ssl.SSLContext | None,
        implicit_tls: bool,
        throttle: AuthThrottle | None,
        name: str,
    ) -> None:
        """Make the listener: every connection starts with a TLS handshake when
        ``implicit_tls``; otherwise the protocol upgrades on request (STARTTLS, STLS)."""
        self._listener = Listener(
            factory,
            self.limits,
            ssl_context=ssl_context if implicit_tls else None,
            throttle=throttle,
            name=name,
        )

    async def start(self, host: str | Sequence[str] = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host`` (one address or name, or several; IPv4 and IPv6) and
        ``port`` (``0``: an ephemeral port, see :attr:`port`), with a backlog of
        ``limits.backlog``."""
        if self._listener.sockets:
            raise RuntimeError("the server is already started")
        await self._listener.start(host, port)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (empty before :meth:`start` and after :meth:`close`)."""
        return self._listener.sockets

    @property
    def port(self) -> int:
        """The port of the first listening socket (the real one when started on 0)."""
        sockets = self.sockets
        if not sockets:
            raise RuntimeError("the server is not listening")
        return int(sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        """The number of sessions open now."""
        return len(self._listener.sessions)

    @property
    def throttle(self) -> AuthThrottle:
        """The failed-login throttle of this server (pass it as ``throttle`` to another
        server for both to count failures together)."""
        return self._listener.throttle

    async def close(self, timeout: float | None = None) -> None:
        """Stop listening and end the sessions gracefully (see :meth:`Listener.close`)."""
        await self._listener.close(timeout)

    async def __aenter__(self) -> Self:
        if not self.sockets:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
