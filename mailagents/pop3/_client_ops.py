"""The POP3 client core's requests: each user request (a command, a login, an AUTH
exchange, a retrieval) is an operation that writes its command lines and takes its
responses, run one after the other by :class:`~mailagents.pop3._client.ClientConnection`
(several at once when the server pipelines, :rfc:`2449#section-6.6`)."""

from __future__ import annotations

import enum
import re
from types import MappingProxyType
from typing import TYPE_CHECKING

from mailagents._protocol import RemoteProtocolError
from mailagents.pop3._client_events import (
    AuthResult,
    Capabilities,
    Greeting,
    Listing,
    MessageChunk,
    MessageEnd,
    MessageStart,
    Reply,
    Stat,
    UniqueIds,
)
from mailagents.pop3._response import Response, parse_response
from mailagents.sasl._exchange import ClientExchange

if TYPE_CHECKING:
    from mailagents.pop3._client import ClientConnection

# RFC 1939 §7: the APOP timestamp is a msg-id (RFC 822): "<" local "@" domain ">".
_TIMESTAMP = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>")
# RFC 1939 §5: "nn mm" (scan listing and drop listing); further text is discouraged but
# allowed after a space. Digits are bounded so that int() stays cheap (and below
# Python's limit on digits).
_NUMBER_SIZE = re.compile(rb"([0-9]{1,10}) +([0-9]{1,20})(?: .*)?")
_NUMBER_SIZE_TEXT = re.compile(r"([0-9]{1,10}) +([0-9]{1,20})(?: .*)?")
# RFC 1939 §7: unique-id = 1*70 characters in the range 0x21 to 0x7E.
_NUMBER_UID = re.compile(rb"([0-9]{1,10}) +([\x21-\x7e]{1,70}) *")
_NUMBER_UID_TEXT = re.compile(r"([0-9]{1,10}) +([\x21-\x7e]{1,70}) *")
_CAPA_TAG = re.compile(r"[\x21-\x7e]{1,64}")
_MAX_CAPA_LINES = 200
_MAX_AUTH_ROUNDS = 16


# --- the connection's phases ----------------------------------------------------------


class _Phase(enum.Enum):
    GREETING = "greeting"
    READY = "ready"
    TLS_PENDING = "tls-pending"  # STLS got +OK: waiting for tls_started()
    CLOSING = "closing"  # -ERR greeting: waiting for the server to close
    CLOSED = "closed"
    BROKEN = "broken"  # RemoteProtocolError raised


# --- operations: one user request each ------------------------------------------------


class _Op:
    """One queued request.

    ``pipelinable``: may be sent while earlier commands await their responses (when the
    server allows pipelining). ``sent_all``: every line of it is on the wire, so later
    pipelinable requests may follow it.
    """

    command = ""
    pipelinable = True
    line = b""  # the command line that start() writes

    def __init__(self) -> None:
        self.started = False
        self.sent_all = True
        self.done = False

    @property
    def awaiting(self) -> str:
        return self.command

    def start(self, conn: ClientConnection) -> None:
        conn._out += self.line

    def step(self, conn: ClientConnection) -> bool:  # pragma: no cover - abstract
        """Consume buffered input; return whether anything was consumed."""
        raise NotImplementedError


class _StatusOp(_Op):
    """A request answered by one status line, which :meth:`answered` reports."""

    def step(self, conn: ClientConnection) -> bool:
        line = conn._take_line()
        if line is None:
            return False
        response = conn._status(line)
        self.done = True
        self.answered(conn, response)
        return True

    def answered(self, conn: ClientConnection, response: Response) -> None:
        raise NotImplementedError  # pragma: no cover - abstract


class _GreetingOp(_StatusOp):
    command = "GREETING"  # never queued: the server speaks first
    pipelinable = False

    def answered(self, conn: ClientConnection, response: Response) -> None:
        challenge = None
        if response.ok:
            match = _TIMESTAMP.search(response.text)
            challenge = match.group(0) if match is not None else None
            conn._challenge = challenge
            conn._phase = _Phase.READY
        else:
            # Not in RFC 1939, but servers refuse a session this way ("-ERR [SYS/TEMP]
            # too many connections") and close: nothing may be sent.
            conn._phase = _Phase.CLOSING
            conn._ops.clear()
        conn._emit(Greeting(reply=response, challenge=challenge))


class _Simple(_StatusOp):
    """DELE, NOOP, RSET, QUIT, STLS, UTF8: one line, one status line."""

    def __init__(self, command: str, line: bytes, *, pipelinable: bool = True) -> None:
        super().__init__()
        self.command = command
        self.line = line
        self.pipelinable = pipelinable

    def answered(self, conn: ClientConnection, response: Response) -> None:
        conn._emit(Reply(command=self.command, reply=response))
        if self.command == "QUIT":
            # RFC 1939 §6: whatever the answer, the server closes the connection.
            conn._close()
        elif self.command == "STLS" and response.ok:
            # RFC 2595 §4: TLS starts right after the +OK. Plaintext that followed it
            # must never pass for data sent over TLS: it is dropped.
            conn._phase = _Phase.TLS_PENDING
            conn._buf.clear()
        elif self.command == "UTF8" and response.ok:
            conn._utf8 = True


