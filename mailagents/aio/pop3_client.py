"""An asyncio POP3 client: a thin adapter around
:class:`mailagents.pop3.client.ClientConnection`.

The adapter opens the connection, moves bytes between the socket and the core, upgrades
to TLS when STLS is accepted, bounds every wait with a time-out and turns the core's
events into results and typed exceptions. Every protocol rule (multi-line responses,
dot-stuffing, pipelining, the APOP digest, SASL framing) lives in the core::

    async with POP3Client.connect("pop.example.org", implicit_tls=True) as client:
        await client.login("alice", "secret")
        for number, uid in (await client.uidl()).items():
            with open(f"{uid}.eml", "wb") as f:
                await client.retrieve(number, f)

``connect`` verifies the server's certificate with
:func:`~mailagents.aio.client_context` unless told otherwise (``verify=False`` for a
self-signed test server, or an ``ssl_context`` of your own). :meth:`POP3Client.fetch`
is fetchmail's "keep" mode: only the messages whose UIDL was not seen before.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable, Collection, Mapping, MutableSet
from dataclasses import dataclass, fields
from types import TracebackType
from typing import Any

from mailagents import sasl
from mailagents.aio import _client
from mailagents.aio._client import MessageSink, sink_writer
from mailagents.aio.tls import client_context
from mailagents.pop3._client_events import (
    AuthResult,
    Capabilities,
    ClientEvent,
    ConnectionClosed,
    Greeting,
    Listing,
    MessageChunk,
    MessageEnd,
    MessageStart,
    Reply,
    Stat,
    UniqueIds,
)
from mailagents.pop3._response import Response
from mailagents.pop3.client import ClientConnection

__all__ = [
    "FetchResult",
    "MessageSink",
    "POP3AuthenticationError",
    "POP3Client",
    "POP3Connecting",
    "POP3ConnectionClosed",
    "POP3Error",
    "POP3ProtocolError",
    "POP3ResponseError",
    "POP3TLSError",
    "POP3Timeout",
    "POP3Timeouts",
]

log = logging.getLogger(__name__)

# Mechanisms login() may use, best first when the server offers several.
_PREFERENCE = ("SCRAM-SHA-256", "PLAIN")
_MECHANISMS: Mapping[str, Callable[[str, str], sasl.ClientMechanism]] = {
    "SCRAM-SHA-256": sasl.ScramSha256Client,
    "PLAIN": sasl.PlainClient,
    "LOGIN": sasl.LoginClient,
}
# Mechanisms that send the password itself.
_CLEARTEXT = frozenset({"USER", "PLAIN", "LOGIN"})


# --- exceptions ---------------------------------------------------------------------------


class POP3Error(Exception):
    """The base of every error the client raises. ``reply`` is the server's status
    line that caused it, when there is one."""

    def __init__(self, message: str, reply: Response | None = None) -> None:
        super().__init__(message)
        self.reply = reply

    @property
    def code(self) -> str | None:
        """The response code (``"IN-USE"``, ``"SYS/TEMP"``, RFC 2449 §8), if any."""
        return self.reply.code if self.reply is not None else None

    @property
    def text(self) -> str:
        """The response's text (``""`` without a response)."""
        return self.reply.text if self.reply is not None else ""


def _describe(response: Response) -> str:
    return response.to_bytes().decode("utf-8", "replace").rstrip("\r\n")


class POP3ResponseError(POP3Error):
    """The server answered ``-ERR``: ``reply`` says why. The session goes on."""

    response: Response

    def __init__(self, response: Response, message: str | None = None) -> None:
        super().__init__(message or _describe(response), response)


class POP3AuthenticationError(POP3Error):
    """A login failed: the server refused it (``reply``, perhaps with code
    ``AUTH``, ``IN-USE``, ``LOGIN-DELAY`` or ``SYS/TEMP``), the password would have
    crossed the network in the clear (no ``reply``), or the server failed to prove
    itself (``error`` says how; the connection is then closed: it may be an impostor)."""

    def __init__(
        self, message: str, response: Response | None = None, error: str | None = None
    ) -> None:
        super().__init__(message, response)
        self.error = error


class POP3TLSError(POP3Error):
    """TLS could not be set up: STLS was required but not offered or refused, or the
    handshake failed (an untrusted certificate: the :class:`ssl.SSLError` is the
    ``__cause__``). The connection is closed."""


class POP3ProtocolError(POP3Error):
    """The server broke the protocol so badly that the session cannot go on (a
    malformed or over-long response, one nothing asked for). The connection is closed."""


