"""An asyncio IMAP server: a thin adapter around :class:`mailagents.imap.ServerConnection`.

The adapter moves bytes, enforces the per-state deadlines (60 seconds before login,
30 minutes after it and in IDLE, RFC 9051 §5.4), the connection limits (per address
from the listener, per user here) and the failed-login throttle, upgrades to TLS when
the core accepted STARTTLS, switches COMPRESS=DEFLATE on after its ``OK`` (RFC 4978)
and wakes the session when its folder changed. Every protocol rule lives in the core;
the application decides in an :class:`IMAPHandler` subclass::

    class Handler(IMAPHandler):
        async def on_credentials(self, session, request):
            return await users.answer_async(request)

        async def on_command(self, session, command):
            if isinstance(command, commands.Namespace):
                await session.send(responses.NamespaceData(personal=(...), other=None,
                                                           shared=None))
                return Complete()
            return Complete(status="NO", text="Not here")

    async with await serve_imap(Handler(), port=1143, ssl_context=context) as server:
        await asyncio.Event().wait()

The store-backed handler, answering every command from a ``mailagents.store`` per
user, is ``mailagents.agents._imap_session.StoreIMAPHandler`` (with
``store_imap_server``).
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Sequence
from typing import Any

from mailagents.aio._deadlines import StateTimeouts
from mailagents.aio._imap_server import IMAPConnection
from mailagents.aio._imap_server_handler import IMAPHandler, IMAPSession
from mailagents.aio._limits import ListenerLimits
from mailagents.aio._server import ListeningServer, server_limits, tls_config
from mailagents.aio._throttle import AuthThrottle
from mailagents.imap._config import ServerConfig

__all__ = ["IMAPHandler", "IMAPServer", "IMAPSession", "serve_imap"]

IDLE_TIMEOUT = 1800.0
"""The default autologout after login: RFC 9051 §5.4 asks for at least 30 minutes."""


class IMAPServer(ListeningServer):
    """An IMAP server on asyncio, one ``ServerConnection`` per client, on the
    protocol-neutral listener of :mod:`mailagents.aio`.

    ``ssl_context`` enables TLS: STARTTLS is offered (RFC 9051 §6.2.1), or with
    ``implicit_tls`` every connection starts with a TLS handshake (RFC 8314, port
    993). Without TLS, passwords are refused (LOGINDISABLED) unless
    ``config.allow_plaintext_login``. ``state_timeouts`` are the idle deadlines per
    state (default 60 s before login, 30 min after it and in IDLE);
    ``max_sessions_per_user`` ends a login beyond it with ``* BYE`` (``None``: no
    limit). ``compress`` offers COMPRESS=DEFLATE (RFC 4978). Failed logins are answered
    after the throttle's growing delay. Use it as an async context manager or call
    :meth:`start` and :meth:`close`."""

    def __init__(
        self,
        handler: IMAPHandler,
        config: ServerConfig | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        state_timeouts: StateTimeouts | None = None,
        max_connections: int | None = None,
        max_sessions_per_user: int | None = 20,
        compress: bool = True,
        limits: ListenerLimits | None = None,
        throttle: AuthThrottle | None = None,
    ) -> None:
        if limits is None:
            limits = ListenerLimits(idle_timeout=IDLE_TIMEOUT, command_timeout=IDLE_TIMEOUT)
        limits = server_limits(limits, None, max_connections)
        config = tls_config(
            config if config is not None else ServerConfig(), ssl_context, implicit_tls
        )
        if compress and not any(e.upper() == "COMPRESS=DEFLATE" for e in config.extensions):
            config = dataclasses.replace(
                config, extensions=(*config.extensions, "COMPRESS=DEFLATE")
            )
        self.handler = handler
        """The :class:`IMAPHandler` that decides for every session."""
        self.config = config
        """The ``ServerConfig`` each session's core gets."""
        self.ssl_context = ssl_context
        """The TLS context for STARTTLS or implicit TLS, or ``None``."""
        self.implicit_tls = implicit_tls
        """Connections start with a TLS handshake."""
        self.state_timeouts = state_timeouts if state_timeouts is not None else StateTimeouts()
        """The idle deadline per session state."""
        self.max_sessions_per_user = max_sessions_per_user
        """Sessions one identity may hold at once (``None``: no limit)."""
        self.limits = limits
        """The ``ListenerLimits`` of the server and its sessions."""
        self._users: dict[str, int] = {}
        self._listen(
            lambda listener, loop: IMAPConnection(self, listener, loop),
            ssl_context=ssl_context,
            implicit_tls=implicit_tls,
            throttle=throttle,
            name="IMAP server",
        )

    def sessions_of(self, identity: str) -> int:
        """Logged-in sessions of ``identity`` now."""
        return self._users.get(identity, 0)

    def _joined(self, identity: str) -> bool:
        count = self._users.get(identity, 0)
        if self.max_sessions_per_user is not None and count >= self.max_sessions_per_user:
            return False
        self._users[identity] = count + 1
        return True

    def _left(self, identity: str) -> None:
        count = self._users.get(identity, 0) - 1
        if count > 0:
            self._users[identity] = count
        else:
            self._users.pop(identity, None)

    start = ListeningServer.start
    start_unix = ListeningServer.start_unix
    sockets = ListeningServer.sockets
    port = ListeningServer.port
    path = ListeningServer.path
    connections = ListeningServer.connections
    throttle = ListeningServer.throttle

    async def close(self, timeout: float | None = None) -> None:
        """Stop listening and end the sessions with ``* BYE`` once each has finished the
        command in progress (at most ``timeout`` seconds, default
        ``limits.shutdown_grace``)."""
        await self._listener.close(timeout)


async def serve_imap(
    handler: IMAPHandler,
    config: ServerConfig | None = None,
    *,
    host: str | Sequence[str] = "127.0.0.1",
    port: int = 0,
    **options: Any,
) -> IMAPServer:
    """Create an :class:`IMAPServer` (``options`` are its keyword arguments), start it
    on ``host`` and ``port``, and return it."""
    server = IMAPServer(handler, config, **options)
    await server.start(host, port)
    return server
