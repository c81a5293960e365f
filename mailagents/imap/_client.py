"""The IMAP client core; its public face is :mod:`mailagents.imap.client`."""

from __future__ import annotations

import base64
import re
from collections import deque
from collections.abc import Iterator
from typing import Literal

from mailagents import sasl
from mailagents._protocol import LocalProtocolError, RemoteProtocolError, Sentinel
from mailagents.imap import _commands as c
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
from mailagents.imap._client_ops import ClientState, Pending
from mailagents.imap._client_sender import LiteralWanted, Sender
from mailagents.imap._client_view import capabilities_of, enabled_of, is_status, take_buffered
from mailagents.imap._command_writer import write_command
from mailagents.imap._frame import Frame
from mailagents.imap._framing import FrameReceived, LiteralChunk, LiteralEnd, LiteralStart
from mailagents.imap._framing_client import ResponseReader
from mailagents.imap._response_parser import parse_response
from mailagents.imap._responses import ESearchData, Response, StatusResponse
from mailagents.sasl._exchange import ClientExchange

__all__ = ["ClientConnection", "ClientState"]

_TAG_PREFIX = re.compile(r'[^(){ \x00-\x1f\x7f%*"\\+\]\x80-\U0010ffff]{1,16}')
_MAX_AUTH_ROUNDS = 32


def _kind(frame: Frame) -> str:
    """The kind of an untagged response, read off its first line: ``* 3 EXISTS`` is
    ``EXISTS``, ``* OK [ALERT] ...`` is ``OK``."""
    words = frame.lines[0].split(b" ", 3)
    name = words[1] if len(words) > 1 else b""
    if name.isdigit() and len(words) > 2:
        name = words[2]
    return name.upper().decode("ascii", "replace")


