"""An asyncio POP3 server: a thin adapter around :class:`mailagents.pop3.ServerConnection`.

The adapter moves bytes, enforces the deadlines, the connection limits and the
failed-login throttle, applies back-pressure, and upgrades to TLS when the core says
STLS was accepted. Every protocol rule (command order, message numbers, dot-stuffing,
TOP, responses) lives in the core; the application decides in a :class:`POP3Handler`
subclass where the users' maildrops are::

    class Handler(POP3Handler):
        async def on_credentials(self, session, request):
            return await users.answer_async(request)

        async def on_open(self, session, event):
            return Maildrop(messages=(MaildropEntry(size=len(MESSAGE), uid="m1"),))

        async def on_retrieve(self, session, event):
            async def chunks():
                yield MESSAGE
            return chunks()

    async with await serve_pop3(Handler(), port=1110, ssl_context=context) as server:
        await asyncio.Event().wait()

:class:`mailagents.agents.MAA` is this server over the users' stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import ssl
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mailagents import sasl
from mailagents.aio._limits import ListenerLimits
from mailagents.aio._listener import Listener, Refusal
from mailagents.aio._server import ListeningServer, server_limits, tls_config
from mailagents.aio._session import StreamSession
from mailagents.aio._throttle import AuthThrottle
from mailagents.pop3 import (
    NEED_DATA,
    PAUSED,
    Accept,
    Authenticated,
    AuthenticationFailed,
    CommandRejected,
    ConnectionClosed,
    LocalProtocolError,
    Maildrop,
    MessageChunk,
    MessageEnd,
    OpenMaildrop,
    Quit,
    Reject,
    RemoteProtocolError,
    Response,
    Retrieve,
    ServerConfig,
    ServerConnection,
    StartTLS,
    Update,
)

__all__ = ["POP3Handler", "POP3Server", "POP3Session", "serve_pop3"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

IDLE_TIMEOUT = 600.0
"""The default inactivity autologout: RFC 1939 §3 asks for at least 10 minutes."""

# Refusal greetings by reason (the core makes them -ERR [SYS/TEMP] greetings), then the
# connection closes.
_REFUSALS: dict[Refusal, str] = {
    "connections": "Too many connections, try again later",
    "address": "Too many connections from your address, try again later",
    "shutdown": "Service shutting down",
}

_REJECT_LOCAL = Reject(
    reply=Response(ok=False, code="SYS/TEMP", text="Local error in processing")
)
_REJECT_AUTH = Reject(
    reply=Response(ok=False, code="SYS/TEMP", text="Temporary authentication failure")
)
_NO_MESSAGE = Reject(reply=Response(ok=False, text="No such message"))
# Octets of a RETR/TOP response held back to be written at once (see _retrieve).
_COALESCE = 64 * 1024


@dataclass(slots=True, kw_only=True, eq=False)
class POP3Session:
    """What the server knows about one client connection, passed to every handler call.

    The adapter keeps ``tls``, ``identity`` and ``mechanism`` up to date; ``data``
    belongs to the handler (a maildrop lock, the store)."""

    peer: tuple[Any, ...]
    """The client's socket address: ``(host, port)`` for IPv4, ``(host, port, flowinfo,
    scope_id)`` for IPv6, ``("unix", pid, uid)`` (or ``("unix",)`` when the peer's
    credentials are unknown) for a client on a Unix socket."""
    tls: bool = False
    """The session runs over TLS (implicit TLS, or after STLS)."""
    identity: str | None = None
    """The authorised identity once the maildrop is open, else ``None``."""
    mechanism: str | None = None
    """How the client logged in: ``"USER"``, ``"APOP"`` or a SASL mechanism name."""
    data: dict[str, Any] = field(default_factory=dict)
    """Free for the handler's own per-session state."""