class POP3Timeout(POP3Error, TimeoutError):
    """The server did not answer within the configured time-out. The connection is
    closed."""


class POP3ConnectionClosed(POP3Error, ConnectionError):
    """The connection is closed: the server closed it (perhaps in the middle of a
    message), or it was closed here before."""


_ERRORS = _client.ClientErrors(
    timeout=POP3Timeout,
    tls=POP3TLSError,
    closed=POP3ConnectionClosed,
    protocol=POP3ProtocolError,
)


# --- configuration and results ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class POP3Timeouts:
    """Seconds the client waits, per step, before it gives up with :class:`POP3Timeout`.

    RFC 1939 sets no client time-outs (only the server's ten-minute autologout, §3);
    each one here bounds one event: a status line as a whole (a server that trickles
    it out is cut off too), or the next piece of a listing or of a message.
    """

    connect: float = 60.0
    """The TCP connection and each TLS handshake (implicit TLS, STLS)."""
    command: float = 120.0
    """The greeting and each status line."""
    data: float = 300.0
    """Each piece of a multi-line response (a message being retrieved, a listing)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"POP3Timeouts.{f.name} must be a positive number")

    @classmethod
    def uniform(cls, seconds: float) -> POP3Timeouts:
        """The same time-out for every step (handy in tests)."""
        return cls(**{f.name: seconds for f in fields(cls)})


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchResult:
    """What :meth:`POP3Client.fetch` did. Unique ids are the server's UIDL values."""

    fetched: tuple[str, ...]
    """The messages handed to the handler, in maildrop order."""
    deleted: tuple[str, ...]
    """Those of them marked for deletion (removed when the session ends with QUIT)."""
    skipped: tuple[str, ...]
    """New messages not fetched because they exceed ``limit``."""
    present: frozenset[str]
    """Every unique id in the maildrop: prune the seen set to these, so that it does
    not grow for ever."""


# --- the client -----------------------------------------------------------------------------


