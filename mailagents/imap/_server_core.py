"""The IMAP server core's session state and the primitives every command uses:
response lines, events, bad-command counting, transitions, the end of the session.
``ServerConnection`` is built from this base, the login commands
(:mod:`mailagents.imap._server_auth`) and the public API and dispatch
(:mod:`mailagents.imap._server`).
"""

from __future__ import annotations

from collections import deque
from typing import NoReturn, TypeAlias

from mailagents import sasl
from mailagents._protocol import LocalProtocolError, Moves, RemoteProtocolError, compile_moves
from mailagents.imap._commands import Command
from mailagents.imap._config import ServerConfig
from mailagents.imap._events import (
    AppendChunk,
    AppendEnd,
    AppendRequested,
    AppendStart,
    Authenticated,
    AuthenticationFailed,
    CommandReceived,
    CommandRejected,
    CompressionStarted,
    ConnectionClosed,
    IdleEnded,
    IdleStarted,
    StartTLS,
)
from mailagents.imap._frame import Frame, Streamed
from mailagents.imap._framing_server import CommandReader
from mailagents.imap._grammar import GrammarError, Reader
from mailagents.imap._selected import Exists, Expunge, SelectedMailbox, Update, Vanished
from mailagents.imap._state import INITIAL, TRANSITIONS, State
from mailagents.sasl._exchange import ServerExchange

__all__ = ["ServerCore", "ServerEvent", "append_mailbox", "verb_of", "view_response"]

ServerEvent: TypeAlias = (
    CommandReceived
    | CommandRejected
    | sasl.NeedCredentials
    | Authenticated
    | AuthenticationFailed
    | StartTLS
    | CompressionStarted
    | IdleStarted
    | IdleEnded
    | AppendRequested
    | AppendStart
    | AppendChunk
    | AppendEnd
    | ConnectionClosed
)
"""Everything ``ServerConnection.next_event`` returns besides the sentinels."""

_MOVES: dict[State, Moves[State]] = compile_moves(TRANSITIONS)
_PRE_LOGIN = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATING})
# Mechanisms that carry the password itself: only over TLS unless allowed.
PLAINTEXT_MECHANISMS = frozenset({"PLAIN", "LOGIN"})
_LITERALS = frozenset({"LITERAL+", "LITERAL-"})


def verb_of(command: Command) -> str:
    """The command's verb as the state table names it (``UID`` for the UID forms)."""
    if getattr(command, "uid", False):
        return "UID"
    name = getattr(command, "name", None)
    if type(command).__name__ == "UnknownCommand" and isinstance(name, str):
        return name
    return type(command).__name__.upper()


def status_line(tag: str | None, status: str, text: str, code: str | None = None) -> bytes:
    """``tag status [code] text`` with CRLF (RFC 9051 §7.1); ``*`` when untagged."""
    line = f"{tag or '*'} {status} "
    if code:
        line += f"[{code}] "
    line += text or status.lower()
    return line.encode("utf-8", "surrogateescape") + b"\r\n"


def append_mailbox(head: Frame, utf8: bool) -> str | None:
    """The mailbox of an APPEND whose first message literal begins."""
    try:
        r = Reader(head, utf8=utf8)
        r.tag()
        r.sp()
        r.expect(b"APPEND")
        r.sp()
        return r.mailbox()
    except GrammarError:
        return None


def view_response(frame: Frame) -> str | None:
    """``EXISTS``, ``EXPUNGE`` or ``VANISHED`` (not ``(EARLIER)``) when ``frame`` is one
    of the responses only the selected-mailbox view may send, else ``None``."""
    first = frame.lines[0]
    words = first.split(b" ", 3)
    name = (words[2] if len(words) > 2 and words[1].isdigit() else words[1]).upper()
    if name in (b"EXISTS", b"EXPUNGE"):
        return name.decode("ascii")
    if name == b"VANISHED" and not first.upper().startswith(b"* VANISHED (EARLIER)"):
        return "VANISHED"
    return None


