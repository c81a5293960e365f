"""The server side of POP3 as a sans-I/O connection object (RFC 1939, RFC 2449, RFC 5034,
RFC 2595, RFC 3206, RFC 6856).

Feed the bytes that arrived with :meth:`ServerConnection.receive_data`, take events with
:meth:`ServerConnection.next_event` until it returns ``NEED_DATA`` (or ``PAUSED``),
answer decision events with :meth:`ServerConnection.send`, and write what
:meth:`ServerConnection.data_to_send` returns. The core owns every protocol rule
(command sequence, message numbers, byte-stuffing, limits); the application only opens
the maildrop, streams messages and removes the deleted ones.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from base64 import b64encode
from collections import deque
from collections.abc import Callable, Iterator
from typing import NoReturn, TypeAlias

from mailagents import sasl
from mailagents._protocol import (
    LineReader,
    LocalProtocolError,
    Moves,
    RemoteProtocolError,
    compile_moves,
)
from mailagents.pop3._config import ServerConfig
from mailagents.pop3._dotstuff import DotStuffer
from mailagents.pop3._events import (
    Accept,
    Authenticated,
    AuthenticationFailed,
    CommandRejected,
    ConnectionClosed,
    Maildrop,
    MaildropEntry,
    MessageChunk,
    MessageEnd,
    OpenMaildrop,
    Quit,
    Reject,
    Retrieve,
    StartTLS,
    Update,
)
from mailagents.pop3._response import NEED_DATA, PAUSED, Response, Sentinel
from mailagents.pop3._state import COMMANDS, INITIAL, TRANSITIONS, State
from mailagents.sasl._exchange import ExchangeFailure, ExchangeStep, ServerExchange

__all__ = ["Decision", "ServerConnection", "ServerEvent"]

ServerEvent: TypeAlias = (
    OpenMaildrop
    | Retrieve
    | Update
    | sasl.NeedCredentials
    | Authenticated
    | AuthenticationFailed
    | StartTLS
    | CommandRejected
    | Quit
    | ConnectionClosed
)
"""Everything :meth:`ServerConnection.next_event` can return besides the sentinels."""

Decision: TypeAlias = (
    Accept
    | Reject
    | Maildrop
    | MessageChunk
    | MessageEnd
    | sasl.PasswordVerdict
    | sasl.ScramSecrets
    | sasl.NoSuchUser
    | sasl.TokenVerdict
    | sasl.LegacySecret
)
"""What :meth:`ServerConnection.send` takes."""

# How LIST and UIDL show one entry.
_Value: TypeAlias = Callable[[int, MaildropEntry], str]

_SASL_ANSWERS = (
    sasl.PasswordVerdict,
    sasl.ScramSecrets,
    sasl.NoSuchUser,
    sasl.TokenVerdict,
    sasl.LegacySecret,
)
_DECISION_EVENTS = (OpenMaildrop, Retrieve, Update, sasl.NeedCredentials)
# Message numbers and TOP line counts: plain decimal digits; more than 10 cannot be meant.
_MAX_DIGITS = 10
# Control characters (TAB included: RFC 2449 §3 separates arguments with one SPACE).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# RFC 1939 §7: the APOP timestamp is a msg-id, "<" ... ">".
_CHALLENGE = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+>")
_DIGEST = re.compile(r"[0-9a-fA-F]{32}")
# Mechanisms that send the password itself: only over TLS unless allowed (RFC 2595 §2.3).
_PLAINTEXT_MECHANISMS = frozenset({"PLAIN", "LOGIN"})


def _auth_failures() -> dict[ExchangeFailure, Response]:
    # RFC 5034 §4: a cancelled exchange MUST get -ERR; RFC 3206 §4: [AUTH] says the
    # credentials, not the server, were at fault; [SYS/TEMP] that it may pass.
    return {
        ExchangeFailure.CANCELLED: _err("Authentication cancelled"),
        ExchangeFailure.BAD_BASE64: _err("Invalid base64 in response"),
        ExchangeFailure.CREDENTIALS: _err("Authentication failed", "AUTH"),
        ExchangeFailure.TEMPORARY: _err("Temporary authentication failure", "SYS/TEMP"),
    }


def _ok(text: str = "") -> Response:
    return Response(ok=True, text=text)


def _err(text: str, code: str | None = None) -> Response:
    return Response(ok=False, text=text, code=code)


def _multiline(status: Response, lines: list[str]) -> bytes:
    """A multi-line response (RFC 1939 §3): status, byte-stuffed lines, ``.``."""
    out = bytearray(status.to_bytes())
    for line in lines:
        if line.startswith("."):  # pragma: no cover - no listing line starts with "."
            out += b"."
        out += line.encode("utf-8") + b"\r\n"
    out += b".\r\n"
    return bytes(out)



def _count(n: int) -> str:
    """``1 message``, ``2 messages``: the counts in status texts."""
    return f"{n} message" if n == 1 else f"{n} messages"

_AUTH_FAILURES = _auth_failures()
# The table as the core runs it (see mailagents._protocol._machine).
_MOVES: dict[State, Moves[State]] = compile_moves(TRANSITIONS)
# Where a graceful shutdown may end a session (see at_boundary).
_BOUNDARY = frozenset({State.AUTHORIZATION, State.CLOSED})


class ServerConnection:
    """One POP3 session, server side, with no I/O.

    ``challenge`` is the APOP timestamp (RFC 1939 §7, ``<pid.clock@hostname>``, made
    by the adapter, which owns the clock). APOP is offered only when it is given and
    ``config.allow_apop`` is set; only then is it appended to the greeting (a server
    without APOP has no reason to show its process id and clock).
    """

    def __init__(self, config: ServerConfig | None = None, *, challenge: str | None = None):
        self.config = config if config is not None else ServerConfig()
        cfg = self.config
        if challenge is not None and not _CHALLENGE.fullmatch(challenge):
            raise LocalProtocolError("challenge must look like <pid.clock@host> (RFC 1939 §7)")
        self._challenge = challenge
        self._in = LineReader()
        self._out = bytearray()
        self._events: deque[ServerEvent] = deque()
        self._pending: ServerEvent | None = None
        self._state = INITIAL
        self._row = _MOVES[INITIAL]
        self._error: RemoteProtocolError | None = None
        self._eof = False
        self._closed_reported = False
        self._errors = 0
        self._bad_commands = 0
        self._rejected = False
        self._tls = cfg.tls_active
        self._utf8 = False
        self._user: str | None = None
        self._identity: str | None = None
        self._sasl: ServerExchange | None = None
        self._auth_label = ""
        self._apop_digest = ""
        self._messages: tuple[MaildropEntry, ...] = ()
        self._deleted: set[int] = set()
        self._stuffer: DotStuffer | None = None
        self._fresh = True  # nothing taken with data_to_send() yet
        greeting = f"{cfg.hostname} POP3 server ready"
        if challenge is not None and cfg.allow_apop:
            greeting = f"{greeting} {challenge}"
        self._queue(_ok(greeting))

    # --- public API ------------------------------------------------------------------

    @property
    def state(self) -> State:
        """Where the session stands (RFC 1939 §3)."""
        return self._state

    @property
    def paused(self) -> bool:
        """An event awaits the application's decision (or a message is being streamed):
        an adapter stops reading until it turns false."""
        return self._pending is not None

    @property
    def tls_active(self) -> bool:
        """The session runs over TLS (implicit, or after STLS)."""
        return self._tls

    @property
    def identity(self) -> str | None:
        """The authorised identity once the maildrop is open, else ``None``."""
        return self._identity

    @property
    def messages(self) -> int:
        """The number of messages in the maildrop snapshot (deleted ones included)."""
        return len(self._messages)

    @property
    def utf8(self) -> bool:
        """The client enabled UTF-8 with the UTF8 command (RFC 6856 §2)."""
        return self._utf8

    @property
    def wants_more(self) -> bool:
        """A message is being streamed and more of it will be sent; false once TOP has
        all the lines it needs (the application may stop reading the message and send
        :class:`MessageEnd`; further chunks are ignored)."""
        return self._stuffer is not None and self._stuffer.wants_more

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the client; ``b""`` means the client closed.

        Raises :class:`~mailagents.pop3.RemoteProtocolError` when the client sent more
        pipelined input than ``max_buffer`` while an event awaits a decision (the final
        ``-ERR`` is queued), or again after any such failure;
        :class:`~mailagents.pop3.LocalProtocolError` for bytes fed between STLS and
        :meth:`tls_started`."""
        if self._error is not None:
            raise self._error
        if self._state is State.TLS_PENDING and data:
            raise LocalProtocolError("receive_data before tls_started(): start TLS first")
        if not data:
            self._eof = True
            return
        if self._state is State.CLOSED:
            return  # whatever follows QUIT or an -ERR that ended the session is ignored
        self._in.append(data)
        if self._pending is not None and len(self._in) > self.config.max_buffer:
            self._in.clear()
            self._fatal(_err("Too much pipelined input, closing connection", "SYS/PERM"))

    def data_to_send(self) -> bytes:
        """The bytes to write to the client now (responses in command order)."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        self._fresh = False
        return out

    @property
    def at_boundary(self) -> bool:
        """Nothing is in progress that a graceful shutdown would cut short: the session
        has not logged in (or is over) and no decision is awaited. A session in
        TRANSACTION is not at a boundary: its deletions happen only at QUIT (RFC 1939
        §6), so an adapter lets it finish within its grace period."""
        return self._pending is None and self._state in _BOUNDARY

    def refuse(self, text: str = "Service not available, try again later") -> None:
        """Refuse the session before it began (connection limits, shutting down): the
        greeting queued at construction becomes ``-ERR [SYS/TEMP] hostname text``
        (RFC 3206 §4: a temporary problem of the server, so a client retries later),
        and the session is closed. Only before the first :meth:`data_to_send`."""
        if not self._fresh or self._state is not State.AUTHORIZATION:
            raise LocalProtocolError("refuse() only before the greeting was sent")
        self._out.clear()
        self._close(_err(f"{self.config.hostname} {text}", "SYS/TEMP"))

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

        Raises :class:`RemoteProtocolError` when the session cannot go on (its final
        ``-ERR`` is queued: send it and close). The core then stays failed: every later
        :meth:`receive_data`, :meth:`next_event` and :meth:`send` raises the same error,
        while :meth:`data_to_send` still gives the final response."""
        if self._error is not None:
            raise self._error
        while True:
            if self._events:
                return self._events.popleft()
            if self._pending is not None:
                return PAUSED
            state = self._state
            if state is State.CLOSED or state is State.TLS_PENDING:
                return self._need_data()
            limit = self.config.max_line
            if state is State.AUTH or self._in.startswith(b"AUTH "):
                # RFC 5034 §4 gives SASL responses no 255-octet limit; a client may also
                # send a long initial response (we are liberal in what we accept).
                limit = self.config.max_auth_line
            line = self._in.take_line(limit)
            if line is None:
                return self._need_data()
            if not isinstance(line, bytes):  # TOO_LONG: POP3 takes bare LF line ends
                self._user = None
                if state is State.AUTH:
                    self._auth_end(_err("Line too long"))
                else:
                    self._reject("", _err("Line too long"))
            elif state is State.AUTH:
                self._auth_line(line)
            else:
                self._command(line)

    def send(self, decision: Decision) -> None:
        """Answer the event that awaits a decision (or stream the message being
        retrieved)."""
        event = self._pending
        if event is None:
            if self._error is not None:
                raise self._error
            raise LocalProtocolError("no event awaits a decision")
        if isinstance(event, sasl.NeedCredentials):
            self._answer_credentials(decision)
        elif isinstance(event, OpenMaildrop):
            self._decide_open(event, decision)
        elif isinstance(event, Retrieve):
            self._decide_retrieve(event, decision)
        elif isinstance(event, Update):
            self._decide_update(decision)
        else:  # pragma: no cover - _pending only ever holds decision events
            raise LocalProtocolError(f"unexpected pending event {event!r}")

    def tls_started(self) -> None:
        """Tell the core the TLS handshake after STLS completed.

        The session restarts in AUTHORIZATION without a new greeting (RFC 2595 §4);
        nothing learned before TLS is kept and STLS is no longer offered."""
        if self._state is not State.TLS_PENDING:
            raise LocalProtocolError("tls_started() without an accepted STLS")
        self._tls = True
        self._in.clear()
        self._user = None
        self._utf8 = False
        self._transition("TLS_STARTED")

    def shutdown(self, text: str = "Server shutting down") -> None:
        """End the session from the server side: queue ``-ERR [SYS/TEMP] text``
        (RFC 3206 §4) and refuse everything that follows; nothing is deleted. Write
        :meth:`data_to_send`, then close."""
        self._close(_err(text, "SYS/TEMP"))

    def timed_out(self) -> None:
        """End the session because the client was idle too long (the adapter owns the
        clock; RFC 1939 §3 says at least 10 minutes). The session does NOT enter the
        UPDATE state: nothing is deleted."""
        self._close(_err("Autologout; idle for too long"))

    # --- output helpers --------------------------------------------------------------

    def _queue(self, response: Response) -> None:
        self._out += response.to_bytes()

    def _emit(self, event: ServerEvent) -> None:
        self._events.append(event)
        if isinstance(event, _DECISION_EVENTS):
            self._pending = event

    def _reject(self, command: str, response: Response) -> None:
        """Answer a command with an ``-ERR`` the core decided on."""
        self._rejected = True
        self._errors += 1
        self._bad_commands += 1
        cfg = self.config
        if self._errors >= cfg.max_errors or self._bad_commands >= cfg.max_bad_commands:
            response = _err(f"{response.text}; too many errors, closing connection")
            self._queue(response)
            self._in.clear()
            self._fail(response)
        self._queue(response)
        self._emit(CommandRejected(command=command, reply=response))

    def _transition(self, event: str) -> None:
        """Take the transition of ``event`` (a command carried out, or one of
        :data:`~mailagents.pop3._state.EVENTS`) from the current state: the only place
        the session's state changes."""
        move = self._row.get(event)
        if move is None:
            raise LocalProtocolError(f"no transition from {self._state.name} on {event}")
        self._state, self._row = move

    def _fatal(self, response: Response) -> None:
        self._queue(response)
        self._fail(response)

    def _fail(self, response: Response) -> NoReturn:
        """End the session on a protocol error; the core stays failed."""
        if self._state is not State.CLOSED:
            self._transition("CLOSE")
        self._pending = None
        self._stuffer = None
        self._events.clear()
        self._error = RemoteProtocolError(response.text)
        raise self._error

    def _close(self, response: Response) -> None:
        if self._state is State.CLOSED:
            return
        self._queue(response)
        self._transition("CLOSE")
        self._pending = None
        self._stuffer = None
        self._sasl = None
        self._events.clear()
        self._in.clear()

    def _need_data(self) -> ServerEvent | Sentinel:
        if self._eof and not self._closed_reported:
            # RFC 1939 §6: without QUIT the session never enters UPDATE.
            self._closed_reported = True
            if self._state is not State.CLOSED:
                self._transition("CLOSE")
            self._sasl = None
            return ConnectionClosed()
        return NEED_DATA

    # --- commands --------------------------------------------------------------------

    def _command(self, raw: bytes) -> None:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._user = None
            self._reject("", _err("Invalid UTF-8 in command"))
            return
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        # RFC 1939 §7: PASS only immediately after a successful USER.
        user, self._user = self._user, None
        if not verb.isascii() or verb not in COMMANDS:
            self._reject(verb[:16] if verb.isascii() else "", _err("Unknown command"))
            return
        if _CONTROL.search(line):
            self._reject(verb, _err("Control characters in command"))
            return
        if verb not in self._row:
            if self._state is State.AUTHORIZATION:
                text = f"{verb} only after login"
            else:
                text = f"{verb} not allowed after login"
            self._reject(verb, _err(text))
            return
        self._rejected = False
        if verb == "PASS":
            self._cmd_pass(arg, user)
        else:
            getattr(self, "_cmd_" + verb.lower())(arg)
        if not self._rejected:
            self._errors = 0

    @staticmethod
    def _args(arg: str) -> list[str]:
        return [a for a in arg.split(" ") if a]

    def _no_args(self, verb: str, arg: str) -> bool:
        if arg.strip(" "):
            self._reject(verb, _err(f"{verb} takes no arguments"))
            return False
        return True

    # --- AUTHORIZATION ---------------------------------------------------------------

    def _plaintext_ok(self) -> bool:
        return self._tls or self.config.allow_plaintext_login

    def _usable_mechanisms(self) -> list[str]:
        return [
            m.upper()
            for m in self.config.auth_mechanisms
            if self._plaintext_ok() or m.upper() not in _PLAINTEXT_MECHANISMS
        ]

    def _cmd_capa(self, arg: str) -> None:
        if not self._no_args("CAPA", arg):
            return
        cfg = self.config
        auth = self._state is State.AUTHORIZATION
        # RFC 2449 §6: the initial set, and RFC 5034, 2595, 3206, 6856 additions.
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if auth and self._plaintext_ok():
            caps.append("USER")
        mechs = self._usable_mechanisms()
        if auth and mechs:
            caps.append("SASL " + " ".join(mechs))
        if auth and cfg.tls_available and not self._tls:
            caps.append("STLS")
        if cfg.expire is not None:
            caps.append(f"EXPIRE {cfg.expire.upper()}")
        if cfg.login_delay is not None:
            caps.append(f"LOGIN-DELAY {cfg.login_delay}")
        if cfg.utf8:
            # RFC 6856 §2: the USER tag says USER/PASS take UTF-8 after UTF8.
            caps.append("UTF8 USER" if auth and self._plaintext_ok() else "UTF8")
        if cfg.implementation:
            caps.append(f"IMPLEMENTATION {cfg.implementation}")
        self._out += _multiline(_ok("Capability list follows"), caps)

    def _cmd_stls(self, arg: str) -> None:
        if self._tls:
            self._reject("STLS", _err("Already using TLS"))
            return
        if not self.config.tls_available:
            self._reject("STLS", _err("STLS not available"))
            return
        if not self._no_args("STLS", arg):
            return
        self._queue(_ok("Begin TLS negotiation"))
        # RFC 2595 §4 (and CVE-2011-0411): nothing sent after the STLS line before the
        # handshake may be acted on: it is thrown away.
        self._in.clear()
        self._transition("STLS")
        self._emit(StartTLS())

    def _cmd_utf8(self, arg: str) -> None:
        if not self.config.utf8:
            self._reject("UTF8", _err("UTF8 not available"))
            return
        if not self._no_args("UTF8", arg):
            return
        self._utf8 = True
        self._queue(_ok("UTF8 enabled"))

    def _cmd_quit(self, arg: str) -> None:
        if not self._no_args("QUIT", arg):
            return
        if self._state is State.TRANSACTION:
            # RFC 1939 §6: QUIT in TRANSACTION enters UPDATE: the app removes them.
            self._transition("QUIT")
            numbers = tuple(sorted(self._deleted))
            deleted = tuple(self._messages[n - 1] for n in numbers)
            self._emit(Update(deleted=deleted, numbers=numbers))
            return
        self._queue(_ok(f"{self.config.hostname} POP3 server signing off"))
        self._transition("QUIT")
        self._in.clear()
        self._emit(Quit())

    def _login_refused(self, verb: str) -> bool:
        if self._plaintext_ok():
            return False
        self._reject(
            verb,
            _err("Clear-text login needs TLS: use STLS first", "AUTH"),
        )
        return True

    def _check_text(self, verb: str, what: str, text: str) -> bool:
        if not text:
            self._reject(verb, _err(f"Syntax: {verb} {what}"))
            return False
        if not text.isascii() and not self._utf8:
            # RFC 6856 §2: UTF-8 user names and passwords only after UTF8.
            self._reject(verb, _err(f"Non-ASCII {what}: send UTF8 first"))
            return False
        return True

    def _cmd_user(self, arg: str) -> None:
        if self._login_refused("USER"):
            return
        name = arg.strip(" ")
        if not self._check_text("USER", "name", name):
            return
        self._user = name
        self._queue(_ok("Send PASS"))

    def _cmd_pass(self, arg: str, user: str | None) -> None:
        if self._login_refused("PASS"):
            return
        if user is None:
            self._reject("PASS", _err("Send USER first"))
            return
        # RFC 1939 §7: PASS has exactly one argument, so spaces belong to the password.
        if not self._check_text("PASS", "password", arg):
            return
        # USER/PASS runs as SASL PLAIN with its initial response (no challenge, so the
        # session stays in AUTHORIZATION), so the application answers one request type.
        self._sasl = exchange = ServerExchange(sasl.server_mechanism("PLAIN"))
        self._auth_label = "USER"
        message = b"\x00" + user.encode("utf-8") + b"\x00" + arg.encode("utf-8")
        self._auth_step(exchange.start(message))

    def _cmd_apop(self, arg: str) -> None:
        if not (self.config.allow_apop and self._challenge is not None):
            self._reject("APOP", _err("APOP not available"))
            return
        parts = self._args(arg)
        if len(parts) != 2 or not _DIGEST.fullmatch(parts[1]):
            self._reject("APOP", _err("Syntax: APOP name digest"))
            return
        name, digest = parts
        if not self._check_text("APOP", "name", name):
            return
        self._sasl = None
        self._auth_label = "APOP"
        self._apop_digest = digest.lower()
        self._emit(sasl.NeedCredentials(mechanism="APOP", authcid=name, authzid=None))

    def _cmd_auth(self, arg: str) -> None:
        mechs = self._usable_mechanisms()
        args = self._args(arg)
        if not args:
            # RFC 5034's grammar needs a mechanism; listing them for a bare AUTH is
            # what the RFC 1734-era clients probing for SASL expect (CAPA is the RFC way).
            self._out += _multiline(_ok("Mechanisms follow"), mechs)
            return
        if len(args) > 2:
            self._reject("AUTH", _err("Syntax: AUTH mechanism [initial-response]"))
            return
        name = args[0].upper()
        if name not in mechs:
            if name in (m.upper() for m in self.config.auth_mechanisms):
                self._reject("AUTH", _err(f"{name} needs TLS: use STLS first", "AUTH"))
            else:
                self._reject("AUTH", _err("Unrecognized authentication mechanism"))
            return
        initial: bytes | None = None
        if len(args) == 2:
            initial = ServerExchange.decode_initial(args[1])
            if initial is None:
                self._reject("AUTH", _err("Invalid base64 in initial response"))
                return
        try:
            mech = sasl.server_mechanism(name, allow_legacy=self.config.allow_legacy_auth)
        except KeyError:
            self._reject("AUTH", _err("Unrecognized authentication mechanism"))
            return
        self._start_exchange(mech, initial)

    def _start_exchange(self, mech: sasl.ServerMechanism, initial: bytes | None) -> None:
        self._sasl = exchange = ServerExchange(mech)
        self._auth_label = mech.name
        self._transition("AUTH")
        self._auth_step(exchange.start(initial))

    def _auth_line(self, raw: bytes) -> None:
        exchange = self._sasl
        assert exchange is not None
        self._auth_step(exchange.receive_line(raw.decode("ascii", "replace")))

    def _auth_step(self, step: ExchangeStep) -> None:
        if isinstance(step, sasl.Challenge):
            # RFC 5034 §4: "+" SP base64 (an empty challenge is "+ ").
            self._out += b"+ " + b64encode(step.data) + b"\r\n"
        elif isinstance(step, sasl.NeedCredentials):
            self._emit(step)
        elif isinstance(step, sasl.Success):
            self._auth_success(step)
        else:
            self._auth_end(_AUTH_FAILURES[step.failure])

    def _auth_success(self, step: sasl.Success) -> None:
        self._sasl = None
        self._transition("AUTH_END")
        self._emit(OpenMaildrop(identity=step.identity, mechanism=self._auth_label))

    def _auth_end(self, response: Response) -> None:
        self._sasl = None
        self._transition("AUTH_END")
        self._queue(response)
        self._emit(AuthenticationFailed(mechanism=self._auth_label, reply=response))

    def _answer_credentials(self, decision: Decision) -> None:
        event = self._pending
        assert isinstance(event, sasl.NeedCredentials)
        if isinstance(decision, Reject):
            self._pending = None
            self._auth_end(decision.reply)
            return
        if not isinstance(decision, _SASL_ANSWERS):
            raise LocalProtocolError("answer NeedCredentials with a sasl answer or Reject")
        if self._auth_label == "APOP":
            self._pending = None
            self._apop_verdict(event.authcid, decision)
            return
        exchange = self._sasl
        assert exchange is not None
        step = exchange.provide(decision)  # raises LocalProtocolError for a wrong answer
        self._pending = None
        self._auth_step(step)

    def _apop_verdict(self, name: str, answer: sasl.Answer) -> None:
        if isinstance(answer, sasl.LegacySecret):
            secret = answer.secret
            raw = secret.encode("utf-8") if isinstance(secret, str) else secret
            assert self._challenge is not None
            expected = hashlib.md5(self._challenge.encode("ascii") + raw).hexdigest()
            # RFC 1939 §7: the digest is MD5(timestamp + secret), in lower-case hex.
            if hmac.compare_digest(expected, self._apop_digest):
                self._auth_success(sasl.Success(identity=name, authcid=name))
                return
        # Any other answer (NoSuchUser, a verdict that cannot check a digest) fails.
        self._auth_end(_err("Authentication failed", "AUTH"))

    def _decide_open(self, event: OpenMaildrop, decision: Decision) -> None:
        if isinstance(decision, Reject):
            # The credentials were right (no AuthenticationFailed), but the maildrop
            # cannot be opened: [IN-USE], [LOGIN-DELAY], [SYS/TEMP] (RFC 2449 §8, 3206).
            self._pending = None
            self._queue(decision.reply)
            return
        if not isinstance(decision, Maildrop):
            raise LocalProtocolError("answer OpenMaildrop with Maildrop or Reject")
        self._pending = None
        self._messages = decision.messages
        self._deleted = set()
        self._identity = event.identity
        self._transition("MAILDROP_OPEN")
        count, size = self._totals()
        self._queue(_ok(f"maildrop locked and ready, {_count(count)} ({size} octets)"))
        self._emit(Authenticated(identity=event.identity, mechanism=event.mechanism))

    # --- TRANSACTION -----------------------------------------------------------------

    def _totals(self) -> tuple[int, int]:
        count = size = 0
        for number, entry in enumerate(self._messages, 1):
            if number not in self._deleted:
                count += 1
                size += entry.size
        return count, size

    def _number(self, verb: str, text: str) -> int | None:
        """A message number (RFC 1939 §3: a decimal number from 1, no sign) of a message
        that exists and is not deleted; otherwise ``-ERR`` and ``None``."""
        if not (text.isascii() and text.isdigit()):
            self._reject(verb, _err(f"Invalid message number {text[:20]!r}"))
            return None
        total = len(self._messages)
        if len(text) > _MAX_DIGITS or not 1 <= int(text) <= total:
            self._reject(verb, _err(f"No such message, only {total} messages in maildrop"))
            return None
        number = int(text)
        if number in self._deleted:
            self._reject(verb, _err(f"Message {number} already deleted"))
            return None
        return number

    def _one_number(self, verb: str, arg: str) -> int | None:
        args = self._args(arg)
        if len(args) != 1:
            self._reject(verb, _err(f"Syntax: {verb} msg"))
            return None
        return self._number(verb, args[0])

    def _cmd_stat(self, arg: str) -> None:
        if self._no_args("STAT", arg):
            count, size = self._totals()
            # RFC 1939 §5: the drop listing is exactly "+OK nn mm".
            self._queue(_ok(f"{count} {size}"))

    def _cmd_list(self, arg: str) -> None:
        self._listing("LIST", arg, lambda n, e: str(e.size))

    def _cmd_uidl(self, arg: str) -> None:
        self._listing("UIDL", arg, lambda n, e: e.uid)

    def _listing(self, verb: str, arg: str, value: _Value) -> None:
        args = self._args(arg)
        if len(args) > 1:
            self._reject(verb, _err(f"Syntax: {verb} [msg]"))
            return
        if args:
            number = self._number(verb, args[0])
            if number is not None:
                self._queue(_ok(f"{number} {value(number, self._messages[number - 1])}"))
            return
        lines = [
            f"{number} {value(number, entry)}"
            for number, entry in enumerate(self._messages, 1)
            if number not in self._deleted
        ]
        count, size = self._totals()
        status = _ok(f"{_count(count)} ({size} octets)") if verb == "LIST" else _ok()
        self._out += _multiline(status, lines)

    def _cmd_dele(self, arg: str) -> None:
        number = self._one_number("DELE", arg)
        if number is not None:
            self._deleted.add(number)
            self._queue(_ok(f"Message {number} deleted"))

    def _cmd_noop(self, arg: str) -> None:
        if self._no_args("NOOP", arg):
            self._queue(_ok())

    def _cmd_rset(self, arg: str) -> None:
        if self._no_args("RSET", arg):
            self._deleted.clear()
            count, size = self._totals()
            self._queue(_ok(f"maildrop has {_count(count)} ({size} octets)"))

    def _cmd_retr(self, arg: str) -> None:
        number = self._one_number("RETR", arg)
        if number is not None:
            entry = self._messages[number - 1]
            self._emit(Retrieve(number=number, uid=entry.uid, lines=None))

    def _cmd_top(self, arg: str) -> None:
        args = self._args(arg)
        if len(args) != 2:
            self._reject("TOP", _err("Syntax: TOP msg n"))
            return
        lines_text = args[1]
        # RFC 1939 §7: n is a non-negative number of body lines.
        if not (lines_text.isascii() and lines_text.isdigit() and len(lines_text) <= _MAX_DIGITS):
            self._reject("TOP", _err(f"Invalid number of lines {lines_text[:20]!r}"))
            return
        number = self._number("TOP", args[0])
        if number is not None:
            entry = self._messages[number - 1]
            self._emit(Retrieve(number=number, uid=entry.uid, lines=int(lines_text)))

    def _decide_retrieve(self, event: Retrieve, decision: Decision) -> None:
        stuffer = self._stuffer
        if stuffer is None:
            if isinstance(decision, Reject):
                self._pending = None
                self._queue(decision.reply)
                return
            if not isinstance(decision, Accept):
                raise LocalProtocolError("answer Retrieve with Accept or Reject first")
            if event.lines is None:
                size = self._messages[event.number - 1].size
                self._queue(_ok(f"{size} octets"))
            else:
                self._queue(_ok("top of message follows"))
            self._stuffer = DotStuffer(event.lines)
            return
        if isinstance(decision, MessageChunk):
            if stuffer.wants_more:
                self._out += stuffer.feed(decision.data)
        elif isinstance(decision, MessageEnd):
            self._out += stuffer.finish()
            self._stuffer = None
            self._pending = None
        else:
            raise LocalProtocolError("stream the message with MessageChunk and MessageEnd")

    def _decide_update(self, decision: Decision) -> None:
        if isinstance(decision, Reject):
            response = decision.reply
        elif isinstance(decision, Accept):
            left = len(self._messages) - len(self._deleted)
            what = f"{_count(left)} left" if left else "maildrop empty"
            response = _ok(f"{self.config.hostname} POP3 server signing off ({what})")
        else:
            raise LocalProtocolError("answer Update with Accept or Reject")
        self._pending = None
        self._queue(response)
        self._transition("UPDATE_END")
        self._in.clear()
        self._emit(Quit())

