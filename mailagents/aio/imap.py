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

import asyncio
import dataclasses
import logging
import ssl
from collections.abc import AsyncIterable, Awaitable, Sequence
from typing import Any, TypeVar

from mailagents import sasl
from mailagents._protocol import NEED_DATA, PAUSED, LocalProtocolError, RemoteProtocolError
from mailagents.aio._codec import DeflateCodec
from mailagents.aio._deadlines import StateTimeouts
from mailagents.aio._limits import ListenerLimits
from mailagents.aio._listener import Listener, Refusal
from mailagents.aio._server import ListeningServer, server_limits
from mailagents.aio._session import WOKEN, StreamSession
from mailagents.aio._throttle import AuthThrottle
from mailagents.imap._commands import Command
from mailagents.imap._config import ServerConfig
from mailagents.imap._events import (
    AppendChunk,
    AppendEnd,
    AppendRequested,
    AppendStart,
    Authenticated,
    AuthenticationFailed,
    CommandReceived,
    CommandRejected,
    Complete,
    CompressionStarted,
    ConnectionClosed,
    Continue,
    Greeting,
    IdleEnded,
    IdleStarted,
    LiteralData,
    StartTLS,
    Untagged,
)
from mailagents.imap._frame import Frame
from mailagents.imap._responses import Response
from mailagents.imap._server import ServerConnection
from mailagents.imap._state import State

