"""The server side of SMTP and LMTP as a sans-I/O connection object (RFC 5321, RFC 2033).

Feed the bytes that arrived with :meth:`ServerConnection.receive_data`, take events with
:meth:`ServerConnection.next_event` until it returns ``NEED_DATA`` (or ``PAUSED``),
answer decision events with :meth:`ServerConnection.send`, and write what
:meth:`ServerConnection.data_to_send` returns. The core owns every protocol rule; the
application only decides policy.
"""


from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from mailagents import sasl
from mailagents._protocol import BARE_LF, TOO_LONG, LocalProtocolError
from mailagents.sasl._exchange import ANSWERS
from mailagents.smtp._address import (
    AddressError,
    parse_forward_path,
    parse_reverse_path,
    split_path_and_parameters,
)
from mailagents.smtp._auth import Authentication
from mailagents.smtp._bdat import Chunking
from mailagents.smtp._data import DataReader
from mailagents.smtp._events import (
    NEED_DATA,
    PAUSED,
    Accept,
    DataChunk,
    Hello,
    LMTPReplies,
    MailFrom,
    MessageComplete,
    Quit,
    RcptTo,
    Recipient,
    Reject,
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
from mailagents.smtp._replies import (
    BARE_LF_LINE,
    GO_AHEAD,
    LINE_TOO_LONG,
    MESSAGE_OK,
    OK,
    RECIPIENT_OK,
    SENDER_OK,
    UNRECOGNIZED,
    reply,
)
from mailagents.smtp._reply import Reply
from mailagents.smtp._server_core import (
    S_AUTH,
    S_BDAT_CHUNK,
    S_CLOSED,
    S_CONNECTED,
    S_DATA,
    S_READY,
    S_REFUSED,
    S_TLS_PENDING,
    Decision,
    ServerEvent,
)
from mailagents.smtp._state import COMMANDS, State

__all__ = ["Decision", "ServerConnection", "ServerEvent"]

# Controls other than TAB have no place in a command line (RFC 5321 §4.1.2 grammar).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# What parse_mail_parameters("") and parse_rcpt_parameters("") give.
_NO_MAIL_PARAMETERS = MailParameters()
_NO_RCPT_PARAMETERS = RcptParameters()
_HELLO_VERBS = frozenset({"EHLO", "HELO", "LHLO"})
# Where a graceful shutdown may end a session (see at_boundary).
_BOUNDARY = (S_CONNECTED, S_READY, S_REFUSED, S_CLOSED)
# What may be issued before STARTTLS when require_tls is set.
_BEFORE_TLS_VERBS = frozenset({"EHLO", "HELO", "LHLO", "STARTTLS", "NOOP", "RSET", "QUIT"})


class ServerConnection(Chunking, Authentication):
    """One SMTP (or LMTP) session, server side, with no I/O.

    ``greeting`` overrides the 220 greeting. A 554 greeting refuses the session as
    RFC 5321 §3.1 describes: every command but QUIT then gets 503.
    """

    # The session state and its primitives are in _server_core, BDAT in _bdat, AUTH in
    # _auth; the public API and the other commands here.

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
        if self._state is S_TLS_PENDING and data:
            raise LocalProtocolError("receive_data before tls_started(): start TLS first")
        if not data:
            self._eof = True
            return
        if self._state is S_CLOSED:
            return  # whatever follows QUIT or 421 is ignored
        self._in += data
        if self._pending is not None and len(self._in) > self.config.max_buffer:
            self._lines.clear()
            self._fatal(reply(421, "4.7.0", f"{self.config.hostname} Too much pipelined input"))

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
        if not self._fresh or self._state is not S_CONNECTED:
            raise LocalProtocolError("refuse() only before the greeting was sent")
        self._out.clear()
        self._queue(reply(421, None, f"{self.config.hostname} {text}"), plain=True)
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
            if state is S_CLOSED or state is S_TLS_PENDING:
                return self._need_data()
            before = len(self._in)
            if state is S_DATA:
                self._process_data()
            elif state is S_BDAT_CHUNK:
                self._process_bdat()
            elif not before:
                # No command line can be there.
                return self._need_data() if self._eof else NEED_DATA
            elif self._bdat_rejected is not None:
                self._process_bdat()  # a refused chunk's octets, skipped
            else:
                line = self._take_line()
                if line is not None:
                    if state is S_AUTH:
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
        if isinstance(decision, ANSWERS):
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
        if self._state is not S_TLS_PENDING:
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
        if self._state is S_CLOSED:
            return
        self._queue(reply(421, enhanced, f"{self.config.hostname} {text}"))
        self._transition("CLOSE")
        self._pending = None
        self._events.clear()
        self._lines.clear()
        self._clear_transaction()

    def timed_out(self) -> None:
        """End the session because the client was too slow: ``421 4.4.2`` (RFC 5321
        §4.5.3.2; the adapter owns the clock and calls this)."""
        self.shutdown("Timeout waiting for command, closing", enhanced="4.4.2")


    # --- line handling ---------------------------------------------------------------

    def _take_line(self) -> bytes | None:
        line = self._lines.take_line(self._line_bound, crlf_only=self._crlf_only)
        if type(line) is bytes:
            n = len(line) + 2
            if n <= self._short_line or n <= self._line_limit(line):
                return line
            self._reject("", LINE_TOO_LONG)
        elif line is TOO_LONG:
            self._reject("", LINE_TOO_LONG)
        elif line is BARE_LF:
            # RFC 5321 §2.3.8: lines end with CRLF; a bare LF is refused.
            self._reject("", BARE_LF_LINE)
        return None

    def _line_limit(self, line: bytes) -> int:
        """The bound of this line, CRLF included: RFC 5321 §4.5.3.1.4 gives a command
        line 512 octets (``max_line``), to which the offered extensions add
        their MAIL and RCPT parameters (``command_line_limit``); an AUTH line and a
        SASL response may have 12,288 (RFC 4954 §4)."""
        if self._state is S_AUTH:
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
            self._reject("", reply(500, "5.5.2", "Invalid UTF-8 in command"))
            return
        if _CONTROL.search(line):
            self._reject("", reply(500, "5.5.2", "Control characters in command"))
            return
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        if verb not in COMMANDS:
            self._reject(verb[:16], UNRECOGNIZED)
            return
        cfg = self.config
        if verb in _HELLO_VERBS and (verb == "LHLO") != cfg.lmtp:
            # RFC 2033 §4.1: an LMTP server answers HELO and EHLO with 500.
            protocol = "LMTP" if cfg.lmtp else "SMTP"
            self._reject(verb, reply(500, "5.5.1", f"{verb} is not {protocol}"))
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
            self._fatal(reply(554, "5.5.0", f"{cfg.hostname} Improper pipelining after DATA, "
                                         "closing connection"))
        if verb not in self._row:
            self._reject(verb, self._sequence_error(verb))
            return
        if cfg.require_tls and not self._tls and verb not in _BEFORE_TLS_VERBS:
            self._reject(verb, reply(530, "5.7.0", "Must issue a STARTTLS command first"))
            return
        if self._errors:
            # max_errors counts errors in a row: a command carried out ends the run.
            self._rejected = False
            _HANDLERS[verb](self, arg)
            if not self._rejected:
                self._errors = 0
            return
        _HANDLERS[verb](self, arg)


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
            self._reject(verb, reply(501, "5.5.4", f"Syntax: {verb} domain"))
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
            self._queue(reply(250, None, cfg.hostname), plain=True)
            return
        ext, self._extensions = self._ehlo[self._tls]
        greeting = f"{cfg.hostname} Hello {event.domain}"
        # RFC 2034 §4: no enhanced code in the EHLO/LHLO reply.
        self._queue(reply(250, None, greeting, *ext), plain=True)

    def _cmd_mail(self, arg: str) -> None:
        if arg[:5].upper() != "FROM:":
            self._reject("MAIL", reply(501, "5.5.4", "Syntax: MAIL FROM:<address>"))
            return
        if self.config.require_auth and self._identity is None:
            self._reject("MAIL", reply(530, "5.7.0", "Authentication required"))
            return
        try:
            path_text, param_text = split_path_and_parameters(arg[5:].lstrip(" "))
        except AddressError as exc:
            self._reject("MAIL", reply(501, "5.1.7", f"Bad sender address syntax: {exc}"))
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
            self._reject("MAIL", reply(exc.code, exc.enhanced, exc.text), bad=exc.code != 552)
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
            return reply(553, "5.6.7", "Non-ASCII address needs SMTPUTF8")
        what = "sender" if enhanced == "5.1.7" else "recipient"
        return reply(501, enhanced, f"Bad {what} address syntax: {exc}")

    def _decide_mail(self, event: MailFrom, decision: Decision) -> None:
        if isinstance(decision, Reject):
            self._queue(decision.reply)
            return
        assert isinstance(decision, Accept)
        self._mail_from = event
        self._recipients = []
        self._transition("MAIL")
        self._queue(decision.reply or SENDER_OK)

    def _cmd_rcpt(self, arg: str) -> None:
        if arg[:3].upper() != "TO:":
            self._reject("RCPT", reply(501, "5.5.4", "Syntax: RCPT TO:<address>"))
            return
        if len(self._recipients) >= self.config.max_recipients:
            # RFC 5321 §4.5.3.1.10: 452 for too many recipients.
            self._reject("RCPT", reply(452, "4.5.3", "Too many recipients"), bad=False)
            return
        assert self._mail_from is not None
        utf8 = self._mail_from.parameters.smtputf8
        try:
            path_text, param_text = split_path_and_parameters(arg[3:].lstrip(" "))
        except AddressError as exc:
            self._reject("RCPT", reply(501, "5.1.3", f"Bad recipient address syntax: {exc}"))
            return
        try:
            params = (
                parse_rcpt_parameters(param_text, extensions=self._extensions)
                if param_text
                else _NO_RCPT_PARAMETERS
            )
        except ParameterError as exc:
            self._reject("RCPT", reply(exc.code, exc.enhanced, exc.text))
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
        self._queue(decision.reply or RECIPIENT_OK)

    def _cmd_data(self, arg: str) -> None:
        if arg.strip(" "):
            self._reject("DATA", reply(501, "5.5.4", "DATA takes no parameters"))
            return
        assert self._mail_from is not None
        if self._mail_from.parameters.body == "BINARYMIME":
            # RFC 3030 §3: BINARYMIME content can only be sent with BDAT.
            self._reject("DATA", reply(503, "5.5.1", "BODY=BINARYMIME requires BDAT"))
            return
        cfg = self.config
        self._reader = DataReader(
            bare_line_ends=cfg.bare_line_ends,
            max_line_length=cfg.max_text_line,
            max_size=cfg.max_message_size,
        )
        self._transition("DATA")
        self._queue(GO_AHEAD)

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


    def _decide_message(self, event: MessageComplete, decision: Decision) -> None:
        recipients = event.envelope.recipients
        self._clear_transaction()
        if isinstance(decision, LMTPReplies):
            for answer in decision.replies:
                self._queue(answer)
            return
        if isinstance(decision, Reject):
            answer = decision.reply
        else:
            assert isinstance(decision, Accept)
            answer = decision.reply or MESSAGE_OK
        # RFC 2033 §4.2: in LMTP one reply per accepted recipient, in RCPT order.
        for _ in range(len(recipients) if self.config.lmtp else 1):
            self._queue(answer)


    def _cmd_rset(self, arg: str) -> None:
        if arg.strip(" "):
            self._reject("RSET", reply(501, "5.5.4", "RSET takes no parameters"))
            return
        self._abandon_transaction()
        self._transition("RSET")
        self._queue(OK)

    def _cmd_noop(self, arg: str) -> None:
        self._queue(OK)

    def _cmd_quit(self, arg: str) -> None:
        if arg.strip(" "):
            self._reject("QUIT", reply(501, "5.5.4", "QUIT takes no parameters"))
            return
        self._clear_transaction()
        self._queue(reply(221, "2.0.0", f"{self.config.hostname} closing connection"))
        self._transition("QUIT")
        self._lines.clear()
        self._emit(Quit())

    def _cmd_vrfy(self, arg: str) -> None:
        if not arg.strip(" "):
            self._reject("VRFY", reply(501, "5.5.4", "Syntax: VRFY address"))
            return
        # RFC 5321 §3.5.3: 252 when the server will not verify but will try to deliver.
        self._queue(
            reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
        )

    def _cmd_expn(self, arg: str) -> None:
        self._reject("EXPN", reply(502, "5.5.1", "EXPN not available"), bad=False)

    def _cmd_help(self, arg: str) -> None:
        self._queue(reply(214, "2.0.0", *self.config.help_text))

    def _cmd_starttls(self, arg: str) -> None:
        if self._tls:
            self._reject("STARTTLS", reply(503, "5.5.1", "TLS already active"))
            return
        if not self.config.starttls or "STARTTLS" not in self._extensions:
            self._reject("STARTTLS", reply(502, "5.5.1", "STARTTLS not available"))
            return
        if arg.strip(" "):
            self._reject("STARTTLS", reply(501, "5.5.4", "STARTTLS takes no parameters"))
            return
        self._queue(reply(220, "2.0.0", "Ready to start TLS"))
        # RFC 3207 §4 and CVE-2011-0411: nothing sent after the STARTTLS line in the clear
        # may be acted on; it is discarded before the handshake.
        self._lines.clear()
        self._transition("STARTTLS")
        self._emit(StartTLS())


# The method that carries out each command (every verb of _state's table), for
# _command's dispatch without building a name per command.
_HANDLERS: dict[str, Callable[[ServerConnection, str], None]] = {
    verb: getattr(ServerConnection, "_cmd_" + verb.lower()) for verb in COMMANDS if verb != "BDAT"
}
