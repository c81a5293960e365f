"""The server side of SMTP and LMTP as a sans-I/O connection object (RFC 5321, RFC 2033).

Feed the bytes that arrived with :meth:`ServerConnection.receive_data`, take events with
:meth:`ServerConnection.next_event` until it returns ``NEED_DATA`` (or ``PAUSED``),
answer decision events with :meth:`ServerConnection.send`, and write what
:meth:`ServerConnection.data_to_send` returns. The core owns every protocol rule; the
application only decides policy.
"""

from __future__ import annotations

import functools
import re
from base64 import b64encode
from collections import deque
from collections.abc import Callable, Iterator
from typing import TypeAlias

from mailagents import sasl
from mailagents._protocol import (
    BARE_LF,
    TOO_LONG,
    LineReader,
    LocalProtocolError,
    Moves,
    RemoteProtocolError,
    compile_moves,
)
from mailagents.sasl._exchange import ExchangeFailure, ExchangeStep, ServerExchange
from mailagents.smtp._address import (
    AddressError,
    parse_forward_path,
    parse_reverse_path,
    split_path_and_parameters,
)
from mailagents.smtp._config import ServerConfig
from mailagents.smtp._data import BareLineEndPolicy, DataReader
from mailagents.smtp._events import (
    NEED_DATA,
    PAUSED,
    Accept,
    Authenticated,
    AuthenticationFailed,
    CommandRejected,
    ConnectionClosed,
    DataChunk,
    Envelope,
    Hello,
    LMTPReplies,
    MailFrom,
    MessageComplete,
    MessageRejected,
    Quit,
    RcptTo,
    Recipient,
    Reject,
    Reset,
    Sentinel,
    StartTLS,
)
from mailagents.smtp._params import (
    MailParameters,
    ParameterError,
    RcptParameters,
    parse_mail_parameters,
    parse_rcpt_parameters,
)
from mailagents.smtp._reply import Reply
from mailagents.smtp._state import COMMANDS, INITIAL, TRANSITIONS, State

__all__ = ["Decision", "ServerConnection", "ServerEvent"]

ServerEvent: TypeAlias = (
    Hello
    | MailFrom
    | RcptTo
    | DataChunk
    | MessageComplete
    | MessageRejected
    | Reset
    | StartTLS
    | sasl.NeedCredentials
    | Authenticated
    | AuthenticationFailed
    | CommandRejected
    | Quit
    | ConnectionClosed
)
"""Everything :meth:`ServerConnection.next_event` can return besides the sentinels."""

Decision: TypeAlias = (
    Accept
    | Reject
    | LMTPReplies
    | sasl.PasswordVerdict
    | sasl.ScramSecrets
    | sasl.NoSuchUser
    | sasl.TokenVerdict
    | sasl.LegacySecret
)
"""What :meth:`ServerConnection.send` takes."""

_SASL_ANSWERS = (
    sasl.PasswordVerdict,
    sasl.ScramSecrets,
    sasl.NoSuchUser,
    sasl.TokenVerdict,
    sasl.LegacySecret,
)
_DECISION_EVENTS = (Hello, MailFrom, RcptTo, MessageComplete, sasl.NeedCredentials)
_BDAT_SIZE_DIGITS = 20  # a size that does not fit in 20 digits cannot be meant
# Controls other than TAB have no place in a command line (RFC 5321 §4.1.2 grammar).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# What parse_mail_parameters("") and parse_rcpt_parameters("") give.
_NO_MAIL_PARAMETERS = MailParameters()
_NO_RCPT_PARAMETERS = RcptParameters()
# The table as the core runs it (see mailagents._protocol._machine).
_MOVES: dict[State, Moves[State]] = compile_moves(TRANSITIONS)
# The states as module constants: reading State.X goes through the enum class's
# attribute lookup, several times slower than a global, on every call of next_event.
_S_REFUSED = State.REFUSED
_S_CONNECTED = State.CONNECTED
_S_READY = State.READY
_S_MAIL = State.MAIL
_S_RCPT = State.RCPT
_S_DATA = State.DATA
_S_BDAT = State.BDAT
_S_BDAT_CHUNK = State.BDAT_CHUNK
_S_AUTH = State.AUTH
_S_TLS_PENDING = State.TLS_PENDING
_S_CLOSED = State.CLOSED
_HELLO_VERBS = frozenset({"EHLO", "HELO", "LHLO"})
# Where a graceful shutdown may end a session (see at_boundary).
_BOUNDARY = (_S_CONNECTED, _S_READY, _S_REFUSED, _S_CLOSED)
# What may be issued before STARTTLS when require_tls is set.
_BEFORE_TLS_VERBS = frozenset({"EHLO", "HELO", "LHLO", "STARTTLS", "NOOP", "RSET", "QUIT"})


# The wire forms of the replies queued recently, by the identity of the Reply object:
# (reply, (bytes without the enhanced code, bytes with one)). The entry holds the reply,
# so its id() cannot be reused while the entry exists. Constant replies (built once by
# the cached _r below) always hit; the cache is emptied when it grows past its bound.
_WIRE: dict[int, tuple[Reply, tuple[bytes, bytes]]] = {}
_WIRE_MAX = 1024


