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
)

__all__ = ["SMTPHandler", "SMTPServer", "Session", "serve_smtp"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# Octets received but not yet fed to the core before reading from the socket pauses.
_HIGH_WATER = 256 * 1024

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


class _Connection(asyncio.Protocol):
    """One client connection: the transport callbacks and the task that runs the
    session (read, feed the core, answer events through the handler, write)."""

    def __init__(self, server: SMTPServer, loop: asyncio.AbstractEventLoop) -> None:
        self._server = server
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._core: ServerConnection | None = None
        self.session: Session | None = None
        self.task: asyncio.Task[None] | None = None
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._eof = False
        self._eof_fed = False
        self._lost = False
        self._reading_paused = False
        self._writing_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._stop: str | None = None  # "timeout" or "shutdown" once the session must end
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._chunk_failed = False

    # --- transport callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        server = self._server
        config = server.config
        if len(server._connections) >= server.max_connections:
            log.warning("connection limit %d reached: refusing %s", server.max_connections,
                        transport.get_extra_info("peername"))
            # The core writes the refusal greeting (RFC 5321 §3.1), then we close.
            refusal = ServerConnection(
                config,
                greeting=Reply(
                    code=421,
                    enhanced="4.3.2",
                    lines=(f"{config.hostname} Too many connections, try again later",),
                ),
            )
            transport.write(refusal.data_to_send())
            transport.close()
            self._lost = True
            return
        peer = transport.get_extra_info("peername")
        self.session = Session(peer=tuple(peer) if peer else (), tls=config.tls_active)
        self._core = ServerConnection(config)
        server._connections.add(self)
        self._deadline = self._loop.time() + server.command_timeout
        self._timer = self._loop.call_at(self._deadline, self._check_deadline)
        self.task = self._loop.create_task(self._run())

    def data_received(self, data: bytes) -> None:
        if self._lost or self._stop is not None:
            return
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered > _HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        # Keep a half-closed TCP connection open for our last replies; TLS cannot.
        return self.session is not None and not self.session.tls

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._eof = True
        self._wake()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake()

    # --- waiting ---------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _check_deadline(self) -> None:
        now = self._loop.time()
        timeout = self._server.command_timeout
        if self._waiter is None:
            # A handler call is running: the client is not the one being slow.
            self._timer = self._loop.call_at(now + timeout, self._check_deadline)
        elif now >= self._deadline:
            self._timer = None
            self.stop("timeout")
        else:
            self._timer = self._loop.call_at(self._deadline, self._check_deadline)

    def stop(self, why: str = "shutdown") -> None:
        """End the session as soon as it next waits for the client: ``"timeout"`` sends
        421 4.4.2, ``"shutdown"`` 421 4.3.2 (the core builds both replies)."""
        if self._stop is None:
            self._stop = why
            self._wake()

    def _hostname(self) -> str:
        return self._server.config.hostname

    async def _read(self) -> bytes | None:
        """The next bytes from the client, ``b""`` once at end of input, or ``None``
        when the session must end (time-out, server shutdown, connection lost)."""
        while True:
            if self._stop is not None:
                return None
            if self._buffer:
                buffer = self._buffer
                data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
                buffer.clear()
                self._buffered = 0
                if self._reading_paused:
                    self._reading_paused = False
                    assert self._transport is not None
                    self._transport.resume_reading()
                return data
            if self._eof:
                if self._eof_fed:
                    return None
                self._eof_fed = True
                return b""
            await self._wait()

    async def _drain(self) -> None:
        while self._writing_paused and not self._lost and self._stop is None:
            await self._wait()

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    # --- the session -----------------------------------------------------------------

    async def _run(self) -> None:
        assert self.session is not None
        try:
            await self._serve()
        except Exception:
            log.exception("SMTP session with %s failed", self.session.peer)
            if self._core is not None:
                self._core.shutdown("Local error, closing connection", enhanced="4.3.0")
                self._write(self._core.data_to_send())
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            transport = self._transport
            if transport is not None and not transport.is_closing():
                if self._writing_paused:
                    transport.abort()  # the client reads nothing: do not wait for it
                else:
                    transport.close()
            self.session.message.clear()
            self._buffer.clear()
            self._server._connections.discard(self)
            log.debug("SMTP session with %s ended", self.session.peer)

    async def _ask(self, call: Awaitable[_T], fallback: _T) -> _T:
        try:
            return await call
        except Exception:
            log.exception("SMTP handler %s failed", getattr(call, "__qualname__", call))
            return fallback

    async def _serve(self) -> None:
        core = self._core
        session = self.session
        assert core is not None and session is not None
        handler = self._server.handler
        default_chunks = self._server._default_chunks
        timeout = self._server.command_timeout
        loop = self._loop
        log.debug("SMTP session with %s started", session.peer)
        progressed = False
        while True:
            try:
                event = core.next_event()
            except RemoteProtocolError:
                self._write(core.data_to_send())
                return
            if event is NEED_DATA:
                self._write(core.data_to_send())
                if self._writing_paused:
                    await self._drain()
                if progressed:
                    progressed = False
                    self._deadline = loop.time() + timeout
                data = await self._read()
                if data is None:
                    if self._stop == "timeout":
                        core.timed_out()
                    elif self._stop is not None:
                        core.shutdown("Service shutting down, closing connection")
                    self._write(core.data_to_send())
                    return
                core.receive_data(data)
                continue
            progressed = True
            if isinstance(event, DataChunk):
                if default_chunks:
                    session.message += event.data
                elif not self._chunk_failed:
                    try:
                        await handler.on_data_chunk(session, event.data)
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
            elif isinstance(event, StartTLS):
                if not await self._start_tls():
                    return
            elif isinstance(event, Quit):
                self._write(core.data_to_send())
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
        transport = self._transport
        context = self._server.ssl_context
        assert core is not None and session is not None and transport is not None
        assert context is not None
        self._write(core.data_to_send())
        # Whatever followed STARTTLS in the clear is never acted on (RFC 3207 §4); the
        # core dropped what it had, this drops what it was not fed yet.
        self._buffer.clear()
        self._buffered = 0
        self._reading_paused = False  # start_tls pauses and resumes reading itself
        try:
            new_transport = await self._loop.start_tls(
                transport,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=min(self._server.command_timeout, 60.0),
            )
        except OSError as exc:  # ssl.SSLError, TimeoutError, ConnectionError
            log.info("TLS handshake with %s failed: %s", session.peer, exc)
            transport.abort()
            return False
        if new_transport is None or self._lost:
            return False
        self._transport = new_transport
        core.tls_started()
        session.tls = True
        session.helo = None
        session.identity = None
        session.message.clear()
        return True


class SMTPServer:
    """An SMTP (or LMTP, with ``config.lmtp``) server on asyncio, one
    :class:`~mailagents.smtp.ServerConnection` per client.

    ``ssl_context`` enables TLS: STARTTLS is offered (``starttls`` is set in the config
    handed to the core), or with ``implicit_tls`` every connection starts with a TLS
    handshake (RFC 8314, port 465). A client that completes no command within
    ``command_timeout`` seconds is sent 421 4.4.2 and disconnected (RFC 5321
    §4.5.3.2.7 asks for at least five minutes). Beyond ``max_connections`` concurrent
    sessions a new client gets a 421 greeting and is disconnected.

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
        command_timeout: float = 300.0,
        max_connections: int = 1000,
    ) -> None:
        if implicit_tls and ssl_context is None:
            raise ValueError("implicit_tls needs an ssl_context")
        if command_timeout <= 0:
            raise ValueError("command_timeout must be positive")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
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
        self.command_timeout = command_timeout
        """Seconds a client has to complete each command."""
        self.max_connections = max_connections
        """Concurrent sessions served; more are refused with 421."""
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._default_chunks = type(handler).on_data_chunk is SMTPHandler.on_data_chunk

    async def start(self, host: str | Sequence[str] = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host`` (one address or name, or several; IPv4 and IPv6) and
        ``port`` (``0``: an ephemeral port, see :attr:`port`)."""
        if self._server is not None:
            raise RuntimeError("the server is already started")
        loop = asyncio.get_running_loop()
        hosts = host if isinstance(host, str) else list(host)
        self._server = await loop.create_server(
            lambda: _Connection(self, loop),
            hosts,
            port,
            ssl=self.ssl_context if self.implicit_tls else None,
            ssl_handshake_timeout=min(self.command_timeout, 60.0) if self.implicit_tls else None,
            reuse_address=True,
        )
        for sock in self._server.sockets:
            log.info("SMTP server listening on %s", sock.getsockname())

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (empty before :meth:`start` and after :meth:`close`)."""
        if self._server is None:
            return ()
        return tuple(self._server.sockets)

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
        return len(self._connections)

    async def close(self, timeout: float = 10.0) -> None:
        """Stop listening, end every open session with 421 4.3.2 as soon as it is not
        inside a handler call, and wait for them (at most ``timeout`` seconds, after
        which the remaining sessions are cancelled)."""
        server = self._server
        if server is None:
            return
        self._server = None
        server.close()
        tasks = []
        for connection in list(self._connections):
            connection.stop("shutdown")
            if connection.task is not None:
                tasks.append(connection.task)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> SMTPServer:
        if self._server is None:
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
    command_timeout: float = 300.0,
    max_connections: int = 1000,
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
    )
    await server.start(host, port)
    return server