class _MultiLine(_Op):
    """A command whose +OK is followed by lines ended by "." (RFC 1939 §3): CAPA, LIST,
    UIDL (without argument)."""

    def __init__(self, command: str, line: bytes) -> None:
        super().__init__()
        self.command = command
        self.line = line
        self.reply: Response | None = None
        self.count = 0

    def step(self, conn: ClientConnection) -> bool:
        line = conn._take_line()
        if line is None:
            return False
        if self.reply is None:
            self.reply = response = conn._status(line)
            if not response.ok:
                self.done = True
                self.refused(conn, response)
            return True
        if line == b".":
            self.done = True
            self.finish(conn, self.reply)
            return True
        if line.startswith(b"."):
            line = line[1:]  # RFC 1939 §3: byte-stuffed termination octet
        self.count += 1
        if self.count > self.limit(conn):
            raise RemoteProtocolError(f"the {self.command} response has too many lines")
        self.add(conn, line)
        return True

    def limit(self, conn: ClientConnection) -> int:
        return conn._max_entries

    def refused(self, conn: ClientConnection, response: Response) -> None:
        conn._emit(Reply(command=self.command, reply=response))

    def add(self, conn: ClientConnection, line: bytes) -> None:  # pragma: no cover
        raise NotImplementedError

    def finish(self, conn: ClientConnection, response: Response) -> None:  # pragma: no cover
        raise NotImplementedError


class _Capa(_MultiLine):
    def __init__(self) -> None:
        super().__init__("CAPA", b"CAPA\r\n")
        self.found: dict[str, tuple[str, ...]] = {}

    def limit(self, conn: ClientConnection) -> int:
        return _MAX_CAPA_LINES

    def refused(self, conn: ClientConnection, response: Response) -> None:
        # RFC 2449 §5: a server without CAPA answers -ERR; it has no extensions.
        conn._capabilities = {}
        conn._capabilities_known = True
        conn._emit(Capabilities(reply=response))

    def add(self, conn: ClientConnection, line: bytes) -> None:
        words = line.decode("utf-8", "replace").split()
        if not words:
            return
        if not _CAPA_TAG.fullmatch(words[0]):
            raise RemoteProtocolError(f"malformed capability {line[:60]!r}")
        self.found[words[0].upper()] = tuple(words[1:])

    def finish(self, conn: ClientConnection, response: Response) -> None:
        conn._capabilities = dict(self.found)
        conn._capabilities_known = True
        conn._emit(Capabilities(reply=response, capabilities=MappingProxyType(dict(self.found))))


class _ListAll(_MultiLine):
    """LIST or UIDL without argument."""

    def __init__(self, command: str) -> None:
        super().__init__(command, f"{command}\r\n".encode("ascii"))
        self.sizes: list[tuple[int, int]] = []
        self.uids: list[tuple[int, str]] = []

    def add(self, conn: ClientConnection, line: bytes) -> None:
        if self.command == "LIST":
            match = _NUMBER_SIZE.fullmatch(line)
            if match is None or int(match.group(1)) == 0:
                raise RemoteProtocolError(f"malformed scan listing {line[:60]!r}")
            self.sizes.append((int(match.group(1)), int(match.group(2))))
        else:
            match = _NUMBER_UID.fullmatch(line)
            if match is None or int(match.group(1)) == 0:
                raise RemoteProtocolError(f"malformed unique-id listing {line[:80]!r}")
            self.uids.append((int(match.group(1)), match.group(2).decode("ascii")))

    def finish(self, conn: ClientConnection, response: Response) -> None:
        if self.command == "LIST":
            conn._emit(Listing(reply=response, entries=tuple(self.sizes)))
        else:
            conn._emit(UniqueIds(reply=response, entries=tuple(self.uids)))


class _SingleLine(_StatusOp):
    """STAT, ``LIST n`` and ``UIDL n``: the data is on the status line."""

    def __init__(self, command: str, number: int | None) -> None:
        super().__init__()
        self.command = command
        self.number = number
        arg = "" if number is None else f" {number}"
        self.line = f"{command}{arg}\r\n".encode("ascii")

    def answered(self, conn: ClientConnection, response: Response) -> None:
        if not response.ok:
            conn._emit(Reply(command=self.command, reply=response))
            return
        text = response.text
        if self.command == "UIDL":
            uid = _NUMBER_UID_TEXT.fullmatch(text)
            if uid is None or int(uid.group(1)) != self.number:
                raise RemoteProtocolError(f"malformed UIDL response {text[:80]!r}")
            conn._emit(UniqueIds(reply=response, entries=((self.number, uid.group(2)),)))
            return
        match = _NUMBER_SIZE_TEXT.fullmatch(text)
        if match is None:
            raise RemoteProtocolError(f"malformed {self.command} response {text[:60]!r}")
        first, second = int(match.group(1)), int(match.group(2))
        if self.command == "STAT":
            conn._emit(Stat(reply=response, count=first, size=second))
        else:
            if first != self.number:
                raise RemoteProtocolError(f"LIST {self.number} answered for message {first}")
            conn._emit(Listing(reply=response, entries=((first, second),)))


