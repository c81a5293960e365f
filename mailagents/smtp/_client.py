"""The SMTP client core; its public face is :mod:`mailagents.smtp.client`."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Literal

from mailagents import sasl
from mailagents._protocol import LocalProtocolError, RemoteProtocolError
from mailagents.sasl._exchange import ClientExchange
from mailagents.smtp._address import AddressError, Mailbox, Path, parse_mailbox, parse_path
from mailagents.smtp._client_events import (
    ClientEvent,
)
from mailagents.smtp._client_mail import (
    BdatContent,
    DataContent,
    bdat_chunks,
    check_offered,
    choose_body,
    rcpt_parameters,
    size_parameter,
)
from mailagents.smtp._client_ops import (
    _Auth,
    _Greet,
    _GreetingOp,
    _Op,
    _Phase,
    _Simple,
    _Tag,
    _Transaction,
)
from mailagents.smtp._client_reply import ReplyReader
from mailagents.smtp._data import dot_stuff, normalize_line_ends
from mailagents.smtp._events import ConnectionClosed, Sentinel
from mailagents.smtp._params import (
    MailParameters,
    RcptParameters,
    format_mail_parameters,
    format_rcpt_parameters,
)
from mailagents.smtp._reply import Reply

__all__ = ["ClientConnection"]

# RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including CRLF; RFC 4954 §4
# says an initial response that would exceed it is sent after an empty 334 instead.
_MAX_COMMAND_LINE = 512
# RFC 4422 §3.1 / RFC 4954 §4: a SASL mechanism name.
_MECHANISM = re.compile(r"[A-Z0-9_-]{1,20}")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")


# --- checks on caller values ----------------------------------------------------------


def _no_controls(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise LocalProtocolError(f"{what} must be a str, not {type(value).__name__}")
    if _CONTROLS.search(value):
        raise LocalProtocolError(f"{what} must not contain CR, LF, NUL or other controls")
    return value


def _encode(line: str) -> bytes:
    """A command line on the wire; the last guard against injection."""
    data = line.encode("utf-8")
    if b"\r" in data or b"\n" in data or b"\x00" in data:  # pragma: no cover - checked before
        raise LocalProtocolError("CR, LF or NUL in a command")
    return data + b"\r\n"


def _to_path(value: object, *, sender: bool) -> Path:
    """A reverse-path (``sender``) or forward-path from a Path, a Mailbox or a str."""
    if isinstance(value, str):
        _no_controls("an address", value)
        try:
            if sender and value in ("", "<>"):
                return Path(None)
            if value.startswith("<"):
                path = parse_path(value, utf8=True, allow_postmaster=not sender)
            elif not sender and value.lower() == "postmaster":
                path = Path(Mailbox(value, ""))
            else:
                path = Path(parse_mailbox(value, utf8=True))
        except AddressError as exc:
            raise LocalProtocolError(f"invalid address {value!r}: {exc}") from None
    elif isinstance(value, Mailbox):
        path = Path(value)
    elif isinstance(value, Path):
        path = value
    else:
        raise LocalProtocolError(f"an address must be a Path, Mailbox or str, not {value!r}")
    if path.mailbox is None and not sender:
        raise LocalProtocolError("a recipient cannot be the null path <>")
    if sender and path.mailbox is not None and not path.mailbox.domain:
        raise LocalProtocolError("the sender must have a domain")
    return path


# --- the connection -------------------------------------------------------------------


class ClientConnection:
    """One SMTP (or, with ``lmtp``, LMTP) session, client side, with no I/O.

    ``max_reply_line`` bounds a reply line in octets (line end included) and
    ``max_reply_lines`` the lines of one reply; a server that exceeds them ends the
    session with :class:`~mailagents.smtp.RemoteProtocolError`. ``tls_active`` says the transport is
    already encrypted (implicit TLS, RFC 8314).

    Requests queue and run one after the other, each ending with one event: the
    greeting first (:class:`Greeting`; commands are refused until it came), then
    :class:`Response`, :class:`AuthResult` or :class:`TransactionResult` per request.
    :class:`~mailagents.smtp.ConnectionClosed` ends the session: after QUIT's 221, or
    when the server closed (a request in progress then gets no event of its own). A 421
    reply ends the request it answers (its event carries the 421), drops the queued ones
    and waits for the server to close.
    """

    def __init__(
        self,
        *,
        lmtp: bool = False,
        tls_active: bool = False,
        max_reply_line: int = 2048,
        max_reply_lines: int = 100,
    ) -> None:
        if max_reply_line < 512 or max_reply_lines < 1:
            # RFC 5321 §4.5.3.1.5: a reply line may be 512 octets.
            raise LocalProtocolError("max_reply_line must be at least 512, max_reply_lines 1")
        self._lmtp = lmtp
        self._tls = tls_active
        self._reader = ReplyReader(max_line=max_reply_line, max_lines=max_reply_lines)
        self._out = bytearray()
        self._events: deque[ClientEvent] = deque()
        self._ops: deque[_Op] = deque()
        self._phase = _Phase.GREETING
        self._eof = False
        self._error: RemoteProtocolError | None = None
        self._extensions: dict[str, str] = {}
        self._hello_done = False
        self._authenticated = False
        self._quit_queued = False
        self._replies_received = 0
        self._queue(_GreetingOp())

    # --- state -----------------------------------------------------------------------

    @property
    def lmtp(self) -> bool:
        """Whether this is an LMTP session (RFC 2033)."""
        return self._lmtp

    @property
    def extensions(self) -> Mapping[str, str]:
        """The extensions of the last successful EHLO/LHLO reply: upper-case keyword to
        its parameter text (``{"SIZE": "35882577", "AUTH": "PLAIN SCRAM-SHA-256"}``).
        Empty before EHLO, after HELO, and after :meth:`tls_started`."""
        return MappingProxyType(self._extensions)

    @property
    def max_size(self) -> int | None:
        """The server's fixed message size limit from SIZE (RFC 1870), or ``None`` (no
        SIZE, or ``SIZE 0``, or no number)."""
        text = self._extensions.get("SIZE", "").split(" ")[0]
        if text.isascii() and text.isdigit() and len(text) <= 20 and int(text) > 0:
            return int(text)
        return None

    @property
    def tls_active(self) -> bool:
        """Whether the session runs over TLS (implicit, or after :meth:`tls_started`)."""
        return self._tls

    @property
    def authenticated(self) -> bool:
        """Whether an AUTH exchange succeeded in this session."""
        return self._authenticated

    @property
    def can_pipeline(self) -> bool:
        """Whether commands are pipelined: the server offered PIPELINING (RFC 2920), or
        this is LMTP, where it is mandatory (RFC 2033 §4.1)."""
        return self._lmtp or "PIPELINING" in self._extensions

    @property
    def closed(self) -> bool:
        """Whether :class:`~mailagents.smtp.ConnectionClosed` was reported (or the session
        failed)."""
        return self._phase in (_Phase.CLOSED, _Phase.BROKEN)

    @property
    def awaiting(self) -> str | None:
        """What the next server reply answers, so an adapter can apply RFC 5321
        §4.5.3.2's per-step time-outs: ``"GREETING"``; ``"MAIL"``, ``"RCPT"``,
        ``"DATA"`` (the 354), ``"BDAT"`` (a chunk), ``"FINAL"`` (after the message),
        ``"RSET"``; or the command sent (``"EHLO"``, ``"AUTH"``, ``"NOOP"``...).
        ``"CONTENT"`` when no reply is awaited but a streamed :meth:`send_mail` waits
        for its next piece (see :attr:`wants_content`). ``None`` when no reply is
        awaited."""
        if not self._ops:
            return None
        op = self._ops[0]
        if not op.expect:
            if isinstance(op, _Transaction) and op.wants_content:
                return "CONTENT"
            return None
        tag = op.expect[0]
        step = tag[0] if isinstance(tag, tuple) and tag else tag
        if isinstance(step, _Tag):
            return step.value
        if isinstance(op, _GreetingOp):
            return "GREETING"
        return op.command or "COMMAND"

    @property
    def replies_received(self) -> int:
        """How many replies the connection has consumed (grows with each one: an
        adapter restarts its per-reply timer when it changes)."""
        return self._replies_received

    # --- I/O -------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the server; ``b""`` means the server closed.

        Raises :class:`~mailagents.smtp.LocalProtocolError` for bytes fed between
        STARTTLS and :meth:`tls_started`, and, once :meth:`next_event` raised
        :class:`~mailagents.smtp.RemoteProtocolError`, that same error again."""
        if self._error is not None:
            raise self._error
        if self._phase is _Phase.TLS_PENDING and data:
            raise LocalProtocolError("receive_data before tls_started(): start TLS first")
        if not data:
            self._eof = True
            return
        if self._eof or self._phase in (_Phase.CLOSED, _Phase.BROKEN, _Phase.CLOSING):
            return  # nothing after the close (or a 421, or QUIT) is read
        self._reader.feed(bytes(data))

    def data_to_send(self) -> bytes:
        """The bytes to write to the server now (each pipelined group in one piece)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> ClientEvent | Literal[Sentinel.NEED_DATA]:
        """The next event, or ``NEED_DATA`` when more server input is needed.

        Handling a reply may queue the next commands of a request: write
        :meth:`data_to_send` whenever this returns ``NEED_DATA``. Raises
        :class:`~mailagents.smtp.RemoteProtocolError` when the server broke the protocol (a
        malformed reply, one beyond the bounds, or a reply nothing asked for); the session cannot
        go on, and the core stays failed: every later :meth:`receive_data`,
        :meth:`next_event` and command raises the same error.
        """
        if self._error is not None:
            raise self._error
        while True:
            if self._events:
                return self._events.popleft()
            phase = self._phase
            if phase is _Phase.CLOSED or phase is _Phase.TLS_PENDING:
                return Sentinel.NEED_DATA
            if phase is _Phase.CLOSING:
                self._reader.clear()
                if self._eof:
                    self._close()
                    continue
                return Sentinel.NEED_DATA
            try:
                reply = self._reader.next_reply()
                if reply is None:
                    if not self._eof:
                        return Sentinel.NEED_DATA
                    self._close()
                    continue
                self._dispatch(reply)
            except RemoteProtocolError as exc:
                self._error = exc
                self._phase = _Phase.BROKEN
                self._ops.clear()
                raise

    def events(self) -> Iterator[ClientEvent]:
        """Iterate over :meth:`next_event` until it returns ``NEED_DATA``."""
        while True:
            event = self.next_event()
            if isinstance(event, Sentinel):
                return
            yield event

    # --- commands --------------------------------------------------------------------

    def hello(self, domain: str) -> None:
        """LHLO in LMTP, else EHLO, falling back to HELO when the server refuses EHLO
        with a 5xx (RFC 5321 §3.2). One :class:`Response` comes back: the LHLO's or
        EHLO's, or the HELO's after a fall-back (its ``command`` says which)."""
        if self._lmtp:
            self.lhlo(domain)
            return
        ehlo = self._hello_line("EHLO", domain)
        self._check("EHLO")
        self._queue(_Greet(ehlo, self._hello_line("HELO", domain)))

    def ehlo(self, domain: str) -> None:
        """EHLO (RFC 5321 §4.1.1.1). On its 250 :attr:`extensions` is known; on a 5xx
        the caller may fall back to :meth:`helo`."""
        if self._lmtp:
            raise LocalProtocolError("LMTP uses LHLO, not EHLO (RFC 2033 §4.1)")
        self._hello("EHLO", domain)

    def lhlo(self, domain: str) -> None:
        """LHLO, LMTP's EHLO (RFC 2033 §4.1)."""
        if not self._lmtp:
            raise LocalProtocolError("LHLO is LMTP only")
        self._hello("LHLO", domain)

    def helo(self, domain: str) -> None:
        """HELO, for servers that do not know EHLO: no extensions."""
        if self._lmtp:
            raise LocalProtocolError("LMTP has no HELO (RFC 2033 §4.1)")
        self._hello("HELO", domain)

    def _hello(self, verb: str, domain: str) -> None:
        line = self._hello_line(verb, domain)
        self._check("EHLO")
        self._queue(_Simple(verb, line))

    @staticmethod
    def _hello_line(verb: str, domain: str) -> bytes:
        _no_controls("the domain", domain)
        if not domain or " " in domain or not domain.isascii():
            raise LocalProtocolError("the domain must be one ASCII token (a domain or [literal])")
        return _encode(f"{verb} {domain}")

    def starttls(self) -> None:
        """STARTTLS (RFC 3207). On the :class:`Response` with 220, start TLS on the
        transport and call :meth:`tls_started`; nothing may be sent before that."""
        self._check("STARTTLS", needs_hello=True)
        if self._tls:
            raise LocalProtocolError("TLS is already active")
        if "STARTTLS" not in self._extensions:
            raise LocalProtocolError("the server does not offer STARTTLS")
        self._queue(_Simple("STARTTLS", b"STARTTLS\r\n"))

    def tls_started(self) -> None:
        """Tell the core the TLS handshake after STARTTLS's 220 completed.

        Everything learned before is forgotten (RFC 3207 §4.2): send EHLO again."""
        if self._phase is not _Phase.TLS_PENDING:
            raise LocalProtocolError("tls_started() without a STARTTLS accepted with 220")
        self._tls = True
        self._extensions = {}
        self._hello_done = False
        self._authenticated = False
        self._reader.clear()
        self._phase = _Phase.READY

    def authenticate(
        self, mechanism: sasl.ClientMechanism, *, initial_response: bool = True
    ) -> None:
        """AUTH with a SASL client mechanism (RFC 4954).

        The initial response goes on the AUTH line (``=`` when empty) unless
        ``initial_response`` is false, the mechanism has none, or the line would pass
        512 octets; 334 challenges are answered by ``mechanism.respond``; on 235
        ``mechanism.verify_success`` must pass (SCRAM checks the server's signature).
        A challenge that is not base64, or one the mechanism refuses, cancels the
        exchange with ``*``. Ends with :class:`AuthResult`.
        """
        if not isinstance(mechanism, sasl.ClientMechanism):
            raise LocalProtocolError("mechanism must be a sasl.ClientMechanism")
        name = _no_controls("the mechanism name", mechanism.name).upper()
        if not _MECHANISM.fullmatch(name):
            raise LocalProtocolError(f"invalid SASL mechanism name {name!r}")
        self._check("AUTH", needs_hello=True)
        if self._authenticated:
            raise LocalProtocolError("already authenticated (RFC 4954 §4: AUTH only once)")
        if any(isinstance(op, _Auth) for op in self._ops):
            raise LocalProtocolError("an AUTH exchange is already under way")
        offered = self._extensions.get("AUTH")
        if offered is None:
            raise LocalProtocolError("the server does not offer AUTH")
        if name not in offered.upper().split():
            raise LocalProtocolError(f"the server does not offer {name} (it offers {offered!r})")
        line = f"AUTH {name}"
        exchange = ClientExchange(mechanism)
        if initial_response:
            argument = exchange.initial_argument(_MAX_COMMAND_LINE - len(line) - 3)
            if argument is not None:
                line += " " + argument
        self._queue(_Auth(exchange, _encode(line)))

    def send_mail(
        self,
        sender: Path | Mailbox | str,
        recipients: Sequence[Path | Mailbox | str],
        message: bytes | None = None,
        *,
        size: int | None = None,
        eight_bit: bool | None = None,
        parameters: MailParameters | None = None,
        recipient_parameters: Sequence[RcptParameters] | None = None,
        use_bdat: bool | None = None,
        chunk_size: int = 1 << 20,
    ) -> None:
        """One mail transaction: MAIL, RCPT for each recipient, then the content.

        Addresses given as str are parsed (``"a@b.example"`` or ``"<a@b.example>"``;
        ``""`` or ``"<>"`` is the null sender). The content goes with BDAT (RFC 3030)
        when the server offers CHUNKING and ``use_bdat`` is not false, in chunks of
        ``chunk_size`` octets, line ends normalised to CRLF (as is with
        ``BODY=BINARYMIME``); else with DATA, normalised and dot-stuffed. With
        PIPELINING, MAIL, every RCPT and DATA go in one write (BDAT chunks in a second,
        after the RCPT replies); without, one command per reply. When every recipient
        is refused no content is sent (RSET, or an empty message if a pipelined DATA
        got 354 anyway).

        Parameters are added as the server's extensions allow: SIZE (and the message
        is refused here if it exceeds the server's limit), ``BODY=8BITMIME`` for an
        8-bit message (or ``BINARYMIME`` with BDAT), ``SMTPUTF8`` (with
        ``BODY=8BITMIME``) when an address is non-ASCII. A parameter the server did not
        offer, an 8-bit message it cannot take, a non-ASCII address without SMTPUTF8,
        or any CR, LF or NUL raises :class:`~mailagents.smtp.LocalProtocolError` before anything is
        queued. Ends with :class:`TransactionResult`.

        **Streaming.** With ``message=None`` the content is fed in pieces instead of
        given whole, so that a large message is never held in memory: once the server
        is ready for it (DATA answered 354, or for BDAT the RCPT replies in, with at
        least one recipient accepted) :attr:`wants_content` turns true and
        :attr:`awaiting` says ``"CONTENT"``; call :meth:`send_content` with the next
        piece each time :attr:`wants_content` is true (after writing
        :meth:`data_to_send`), and :meth:`end_content` after the last one. The octets
        on the wire, and the result, are exactly those of the whole message given as
        bytes, however it is cut. When nobody was accepted, content is never asked
        for. ``size`` is then the content's size as the bytes mode counts it (after
        line-end normalisation, with the CRLF that DATA adds to a last line without
        one), for SIZE: RFC 1870 calls it the client's estimate, so a close figure
        (the stored size) is fine; without it no SIZE is announced. ``eight_bit``
        says whether the content has octets above 127, for BODY as in the bytes mode;
        if it is not true and BODY is not ``8BITMIME`` or ``BINARYMIME``, a piece with
        such an octet raises :class:`~mailagents.smtp.LocalProtocolError` (the
        session cannot go on then: close it). ``size`` and ``eight_bit`` are for the
        streaming mode only.
        """
        self._check("MAIL", needs_hello=True)
        if any(isinstance(op, _Transaction) for op in self._ops):
            raise LocalProtocolError("a mail transaction is already under way")
        ext = self._extensions
        if isinstance(recipients, str | bytes | Path | Mailbox):
            raise LocalProtocolError("recipients must be a sequence of addresses")
        rev = _to_path(sender, sender=True)
        fwd = [_to_path(r, sender=False) for r in recipients]
        if not fwd:
            raise LocalProtocolError("a transaction needs at least one recipient")
        rparams = rcpt_parameters(recipient_parameters, len(fwd))
        params = parameters if parameters is not None else MailParameters()
        if not isinstance(params, MailParameters):
            raise LocalProtocolError("parameters must be MailParameters")
        streaming = message is None
        if streaming:
            if size is not None and (
                isinstance(size, bool) or not isinstance(size, int) or size < 0
            ):
                raise LocalProtocolError("size must be a non-negative int")
            if eight_bit is not None and not isinstance(eight_bit, bool):
                raise LocalProtocolError("eight_bit must be a bool")
        elif size is not None or eight_bit is not None:
            raise LocalProtocolError("size and eight_bit are for streaming (message=None)")
        elif not isinstance(message, bytes | bytearray | memoryview):
            raise LocalProtocolError("the message must be bytes")
        else:
            message = bytes(message)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise LocalProtocolError("chunk_size must be a positive int")

        # SMTPUTF8 (RFC 6531 §3.4).
        utf8 = any(p.mailbox is not None and p.mailbox.is_utf8 for p in (rev, *fwd))
        if (utf8 or params.smtputf8) and "SMTPUTF8" not in ext:
            raise LocalProtocolError("a non-ASCII address needs the server's SMTPUTF8 (RFC 6531)")
        utf8 = utf8 or params.smtputf8

        # DATA or BDAT, and BODY (RFC 6152, RFC 3030).
        chunking = "CHUNKING" in ext
        if use_bdat and not chunking:
            raise LocalProtocolError("the server does not offer CHUNKING (BDAT)")
        bdat = chunking and use_bdat is not False
        eight = bool(eight_bit) if message is None else not message.isascii()
        body = choose_body(params.body, eight, ext, utf8=utf8, bdat=bdat)

        # The content, and SIZE (RFC 1870): counted as sent, before dot-stuffing.
        content = b""
        if message is None:
            octets = size if size is not None else params.size
        elif body == "BINARYMIME":
            content = message
            octets = len(content)
        else:
            content = normalize_line_ends(message)
            if not bdat and content and not content.endswith(b"\r\n"):
                content += b"\r\n"
            octets = len(content)
        announced = size_parameter(params.size, octets, ext, self.max_size)
        check_offered(params, rparams, ext)

        final = replace(params, size=announced, body=body, smtputf8=utf8)
        text = format_mail_parameters(final)
        mail = _encode(f"MAIL FROM:{rev} {text}" if text else f"MAIL FROM:{rev}")
        rcpts: list[tuple[Path, bytes]] = []
        for path, rp in zip(fwd, rparams, strict=True):
            rtext = format_rcpt_parameters(rp, utf8=utf8)
            _no_controls("RCPT parameters", rtext)
            rcpts.append((path, _encode(f"RCPT TO:{path} {rtext}" if rtext else f"RCPT TO:{path}")))
        _no_controls("MAIL parameters", text)

        transaction = _Transaction(
            mail=mail,
            recipients=rcpts,
            bdat=bdat,
            pipelining=self.can_pipeline,
            lmtp=self._lmtp,
        )
        if streaming:
            transaction.stream(
                BdatContent(chunk_size, binary=body == "BINARYMIME") if bdat else DataContent(),
                # RFC 6152 §3 / RFC 1652: 8-bit octets only with BODY=8BITMIME.
                ascii_only=not eight and body not in ("8BITMIME", "BINARYMIME"),
            )
        elif bdat:
            transaction.whole(chunks=bdat_chunks(content, chunk_size))
        else:
            transaction.whole(data=dot_stuff(content) + b".\r\n")
        self._queue(transaction)

    @property
    def wants_content(self) -> bool:
        """Whether :meth:`send_content` (or :meth:`end_content`) may be called now: a
        streamed :meth:`send_mail` is ready for the next piece, and what the core had
        to send was taken with :meth:`data_to_send` (so the core never holds more than
        one piece, and for BDAT one chunk, beyond what the adapter wrote)."""
        op = self._ops[0] if self._ops else None
        return (
            isinstance(op, _Transaction)
            and op.wants_content
            and not self._out
            and self._phase is _Phase.READY
        )

    def send_content(self, piece: bytes | bytearray | memoryview) -> None:
        """Feed the next piece of a streamed message (see :meth:`send_mail`); only
        while :attr:`wants_content`. Pieces may be cut anywhere, even inside a CRLF."""
        if not isinstance(piece, bytes | bytearray | memoryview):
            raise LocalProtocolError("the content must be bytes")
        self._streaming().feed(self, piece if not isinstance(piece, memoryview) else bytes(piece))

    def end_content(self) -> None:
        """End a streamed message (see :meth:`send_mail`); only while
        :attr:`wants_content`. The final reply then ends the transaction."""
        self._streaming().end(self)

    def _streaming(self) -> _Transaction:
        if self._error is not None:
            raise self._error
        if not self.wants_content:
            raise LocalProtocolError("no content is wanted now (see wants_content)")
        op = self._ops[0]
        assert isinstance(op, _Transaction)
        return op

    def rset(self) -> None:
        """RSET (RFC 5321 §4.1.1.5)."""
        self._check("RSET")
        self._queue(_Simple("RSET", b"RSET\r\n"))

    def noop(self) -> None:
        """NOOP (RFC 5321 §4.1.1.9)."""
        self._check("NOOP")
        self._queue(_Simple("NOOP", b"NOOP\r\n"))

    def vrfy(self, text: str) -> None:
        """VRFY (RFC 5321 §4.1.1.6); non-ASCII text needs SMTPUTF8 (RFC 6531 §3.7.4.2)."""
        _no_controls("VRFY text", text)
        if not text.strip(" "):
            raise LocalProtocolError("VRFY needs an argument")
        self._check("VRFY", needs_hello=not text.isascii())
        line = f"VRFY {text}"
        if not text.isascii():
            if "SMTPUTF8" not in self._extensions:
                raise LocalProtocolError("non-ASCII VRFY needs the server's SMTPUTF8")
            line += " SMTPUTF8"
        self._queue(_Simple("VRFY", _encode(line)))

    def quit(self) -> None:
        """QUIT (RFC 5321 §4.1.1.10); after its 221 comes
        :class:`~mailagents.smtp.ConnectionClosed`."""
        self._check("QUIT")
        self._quit_queued = True
        self._queue(_Simple("QUIT", b"QUIT\r\n"))

    # --- internals -------------------------------------------------------------------

    def _check(self, command: str, *, needs_hello: bool = False) -> None:
        """Refuse a command the session cannot take now."""
        if self._error is not None:
            raise self._error
        phase = self._phase
        if phase is _Phase.GREETING:
            raise LocalProtocolError("wait for the server's greeting")
        if phase is _Phase.TLS_PENDING:
            raise LocalProtocolError("start TLS and call tls_started() first")
        if phase in (_Phase.CLOSING, _Phase.CLOSED, _Phase.BROKEN) or self._quit_queued:
            raise LocalProtocolError("the session is over")
        if phase is _Phase.REFUSED and command != "QUIT":
            raise LocalProtocolError("the server refused the session: only QUIT")
        if any(op.command == "STARTTLS" for op in self._ops):
            raise LocalProtocolError("nothing may follow STARTTLS until its reply")
        if needs_hello:
            if any(op.command in ("EHLO", "HELO", "LHLO") for op in self._ops):
                raise LocalProtocolError("wait for the EHLO reply")
            if not self._hello_done:
                raise LocalProtocolError("send EHLO (or HELO) first")

    def _queue(self, op: _Op) -> None:
        self._ops.append(op)
        if len(self._ops) == 1:
            op.start(self)

    def _emit(self, event: ClientEvent) -> None:
        self._events.append(event)

    def _close(self) -> None:
        self._ops.clear()
        self._reader.clear()
        self._phase = _Phase.CLOSED
        self._emit(ConnectionClosed())

    def _dispatch(self, reply: Reply) -> None:
        if not self._ops or not self._ops[0].expect:
            raise RemoteProtocolError(f"unexpected reply {reply.code} {reply.text[:60]!r}")
        op = self._ops[0]
        tag = op.expect.popleft()
        self._replies_received += 1
        if reply.code == 421:
            # RFC 5321 §3.8: the server is shutting down and closes after this reply.
            op.interrupted(self, tag, reply)
            self._ops.clear()
            if self._phase is not _Phase.CLOSED:
                self._phase = _Phase.CLOSING
            return
        op.on_reply(self, tag, reply)
        if op.done and self._ops and self._ops[0] is op:
            self._ops.popleft()
            if self._ops and self._phase in (_Phase.READY, _Phase.REFUSED):
                self._ops[0].start(self)