class POP3Handler:
    """The application's maildrops: subclass it and override the calls you need.

    Every method is a coroutine called by the server for one session, with the
    client's clock stopped. The defaults know no user and serve empty maildrops. An
    exception raised by a decision method is logged and answered ``-ERR [SYS/TEMP]``
    (RFC 3206); one raised while a message streams closes the connection before the
    terminating dot, so that the client never takes a truncated message as whole.
    """

    async def on_credentials(
        self, session: POP3Session, request: sasl.NeedCredentials
    ) -> sasl.Answer | Reject:
        """USER/PASS, APOP or AUTH: look the user up.

        USER/PASS asks as PLAIN does (``request.password`` is set): answer a
        :class:`~mailagents.sasl.PasswordVerdict`. SCRAM wants
        :class:`~mailagents.sasl.ScramSecrets`; APOP and CRAM-MD5 a
        :class:`~mailagents.sasl.LegacySecret`. :class:`~mailagents.sasl.NoSuchUser`
        (the default) fails the login; a :class:`~mailagents.pop3.Reject` is a
        temporary failure. :meth:`mailagents.userdb.UserStore.answer_async` answers all
        of these."""
        return sasl.NoSuchUser()

    async def on_open(self, session: POP3Session, event: OpenMaildrop) -> Maildrop | Reject:
        """The credentials were right: lock the maildrop of ``event.identity`` and list
        its messages (sizes with CRLF line ends, unique-ids stable across sessions), or
        refuse with ``-ERR [IN-USE]`` (RFC 2449 §8.1.1) when another session holds it,
        ``[LOGIN-DELAY]`` or ``[SYS/TEMP]``. The default opens an empty maildrop."""
        return Maildrop(messages=())

    async def on_retrieve(
        self, session: POP3Session, event: Retrieve
    ) -> AsyncIterator[bytes] | Reject:
        """RETR or TOP of ``event.number``: return an async iterator of the message's
        bytes (any split; CRLF or LF line ends; not dot-stuffed: the core does it), or a
        :class:`~mailagents.pop3.Reject` (the message vanished). The server stops
        iterating (``aclose``) once TOP has all it needs or the client is gone; stream
        from the disk rather than holding the message whole."""
        return _NO_MESSAGE

    async def on_update(self, session: POP3Session, event: Update) -> Accept | Reject:
        """QUIT in TRANSACTION (RFC 1939 §6): remove ``event.deleted``; answer
        :class:`~mailagents.pop3.Accept`, or a :class:`~mailagents.pop3.Reject` when some
        could not be removed. Not called when the client leaves without QUIT."""
        return Accept()

    async def on_close(self, session: POP3Session) -> None:
        """The session ended, however it ended (QUIT, time-out, dropped connection,
        shutdown, error): release the maildrop. Always called once per served session."""


