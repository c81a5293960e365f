"""The POP3 client core; its public face is :mod:`mailagents.pop3.client`."""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Literal

from mailagents import sasl
from mailagents._protocol import LineReader, LocalProtocolError, RemoteProtocolError
from mailagents.pop3._client_events import ClientEvent, ConnectionClosed
from mailagents.pop3._client_ops import (
    _Apop,
    _Auth,
    _Capa,
    _GreetingOp,
    _ListAll,
    _Login,
    _Op,
    _Phase,
    _Retrieve,
    _Simple,
    _SingleLine,
)
from mailagents.pop3._response import Response, Sentinel, parse_response
from mailagents.sasl._exchange import ClientExchange

__all__ = ["ClientConnection", "apop_digest"]

# RFC 2449 §4: a command line is at most 255 octets, CRLF included. RFC 5034 §4 applies
# it to AUTH with its initial response (a longer one waits for an empty challenge); the
# client's later SASL responses are not command lines and are not bound by it.
_MAX_COMMAND = 255
_MECHANISM = re.compile(r"[A-Z0-9_-]{1,20}")  # RFC 4422 §3.1
_INJECTION = re.compile(r"[\x00\r\n]")


def apop_digest(challenge: str, secret: str) -> str:
    """The APOP digest (RFC 1939 §7): the lower-case hex MD5 of the greeting's
    timestamp, brackets included, followed by the shared secret (UTF-8).

    MD5 and a plaintext-equivalent secret make APOP a legacy mechanism: prefer SASL
    SCRAM-SHA-256 over TLS.
    """
    return hashlib.md5((challenge + secret).encode("utf-8"), usedforsecurity=False).hexdigest()


# --- checks on caller values ----------------------------------------------------------


def _text(what: str, value: object, *, spaces: bool = True) -> str:
    if not isinstance(value, str):
        raise LocalProtocolError(f"{what} must be a str, not {type(value).__name__}")
    if _INJECTION.search(value):
        raise LocalProtocolError(f"{what} must not contain CR, LF or NUL")
    if not value:
        raise LocalProtocolError(f"{what} must not be empty")
    if not spaces and " " in value:
        raise LocalProtocolError(f"{what} must not contain spaces")
    return value


