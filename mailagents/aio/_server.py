"""What every protocol server (SMTP, POP3) does around its
:class:`~mailagents.aio._listener.Listener`, written once: the constructor's shortcuts
for the limits, the listener with the implicit-TLS context, and the lifecycle (start on
TCP or on a Unix socket, the listening sockets, port and path, the sessions open, close,
the async context manager).

A server subclasses :class:`ListeningServer`, builds its limits with
:func:`server_limits`, calls :meth:`ListeningServer._listen` with its session factory,
and re-binds the public members in its own class body (``start =
ListeningServer.start``) so that they are documented as its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import ssl
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Protocol, Self, TypeVar

from mailagents.aio._limits import ListenerLimits
from mailagents.aio._listener import Listener
from mailagents.aio._session import StreamSession
from mailagents.aio._throttle import AuthThrottle

__all__ = ["ListeningServer", "server_limits", "tls_config"]


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


class _TLSConfig(Protocol):
    @property
    def tls_available(self) -> bool: ...
    @property
    def tls_active(self) -> bool: ...


_C = TypeVar("_C", bound=_TLSConfig)


def tls_config(config: _C, ssl_context: ssl.SSLContext | None, implicit_tls: bool) -> _C:
    """A POP3 or IMAP core's configuration made to match the server's TLS: with
    ``implicit_tls`` the session starts encrypted (port 995/993, RFC 8314), else TLS is
    offered by STLS/STARTTLS; a configuration that offers TLS without an
    ``ssl_context`` (or ``implicit_tls`` without one) is a :class:`ValueError`."""
    if implicit_tls and ssl_context is None:
        raise ValueError("implicit_tls needs an ssl_context")
    if ssl_context is None:
        if config.tls_available or config.tls_active:
            raise ValueError("config offers TLS: pass an ssl_context")
        return config
    if implicit_tls:
        return dataclasses.replace(config, tls_active=True, tls_available=False)  # type: ignore[type-var]
    return dataclasses.replace(config, tls_available=True, tls_active=False)  # type: ignore[type-var]


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

    async def start_unix(
        self,
        path: str | os.PathLike[str],
        *,
        mode: int = 0o660,
        owner: int | str | None = None,
        group: int | str | None = None,
    ) -> None:
        """Listen on the Unix socket ``path`` instead (as Postfix reaches an LMTP
        server: ``lmtp:unix:/path``), with a backlog of ``limits.backlog``; see
        :attr:`path`.

        A stale socket file at ``path`` is replaced; anything else there (a regular
        file, a directory, a symbolic link, or a socket another server listens on) is
        left alone and :exc:`OSError` raised (:exc:`FileExistsError` if it is not a
        socket). The socket file gets the permissions ``mode`` (a client needs write
        permission to connect) and, unless ``None``, the user ``owner`` and the group
        ``group`` (names or numeric ids; an unknown name raises :exc:`LookupError`)
        before any client can connect; :meth:`close` removes it. Create it in a
        directory that only the server's user may write to.

        Each client is counted (``max_connections_per_address``, the failed-login
        throttle) under its own process, as told by the kernel (``SO_PEERCRED`` on
        Linux; elsewhere each connection counts alone), and its session's ``peer`` is
        ``("unix", pid, uid)``, or ``("unix",)`` when the process is not known."""
        if self._listener.sockets:
            raise RuntimeError("the server is already started")
        await self._listener.start_unix(path, mode=mode, owner=owner, group=group)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (empty before :meth:`start` and after :meth:`close`)."""
        return self._listener.sockets

    @property
    def port(self) -> int:
        """The port of the first listening socket (the real one when started on 0).
        Raises :exc:`RuntimeError` when not listening, or listening on a Unix socket
        (see :attr:`path`)."""
        sockets = self.sockets
        if not sockets:
            raise RuntimeError("the server is not listening")
        path = self._listener.path
        if path is not None:
            raise RuntimeError(f"the server listens on the Unix socket {path!r}, which has "
                               "no port (see path)")
        return int(sockets[0].getsockname()[1])

    @property
    def path(self) -> str | None:
        """The path of the Unix socket listened on (see :meth:`start_unix`), or ``None``
        (not listening, or listening on TCP)."""
        return self._listener.path

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
