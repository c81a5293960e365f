"""Server side of IMAP literal framing: received bytes to command frames, bounded.

A command is one or more physical lines; each line but the last ends with a literal
announcement and the literal's octets follow its CRLF (RFC 9051 §4.3). The reader
hands out a :class:`~mailagents.imap.Frame` per command and keeps every buffer bounded:

- a physical line is at most ``max_line`` octets with its CRLF (the default is
  Dovecot's 64 KiB); a longer one is dropped as it arrives and answered BAD once its
  CRLF comes, and the reader goes on with the next line;
- the lines and inline literals of one command together are at most ``max_command``;
- an ordinary literal is at most ``max_literal``; an APPEND message literal at most
  ``max_append``, and its octets are never kept: they go out as
  :class:`~mailagents.imap._framing.LiteralChunk` events and the frame holds a
  ``Streamed`` in their place. An announced count is only counted, never allocated.

A synchronising literal over its limit is refused before the client sends it
(``NO [TOOBIG]``, RFC 7888 §4, RFC 5530 §3; the client then sends nothing more of that
command). A non-synchronising one cannot be refused in advance: its octets are read and
thrown away while counted, and the command is answered once it ends, or, with
``oversized_bye``, the session ends at once with ``* BYE`` (RFC 7888 §4 allows both).
With LITERAL- (RFC 7888; built into IMAP4rev2, RFC 9051 §4.3) a non-synchronising
literal of more than 4096 octets is refused the same way.

The reader is lazy: it reads only when asked, so the server core can switch it to a
raw line (a SASL response) or to IDLE's ``DONE`` before the next bytes are looked at.
"""

from __future__ import annotations

import enum

from mailagents._protocol import NEED_DATA, TOO_LONG, LineReader, LocalProtocolError, Sentinel
from mailagents.imap._frame import Frame, Streamed
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
    ReaderEvent,
    announcement,
)

__all__ = ["LITERAL_MINUS_MAX", "CommandReader"]

LITERAL_MINUS_MAX = 4096
"""RFC 7888 LITERAL- and RFC 9051 §4.3: non-synchronising literals of at most 4096 octets."""

_TAG_SCAN = 1024  # how far into a too-long first line the tag is looked for


class _Mode(enum.Enum):
    LINE = "line"  # a command line (first or after a literal)
    WAIT = "wait"  # a synchronising literal announced: waiting for go_ahead/refuse
    LITERAL = "literal"  # literal octets kept in the frame
    STREAM = "stream"  # literal octets passed on as chunks
    SKIP = "skip"  # literal octets counted and dropped
    RAW = "raw"  # one raw line (SASL)
    IDLE = "idle"  # DONE expected
    DEAD = "dead"  # a fatal error: nothing more is read


def _tag_of(line: bytes | bytearray, *, cut: bool = False) -> str | None:
    """The tag at the start of a command line (RFC 9051 §9 ``tag``), if it is one;
    with ``cut`` (the start of a line too long to keep) only if a SP follows it."""
    end = line.find(b" ")
    if cut and end < 0:
        return None
    token = bytes(line[: end if end >= 0 else len(line)])
    if (
        not token
        or not token.isascii()
        or any(c in b'+(){%*"\\' or c <= 32 or c == 127 for c in token)
    ):
        return None
    return token.decode("ascii")