def _wire_forms(reply: Reply) -> tuple[Reply, tuple[bytes, bytes]]:
    """A reply's bytes without and with an enhanced code; with one, a 2xx/4xx/5xx
    reply that has none gets the class's generic code (RFC 3463 §3.1: X.0.0)."""
    plain = reply.without_enhanced() if reply.enhanced is not None else reply
    enhanced = reply
    if reply.enhanced is None and reply.code // 100 in (2, 4, 5):
        enhanced = Reply(code=reply.code, enhanced=f"{reply.code // 100}.0.0", lines=reply.lines)
    entry = (reply, (plain.to_bytes(), enhanced.to_bytes()))
    if len(_WIRE) >= _WIRE_MAX:
        _WIRE.clear()
    _WIRE[id(reply)] = entry
    return entry


def _wire(reply: Reply, mode: int) -> bytes:
    """A reply's bytes; ``mode`` 0 strips the enhanced code, 1 keeps it and gives a
    2xx/4xx/5xx reply without one the class's generic code (RFC 3463 §3.1: X.0.0)."""
    entry = _WIRE.get(id(reply))
    if entry is None or entry[0] is not reply:
        entry = _wire_forms(reply)
    return entry[1][mode]


@functools.lru_cache(maxsize=1024)
def _r(code: int, enhanced: str | None, *lines: str) -> Reply:
    # Replies are immutable: the same one is shared by every session (and its bytes
    # are computed once, see _WIRE).
    return Reply(code=code, enhanced=enhanced, lines=lines or ("",))


# The replies of every transaction, built once (their bytes are cached in _WIRE).
# How each failed SASL exchange is answered (RFC 4954 §4 and §6).
_AUTH_FAILURES: dict[ExchangeFailure, Reply] = {
    ExchangeFailure.CANCELLED: _r(501, "5.0.0", "Authentication cancelled"),
    ExchangeFailure.BAD_BASE64: _r(501, "5.5.2", "Invalid base64 in response"),
    ExchangeFailure.CREDENTIALS: _r(535, "5.7.8", "Authentication credentials invalid"),
    ExchangeFailure.TEMPORARY: _r(454, "4.7.0", "Temporary authentication failure"),
}
_SENDER_OK = _r(250, "2.1.0", "Sender OK")
_RECIPIENT_OK = _r(250, "2.1.5", "Recipient OK")
_GO_AHEAD = _r(354, None, "End data with <CR><LF>.<CR><LF>")
_MESSAGE_OK = _r(250, "2.0.0", "OK: message accepted")
_OK = _r(250, "2.0.0", "OK")

_DEFAULT_CONFIG = ServerConfig()

# What a session derives from its configuration, computed once per configuration (a
# configuration is immutable); keyed by id() with the configuration kept in the value,
# bounded: (config, enhanced codes on, the MAIL/RCPT line limit, the bound of any
# line, the 220 greeting's bytes).
_PROFILES: dict[int, tuple[ServerConfig, bool, int, int, bytes]] = {}


def _profile(cfg: ServerConfig) -> tuple[ServerConfig, bool, int, int, bytes]:
    command_limit = cfg.command_line_limit
    greeting = _r(220, None, f"{cfg.hostname} {cfg.greeting_text}".rstrip())
    profile = (
        cfg,
        cfg.enhanced_status_codes or cfg.lmtp,
        command_limit,
        # The bound of any line: the largest of the MAIL/RCPT and the AUTH limits.
        max(command_limit, cfg.max_auth_line),
        _wire(greeting, 0),
    )
    if len(_PROFILES) >= 64:
        _PROFILES.clear()
    _PROFILES[id(cfg)] = profile
    return profile


# The EHLO keywords per configuration and TLS state, computed once (a configuration is
# immutable); keyed by id() with the configuration kept in the value, bounded.
_EHLO_CACHE: dict[tuple[int, bool], tuple[ServerConfig, tuple[str, ...], frozenset[str]]] = {}


