"""The client's sender: command frames onto the wire, each synchronising literal held
back until the server's continuation request.

RFC 9051 §4.3 and §7.5: a literal announced as ``{n}`` (or ``~{n}``, literal8, RFC 3516)
may be sent only once the server answered the line that announced it with a command
continuation request (``+``); ``{n+}`` (LITERAL+ or, up to 4096 octets, LITERAL-,
RFC 7888) goes at once. When the server answers the command with its tagged response
instead of ``+`` (a BAD for a literal too big, a NO), the command is over and the rest
of it is never sent. Commands leave in the order given, and one held at a literal holds
back the commands after it: a later command cannot be put in the middle of an earlier
one.

A literal given as a ``Streamed`` placeholder is not in the frame: its octets come from
the caller, piece by piece (an APPEND of a message too big to hold), through
:meth:`Sender.literal_data`.

Pure bookkeeping over an output buffer: no I/O.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from mailagents._protocol import LocalProtocolError
from mailagents.imap._frame import Frame, Streamed

__all__ = ["LiteralWanted", "Sender"]

# The literal announcement a line but the last of a frame ends with (RFC 9051 §9
# "literal", RFC 7888 "literal" with "+", RFC 3516 "literal8").
_ANNOUNCEMENT = re.compile(rb"~?\{([0-9]{1,10})(\+?)\}\Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class LiteralWanted:
    """The sender needs the octets of a streamed literal: ``remaining`` more of them
    for the command tagged ``tag``."""

    tag: str
    remaining: int


class _Outgoing:
    __slots__ = ("abandoned", "frame", "line", "remaining", "tag")

    def __init__(self, tag: str, frame: Frame) -> None:
        self.tag = tag
        self.frame = frame
        self.line = 0  # the next line to write
        self.remaining = 0  # octets of a streamed literal still to come from the caller
        self.abandoned = False  # answered while its streamed literal was being written


def _synchronising(line: bytes) -> bool:
    match = _ANNOUNCEMENT.search(line)
    if match is None:
        raise LocalProtocolError(f"a frame line must end with a literal announcement: {line!r}")
    return not match.group(2)


class Sender:
    """Writes command frames into ``out`` in order (see the module's docstring).

    :meth:`add` queues a frame; :meth:`go_ahead` is called on the server's
    continuation request when :attr:`waiting` names the command it is for;
    :meth:`finished` when the command's tagged response came (which ends a command
    still held at a literal: the rest is dropped).
    """

    __slots__ = ("_queue", "out")

    def __init__(self, out: bytearray) -> None:
        self.out = out
        self._queue: deque[_Outgoing] = deque()

    @property
    def idle(self) -> bool:
        """Whether everything queued is wholly on the wire."""
        return not self._queue

    @property
    def waiting(self) -> str | None:
        """The tag of the command held until the server's ``+``, or ``None``."""
        head = self._queue[0] if self._queue else None
        if head is None or head.remaining or head.line == 0:
            return None
        return head.tag

    @property
    def wanted(self) -> LiteralWanted | None:
        """The streamed literal whose octets the caller must give now, or ``None``."""
        head = self._queue[0] if self._queue else None
        if head is None or not head.remaining:
            return None
        return LiteralWanted(tag=head.tag, remaining=head.remaining)

    def pending(self, tag: str) -> bool:
        """Whether part of the command tagged ``tag`` is not yet on the wire."""
        return any(item.tag == tag for item in self._queue)

    def unsent(self, tag: str) -> bool:
        """Whether nothing of the command tagged ``tag`` is on the wire yet (it waits
        behind a command held at a literal)."""
        return any(item.tag == tag and item.line == 0 for item in self._queue)

    def add(self, tag: str, frame: Frame) -> None:
        """Queue a command's frame and write what may go now."""
        for line in frame.lines[:-1]:
            _synchronising(line)  # checks the announcement
        self._queue.append(_Outgoing(tag, frame))
        self._pump()

    def go_ahead(self) -> None:
        """The server's continuation request for the literal :attr:`waiting` holds."""
        head = self._queue[0] if self._queue else None
        if head is None or self.waiting is None:
            raise LocalProtocolError("no literal waits for a continuation request")
        self._literal(head)
        self._pump()

    def literal_data(self, data: bytes) -> None:
        """The next octets of the streamed literal :attr:`wanted` asks for (no more than
        it says remain)."""
        head = self._queue[0] if self._queue else None
        if head is None or not head.remaining:
            raise LocalProtocolError("no streamed literal is being sent")
        if len(data) > head.remaining:
            raise LocalProtocolError(
                f"{len(data)} octets given where the literal has {head.remaining} left"
            )
        self.out += data
        head.remaining -= len(data)
        if not head.remaining:
            if head.abandoned:
                # The server answered already; it reads the literal it agreed to and
                # then a line end, never the rest of the command.
                self.out += b"\r\n"
                self._queue.popleft()
            else:
                self._next_line(head)
            self._pump()

    def finished(self, tag: str) -> bool:
        """The command tagged ``tag`` got its tagged response. Returns whether part of
        it was still unsent (and is now dropped, RFC 9051 §7.5). A streamed literal
        being written cannot be cut short (the server would read the rest of it as
        commands): its remaining octets are still wanted, followed by a bare line end
        instead of the rest of the command."""
        for item in self._queue:
            if item.tag == tag:
                if item.remaining:
                    item.abandoned = True
                    return True
                self._queue.remove(item)
                self._pump()
                return True
        return False

    # --- internals -------------------------------------------------------------------

    def _pump(self) -> None:
        """Write lines of the head command until it ends or waits for ``+``; then the
        next command."""
        while self._queue:
            head = self._queue[0]
            if head.remaining:
                return
            if head.line == 0:
                self._next_line(head)
            elif head.line < len(head.frame.lines):
                return  # waiting for the continuation request
            if head.line >= len(head.frame.lines) and not head.remaining:
                self._queue.popleft()
                continue
            return

    def _next_line(self, item: _Outgoing) -> None:
        """Write the item's next line; go on through non-synchronising literals."""
        frame = item.frame
        while True:
            line = frame.lines[item.line]
            self.out += line
            self.out += b"\r\n"
            item.line += 1
            if item.line >= len(frame.lines) or _synchronising(line):
                return  # done, or held until the server's "+"
            if not self._literal_octets(item):
                return

    def _literal(self, item: _Outgoing) -> None:
        """The go-ahead for the literal after the line just written: write it (or start
        streaming it) and, when it is whole, go on with the next line."""
        if self._literal_octets(item):
            self._next_line(item)

    def _literal_octets(self, item: _Outgoing) -> bool:
        """Write the literal after the line just written; ``False`` when its octets are
        to come from the caller."""
        literal = item.frame.literals[item.line - 1]
        if isinstance(literal, Streamed):
            item.remaining = literal.size
            return not literal.size
        self.out += literal
        return True