class CommandReader:
    """Received bytes to command frames, for the server core (see the module text)."""

    __slots__ = (
        "_append",
        "_buf",
        "_chunk",
        "_error",
        "_index",
        "_lines",
        "_literal",
        "_literals",
        "_mailbox_literal",
        "_mode",
        "_pending",
        "_queued",
        "_raw_limit",
        "_remaining",
        "_size",
        "_started",
        "_tag",
        "literal_minus",
        "max_append",
        "max_command",
        "max_line",
        "max_literal",
        "oversized_bye",
    )

    _lines: list[bytes]
    _literals: list[bytes | Streamed]
    _tag: str | None
    _error: FrameErrorKind | None
    _pending: tuple[int, bool, bool] | None

    def __init__(
        self,
        *,
        max_line: int = 65_536,
        max_command: int = 262_144,
        max_literal: int = 131_072,
        max_append: int = 64 * 1024 * 1024,
        literal_minus: bool = False,
        oversized_bye: bool = False,
        chunk_size: int = 65_536,
    ) -> None:
        if min(max_line, max_command, max_literal, chunk_size) < 1 or max_append < 0:
            raise LocalProtocolError("CommandReader limits must be positive")
        self.max_line = max_line
        self.max_command = max_command
        self.max_literal = max_literal
        self.max_append = max_append
        self.literal_minus = literal_minus
        self.oversized_bye = oversized_bye
        self._chunk = chunk_size
        self._buf = LineReader()
        self._queued: ReaderEvent | None = None
        self._mode = _Mode.LINE
        self._raw_limit = max_line
        self._reset()

    # --- the caller's side -------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add received bytes (dropped once a fatal error was reported)."""
        if self._mode is not _Mode.DEAD:
            self._buf.append(data)

    @property
    def buffered(self) -> int:
        """Octets received and not yet consumed."""
        return len(self._buf)

    @property
    def in_command(self) -> bool:
        """Part of a command was read (a line ended with a literal announcement)."""
        return self._started

    @property
    def waiting(self) -> bool:
        """A synchronising literal was announced and awaits ``go_ahead``/``refuse``."""
        return self._mode is _Mode.WAIT

    def take_buffered(self) -> bytes:
        """Take out the octets received and not yet read, between two commands (after
        COMPRESS's OK, RFC 4978 §3: the start of the compressed stream, which the
        adapter decodes and feeds back)."""
        data = bytes(self._buf.buffer)
        self._buf.clear()
        return data

    def clear(self) -> None:
        """Drop everything buffered and any partial command (STARTTLS, RFC 9051 §6.2.1:
        nothing received before the TLS negotiation counts)."""
        self._buf.clear()
        self._reset()
        self._queued = None
        if self._mode is not _Mode.DEAD:
            self._mode = _Mode.LINE

    def go_ahead(self) -> None:
        """The core sent ``+``: read the announced literal."""
        if self._mode is not _Mode.WAIT or self._pending is None:
            raise LocalProtocolError("go_ahead() without a ContinuationNeeded")
        size, binary, message = self._pending
        self._pending = None
        self._queued = self._start_literal(size, binary, message)

    def refuse(self) -> None:
        """The core answered the command instead of sending ``+``: the client sends
        nothing more of it (RFC 9051 §4.3), so the next line is a new command."""
        if self._mode is not _Mode.WAIT:
            raise LocalProtocolError("refuse() without a ContinuationNeeded")
        self._reset()
        self._mode = _Mode.LINE

    def read_raw_line(self, limit: int | None = None) -> None:
        """Read the next line as it is (a SASL response, RFC 9051 §6.2.2), at most
        ``limit`` octets with its CRLF (default ``max_line``)."""
        self._expect(_Mode.RAW)
        self._raw_limit = self.max_line if limit is None else limit

    def expect_done(self) -> None:
        """IDLE began (``+ idling`` sent): the next line must be ``DONE`` (RFC 2177 §3)."""
        self._expect(_Mode.IDLE)

    def _expect(self, mode: _Mode) -> None:
        if self._mode is not _Mode.LINE or self._started:
            raise LocalProtocolError("the reader is in the middle of a command")
        self._mode = mode

    # --- reading ------------------------------------------------------------------------

    def next_event(self) -> ReaderEvent | Sentinel:
        """The next event, or ``NEED_DATA`` (also while waiting for ``go_ahead``)."""
        if self._queued is not None:
            queued, self._queued = self._queued, None
            return queued
        while True:
            mode = self._mode
            if mode is _Mode.LINE:
                event = self._line()
            elif mode is _Mode.LITERAL or mode is _Mode.SKIP:
                event = self._literal_octets(keep=mode is _Mode.LITERAL)
            elif mode is _Mode.STREAM:
                event = self._stream()
            elif mode is _Mode.RAW or mode is _Mode.IDLE:
                event = self._raw()
            else:  # WAIT, DEAD
                return NEED_DATA
            if event is not None:
                return event

    def _reset(self) -> None:
        self._lines = []
        self._started = False
        self._literals = []
        self._literal = bytearray()
        self._size = 0
        self._tag = None
        self._append = False
        self._mailbox_literal = False
        self._error = None
        self._pending = None
        self._remaining = 0
        self._index = 0

    def _fail(self, kind: FrameErrorKind, text: str, *, fatal: bool = False) -> FrameError:
        tag = self._tag
        self._reset()
        self._mode = _Mode.DEAD if fatal else _Mode.LINE
        if fatal:
            self._buf.clear()
        return FrameError(tag=tag, kind=kind, fatal=fatal, text=text)

    def _line(self) -> ReaderEvent | Sentinel | None:
        buf = self._buf
        first = not self._started
        if first and self._tag is None and len(buf.buffer) > self.max_line and not buf.discarding:
            self._tag = _tag_of(buf.buffer[:_TAG_SCAN], cut=True)
        line = buf.take_line(self.max_line)
        if line is None:
            return NEED_DATA
        if line is TOO_LONG:
            return self._fail(FrameErrorKind.LINE_TOO_LONG, "Line too long")
        assert isinstance(line, bytes)
        if first:
            self._started = True
            self._tag = _tag_of(line)
            self._append = self._is_append(line)
        self._size += len(line) + 2
        if self._size > self.max_command and self._error is None:
            self._error = FrameErrorKind.COMMAND_TOO_LONG
        ann = announcement(line)
        if self._error is None:
            self._lines.append(line)
        if ann is None:
            return self._complete()
        if ann.size is None:
            # Where would the command end? A synchronising one waits for our answer; a
            # non-synchronising one has octets coming that we cannot count.
            return self._fail(
                FrameErrorKind.BAD_LITERAL, "Literal count too large", fatal=ann.non_sync
            )
        if first and self._append:
            self._mailbox_literal = self._announced_first(line)
        message = self._append and not (self._index == 0 and self._mailbox_literal)
        too_big = self._too_big(ann.size, message, ann.non_sync)
        if self._error is None and too_big is not None:
            self._error = too_big
        if self._error is not None:
            if not ann.non_sync:
                # The client waits for a "+" it will not get: the command ends here.
                return self._fail(self._error, _TEXT[self._error])
            if self.oversized_bye and self._error is not FrameErrorKind.COMMAND_TOO_LONG:
                return self._fail(self._error, _TEXT[self._error], fatal=True)
            self._remaining = ann.size
            self._index += 1
            self._mode = _Mode.SKIP
            return None
        if not ann.non_sync:
            self._pending = (ann.size, ann.binary, message)
            self._mode = _Mode.WAIT
            head = None
            if message:
                head = Frame(lines=tuple(self._lines), literals=tuple(self._literals))
            return ContinuationNeeded(
                tag=self._tag, size=ann.size, binary=ann.binary, message=message,
                index=self._index, head=head,
            )  # fmt: skip
        return self._start_literal(ann.size, ann.binary, message)

    def _too_big(self, size: int, message: bool, non_sync: bool) -> FrameErrorKind | None:
        if non_sync and self.literal_minus and size > LITERAL_MINUS_MAX:
            return FrameErrorKind.NON_SYNC_TOO_BIG
        if message:
            return FrameErrorKind.LITERAL_TOO_BIG if size > self.max_append else None
        if size > self.max_literal or self._size + size > self.max_command:
            return FrameErrorKind.LITERAL_TOO_BIG
        return None

    def _complete(self) -> ReaderEvent:
        if self._error is not None:
            return self._fail(self._error, _TEXT[self._error])
        frame = Frame(lines=tuple(self._lines), literals=tuple(self._literals))
        self._reset()
        return FrameReceived(frame=frame)

    def _start_literal(self, size: int, binary: bool, message: bool) -> ReaderEvent | None:
        self._remaining = size
        if message:
            self._mode = _Mode.STREAM
            self._pending = (size, binary, True)
            head = Frame(lines=tuple(self._lines), literals=tuple(self._literals))
            return LiteralStart(
                tag=self._tag, size=size, binary=binary, index=self._index, head=head
            )
        self._size += size
        self._mode = _Mode.LITERAL
        return None

    def _literal_octets(self, *, keep: bool) -> Sentinel | None:
        buf = self._buf.buffer
        take = min(self._remaining, len(buf))
        if keep:
            self._literal += buf[:take]
        del buf[:take]
        self._remaining -= take
        if self._remaining:
            return NEED_DATA
        if keep:
            self._literals.append(bytes(self._literal))
            self._literal.clear()
            self._index += 1
        self._mode = _Mode.LINE
        return None

    def _stream(self) -> ReaderEvent | Sentinel:
        index = self._index
        if self._remaining == 0:
            assert self._pending is not None
            size, binary, _ = self._pending
            self._pending = None
            self._literals.append(Streamed(size=size, binary=binary, index=index))
            self._index += 1
            self._mode = _Mode.LINE
            return LiteralEnd(index=index)
        buf = self._buf.buffer
        if not buf:
            return NEED_DATA
        take = min(self._remaining, len(buf), self._chunk)
        data = bytes(buf[:take])
        del buf[:take]
        self._remaining -= take
        return LiteralChunk(index=index, data=data)

    def _raw(self) -> ReaderEvent | Sentinel:
        idle = self._mode is _Mode.IDLE
        line = self._buf.take_line(self.max_line if idle else self._raw_limit)
        if line is None:
            return NEED_DATA
        self._mode = _Mode.LINE
        if line is TOO_LONG:
            return FrameError(tag=None, kind=FrameErrorKind.LINE_TOO_LONG, text="Line too long")
        assert isinstance(line, bytes)
        if not idle:
            return RawLine(line=line)
        if line.upper() == b"DONE":
            return IdleDone()
        return FrameError(tag=None, kind=FrameErrorKind.NOT_DONE, text="Expected DONE")

    # --- APPEND recognised from its first line (RFC 9051 §6.3.12, RFC 3502) -------------

    @staticmethod
    def _is_append(line: bytes) -> bool:
        parts = line.split(b" ", 2)
        return len(parts) == 3 and parts[1].upper() == b"APPEND"

    @staticmethod
    def _announced_first(line: bytes) -> bool:
        """The line is ``tag APPEND {n}``: the mailbox itself is the first literal, and
        every later literal of the command is a message (MULTIAPPEND, CATENATE)."""
        rest = line.split(b" ", 2)[2]
        return (
            rest.startswith((b"{", b"~{"))
            and announcement(rest) is not None
            and (rest.count(b"{") == 1)
        )


_TEXT = {
    FrameErrorKind.LINE_TOO_LONG: "Line too long",
    FrameErrorKind.COMMAND_TOO_LONG: "Command too long",
    FrameErrorKind.LITERAL_TOO_BIG: "Literal too big",
    FrameErrorKind.NON_SYNC_TOO_BIG: "Non-synchronizing literal over 4096 octets (LITERAL-)",
    FrameErrorKind.BAD_LITERAL: "Literal count too large",
    FrameErrorKind.NOT_DONE: "Expected DONE",
}