def update_line(update: Update) -> bytes:
    """One selected-mailbox update as a response line."""
    if isinstance(update, Exists):
        return b"* %d EXISTS\r\n" % update.count
    if isinstance(update, Expunge):
        return b"* %d EXPUNGE\r\n" % update.seq
    if isinstance(update, Vanished):
        return f"* VANISHED {update.uids}\r\n".encode("ascii")
    items = f"FLAGS ({' '.join(update.flags)})"
    if update.uid is not None:
        items += f" UID {update.uid}"
    if update.modseq is not None:
        items += f" MODSEQ ({update.modseq})"
    return f"* {update.seq} FETCH ({items})\r\n".encode("utf-8", "surrogateescape")


class ServerCore:
    """The session's state and the primitives of every command (see the module)."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = cfg = config if config is not None else ServerConfig()
        self._reader = CommandReader(
            max_line=cfg.max_line, max_command=cfg.max_command, max_literal=cfg.max_literal,
            max_append=cfg.max_append, literal_minus=not cfg.literal_plus,
            oversized_bye=cfg.oversized_bye, chunk_size=cfg.chunk_size,
        )  # fmt: skip
        self._out = bytearray()
        self._events: deque[ServerEvent] = deque()
        self._pending: CommandReceived | sasl.NeedCredentials | AppendRequested | None = None
        self._state = INITIAL
        self._row = _MOVES[INITIAL]
        self._error: RemoteProtocolError | None = None
        self._eof = False
        self._closed = False  # ConnectionClosed was emitted
        self._bad = 0
        self._tls = cfg.tls_active
        self._tls_pending = False
        self._compressed = False
        self._compress_pending = False  # COMPRESS accepted, the codec not yet in
        self._utf8 = False
        self._enabled: set[str] = set()
        self._identity: str | None = None
        self._command: Command | None = None  # the command in progress
        self._tag: str | None = None
        self._sasl: ServerExchange | None = None
        self._auth_label = ""
        self._mailbox: SelectedMailbox | None = None
        self._selected_name: str | None = None  # the selected mailbox's name
        self._select_name: str | None = None  # the name a SELECT in progress asked for
        self._modseq_told = False  # HIGHESTMODSEQ or NOMODSEQ sent for that SELECT
        self._append_watch: int | None = None  # highest UID before an APPEND into it
        self._streaming: tuple[Frame, int, int] | None = None  # frame, literal, left

    def _write_frame(self, frame: Frame, start: int = 0) -> None:
        """Write ``frame`` from line ``start`` on, stopping at a ``Streamed`` literal
        (its octets come as ``LiteralData``)."""
        lines, literals = frame.lines, frame.literals
        for i in range(start, len(lines)):
            self._out += lines[i]
            self._out += b"\r\n"
            if i < len(literals):
                literal = literals[i]
                if isinstance(literal, Streamed):
                    self._streaming = (frame, i, literal.size)
                    if literal.size == 0:
                        self._literal_data(b"")
                    return
                self._out += literal
        self._streaming = None

    def _literal_data(self, data: bytes) -> None:
        if self._streaming is None:
            raise LocalProtocolError("LiteralData without a Streamed literal being sent")
        frame, index, left = self._streaming
        if len(data) > left:
            raise LocalProtocolError("LiteralData beyond the Streamed literal's size")
        self._out += data
        left -= len(data)
        self._streaming = (frame, index, left)
        if not left:
            self._write_frame(frame, index + 1)

    # --- output ----------------------------------------------------------------------

    def _line(self, data: bytes) -> None:
        self._out += data

    def _status(self, status: str, text: str, code: str | None = None) -> None:
        """The tagged completion of the command in progress."""
        self._out += status_line(self._tag, status, text, code)

    @property
    def _rev2(self) -> bool:
        return "IMAP4REV2" in self._enabled

    def _condstore_on(self) -> None:
        """A CONDSTORE enabling command arrived (RFC 7162 §3.1): from now on the
        session gets MODSEQ with every flag change, the selected view included."""
        if "CONDSTORE" not in self.config.enableable():
            return
        self._enabled.add("CONDSTORE")
        if self._mailbox is not None:
            self._mailbox.condstore = True

    def _emit(self, event: ServerEvent) -> None:
        self._events.append(event)
        if isinstance(event, (CommandReceived, sasl.NeedCredentials, AppendRequested)):
            self._pending = event

    def _flush_updates(self, verb: str | None, *, uid: bool = False) -> None:
        view = self._mailbox
        if self._streaming is not None:
            return  # never inside a literal being sent
        if view is not None and self._state in (State.SELECTED, State.IDLE_SELECTED):
            for update in view.updates(verb, uid=uid):
                self._out += update_line(update)

    # --- errors ------------------------------------------------------------------------

    def _reject(self, tag: str | None, status: str, text: str, code: str | None = None) -> None:
        """Answer a command with a BAD or NO the core decided on; count it before login
        and end the session at ``max_bad_commands`` (Dovecot's rule)."""
        line = status_line(tag, status, text, code)
        self._command = None  # the answer completes the command
        self._out += line
        self._events.append(CommandRejected(tag=tag, response=line[:-2]))
        if status == "BAD" and self._state in _PRE_LOGIN:
            self._bad += 1
            if self._bad >= self.config.max_bad_commands:
                self._bye("Too many invalid commands")
                self._fail("too many invalid commands")

    def _transition(self, event: str) -> None:
        """Take the transition of ``event`` from the current state: the only place the
        session's state changes."""
        move = self._row.get(event)
        if move is None:
            raise LocalProtocolError(f"no transition from {self._state.name} on {event}")
        self._state, self._row = move

    def _bye(self, text: str) -> None:
        """Queue ``* BYE`` and end the session (the reader reads nothing more)."""
        self._out += status_line(None, "BYE", text)
        self._end(text)

    def _end(self, reason: str) -> None:
        if self._state is not State.LOGOUT:
            self._transition("END")
        self._pending = None
        self._sasl = None
        self._mailbox = None
        self._selected_name = None
        self._tls_pending = False
        self._compress_pending = False
        self._reader.clear()
        if not self._closed:
            self._closed = True
            self._events.append(ConnectionClosed(reason=reason))

    def _fail(self, reason: str) -> NoReturn:
        """The session cannot go on: its BYE is queued; the core stays failed."""
        self._events.clear()
        self._error = RemoteProtocolError(reason)
        raise self._error

    # --- capabilities --------------------------------------------------------------

    def _plaintext_ok(self) -> bool:
        return self._tls or self.config.allow_plaintext_login

    def _mechanisms(self) -> list[str]:
        return [
            m.upper()
            for m in self.config.auth_mechanisms
            if self._plaintext_ok() or m.upper() not in PLAINTEXT_MECHANISMS
        ]

    def capabilities(self) -> list[str]:
        """The capability list as it stands now (it changes with TLS and login,
        RFC 9051 §6.2.1, §6.2.2)."""
        cfg = self.config
        literal = "LITERAL+" if cfg.literal_plus else "LITERAL-"
        # The literal capability where the extensions name one, else after them.
        caps = [literal if e.upper() in _LITERALS else e for e in cfg.extensions]
        if literal not in caps:
            caps.append(literal)
        if self._state in (State.GREETING, *_PRE_LOGIN):
            if cfg.tls_available and not self._tls:
                caps.append("STARTTLS")
            if not self._plaintext_ok():
                caps.append("LOGINDISABLED")  # RFC 9051 §6.2.3
            caps += [f"AUTH={m}" for m in self._mechanisms()]
        caps.append(f"APPENDLIMIT={cfg.max_append}")  # RFC 7889
        return caps
