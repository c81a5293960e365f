"""An asyncio SMTP and LMTP server: a thin adapter around
:class:`mailagents.smtp.ServerConnection`.

The adapter moves bytes, enforces the time-out and the connection limit, applies
back-pressure and upgrades to TLS when the core says STARTTLS was accepted. Every
protocol rule (command order, pipelining, dot-stuffing, limits, replies) lives in the
core; the application decides policy in an :class:`SMTPHandler` subclass::

    class Handler(SMTPHandler):
        async def on_rcpt(self, session, event):
            if event.path.mailbox and event.path.mailbox.domain == "example.test":
                return Accept()
            return Reject(reply=Reply(code=550, enhanced="5.1.1", lines=("No such user",)))

        async def on_message(self, session, envelope, message):
            await store(envelope, message)
            return Accept()

    async with await serve_smtp(Handler(), port=2525) as server:
        await asyncio.Event().wait()
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import ssl
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from mailagents import sasl
from mailagents.aio._listener import (
    AuthThrottle,
    Listener,
    ListenerLimits,
    Refusal,
    StreamSession,
)
from mailagents.smtp import (
    NEED_DATA,
    Accept,
    Authenticated,
    AuthenticationFailed,
    ConnectionClosed,
    DataChunk,
    Decision,
    Envelope,
    Hello,
    LMTPReplies,
    LocalProtocolError,
    MailFrom,
    MessageComplete,
    MessageRejected,
    Quit,
    RcptTo,
    Reject,
    RemoteProtocolError,
    Reply,
    Reset,
    ServerConfig,
    ServerConnection,
    StartTLS,
    State,
)

__all__ = ["SMTPHandler", "SMTPServer", "Session", "serve_smtp"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# Refusal greetings by reason (the core strips the enhanced code from a greeting, as
# RFC 2034 §4 says, and sends the rest).
_REFUSALS: dict[Refusal, Reply] = {
    "connections": Reply(code=421, enhanced="4.3.2",
                         lines=("Too many connections, try again later",)),
    "address": Reply(code=421, enhanced="4.7.0",
                     lines=("Too many connections from your address, try again later",)),
    "shutdown": Reply(code=421, enhanced="4.3.2", lines=("Service shutting down",)),
}
# No transaction in progress: a graceful shutdown may end the session here.
_BOUNDARY_STATES = frozenset({State.CONNECTED, State.READY, State.REFUSED, State.CLOSED})

_LOCAL_ERROR = Reply(code=451, enhanced="4.3.0", lines=("Local error in processing",))
_REJECT_LOCAL = Reject(reply=_LOCAL_ERROR)
_AUTH_ERROR = Reply(code=454, enhanced="4.7.0", lines=("Temporary authentication failure",))
_REJECT_AUTH = Reject(reply=_AUTH_ERROR)


@dataclass(slots=True, kw_only=True, eq=False)
class Session:
    """What the server knows about one client connection, passed to every handler call.

    The adapter keeps ``tls``, ``identity`` and ``helo`` up to date; ``message`` and
    ``data`` belong to the handler.
    """

    peer: tuple[Any, ...]
    """The client's socket address: ``(host, port)`` for IPv4, ``(host, port, flowinfo,
    scope_id)`` for IPv6."""
    tls: bool = False
    """The session runs over TLS (implicit TLS, or after STARTTLS)."""
    identity: str | None = None
    """The authorised identity after a successful AUTH, else ``None``."""
    helo: str | None = None
    """The domain the client gave with its accepted EHLO, HELO or LHLO."""
    message: bytearray = field(default_factory=bytearray)
    """The content of the message being received, collected by the default
    :meth:`SMTPHandler.on_data_chunk` (bounded by the core's ``max_message_size``)."""
    data: dict[str, Any] = field(default_factory=dict)
    """Free for the handler's own per-session state."""


class SMTPHandler:
    """The application's policy: subclass it and override the calls you need.

    Every method is a coroutine called by the server for one session. The defaults
    accept every client, sender, recipient and message, and know no user. An exception
    raised by a decision method is logged and answered with a temporary failure
    (451 4.3.0, or 454 4.7.0 for :meth:`on_credentials`).
    """

    async def on_hello(self, session: Session, event: Hello) -> Accept | Reject:
        """EHLO, HELO or LHLO: accept (the core builds the reply) or reject."""
        return Accept()

    async def on_mail(self, session: Session, event: MailFrom) -> Accept | Reject:
        """MAIL FROM: accept or reject the reverse-path."""
        return Accept()

    async def on_rcpt(self, session: Session, event: RcptTo) -> Accept | Reject:
        """RCPT TO: accept or reject one recipient."""
        return Accept()

    async def on_data_chunk(self, session: Session, data: bytes) -> None:
        """A piece of message content (dot-unstuffed for DATA, raw for BDAT).

        The default appends it to :attr:`Session.message`; override it to stream the
        message elsewhere (``message`` then stays empty)."""
        session.message += data

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        """The message arrived intact: accept it only once it is safe (RFC 5321 §6.1).

        ``message`` is what :meth:`on_data_chunk` collected in :attr:`Session.message`.
        In LMTP, :class:`~mailagents.smtp.LMTPReplies` gives one reply per recipient in
        ``envelope.recipients``; :class:`~mailagents.smtp.Accept` or
        :class:`~mailagents.smtp.Reject` answers for all of them."""
        return Accept()

    async def on_credentials(
        self, session: Session, request: sasl.NeedCredentials
    ) -> sasl.Answer:
        """AUTH: look the user up. Answer :class:`~mailagents.sasl.PasswordVerdict` for a
        plaintext mechanism (PLAIN, LOGIN), :class:`~mailagents.sasl.ScramSecrets` for
        SCRAM, :class:`~mailagents.sasl.TokenVerdict` for a
        :class:`~mailagents.sasl.NeedTokenCheck` (OAUTHBEARER),
        :class:`~mailagents.sasl.LegacySecret` for CRAM-MD5, or
        :class:`~mailagents.sasl.NoSuchUser` (the default).
        :meth:`mailagents.userdb.UserStore.answer_async` answers all but tokens."""
        return sasl.NoSuchUser()

    async def on_reset(self, session: Session) -> None:
        """The current transaction was abandoned (RSET, a new EHLO, STARTTLS, or the core
        rejected the message): throw away what :meth:`on_data_chunk` kept. The default
        collector's :attr:`Session.message` is already cleared."""


class _Connection(StreamSession):
    """One SMTP client connection: the session loop over the protocol-neutral
    :class:`~mailagents.aio._listener.StreamSession` (read, feed the core, answer events
    through the handler, write)."""

    def __init__(
        self,
        server: SMTPServer,
        loop: asyncio.AbstractEventLoop,
        listener: Listener | None = None,
    ) -> None:
        super().__init__(listener if listener is not None else server._listener, loop)
        self._server = server
        self._core: ServerConnection | None = None
        self.session: Session | None = None
        self._chunk_failed = False

    # --- hooks -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        config = self._server.config
        peer = transport.get_extra_info("peername")
        self.session = Session(peer=tuple(peer) if peer else (), tls=config.tls_active)
        self._core = ServerConnection(config)
        super().connection_made(transport)

    def refuse(self, why: Refusal) -> None:
        # The core writes the refusal greeting (RFC 5321 §3.1), then the listener closes.
        self._core = None
        self.session = None
        hostname = self._server.config.hostname
        reply = _REFUSALS[why]
        greeting = Reply(code=421, enhanced=reply.enhanced, lines=(f"{hostname} {reply.text}",))
        self.write(ServerConnection(self._server.config, greeting=greeting).data_to_send())

    def failed(self) -> None:
        if self._core is not None:
            self._core.shutdown("Local error, closing connection", enhanced="4.3.0")
            self.write(self._core.data_to_send())

    def at_boundary(self) -> bool:
        core = self._core
        return core is None or core.state in _BOUNDARY_STATES

    async def _ask(self, call: Awaitable[_T], fallback: _T) -> _T:
        """A handler call, with the client's clock stopped; its exception is logged and
        answered with ``fallback``."""
        paused = self.pause_clock()
        try:
            return await call
        except Exception:
            log.exception("SMTP handler %s failed", getattr(call, "__qualname__", call))
            return fallback
        finally:
            if paused:
                self.resume_clock()

    # --- the session -----------------------------------------------------------------

    async def serve(self) -> None:
        """The session loop."""
        session = self.session
        assert session is not None
        try:
            await self._serve()
        finally:
            session.message.clear()
            log.debug("SMTP session with %s ended", session.peer)

    async def _serve(self) -> None:
        core = self._core
        session = self.session
        assert core is not None and session is not None
        handler = self._server.handler
        default_chunks = self._server._default_chunks
        log.debug("SMTP session with %s started", session.peer)
        while True:
            try:
                event = core.next_event()
            except RemoteProtocolError:
                self.write(core.data_to_send())
                return
            if event is NEED_DATA:
                out = core.data_to_send()
                if out:
                    self.write(out)
                    self.answered()
                if self._writing_paused and not await self.drain():
                    return
                data = await self.read()
                if data is None:
                    if self.stopping == "timeout":
                        core.timed_out()
                    elif self.stopping in ("shutdown", "drain"):
                        core.shutdown("Service shutting down, closing connection")
                    self.write(core.data_to_send())
                    return
                core.receive_data(data)
                continue
            if isinstance(event, DataChunk):
                self.transferring()
                if default_chunks:
                    session.message += event.data
                elif not self._chunk_failed:
                    try:
                        await self.busy(handler.on_data_chunk(session, event.data))
                    except Exception:
                        log.exception("SMTP handler on_data_chunk failed")
                        self._chunk_failed = True
            elif isinstance(event, RcptTo):
                self._decide(await self._ask(handler.on_rcpt(session, event), _REJECT_LOCAL))
            elif isinstance(event, MailFrom):
                self._decide(await self._ask(handler.on_mail(session, event), _REJECT_LOCAL))
            elif isinstance(event, MessageComplete):
                message = bytes(session.message)
                session.message.clear()
                if self._chunk_failed:
                    self._chunk_failed = False
                    core.send(_REJECT_LOCAL)
                else:
                    self._decide(
                        await self._ask(
                            handler.on_message(session, event.envelope, message), _REJECT_LOCAL
                        )
                    )
            elif isinstance(event, Hello):
                self._decide(await self._ask(handler.on_hello(session, event), _REJECT_LOCAL))
                session.helo = core.helo_domain
            elif isinstance(event, Reset | MessageRejected):
                session.message.clear()
                self._chunk_failed = False
                await self._ask(handler.on_reset(session), None)
            elif isinstance(event, sasl.NeedCredentials):
                answer: sasl.Answer | Reject = await self._ask(
                    handler.on_credentials(session, event), _REJECT_AUTH
                )
                self._decide(answer, _REJECT_AUTH)
            elif isinstance(event, Authenticated):
                session.identity = event.identity
                log.info("%s authenticated as %s (%s)", session.peer, event.identity,
                         event.mechanism)
            elif isinstance(event, AuthenticationFailed):
                log.info("%s failed to authenticate (%s): %s", session.peer, event.mechanism,
                         event.reply.code)
                # A temporary failure (4xx) is ours, not a wrong password: not counted.
                # The core's reply waits in its buffer until the delay has passed.
                if event.reply.code >= 500 and await self.login_failed():
                    core.shutdown("Too many authentication failures, closing connection",
                                  enhanced="4.7.0")
                    self.write(core.data_to_send())
                    return
            elif isinstance(event, StartTLS):
                if not await self._start_tls():
                    return
            elif isinstance(event, Quit):
                self.write(core.data_to_send())
                return
            elif isinstance(event, ConnectionClosed):
                return
            # CommandRejected: the core has queued its reply; nothing to decide.

    def _decide(self, decision: Decision, fallback: Reject = _REJECT_LOCAL) -> None:
        """Hand the handler's answer to the core; an answer the core refuses (a
        :class:`~mailagents.smtp.LocalProtocolError`: wrong type, a 5xx in Accept) is
        logged and replaced with a temporary failure."""
        core = self._core
        assert core is not None
        try:
            core.send(decision)
        except LocalProtocolError:
            log.exception("SMTP handler gave an invalid answer: %r", decision)
            core.send(fallback)

    async def _start_tls(self) -> bool:
        """Send the 220, upgrade the transport, tell the core. False if it failed."""
        core = self._core
        session = self.session
        context = self._server.ssl_context
        assert core is not None and session is not None and context is not None
        self.write(core.data_to_send())
        self.answered()
        # Whatever followed STARTTLS in the clear is never acted on (RFC 3207 §4); the
        # core dropped what it had, start_tls drops what it was not fed yet.
        if not await self.start_tls(context):
            return False
        core.tls_started()
        session.tls = True
        session.helo = None
        session.identity = None
        session.message.clear()
        return True


class SMTPServer:
    """An SMTP (or LMTP, with ``config.lmtp``) server on asyncio, one
    :class:`~mailagents.smtp.ServerConnection` per client, on the protocol-neutral
    listener of :mod:`mailagents.aio` (limits and deadlines in :class:`ListenerLimits`).

    ``ssl_context`` enables TLS: STARTTLS is offered (``starttls`` is set in the config
    handed to the core), or with ``implicit_tls`` every connection starts with a TLS
    handshake (RFC 8314, port 465).

    ``limits`` sets connection limits, deadlines, back-pressure, the failed-login
    throttle and the shutdown grace period (see :class:`ListenerLimits`). Every reply
    they cause comes from the core: a client past a deadline gets 421 4.4.2; beyond
    ``max_connections`` (or ``max_connections_per_address``) a new client gets a 421
    greeting and is disconnected; after too many failed logins 421 4.7.0; on shutdown
    421 4.3.2. ``command_timeout`` and ``max_connections``, when given, override the
    limits' ``idle_timeout`` and ``command_timeout`` (RFC 5321 §4.5.3.2.7 asks for at
    least five minutes) and ``max_connections``. ``throttle`` shares one
    :class:`AuthThrottle` (failed logins per source address) between servers, such as
    the submission ports 587 and 465 of one MSA; by default each server has its own.

    Use it as an async context manager (started on 127.0.0.1 with an ephemeral port if
    :meth:`start` was not called) or call :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        handler: SMTPHandler,
        config: ServerConfig | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        command_timeout: float | None = None,
        max_connections: int | None = None,
        limits: ListenerLimits | None = None,
        throttle: AuthThrottle | None = None,
    ) -> None:
        if implicit_tls and ssl_context is None:
            raise ValueError("implicit_tls needs an ssl_context")
        limits = limits if limits is not None else ListenerLimits()
        if command_timeout is not None:
            limits = dataclasses.replace(
                limits,
                idle_timeout=command_timeout,
                command_timeout=command_timeout,
                tls_handshake_timeout=min(command_timeout, limits.tls_handshake_timeout),
            )
        if max_connections is not None:
            limits = dataclasses.replace(limits, max_connections=max_connections)
        config = config if config is not None else ServerConfig()
        if ssl_context is None and (config.starttls or config.tls_active):
            raise ValueError("config offers TLS: pass an ssl_context")
        if ssl_context is not None:
            if implicit_tls:
                config = dataclasses.replace(config, tls_active=True, starttls=False)
            else:
                config = dataclasses.replace(config, starttls=True)
        self.handler = handler
        """The :class:`SMTPHandler` that decides for every session."""
        self.config = config
        """The :class:`~mailagents.smtp.ServerConfig` each session's core gets."""
        self.ssl_context = ssl_context
        """The TLS context for STARTTLS or implicit TLS, or ``None``."""
        self.implicit_tls = implicit_tls
        """Connections start with a TLS handshake."""
        self.limits = limits
        """The :class:`ListenerLimits` of the server and its sessions."""
        self._listener = Listener(
            lambda listener, loop: _Connection(self, loop, listener),
            limits,
            ssl_context=ssl_context if implicit_tls else None,
            throttle=throttle,
            name="SMTP server",
        )
        self._default_chunks = type(handler).on_data_chunk is SMTPHandler.on_data_chunk

    @property
    def command_timeout(self) -> float:
        """Seconds a client has to complete each command (``limits.command_timeout``)."""
        return self.limits.command_timeout

    @property
    def max_connections(self) -> int:
        """Concurrent sessions served; more are refused with 421
        (``limits.max_connections``)."""
        return self.limits.max_connections

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

    async def close(self, timeout: float | None = None) -> None:
        """Stop listening and end the sessions gracefully: each gets 421 4.3.2 at its
        next transaction boundary (at once if idle); after ``timeout`` seconds (default
        ``limits.shutdown_grace``) the rest get it as soon as they wait for the client,
        and those still inside a handler call ``limits.shutdown_timeout`` seconds later
        are cancelled."""
        await self._listener.close(timeout)

    async def __aenter__(self) -> SMTPServer:
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


async def serve_smtp(
    handler: SMTPHandler,
    config: ServerConfig | None = None,
    *,
    host: str | Sequence[str] = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    command_timeout: float | None = None,
    max_connections: int | None = None,
    limits: ListenerLimits | None = None,
    throttle: AuthThrottle | None = None,
) -> SMTPServer:
    """Create an :class:`SMTPServer`, start it on ``host`` and ``port``, and return it.

    The other arguments are those of :class:`SMTPServer`."""
    server = SMTPServer(
        handler,
        config,
        ssl_context=ssl_context,
        implicit_tls=implicit_tls,
        command_timeout=command_timeout,
        max_connections=max_connections,
        limits=limits,
        throttle=throttle,
    )
    await server.start(host, port)
    return server