def _number(what: str, value: object, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LocalProtocolError(f"{what} must be an int, not {type(value).__name__}")
    if value < minimum or value >= 10**10:
        raise LocalProtocolError(f"{what} must be between {minimum} and 9999999999")
    return value


def _command(line: str) -> bytes:
    """A command line on the wire, with the last guard against injection."""
    data = line.encode("utf-8")
    if _INJECTION.search(line):  # pragma: no cover - every argument is checked before
        raise LocalProtocolError("CR, LF or NUL in a command")
    if len(data) + 2 > _MAX_COMMAND:
        raise LocalProtocolError(
            f"the command would be {len(data) + 2} octets; RFC 2449 §4 allows 255"
        )
    return data + b"\r\n"


# --- the connection -------------------------------------------------------------------


class ClientConnection:
    """One POP3 session, client side, with no I/O.

    ``max_line`` bounds one response line in octets, line end included (RFC 2449 §4 allows
    servers 512; the default is lenient); ``max_entries`` the lines of a LIST or UIDL
    listing; ``chunk_size`` the octets of one :class:`~mailagents.pop3.client.MessageChunk`.
    A server that exceeds a bound ends the session with
    :class:`~mailagents.pop3.RemoteProtocolError`. ``tls_active`` says the transport is
    already encrypted (implicit TLS, RFC 8314).

    Requests may be queued at any time (before the greeting too, except APOP, which
    needs its timestamp); they run in order. When the server announced PIPELINING
    (RFC 2449 §6.6) they are written at once, except AUTH and STLS, which wait for
    the requests before them; otherwise each waits for the response to the one before.
    :class:`~mailagents.pop3.client.ConnectionClosed` ends the session: after QUIT's answer,
    or when the server closed (a request in progress then gets no event of its own).
    """

    def __init__(
        self,
        *,
        max_line: int = 8192,
        max_entries: int = 1_000_000,
        chunk_size: int = 65536,
        tls_active: bool = False,
    ) -> None:
        if max_line < 512:
            raise LocalProtocolError("max_line must be at least 512 (RFC 2449 §4)")
        if max_entries < 1 or chunk_size < 1:
            raise LocalProtocolError("max_entries and chunk_size must be positive")
        self._max_line = max_line
        self._max_entries = max_entries
        self._chunk_size = chunk_size
        self._tls = tls_active
        self._lines = LineReader()
        self._buf = self._lines.buffer
        self._out = bytearray()
        self._events: deque[ClientEvent] = deque()
        self._ops: deque[_Op] = deque()
        self._phase = _Phase.GREETING
        self._eof = False
        self._error: RemoteProtocolError | None = None
        self._capabilities: dict[str, tuple[str, ...]] = {}
        self._capabilities_known = False
        self._challenge: str | None = None
        self._authenticated = False
        self._utf8 = False
        self._quit_queued = False
        self._at_line_start = True
        greeting = _GreetingOp()
        greeting.started = True
        self._ops.append(greeting)

    # --- state -----------------------------------------------------------------------

    @property
    def capabilities(self) -> Mapping[str, tuple[str, ...]]:
        """The capabilities of the last CAPA answer (upper-case tag to arguments);
        empty before CAPA, when the server has none, and after :meth:`tls_started`."""
        return MappingProxyType(self._capabilities)

    @property
    def can_pipeline(self) -> bool:
        """Whether the server announced PIPELINING (RFC 2449 §6.6)."""
        return "PIPELINING" in self._capabilities

    @property
    def challenge(self) -> str | None:
        """The APOP timestamp of the greeting (RFC 1939 §7), or ``None``."""
        return self._challenge

    @property
    def tls_active(self) -> bool:
        """Whether the session runs over TLS (implicit, or after :meth:`tls_started`)."""
        return self._tls

    @property
    def authenticated(self) -> bool:
        """Whether a login (USER/PASS, APOP or AUTH) succeeded in this session."""
        return self._authenticated

    @property
    def utf8_enabled(self) -> bool:
        """Whether the server accepted the UTF8 command (RFC 6856 §2)."""
        return self._utf8

    @property
    def closed(self) -> bool:
        """Whether :class:`~mailagents.pop3.client.ConnectionClosed` was reported (or the
        session failed)."""
        return self._phase in (_Phase.CLOSED, _Phase.BROKEN)

    @property
    def awaiting(self) -> str | None:
        """What the next server input answers, so that an adapter can apply its
        time-outs: ``"GREETING"``, or the command sent (``"USER"``, ``"PASS"``,
        ``"AUTH"``, ``"STAT"``, ``"RETR"`` while the message streams in...). ``None``
        when no response is awaited."""
        if self._phase not in (_Phase.GREETING, _Phase.READY) or not self._ops:
            return None
        head = self._ops[0]
        return head.awaiting if head.started else None

    # --- I/O -------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the server; ``b""`` means the server closed.

        Raises :class:`~mailagents.pop3.LocalProtocolError` for bytes fed between STLS
        and :meth:`tls_started`, and, once :meth:`next_event` raised
        :class:`~mailagents.pop3.RemoteProtocolError`, that same error again."""
        if self._error is not None:
            raise self._error
        if self._phase is _Phase.TLS_PENDING and data:
            raise LocalProtocolError("receive_data before tls_started(): start TLS first")
        if not data:
            self._eof = True
            return
        if self._eof or self._phase in (_Phase.CLOSED, _Phase.BROKEN, _Phase.CLOSING):
            return  # nothing after the close (or a refusing greeting) is read
        self._buf += data

    def data_to_send(self) -> bytes:
        """The bytes to write to the server now (a pipelined group in one piece)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> ClientEvent | Literal[Sentinel.NEED_DATA]:
        """The next event, or ``NEED_DATA`` when more server input is needed.

        Handling a response may queue the next commands: write :meth:`data_to_send` whenever
        this returns ``NEED_DATA``. Raises :class:`~mailagents.pop3.RemoteProtocolError`
        when the server broke the protocol (a malformed or over-long line, a response
        nothing asked for); the session cannot go on, and the core stays failed: every
        later :meth:`receive_data`, :meth:`next_event` and request raises the same error.
        """
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except RemoteProtocolError as exc:
            self._error = exc
            self._phase = _Phase.BROKEN
            self._ops.clear()
            self._buf.clear()
            raise

    def _next(self) -> ClientEvent | Literal[Sentinel.NEED_DATA]:
        while True:
            if self._events:
                return self._events.popleft()
            phase = self._phase
            if phase is _Phase.CLOSED or phase is _Phase.TLS_PENDING:
                return Sentinel.NEED_DATA
            if phase is _Phase.CLOSING:
                self._buf.clear()
                if self._eof:
                    self._close()
                    continue
                return Sentinel.NEED_DATA
            head = self._ops[0] if self._ops and self._ops[0].started else None
            if head is None:
                if b"\n" in self._buf or len(self._buf) >= self._max_line:
                    raise RemoteProtocolError(
                        f"unexpected data from the server: {bytes(self._buf[:60])!r}"
                    )
                if self._eof:
                    self._close()
                    continue
                return Sentinel.NEED_DATA
            if head.step(self):
                if head.done and self._ops and self._ops[0] is head:
                    self._ops.popleft()
                    self._pump()
                continue
            if self._eof:
                self._close()
                continue
            return Sentinel.NEED_DATA

    def events(self) -> Iterator[ClientEvent]:
        """Iterate over :meth:`next_event` until it returns ``NEED_DATA``."""
        while True:
            event = self.next_event()
            if isinstance(event, Sentinel):
                return
            yield event

    # --- commands --------------------------------------------------------------------

    def capa(self) -> None:
        """CAPA (RFC 2449 §5); ends with :class:`~mailagents.pop3.client.Capabilities`, also kept in
        :attr:`capabilities` (which decides pipelining, STLS and SASL)."""
        self._check()
        self._queue(_Capa())

    def stls(self) -> None:
        """STLS (RFC 2595 §4). On the :class:`~mailagents.pop3.client.Reply` with ``+OK``,
        start TLS on the transport and call :meth:`tls_started`; nothing may be queued
        before that."""
        self._check()
        if self._tls:
            raise LocalProtocolError("TLS is already active")
        if self._authenticated or self._any(_Login, _Apop, _Auth):
            raise LocalProtocolError("STLS only before login (RFC 2595 §4)")
        if self._capabilities_known and "STLS" not in self._capabilities:
            raise LocalProtocolError("the server does not offer STLS")
        self._queue(_Simple("STLS", b"STLS\r\n", pipelinable=False))

    def tls_started(self) -> None:
        """Tell the core the TLS handshake after STLS's ``+OK`` completed.

        The capabilities learned before are forgotten (RFC 2595 §4): CAPA again."""
        if self._phase is not _Phase.TLS_PENDING:
            raise LocalProtocolError("tls_started() without a STLS accepted with +OK")
        self._tls = True
        self._capabilities = {}
        self._capabilities_known = False
        self._buf.clear()
        self._phase = _Phase.READY
        self._pump()

    def utf8(self) -> None:
        """UTF8 (RFC 6856 §2), before login: the server may then use UTF-8 and accepts
        it in USER and PASS. Ends with :class:`~mailagents.pop3.client.Reply`."""
        self._check()
        self._check_login()
        self._queue(_Simple("UTF8", b"UTF8\r\n"))

    def login(self, user: str, password: str) -> None:
        """USER and PASS (RFC 1939 §7); ends with :class:`~mailagents.pop3.client.AuthResult`.

        The password crosses the wire as it is: an adapter should allow this only over
        TLS. Spaces are allowed (a server takes the rest of the PASS line)."""
        _text("the user name", user)
        _text("the password", password)
        self._check()
        self._check_login()
        self._queue(_Login(_command(f"USER {user}"), _command(f"PASS {password}")))

    def apop(self, user: str, secret: str) -> None:
        """APOP (RFC 1939 §7) with the greeting's timestamp; ends with
        :class:`~mailagents.pop3.client.AuthResult`. Legacy (MD5): prefer :meth:`authenticate`."""
        _text("the user name", user, spaces=False)
        _text("the secret", secret)
        self._check()
        self._check_login()
        if self._phase is _Phase.GREETING:
            raise LocalProtocolError("wait for the greeting: APOP needs its timestamp")
        if self._challenge is None:
            raise LocalProtocolError("the server's greeting has no APOP timestamp")
        line = _command(f"APOP {user} {apop_digest(self._challenge, secret)}")
        self._queue(_Apop(line))

    def authenticate(self, mechanism: sasl.ClientMechanism, *, initial: bool = True) -> None:
        """AUTH with a SASL client mechanism (RFC 5034); ends with
        :class:`~mailagents.pop3.client.AuthResult`.

        The initial response goes on the AUTH line (``=`` when empty) unless
        ``initial`` is false, the mechanism has none, or the line would pass 255
        octets (it then answers the server's empty challenge). Challenges are answered
        by ``mechanism.respond``; on ``+OK``, ``mechanism.verify_success`` must pass
        (SCRAM checks the server's signature). A challenge that is not base64, or one
        the mechanism refuses, cancels the exchange with ``*``. When the capabilities
        are known, the mechanism must be among those of the SASL capability.
        """
        if not isinstance(mechanism, sasl.ClientMechanism):
            raise LocalProtocolError("mechanism must be a sasl.ClientMechanism")
        name = _text("the mechanism name", mechanism.name).upper()
        if not _MECHANISM.fullmatch(name):
            raise LocalProtocolError(f"invalid SASL mechanism name {name!r}")
        self._check()
        self._check_login()
        if self._capabilities_known:
            offered = [m.upper() for m in self._capabilities.get("SASL", ())]
            if name not in offered:
                raise LocalProtocolError(f"the server does not offer SASL {name}")
        line = f"AUTH {name}"
        exchange = ClientExchange(mechanism)
        if initial:
            argument = exchange.initial_argument(_MAX_COMMAND - len(line) - 3)
            if argument is not None:
                line += " " + argument
        self._queue(_Auth(exchange, _command(line)))

    def stat(self) -> None:
        """STAT (RFC 1939 §5); ends with :class:`~mailagents.pop3.client.Stat` (or
        :class:`~mailagents.pop3.client.Reply` on -ERR)."""
        self._check()
        self._queue(_SingleLine("STAT", None))

    def list(self, n: int | None = None) -> None:
        """LIST, or LIST n (RFC 1939 §5); ends with :class:`~mailagents.pop3.client.Listing` (or
        :class:`~mailagents.pop3.client.Reply` on -ERR)."""
        self._check()
        if n is None:
            self._queue(_ListAll("LIST"))
        else:
            self._queue(_SingleLine("LIST", _number("the message number", n)))

    def uidl(self, n: int | None = None) -> None:
        """UIDL, or UIDL n (RFC 1939 §7); ends with :class:`~mailagents.pop3.client.UniqueIds` (or
        :class:`~mailagents.pop3.client.Reply` on -ERR)."""
        self._check()
        if n is None:
            self._queue(_ListAll("UIDL"))
        else:
            self._queue(_SingleLine("UIDL", _number("the message number", n)))

    def retr(self, n: int) -> None:
        """RETR n (RFC 1939 §5): :class:`~mailagents.pop3.client.MessageStart`,
        :class:`~mailagents.pop3.client.MessageChunk` events,
        :class:`~mailagents.pop3.client.MessageEnd` (or
        :class:`~mailagents.pop3.client.Reply` on -ERR)."""
        number = _number("the message number", n)
        self._check()
        self._queue(_Retrieve(number, None))

    def top(self, n: int, lines: int) -> None:
        """TOP n lines (RFC 1939 §7): the header, the blank line and at most ``lines``
        body lines, reported as :meth:`retr` reports a message."""
        number = _number("the message number", n)
        count = _number("the number of lines", lines, minimum=0)
        self._check()
        self._queue(_Retrieve(number, count))

    def dele(self, n: int) -> None:
        """DELE n (RFC 1939 §5): mark the message deleted; it goes at QUIT."""
        number = _number("the message number", n)
        self._check()
        self._queue(_Simple("DELE", f"DELE {number}\r\n".encode("ascii")))

    def noop(self) -> None:
        """NOOP (RFC 1939 §5)."""
        self._check()
        self._queue(_Simple("NOOP", b"NOOP\r\n"))

    def rset(self) -> None:
        """RSET (RFC 1939 §5): unmark the messages marked deleted."""
        self._check()
        self._queue(_Simple("RSET", b"RSET\r\n"))

    def quit(self) -> None:
        """QUIT (RFC 1939 §6): in the TRANSACTION state the server removes the messages
        marked deleted. Its :class:`~mailagents.pop3.client.Reply` is followed by
        :class:`~mailagents.pop3.client.ConnectionClosed`."""
        self._check()
        self._quit_queued = True
        self._queue(_Simple("QUIT", b"QUIT\r\n"))

    # --- internals -------------------------------------------------------------------

    def _any(self, *kinds: type[_Op]) -> bool:
        return any(isinstance(op, kinds) for op in self._ops)

    def _check(self) -> None:
        """Refuse a request the session cannot take now."""
        if self._error is not None:
            raise self._error
        phase = self._phase
        if phase is _Phase.TLS_PENDING:
            raise LocalProtocolError("start TLS and call tls_started() first")
        if phase in (_Phase.CLOSING, _Phase.CLOSED, _Phase.BROKEN) or self._quit_queued:
            raise LocalProtocolError("the session is over")
        if any(op.command == "STLS" for op in self._ops):
            raise LocalProtocolError("nothing may follow STLS until its answer")

    def _check_login(self) -> None:
        if self._authenticated:
            raise LocalProtocolError("already logged in")
        if self._any(_Login, _Apop, _Auth):
            raise LocalProtocolError("a login is already under way")

    def _queue(self, op: _Op) -> None:
        self._ops.append(op)
        self._pump()

    def _pump(self) -> None:
        """Start the requests that may go now: the first one, and when the server
        pipelines, every pipelinable one after requests wholly on the wire."""
        if self._phase is not _Phase.READY:
            return
        for i, op in enumerate(self._ops):
            if not op.started:
                if i > 0 and not (self.can_pipeline and op.pipelinable):
                    return
                op.started = True
                op.start(self)
            if not (op.sent_all and op.pipelinable and self.can_pipeline):
                return

    def _emit(self, event: ClientEvent) -> None:
        self._events.append(event)

    def _close(self) -> None:
        self._ops.clear()
        self._buf.clear()
        self._phase = _Phase.CLOSED
        self._emit(ConnectionClosed())

    def _take_line(self) -> bytes | None:
        """One line without its line end, or ``None`` until one is complete."""
        lines = self._lines
        line = lines.take_line(self._max_line)
        if isinstance(line, bytes):
            return line
        if line is None and not lines.discarding:
            return None
        # A client has no reply to give a server that breaks the bound: end at once.
        raise RemoteProtocolError(f"a line longer than {self._max_line} octets")

    def _status(self, line: bytes) -> Response:
        response = parse_response(line)
        if response is None:
            raise RemoteProtocolError(f"not a POP3 status line: {line[:60]!r}")
        return response

    def _take_body(self) -> tuple[bytes, bool]:
        """Un-stuff the buffered part of a multi-line response (RFC 1939 §3): the
        octets ready to hand out, and whether the terminating "." line was read.

        A line starting with "." loses that "."; a line of just "." ends the message;
        a bare LF becomes CRLF. What cannot be decided yet (a "." or a CR at the end of
        the input) stays buffered: at most two octets.
        """
        buf = self._buf
        n = len(buf)
        limit = self._chunk_size
        out = bytearray()
        pos = 0
        ended = False
        while pos < n and len(out) < limit:
            if self._at_line_start:
                if buf[pos] == 0x2E:  # "."
                    if pos + 1 >= n:
                        break
                    after = buf[pos + 1]
                    if after == 0x0A:
                        pos, ended = pos + 2, True
                        break
                    if after == 0x0D:
                        if pos + 2 >= n:
                            break
                        if buf[pos + 2] == 0x0A:
                            pos, ended = pos + 3, True
                            break
                    pos += 1  # the byte-stuffed termination octet is stripped
                self._at_line_start = False
            lf = buf.find(b"\n", pos, pos + limit - len(out) + 1)
            if lf < 0:
                end = min(n, pos + limit - len(out))
                if buf[end - 1] == 0x0D:
                    end -= 1  # a CR that may begin a CRLF waits for the next octet
                out += buf[pos:end]
                if end == pos:
                    break
                pos = end
                continue
            if lf > pos and buf[lf - 1] == 0x0D:
                out += buf[pos : lf + 1]
            else:
                out += buf[pos:lf]
                out += b"\r\n"
            pos = lf + 1
            self._at_line_start = True
        del buf[:pos]
        return bytes(out), ended
