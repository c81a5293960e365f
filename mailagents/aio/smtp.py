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
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar, cast

from mailagents import sasl
from mailagents.aio import _eager
from mailagents.aio._limits import ListenerLimits
from mailagents.aio._listener import Listener, Refusal
from mailagents.aio._server import ListeningServer, server_limits
from mailagents.aio._session import StreamSession
from mailagents.aio._throttle import AuthThrottle
from mailagents.smtp import (
    NEED_DATA,
    Accept,
    Authenticated,
    AuthenticationFailed,
    CommandRejected,
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

# Handler work is run from the transport callback when it can be (see _eager); without
# asyncio's task hooks every input goes through the task, as it always may. (Tests
# switch it off here.)
_INLINE = _eager.TASK_HOOKS

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# Refusal greetings by reason: the core makes each a 421 greeting (RFC 5321 §3.1; no
# enhanced code in a greeting, RFC 2034 §4), then the connection closes.
_REFUSALS: dict[Refusal, str] = {
    "connections": "Too many connections, try again later",
    "address": "Too many connections from your address, try again later",
    "shutdown": "Service shutting down",
}

_ACCEPT = Accept()
_LOCAL_ERROR = Reply(code=451, enhanced="4.3.0", lines=("Local error in processing",))
_REJECT_LOCAL = Reject(reply=_LOCAL_ERROR)
_AUTH_ERROR = Reply(code=454, enhanced="4.7.0", lines=("Temporary authentication failure",))
_REJECT_AUTH = Reject(reply=_AUTH_ERROR)


class _Marker:
    """What the session loop's step asks for besides a job (see ``_Connection``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_IDLE = _Marker("IDLE")  # the core needs more input
_END = _Marker("END")  # the session is over
_CHUNK_FAILED = _Marker("CHUNK_FAILED")  # on_data_chunk raised


@dataclass(frozen=True, slots=True)
class _Raise:
    """An exception from a step run in a transport callback, for the task to raise."""

    error: Exception


_Job: TypeAlias = "_Marker | _Raise | Coroutine[Any, Any, bool]"


def _ignore(result: object) -> None:
    """Nothing to do with a handler's result (``on_reset``)."""


@dataclass(slots=True, kw_only=True, eq=False)
class Session:
    """What the server knows about one client connection, passed to every handler call.

    The adapter keeps ``tls``, ``identity`` and ``helo`` up to date; ``message`` and
    ``data`` belong to the handler.
    """

    peer: tuple[Any, ...]
    """The client's socket address: ``(host, port)`` for IPv4, ``(host, port, flowinfo,
    scope_id)`` for IPv6, ``("unix", pid, uid)`` (or ``("unix",)`` when the peer's
    credentials are unknown) for a client on a Unix socket."""
    tls: bool = False
    """The session runs over TLS (implicit TLS, or after STARTTLS)."""
    tls_version: str | None = None
    """The TLS protocol version (``"TLSv1.3"``) when :attr:`tls` is set."""
    tls_cipher: str | None = None
    """The cipher suite (``"TLS_AES_256_GCM_SHA384"``) when :attr:`tls` is set."""
    tls_bits: int | None = None
    """The cipher's secret bits when :attr:`tls` is set."""
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
        """The current transaction was abandoned (RSET, a new EHLO, STARTTLS, the core
        rejected the message, or :meth:`on_data_chunk` raised): throw away what
        :meth:`on_data_chunk` kept. The default collector's :attr:`Session.message` is
        already cleared."""


class _Connection(StreamSession):
    """One SMTP client connection: the session loop over the protocol-neutral
    :class:`~mailagents.aio._session.StreamSession` (read, feed the core, answer events
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
        self._parked = False  # the task waits for input: input_arrived() runs _step()
        self._job: _Job | None = None  # what the task must do next, set by input_arrived()

    # --- hooks -----------------------------------------------------------------------

    def begin(self) -> None:
        server = self._server
        self.session = Session(peer=self.peer, tls=server._tls_active)
        if server._tls_active:
            self._note_tls(self.session)
        self._core = ServerConnection(server.config)

    def _note_tls(self, session: Session) -> None:
        """What TLS the session runs over (for ``Received:`` fields and logs)."""
        transport = self.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        cipher = ssl_object.cipher() if ssl_object is not None else None
        if cipher:
            session.tls_cipher, session.tls_version, session.tls_bits = cipher

    def refuse(self, why: Refusal) -> None:
        # The core writes the refusal greeting (RFC 5321 §3.1), then the listener closes.
        self._core = None
        self.session = None
        core = ServerConnection(self._server.config)
        core.refuse(_REFUSALS[why])
        self.write(core.data_to_send())

    def failed(self) -> None:
        if self._core is not None:
            self._core.shutdown("Local error, closing connection", enhanced="4.3.0")
            self.write(self._core.data_to_send())

    def at_boundary(self) -> bool:
        core = self._core
        return core is None or core.at_boundary

    # --- the session -----------------------------------------------------------------
    #
    # The session loop is one synchronous function, _step(): it feeds the core what
    # arrived, hands each of the core's events to its method (_ON, below the class),
    # and writes the replies, until the core needs more input (_IDLE), the session is
    # over (_END), or something must be awaited (a job: a coroutine the task awaits,
    # such as a handler call that did not complete at once, a login delay, a TLS
    # handshake, a client that does not read). A handler call is first run up to its
    # first suspension (_eager.start), so a handler that decides without waiting is
    # answered without an event-loop turn.
    #
    # The task runs _step() and awaits the jobs. While it waits for input it is
    # "parked", and input_arrived() (from data_received) runs _step() right there, in
    # the task's context and as the current task (_eager.run_as_task), without waking
    # the task: one batch of commands, one write. Only a job wakes the task.

    def input_arrived(self) -> None:
        if not self._parked or not _INLINE:
            self._wake()
            return
        task = self.task
        assert task is not None and self.context is not None
        job = _eager.run_as_task(self.loop, task, self.context, self._inline_step)
        if job is _eager.NOT_RUN:  # inside another task, or its context in use
            self._wake()  # let the task do it
        elif job is not _IDLE:
            self._job = cast(_Job, job)
            self._parked = False
            self._wake()

    def _inline_step(self) -> _Job:
        try:
            return self._step(True)
        except Exception as exc:  # the task raises it again, as if it had run _step()
            return _Raise(exc)

    async def serve(self) -> None:
        """The session loop."""
        session = self.session
        assert session is not None
        log.debug("SMTP session with %s started", session.peer)
        try:
            while True:
                job = self._job
                if job is None:
                    job = self._step()
                else:
                    self._job = None
                if job is _IDLE:
                    self._parked = True
                    try:
                        await self.wait_input()
                    finally:
                        self._parked = False
                elif job is _END:
                    return
                elif isinstance(job, _Raise):
                    raise job.error
                else:
                    assert not isinstance(job, _Marker)
                    self._job = None
                    if not await job:
                        return
        finally:
            job = self._job
            self._job = None
            if job is not None and not isinstance(job, _Marker | _Raise):
                job.close()
            session.message.clear()
            log.debug("SMTP session with %s ended", session.peer)

    def _step(self, parked: bool = False) -> _Job:
        """Run the session until it needs input, ends, or must await something.

        ``parked``: called for new input while the task was parked, so the core is
        known to be waiting for input with nothing to send (what its ``next_event()``
        said last): the input is fed at once."""
        core = self._core
        assert core is not None
        next_event = core.next_event
        if parked and not self._writing_paused:
            data = self.read_nowait()
            if type(data) is bytes:
                core.receive_data(data)
        while True:
            try:
                event = next_event()
            except RemoteProtocolError:
                self.write(core.data_to_send())
                return _END
            if event is NEED_DATA:
                out = core.data_to_send()
                if out:
                    self.write(out)
                    self.answered()
                if self._writing_paused:
                    return self._drain_job()
                data = self.read_nowait()
                if isinstance(data, bytes):
                    core.receive_data(data)
                    continue
                if data is None:
                    return self._input_ended()
                return _IDLE
            kind = type(event)
            job = (_ON.get(kind) or _method_for(kind))(self, event)
            if job is not None:
                return job

    def _input_ended(self) -> _Job:
        """No more input will be read: the core's last words, by why it ended."""
        core = self._core
        assert core is not None
        if self.stopping == "timeout":
            core.timed_out()
        elif self.stopping in ("shutdown", "drain"):
            core.shutdown("Service shutting down, closing connection")
        self.write(core.data_to_send())
        return _END

    # --- the core's events: one method each, found by the event's class in _ON ---------
    # (Each returns the job to await, or None to go on with the next event.)

    def _on_data_chunk(self, event: DataChunk) -> _Job | None:
        session = self.session
        assert session is not None
        self.transferring()
        server = self._server
        if server._default_chunks:
            session.message += event.data
        elif not self._chunk_failed:
            return self._call(server.handler.on_data_chunk(session, event.data),
                              _CHUNK_FAILED, self._chunk_done)
        return None

    def _on_rcpt(self, event: RcptTo) -> _Job | None:
        server = self._server
        if server._default_rcpt:
            self._decide(_ACCEPT)
            return None
        assert self.session is not None
        return self._call(server.handler.on_rcpt(self.session, event), _REJECT_LOCAL,
                          self._decide)

    def _on_mail(self, event: MailFrom) -> _Job | None:
        server = self._server
        if server._default_mail:
            self._decide(_ACCEPT)
            return None
        assert self.session is not None
        return self._call(server.handler.on_mail(self.session, event), _REJECT_LOCAL,
                          self._decide)

    def _on_message(self, event: MessageComplete) -> _Job | None:
        session = self.session
        assert session is not None and self._core is not None
        message = bytes(session.message)
        session.message.clear()
        if self._chunk_failed:  # the transaction is abandoned: on_reset() is told
            self._core.send(_REJECT_LOCAL)
            return self._on_reset(event)
        return self._call(self._server.handler.on_message(session, event.envelope, message),
                          _REJECT_LOCAL, self._decide)

    def _on_hello(self, event: Hello) -> _Job | None:
        server = self._server
        if server._default_hello:
            self._hello_done(_ACCEPT)
            return None
        assert self.session is not None
        return self._call(server.handler.on_hello(self.session, event), _REJECT_LOCAL,
                          self._hello_done)

    def _on_reset(self, event: Reset | MessageRejected | MessageComplete) -> _Job | None:
        session = self.session
        assert session is not None
        session.message.clear()
        self._chunk_failed = False
        server = self._server
        if server._default_reset:
            return None
        return self._call(server.handler.on_reset(session), None, _ignore)

    def _on_credentials(self, event: sasl.NeedCredentials) -> _Job | None:
        assert self.session is not None
        return self._call(self._server.handler.on_credentials(self.session, event),
                          _REJECT_AUTH, self._credentials_done)

    def _on_authenticated(self, event: Authenticated) -> None:
        session = self.session
        assert session is not None
        session.identity = event.identity
        log.info("%s authenticated as %s (%s)", session.peer, event.identity,
                 event.mechanism)

    def _on_authentication_failed(self, event: AuthenticationFailed) -> _Job | None:
        log.info("%s failed to authenticate (%s): %s", self.peer, event.mechanism,
                 event.reply.code)
        # A temporary failure is ours, not a wrong password: not counted.
        # The core's reply waits in its buffer until the delay has passed.
        if not event.temporary:
            return self._login_failed_job()
        return None

    def _on_start_tls(self, event: StartTLS) -> _Job:
        return self._start_tls()

    def _on_quit(self, event: Quit) -> _Job:
        assert self._core is not None
        self.write(self._core.data_to_send())
        return _END

    def _on_closed(self, event: ConnectionClosed) -> _Job:
        return _END

    def _on_other(self, event: object) -> None:
        """CommandRejected (the core has queued its reply), or an event with nothing
        to decide."""

    # --- handler calls ---------------------------------------------------------------

    def _call(
        self,
        call: Awaitable[_T],
        fallback: _T,
        then: Callable[[_T], None],
    ) -> _Job | None:
        """Run the handler coroutine ``call`` as far as it goes without waiting and
        hand its result to ``then``; if it must wait, return the job that finishes it
        (with the client's clock stopped). An exception is logged and answered with
        ``fallback``. An awaitable that is not a coroutine is awaited by the job."""
        try:
            result = _eager.start(call)
        except Exception:
            log.exception("SMTP handler %s failed", getattr(call, "__qualname__", call))
            then(fallback)
            return None
        if isinstance(result, _eager.Suspended):
            return self._finish(result, fallback, then)
        then(result)
        return None

    async def _finish(
        self,
        rest: _eager.Suspended[_T],
        fallback: _T,
        then: Callable[[_T], None],
    ) -> bool:
        paused = self.pause_clock()
        try:
            result = await rest
        except Exception:
            call = rest.call
            log.exception("SMTP handler %s failed", getattr(call, "__qualname__", call))
            result = fallback
        finally:
            if paused:
                self.resume_clock()
        then(result)
        return True

    def _chunk_done(self, result: object) -> None:
        if result is _CHUNK_FAILED:
            self._chunk_failed = True

    def _hello_done(self, decision: Decision) -> None:
        self._decide(decision)
        assert self.session is not None and self._core is not None
        self.session.helo = self._core.helo_domain

    def _credentials_done(self, answer: sasl.Answer | Reject) -> None:
        self._decide(answer, _REJECT_AUTH)

    async def _drain_job(self) -> bool:
        return await self.drain()

    async def _login_failed_job(self) -> bool:
        core = self._core
        assert core is not None
        if await self.login_failed():
            core.shutdown("Too many authentication failures, closing connection",
                          enhanced="4.7.0")
            self.write(core.data_to_send())
            return False
        return True

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
        self._note_tls(session)
        session.helo = None
        session.identity = None
        session.message.clear()
        return True


_Method: TypeAlias = "Callable[[_Connection, Any], _Job | None]"

# The core's events by class, each to its _Connection method (called with the
# connection). A class not in the table (a subclass, such as sasl.NeedTokenCheck) is
# looked up by its bases once, then remembered.
_ON: dict[type[Any], _Method] = {
    DataChunk: _Connection._on_data_chunk,
    RcptTo: _Connection._on_rcpt,
    MailFrom: _Connection._on_mail,
    MessageComplete: _Connection._on_message,
    Hello: _Connection._on_hello,
    Reset: _Connection._on_reset,
    MessageRejected: _Connection._on_reset,
    sasl.NeedCredentials: _Connection._on_credentials,
    Authenticated: _Connection._on_authenticated,
    AuthenticationFailed: _Connection._on_authentication_failed,
    StartTLS: _Connection._on_start_tls,
    Quit: _Connection._on_quit,
    ConnectionClosed: _Connection._on_closed,
    CommandRejected: _Connection._on_other,
}


def _method_for(kind: type[Any]) -> _Method:
    """The method for an event class missing from :data:`_ON`: its nearest base's, or
    none to call; remembered in :data:`_ON`."""
    method = next((_ON[base] for base in kind.__mro__ if base in _ON), _Connection._on_other)
    _ON[kind] = method
    return method


class SMTPServer(ListeningServer):
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
        limits = server_limits(
            limits if limits is not None else ListenerLimits(), command_timeout, max_connections
        )
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
        self._listen(
            lambda listener, loop: _Connection(self, loop, listener),
            ssl_context=ssl_context,
            implicit_tls=implicit_tls,
            throttle=throttle,
            name="SMTP server",
        )
        self._tls_active = config.tls_active
        self._default_chunks = type(handler).on_data_chunk is SMTPHandler.on_data_chunk
        # The decisions whose handler method is SMTPHandler's own (accept, or do
        # nothing): the session answers them without the call, with the same result.
        defaults = frozenset(
            name
            for name in ("on_hello", "on_mail", "on_rcpt", "on_reset")
            if getattr(type(handler), name) is getattr(SMTPHandler, name)
            and name not in getattr(handler, "__dict__", {})
        )
        self._default_hello = "on_hello" in defaults
        self._default_mail = "on_mail" in defaults
        self._default_rcpt = "on_rcpt" in defaults
        self._default_reset = "on_reset" in defaults

    @property
    def command_timeout(self) -> float:
        """Seconds a client has to complete each command (``limits.command_timeout``)."""
        return self.limits.command_timeout

    @property
    def max_connections(self) -> int:
        """Concurrent sessions served; more are refused with 421
        (``limits.max_connections``)."""
        return self.limits.max_connections

    # The lifecycle is ListeningServer's, bound here to be documented with the class.
    start = ListeningServer.start
    start_unix = ListeningServer.start_unix
    sockets = ListeningServer.sockets
    port = ListeningServer.port
    path = ListeningServer.path
    connections = ListeningServer.connections
    throttle = ListeningServer.throttle

    async def close(self, timeout: float | None = None) -> None:
        """Stop listening and end the sessions gracefully: each gets 421 4.3.2 at its
        next transaction boundary (at once if idle); after ``timeout`` seconds (default
        ``limits.shutdown_grace``) the rest get it as soon as they wait for the client,
        and those still inside a handler call ``limits.shutdown_timeout`` seconds later
        are cancelled."""
        await self._listener.close(timeout)


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