__all__ = ["IMAPHandler", "IMAPServer", "IMAPSession", "serve_imap"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

IDLE_TIMEOUT = 1800.0
"""The default autologout after login: RFC 9051 §5.4 asks for at least 30 minutes."""

_REFUSALS: dict[Refusal, str] = {
    "connections": "Too many connections, try again later",
    "address": "Too many connections from your address, try again later",
    "shutdown": "Service shutting down",
}
_SERVERBUG = Complete(status="NO", code="SERVERBUG", text="Internal error")
_UNAVAILABLE = Complete(status="NO", code="UNAVAILABLE", text="Temporary failure")


class IMAPSession:
    """What the server knows about one client connection, passed to every handler call.

    The adapter keeps ``tls``, ``identity`` and ``mechanism`` up to date; ``data``
    belongs to the handler (the user's store, the selected folder). :meth:`send` puts
    an untagged response out for the command in progress; :meth:`wake` (for a folder
    watch's callback) has the session call :meth:`IMAPHandler.on_wake` and send what
    changed."""

    def __init__(self, peer: tuple[Any, ...], connection: _Connection) -> None:
        self.peer = peer
        """The client's socket address (see ``POP3Session.peer``)."""
        self.tls = False
        """The session runs over TLS (implicit TLS, or after STARTTLS)."""
        self.identity: str | None = None
        """The authenticated identity once logged in, else ``None``."""
        self.mechanism: str | None = None
        """``"LOGIN"`` or the SASL mechanism the client logged in with."""
        self.data: dict[str, Any] = {}
        """Free for the handler's own per-session state."""
        self._connection = connection

    @property
    def core(self) -> ServerConnection:
        """The session's ``ServerConnection``: its ``mailbox`` view, ``enabled`` set and
        ``state`` (answers go through :meth:`send` and the handler's return values)."""
        core = self._connection.core
        assert core is not None
        return core

    def wake(self) -> None:
        """Something changed in the store: call :meth:`IMAPHandler.on_wake` and send the
        updates the core allows now (in IDLE at once). Safe to call any number of times
        from the loop's thread."""
        self._connection.wake()

    async def send(
        self, response: Response | Frame, literals: Sequence[AsyncIterable[bytes]] = ()
    ) -> None:
        """Send one untagged response for the command in progress: a response object
        (written by the core for the session) or a frame. Each ``Streamed`` literal in
        it, in order, takes its octets from the matching item of ``literals``, exactly
        its announced size; the client's slowness holds this call (back-pressure)."""
        await self._connection.send_untagged(response, literals)


class IMAPHandler:
    """The application's mailboxes: subclass it and override the calls you need.

    Every method is a coroutine called by the server for one session, with the
    client's clock stopped. The defaults know no user and refuse every mailbox
    command with ``NO``. An exception raised by a decision method is logged and
    answered ``NO [SERVERBUG]``; one raised while a literal streams closes the
    connection (the client must never take a cut literal as whole)."""

    async def on_connect(self, session: IMAPSession) -> Greeting:
        """The greeting (RFC 9051 §7.1): ``OK`` by default; ``PREAUTH`` for a
        pre-authenticated connection, ``BYE`` to refuse."""
        return Greeting()

    async def on_credentials(
        self, session: IMAPSession, request: sasl.NeedCredentials
    ) -> sasl.Answer:
        """LOGIN or AUTHENTICATE: look the user up. LOGIN asks as PLAIN does
        (``request.password`` is set): answer a ``PasswordVerdict``; SCRAM wants
        ``ScramSecrets``. ``NoSuchUser`` (the default) fails the login;
        ``mailagents.userdb.UserStore.answer_async`` answers all of these."""
        return sasl.NoSuchUser()

    async def on_login(self, session: IMAPSession) -> None:
        """The client logged in as ``session.identity`` (open the user's store)."""

    async def on_command(self, session: IMAPSession, command: Command) -> Complete:
        """A command for the application (everything the core does not answer itself,
        see ``CommandReceived``): send untagged responses with
        :meth:`IMAPSession.send`, tell the view ``session.core.mailbox`` what changed,
        and return the tagged :class:`~mailagents.imap.Complete`."""
        return Complete(status="NO", text="Not available")

    async def on_append_requested(
        self, session: IMAPSession, event: AppendRequested
    ) -> Continue | Complete:
        """With ``ServerConfig.confirm_append``: a synchronising APPEND literal was
        announced. ``Continue`` lets it come; a NO ``Complete`` (``TRYCREATE``,
        ``TOOBIG``, ``OVERQUOTA``) ends the command first."""
        return Continue()

    async def on_append_start(self, session: IMAPSession, event: AppendStart) -> None:
        """An APPEND message begins (its chunks follow, then :meth:`on_append_end`,
        then :meth:`on_command` with the ``Append`` command)."""

    async def on_append_chunk(self, session: IMAPSession, event: AppendChunk) -> None:
        """Octets of the APPEND message being received."""

    async def on_append_end(self, session: IMAPSession, event: AppendEnd) -> None:
        """The APPEND message is complete."""

    async def on_idle(self, session: IMAPSession, idling: bool) -> None:
        """IDLE began (``idling`` true) or ended (RFC 2177)."""

    async def on_wake(self, session: IMAPSession) -> None:
        """After :meth:`IMAPSession.wake`: read the store's changes and tell them to the
        view ``session.core.mailbox``; the server then sends what may go out."""

    async def on_close(self, session: IMAPSession) -> None:
        """The session ended, however it ended: release what it held. Always called
        once per served session."""


class _Connection(StreamSession):
    """One IMAP client connection: the session loop over ``StreamSession``."""

    def __init__(self, server: IMAPServer, listener: Listener, loop: asyncio.AbstractEventLoop):
        super().__init__(listener, loop)
        self.state_timeouts = server.state_timeouts
        self._server = server
        self.core: ServerConnection | None = None
        self.session: IMAPSession | None = None
        self._user: str | None = None

    # --- hooks -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.core = ServerConnection(self._server.config)
        self.session = IMAPSession(tuple(peer) if peer else (), self)
        self.session.tls = self._server.config.tls_active
        super().connection_made(transport)

    def begin(self) -> None:
        if self.session is not None:
            self.session.peer = self.peer
        self.set_state("before_login")

    def refuse(self, why: Refusal) -> None:
        self.core = None
        self.session = None
        core = ServerConnection(self._server.config)
        core.send(Greeting(kind="BYE", text=_REFUSALS[why]))
        self.write(core.data_to_send())

    def failed(self) -> None:
        if self.core is not None:
            self.core.shutdown("Internal error, closing connection")
            self.write(self.core.data_to_send())

    def at_boundary(self) -> bool:
        core = self.core
        return core is None or not core.paused

    async def _ask(self, call: Awaitable[_T], fallback: _T) -> _T:
        """A handler call with the client's clock stopped; its exception is logged and
        answered with ``fallback``."""
        paused = self.pause_clock()
        try:
            return await call
        except Exception:
            log.exception("IMAP handler %s failed", getattr(call, "__qualname__", call))
            return fallback
        finally:
            if paused:
                self.resume_clock()

    def _flush(self) -> None:
        core = self.core
        assert core is not None
        out = core.data_to_send()
        if out:
            self.write(out)

    def _track_state(self) -> None:
        core = self.core
        assert core is not None
        state = core.state
        if state in (State.IDLE_AUTHENTICATED, State.IDLE_SELECTED):
            self.set_state("idle")
        elif state in (State.AUTHENTICATED, State.SELECTED):
            self.set_state("after_login")
        elif state in (State.GREETING, State.NOT_AUTHENTICATED, State.AUTHENTICATING):
            self.set_state("before_login")

    async def send_untagged(
        self, response: Response | Frame, literals: Sequence[AsyncIterable[bytes]]
    ) -> None:
        core = self.core
        assert core is not None
        if isinstance(response, Frame):
            core.send(Untagged(frame=response))
        else:
            core.send(Untagged(response=response))
        for literal in literals:
            self.transferring()
            async for chunk in literal:
                if chunk:
                    core.send(LiteralData(data=chunk))
                    self._flush()
                    if not await self.drain():
                        raise ConnectionError("the client is gone")
        self._flush()
        if not await self.drain():
            raise ConnectionError("the client is gone")

    # --- the session -----------------------------------------------------------------

    async def serve(self) -> None:
        """The session loop; the handler's ``on_close`` at the end."""
        session = self.session
        assert session is not None
        log.debug("IMAP session with %s started", session.peer)
        try:
            await self._serve()
        finally:
            if self._user is not None:
                self._server._left(self._user)
            try:
                await self._server.handler.on_close(session)
            except Exception:
                log.exception("IMAP handler on_close failed")
            log.debug("IMAP session with %s ended", session.peer)

    async def _serve(self) -> None:
        core = self.core
        session = self.session
        assert core is not None and session is not None
        handler = self._server.handler
        greeting = await self._ask(handler.on_connect(session), Greeting())
        try:
            core.send(greeting)
        except LocalProtocolError:
            log.exception("IMAP handler gave an invalid greeting: %r", greeting)
            core.send(Greeting())
        if greeting.kind == "PREAUTH":
            session.identity = greeting.identity
            if not await self._logged_in(greeting.identity or "", "PREAUTH"):
                return
        while True:
            try:
                event = core.next_event()
            except RemoteProtocolError:
                self._flush()
                return
            if event is NEED_DATA:
                self._track_state()
                out = core.data_to_send()
                if out:
                    self.write(out)
                    self.answered()
                if not await self.drain():
                    return
                data = await self.read_or_wake()
                if data is WOKEN:
                    await self._ask(handler.on_wake(session), None)
                    core.refresh()
                    continue
                if data is None:
                    if self.stopping == "timeout":
                        core.shutdown("Autologout; idle for too long")
                    elif self.stopping in ("shutdown", "drain"):
                        core.shutdown("Server shutting down")
                    self._flush()
                    return
                assert isinstance(data, bytes)
                core.receive_data(data)
                continue
            if event is PAUSED:  # pragma: no cover - every decision is answered inline
                raise RuntimeError("the IMAP core waits for a decision nobody made")
            if not await self._event(event):
                return

    async def _event(self, event: object) -> bool:
        """Answer one event; False when the session must end."""
        core = self.core
        session = self.session
        assert core is not None and session is not None
        handler = self._server.handler
        if isinstance(event, CommandReceived):
            return await self._command(event.command)
        if isinstance(event, sasl.NeedCredentials):
            answer = await self._ask(handler.on_credentials(session, event), sasl.NoSuchUser())
            try:
                core.send(answer)
            except LocalProtocolError:
                log.exception("IMAP handler gave an invalid credentials answer: %r", answer)
                core.send(sasl.NoSuchUser())
        elif isinstance(event, Authenticated):
            session.identity = event.identity
            session.mechanism = event.mechanism
            log.info("%s logged in as %s (%s)", session.peer, event.identity, event.mechanism)
            return await self._logged_in(event.identity, event.mechanism)
        elif isinstance(event, AuthenticationFailed):
            log.info("%s failed to log in (%s): %s", session.peer, event.mechanism, event.reason)
            if await self.login_failed():
                core.shutdown("Too many authentication failures")
                self._flush()
                return False
        elif isinstance(event, AppendRequested):
            decision = await self._ask(handler.on_append_requested(session, event), Continue())
            try:
                core.send(decision)
            except LocalProtocolError:
                log.exception("IMAP handler gave an invalid APPEND answer: %r", decision)
                core.send(Continue())
        elif isinstance(event, AppendStart):
            self.transferring()
            await self._ask(handler.on_append_start(session, event), None)
        elif isinstance(event, AppendChunk):
            await self._ask(handler.on_append_chunk(session, event), None)
        elif isinstance(event, AppendEnd):
            await self._ask(handler.on_append_end(session, event), None)
        elif isinstance(event, IdleStarted):
            self._flush()
            self.answered()
            await self._ask(handler.on_idle(session, True), None)
        elif isinstance(event, IdleEnded):
            await self._ask(handler.on_idle(session, False), None)
        elif isinstance(event, StartTLS):
            return await self._start_tls()
        elif isinstance(event, CompressionStarted):
            self._flush()  # the OK leaves uncompressed (RFC 4978 §3)
            self.install_codec(DeflateCodec())
        elif isinstance(event, ConnectionClosed):
            self._flush()
            return False
        elif isinstance(event, CommandRejected):
            log.debug("%s: rejected: %r", session.peer, event.response)
        return True

    async def _logged_in(self, identity: str, mechanism: str) -> bool:
        core = self.core
        session = self.session
        assert core is not None and session is not None
        if not self._server._joined(identity):
            log.info("%s: too many sessions for %s", session.peer, identity)
            core.shutdown("Too many sessions for this user")
            self._flush()
            return False
        self._user = identity
        self.set_state("after_login")
        await self._ask(self._server.handler.on_login(session), None)
        return True

    async def _command(self, command: Command) -> bool:
        core = self.core
        session = self.session
        assert core is not None and session is not None
        paused = self.pause_clock()
        try:
            decision = await self._server.handler.on_command(session, command)
        except ConnectionError:
            return False
        except Exception:
            log.exception("IMAP handler failed on %r", command)
            decision = _SERVERBUG
        finally:
            if paused:
                self.resume_clock()
        try:
            core.send(decision)
        except LocalProtocolError:
            log.exception("IMAP handler gave an invalid answer: %r", decision)
            try:
                core.send(_SERVERBUG)
            except LocalProtocolError:  # a literal cut short: the session cannot go on
                return False
        return True

    async def _start_tls(self) -> bool:
        core = self.core
        session = self.session
        context = self._server.ssl_context
        assert core is not None and session is not None and context is not None
        self._flush()
        self.answered()
        if not await self.start_tls(context):
            return False
        core.tls_started()
        session.tls = True
        return True


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
        if implicit_tls and ssl_context is None:
            raise ValueError("implicit_tls needs an ssl_context")
        if limits is None:
            limits = ListenerLimits(idle_timeout=IDLE_TIMEOUT, command_timeout=IDLE_TIMEOUT)
        limits = server_limits(limits, None, max_connections)
        config = config if config is not None else ServerConfig()
        if ssl_context is None and (config.tls_available or config.tls_active):
            raise ValueError("config offers TLS: pass an ssl_context")
        if ssl_context is not None:
            if implicit_tls:
                config = dataclasses.replace(config, tls_active=True, tls_available=False)
            else:
                config = dataclasses.replace(config, tls_available=True, tls_active=False)
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
            lambda listener, loop: _Connection(self, listener, loop),
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
