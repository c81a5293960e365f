"""The POP3 server core's session state and the primitives every command uses: queueing
responses, emitting events, rejecting, taking a transition, failing, closing.

:class:`~mailagents.pop3.ServerConnection` is built from this base, the login commands
(:mod:`mailagents.pop3._auth`: USER/PASS, APOP, AUTH) and the maildrop commands
(:mod:`mailagents.pop3._maildrop`: STAT to TOP, the UPDATE state), with the public API
and the other commands in :mod:`mailagents.pop3._server`.
"""

from __future__ import annotations

import re
from collections import deque
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
from mailagents.pop3._response import NEED_DATA, Response, Sentinel
from mailagents.pop3._state import INITIAL, TRANSITIONS, State
from mailagents.sasl._exchange import ServerExchange

__all__ = ["Decision", "ServerCore", "ServerEvent", "err", "multiline", "n_messages", "ok"]

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

_DECISION_EVENTS = (OpenMaildrop, Retrieve, Update, sasl.NeedCredentials)
# RFC 1939 §7: the APOP timestamp is a msg-id, "<" ... ">".
_CHALLENGE = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+>")
# The table as the core runs it (see mailagents._protocol._machine).
_MOVES: dict[State, Moves[State]] = compile_moves(TRANSITIONS)


def ok(text: str = "") -> Response:
    """A ``+OK`` status line."""
    return Response(ok=True, text=text)


def err(text: str, code: str | None = None) -> Response:
    """An ``-ERR`` status line, with its response code (RFC 2449 §8) if any."""
    return Response(ok=False, text=text, code=code)


def multiline(status: Response, lines: list[str]) -> bytes:
    """A multi-line response (RFC 1939 §3): status, byte-stuffed lines, ``.``."""
    out = bytearray(status.to_bytes())
    for line in lines:
        if line.startswith("."):  # pragma: no cover - no listing line starts with "."
            out += b"."
        out += line.encode("utf-8") + b"\r\n"
    out += b".\r\n"
    return bytes(out)


def n_messages(n: int) -> str:
    """``1 message``, ``2 messages``: the counts in status texts."""
    return f"{n} message" if n == 1 else f"{n} messages"


class ServerCore:
    """The session's state and the primitives of every command (see the module)."""

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
        self._queue(ok(greeting))

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
            response = err(f"{response.text}; too many errors, closing connection")
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

    @staticmethod
    def _args(arg: str) -> list[str]:
        return [a for a in arg.split(" ") if a]

    def _no_args(self, verb: str, arg: str) -> bool:
        if arg.strip(" "):
            self._reject(verb, err(f"{verb} takes no arguments"))
            return False
        return True

    def _totals(self) -> tuple[int, int]:
        count = size = 0
        for number, entry in enumerate(self._messages, 1):
            if number not in self._deleted:
                count += 1
                size += entry.size
        return count, size

