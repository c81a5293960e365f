"""The maildrop commands of the POP3 server core: STAT, LIST, UIDL, DELE, NOOP, RSET, RETR
and TOP in the TRANSACTION state (RFC 1939 §5, §7), and the deletions of the UPDATE state
(§6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from mailagents._protocol import LocalProtocolError
from mailagents.pop3._dotstuff import DotStuffer
from mailagents.pop3._events import (
    Accept,
    MaildropEntry,
    MessageChunk,
    MessageEnd,
    Quit,
    Reject,
    Retrieve,
)
from mailagents.pop3._server_core import Decision, ServerCore, err, multiline, n_messages, ok

__all__ = ["Transaction"]

# How LIST and UIDL show one entry.
_Value: TypeAlias = Callable[[int, MaildropEntry], str]
# Message numbers and TOP line counts: plain decimal digits; more than 10 cannot be meant.
_MAX_DIGITS = 10


class Transaction(ServerCore):
    """The maildrop commands of :class:`~mailagents.pop3.ServerConnection` (see the
    module)."""

    def _number(self, verb: str, text: str) -> int | None:
        """A message number (RFC 1939 §3: a decimal number from 1, no sign) of a message
        that exists and is not deleted; otherwise ``-ERR`` and ``None``."""
        if not (text.isascii() and text.isdigit()):
            self._reject(verb, err(f"Invalid message number {text[:20]!r}"))
            return None
        total = len(self._messages)
        if len(text) > _MAX_DIGITS or not 1 <= int(text) <= total:
            self._reject(verb, err(f"No such message, only {total} messages in maildrop"))
            return None
        number = int(text)
        if number in self._deleted:
            self._reject(verb, err(f"Message {number} already deleted"))
            return None
        return number

    def _one_number(self, verb: str, arg: str) -> int | None:
        args = self._args(arg)
        if len(args) != 1:
            self._reject(verb, err(f"Syntax: {verb} msg"))
            return None
        return self._number(verb, args[0])

    def _cmd_stat(self, arg: str) -> None:
        if self._no_args("STAT", arg):
            count, size = self._totals()
            # RFC 1939 §5: the drop listing is exactly "+OK nn mm".
            self._queue(ok(f"{count} {size}"))

    def _cmd_list(self, arg: str) -> None:
        self._listing("LIST", arg, lambda n, e: str(e.size))

    def _cmd_uidl(self, arg: str) -> None:
        self._listing("UIDL", arg, lambda n, e: e.uid)

    def _listing(self, verb: str, arg: str, value: _Value) -> None:
        args = self._args(arg)
        if len(args) > 1:
            self._reject(verb, err(f"Syntax: {verb} [msg]"))
            return
        if args:
            number = self._number(verb, args[0])
            if number is not None:
                self._queue(ok(f"{number} {value(number, self._messages[number - 1])}"))
            return
        lines = [
            f"{number} {value(number, entry)}"
            for number, entry in enumerate(self._messages, 1)
            if number not in self._deleted
        ]
        count, size = self._totals()
        status = ok(f"{n_messages(count)} ({size} octets)") if verb == "LIST" else ok()
        self._out += multiline(status, lines)

    def _cmd_dele(self, arg: str) -> None:
        number = self._one_number("DELE", arg)
        if number is not None:
            self._deleted.add(number)
            self._queue(ok(f"Message {number} deleted"))

    def _cmd_noop(self, arg: str) -> None:
        if self._no_args("NOOP", arg):
            self._queue(ok())

    def _cmd_rset(self, arg: str) -> None:
        if self._no_args("RSET", arg):
            self._deleted.clear()
            count, size = self._totals()
            self._queue(ok(f"maildrop has {n_messages(count)} ({size} octets)"))

    def _cmd_retr(self, arg: str) -> None:
        number = self._one_number("RETR", arg)
        if number is not None:
            entry = self._messages[number - 1]
            self._emit(Retrieve(number=number, uid=entry.uid, lines=None))

    def _cmd_top(self, arg: str) -> None:
        args = self._args(arg)
        if len(args) != 2:
            self._reject("TOP", err("Syntax: TOP msg n"))
            return
        lines_text = args[1]
        # RFC 1939 §7: n is a non-negative number of body lines.
        if not (lines_text.isascii() and lines_text.isdigit() and len(lines_text) <= _MAX_DIGITS):
            self._reject("TOP", err(f"Invalid number of lines {lines_text[:20]!r}"))
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
                self._queue(ok(f"{size} octets"))
            else:
                self._queue(ok("top of message follows"))
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
            what = f"{n_messages(left)} left" if left else "maildrop empty"
            response = ok(f"{self.config.hostname} POP3 server signing off ({what})")
        else:
            raise LocalProtocolError("answer Update with Accept or Reject")
        self._pending = None
        self._queue(response)
        self._transition("UPDATE_END")
        self._in.clear()
        self._emit(Quit())

