"""An asyncio IMAP client: a thin adapter around
:class:`mailagents.imap.client.ClientConnection`.

The adapter opens the connection, moves bytes between the socket and the core,
upgrades to TLS when STARTTLS is accepted, installs the DEFLATE codec when COMPRESS
is, bounds every wait with a time-out and turns the core's events into results and
typed exceptions. Every protocol rule (tags, literals and their continuation
requests, SASL framing, what a response means) lives in the core and the parser::

    async with IMAPClient.connect("imap.example.org", implicit_tls=True) as client:
        await client.login("alice", "secret")
        box = await client.select("INBOX")
        for fetched in await client.fetch("1:*", "(UID FLAGS ENVELOPE)"):
            ...
        async with client.idle() as news:
            async for update in news:
                ...

A ``NO`` or ``BAD`` answer raises :class:`IMAPCommandError` (with the response code)
and the session goes on. Untagged responses no command asked for (a new message's
``EXISTS``, an ``EXPUNGE``) go to the ``on_update`` callback given to ``connect``, and
during IDLE to its iterator.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import inspect
import logging
import ssl
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, BinaryIO, TypeAlias

from mailagents import sasl
from mailagents._protocol import RemoteProtocolError
from mailagents.aio import _client
from mailagents.aio._client import MessageSink, sink_writer
from mailagents.aio._imap_client_errors import (
    ERRORS,
    IMAPAuthenticationError,
    IMAPCommandError,
    IMAPConnectionClosed,
    IMAPError,
    IMAPProtocolError,
    IMAPTimeout,
    IMAPTimeouts,
    IMAPTLSError,
)
from mailagents.aio._imap_client_idle import IMAPIdle
from mailagents.aio._imap_client_results import (
    SearchResult,
    SelectResult,
    appenduid,
    copyuid,
    search_result,
    select_result,
)
from mailagents.aio._imap_client_wire import Wire
from mailagents.aio.tls import client_context
from mailagents.imap import _commands as c
from mailagents.imap._client import ClientConnection, ClientState
from mailagents.imap._client_events import (
    Bye,
    ClientEvent,
    Completed,
    ConnectionClosed,
    Greeting,
    IdleStarted,
    LiteralData,
    LiteralDone,
    LiteralStarted,
    Update,
)
from mailagents.imap._command_parser import parse_command
from mailagents.imap._fetch_data import FetchData
from mailagents.imap._frame import Frame, Streamed
from mailagents.imap._response_codes import AppendUidCode, CopyUidCode
from mailagents.imap._responses import (
    ExpungeData,
    IdData,
    ListData,
    NamespaceData,
    Response,
    StatusData,
    StatusResponse,
    VanishedData,
)
from mailagents.imap._search import FlagKey, SearchKey
from mailagents.imap._seqset import SequenceSet

__all__ = ["IMAPClient", "IMAPConnecting", "IMAPIdle", "MessageSink", "UpdateHandler"]

log = logging.getLogger(__name__)

# Mechanisms login() may use, best first when the server offers several.
_PREFERENCE = ("SCRAM-SHA-256", "PLAIN")
_MECHANISMS: dict[str, Callable[[str, str], sasl.ClientMechanism]] = {
    "SCRAM-SHA-256": sasl.ScramSha256Client,
    "PLAIN": sasl.PlainClient,
    "LOGIN": sasl.LoginClient,
}
_CLEARTEXT = frozenset({"LOGIN", "PLAIN"})  # "LOGIN": the command or the mechanism
_APPEND_CHUNK = 65_536
_DEFAULT_TIMEOUTS = IMAPTimeouts()


UpdateHandler: TypeAlias = Callable[[Response], object]
"""Called with each untagged response no command asked for (plain or async)."""


def _set(value: SequenceSet | str | int | Iterable[int]) -> SequenceSet:
    if isinstance(value, SequenceSet):
        return value
    if isinstance(value, str):
        try:
            return SequenceSet.parse(value)
        except ValueError as exc:
            raise ValueError(f"not a sequence set: {value!r}") from exc
    if isinstance(value, int):
        return SequenceSet(ranges=((value, value),))
    return SequenceSet.from_numbers(value)


def _command_from_text(tag: str, text: str, *, utf8: bool) -> c.Command:
    """A command written as text after its tag (``FETCH 1:* (FLAGS)``), read with the
    server's own command parser so that what is sent is exactly what the grammar
    allows. Mailbox names in the text are read as the session sends them (modified
    UTF-7 unless UTF-8 was enabled), so that ``SELECT &ZeVnLIqe-`` is not encoded
    twice."""
    frame = Frame(lines=(f"{tag} {text}".encode("utf-8", "surrogateescape"),))
    try:
        command = parse_command(frame, utf8=utf8)
    except Exception as exc:
        raise ValueError(f"not an IMAP command: {text!r} ({exc})") from exc
    if isinstance(command, c.UnknownCommand):
        # Its arguments would be lost: only the name of an unknown command is kept.
        raise ValueError(f"not a command this library knows: {text!r}")
    return command


class IMAPClient:
    """One IMAP session over asyncio. Make it with :meth:`connect`.

    Commands run one at a time (concurrent calls wait their turn). ``NO``/``BAD``
    raise :class:`IMAPCommandError` and the session goes on; :class:`IMAPTimeout`,
    :class:`IMAPConnectionClosed`, :class:`IMAPProtocolError` and :class:`IMAPTLSError`
    close the connection. Misuse (a mailbox name with NUL, a command out of order)
    raises the core's ``LocalProtocolError`` before anything is sent.
    """

    _core: ClientConnection
    _wire: Wire
    _stream: _client.ClientStream
    _host: str
    _server_hostname: str | None
    _ssl_context: ssl.SSLContext | None
    _timeouts: IMAPTimeouts
    _lock: asyncio.Lock
    _greeting: StatusResponse | None
    _bye: StatusResponse | None
    _on_update: UpdateHandler | None
    _sink: Callable[[bytes], object] | None
    _updates: asyncio.Queue[Response] | None

    def __init__(self) -> None:
        """Not for direct use: make a client with :meth:`connect`."""
        raise TypeError("use IMAPClient.connect(host, port, ...)")

    # --- opening ------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        host: str,
        port: int | None = None,
        *,
        implicit_tls: bool = False,
        starttls: bool | None = None,
        ssl_context: ssl.SSLContext | None = None,
        verify: bool = True,
        server_hostname: str | None = None,
        timeouts: IMAPTimeouts = _DEFAULT_TIMEOUTS,
        on_update: UpdateHandler | None = None,
    ) -> IMAPConnecting:
        """Connect, wait for the greeting, learn the capabilities and set up TLS.

        Await it (``client = await IMAPClient.connect(...)``) or use it as an async
        context manager (which logs out at the end).

        ``implicit_tls`` starts with a TLS handshake (RFC 8314; ``port`` defaults to
        993, else to 143). Otherwise ``starttls`` says what to do: ``None`` uses
        STARTTLS when offered, ``True`` requires it (:class:`IMAPTLSError` if it is not
        offered, is refused, or the server greets with PREAUTH in the clear), ``False``
        never uses it. The certificate is verified against ``server_hostname``
        (default ``host``) with ``ssl_context``, by default
        :func:`~mailagents.aio.client_context`; ``verify=False`` turns verification
        off, for a test server only. A ``BYE`` greeting raises
        :class:`IMAPConnectionClosed`.
        """
        return IMAPConnecting(
            cls,
            host,
            port if port is not None else (993 if implicit_tls else 143),
            implicit_tls=implicit_tls,
            starttls=starttls,
            ssl_context=ssl_context,
            verify=verify,
            server_hostname=server_hostname,
            timeouts=timeouts,
            on_update=on_update,
        )

    @classmethod
    async def _open(
        cls,
        host: str,
        port: int,
        *,
        implicit_tls: bool,
        starttls: bool | None,
        ssl_context: ssl.SSLContext | None,
        verify: bool,
        server_hostname: str | None,
        timeouts: IMAPTimeouts,
        on_update: UpdateHandler | None,
    ) -> IMAPClient:
        if implicit_tls and starttls:
            raise ValueError("implicit_tls and starttls=True exclude each other")
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
            errors=ERRORS,
        )
        self = cls.__new__(cls)
        self._core = ClientConnection(tls_active=implicit_tls, require_tls=bool(starttls))
        self._wire = Wire(self._core)
        self._stream = stream
        self._host = host
        self._server_hostname = server_hostname
        self._ssl_context = ssl_context
        self._timeouts = timeouts
        self._lock = asyncio.Lock()
        self._greeting = None
        self._bye = None
        self._on_update = on_update
        self._sink = None
        self._updates = None
        try:
            await self._start(starttls)
        except BaseException:
            self._stream.abort()
            raise
        return self

    async def _start(self, starttls: bool | None) -> None:
        async with self._lock:
            try:
                event = await self._event(None)
            except IMAPError as exc:
                if starttls and "PREAUTH" in str(exc):
                    raise IMAPTLSError(str(exc)) from exc
                raise
            assert isinstance(event, Greeting)
            self._greeting = event.response
            if event.status == "BYE":
                raise IMAPConnectionClosed(
                    f"the server refused the session: {event.response.text}", event.response
                )
            core = self._core
            if core.capabilities is None:
                await self._run_locked(c.Capability(tag=core.new_tag()))
            if (
                starttls is False
                or core.tls_active
                or core.state is not ClientState.NOT_AUTHENTICATED
            ):
                return
            if not core.has("STARTTLS"):
                if starttls:
                    raise IMAPTLSError("the server does not offer STARTTLS")
                return
            done = await self._run_locked(c.StartTLS(tag=core.new_tag()), check=False)
            if not done.ok:
                if starttls:
                    raise IMAPTLSError(f"STARTTLS refused: {done.response.text}", done.response)
                log.info("STARTTLS refused by %s; going on without TLS", self._host)
                return
            await _client.start_tls(
                self._stream,
                self._ssl_context,
                host=self._host,
                server_hostname=self._server_hostname,
                timeout=self._timeouts.connect,
                errors=ERRORS,
            )
            core.tls_started()
            await self._run_locked(c.Capability(tag=core.new_tag()))  # RFC 9051 §6.2.1

    # --- state --------------------------------------------------------------------------

    @property
    def core(self) -> ClientConnection:
        """The sans-I/O connection underneath (for its state; do not send through it)."""
        return self._core

    @property
    def greeting(self) -> StatusResponse | None:
        """The server's greeting."""
        return self._greeting

    @property
    def capabilities(self) -> frozenset[str]:
        """The server's capabilities, upper case (empty when unknown)."""
        return self._core.capabilities or frozenset()

    def has(self, capability: str) -> bool:
        """Whether the server announced ``capability`` (any case)."""
        return self._core.has(capability)

    @property
    def tls_active(self) -> bool:
        """Whether the session runs over TLS."""
        return self._core.tls_active

    @property
    def state(self) -> ClientState:
        """The session's state (not authenticated, authenticated, selected, logout)."""
        return self._core.state

    @property
    def selected(self) -> str | None:
        """The selected mailbox, or ``None``."""
        return self._core.selected

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
    ) -> StatusResponse:
        """Log in with a user name and password; return the tagged OK.

        Without ``mechanism``: AUTHENTICATE SCRAM-SHA-256 when offered, else
        AUTHENTICATE PLAIN when offered, else LOGIN. ``mechanism`` may name one of
        these (``"LOGIN"`` for the LOGIN command) or ``"AUTH=LOGIN"``. LOGIN and PLAIN
        send the password itself: without TLS they are refused unless
        ``allow_plaintext``. Raises :class:`IMAPAuthenticationError`."""
        core = self._core
        if mechanism is None:
            chosen = next((m for m in _PREFERENCE if core.has(f"AUTH={m}")), "LOGIN")
        else:
            chosen = mechanism.upper()
            if chosen == "AUTH=LOGIN":
                return await self.authenticate(
                    sasl.LoginClient(user, password), allow_plaintext=allow_plaintext
                )
            if chosen != "LOGIN" and chosen not in _MECHANISMS:
                raise ValueError(f"{mechanism!r} is not a user name and password mechanism")
        self._check_cleartext(chosen, allow_plaintext)
        if chosen == "LOGIN":
            return await self._auth(lambda: core.login(user, password), "LOGIN")
        return await self.authenticate(_MECHANISMS[chosen](user, password), allow_plaintext=True)

    async def authenticate(
        self, mechanism: sasl.ClientMechanism, *, allow_plaintext: bool = False
    ) -> StatusResponse:
        """AUTHENTICATE with any SASL client mechanism (RFC 9051 §6.2.2, SASL-IR when
        offered); return the tagged OK. PLAIN and LOGIN are refused without TLS
        unless ``allow_plaintext``. Raises :class:`IMAPAuthenticationError`."""
        name = mechanism.name.upper()
        self._check_cleartext("LOGIN" if name == "LOGIN" else name, allow_plaintext)
        core = self._core
        return await self._auth(lambda: core.authenticate(mechanism), name)

    def _check_cleartext(self, name: str, allow_plaintext: bool) -> None:
        if name in _CLEARTEXT and not self._core.tls_active and not allow_plaintext:
            raise IMAPAuthenticationError(
                f"{name} would send the password in the clear: use TLS, or pass "
                "allow_plaintext=True"
            )

    async def _auth(self, start: Callable[[], str], name: str) -> StatusResponse:
        async with self._lock:
            tag = start()
            done = await self._until_done(tag)
            if done.ok:
                if self._core.capabilities is None:
                    await self._run_locked(c.Capability(tag=self._core.new_tag()))
                return done.response
        if done.error is not None:
            # A forged SCRAM signature, a challenge that is not base64: the server may
            # be an impostor, the session is not worth keeping.
            self._stream.abort()
            raise IMAPAuthenticationError(
                f"the server did not prove itself: {done.error}", done.response, done.error
            )
        raise IMAPAuthenticationError(
            f"{name} failed: {done.response.status} {done.response.text}",
            done.response,
            done.error,
        )

    # --- commands -----------------------------------------------------------------------

    async def execute(self, command: c.Command | str, *, check: bool = True) -> Completed:
        """Send any command and return its :class:`~mailagents.imap.client.Completed`
        (the tagged response and the untagged responses it collected).

        ``command`` is a command value (its tag from ``client.core.new_tag()``) or
        the text after the tag (``'UID FETCH 1:* (FLAGS)'``), read with the command
        parser. With ``check`` a NO or BAD raises :class:`IMAPCommandError`."""
        if isinstance(command, str):
            command = _command_from_text(self._core.new_tag(), command, utf8=self._core.utf8)
        return await self._run(command, check=check)

    async def capability(self) -> frozenset[str]:
        """CAPABILITY: ask again, and return the capabilities."""
        await self._run(c.Capability(tag=self._core.new_tag()))
        return self.capabilities

    async def noop(self) -> Completed:
        """NOOP: the server's chance to report news (to ``on_update``)."""
        return await self._run(c.Noop(tag=self._core.new_tag()))

    async def enable(self, *capabilities: str) -> frozenset[str]:
        """ENABLE (RFC 5161): returns what the server enabled (all enabled so far)."""
        caps = tuple(name.upper() for name in capabilities)
        await self._run(c.Enable(tag=self._core.new_tag(), capabilities=caps))
        return self._core.enabled

    async def id(self, parameters: dict[str, str | None] | None = None) -> IdData | None:
        """ID (RFC 2971): send ours (``None``: NIL), return the server's ID response."""
        params = None if parameters is None else tuple(parameters.items())
        done = await self._run(c.Id(tag=self._core.new_tag(), parameters=params))
        return next((r for r in done.data if isinstance(r, IdData)), None)

    async def namespace(self) -> NamespaceData | None:
        """NAMESPACE (RFC 2342, RFC 9051 §6.3.10): the server's NAMESPACE response."""
        done = await self._run(c.Namespace(tag=self._core.new_tag()))
        return next((r for r in done.data if isinstance(r, NamespaceData)), None)

    async def select(
        self,
        mailbox: str,
        *,
        readonly: bool = False,
        condstore: bool = False,
        qresync: c.QResync | None = None,
    ) -> SelectResult:
        """SELECT (or EXAMINE with ``readonly``) a mailbox, with CONDSTORE (RFC 7162
        §3.1.8) or QRESYNC (§3.2.5) if asked; return what the server said about it."""
        tag = self._core.new_tag()
        kind = c.Examine if readonly else c.Select
        done = await self._run(kind(tag=tag, mailbox=mailbox, condstore=condstore, qresync=qresync))
        return select_result(mailbox, done)

    async def examine(self, mailbox: str, **options: Any) -> SelectResult:
        """EXAMINE: :meth:`select` read-only."""
        return await self.select(mailbox, readonly=True, **options)

    async def unselect(self) -> Completed:
        """UNSELECT (RFC 3691): leave the mailbox without expunging."""
        return await self._run(c.Unselect(tag=self._core.new_tag()))

    async def close_mailbox(self) -> Completed:
        """CLOSE: expunge the messages marked deleted and leave the mailbox."""
        return await self._run(c.Close(tag=self._core.new_tag()))

    async def create(self, mailbox: str) -> Completed:
        """CREATE a mailbox."""
        return await self._run(c.Create(tag=self._core.new_tag(), mailbox=mailbox))

    async def delete(self, mailbox: str) -> Completed:
        """DELETE a mailbox."""
        return await self._run(c.Delete(tag=self._core.new_tag(), mailbox=mailbox))

    async def rename(self, mailbox: str, new_name: str) -> Completed:
        """RENAME a mailbox."""
        tag = self._core.new_tag()
        return await self._run(c.Rename(tag=tag, mailbox=mailbox, new_name=new_name))

    async def subscribe(self, mailbox: str) -> Completed:
        """SUBSCRIBE to a mailbox."""
        return await self._run(c.Subscribe(tag=self._core.new_tag(), mailbox=mailbox))

    async def unsubscribe(self, mailbox: str) -> Completed:
        """UNSUBSCRIBE from a mailbox."""
        return await self._run(c.Unsubscribe(tag=self._core.new_tag(), mailbox=mailbox))

    async def list(
        self,
        reference: str = "",
        pattern: str | Sequence[str] = "*",
        *,
        selection: Sequence[str] = (),
        return_options: Sequence[str] = (),
        status: Sequence[str] | None = None,
    ) -> tuple[ListData | StatusData, ...]:
        """LIST (RFC 9051 §6.3.9, LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819): the
        ``LIST`` responses (and ``STATUS`` ones with ``status``), in order."""
        patterns = (pattern,) if isinstance(pattern, str) else tuple(pattern)
        done = await self._run(
            c.List(
                tag=self._core.new_tag(),
                reference=reference,
                patterns=patterns,
                selection=tuple(s.upper() for s in selection),
                return_options=tuple(r.upper() for r in return_options),
                status=None if status is None else tuple(s.upper() for s in status),
            )
        )
        return tuple(r for r in done.data if isinstance(r, ListData | StatusData))

    async def status(self, mailbox: str, items: Sequence[str]) -> StatusData:
        """STATUS (RFC 9051 §6.3.11): the server's STATUS response."""
        tag = self._core.new_tag()
        done = await self._run(
            c.Status(tag=tag, mailbox=mailbox, items=tuple(i.upper() for i in items))
        )
        for response in done.data:
            if isinstance(response, StatusData):
                return response
        raise IMAPCommandError("STATUS", done.response)

    async def fetch(
        self,
        messages: SequenceSet | str | int | Iterable[int],
        items: str = "(FLAGS)",
        *,
        uid: bool = False,
        changedsince: int | None = None,
        vanished: bool = False,
    ) -> tuple[FetchData | VanishedData, ...]:
        """FETCH (``UID FETCH`` with ``uid``): the parsed FETCH responses, and with
        ``vanished`` the VANISHED (EARLIER) ones (RFC 7162 §3.2.6). ``items`` is
        written as in the command (``"(UID FLAGS BODY.PEEK[HEADER])"``, ``"FAST"``).
        Literals too big to keep (``inline_max``) would be lost here: use
        :meth:`fetch_message` for large bodies."""
        command = self._fetch_command(messages, items, uid, changedsince, vanished)
        done = await self._run(command)
        return tuple(r for r in done.data if isinstance(r, FetchData | VanishedData))

    def _fetch_command(
        self,
        messages: SequenceSet | str | int | Iterable[int],
        items: str,
        uid: bool,
        changedsince: int | None,
        vanished: bool,
    ) -> c.Fetch:
        tag = self._core.new_tag()
        parsed = _command_from_text(tag, f"FETCH 1 {items}", utf8=self._core.utf8)
        assert isinstance(parsed, c.Fetch)
        return c.Fetch(
            tag=tag,
            uid=uid,
            sequence_set=_set(messages),
            items=parsed.items,
            changedsince=changedsince,
            vanished=vanished,
        )

    async def fetch_message(
        self,
        message: int,
        sink: MessageSink,
        *,
        uid: bool = False,
        section: str = "BODY.PEEK[]",
    ) -> tuple[FetchData, ...]:
        """FETCH one message's ``section`` (the whole message by default, without
        setting ``\\Seen``), streaming every literal too big to keep into ``sink`` as
        it arrives (a binary file, or a callable, plain or async, given each chunk);
        smaller ones stay in the returned FETCH responses. If ``sink`` raises, the
        connection is closed (the rest is still on its way) and the error propagates."""
        deliver = sink_writer(sink)
        command = self._fetch_command(message, f"({section})", uid, None, False)
        async with self._lock:
            self._sink = deliver
            try:
                done = await self._run_locked(command, check=False)
            except BaseException:
                self._stream.abort()
                raise
            finally:
                self._sink = None
        if not done.ok:
            raise IMAPCommandError(done.command, done.response)
        return tuple(r for r in done.data if isinstance(r, FetchData))

    async def search(
        self,
        *criteria: SearchKey,
        uid: bool = False,
        charset: str | None = None,
        return_options: Sequence[str] | None = None,
    ) -> SearchResult:
        """SEARCH (``UID SEARCH`` with ``uid``) for messages matching all
        ``criteria`` (the keys of :mod:`mailagents.imap`'s search model; none: ALL).
        With ``return_options`` (``("MIN", "MAX", "COUNT")``) the server answers
        ESEARCH (RFC 4731). Numbers are kept as ranges, never expanded."""
        keys = criteria or (FlagKey(name="ALL"),)
        done = await self._run(
            c.Search(
                tag=self._core.new_tag(),
                uid=uid,
                charset=charset,
                return_options=None
                if return_options is None
                else tuple(o.upper() for o in return_options),
                criteria=tuple(keys),
            )
        )
        return search_result(done)

    async def store(
        self,
        messages: SequenceSet | str | int | Iterable[int],
        flags: Sequence[str],
        *,
        action: c.StoreAction = "add",
        uid: bool = False,
        silent: bool = False,
        unchangedsince: int | None = None,
    ) -> Completed:
        """STORE flags (``action`` ``"add"``: +FLAGS, ``"remove"``: -FLAGS,
        ``"replace"``: FLAGS); the FETCH responses with the new flags are in ``data``
        (none with ``silent``), the messages that failed UNCHANGEDSINCE in its
        ``MODIFIED`` code (RFC 7162 §3.1.3)."""
        return await self._run(
            c.Store(
                tag=self._core.new_tag(),
                uid=uid,
                sequence_set=_set(messages),
                action=action,
                silent=silent,
                flags=tuple(flags),
                unchangedsince=unchangedsince,
            )
        )

    async def copy(
        self, messages: SequenceSet | str | int | Iterable[int], mailbox: str, *, uid: bool = False
    ) -> CopyUidCode | None:
        """COPY messages to ``mailbox``; returns the ``COPYUID`` code (RFC 4315,
        source and destination UIDs kept as ranges) or ``None``."""
        tag = self._core.new_tag()
        done = await self._run(
            c.Copy(tag=tag, uid=uid, sequence_set=_set(messages), mailbox=mailbox)
        )
        return copyuid(done)

    async def move(
        self, messages: SequenceSet | str | int | Iterable[int], mailbox: str, *, uid: bool = False
    ) -> CopyUidCode | None:
        """MOVE messages to ``mailbox`` (RFC 6851); returns the ``COPYUID`` code (from
        the untagged OK or the tagged one) or ``None``. The EXPUNGE or VANISHED
        responses that follow are the mailbox's news (given to ``on_update``)."""
        tag = self._core.new_tag()
        done = await self._run(
            c.Move(tag=tag, uid=uid, sequence_set=_set(messages), mailbox=mailbox)
        )
        for response in done.data:
            if self._on_update is not None and not isinstance(response, StatusResponse):
                await self._notify(response)
        return copyuid(done)

    async def expunge(
        self, uids: SequenceSet | str | int | Iterable[int] | None = None
    ) -> tuple[ExpungeData | VanishedData, ...]:
        """EXPUNGE, or UID EXPUNGE of ``uids`` (RFC 4315): the EXPUNGE (or VANISHED)
        responses, in order."""
        tag = self._core.new_tag()
        if uids is None:
            command = c.Expunge(tag=tag)
        else:
            command = c.Expunge(tag=tag, uid=True, sequence_set=_set(uids))
        done = await self._run(command)
        return tuple(r for r in done.data if isinstance(r, ExpungeData | VanishedData))

    async def append(
        self,
        mailbox: str,
        message: bytes | BinaryIO,
        *,
        flags: Sequence[str] = (),
        internal_date: datetime.datetime | None = None,
        size: int | None = None,
    ) -> AppendUidCode | None:
        """APPEND a message; returns the ``APPENDUID`` code (RFC 4315) or ``None``.

        ``message`` is bytes, or a binary file streamed from its current position
        (``size`` octets, by default up to its end), never read whole."""
        if isinstance(message, bytes | bytearray):
            data: bytes | Streamed = bytes(message)
            source = None
        else:
            source = message
            if size is None:
                here = source.tell()
                size = source.seek(0, 2) - here
                source.seek(here)
            data = Streamed(size=size)
        command = c.Append(
            tag=self._core.new_tag(),
            mailbox=mailbox,
            messages=(c.AppendMessage(flags=tuple(flags), internal_date=internal_date, data=data),),
        )
        core = self._core
        feed = None
        if source is not None:
            reader = source

            async def step() -> None:
                wanted = core.literal_wanted
                assert wanted is not None
                chunk = reader.read(min(wanted.remaining, _APPEND_CHUNK))
                if not chunk:
                    raise ValueError("the message file ended before its size")
                core.send_literal_data(chunk)

            feed = _client.Feed(ready=lambda: core.literal_wanted is not None, step=step)
        done = await self._run(command, feed=feed)
        return appenduid(done)

    async def compress(self) -> None:
        """COMPRESS=DEFLATE (RFC 4978): from its OK on, both directions are compressed."""
        async with self._lock:
            done = await self._run_locked(c.Compress(tag=self._core.new_tag()))
            if done.ok:
                self._wire.start_compression()

    def idle(self) -> IMAPIdle:
        """IDLE (RFC 2177) as an async context manager whose value is an async
        iterator of the untagged responses that arrive (``EXISTS``, ``EXPUNGE``,
        ``FETCH`` with new flags)::

            async with client.idle() as news:
                async for response in news:
                    ...  # break to end IDLE

        Leaving the block sends ``DONE`` and waits for the tagged OK. IDLE is renewed
        every ``IMAPTimeouts.idle`` seconds (RFC 2177 §3)."""
        return IMAPIdle(self)

    # --- ending -------------------------------------------------------------------------

    async def logout(self) -> StatusResponse | None:
        """LOGOUT, then close the connection; returns the server's BYE (``None`` if
        the connection was already closed)."""
        if self._stream.closed:
            return None
        try:
            async with self._lock:
                await self._until_done(self._core.logout())
        except IMAPConnectionClosed:
            pass
        finally:
            await self.close()
        return self._bye

    async def close(self) -> None:
        """Close the connection without LOGOUT."""
        await self._stream.close()

    async def __aenter__(self) -> IMAPClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            try:
                await self.logout()
            except IMAPError as error:
                log.debug("LOGOUT from %s failed: %s", self._host, error)
        await self.close()

    # --- moving bytes -------------------------------------------------------------------

    async def _run(
        self, command: c.Command, *, check: bool = True, feed: _client.Feed | None = None
    ) -> Completed:
        async with self._lock:
            return await self._run_locked(command, check=check, feed=feed)

    async def _run_locked(
        self, command: c.Command, *, check: bool = True, feed: _client.Feed | None = None
    ) -> Completed:
        tag = self._core.send(command)
        done = await self._until_done(tag, feed=feed)
        if check and not done.ok:
            raise IMAPCommandError(done.command, done.response)
        return done

    async def _until_done(self, tag: str, *, feed: _client.Feed | None = None) -> Completed:
        """Run the connection until the command tagged ``tag`` completes; hand out
        everything else that arrives meanwhile. The caller holds the lock."""
        while True:
            event = await self._event(None, feed=feed)
            if isinstance(event, Completed) and event.tag == tag:
                return event
            await self._dispatch(event)

    async def _dispatch(self, event: ClientEvent) -> None:
        if isinstance(event, Update):
            await self._notify(event.response)
        elif isinstance(event, Bye):
            self._bye = event.response
        elif isinstance(event, LiteralData):
            sink = self._sink
            if sink is None:
                log.debug("a streamed literal from %s with nowhere to go (dropped)", self._host)
                return
            result = sink(event.data)
            if inspect.isawaitable(result):
                await result
        elif isinstance(event, LiteralStarted | LiteralDone | Completed | IdleStarted):
            pass

    async def _notify(self, response: Response) -> None:
        queue = self._updates
        if queue is not None:
            queue.put_nowait(response)
            return
        handler = self._on_update
        if handler is not None:
            result = handler(response)
            if inspect.isawaitable(result):
                await result

    async def _event(
        self, start: Callable[[], None] | None, *, feed: _client.Feed | None = None
    ) -> ClientEvent:
        """Run the connection until the core's next event. The caller holds the lock."""
        try:
            event: ClientEvent = await _client.request(
                self._wire,
                self._stream,
                start,
                self._wait,
                host=self._host,
                errors=ERRORS,
                closed_event=ConnectionClosed,
                feed=feed,
                rearm_after_write=True,
            )
        except IMAPConnectionClosed as exc:
            if self._bye is not None:
                raise IMAPConnectionClosed(
                    f"{self._host} closed the connection: {self._bye.text}", self._bye
                ) from exc
            raise
        return event

    async def _idle_event(self, deadline: float) -> ClientEvent | None:
        """The next event during IDLE, or ``None`` at ``deadline`` (loop time) with
        the session intact, so that IDLE can be renewed."""
        wire, stream = self._wire, self._stream
        if stream.closed:
            raise IMAPConnectionClosed("the connection is closed")
        while True:
            try:
                event = wire.next_event()
            except RemoteProtocolError as exc:
                stream.abort()
                raise IMAPProtocolError(f"{self._host} broke the protocol: {exc}") from exc
            if isinstance(event, ConnectionClosed):
                stream.abort()
                bye = self._bye
                text = f": {bye.text}" if bye is not None else ""
                raise IMAPConnectionClosed(f"{self._host} closed the connection{text}", bye)
            if not isinstance(event, enum.Enum):
                return event
            out = wire.data_to_send()
            if out:
                stream.write(out)
            try:
                data = await stream.read(deadline)
            except TimeoutError:
                return None
            except asyncio.CancelledError:
                stream.abort()
                raise
            wire.receive_data(data)

    def _wait(self) -> _client.Wait:
        """What the core waits for. IDLE's long wait for news is not here: it runs in
        ``_idle_event``; the ``+`` that starts it and the OK that ends it are
        answers like any other."""
        step = self._core.awaiting or "COMMAND"
        streaming = self._sink is not None or self._core.literal_wanted is not None
        seconds = self._timeouts.data if streaming else self._timeouts.command
        return _client.Wait(key=step, step=step, seconds=seconds)


class IMAPConnecting(_client.Connecting[IMAPClient]):
    """What :meth:`IMAPClient.connect` returns: await it for the :class:`IMAPClient`,
    or use it as an async context manager (which logs out and closes at the end)."""

    def __init__(self, cls: type[IMAPClient], host: str, port: int, **options: Any) -> None:
        super().__init__(lambda: cls._open(host, port, **options))


__all__ += [
    "IMAPAuthenticationError",
    "IMAPCommandError",
    "IMAPConnectionClosed",
    "IMAPError",
    "IMAPProtocolError",
    "IMAPTimeout",
    "IMAPTimeouts",
    "IMAPTLSError",
    "SearchResult",
    "SelectResult",
]