class _Connection(StreamSession):
    """One POP3 client connection: the session loop over the protocol-neutral
    :class:`~mailagents.aio._session.StreamSession`."""

    def __init__(self, server: POP3Server, listener: Listener, loop: asyncio.AbstractEventLoop):
        super().__init__(listener, loop)
        self._server = server
        self._core: ServerConnection | None = None
        self.session: POP3Session | None = None

    # --- hooks -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._server
        config = server.config
        peer = transport.get_extra_info("peername")
        self.session = POP3Session(peer=tuple(peer) if peer else (), tls=config.tls_active)
        challenge = None
        if config.allow_apop:
            # RFC 1939 §7: a timestamp unique to this greeting, "<process-ID.clock@host>";
            # a random part stands in for the clock (it must never repeat).
            challenge = f"<{os.getpid()}.{secrets.token_hex(8)}@{config.hostname}>"
        self._core = ServerConnection(config, challenge=challenge)
        super().connection_made(transport)

    def begin(self) -> None:
        # The listener's view of the peer (a Unix-socket client is ("unix", pid, uid),
        # not its raw peername).
        if self.session is not None:
            self.session.peer = self.peer

    def refuse(self, why: Refusal) -> None:
        # The core writes the refusal greeting (-ERR [SYS/TEMP], RFC 3206 §4), then the
        # listener closes.
        self._core = None
        self.session = None
        core = ServerConnection(self._server.config)
        core.refuse(_REFUSALS[why])
        self.write(core.data_to_send())

    def failed(self) -> None:
        if self._core is not None:  # a session already over stays quiet
            self._core.shutdown("Local error, closing connection")
            self.write(self._core.data_to_send())

    def at_boundary(self) -> bool:
        core = self._core
        return core is None or core.at_boundary

    async def _ask(self, call: Awaitable[_T], fallback: _T) -> _T:
        """A handler call with the client's clock stopped; its exception is logged and
        answered with ``fallback``."""
        paused = self.pause_clock()
        try:
            return await call
        except Exception:
            log.exception("POP3 handler %s failed", getattr(call, "__qualname__", call))
            return fallback
        finally:
            if paused:
                self.resume_clock()

    def _decide(self, decision: Any, fallback: Reject = _REJECT_LOCAL) -> None:
        """Hand the handler's answer to the core; an answer it refuses (wrong type) is
        logged and replaced with ``-ERR [SYS/TEMP]``."""
        core = self._core
        assert core is not None
        try:
            core.send(decision)
        except LocalProtocolError:
            log.exception("POP3 handler gave an invalid answer: %r", decision)
            core.send(fallback)

    # --- the session -----------------------------------------------------------------

    async def serve(self) -> None:
        """The session loop; the handler's :meth:`POP3Handler.on_close` at the end."""
        session = self.session
        assert session is not None
        log.debug("POP3 session with %s started", session.peer)
        try:
            await self._serve()
        finally:
            try:
                await self._server.handler.on_close(session)
            except Exception:
                log.exception("POP3 handler on_close failed")
            log.debug("POP3 session with %s ended", session.peer)

    async def _serve(self) -> None:
        core = self._core
        session = self.session
        assert core is not None and session is not None
        handler = self._server.handler
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
                if not await self.drain():
                    return
                data = await self.read()
                if data is None:
                    if self.stopping == "timeout":
                        core.timed_out()  # RFC 1939 §3: no UPDATE, nothing deleted
                    elif self.stopping in ("shutdown", "drain"):
                        core.shutdown("Service shutting down, closing connection")
                    self.write(core.data_to_send())
                    return
                core.receive_data(data)
                continue
            if event is PAUSED:  # pragma: no cover - every decision is answered inline
                raise RuntimeError("the POP3 core waits for a decision nobody made")
            if isinstance(event, sasl.NeedCredentials):
                answer: sasl.Answer | Reject = await self._ask(
                    handler.on_credentials(session, event), _REJECT_AUTH
                )
                self._decide(answer, _REJECT_AUTH)
            elif isinstance(event, OpenMaildrop):
                self._decide(await self._ask(handler.on_open(session, event), _REJECT_LOCAL))
            elif isinstance(event, Authenticated):
                session.identity = event.identity
                session.mechanism = event.mechanism
                log.info("%s logged in as %s (%s)", session.peer, event.identity,
                         event.mechanism)
            elif isinstance(event, AuthenticationFailed):
                log.info("%s failed to log in (%s): %s", session.peer, event.mechanism,
                         event.reply.code)
                # A temporary failure is ours, not a wrong password: not counted. The
                # core's -ERR waits in its buffer until the delay has passed.
                if not event.temporary and await self.login_failed():
                    core.shutdown("Too many authentication failures, closing connection")
                    self.write(core.data_to_send())
                    return
            elif isinstance(event, Retrieve):
                if not await self._retrieve(event):
                    return
            elif isinstance(event, Update):
                self._decide(await self._ask(handler.on_update(session, event), _REJECT_LOCAL))
            elif isinstance(event, StartTLS):
                if not await self._start_tls():
                    return
            elif isinstance(event, Quit):
                self.write(core.data_to_send())
                return
            elif isinstance(event, ConnectionClosed):
                return
            elif isinstance(event, CommandRejected):
                log.debug("%s: %s rejected: %s", session.peer, event.command,
                          event.reply.text)

    def _gone(self) -> bool:
        transport = self.transport
        return self.stopping == "abort" or transport is None or transport.is_closing()

    async def _retrieve(self, event: Retrieve) -> bool:
        """Stream one message (RETR or TOP) from the handler to the client; False when
        the session must end (the client is gone, or the handler failed mid-stream)."""
        core = self._core
        session = self.session
        assert core is not None and session is not None
        answer = await self._ask(self._server.handler.on_retrieve(session, event),
                                 _REJECT_LOCAL)
        if isinstance(answer, Reject):
            self._decide(answer)
            return True
        if not hasattr(answer, "__aiter__"):
            log.error("POP3 handler on_retrieve gave no async iterator: %r", answer)
            core.send(_REJECT_LOCAL)
            return True
        core.send(Accept())
        # The message is the server's to send: the client's clock stands still, but a
        # client that stops reading still hits the send deadline in drain().
        paused = self.pause_clock()
        # What the core gave is held back until _COALESCE octets are there, so that a
        # small message leaves in one write (status, message, dot); a big one still
        # streams, a chunk at a time.
        held = [core.data_to_send()]
        size = len(held[0])
        try:
            async for chunk in answer:
                if self._gone() or not await self.drain():
                    log.info("%s left during RETR/TOP %d", session.peer, event.number)
                    return False
                core.send(MessageChunk(data=chunk))
                out = core.data_to_send()
                held.append(out)
                size += len(out)
                if size >= _COALESCE:
                    self.write(b"".join(held))
                    held.clear()
                    size = 0
                if not core.wants_more:
                    break  # TOP has its lines
            core.send(MessageEnd())
        except Exception:
            log.exception("POP3 handler's message %d failed while streaming", event.number)
            self.write(b"".join(held))  # what was stuffed, with no terminating dot:
            return False  # the client sees a broken transfer
        finally:
            closer = getattr(answer, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()
            if paused:
                self.resume_clock()
        held.append(core.data_to_send())
        self.write(b"".join(held))
        self.answered()
        return True

    async def _start_tls(self) -> bool:
        """Send the ``+OK``, upgrade the transport, tell the core. False if it failed."""
        core = self._core
        session = self.session
        context = self._server.ssl_context
        assert core is not None and session is not None and context is not None
        self.write(core.data_to_send())
        self.answered()
        # RFC 2595 §4: whatever followed STLS in the clear is never acted on; the core
        # dropped what it had, start_tls drops what it was not fed yet.
        if not await self.start_tls(context):
            return False
        core.tls_started()
        session.tls = True
        return True


class POP3Server(ListeningServer):
    """A POP3 server on asyncio, one :class:`~mailagents.pop3.ServerConnection` per
    client, on the protocol-neutral listener of :mod:`mailagents.aio` (limits and
    deadlines in :class:`~mailagents.aio.ListenerLimits`).

    ``ssl_context`` enables TLS: STLS is offered (RFC 2595), or with ``implicit_tls``
    every connection starts with a TLS handshake (RFC 8314, port 995). Without TLS,
    passwords are refused unless ``config.allow_plaintext_login``.

    ``idle_timeout`` is the inactivity autologout (default 600 seconds: RFC 1939 §3
    asks for at least 10 minutes); the client then gets the core's ``-ERR`` and the
    connection closes without the UPDATE state, so nothing is deleted. It overrides
    ``limits.idle_timeout`` and ``limits.command_timeout``; ``max_connections``
    overrides ``limits.max_connections``. Beyond a connection limit a new client gets
    ``-ERR [SYS/TEMP]`` instead of the greeting. Failed logins are answered after the
    throttle's growing delay and end the session after ``limits.max_auth_failures``
    (or too many from one address, see :class:`~mailagents.aio.AuthThrottle`, which
    ``throttle`` can share between servers). :meth:`close` lets sessions in the
    TRANSACTION state finish for the grace period, then ends them with
    ``-ERR [SYS/TEMP]``, without deleting anything.

    Use it as an async context manager (started on 127.0.0.1 with an ephemeral port if
    :meth:`start` was not called) or call :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        handler: POP3Handler,
        config: ServerConfig | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        idle_timeout: float | None = None,
        max_connections: int | None = None,
        limits: ListenerLimits | None = None,
        throttle: AuthThrottle | None = None,
    ) -> None:
        if limits is None:
            limits = ListenerLimits(idle_timeout=IDLE_TIMEOUT, command_timeout=IDLE_TIMEOUT)
        limits = server_limits(limits, idle_timeout, max_connections)
        config = tls_config(
            config if config is not None else ServerConfig(), ssl_context, implicit_tls
        )
        self.handler = handler
        """The :class:`POP3Handler` that decides for every session."""
        self.config = config
        """The :class:`~mailagents.pop3.ServerConfig` each session's core gets."""
        self.ssl_context = ssl_context
        """The TLS context for STLS or implicit TLS, or ``None``."""
        self.implicit_tls = implicit_tls
        """Connections start with a TLS handshake."""
        self.limits = limits
        """The :class:`~mailagents.aio.ListenerLimits` of the server and its sessions."""
        self._listen(
            lambda listener, loop: _Connection(self, listener, loop),
            ssl_context=ssl_context,
            implicit_tls=implicit_tls,
            throttle=throttle,
            name="POP3 server",
        )

    @property
    def idle_timeout(self) -> float:
        """Seconds of client inactivity before the autologout (``limits.idle_timeout``)."""
        return self.limits.idle_timeout

    # The lifecycle is ListeningServer's, bound here to be documented with the class.
    start = ListeningServer.start
    start_unix = ListeningServer.start_unix
    sockets = ListeningServer.sockets
    port = ListeningServer.port
    path = ListeningServer.path
    connections = ListeningServer.connections
    throttle = ListeningServer.throttle

    async def close(self, timeout: float | None = None) -> None:
        """Stop listening and end the sessions: those not logged in at once, those in
        TRANSACTION once they have been given ``timeout`` seconds (default
        ``limits.shutdown_grace``) to QUIT; each gets ``-ERR [SYS/TEMP]`` and nothing
        is deleted for it. Sessions still inside a handler call
        ``limits.shutdown_timeout`` seconds later are cancelled."""
        await self._listener.close(timeout)


async def serve_pop3(
    handler: POP3Handler,
    config: ServerConfig | None = None,
    *,
    host: str | Sequence[str] = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    idle_timeout: float | None = None,
    max_connections: int | None = None,
    limits: ListenerLimits | None = None,
    throttle: AuthThrottle | None = None,
) -> POP3Server:
    """Create a :class:`POP3Server`, start it on ``host`` and ``port``, and return it.

    The other arguments are those of :class:`POP3Server`."""
    server = POP3Server(
        handler,
        config,
        ssl_context=ssl_context,
        implicit_tls=implicit_tls,
        idle_timeout=idle_timeout,
        max_connections=max_connections,
        limits=limits,
        throttle=throttle,
    )
    await server.start(host, port)
    return server
