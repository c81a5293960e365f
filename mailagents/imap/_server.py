"""The server side of IMAP as a sans-I/O connection object (RFC 9051 IMAP4rev2,
RFC 3501 IMAP4rev1, LITERAL+/- RFC 7888, IDLE RFC 2177, ENABLE RFC 5161,
CONDSTORE/QRESYNC RFC 7162, SASL-IR RFC 4959, COMPRESS RFC 4978).

Send the greeting the application chose (:class:`~mailagents.imap._events.Greeting`),
feed received bytes with :meth:`ServerConnection.receive_data`, take events with
:meth:`ServerConnection.next_event` until ``NEED_DATA`` (or ``PAUSED``), answer each
``CommandReceived`` with ``Untagged`` responses and one ``Complete``, and write what
:meth:`ServerConnection.data_to_send` returns. The core owns the session rules: tags,
literal framing and limits, which command is valid in which state, STARTTLS, logins,
IDLE, when changes of the selected mailbox may be told
(:class:`~mailagents.imap._selected.SelectedMailbox`), and what the client enabled
changes (CONDSTORE by any CONDSTORE enabling command, IMAP4rev2 and UTF8=ACCEPT:
:mod:`mailagents.imap._server_session`). Untagged answers may be response objects,
which the core writes for the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeAlias

from mailagents import sasl
from mailagents._protocol import NEED_DATA, PAUSED, LocalProtocolError, Sentinel
from mailagents.imap._command_parser import CommandSyntaxError, parse_command
from mailagents.imap._commands import (
    Append,
    Authenticate,
    Close,
    Compress,
    Examine,
    Login,
    Select,
    UnknownCommand,
    Unselect,
)
from mailagents.imap._events import (
    AppendChunk,
    AppendEnd,
    AppendRequested,
    AppendStart,
    CommandReceived,
    Complete,
    CompressionStarted,
    ConnectionClosed,
    Continue,
    Greeting,
    IdleEnded,
    IdleStarted,
    LiteralData,
    Untagged,
)
from mailagents.imap._frame import Frame
from mailagents.imap._framing import (
    ContinuationNeeded,
    FrameError,
    FrameErrorKind,
    FrameReceived,
    IdleDone,
    LiteralChunk,
    LiteralEnd,
    LiteralStart,
    RawLine,
)
from mailagents.imap._selected import SelectedMailbox
from mailagents.imap._server_core import (
    ServerEvent,
    append_mailbox,
    status_line,
    verb_of,
)
from mailagents.imap._server_session import SessionRules
from mailagents.imap._state import State, valid_in

__all__ = ["Decision", "ServerConnection"]

Decision: TypeAlias = (
    Greeting
    | Untagged
    | Complete
    | Continue
    | LiteralData
    | sasl.PasswordVerdict
    | sasl.ScramSecrets
    | sasl.NoSuchUser
    | sasl.TokenVerdict
    | sasl.LegacySecret
)
"""What :meth:`ServerConnection.send` takes."""

_IDLING = frozenset({State.IDLE_AUTHENTICATED, State.IDLE_SELECTED})
# Where an untagged response may go out while no command awaits an answer (§5.3).
_UNSOLICITED = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED, *_IDLING})
# RFC 9051 §6.4.1/§6.4.2: CLOSE and UNSELECT send no EXPUNGE; LOGOUT ends everything.
_NO_UPDATES = frozenset({"CLOSE", "UNSELECT", "LOGOUT"})
_ERROR_ANSWERS = {
    FrameErrorKind.LITERAL_TOO_BIG: ("NO", "TOOBIG"),  # RFC 7888 §4, RFC 5530 §3
    FrameErrorKind.NON_SYNC_TOO_BIG: ("BAD", "TOOBIG"),  # RFC 7888 LITERAL-, RFC 9051 §4.3
}


class ServerConnection(SessionRules):
    """One IMAP session, server side, with no I/O (see the module text)."""

    # --- public API --------------------------------------------------------------------

    @property
    def state(self) -> State:
        """Where the session stands (RFC 9051 §3)."""
        return self._state

    @property
    def paused(self) -> bool:
        """An event awaits the application's answer: an adapter stops reading."""
        return self._pending is not None or self._state is State.GREETING

    @property
    def identity(self) -> str | None:
        """The authenticated identity, once logged in."""
        return self._identity

    @property
    def mailbox(self) -> SelectedMailbox | None:
        """The selected mailbox's view: tell it the store's changes, then call
        :meth:`refresh`."""
        return self._mailbox

    @property
    def enabled(self) -> frozenset[str]:
        """What ENABLE turned on (upper case, RFC 5161)."""
        return frozenset(self._enabled)

    @property
    def tls_active(self) -> bool:
        """The session runs over TLS."""
        return self._tls

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the client; ``b""`` means the client closed.

        While STARTTLS awaits the handshake only ``b""`` is taken (anything else is a
        ``LocalProtocolError``: the adapter must start TLS first). Raises
        ``RemoteProtocolError`` when more than ``max_buffer`` octets pile up while
        the application has not answered (the BYE is queued)."""
        if self._error is not None:
            raise self._error
        if not data:
            self._eof = True
            return
        if self._tls_pending:
            raise LocalProtocolError("receive_data() before tls_started() after STARTTLS")
        if self._compress_pending:
            raise LocalProtocolError("receive_data() before compression_started() after COMPRESS")
        if self._closed:
            return
        self._reader.receive_data(data)
        if self.paused and self._reader.buffered > self.config.max_buffer:
            self._bye("Too much input while busy")
            self._fail("input over max_buffer while paused")

    @property
    def pending(self) -> int:
        """How many octets :meth:`data_to_send` would give now (an adapter may gather
        small responses into fewer writes)."""
        return len(self._out)

    def data_to_send(self) -> bytes:
        """The bytes to write to the client now."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def events(self) -> Iterator[ServerEvent]:
        """The events :meth:`next_event` gives, until ``NEED_DATA`` or ``PAUSED``."""
        while not isinstance(event := self.next_event(), Sentinel):
            yield event

    def next_event(self) -> ServerEvent | Sentinel:
        """The next event, ``NEED_DATA`` or ``PAUSED``; ``RemoteProtocolError`` when the
        session cannot go on (its BYE queued)."""
        if self._error is not None:
            raise self._error
        while True:
            if self._events:
                return self._events.popleft()
            if self._pending is not None or self._state is State.GREETING:
                return PAUSED
            if self._closed:
                return NEED_DATA
            pending = self._tls_pending or self._compress_pending
            event = NEED_DATA if pending else self._reader.next_event()
            if event is NEED_DATA:
                if self._eof:
                    self._end("connection closed by the client")
                    continue
                return NEED_DATA
            self._reader_event(event)

    def send(self, decision: Decision) -> None:
        """Tell the core what the application decided (see ``Decision``)."""
        if self._error is not None:
            raise self._error
        if isinstance(decision, Greeting):
            self._greet(decision)
        elif isinstance(self._pending, sasl.NeedCredentials):
            self._answer_credentials(decision)
        elif isinstance(self._pending, AppendRequested):
            self._answer_append(self._pending, decision)
        elif (
            isinstance(decision, Untagged)
            and self._streaming is None
            and (self._pending is not None or self._state in _UNSOLICITED)
        ):
            self._untagged(decision)
        elif self._pending is None:
            raise LocalProtocolError(f"{type(decision).__name__} with no command pending")
        elif isinstance(decision, LiteralData):
            self._literal_data(decision.data)
        elif self._streaming is not None:
            raise LocalProtocolError("the Streamed literal being sent is not complete")
        elif isinstance(decision, Complete):
            self._complete(decision)
        else:
            raise LocalProtocolError("answer CommandReceived with Untagged and Complete")

    def refresh(self) -> None:
        """Send the selected mailbox's changes that may go out now (RFC 9051 §7.5.1):
        while IDLE-ing, during a command, or between commands (EXISTS and flags then,
        no expunges)."""
        command = self._command
        if self._state in _IDLING:
            self._flush_updates("IDLE")
        elif command is not None:
            self._flush_updates(verb_of(command), uid=bool(getattr(command, "uid", False)))
        else:
            self._flush_updates(None)

    def compression_started(self) -> bytes:
        """The adapter put DEFLATE between the transport and the core after
        ``CompressionStarted``: returns the octets received after the COMPRESS command
        (already compressed, RFC 4978 §3), for the adapter to decode and feed back with
        :meth:`receive_data`. Until this call no input is read."""
        if not self._compress_pending:
            raise LocalProtocolError("compression_started() without an accepted COMPRESS")
        self._compress_pending = False
        return self._reader.take_buffered()

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS completed: the session starts afresh
        (RFC 9051 §6.2.1: no new greeting; STARTTLS is no longer offered)."""
        if not self._tls_pending:
            raise LocalProtocolError("tls_started() without an accepted STARTTLS")
        self._tls_pending = False
        self._tls = True
        self._reader.clear()
        self._transition("TLS_STARTED")

    def shutdown(self, text: str = "Server shutting down") -> None:
        """End the session now with ``* BYE`` (RFC 9051 §7.1.5)."""
        if not self._closed:
            self._bye(text)

    # --- reader events -----------------------------------------------------------------

    def _reader_event(self, event: object) -> None:
        if isinstance(event, FrameReceived):
            self._frame(event.frame)
        elif isinstance(event, ContinuationNeeded):
            if event.message and self.config.confirm_append and event.head is not None:
                mailbox = append_mailbox(event.head, self._utf8)
                self._emit(
                    AppendRequested(
                        tag=event.tag,
                        mailbox=mailbox,
                        size=event.size,
                        binary=event.binary,
                        index=event.index,
                    )
                )
                return
            self._line(b"+ Ready for literal data\r\n")
            self._reader.go_ahead()
        elif isinstance(event, LiteralStart):
            mailbox = append_mailbox(event.head, self._utf8)
            self._events.append(
                AppendStart(
                    tag=event.tag,
                    mailbox=mailbox,
                    size=event.size,
                    binary=event.binary,
                    index=event.index,
                )
            )
        elif isinstance(event, LiteralChunk):
            self._events.append(AppendChunk(index=event.index, data=event.data))
        elif isinstance(event, LiteralEnd):
            self._events.append(AppendEnd(index=event.index))
        elif isinstance(event, RawLine):
            self._auth_line(event.line)
        elif isinstance(event, IdleDone):
            self._idle_end("OK", "IDLE terminated")
        else:
            assert isinstance(event, FrameError)
            self._frame_error(event)

    def _answer_append(self, event: AppendRequested, decision: object) -> None:
        if isinstance(decision, Continue):
            self._pending = None
            self._line(b"+ Ready for literal data\r\n")
            self._reader.go_ahead()
        elif isinstance(decision, Complete) and decision.status != "OK":
            if decision.selected is not None:
                raise LocalProtocolError("only an OK to SELECT/EXAMINE carries selected=")
            self._pending = None
            self._reader.refuse()
            self._line(
                status_line(
                    event.tag, decision.status, decision.text or "APPEND refused", decision.code
                )
            )
        else:
            raise LocalProtocolError("answer AppendRequested with Continue or a NO Complete")

    def _frame_error(self, error: FrameError) -> None:
        if self._state is State.AUTHENTICATING:
            self._auth_end("BAD", "Response line too long", None, "line too long")
        elif self._state in _IDLING:
            self._idle_end("BAD", error.text)
        elif error.fatal:
            self._bye(error.text)
            self._fail(error.text)
        else:
            status, code = _ERROR_ANSWERS.get(error.kind, ("BAD", None))
            self._reject(error.tag, status, error.text, code)

    def _idle_end(self, status: str, text: str) -> None:
        tag = self._tag or "*"
        self._transition("DONE")
        self._status(status, text)
        self._command = None
        self._events.append(IdleEnded(tag=tag))

    # --- commands ----------------------------------------------------------------------

    def _frame(self, frame: Frame) -> None:
        try:
            command = parse_command(frame, utf8=self._utf8)
        except CommandSyntaxError as exc:
            self._reject(exc.tag, "BAD", exc.message)
            return
        if not self._utf8 and not all(line.isascii() for line in frame.lines):
            # RFC 6855 §3 (RFC 3501 §9): 8-bit octets outside literals only after
            # ENABLE UTF8=ACCEPT (or IMAP4rev2).
            self._reject(command.tag, "BAD", "8-bit text needs ENABLE UTF8=ACCEPT")
            return
        verb = verb_of(command)
        if isinstance(command, UnknownCommand):
            self._reject(command.tag, "BAD", "Unknown command")
            return
        if not valid_in(self._state, verb):
            self._reject(command.tag, "BAD", f"{verb} not valid in this state")
            return
        if not self._admit(command, verb):
            return
        self._command, self._tag = command, command.tag
        handler = getattr(self, f"_do_{verb.lower()}", None)
        if (
            verb in ("NOOP", "CHECK")
            and self.config.poll_commands
            and self._state is State.SELECTED
        ):
            handler = None  # the application looks at the store, then completes
        if handler is None:
            if isinstance(command, (Select, Examine)) and not self._select(command):
                return
            self._emit(CommandReceived(command=command))
        else:
            handler(command)

    def _done(self, text: str, code: str | None = None) -> None:
        """Complete a command the core handled itself with OK."""
        self._refresh_for_command()
        self._status("OK", text, code)
        self._command = None

    def _refresh_for_command(self) -> None:
        command = self._command
        if command is not None and verb_of(command) not in _NO_UPDATES:
            self.refresh()

    def _do_capability(self, command: object) -> None:
        self._line(("* CAPABILITY " + " ".join(self.capabilities()) + "\r\n").encode())
        self._done("CAPABILITY completed")

    def _do_noop(self, command: object) -> None:
        self._done("NOOP completed")

    def _do_check(self, command: object) -> None:
        self._done("CHECK completed")

    def _do_logout(self, command: object) -> None:
        self._line(status_line(None, "BYE", "Logging out"))
        self._status("OK", "LOGOUT completed")
        self._command = None
        self._transition("LOGOUT")
        self._end("logout")

    def _do_starttls(self, command: object) -> None:
        assert self._tag is not None
        self._cmd_starttls(self._tag)

    def _do_login(self, command: Login) -> None:
        self._cmd_login(command)

    def _do_authenticate(self, command: Authenticate) -> None:
        self._cmd_authenticate(command)

    def _do_idle(self, command: object) -> None:
        self._transition("IDLE")
        self._flush_updates("IDLE")  # what is pending first, as RFC 2177's example shows
        self._line(b"+ idling\r\n")
        self._reader.expect_done()
        assert self._tag is not None
        self._events.append(IdleStarted(tag=self._tag))

    def _do_compress(self, command: Compress) -> None:
        offered = any(e.upper() == "COMPRESS=DEFLATE" for e in self.config.extensions)
        if not offered or command.mechanism != "DEFLATE":
            self._command = None
            self._reject(command.tag, "BAD", "Unsupported compression mechanism")
        elif self._compressed:
            # RFC 4978 §3: a second COMPRESS is refused with COMPRESSIONACTIVE.
            self._command = None
            self._reject(command.tag, "NO", "Compression already active", "COMPRESSIONACTIVE")
        else:
            self._compressed = True
            self._compress_pending = True  # nothing more is read until the codec is in
            self._done("DEFLATE active")
            self._events.append(CompressionStarted())

    def _select(self, command: Select | Examine) -> bool:
        if command.qresync is not None and "QRESYNC" not in self._enabled:
            # RFC 7162 §3.2.3 (restated in §3.2.5): the QRESYNC parameter from a client
            # that has not issued ENABLE QRESYNC gets a tagged BAD.
            self._command = None
            self._reject(command.tag, "BAD", "QRESYNC not enabled")
            return False
        if command.condstore:
            self._condstore_on()  # RFC 7162 §3.1.8: a CONDSTORE enabling command
        self._select_name, self._modseq_told = command.mailbox, False
        if self._mailbox is not None:
            # RFC 9051 §6.3.2: the selected mailbox is closed first, and told so.
            self._mailbox = self._selected_name = None
            self._line(status_line(None, "OK", "Previous mailbox is now closed", "CLOSED"))
        return True

    def _complete(self, decision: Complete) -> None:
        command = self._command
        assert command is not None
        verb = verb_of(command)
        ok = decision.status == "OK"
        if isinstance(command, (Select, Examine)):
            if ok:
                view = decision.selected
                if view is None:
                    raise LocalProtocolError("an OK to SELECT/EXAMINE carries selected=")
                if "CONDSTORE" in self._enabled and not self._modseq_told:
                    raise LocalProtocolError(
                        "after a CONDSTORE enabling command SELECT/EXAMINE sends "
                        "* OK [HIGHESTMODSEQ n] or * OK [NOMODSEQ] (RFC 7162 §3.1.2)"
                    )
                view.condstore = view.condstore or "CONDSTORE" in self._enabled
                view.qresync = view.qresync or "QRESYNC" in self._enabled
                self._mailbox, self._selected_name = view, self._select_name
                self._transition(verb)
            else:
                self._transition("SELECT_FAILED")
            self._select_name = None
        elif decision.selected is not None:
            raise LocalProtocolError("only an OK to SELECT/EXAMINE carries selected=")
        elif isinstance(command, (Close, Unselect)) and ok:
            self._mailbox = self._selected_name = None
            self._transition(verb)
        else:
            if isinstance(command, Append) and ok and self._append_watch is not None:
                self._appended_to_view(decision.code, self._append_watch)
            self._append_watch = None
            self._refresh_for_command()
        self._pending = None
        label = f"UID {type(command).__name__.upper()}" if verb == "UID" else verb
        self._status(decision.status, decision.text or f"{label} completed", decision.code)
        self._command = None

    def _greet(self, greeting: Greeting) -> None:
        if self._state is not State.GREETING:
            raise LocalProtocolError("the greeting was sent already")
        caps = "CAPABILITY " + " ".join(self.capabilities())
        if greeting.kind == "BYE":
            self._transition("GREETING_BYE")
            self._line(status_line(None, "BYE", greeting.text))
            self._closed = True
            self._events.append(ConnectionClosed(reason="refused at greeting"))
            return
        if greeting.kind == "PREAUTH":
            self._identity = greeting.identity
            self._transition("GREETING_PREAUTH")
        else:
            self._transition("GREETING_OK")
        self._line(status_line(None, greeting.kind, greeting.text, caps))