class ServerConnection:
    """One SMTP (or LMTP) session, server side, with no I/O.

    ``greeting`` overrides the 220 greeting. A 554 greeting refuses the session as
    RFC 5321 §3.1 describes: every command but QUIT then gets 503.
    """

    def __init__(self, config: ServerConfig | None = None, *, greeting: Reply | None = None):
        self.config = cfg = config if config is not None else _DEFAULT_CONFIG
        profile = _PROFILES.get(id(cfg))
        if profile is None or profile[0] is not cfg:
            profile = _profile(cfg)
        _, self._enhanced, self._command_limit, self._line_bound, welcome = profile
        # A line no longer than this is within every limit (no need to look at its verb).
        self._short_line = min(cfg.max_line, cfg.max_auth_line)
        self._crlf_only = cfg.bare_line_ends is BareLineEndPolicy.REJECT
        self._lines = LineReader()
        self._in = self._lines.buffer
        self._events: deque[ServerEvent] = deque()
        self._pending: ServerEvent | None = None
        self._eof = False
        self._closed_reported = False
        self._bad_commands = 0
        self._errors = 0  # in a row
        self._rejected = False
        self._fresh = True  # nothing taken with data_to_send() yet
        self._tls = cfg.tls_active
        self._helo: str | None = None
        self._extensions: frozenset[str] = frozenset()
        self._identity: str | None = None
        self._sasl: ServerExchange | None = None
        self._mail_from: MailFrom | None = None
        self._recipients: list[Recipient] = []
        self._reader: DataReader | None = None
        self._bdat_remaining = 0
        self._bdat_last = False
        self._bdat_size = 0
        self._bdat_error: Reply | None = None
        self._bdat_rejected: Reply | None = None
        self._error: RemoteProtocolError | None = None
        if greeting is None:
            # RFC 2034 §4: no enhanced code in the greeting.
            self._out = bytearray(welcome)
            self._state = _S_CONNECTED
            self._row = _CONNECTED_ROW
            return
        first = INITIAL.get(greeting.code)
        if first is None:
            raise LocalProtocolError("a greeting is 220, 421 or 554 (RFC 5321 §4.2)")
        self._out = bytearray()
        self._queue(greeting, plain=True)
        self._state = first
        self._row = _MOVES[first]

    # --- public API ------------------------------------------------------------------

    @property
    def state(self) -> State:
        """Where the session stands in RFC 5321's command sequence."""
        return self._state

    @property
    def paused(self) -> bool:
        """An event awaits the application's decision."""
        return self._pending is not None

    @property
    def tls_active(self) -> bool:
        """The session runs over TLS (implicit, or after STARTTLS)."""
        return self._tls

    @property
    def identity(self) -> str | None:
        """The authorised identity after a successful AUTH, else ``None``."""
        return self._identity

    @property
    def helo_domain(self) -> str | None:
        """The domain the client gave with its accepted EHLO/HELO/LHLO."""
        return self._helo

    @property
    def extensions(self) -> frozenset[str]:
        """The extension keywords offered to this client in the last EHLO/LHLO reply."""
        return self._extensions

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the client; ``b""`` means the client closed.

        Raises :class:`~mailagents.smtp.RemoteProtocolError` when the client sent more
        pipelined input than ``max_buffer`` while an event awaits a decision (the 421 is
        queued), or again after any such failure; :class:`~mailagents.smtp.LocalProtocolError`
        for bytes fed between STARTTLS and :meth:`tls_started`."""
        if self._error is not None:
            raise self._error
        if self._state is _S_TLS_PENDING and data:
            raise LocalProtocolError("receive_data before tls_started(): start TLS first")
        if not data:
            self._eof = True
            return
        if self._state is _S_CLOSED:
            return  # whatever follows QUIT or 421 is ignored
        self._in += data
        if self._pending is not None and len(self._in) > self.config.max_buffer:
            self._lines.clear()
            self._fatal(_r(421, "4.7.0", f"{self.config.hostname} Too much pipelined input"))

    def data_to_send(self) -> bytes:
        """The bytes to write to the client now (replies in command order)."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        self._fresh = False
        return out

    @property
    def at_boundary(self) -> bool:
        """The session is between commands with no transaction, exchange or decision in
        progress (or over): a graceful shutdown may end it now without losing anything."""
        return self._pending is None and self._state in _BOUNDARY

    def refuse(self, text: str = "Service not available, closing transmission channel") -> None:
        """Refuse the session before it began (connection limits, shutting down): the
        greeting queued at construction becomes ``421 hostname text`` (RFC 5321 §3.1,
        §4.2.3), and the session is closed. Only before the first :meth:`data_to_send`."""
        if not self._fresh or self._state is not _S_CONNECTED:
            raise LocalProtocolError("refuse() only before the greeting was sent")
        self._out.clear()
        self._queue(_r(421, None, f"{self.config.hostname} {text}"), plain=True)
        self._transition("CLOSE")

    def events(self) -> Iterator[ServerEvent]:
        """Iterate over :meth:`next_event` until it returns ``NEED_DATA`` or ``PAUSED``
        (answer a decision event with :meth:`send` before taking the next)."""
        while True:
            event = self.next_event()
            if isinstance(event, Sentinel):
                return
            yield event

    def next_event(self) -> ServerEvent | Sentinel:
        """The next event, or ``NEED_DATA`` / ``PAUSED``.

        Raises :class:`RemoteProtocolError` when the session cannot go on (its final reply
        is queued: send it and close). The core then stays failed: every later
        :meth:`receive_data`, :meth:`next_event` and :meth:`send` raises the same error,
        while :meth:`data_to_send` still gives the final reply."""
        if self._error is not None:
            raise self._error
        events = self._events
        while True:
            if events:
                return events.popleft()
            if self._pending is not None:
                return PAUSED
            state = self._state
            if state is _S_CLOSED or state is _S_TLS_PENDING:
                return self._need_data()
            before = len(self._in)
            if state is _S_DATA:
                self._process_data()
            elif state is _S_BDAT_CHUNK:
                self._process_bdat()
            elif not before:
                # No command line can be there.
                return self._need_data() if self._eof else NEED_DATA
            elif self._bdat_rejected is not None:
                self._process_bdat()  # a refused chunk's octets, skipped
            else:
                line = self._take_line()
                if line is not None:
                    if state is _S_AUTH:
                        self._auth_line(line)
                    else:
                        self._command(line)
            if not events and len(self._in) == before and self._state is state:
                return self._need_data()

    def send(self, decision: Decision) -> None:
        """Answer the event that awaits a decision."""
        event = self._pending
        if event is None:
            if self._error is not None:
                raise self._error
            raise LocalProtocolError("no event awaits a decision")
        if type(decision) is Accept and decision.reply is None:
            # The common answer, which none of the checks below can refuse.
            kind = type(event)
            if kind is RcptTo:
                self._pending = None
                self._decide_rcpt(event, decision)  # type: ignore[arg-type]
                return
            if kind is MailFrom:
                self._pending = None
                self._decide_mail(event, decision)  # type: ignore[arg-type]
                return
            if kind is MessageComplete:
                self._pending = None
                self._decide_message(event, decision)  # type: ignore[arg-type]
                return
            if kind is Hello:
                self._pending = None
                self._decide_hello(event, decision)  # type: ignore[arg-type]
                return
        if isinstance(event, sasl.NeedCredentials):
            self._answer_credentials(decision)
            return
        if isinstance(decision, _SASL_ANSWERS):
            raise LocalProtocolError("a credentials answer only answers NeedCredentials")
        if isinstance(decision, LMTPReplies):
            if not isinstance(event, MessageComplete) or not self.config.lmtp:
                raise LocalProtocolError("LMTPReplies only answers MessageComplete in LMTP")
            if len(decision.replies) != len(event.envelope.recipients):
                raise LocalProtocolError(
                    f"LMTP needs one reply per recipient: {len(event.envelope.recipients)}"
                )
        if isinstance(decision, Accept) and decision.reply is not None:
            if isinstance(event, Hello):
                raise LocalProtocolError("the core builds the EHLO/HELO reply itself")
            if decision.reply.code >= 300:
                raise LocalProtocolError("Accept needs a 2xx reply")
        self._pending = None
        if isinstance(event, Hello):
            self._decide_hello(event, decision)
        elif isinstance(event, MailFrom):
            self._decide_mail(event, decision)
        elif isinstance(event, RcptTo):
            self._decide_rcpt(event, decision)
        elif isinstance(event, MessageComplete):
            self._decide_message(event, decision)
        else:  # pragma: no cover - _pending only ever holds decision events
            raise LocalProtocolError(f"unexpected pending event {event!r}")

    def tls_started(self) -> None:
        """Tell the core the TLS handshake after STARTTLS completed.

        The session starts afresh (RFC 3207 §4.2): the client must send EHLO again and
        nothing learned before TLS is kept."""
        if self._state is not _S_TLS_PENDING:
            raise LocalProtocolError("tls_started() without an accepted STARTTLS")
        self._tls = True
        self._lines.clear()
        self._helo = None
        self._extensions = frozenset()
        self._identity = None
        self._transition("TLS_STARTED")

    def shutdown(self, text: str = "Service shutting down", *, enhanced: str = "4.3.2") -> None:
        """End the session from the server side: queue a 421 reply (RFC 5321 §3.8) and
        refuse everything that follows. Write :meth:`data_to_send`, then close."""
        if self._state is _S_CLOSED:
            return
        self._queue(_r(421, enhanced, f"{self.config.hostname} {text}"))
        self._transition("CLOSE")
        self._pending = None
        self._events.clear()
        self._lines.clear()
        self._clear_transaction()

    def timed_out(self) -> None:
        """End the session because the client was too slow: ``421 4.4.2`` (RFC 5321
        §4.5.3.2; the adapter owns the clock and calls this)."""
        self.shutdown("Timeout waiting for command, closing", enhanced="4.4.2")

    # --- output helpers --------------------------------------------------------------

    def _queue(self, reply: Reply, *, plain: bool = False) -> None:
        """Queue a reply. ``plain`` replies (greeting, EHLO/HELO/LHLO) never carry an
        enhanced code (RFC 2034 §4); with ENHANCEDSTATUSCODES every other 2xx, 4xx and
        5xx reply does (RFC 2034 §3), so an application reply without one gets the
        class's generic code (RFC 3463 §3.1: X.0.0)."""
        entry = _WIRE.get(id(reply))
        if entry is None or entry[0] is not reply:
            entry = _wire_forms(reply)
        self._out += entry[1][0 if plain or not self._enhanced else 1]

    def _await_decision(self, event: Hello | MailFrom | RcptTo | MessageComplete) -> None:
        """Emit a decision event: the session pauses until the application answers."""
        self._events.append(event)
        self._pending = event

    def _emit(self, event: ServerEvent) -> None:
        self._events.append(event)
        if isinstance(event, _DECISION_EVENTS):
            self._pending = event

    def _reject(self, command: str, reply: Reply, *, bad: bool = True) -> None:
        """Answer a command with an error the core decided on."""
        self._queue(reply)
        self._emit(CommandRejected(command=command, reply=reply))
        if bad:
            self._rejected = True
            self._bad_commands += 1
            self._errors += 1
            cfg = self.config
            if self._bad_commands >= cfg.max_bad_commands or self._errors >= cfg.max_errors:
                self._fatal(_r(421, "4.7.0", f"{cfg.hostname} Too many errors"))

    def _transition(self, event: str) -> None:
        """Take the transition of ``event`` (a command accepted, or one of
        :data:`~mailagents.smtp._state.EVENTS`) from the current state: the only place
        the session's state changes."""
        move = self._row.get(event)
        if move is None:
            raise LocalProtocolError(f"no transition from {self._state.name} on {event}")
        self._state, self._row = move

    def _fatal(self, reply: Reply) -> None:
        self._queue(reply)
        if self._state is not _S_CLOSED:
            self._transition("CLOSE")
        self._pending = None
        self._events.clear()
        self._error = RemoteProtocolError(reply.text)
        raise self._error

    def _need_data(self) -> ServerEvent | Sentinel:
        if self._eof and not self._closed_reported:
            self._closed_reported = True
            if self._state is not _S_CLOSED:
                self._transition("CLOSE")
            self._clear_transaction()
            return ConnectionClosed()
        return NEED_DATA

    # --- line handling ---------------------------------------------------------------

    def _take_line(self) -> bytes | None:
        line = self._lines.take_line(self._line_bound, crlf_only=self._crlf_only)
        if type(line) is bytes:
            n = len(line) + 2
            if n <= self._short_line or n <= self._line_limit(line):
                return line
            self._reject("", _r(500, "5.5.2", "Line too long"))
        elif line is TOO_LONG:
            self._reject("", _r(500, "5.5.2", "Line too long"))
        elif line is BARE_LF:
            # RFC 5321 §2.3.8: lines end with CRLF; a bare LF is refused.
            self._reject("", _r(500, "5.5.2", "Command line must end with CRLF"))
        return None

    def _line_limit(self, line: bytes) -> int:
        """The bound of this line, CRLF included: RFC 5321 §4.5.3.1.4 gives a command
        line 512 octets (``max_line``), to which the offered extensions add
        their MAIL and RCPT parameters (``command_line_limit``); an AUTH line and a
        SASL response may have 12,288 (RFC 4954 §4)."""
        if self._state is _S_AUTH:
            return self.config.max_auth_line
        head = line[:5].upper()
        if head == b"AUTH " or head == b"AUTH":
            return self.config.max_auth_line
        if head == b"MAIL " or head == b"RCPT ":
            return self._command_limit
        return self.config.max_line

    def _command(self, raw: bytes) -> None:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._reject("", _r(500, "5.5.2", "Invalid UTF-8 in command"))
            return
        if _CONTROL.search(line):
            self._reject("", _r(500, "5.5.2", "Control characters in command"))
            return
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        if verb not in COMMANDS:
            self._reject(verb[:16], _r(500, "5.5.1", "Command unrecognized"))
            return
        cfg = self.config
        if verb in _HELLO_VERBS and (verb == "LHLO") != cfg.lmtp:
            # RFC 2033 §4.1: an LMTP server answers HELO and EHLO with 500.
            self._reject(verb, _r(500, "5.5.1", f"{verb} is not {'LMTP' if cfg.lmtp else 'SMTP'}"))
            return
        if verb == "BDAT":
            self._bdat(arg)
            return
        if verb == "DATA" and self._in and cfg.forbid_early_data:
            # RFC 2920 §3.1: DATA can only be the last command of a group, and the
            # content may follow only its 354. Bytes already here were sent without
            # waiting: read as content they would bypass the reply to DATA, read as
            # commands (DATA refused) they would run the content.
            self._lines.clear()
            self._fatal(_r(554, "5.5.0", f"{cfg.hostname} Improper pipelining after DATA, "
                                         "closing connection"))
        if verb not in self._row:
            self._reject(verb, self._sequence_error(verb))
            return
        if cfg.require_tls and not self._tls and verb not in _BEFORE_TLS_VERBS:
            self._reject(verb, _r(530, "5.7.0", "Must issue a STARTTLS command first"))
            return
        if self._errors:
            # max_errors counts errors in a row: a command carried out ends the run.
            self._rejected = False
            _HANDLERS[verb](self, arg)
            if not self._rejected:
                self._errors = 0
            return
        _HANDLERS[verb](self, arg)

    def _sequence_error(self, verb: str) -> Reply:
        state = self._state
        if state is _S_REFUSED:
            return _r(503, "5.5.1", "No SMTP service here; only QUIT")
        if state is _S_CONNECTED:
            return _r(503, "5.5.1", f"Send {'LHLO' if self.config.lmtp else 'EHLO/HELO'} first")
        if verb == "MAIL":
            return _r(503, "5.5.1", "Nested MAIL command")
        if verb == "RCPT":
            if state is _S_BDAT:
                return _r(503, "5.5.1", "RCPT after BDAT")
            return _r(503, "5.5.1", "Need MAIL before RCPT")
        if verb in ("DATA", "BDAT"):
            if state is _S_MAIL:
                # RFC 5321 §3.3: 554 "no valid recipients" or 503.
                return _r(554, "5.5.1", "No valid recipients")
            if state is _S_BDAT:
                return _r(503, "5.5.1", "DATA inside a BDAT transaction")
            return _r(503, "5.5.1", "Need MAIL and RCPT first")
        return _r(503, "5.5.1", "Bad sequence of commands")

    # --- commands --------------------------------------------------------------------

    def _cmd_ehlo(self, arg: str) -> None:
        self._hello("EHLO", arg)

    def _cmd_helo(self, arg: str) -> None:
        self._hello("HELO", arg)

    def _cmd_lhlo(self, arg: str) -> None:
        self._hello("LHLO", arg)

    def _hello(self, verb: str, arg: str) -> None:
        domain = arg.strip(" ")
        if not domain or " " in domain or "\t" in domain or not domain.isascii():
            self._reject(verb, _r(501, "5.5.4", f"Syntax: {verb} domain"))
            return
        self._abandon_transaction()
        self._await_decision(Hello(command=verb, domain=domain))

    def _decide_hello(self, event: Hello, decision: Decision) -> None:
        if isinstance(decision, Reject):
            self._queue(decision.reply, plain=True)
            self._transition("HELLO_REFUSED")
            self._helo = None
            self._extensions = frozenset()
            return
        cfg = self.config
        self._helo = event.domain
        self._transition(event.command)
        if event.command == "HELO":
            self._extensions = frozenset()
            self._queue(_r(250, None, cfg.hostname), plain=True)
            return
        key = (id(cfg), self._tls)
        cached = _EHLO_CACHE.get(key)
        if cached is None or cached[0] is not cfg:
            ext = self._ehlo_keywords()
            cached = (cfg, ext, frozenset(e.split(" ", 1)[0] for e in ext))
            if len(_EHLO_CACHE) >= 64:
                _EHLO_CACHE.clear()
            _EHLO_CACHE[key] = cached
        _, ext, self._extensions = cached
        greeting = f"{cfg.hostname} Hello {event.domain}"
        # RFC 2034 §4: no enhanced code in the EHLO/LHLO reply.
        self._queue(_r(250, None, greeting, *ext), plain=True)

    def _ehlo_keywords(self) -> tuple[str, ...]:
        """The EHLO/LHLO keywords (with their parameters) offered in this state."""
        cfg = self.config
        ext: list[str] = []
        size = cfg.max_message_size
        ext.append(f"SIZE {size}" if size is not None else "SIZE")
        if cfg.pipelining or cfg.lmtp:
            ext.append("PIPELINING")
        if cfg.eightbitmime:
            ext.append("8BITMIME")
            if cfg.smtputf8:
                ext.append("SMTPUTF8")  # RFC 6531 §3.1: only together with 8BITMIME
        if self._enhanced:
            ext.append("ENHANCEDSTATUSCODES")
        if cfg.starttls and not self._tls:
            ext.append("STARTTLS")
        if self._auth_offered():
            ext.append("AUTH " + " ".join(m.upper() for m in cfg.auth_mechanisms))
        if cfg.chunking:
            ext.append("CHUNKING")
            if cfg.binarymime:
                ext.append("BINARYMIME")
        if cfg.dsn:
            ext.append("DSN")
        if cfg.requiretls and self._tls:
            ext.append("REQUIRETLS")  # RFC 8689 §2: offered only over TLS
        return tuple(ext)

    def _auth_offered(self) -> bool:
        cfg = self.config
        return bool(cfg.auth_mechanisms) and (self._tls or cfg.auth_without_tls)

    def _cmd_mail(self, arg: str) -> None:
        if arg[:5].upper() != "FROM:":
            self._reject("MAIL", _r(501, "5.5.4", "Syntax: MAIL FROM:<address>"))
            return
        if self.config.require_auth and self._identity is None:
            self._reject("MAIL", _r(530, "5.7.0", "Authentication required"))
            return
        try:
            path_text, param_text = split_path_and_parameters(arg[5:].lstrip(" "))
        except AddressError as exc:
            self._reject("MAIL", _r(501, "5.1.7", f"Bad sender address syntax: {exc}"))
            return
        try:
            params = (
                parse_mail_parameters(
                    param_text, extensions=self._extensions, max_size=self.config.max_message_size
                )
                if param_text
                else _NO_MAIL_PARAMETERS
            )
        except ParameterError as exc:
            self._reject("MAIL", _r(exc.code, exc.enhanced, exc.text), bad=exc.code != 552)
            return
        try:
            path = parse_reverse_path(path_text, utf8=params.smtputf8)
        except AddressError as exc:
            self._reject("MAIL", self._address_error(path_text, params.smtputf8, "5.1.7", exc))
            return
        self._await_decision(MailFrom(path=path, parameters=params))

    def _address_error(self, text: str, utf8: bool, enhanced: str, exc: AddressError) -> Reply:
        if not utf8 and not text.isascii():
            # RFC 6531 §3.7.4.1: a non-ASCII address without SMTPUTF8.
            return _r(553, "5.6.7", "Non-ASCII address needs SMTPUTF8")
        what = "sender" if enhanced == "5.1.7" else "recipient"
        return _r(501, enhanced, f"Bad {what} address syntax: {exc}")

    def _decide_mail(self, event: MailFrom, decision: Decision) -> None:
        if isinstance(decision, Reject):
            self._queue(decision.reply)
            return
        assert isinstance(decision, Accept)
        self._mail_from = event
        self._recipients = []
        self._transition("MAIL")
        self._queue(decision.reply or _SENDER_OK)

    def _cmd_rcpt(self, arg: str) -> None:
        if arg[:3].upper() != "TO:":
            self._reject("RCPT", _r(501, "5.5.4", "Syntax: RCPT TO:<address>"))
            return
        if len(self._recipients) >= self.config.max_recipients:
            # RFC 5321 §4.5.3.1.10: 452 for too many recipients.
            self._reject("RCPT", _r(452, "4.5.3", "Too many recipients"), bad=False)
            return
        assert self._mail_from is not None
        utf8 = self._mail_from.parameters.smtputf8
        try:
            path_text, param_text = split_path_and_parameters(arg[3:].lstrip(" "))
        except AddressError as exc:
            self._reject("RCPT", _r(501, "5.1.3", f"Bad recipient address syntax: {exc}"))
            return
        try:
            params = (
                parse_rcpt_parameters(param_text, extensions=self._extensions)
                if param_text
                else _NO_RCPT_PARAMETERS
            )
        except ParameterError as exc:
            self._reject("RCPT", _r(exc.code, exc.enhanced, exc.text))
            return
        try:
            path = parse_forward_path(path_text, utf8=utf8)
        except AddressError as exc:
            self._reject("RCPT", self._address_error(path_text, utf8, "5.1.3", exc))
            return
        self._await_decision(RcptTo(path=path, parameters=params))

    def _decide_rcpt(self, event: RcptTo, decision: Decision) -> None:
        if isinstance(decision, Reject):
            self._queue(decision.reply)
            return
        assert isinstance(decision, Accept)
        self._recipients.append(Recipient(path=event.path, parameters=event.parameters))
        self._transition("RCPT")
        self._queue(decision.reply or _RECIPIENT_OK)

    def _cmd_data(self, arg: str) -> None:
        if arg.strip(" "):
            self._reject("DATA", _r(501, "5.5.4", "DATA takes no parameters"))
            return
        assert self._mail_from is not None
        if self._mail_from.parameters.body == "BINARYMIME":
            # RFC 3030 §3: BINARYMIME content can only be sent with BDAT.
            self._reject("DATA", _r(503, "5.5.1", "BODY=BINARYMIME requires BDAT"))
            return
        cfg = self.config
        self._reader = DataReader(
            bare_line_ends=cfg.bare_line_ends,
            max_line_length=cfg.max_text_line,
            max_size=cfg.max_message_size,
        )
        self._transition("DATA")
        self._queue(_GO_AHEAD)

    def _process_data(self) -> None:
        reader = self._reader
        assert reader is not None
        buf = self._in
        if not buf:
            return
        with memoryview(buf) as view:
            consumed, chunks = reader.feed(view)
        del buf[:consumed]
        for chunk in chunks:
            self._events.append(DataChunk(data=chunk))
        if reader.done:
            self._reader = None
            error = reader.error
            if error is None:
                self._complete(reader.size, chunked=False)
            else:
                self._message_failed(error.reply)

    def _message_failed(self, reply: Reply, *, final: bool = True) -> None:
        # RFC 2033 §4.2: after the end of the message (DATA's dot, BDAT LAST) LMTP gives
        # one reply per recipient; any other BDAT chunk gets exactly one.
        count = len(self._recipients) if self.config.lmtp and final else 1
        for _ in range(max(count, 1)):
            self._queue(reply)
        self._clear_transaction()
        self._transition("MESSAGE_END")
        self._emit(MessageRejected(reply=reply))

    def _complete(self, size: int, *, chunked: bool) -> None:
        assert self._mail_from is not None
        envelope = Envelope(
            mail_from=self._mail_from.path,
            mail_parameters=self._mail_from.parameters,
            recipients=tuple(self._recipients),
            size=size,
            chunked=chunked,
        )
        self._transition("MESSAGE_END")
        self._await_decision(MessageComplete(envelope=envelope))

    def _decide_message(self, event: MessageComplete, decision: Decision) -> None:
        recipients = event.envelope.recipients
        self._clear_transaction()
        if isinstance(decision, LMTPReplies):
            for reply in decision.replies:
                self._queue(reply)
            return
        if isinstance(decision, Reject):
            reply = decision.reply
        else:
            assert isinstance(decision, Accept)
            reply = decision.reply or _MESSAGE_OK
        # RFC 2033 §4.2: in LMTP one reply per accepted recipient, in RCPT order.
        for _ in range(len(recipients) if self.config.lmtp else 1):
            self._queue(reply)

    def _bdat(self, arg: str) -> None:
        offered = self.config.chunking and "CHUNKING" in self._extensions
        parts = arg.split(" ")
        last = len(parts) == 2 and parts[1].upper() == "LAST"
        if not (
            parts[0].isascii()
            and parts[0].isdigit()
            and len(parts[0]) <= _BDAT_SIZE_DIGITS
            and (len(parts) == 1 or last)
        ):
            if not offered:
                self._reject("BDAT", _r(502, "5.5.1", "BDAT not available"))
                return
            # The octet count cannot be read, so neither can the rest of the stream
            # (RFC 3030 §3 syntax): answer 501 and end the session.
            self._fatal(_r(501, "5.5.4", "Syntax: BDAT size [LAST]; closing connection"))
        size = int(parts[0])
        rejection: Reply | None = None
        if self._state in (_S_CONNECTED, _S_REFUSED):
            rejection = self._sequence_error("BDAT")
        elif not offered:
            rejection = _r(502, "5.5.1", "BDAT not available")
        elif "BDAT" not in self._row:
            rejection = self._sequence_error("BDAT")
        # A refused BDAT still has its octets consumed (RFC 3030 §2), then it is answered;
        # its state does not change meanwhile.
        self._bdat_remaining = size
        self._bdat_last = last
        self._bdat_rejected = rejection
        if rejection is None:
            if self._state is _S_RCPT:
                self._bdat_size = 0
                self._bdat_error = None
            self._transition("BDAT")
        if size == 0:
            self._finish_chunk()

    def _process_bdat(self) -> None:
        buf = self._in
        take = min(len(buf), self._bdat_remaining)
        if take == 0:
            return
        if self._bdat_rejected is None:
            if self._bdat_error is None:
                limit = self.config.max_message_size
                if limit is not None and self._bdat_size + take > limit:
                    self._bdat_error = _r(
                        552, "5.3.4", "Message size exceeds fixed maximum message size"
                    )
                else:
                    self._events.append(DataChunk(data=bytes(buf[:take])))
            self._bdat_size += take
        del buf[:take]
        self._bdat_remaining -= take
        if self._bdat_remaining == 0:
            self._finish_chunk()

    def _finish_chunk(self) -> None:
        rejection = self._bdat_rejected
        if rejection is not None:
            # The octets of a refused BDAT are consumed, then it is answered (RFC 3030 §2).
            self._bdat_rejected = None
            self._reject("BDAT", rejection)
            return
        if self._bdat_error is not None:
            self._message_failed(self._bdat_error, final=self._bdat_last)
            self._bdat_error = None
            return
        if self._bdat_last:
            self._complete(self._bdat_size, chunked=True)
        else:
            self._transition("CHUNK_END")
            self._queue(_r(250, "2.0.0", f"{self._bdat_size} octets received"))

    def _cmd_rset(self, arg: str) -> None:
        if arg.strip(" "):
            self._reject("RSET", _r(501, "5.5.4", "RSET takes no parameters"))
            return
        self._abandon_transaction()
        self._transition("RSET")
        self._queue(_OK)

    def _cmd_noop(self, arg: str) -> None:
        self._queue(_OK)

    def _cmd_quit(self, arg: str) -> None:
        if arg.strip(" "):
            self._reject("QUIT", _r(501, "5.5.4", "QUIT takes no parameters"))
            return
        self._clear_transaction()
        self._queue(_r(221, "2.0.0", f"{self.config.hostname} closing connection"))
        self._transition("QUIT")
        self._lines.clear()
        self._emit(Quit())

    def _cmd_vrfy(self, arg: str) -> None:
        if not arg.strip(" "):
            self._reject("VRFY", _r(501, "5.5.4", "Syntax: VRFY address"))
            return
        # RFC 5321 §3.5.3: 252 when the server will not verify but will try to deliver.
        self._queue(
            _r(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
        )

    def _cmd_expn(self, arg: str) -> None:
        self._reject("EXPN", _r(502, "5.5.1", "EXPN not available"), bad=False)

    def _cmd_help(self, arg: str) -> None:
        self._queue(_r(214, "2.0.0", *self.config.help_text))

    def _cmd_starttls(self, arg: str) -> None:
        if self._tls:
            self._reject("STARTTLS", _r(503, "5.5.1", "TLS already active"))
            return
        if not self.config.starttls or "STARTTLS" not in self._extensions:
            self._reject("STARTTLS", _r(502, "5.5.1", "STARTTLS not available"))
            return
        if arg.strip(" "):
            self._reject("STARTTLS", _r(501, "5.5.4", "STARTTLS takes no parameters"))
            return
        self._queue(_r(220, "2.0.0", "Ready to start TLS"))
        # RFC 3207 §4 and CVE-2011-0411: nothing sent after the STARTTLS line in the clear
        # may be acted on; it is discarded before the handshake.
        self._lines.clear()
        self._transition("STARTTLS")
        self._emit(StartTLS())

    # --- AUTH (RFC 4954) -------------------------------------------------------------

    def _cmd_auth(self, arg: str) -> None:
        cfg = self.config
        if not cfg.auth_mechanisms or "AUTH" not in self._extensions:
            if cfg.auth_mechanisms and not self._tls:
                # RFC 4954 §6: 538 when the mechanism needs an encrypted session.
                reply = _r(
                    538, "5.7.11", "Encryption required for requested authentication mechanism"
                )
            else:
                reply = _r(502, "5.5.1", "AUTH not available")
            self._reject("AUTH", reply)
            return
        if self._identity is not None:
            self._reject("AUTH", _r(503, "5.5.1", "Already authenticated"))
            return
        name, _, initial_text = arg.strip(" ").partition(" ")
        name = name.upper()
        if name not in (m.upper() for m in cfg.auth_mechanisms):
            self._reject("AUTH", _r(504, "5.5.4", "Unrecognized authentication type"))
            return
        initial: bytes | None = None
        if initial_text:
            initial = ServerExchange.decode_initial(initial_text)
            if initial is None:
                self._reject("AUTH", _r(501, "5.5.2", "Invalid base64 in initial response"))
                return
        try:
            mech = sasl.server_mechanism(name, allow_legacy=cfg.allow_legacy_auth)
        except KeyError:
            self._reject("AUTH", _r(504, "5.5.4", "Unrecognized authentication type"))
            return
        self._sasl = exchange = ServerExchange(mech)
        self._transition("AUTH")
        self._auth_step(exchange.start(initial))

    def _auth_line(self, raw: bytes) -> None:
        exchange = self._sasl
        assert exchange is not None
        self._auth_step(exchange.receive_line(raw.decode("ascii", "replace")))

    def _auth_step(self, step: ExchangeStep) -> None:
        if isinstance(step, sasl.Challenge):
            self._queue(_r(334, None, b64encode(step.data).decode("ascii")))
        elif isinstance(step, sasl.NeedCredentials):
            self._emit(step)
        elif isinstance(step, sasl.Success):
            self._auth_success(step)
        else:
            self._auth_end(_AUTH_FAILURES[step.failure])

    def _auth_success(self, step: sasl.Success) -> None:
        exchange = self._sasl
        assert exchange is not None
        self._identity = step.identity
        self._sasl = None
        self._transition("AUTH_END")
        self._queue(_r(235, "2.7.0", "Authentication successful"))
        self._emit(
            Authenticated(mechanism=exchange.name, identity=step.identity, authcid=step.authcid)
        )

    def _auth_end(self, reply: Reply) -> None:
        exchange = self._sasl
        name = exchange.name if exchange is not None else ""
        self._sasl = None
        self._transition("AUTH_END")
        self._queue(reply)
        self._emit(AuthenticationFailed(mechanism=name, reply=reply))

    def _answer_credentials(self, decision: Decision) -> None:
        exchange = self._sasl
        assert exchange is not None
        if isinstance(decision, Reject):
            self._pending = None
            self._auth_end(decision.reply)
            return
        if not isinstance(decision, _SASL_ANSWERS):
            raise LocalProtocolError("answer NeedCredentials with a sasl credentials answer")
        self._pending = None
        self._auth_step(exchange.provide(decision))

    # --- transactions ----------------------------------------------------------------

    def _clear_transaction(self) -> None:
        self._mail_from = None
        self._recipients = []
        self._reader = None
        self._bdat_size = 0
        self._bdat_error = None

    def _abandon_transaction(self) -> None:
        """RSET, EHLO/HELO/LHLO: drop the transaction and tell the application (the
        command's transition then leaves the transaction's states)."""
        if self._mail_from is not None:
            self._clear_transaction()
            self._events.append(Reset())


# The method that carries out each command (every verb of _state's table), for
# _command's dispatch without building a name per command.
_HANDLERS: dict[str, Callable[[ServerConnection, str], None]] = {
    verb: getattr(ServerConnection, "_cmd_" + verb.lower()) for verb in COMMANDS if verb != "BDAT"
}
_CONNECTED_ROW = _MOVES[State.CONNECTED]
