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

import re
from collections.abc import Iterator

from mailagents import sasl
from mailagents._protocol import LocalProtocolError
from mailagents.pop3._auth import Authorization
from mailagents.pop3._events import OpenMaildrop, Quit, Retrieve, StartTLS, Update
from mailagents.pop3._maildrop import Transaction
from mailagents.pop3._response import PAUSED, Sentinel
from mailagents.pop3._server_core import Decision, ServerEvent, err, multiline, ok
from mailagents.pop3._state import COMMANDS, State

__all__ = ["Decision", "ServerConnection", "ServerEvent"]

# Control characters (TAB included: RFC 2449 §3 separates arguments with one SPACE).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Where a graceful shutdown may end a session (see at_boundary).
_BOUNDARY = frozenset({State.AUTHORIZATION, State.CLOSED})


class ServerConnection(Transaction, Authorization):
    """One POP3 session, server side, with no I/O.

    ``challenge`` is the APOP timestamp (RFC 1939 §7, ``<pid.clock@hostname>``, made
    by the adapter, which owns the clock). APOP is offered only when it is given and
    ``config.allow_apop`` is set; only then is it appended to the greeting (a server
    without APOP has no reason to show its process id and clock).
    """

    # The session state and its primitives are in _server_core, the logins in _auth,
    # the maildrop commands in _maildrop; the public API and the other commands here.

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
            self._fatal(err("Too much pipelined input, closing connection", "SYS/PERM"))

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
        self._close(err(f"{self.config.hostname} {text}", "SYS/TEMP"))

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
                    self._auth_end(err("Line too long"))
                else:
                    self._reject("", err("Line too long"))
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
        self._close(err(text, "SYS/TEMP"))

    def timed_out(self) -> None:
        """End the session because the client was idle too long (the adapter owns the
        clock; RFC 1939 §3 says at least 10 minutes). The session does NOT enter the
        UPDATE state: nothing is deleted."""
        self._close(err("Autologout; idle for too long"))

    # --- commands --------------------------------------------------------------------

    def _command(self, raw: bytes) -> None:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._user = None
            self._reject("", err("Invalid UTF-8 in command"))
            return
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        # RFC 1939 §7: PASS only immediately after a successful USER.
        user, self._user = self._user, None
        if not verb.isascii() or verb not in COMMANDS:
            self._reject(verb[:16] if verb.isascii() else "", err("Unknown command"))
            return
        if _CONTROL.search(line):
            self._reject(verb, err("Control characters in command"))
            return
        if verb not in self._row:
            if self._state is State.AUTHORIZATION:
                text = f"{verb} only after login"
            else:
                text = f"{verb} not allowed after login"
            self._reject(verb, err(text))
            return
        self._rejected = False
        if verb == "PASS":
            self._cmd_pass(arg, user)
        else:
            getattr(self, "_cmd_" + verb.lower())(arg)
        if not self._rejected:
            self._errors = 0

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
        self._out += multiline(ok("Capability list follows"), caps)

    def _cmd_stls(self, arg: str) -> None:
        if self._tls:
            self._reject("STLS", err("Already using TLS"))
            return
        if not self.config.tls_available:
            self._reject("STLS", err("STLS not available"))
            return
        if not self._no_args("STLS", arg):
            return
        self._queue(ok("Begin TLS negotiation"))
        # RFC 2595 §4 (and CVE-2011-0411): nothing sent after the STLS line before the
        # handshake may be acted on: it is thrown away.
        self._in.clear()
        self._transition("STLS")
        self._emit(StartTLS())

    def _cmd_utf8(self, arg: str) -> None:
        if not self.config.utf8:
            self._reject("UTF8", err("UTF8 not available"))
            return
        if not self._no_args("UTF8", arg):
            return
        self._utf8 = True
        self._queue(ok("UTF8 enabled"))

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
        self._queue(ok(f"{self.config.hostname} POP3 server signing off"))
        self._transition("QUIT")
        self._in.clear()
        self._emit(Quit())
