"""The SMTP client core's requests: each user request (a command, an AUTH exchange, a
mail transaction) is an operation that writes its commands and takes its replies, run
one after the other by :class:`~mailagents.smtp._client.ClientConnection`."""

from __future__ import annotations

import enum
from collections import deque
from typing import TYPE_CHECKING

from mailagents.sasl._exchange import ClientExchange
from mailagents.smtp._address import Path
from mailagents.smtp._client_events import AuthResult, Greeting, Response, TransactionResult
from mailagents.smtp._client_reply import parse_extensions
from mailagents.smtp._reply import Reply

if TYPE_CHECKING:
    from mailagents.smtp._client import ClientConnection


# --- the connection's phases ----------------------------------------------------------


class _Phase(enum.Enum):
    GREETING = "greeting"  # waiting for the server's greeting
    READY = "ready"
    REFUSED = "refused"  # 554 greeting: only QUIT
    TLS_PENDING = "tls-pending"  # STARTTLS got 220: waiting for tls_started()
    CLOSING = "closing"  # 421 or QUIT answered: waiting for the server to close
    CLOSED = "closed"
    BROKEN = "broken"  # RemoteProtocolError raised


# --- operations: one user request each, run one after the other -----------------------


class _Op:
    """One queued request. ``expect`` holds a tag per reply awaited, in order."""

    command = ""

    def __init__(self) -> None:
        self.expect: deque[object] = deque()
        self.done = False

    def start(self, conn: ClientConnection) -> None:
        raise NotImplementedError

    def on_reply(self, conn: ClientConnection, tag: object, reply: Reply) -> None:
        raise NotImplementedError

    def interrupted(self, conn: ClientConnection, tag: object, reply: Reply) -> None:
        """A 421: the server is closing. Report what is known."""
        self.on_reply(conn, tag, reply)
        self.done = True


class _GreetingOp(_Op):
    def start(self, conn: ClientConnection) -> None:
        self.expect.append(None)

    def on_reply(self, conn: ClientConnection, tag: object, reply: Reply) -> None:
        conn._phase = _Phase.READY if reply.code == 220 else _Phase.REFUSED
        conn._emit(Greeting(reply=reply))
        self.done = True


class _Simple(_Op):
    """EHLO, HELO, LHLO, RSET, NOOP, VRFY, QUIT, STARTTLS: one line, one reply."""

    def __init__(self, command: str, line: bytes) -> None:
        super().__init__()
        self.command = command
        self.line = line

    def start(self, conn: ClientConnection) -> None:
        conn._out += self.line
        self.expect.append(None)

    def on_reply(self, conn: ClientConnection, tag: object, reply: Reply) -> None:
        self.done = True
        command = self.command
        if command in ("EHLO", "LHLO", "HELO"):
            ok = 200 <= reply.code < 300
            conn._extensions = parse_extensions(reply) if ok and command != "HELO" else {}
            conn._hello_done = ok
        conn._emit(Response(command=command, reply=reply))
        if command == "STARTTLS" and reply.code == 220:
            conn._phase = _Phase.TLS_PENDING
            # RFC 3207 §5 / CVE-2011-0411 turned around: plaintext that followed the
            # go-ahead must never be read as if it came over TLS. It is dropped.
            conn._reader.clear()
        elif command == "QUIT":
            conn._phase = _Phase.CLOSING
            if reply.code == 221:
                conn._close()


class _Greet(_Simple):
    """EHLO, then HELO if the server refuses EHLO with a 5xx: it predates ESMTP
    (RFC 5321 §3.2: "the client SHOULD fall back to HELO"). One Response is reported:
    the EHLO's, or the HELO's after a fall-back."""

    def __init__(self, line: bytes, helo: bytes) -> None:
        super().__init__("EHLO", line)
        self.helo: bytes | None = helo

    def on_reply(self, conn: ClientConnection, tag: object, reply: Reply) -> None:
        if self.helo is not None and 500 <= reply.code < 600:
            conn._out += self.helo
            self.helo = None
            self.command = "HELO"
            self.expect.append(None)
            return
        super().on_reply(conn, tag, reply)


class _Auth(_Op):
    """AUTH with its challenges (RFC 4954 §4)."""

    command = "AUTH"

    def __init__(self, exchange: ClientExchange, line: bytes) -> None:
        super().__init__()
        self.exchange = exchange
        self.line = line

    def start(self, conn: ClientConnection) -> None:
        conn._out += self.line
        self.expect.append(None)

    def on_reply(self, conn: ClientConnection, tag: object, reply: Reply) -> None:
        exchange = self.exchange
        if reply.code == 334:
            # RFC 4954 §4: a challenge that cannot be answered is cancelled with "*".
            conn._out += exchange.answer("".join(reply.lines))
            self.expect.append(None)
            return
        self.done = True
        if reply.code == 235 and exchange.verify(None):
            conn._authenticated = True
            conn._emit(AuthResult(success=True, reply=reply))
            return
        conn._emit(AuthResult(success=False, reply=reply, error=exchange.error))


class _Tag(enum.Enum):
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"  # the 354 (or a refusal)
    FINAL = "FINAL"  # a reply after the final dot or to BDAT LAST (one per LMTP recipient)
    BDAT = "BDAT"  # a reply to a BDAT that is not the last
    RSET = "RSET"