class ClientConnection:
    """One IMAP session, client side, with no I/O (RFC 9051 IMAP4rev2, RFC 3501
    IMAP4rev1).

    Feed the server's bytes to :meth:`receive_data` (``b""`` when it closed), take
    events from :meth:`next_event` until ``NEED_DATA``, write :meth:`data_to_send`.
    Commands are given to :meth:`send` (built with a tag from :meth:`new_tag`) or
    through the shortcuts (:meth:`login`, :meth:`authenticate`, :meth:`starttls`,
    :meth:`idle`, ...), each returning the command's tag; each ends in one
    :class:`~mailagents.imap.client.Completed` carrying that tag.

    Commands are pipelined: each goes out as soon as the ones before it are wholly on
    the wire; one held at a synchronising literal (``{n}``, waiting for the server's
    ``+``) holds back those after it. With LITERAL+ (RFC 7888) every literal goes at
    once, with LITERAL- (or IMAP4rev2) those up to 4096 octets. STARTTLS,
    AUTHENTICATE, IDLE and COMPRESS go only when nothing else is pending, and nothing
    may be sent until their answer (:class:`~mailagents.imap.LocalProtocolError`).

    ``tls_active``: the transport is already encrypted (implicit TLS, RFC 8314).
    ``require_tls``: a ``PREAUTH`` greeting over a clear connection ends the session
    (RFC 9051 §11.1: the client could never start TLS). ``max_line`` bounds one
    response line, ``max_response`` one response without its streamed literals,
    ``inline_max`` the literals kept in a response (bigger ones stream out as
    :class:`~mailagents.imap.client.LiteralData` events of up to ``chunk_size``
    octets).
    """

    def __init__(
        self,
        *,
        tls_active: bool = False,
        require_tls: bool = False,
        tag_prefix: str = "A",
        max_line: int = 65_536,
        max_response: int = 8 * 1_048_576,
        inline_max: int = 1_048_576,
        chunk_size: int = 65_536,
    ) -> None:
        if not isinstance(tag_prefix, str) or not _TAG_PREFIX.fullmatch(tag_prefix):
            raise LocalProtocolError("tag_prefix must be 1 to 16 tag characters (RFC 9051 §9)")
        self._limits = {
            "max_line": max_line,
            "max_response": max_response,
            "inline_max": inline_max,
            "chunk_size": chunk_size,
        }
        self._reader = ResponseReader(**self._limits)
        self._out = bytearray()
        self._sender = Sender(self._out)
        self._events: deque[ClientEvent] = deque()
        self._pending: dict[str, Pending] = {}
        self._tls = tls_active
        self._require_tls = require_tls
        self._prefix = tag_prefix
        self._counter = 0
        self._phase: Literal["greeting", "ready", "tls", "compress", "closed", "broken"]
        self._phase = "greeting"
        self._state = ClientState.NOT_AUTHENTICATED
        self._selected: str | None = None
        self._read_only = False
        self._capabilities: frozenset[str] | None = None
        self._fresh_capabilities: frozenset[str] | None = None
        self._enabled: frozenset[str] = frozenset()
        self._error: RemoteProtocolError | None = None
        self._eof = False
        self._logout = False
        self._bye: StatusResponse | None = None
        self._compressed = False

    # --- state -----------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        """The session's state after the commands answered so far."""
        return self._state

    @property
    def selected(self) -> str | None:
        """The mailbox selected (decoded name), or ``None``."""
        return self._selected if self._state is ClientState.SELECTED else None

    @property
    def read_only(self) -> bool:
        """Whether the selected mailbox is read-only (EXAMINE, or ``[READ-ONLY]``)."""
        return self._read_only

    @property
    def capabilities(self) -> frozenset[str] | None:
        """The server's capabilities, upper case (``"IMAP4REV2"``, ``"AUTH=PLAIN"``),
        from the greeting's or a tagged OK's ``CAPABILITY`` code or a ``CAPABILITY``
        response; ``None`` when unknown (before any, and after STARTTLS and a login
        that did not come with new ones: ask with CAPABILITY, RFC 9051 §6.2.1, §6.2.3)."""
        return self._capabilities

    def has(self, capability: str) -> bool:
        """Whether the server announced ``capability`` (any case)."""
        caps = self._capabilities
        return caps is not None and capability.upper() in caps

    @property
    def enabled(self) -> frozenset[str]:
        """The extensions ENABLE turned on (RFC 5161: ``"CONDSTORE"``,
        ``"QRESYNC"``, ``"UTF8=ACCEPT"``, ``"IMAP4REV2"``), upper case."""
        return self._enabled

    @property
    def utf8(self) -> bool:
        """Whether strings and mailbox names are UTF-8 (UTF8=ACCEPT, RFC 6855, or
        IMAP4rev2 enabled)."""
        return bool(self._enabled & {"UTF8=ACCEPT", "IMAP4REV2"})

    @property
    def tls_active(self) -> bool:
        """Whether the session runs over TLS (implicit, or after :meth:`tls_started`)."""
        return self._tls

    @property
    def compressed(self) -> bool:
        """Whether COMPRESS=DEFLATE is in force (RFC 4978)."""
        return self._compressed

    @property
    def closed(self) -> bool:
        """Whether the session is over (closed, or failed)."""
        return self._phase in ("closed", "broken")

    @property
    def pending(self) -> tuple[str, ...]:
        """The tags of the commands not yet answered, in the order sent."""
        return tuple(self._pending)

    @property
    def awaiting(self) -> str | None:
        """What the next server input answers, for an adapter's time-outs:
        ``"GREETING"``, the name of the oldest pending command (``"FETCH"``,
        ``"IDLE"``), or ``None`` when nothing is awaited."""
        if self._phase == "greeting":
            return "GREETING"
        if self._phase != "ready" or not self._pending:
            return None
        return next(iter(self._pending.values())).name

    @property
    def idling(self) -> bool:
        """Whether an IDLE is under way (sent, and not yet answered)."""
        return any(isinstance(p.command, c.Idle) for p in self._pending.values())

    @property
    def literal_wanted(self) -> LiteralWanted | None:
        """The streamed literal whose octets :meth:`send_literal_data` must give now
        (an APPEND of a ``Streamed`` message, once the server said go ahead), or
        ``None``."""
        return self._sender.wanted

    # --- I/O -------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the server; ``b""`` means it closed.

        Raises :class:`~mailagents.imap.LocalProtocolError` for bytes fed between
        STARTTLS's OK and :meth:`tls_started` (or COMPRESS's OK and
        :meth:`compression_started`), and once :meth:`next_event` raised
        :class:`~mailagents.imap.RemoteProtocolError`, that error again."""
        if self._error is not None:
            raise self._error
        if self._phase in ("tls", "compress") and data:
            what = "tls_started()" if self._phase == "tls" else "compression_started()"
            raise LocalProtocolError(f"receive_data before {what}")
        if self._eof or self._phase == "closed":
            return
        if not data:
            self._eof = True
        self._reader.receive_data(data)

    def data_to_send(self) -> bytes:
        """The bytes to write to the server now."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> ClientEvent | Literal[Sentinel.NEED_DATA]:
        """The next event, or ``NEED_DATA`` when more input is needed.

        Raises :class:`~mailagents.imap.RemoteProtocolError` when the server broke the
        protocol (a malformed response, a tag nothing was sent with, a ``+`` nothing
        waited for, bytes after STARTTLS's go-ahead); the session cannot go on and every
        later call raises the same error."""
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except RemoteProtocolError as exc:
            self._fail(exc)
            raise

    def events(self) -> Iterator[ClientEvent]:
        """Iterate over :meth:`next_event` until it returns ``NEED_DATA``."""
        while True:
            event = self.next_event()
            if isinstance(event, Sentinel):
                return
            yield event

    # --- TLS and compression ---------------------------------------------------------

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS's OK is done. The capabilities learned
        before are forgotten (RFC 9051 §6.2.1): ask CAPABILITY again."""
        if self._phase != "tls":
            raise LocalProtocolError("tls_started() without STARTTLS answered OK")
        self._tls = True
        self._capabilities = None
        self._reader = ResponseReader(**self._limits)
        self._phase = "ready"

    def compression_started(self) -> bytes:
        """COMPRESS's OK was reported: from here on both directions are compressed
        (RFC 4978 §3). Returns what the server sent after the OK, already compressed:
        decompress it and everything that follows before :meth:`receive_data`, and
        compress :meth:`data_to_send` before writing it."""
        if self._phase != "compress":
            raise LocalProtocolError("compression_started() without COMPRESS answered OK")
        left = take_buffered(self._reader)
        self._reader = ResponseReader(**self._limits)
        self._phase = "ready"
        self._compressed = True
        return left

    # --- commands --------------------------------------------------------------------

    def new_tag(self) -> str:
        """A tag no command of this session had (``A0001``, ``A0002``...)."""
        self._counter += 1
        return f"{self._prefix}{self._counter:04d}"

    def send(self, command: c.Command) -> str:
        """Send a command (its ``tag`` from :meth:`new_tag`); returns the tag.

        Strings go in the form the grammar needs (a literal for any holding CR or LF:
        they can never end the command line early). Raises
        :class:`~mailagents.imap.LocalProtocolError` for a command the session cannot
        take now (a tag in use, anything while STARTTLS, AUTHENTICATE, IDLE or COMPRESS
        awaits its answer, STARTTLS over TLS or after login, LOGIN when the server says
        LOGINDISABLED, the session over)."""
        try:
            if isinstance(command, c.Authenticate):
                raise LocalProtocolError("use authenticate(mechanism) for AUTHENTICATE")
            self._start(Pending(command))
        except LocalProtocolError:
            self._unused(command.tag)
            raise
        return command.tag

    def _unused(self, tag: str) -> None:
        """A refused command's tag, if it was the last one made, is made again."""
        if tag == f"{self._prefix}{self._counter:04d}":
            self._counter -= 1

    def capability(self) -> str:
        """CAPABILITY (RFC 9051 §6.1.1); its response also updates :attr:`capabilities`."""
        return self.send(c.Capability(tag=self.new_tag()))

    def noop(self) -> str:
        """NOOP (RFC 9051 §6.1.2): the server's chance to report mailbox news."""
        return self.send(c.Noop(tag=self.new_tag()))

    def logout(self) -> str:
        """LOGOUT (RFC 9051 §6.1.3): ``BYE``, the tagged OK, then
        :class:`~mailagents.imap.client.ConnectionClosed`."""
        return self.send(c.Logout(tag=self.new_tag()))

    def starttls(self) -> str:
        """STARTTLS (RFC 9051 §6.2.1). On its OK, start TLS on the transport and call
        :meth:`tls_started`; a server that sent anything after the OK in the clear is
        an attacker injecting responses (:class:`~mailagents.imap.RemoteProtocolError`)."""
        return self.send(c.StartTLS(tag=self.new_tag()))

    def login(self, user: str, password: str) -> str:
        """LOGIN (RFC 9051 §6.2.3). The password crosses the wire as it is: an adapter
        should allow it only over TLS."""
        return self.send(c.Login(tag=self.new_tag(), user=user, password=password))

    def authenticate(self, mechanism: sasl.ClientMechanism, *, initial: bool | None = None) -> str:
        """AUTHENTICATE with a SASL client mechanism (RFC 9051 §6.2.2); returns the tag.

        The initial response goes on the command line when ``initial`` is true, or,
        with ``None``, when the server announced SASL-IR (RFC 4959); otherwise it
        answers the server's first, empty, challenge. Challenges are answered by the
        mechanism; one that is not base64, or that the mechanism refuses, cancels the
        exchange (``*``). On the tagged OK the mechanism must accept the server's proof
        (SCRAM), else the :class:`~mailagents.imap.client.Completed` has an ``error``.
        When the capabilities are known, ``AUTH=<name>`` must be among them."""
        if not isinstance(mechanism, sasl.ClientMechanism):
            raise LocalProtocolError("mechanism must be a sasl.ClientMechanism")
        name = mechanism.name.upper()
        if self._capabilities is not None and f"AUTH={name}" not in self._capabilities:
            raise LocalProtocolError(f"the server does not offer AUTH={name}")
        self._check(None)
        exchange = ClientExchange(mechanism)
        use_ir = self.has("SASL-IR") if initial is None else initial
        response: bytes | None = None
        if use_ir:
            argument = exchange.initial_argument(None)
            if argument is not None:
                response = b"" if argument == "=" else base64.b64decode(argument)
        else:
            exchange.initial_argument(0)  # held for the first, empty, challenge
        command = c.Authenticate(tag=self.new_tag(), mechanism=name, initial_response=response)
        self._start(Pending(command, exchange))
        return command.tag

    def idle(self) -> str:
        """IDLE (RFC 2177): :class:`~mailagents.imap.client.IdleStarted` once the server
        accepts, then :class:`~mailagents.imap.client.Update` events until
        :meth:`idle_done`, whose tagged OK ends it."""
        return self.send(c.Idle(tag=self.new_tag()))

    def idle_done(self) -> None:
        """End IDLE with ``DONE`` (sent once the server accepted IDLE)."""
        for pending in self._pending.values():
            if isinstance(pending.command, c.Idle) and not pending.done_sent:
                pending.done_sent = True
                if pending.idle_started:
                    self._out += b"DONE\r\n"
                return
        raise LocalProtocolError("idle_done() without an IDLE under way")

    def send_literal_data(self, data: bytes) -> None:
        """The next octets of the streamed literal :attr:`literal_wanted` asks for."""
        if self._phase != "ready":
            raise LocalProtocolError("the session cannot send now")
        self._sender.literal_data(data)

    # --- internals: sending ----------------------------------------------------------

    def _check(self, command: c.Command | None) -> None:
        if self._error is not None:
            raise self._error
        if self._phase in ("tls", "compress"):
            raise LocalProtocolError("finish the TLS handshake or compression start first")
        if self._phase in ("closed", "broken") or self._logout:
            raise LocalProtocolError("the session is over")
        for pending in self._pending.values():
            if pending.holds_line:
                raise LocalProtocolError(f"nothing may be sent until {pending.name} is answered")
        holds = command is None or isinstance(command, c.StartTLS | c.Idle | c.Compress)
        if holds and self._pending:
            raise LocalProtocolError("this command may only be sent when nothing else is pending")
        if command is not None and command.tag in self._pending:
            raise LocalProtocolError(f"tag {command.tag!r} is in use")
        if isinstance(command, c.StartTLS):
            if self._tls:
                raise LocalProtocolError("TLS is already active")
            if self._state is not ClientState.NOT_AUTHENTICATED:
                raise LocalProtocolError("STARTTLS only before login (RFC 9051 §6.2.1)")
        if isinstance(command, c.Login) and self.has("LOGINDISABLED"):
            raise LocalProtocolError("the server announced LOGINDISABLED (RFC 9051 §6.2.3)")
        if isinstance(command, c.Compress) and self._compressed:
            raise LocalProtocolError("compression is already active (RFC 4978 §3)")

    def _start(self, pending: Pending) -> None:
        self._check(pending.command if pending.exchange is None else None)
        frame = write_command(
            pending.command,
            literal_plus=self.has("LITERAL+"),
            literal_minus=self.has("LITERAL-") or self.has("IMAP4REV2"),
            utf8=self.utf8,
            binary=self.has("BINARY"),
        )
        self._pending[pending.tag] = pending
        if isinstance(pending.command, c.Logout):
            self._logout = True
        if isinstance(pending.command, c.Login | c.Authenticate):
            self._fresh_capabilities = None
        self._sender.add(pending.tag, frame)

    # --- internals: receiving --------------------------------------------------------

    def _fail(self, exc: RemoteProtocolError) -> None:
        self._error = exc
        self._phase = "broken"
        self._pending.clear()

    def _next(self) -> ClientEvent | Literal[Sentinel.NEED_DATA]:
        while True:
            if self._events:
                return self._events.popleft()
            if self._phase not in ("greeting", "ready"):
                return Sentinel.NEED_DATA
            event = self._reader.next_event()
            if isinstance(event, Sentinel):
                if self._eof:
                    self._close()
                    continue
                return Sentinel.NEED_DATA
            if isinstance(event, FrameReceived):
                self._frame(event.frame)
            elif isinstance(event, LiteralStart):
                self._emit(
                    LiteralStarted(
                        index=event.index, size=event.size, binary=event.binary, head=event.head
                    )
                )
            elif isinstance(event, LiteralChunk):
                self._emit(LiteralData(index=event.index, data=event.data))
            elif isinstance(event, LiteralEnd):
                self._emit(LiteralDone(index=event.index))
            else:  # pragma: no cover - the client reader has no other events
                raise RemoteProtocolError(f"unexpected reader event {event!r}")

    def _emit(self, event: ClientEvent) -> None:
        self._events.append(event)

    def _close(self) -> None:
        self._phase = "closed"
        self._state = ClientState.LOGOUT
        self._pending.clear()
        self._emit(ConnectionClosed())

    def _parse(self, frame: Frame) -> Response:
        try:
            return parse_response(frame, utf8=self.utf8)
        except RemoteProtocolError:
            raise
        except Exception as exc:  # the parser's syntax error
            raise RemoteProtocolError(f"malformed response: {exc}") from exc

    def _frame(self, frame: Frame) -> None:
        first = frame.lines[0]
        if self._phase == "greeting":
            self._greeting(frame)
        elif first.startswith(b"+"):
            self._continuation(frame)
        elif first.startswith(b"* "):
            self._untagged(frame)
        else:
            self._tagged(frame)

    def _greeting(self, frame: Frame) -> None:
        response = self._parse(frame)
        if not is_status(response) or response.tag is not None:
            raise RemoteProtocolError("the server's greeting is not OK, PREAUTH or BYE")
        assert isinstance(response, StatusResponse)
        status = response.status
        if status not in ("OK", "PREAUTH", "BYE"):
            raise RemoteProtocolError(f"the server's greeting is {status}")
        if status == "PREAUTH" and self._require_tls and not self._tls:
            # RFC 9051 §11.1: over a clear connection a PREAUTH session can never move
            # to TLS; a client that requires TLS must not go on.
            raise RemoteProtocolError("PREAUTH greeting without TLS, and TLS is required")
        caps = capabilities_of(response)
        if caps is not None:
            self._capabilities = caps
        self._emit(Greeting(response=response))
        if status == "BYE":
            self._bye = response
            self._phase = "ready"
            self._logout = True
            return
        if status == "PREAUTH":
            self._state = ClientState.AUTHENTICATED
        self._phase = "ready"

    def _continuation(self, frame: Frame) -> None:
        if len(frame.lines) > 1:  # pragma: no cover - the reader never makes one
            raise RemoteProtocolError("a continuation request announces no literal")
        sender = self._sender
        if sender.waiting is not None:
            sender.go_ahead()
            return
        for pending in self._pending.values():
            if pending.exchange is not None and not sender.pending(pending.tag):
                self._challenge(pending, frame.lines[0])
                return
            if isinstance(pending.command, c.Idle) and not pending.idle_started:
                pending.idle_started = True
                if pending.done_sent:
                    self._out += b"DONE\r\n"
                self._emit(IdleStarted(tag=pending.tag))
                return
        raise RemoteProtocolError("a continuation request nothing waited for (RFC 9051 §7.5)")

    def _challenge(self, pending: Pending, line: bytes) -> None:
        exchange = pending.exchange
        assert exchange is not None
        pending.rounds += 1
        if pending.rounds > _MAX_AUTH_ROUNDS:
            raise RemoteProtocolError("the server sends challenges without end")
        # RFC 9051 §7.5: "+" SP base64; a challenge that is not base64 cancels ("*").
        text = line[2:] if line.startswith(b"+ ") else line[1:]
        self._out += exchange.answer(text.decode("ascii", "replace"))

    def _tagged(self, frame: Frame) -> None:
        response = self._parse(frame)
        # The parser reads a tagged line as a status response, OK, NO or BAD only.
        if not is_status(response) or response.tag is None:  # pragma: no cover
            raise RemoteProtocolError("a tagged response must be OK, NO or BAD")
        tag = response.tag
        pending = self._pending.get(tag)
        if pending is None or self._sender.unsent(tag):
            raise RemoteProtocolError(f"a tagged response for tag {tag!r}, not a command sent")
        del self._pending[tag]
        self._sender.finished(tag)
        self._completed(pending, response)

    def _completed(self, pending: Pending, response: StatusResponse) -> None:
        command = pending.command
        ok = response.status == "OK"
        error: str | None = None
        data = tuple(pending.data)
        if pending.exchange is not None:
            exchange = pending.exchange
            if ok and not exchange.verify(None):
                ok = False
            error = exchange.error
            data = ()
        caps = capabilities_of(response)
        if isinstance(command, c.Login | c.Authenticate):
            if ok:
                # RFC 9051 §6.2.3: capabilities may change with login; keep only those
                # sent with it.
                self._capabilities = caps or self._fresh_capabilities
                self._state = ClientState.AUTHENTICATED
            elif caps is not None:
                self._capabilities = caps
        elif caps is not None:
            self._capabilities = caps
        if isinstance(command, c.Select | c.Examine):
            if ok:
                self._state = ClientState.SELECTED
                self._selected = command.mailbox
                code = getattr(response.code, "name", None)
                self._read_only = isinstance(command, c.Examine) or code == "READ-ONLY"
            elif self._state is ClientState.SELECTED:
                # RFC 9051 §6.3.2: a failed SELECT leaves no mailbox selected.
                self._state = ClientState.AUTHENTICATED
                self._selected = None
        elif isinstance(command, c.Close | c.Unselect) and ok:
            self._state = ClientState.AUTHENTICATED
            self._selected = None
        self._emit(
            Completed(
                tag=pending.tag, command=pending.name, response=response, data=data, error=error
            )
        )
        if isinstance(command, c.StartTLS) and ok:
            if self._reader.buffered:
                # The STARTTLS response injection attack (CVE-2011-0411's class, RFC
                # 9051 §6.2.1: TLS starts right after the OK's CRLF): bytes sent in the
                # clear after the go-ahead would pass for TLS-protected responses.
                # Nothing honest sends them.
                raise RemoteProtocolError("data after STARTTLS's OK, before TLS: an injection")
            self._phase = "tls"
        elif isinstance(command, c.Compress) and ok:
            self._phase = "compress"
        elif isinstance(command, c.Logout):
            self._close()

    def _untagged(self, frame: Frame) -> None:
        kind = _kind(frame)
        response = self._parse(frame)
        # RFC 4731 §3.1: an ESEARCH names the command it answers, (TAG "A5").
        correlator = response.tag if isinstance(response, ESearchData) else None
        if isinstance(response, StatusResponse) and response.status == "BYE":
            self._bye = response
            self._logout = True
            for pending in self._pending.values():
                if isinstance(pending.command, c.Logout):
                    pending.data.append(response)
            self._emit(Bye(response=response))
            return
        caps = capabilities_of(response)
        if caps is not None:
            self._capabilities = caps
            if any(isinstance(p.command, c.Login | c.Authenticate) for p in self._pending.values()):
                self._fresh_capabilities = caps
        self._enabled = self._enabled | enabled_of(response)
        target = self._owner(kind, correlator)
        if target is None:
            self._emit(Update(response=response))
        else:
            target.data.append(response)

    def _owner(self, kind: str, correlator: str | None) -> Pending | None:
        if correlator is not None:
            return self._pending.get(correlator)
        for pending in self._pending.values():
            if kind in pending.kinds:
                return pending
        return None