class _Retrieve(_Op):
    """RETR n or TOP n lines: +OK, then the message streamed, un-stuffed, until "."."""

    def __init__(self, number: int, lines: int | None) -> None:
        super().__init__()
        self.number = number
        if lines is None:
            self.command = "RETR"
            self.line = f"RETR {number}\r\n".encode("ascii")
        else:
            self.command = "TOP"
            self.line = f"TOP {number} {lines}\r\n".encode("ascii")
        self.in_body = False
        self.size = 0

    def step(self, conn: ClientConnection) -> bool:
        if not self.in_body:
            line = conn._take_line()
            if line is None:
                return False
            response = conn._status(line)
            if not response.ok:
                self.done = True
                conn._emit(Reply(command=self.command, reply=response))
                return True
            self.in_body = True
            conn._at_line_start = True
            conn._emit(MessageStart(number=self.number, reply=response))
            return True
        data, ended = conn._take_body()
        if data:
            self.size += len(data)
            conn._emit(MessageChunk(number=self.number, data=data))
        if ended:
            self.done = True
            conn._emit(MessageEnd(number=self.number, size=self.size))
        return bool(data) or ended


class _Login(_Op):
    """USER then PASS (RFC 1939 §7); both at once when the server pipelines."""

    command = "USER"

    def __init__(self, user_line: bytes, pass_line: bytes) -> None:
        super().__init__()
        self.user_line = user_line
        self.pass_line = pass_line
        self.stage = "USER"
        self.pipelined = False
        self.refused: Response | None = None

    @property
    def awaiting(self) -> str:
        return self.stage

    def start(self, conn: ClientConnection) -> None:
        conn._out += self.user_line
        self.pipelined = conn.can_pipeline
        if self.pipelined:
            conn._out += self.pass_line
        else:
            self.sent_all = False

    def step(self, conn: ClientConnection) -> bool:
        line = conn._take_line()
        if line is None:
            return False
        response = conn._status(line)
        if self.stage == "USER":
            if not response.ok and not self.pipelined:
                self.done = True
                conn._emit(AuthResult(success=False, reply=response, mechanism="USER"))
                return True
            if not response.ok:
                self.refused = response  # the pipelined PASS is answered too
            elif not self.pipelined:
                conn._out += self.pass_line
                self.sent_all = True
            self.stage = "PASS"
            return True
        self.done = True
        success = response.ok and self.refused is None
        conn._authenticated = conn._authenticated or success
        conn._emit(AuthResult(success=success, reply=self.refused or response, mechanism="USER"))
        return True


class _Apop(_StatusOp):
    command = "APOP"

    def __init__(self, line: bytes) -> None:
        super().__init__()
        self.line = line

    def answered(self, conn: ClientConnection, response: Response) -> None:
        conn._authenticated = conn._authenticated or response.ok
        conn._emit(AuthResult(success=response.ok, reply=response, mechanism="APOP"))


class _Auth(_Op):
    """AUTH with its challenges (RFC 5034 §4)."""

    command = "AUTH"
    pipelinable = False

    def __init__(self, exchange: ClientExchange, line: bytes) -> None:
        super().__init__()
        self.exchange = exchange
        self.line = line
        self.rounds = 0

    def start(self, conn: ClientConnection) -> None:
        super().start(conn)
        self.sent_all = False

    def step(self, conn: ClientConnection) -> bool:
        line = conn._take_line()
        if line is None:
            return False
        response = parse_response(line)
        if response is None:
            # RFC 5034 §4: continue-req = "+" SP [base64] CRLF (a bare "+" is tolerated).
            if not (line == b"+" or line.startswith(b"+ ")):
                raise RemoteProtocolError(f"not a POP3 status line: {line[:60]!r}")
            self.rounds += 1
            if self.rounds > _MAX_AUTH_ROUNDS:
                raise RemoteProtocolError("the server sends challenges without end")
            # RFC 5034 §4: "*" cancels the exchange; the server answers -ERR.
            conn._out += self.exchange.answer(line[2:].decode("ascii", "replace"))
            return True
        self.done = True
        exchange = self.exchange
        name = exchange.mechanism.name
        # RFC 5034 §4: POP3 has no additional data with success; the server sent it as
        # a challenge (answered with an empty line) before +OK.
        if response.ok and exchange.verify(None):
            conn._authenticated = True
            conn._emit(AuthResult(success=True, reply=response, mechanism=name))
            return True
        conn._emit(
            AuthResult(success=False, reply=response, mechanism=name, error=exchange.error)
        )
        return True