class _Transaction(_Op):
    """MAIL, RCPT..., then DATA or BDAT, pipelined when the server allows it."""

    command = "MAIL"

    def __init__(
        self,
        *,
        mail: bytes,
        recipients: list[tuple[Path, bytes]],
        data: bytes | None,
        chunks: list[bytes] | None,
        pipelining: bool,
        lmtp: bool,
    ) -> None:
        super().__init__()
        self.mail = mail
        self.recipients = recipients
        self.data = data  # the dot-stuffed body with the final ".\r\n" (DATA)
        self.chunks = chunks  # BDAT commands with their octets
        self.pipelining = pipelining
        self.lmtp = lmtp
        self.mail_reply: Reply | None = None
        self.rcpt_replies: list[tuple[Path, Reply]] = []
        self.accepted_rcpts: list[Path] = []
        self.data_replies: list[Reply] = []
        self.final = False  # data_replies hold the final replies to the content
        self.failed = False  # a BDAT failed: swallow the replies still in flight
        self.next_chunk = 0

    @property
    def mail_ok(self) -> bool:
        return self.mail_reply is not None and 200 <= self.mail_reply.code < 300

    def start(self, conn: ClientConnection) -> None:
        conn._out += self.mail
        self.expect.append(_Tag.MAIL)
        if self.pipelining:
            # RFC 2920 §3.1: MAIL and RCPT anywhere in a group, DATA only last. BDAT
            # waits for the RCPT replies, so that no content goes to nobody.
            for i in range(len(self.recipients)):
                self._send_rcpt(conn, i)
            if self.data is not None:
                conn._out += b"DATA\r\n"
                self.expect.append(_Tag.DATA)

    def _send_rcpt(self, conn: ClientConnection, i: int) -> None:
        conn._out += self.recipients[i][1]
        self.expect.append((_Tag.RCPT, i))

    def _send_chunk(self, conn: ClientConnection) -> None:
        assert self.chunks is not None
        i = self.next_chunk
        self.next_chunk += 1
        conn._out += self.chunks[i]
        self.expect.append(_Tag.FINAL if i == len(self.chunks) - 1 else _Tag.BDAT)

    def _reset(self, conn: ClientConnection) -> None:
        conn._out += b"RSET\r\n"
        self.expect.append(_Tag.RSET)

    def _final_count(self) -> int:
        return max(1, len(self.accepted_rcpts)) if self.lmtp else 1

    def on_reply(self, conn: ClientConnection, tag: object, reply: Reply) -> None:
        ok = 200 <= reply.code < 300
        if tag is _Tag.MAIL:
            self.mail_reply = reply
            if not self.pipelining:
                if ok:
                    self._send_rcpt(conn, 0)
                else:
                    self._finish(conn)
        elif isinstance(tag, tuple):
            i = tag[1]
            assert isinstance(i, int)
            path = self.recipients[i][0]
            self.rcpt_replies.append((path, reply))
            if ok:
                self.accepted_rcpts.append(path)
            if i + 1 < len(self.recipients):
                if not self.pipelining:
                    self._send_rcpt(conn, i + 1)
            elif not (self.mail_ok and self.accepted_rcpts):
                # Nobody to send to (RFC 5321 §3.3): no content. A pipelined DATA is
                # already on its way and gets its 554/503.
                if self.data is None or not self.pipelining:
                    if self.mail_ok:
                        self._reset(conn)
                    else:
                        self._finish(conn)
            elif self.data is not None:
                if not self.pipelining:
                    conn._out += b"DATA\r\n"
                    self.expect.append(_Tag.DATA)
            else:
                self._send_chunk(conn)
                while self.pipelining and self.next_chunk < len(self.chunks or ()):
                    self._send_chunk(conn)  # RFC 3030 §4.2: BDAT may be pipelined
        elif tag is _Tag.DATA:
            if reply.code == 354:
                # RFC 2920 §3.1: a 354 although nobody was accepted gets an empty message.
                send = self.data if self.mail_ok and self.accepted_rcpts else b".\r\n"
                assert send is not None
                conn._out += send
                self.expect.extend([_Tag.FINAL] * self._final_count())
            else:
                self.data_replies.append(reply)
                self._finish(conn)
        elif tag is _Tag.BDAT:
            if self.failed:
                pass
            elif not ok:
                # RFC 3030 §2: no more chunks after a failed one; the transaction is over.
                self.failed = True
                self.data_replies.append(reply)
            elif not self.pipelining:
                self._send_chunk(conn)
            if self.failed and not self.expect:
                self._reset(conn)
        elif tag is _Tag.FINAL:
            if self.failed:
                self._reset(conn)
                return
            if not self.final:
                self.final = True
                if self.chunks is not None:
                    # BDAT LAST: one reply per accepted recipient in LMTP, like DATA's dot.
                    self.expect.extend([_Tag.FINAL] * (self._final_count() - 1))
            self.data_replies.append(reply)
            if not self.expect:
                self._finish(conn)
        else:  # RSET
            self._finish(conn)

    def interrupted(self, conn: ClientConnection, tag: object, reply: Reply) -> None:
        if tag is _Tag.MAIL:
            self.mail_reply = reply
        elif isinstance(tag, tuple):
            self.rcpt_replies.append((self.recipients[tag[1]][0], reply))
        elif tag is not _Tag.RSET:
            if tag is _Tag.FINAL and not self.failed:
                self.final = True
            self.data_replies.append(reply)
        self._finish(conn)

    def _finish(self, conn: ClientConnection) -> None:
        self.done = True
        assert self.mail_reply is not None
        accepted: tuple[Path, ...] = ()
        if self.final and self.mail_ok:
            if self.lmtp:
                accepted = tuple(
                    path
                    for path, reply in zip(self.accepted_rcpts, self.data_replies, strict=False)
                    if 200 <= reply.code < 300
                )
            elif 200 <= self.data_replies[-1].code < 300:
                accepted = tuple(self.accepted_rcpts)
        conn._emit(
            TransactionResult(
                mail_reply=self.mail_reply,
                recipient_replies=tuple(self.rcpt_replies),
                data_replies=tuple(self.data_replies),
                accepted=accepted,
            )
        )