class POP3Client:
    """One POP3 session over asyncio. Make it with :meth:`connect`.

    Requests run one at a time (concurrent calls wait their turn). A ``-ERR`` raises
    :class:`POP3ResponseError` and the session goes on; :class:`POP3Timeout`,
    :class:`POP3ConnectionClosed`, :class:`POP3ProtocolError` and :class:`POP3TLSError`
    close the connection. Misuse (a CR or LF in a user name, message number 0) raises
    the core's :class:`~mailagents.pop3.LocalProtocolError` before anything is sent.
    """

    _core: ClientConnection
    _stream: _client.ClientStream
    _host: str
    _server_hostname: str | None
    _ssl_context: ssl.SSLContext | None
    _timeouts: POP3Timeouts
    _lock: asyncio.Lock
    _greeting: Response | None

    def __init__(self) -> None:
        """Not for direct use: make a client with :meth:`connect`."""
        raise TypeError("use POP3Client.connect(host, port, ...)")

    # --- opening ------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        host: str,
        port: int | None = None,
        *,
        implicit_tls: bool = False,
        stls: bool | None = None,
        ssl_context: ssl.SSLContext | None = None,
        verify: bool = True,
        server_hostname: str | None = None,
        timeouts: POP3Timeouts = POP3Timeouts(),
    ) -> POP3Connecting:
        """Connect, wait for the greeting, ask CAPA and set up TLS.

        Await it (``client = await POP3Client.connect(...)``) or use it as an async
        context manager (``async with POP3Client.connect(...) as client:``, which quits
        at the end).

        ``implicit_tls`` starts with a TLS handshake (RFC 8314; ``port`` defaults to
        995, else to 110). Otherwise ``stls`` says what to do: ``None`` (the default)
        uses STLS when the server offers it, ``True`` requires it (:class:`POP3TLSError`
        if it is not offered or fails), ``False`` never uses it. The certificate is
        verified against ``server_hostname`` (default ``host``) with ``ssl_context``,
        by default :func:`~mailagents.aio.client_context` (the system's trusted
        authorities); ``verify=False`` turns verification off, for a test server with
        a self-signed certificate only (anyone on the path could then read the
        password). A ``-ERR`` greeting raises :class:`POP3ResponseError`.
        """
        return POP3Connecting(
            cls,
            host,
            port if port is not None else (995 if implicit_tls else 110),
            implicit_tls=implicit_tls,
            stls=stls,
            ssl_context=ssl_context,
            verify=verify,
            server_hostname=server_hostname,
            timeouts=timeouts,
        )

    @classmethod
    async def _open(
        cls,
        host: str,
        port: int,
        *,
        implicit_tls: bool,
        stls: bool | None,
        ssl_context: ssl.SSLContext | None,
        verify: bool,
        server_hostname: str | None,
        timeouts: POP3Timeouts,
    ) -> POP3Client:
        if implicit_tls and stls:
            raise ValueError("implicit_tls and stls=True exclude each other")
        if ssl_context is None and not verify:
            log.warning("TLS certificate verification is off for %s:%s", host, port)
            ssl_context = client_context(verify=False)
        context = (ssl_context or client_context()) if implicit_tls else None
        stream = await _client.open_connection(
            host,
            port,
            ssl_context=context,
            server_hostname=server_hostname,
            timeout=timeouts.connect,
            errors=_ERRORS,
        )
        self = cls.__new__(cls)
        self._core = ClientConnection(tls_active=implicit_tls)
        self._stream = stream
        self._host = host
        self._server_hostname = server_hostname
        self._ssl_context = ssl_context
        self._timeouts = timeouts
        self._lock = asyncio.Lock()
        self._greeting = None
        try:
            await self._start(stls)
        except BaseException:
            self._abort()
            raise
        return self

    async def _start(self, stls: bool | None) -> None:
        async with self._lock:
            event = await self._event(None)
            assert isinstance(event, Greeting)
            self._greeting = event.reply
            if not event.reply.ok:
                raise POP3ResponseError(
                    event.reply, f"the server refused the session: {_describe(event.reply)}"
                )
            await self._event(self._core.capa)
            core = self._core
            if stls is False or core.tls_active:
                return
            if "STLS" not in core.capabilities:
                if stls:
                    raise POP3TLSError("the server does not offer STLS")
                return
            event = await self._event(core.stls)
            assert isinstance(event, Reply)
            if not event.reply.ok:
                if stls:
                    raise POP3TLSError(f"STLS refused: {_describe(event.reply)}", event.reply)
                log.info(
                    "STLS refused by %s (%s); going on without TLS",
                    self._host,
                    _describe(event.reply),
                )
                return
            await _client.start_tls(
                self._stream,
                self._ssl_context,
                host=self._host,
                server_hostname=self._server_hostname,
                timeout=self._timeouts.connect,
                errors=_ERRORS,
            )
            core.tls_started()
            await self._event(core.capa)  # RFC 2595 §4: the capabilities may differ now

    # --- state --------------------------------------------------------------------------

    @property
    def greeting(self) -> Response | None:
        """The server's greeting."""
        return self._greeting

    @property
    def capabilities(self) -> Mapping[str, tuple[str, ...]]:
        """The server's capabilities from its last CAPA answer (RFC 2449): upper-case
        tag to arguments (``{"SASL": ("PLAIN",), "UIDL": ()}``); empty if it has none."""
        return self._core.capabilities

    @property
    def tls_active(self) -> bool:
        """Whether the session runs over TLS."""
        return self._core.tls_active

    @property
    def authenticated(self) -> bool:
        """Whether a login succeeded."""
        return self._core.authenticated

    @property
    def closed(self) -> bool:
        """Whether the connection is closed."""
        return self._stream.closed

    # --- logins -------------------------------------------------------------------------

    async def login(
        self,
        user: str,
        password: str,
        *,
        mechanism: str | None = None,
        allow_plaintext: bool = False,
    ) -> Response:
        """Log in with a user name and password; return the server's ``+OK``.

        Without ``mechanism``, SASL SCRAM-SHA-256 (RFC 5034) when the server offers it,
        else SASL PLAIN when offered, else USER and PASS (RFC 1939 §7). ``mechanism``
        may name one of these (``"USER"`` for USER/PASS) or LOGIN. USER/PASS, PLAIN
        and LOGIN send the password itself: without TLS they are refused unless
        ``allow_plaintext`` is set. Raises :class:`POP3AuthenticationError`.
        """
        offered = [m.upper() for m in self._core.capabilities.get("SASL", ())]
        if mechanism is None:
            chosen = next((m for m in _PREFERENCE if m in offered), "USER")
        else:
            chosen = mechanism.upper()
            if chosen != "USER" and chosen not in _MECHANISMS:
                raise ValueError(f"{mechanism!r} is not a user name and password mechanism")
        self._check_cleartext(chosen, allow_plaintext)
        if chosen == "USER":
            core = self._core
            return await self._auth(lambda: core.login(user, password))
        return await self.authenticate(_MECHANISMS[chosen](user, password), allow_plaintext=True)

    async def apop(self, user: str, secret: str) -> Response:
        """APOP (RFC 1939 §7) with the greeting's timestamp; the secret never crosses
        the network, but APOP is MD5 over a plaintext-equivalent secret: prefer
        :meth:`login` with SCRAM-SHA-256 over TLS. Raises :class:`POP3AuthenticationError`."""
        core = self._core
        return await self._auth(lambda: core.apop(user, secret))

    async def authenticate(
        self, mechanism: sasl.ClientMechanism, *, allow_plaintext: bool = False
    ) -> Response:
        """AUTH with any SASL client mechanism (RFC 5034); return the ``+OK``. PLAIN and
        LOGIN are refused without TLS unless ``allow_plaintext`` is set. Raises
        :class:`POP3AuthenticationError`."""
        self._check_cleartext(mechanism.name.upper(), allow_plaintext)
        core = self._core
        return await self._auth(lambda: core.authenticate(mechanism))

    def _check_cleartext(self, name: str, allow_plaintext: bool) -> None:
        if name in _CLEARTEXT and not self._core.tls_active and not allow_plaintext:
            raise POP3AuthenticationError(
                f"{name} would send the password in the clear: use TLS, or pass "
                "allow_plaintext=True"
            )

    async def _auth(self, start: Callable[[], None]) -> Response:
        event = await self._call(start)
        assert isinstance(event, AuthResult)
        if event.success:
            return event.reply
        if event.error is not None:
            self._abort()
            raise POP3AuthenticationError(
                f"the server did not prove itself: {event.error}", event.reply, event.error
            )
        raise POP3AuthenticationError(f"login failed: {_describe(event.reply)}", event.reply)

    # --- the maildrop -------------------------------------------------------------------

    async def stat(self) -> tuple[int, int]:
        """STAT: the number of messages and their total size in octets."""
        event = await self._call(self._core.stat)
        assert isinstance(event, Stat)
        return event.count, event.size

    async def list(self, n: int | None = None) -> dict[int, int]:
        """LIST: message number to size in octets (one entry for ``LIST n``)."""
        core = self._core
        event = await self._call(lambda: core.list(n))
        assert isinstance(event, Listing)
        return dict(event.entries)

    async def uidl(self, n: int | None = None) -> dict[int, str]:
        """UIDL: message number to unique id (one entry for ``UIDL n``)."""
        core = self._core
        event = await self._call(lambda: core.uidl(n))
        assert isinstance(event, UniqueIds)
        return dict(event.entries)

    async def retrieve(self, n: int, sink: MessageSink) -> int:
        """RETR n, streaming the message (CRLF line ends, dot-stuffing removed) into
        ``sink`` as it arrives: a binary file, or a callable (plain or async) given
        each chunk. Returns the number of octets. If ``sink`` raises, the connection
        is closed (the rest of the message is still on its way) and the error
        propagates."""
        core = self._core
        return await self._message(lambda: core.retr(n), sink)

    async def top(self, n: int, lines: int, *, limit: int = 1 << 20) -> bytes:
        """TOP n lines: the header, the blank line and at most ``lines`` body lines.
        A server that sends more than ``limit`` octets is cut off
        (:class:`POP3ProtocolError`)."""
        parts: list[bytes] = []
        size = 0

        def collect(data: bytes) -> None:
            nonlocal size
            size += len(data)
            if size > limit:
                raise POP3ProtocolError(f"TOP {n} {lines} sent more than {limit} octets")
            parts.append(data)

        core = self._core
        await self._message(lambda: core.top(n, lines), collect)
        return b"".join(parts)

    async def _message(self, start: Callable[[], None], sink: MessageSink) -> int:
        deliver = sink_writer(sink)
        async with self._lock:
            event = await self._event(start)
            if isinstance(event, Reply):
                raise POP3ResponseError(event.reply)
            assert isinstance(event, MessageStart)
            try:
                while True:
                    event = await self._event(None)
                    if isinstance(event, MessageEnd):
                        return event.size
                    assert isinstance(event, MessageChunk)
                    result = deliver(event.data)
                    if inspect.isawaitable(result):
                        await result
            except BaseException:
                self._abort()  # mid-message: the session cannot be resumed
                raise

    async def dele(self, n: int) -> Response:
        """DELE n: mark the message deleted; the server removes it at QUIT."""
        core = self._core
        return await self._simple(lambda: core.dele(n))

    async def noop(self) -> Response:
        """NOOP: check that the session is alive."""
        return await self._simple(self._core.noop)

    async def rset(self) -> Response:
        """RSET: unmark the messages marked deleted."""
        return await self._simple(self._core.rset)

    async def _simple(self, start: Callable[[], None]) -> Response:
        event = await self._call(start)
        assert isinstance(event, Reply)
        return event.reply

    # --- fetchmail's keep mode ----------------------------------------------------------

    async def fetch(
        self,
        handler: Callable[[str, bytes], Awaitable[object]],
        *,
        seen: Collection[str] = frozenset(),
        delete: bool = False,
        limit: int | None = None,
    ) -> FetchResult:
        """Download the messages whose unique id (UIDL) is not in ``seen``, in
        maildrop order, and hand each to ``await handler(uid, message)``.

        Once the handler returns, the uid is added to ``seen`` when it is a mutable set
        (save it after each message, or at the end, to remember across sessions), and
        with ``delete`` the message is marked for deletion (the server removes it at
        QUIT; should the session break before, the seen set still prevents a second
        copy). If the handler raises, fetching stops there and the error propagates:
        that message is neither recorded nor deleted. Messages larger than ``limit``
        octets (by LIST) are skipped and not recorded. Each message is held in memory
        for the handler: use :meth:`retrieve` to stream very large ones.
        """
        uids = await self.uidl()
        sizes = await self.list() if limit is not None else {}
        known = set(seen)
        fetched: list[str] = []
        deleted: list[str] = []
        skipped: list[str] = []
        for number, uid in sorted(uids.items()):
            if uid in known:
                continue
            if limit is not None and sizes.get(number, 0) > limit:
                skipped.append(uid)
                continue
            parts: list[bytes] = []
            await self.retrieve(number, parts.append)
            await handler(uid, b"".join(parts))
            del parts
            fetched.append(uid)
            known.add(uid)
            if isinstance(seen, MutableSet):
                seen.add(uid)
            if delete:
                await self.dele(number)
                deleted.append(uid)
        return FetchResult(
            fetched=tuple(fetched),
            deleted=tuple(deleted),
            skipped=tuple(skipped),
            present=frozenset(uids.values()),
        )

    # --- ending -------------------------------------------------------------------------

    async def quit(self) -> Response | None:
        """QUIT, then close the connection. Returns the server's answer (after a login,
        a ``-ERR`` says that some messages marked deleted were not removed), or
        ``None`` if the connection was already closed."""
        if self._stream.closed:
            return None
        try:
            async with self._lock:
                event = await self._event(self._core.quit)
        except POP3ConnectionClosed:
            return None
        finally:
            await self.close()
        assert isinstance(event, Reply)
        return event.reply

    async def close(self) -> None:
        """Close the connection without QUIT (the server deletes nothing, RFC 1939 §6);
        abort it if it cannot flush within a couple of seconds."""
        await self._stream.close()

    async def __aenter__(self) -> POP3Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            try:
                await self.quit()
            except POP3Error as error:
                log.debug("QUIT to %s failed: %s", self._host, error)
        await self.close()

    # --- moving bytes -------------------------------------------------------------------

    def _abort(self) -> None:
        self._stream.abort()

    async def _call(self, start: Callable[[], None]) -> ClientEvent:
        """Queue one request and return its event; ``-ERR`` raises
        :class:`POP3ResponseError`."""
        async with self._lock:
            event = await self._event(start)
        if isinstance(event, Reply | Capabilities) and not event.reply.ok:
            raise POP3ResponseError(event.reply)
        return event

    async def _event(self, start: Callable[[], None] | None) -> ClientEvent:
        """Queue a request (``start``) and run the connection until the next event.
        The caller holds the lock."""
        event: ClientEvent = await _client.request(
            self._core,
            self._stream,
            start,
            self._wait,
            host=self._host,
            errors=_ERRORS,
            closed_event=ConnectionClosed,
        )
        if isinstance(event, Reply) and event.command == "QUIT":
            self._stream.closed = True
        return event

    def _wait(self) -> _client.Wait:
        """What the core waits for: one time-out bounds each event, longer for a piece
        of a multi-line response."""
        step = self._core.awaiting or "COMMAND"
        multiline = step in ("RETR", "TOP", "LIST", "UIDL", "CAPA")
        limit = self._timeouts.data if multiline else self._timeouts.command
        return _client.Wait(key=None, step=step, seconds=limit)


class POP3Connecting(_client.Connecting[POP3Client]):
    """What :meth:`POP3Client.connect` returns: await it for the :class:`POP3Client`,
    or use it as an async context manager (which quits and closes at the end)."""

    def __init__(self, cls: type[POP3Client], host: str, port: int, **options: Any) -> None:
        super().__init__(lambda: cls._open(host, port, **options))
