"""The SMTP client core's requests: each user request (a command, an AUTH exchange, a
mail transaction) is an operation that writes its commands and takes its replies, run
one after the other by :class:`~mailagents.smtp._client.ClientConnection`."""

from __future__ import annotations

import enum
from collections import deque
from typing import TYPE_CHECKING

from mailagents._protocol import LocalProtocolError
from mailagents.sasl._exchange import ClientExchange
from mailagents.smtp._address import Path
from mailagents.smtp._client_events import AuthResult, Greeting, Response, TransactionResult
from mailagents.smtp._client_mail import BdatContent, DataContent
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
    """MAIL, RCPT..., then DATA or BDAT, pipelined when the server allows it.

    The content is given whole (:meth:`whole`) or fed in pieces (:meth:`stream`, then
    :meth:`feed` and :meth:`end` while :attr:`wants_content`); the commands on the
    wire are the same either way.
    """

    command = "MAIL"

    def __init__(
        self,
        *,
        mail: bytes,
        recipients: list[tuple[Path, bytes]],
        bdat: bool,
        pipelining: bool,
        lmtp: bool,
    ) -> None:
        super().__init__()
        self.mail = mail
        self.recipients = recipients
        self.bdat = bdat
        self.pipelining = pipelining
        self.lmtp = lmtp
        self.data = b""  # DATA given whole: the dot-stuffed body with the final ".\r\n"
        self.frames: deque[bytes] = deque()  # BDAT commands with their octets, not yet sent
        self.framed = False  # the BDAT LAST command is in frames (or was sent)
        self.source: DataContent | BdatContent | None = None  # streamed content
        self.ascii_only = False  # streamed: refuse a piece with 8-bit octets
        self.content_open = False  # the server is ready for the content
        self.mail_reply: Reply | None = None
        self.rcpt_replies: list[tuple[Path, Reply]] = []
        self.accepted_rcpts: list[Path] = []
        self.data_replies: list[Reply] = []
        self.final = False  # data_replies hold the final replies to the content
        self.failed = False  # a BDAT failed: swallow the replies still in flight

    def whole(self, *, data: bytes = b"", chunks: list[bytes] | None = None) -> None:
        """The content given whole: DATA's ``data``, or BDAT's ``chunks``."""
        self.data = data
        self.frames.extend(chunks or ())
        self.framed = True

    def stream(self, source: DataContent | BdatContent, *, ascii_only: bool) -> None:
        """The content will be fed in pieces through ``source``."""
        self.source = source
        self.ascii_only = ascii_only

    @property
    def mail_ok(self) -> bool:
        return self.mail_reply is not None and 200 <= self.mail_reply.code < 300

    @property
    def wants_content(self) -> bool:
        """A streamed content's next piece can be taken: the server is ready, nothing
        ended the transaction, and no BDAT command waits to be sent."""
        return (
            self.source is not None
            and self.content_open
            and not self.framed
            and not self.failed
            and not self.done
            and not self.frames
        )

    # --- the streamed content ---------------------------------------------------------

    def feed(self, conn: ClientConnection, piece: bytes | bytearray) -> None:
        if self.ascii_only and not piece.isascii():
            # RFC 6152 §3: 8-bit octets need BODY=8BITMIME (the bytes mode checks
            # the whole message before MAIL; here the piece is refused, not sent).
            raise LocalProtocolError(
                "8-bit content but send_mail was not told eight_bit=True (or BODY=8BITMIME)"
            )
        source = self.source
        if isinstance(source, DataContent):
            conn._out += source.feed(piece)
        else:
            assert source is not None
            self.frames.extend(source.feed(piece))
            self._send_frames(conn)

    def end(self, conn: ClientConnection) -> None:
        source = self.source
        if isinstance(source, DataContent):
            conn._out += source.end()
            self.framed = True
            self.expect.extend([_Tag.FINAL] * self._final_count())
        else:
            assert source is not None
            self.frames.append(source.end())
            self.framed = True
            self._send_frames(conn)

    # --- commands ---------------------------------------------------------------------

    def start(self, conn: ClientConnection) -> None:
        conn._out += self.mail
        self.expect.append(_Tag.MAIL)
        if self.pipelining:
            # RFC 2920 §3.1: MAIL and RCPT anywhere in a group, DATA only last. BDAT
            # waits for the RCPT replies, so that no content goes to nobody.
            for i in range(len(self.recipients)):
                self._send_rcpt(conn, i)
            if not self.bdat:
                conn._out += b"DATA\r\n"
                self.expect.append(_Tag.DATA)

    def _send_rcpt(self, conn: ClientConnection, i: int) -> None:
        conn._out += self.recipients[i][1]
        self.expect.append((_Tag.RCPT, i))

    def _send_frames(self, conn: ClientConnection) -> None:
        """Write the BDAT commands ready: all of them when pipelining (RFC 3030 §4.2:
        BDAT may be pipelined), else one, once the previous one is answered."""
        frames = self.frames
        while frames and not self.failed and (self.pipelining or not self.expect):
            conn._out += frames.popleft()
            last = self.framed and not frames
            self.expect.append(_Tag.FINAL if last else _Tag.BDAT)

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
                if self.bdat or not self.pipelining:
                    if self.mail_ok:
                        self._reset(conn)
                    else:
                        self._finish(conn)
            elif not self.bdat:
                if not self.pipelining:
                    conn._out += b"DATA\r\n"
                    self.expect.append(_Tag.DATA)
            else:
                # RFC 3030 §2: the chunks follow once someone is there to take them.
                self.content_open = True
                self._send_frames(conn)
        elif tag is _Tag.DATA:
            if reply.code != 354:
                self.data_replies.append(reply)
                self._finish(conn)
            elif not (self.mail_ok and self.accepted_rcpts):
                # RFC 2920 §3.1: a 354 although nobody was accepted gets an empty message.
                conn._out += b".\r\n"
                self.expect.extend([_Tag.FINAL] * self._final_count())
            elif self.source is not None:
                self.content_open = True  # the caller feeds it: wants_content
            else:
                conn._out += self.data
                self.expect.extend([_Tag.FINAL] * self._final_count())
        elif tag is _Tag.BDAT:
            if self.failed:
                pass
            elif not ok:
                # RFC 3030 §2: no more chunks after a failed one; the transaction is over.
                self.failed = True
                self.frames.clear()
                self.data_replies.append(reply)
            elif not self.pipelining:
                self._send_frames(conn)
            if self.failed and not self.expect:
                self._reset(conn)
        elif tag is _Tag.FINAL:
            if self.failed:
                self._reset(conn)
                return
            if not self.final:
                self.final = True
                if self.bdat:
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
                recipients=tuple(path for path, _ in self.recipients),
            )
        )
