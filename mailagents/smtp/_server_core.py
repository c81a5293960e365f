"""The SMTP server core's session state and the primitives every command uses: queueing
replies, emitting events, rejecting, taking a transition, failing.

:class:`~mailagents.smtp.ServerConnection` is built from this base, the BDAT commands
(:mod:`mailagents.smtp._bdat`) and the AUTH exchange (:mod:`mailagents.smtp._auth`),
with the public API and the other commands in :mod:`mailagents.smtp._server`.
"""

from __future__ import annotations

from collections import deque
from typing import TypeAlias

from mailagents import sasl
from mailagents._protocol import (
    LineReader,
    LocalProtocolError,
    Moves,
    RemoteProtocolError,
    compile_moves,
)
from mailagents.sasl._exchange import ServerExchange
from mailagents.smtp._config import ServerConfig
from mailagents.smtp._data import BareLineEndPolicy, DataReader
from mailagents.smtp._events import (
    NEED_DATA,
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
from mailagents.smtp._replies import reply
from mailagents.smtp._reply import Reply
from mailagents.smtp._state import INITIAL, TRANSITIONS, State

__all__ = ["Decision", "ServerEvent"]

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

_DECISION_EVENTS = (Hello, MailFrom, RcptTo, MessageComplete, sasl.NeedCredentials)
# The table as the core runs it (see mailagents._protocol._machine).
MOVES: dict[State, Moves[State]] = compile_moves(TRANSITIONS)
_CONNECTED_ROW = MOVES[State.CONNECTED]
# The states as module constants: reading State.X goes through the enum class's
# attribute lookup, 72 ns against 8 ns for a global (timeit, 2026-12-06), several
# times on every call of next_event.
S_REFUSED = State.REFUSED
S_CONNECTED = State.CONNECTED
S_READY = State.READY
S_MAIL = State.MAIL
S_RCPT = State.RCPT
S_DATA = State.DATA
S_BDAT = State.BDAT
S_BDAT_CHUNK = State.BDAT_CHUNK
S_AUTH = State.AUTH
S_TLS_PENDING = State.TLS_PENDING
S_CLOSED = State.CLOSED

_DEFAULT_CONFIG = ServerConfig()


class ServerCore:
    """The session's state and the primitives of every command (see the module)."""

    def __init__(self, config: ServerConfig | None = None, *, greeting: Reply | None = None):
        self.config = cfg = config if config is not None else _DEFAULT_CONFIG
        profile = cfg._profile
        self._enhanced = profile.enhanced
        self._command_limit = profile.command_limit
        self._line_bound = profile.line_bound
        self._short_line = profile.short_line
        self._ehlo = profile.ehlo
        self._crlf_only = cfg.bare_line_ends is BareLineEndPolicy.REJECT
        self._lines = LineReader()
        self._in = self._lines.buffer
        self._out = bytearray()
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
            self._out += profile.greeting._server_bytes(False)
            self._state = S_CONNECTED
            self._row = _CONNECTED_ROW
            return
        first = INITIAL.get(greeting.code)
        if first is None:
            raise LocalProtocolError("a greeting is 220, 421 or 554 (RFC 5321 §4.2)")
        self._queue(greeting, plain=True)
        self._state = first
        self._row = MOVES[first]

    # --- output and events -----------------------------------------------------------

    def _queue(self, reply: Reply, *, plain: bool = False) -> None:
        """Queue a reply. ``plain`` replies (greeting, EHLO/HELO/LHLO) never carry an
        enhanced code (RFC 2034 §4); with ENHANCEDSTATUSCODES every other 2xx, 4xx and
        5xx reply does (RFC 2034 §3), so an application reply without one gets the
        class's generic code (RFC 3463 §3.1: X.0.0)."""
        self._out += reply._server_bytes(self._enhanced and not plain)

    def _await_decision(self, event: Hello | MailFrom | RcptTo | MessageComplete) -> None:
        """Emit a decision event: the session pauses until the application answers."""
        self._events.append(event)
        self._pending = event

    def _emit(self, event: ServerEvent) -> None:
        self._events.append(event)
        if isinstance(event, _DECISION_EVENTS):
            self._pending = event

    def _reject(self, command: str, answer: Reply, *, bad: bool = True) -> None:
        """Answer a command with an error the core decided on; a ``bad`` one counts
        towards ``max_errors`` (in a row) and ``max_bad_commands`` (in the session)."""
        self._queue(answer)
        self._emit(CommandRejected(command=command, reply=answer))
        if bad:
            self._rejected = True
            self._bad_commands += 1
            self._errors += 1
            cfg = self.config
            if self._bad_commands >= cfg.max_bad_commands or self._errors >= cfg.max_errors:
                self._fatal(reply(421, "4.7.0", f"{cfg.hostname} Too many errors"))

    def _transition(self, event: str) -> None:
        """Take the transition of ``event`` (a command accepted, or one of
        :data:`~mailagents.smtp._state.EVENTS`) from the current state: the only place
        the session's state changes."""
        move = self._row.get(event)
        if move is None:
            raise LocalProtocolError(f"no transition from {self._state.name} on {event}")
        self._state, self._row = move

    def _fatal(self, answer: Reply) -> None:
        """Queue the session's last reply, close, and stay failed (raises)."""
        self._queue(answer)
        if self._state is not S_CLOSED:
            self._transition("CLOSE")
        self._pending = None
        self._events.clear()
        self._error = RemoteProtocolError(answer.text)
        raise self._error

    def _need_data(self) -> ServerEvent | Sentinel:
        if self._eof and not self._closed_reported:
            self._closed_reported = True
            if self._state is not S_CLOSED:
                self._transition("CLOSE")
            self._clear_transaction()
            return ConnectionClosed()
        return NEED_DATA

    def _sequence_error(self, verb: str) -> Reply:
        """The reply to a command the current state does not accept."""
        state = self._state
        if state is S_REFUSED:
            return reply(503, "5.5.1", "No SMTP service here; only QUIT")
        if state is S_CONNECTED:
            return reply(503, "5.5.1", f"Send {'LHLO' if self.config.lmtp else 'EHLO/HELO'} first")
        if verb == "MAIL":
            return reply(503, "5.5.1", "Nested MAIL command")
        if verb == "RCPT":
            if state is S_BDAT:
                return reply(503, "5.5.1", "RCPT after BDAT")
            return reply(503, "5.5.1", "Need MAIL before RCPT")
        if verb in ("DATA", "BDAT"):
            if state is S_MAIL:
                # RFC 5321 §3.3: 554 "no valid recipients" or 503.
                return reply(554, "5.5.1", "No valid recipients")
            if state is S_BDAT:
                return reply(503, "5.5.1", "DATA inside a BDAT transaction")
            return reply(503, "5.5.1", "Need MAIL and RCPT first")
        return reply(503, "5.5.1", "Bad sequence of commands")

    # --- the end of a message and of a transaction -----------------------------------

    def _message_failed(self, answer: Reply, *, final: bool = True) -> None:
        # RFC 2033 §4.2: after the end of the message (DATA's dot, BDAT LAST) LMTP gives
        # one reply per recipient; any other BDAT chunk gets exactly one.
        count = len(self._recipients) if self.config.lmtp and final else 1
        for _ in range(max(count, 1)):
            self._queue(answer)
        self._clear_transaction()
        self._transition("MESSAGE_END")
        self._emit(MessageRejected(reply=answer))

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
