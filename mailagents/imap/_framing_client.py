"""Client side of IMAP literal framing: received bytes to response frames, bounded.

A response is one or more physical lines with literals between them (RFC 9051 §4.3,
§7). The server never waits for anything, so there is no continuation to ask for; what
the client must bound is memory:

- a physical line is at most ``max_line`` octets with its CRLF;
- a literal of more than ``inline_max`` octets (the ``BODY[]`` of a 50 MB message) is
  not kept: its octets go out as :class:`~mailagents.imap._framing.LiteralChunk`
  events, to be written to a file, and the frame holds a ``Streamed`` in its place;
- the lines and inline literals of one response together are at most ``max_response``.

The client has no reply to give a server that breaks these: each is a
:class:`~mailagents.imap.RemoteProtocolError` and the session ends.

A line that ends like ``{n}`` in the text of a status response (``* OK see {5}``) is
text, not a literal announcement (RFC 9051 §7.1 ``resp-text`` may end that way), unless
a response code is still open on that line (``* NO [BADCHARSET ({5}``); a command
continuation request (``+ ...``) never announces one.
"""

from __future__ import annotations

import enum

from mailagents._protocol import (
    NEED_DATA,
    TOO_LONG,
    LineReader,
    LocalProtocolError,
    RemoteProtocolError,
    Sentinel,
)
from mailagents.imap._frame import Frame, Streamed
from mailagents.imap._framing import (
    Announcement,
    FrameReceived,
    LiteralChunk,
    LiteralEnd,
    LiteralStart,
    ReaderEvent,
    announcement,
)

__all__ = ["ResponseReader"]

_STATUS = frozenset({b"OK", b"NO", b"BAD", b"BYE", b"PREAUTH"})


class _Mode(enum.Enum):
    LINE = "line"
    LITERAL = "literal"
    STREAM = "stream"


def _status_text_only(line: bytes) -> bool:
    """Whether a trailing ``{n}`` on this first line is status-response text."""
    if line.startswith(b"+"):
        return True
    parts = line.split(b" ", 2)
    if len(parts) < 2 or parts[1].upper() not in _STATUS:
        return False
    rest = parts[2] if len(parts) == 3 else b""
    if not rest.startswith(b"["):
        return True
    return b"]" in rest  # the code closed on this line: what ends it is text


class ResponseReader:
    """Received bytes to response frames, for the client core (see the module text)."""

    __slots__ = (
        "_buf",
        "_chunk",
        "_closed",
        "_lines",
        "_literal",
        "_literals",
        "_mode",
        "_remaining",
        "_size",
        "_streamed",
        "inline_max",
        "max_line",
        "max_response",
    )

    _lines: list[bytes]
    _literals: list[bytes | Streamed]
    _streamed: tuple[int, bool] | None

    def __init__(
        self,
        *,
        max_line: int = 65_536,
        max_response: int = 1_048_576,
        inline_max: int = 65_536,
        chunk_size: int = 65_536,
    ) -> None:
        if min(max_line, max_response, chunk_size) < 1 or inline_max < 0:
            raise LocalProtocolError("ResponseReader limits must be positive")
        self.max_line = max_line
        self.max_response = max_response
        self.inline_max = inline_max
        self._chunk = chunk_size
        self._buf = LineReader()
        self._closed = False
        self._reset()

    def _reset(self) -> None:
        self._mode = _Mode.LINE
        self._lines = []
        self._literals = []
        self._literal = bytearray()
        self._size = 0
        self._remaining = 0
        self._streamed = None

    def receive_data(self, data: bytes) -> None:
        """Add received bytes; ``b""`` means the server closed the connection."""
        if self._closed:
            if data:
                raise LocalProtocolError("receive_data() after the end of the input")
            return
        if not data:
            self._closed = True
        self._buf.append(data)

    @property
    def buffered(self) -> int:
        """Octets received and not yet consumed."""
        return len(self._buf)

    def take_buffered(self) -> bytes:
        """Take out the octets received and not yet read, between two responses (after
        COMPRESS's OK, RFC 4978 §3: the start of the compressed stream, which the
        adapter decodes and feeds back)."""
        data = bytes(self._buf.buffer)
        self._buf.clear()
        return data

    @property
    def in_response(self) -> bool:
        """Part of a response was read."""
        return bool(self._lines) or bool(self._buf.buffer)

    def next_event(self) -> ReaderEvent | Sentinel:
        """The next event, or ``NEED_DATA``. Raises ``RemoteProtocolError`` for a line or
        response over its limit, a bad literal count, or a close in mid-response."""
        while True:
            if self._mode is _Mode.LINE:
                event = self._line()
            elif self._mode is _Mode.LITERAL:
                event = self._literal_octets()
            else:
                event = self._stream()
            if event is NEED_DATA and self._closed and self.in_response:
                raise RemoteProtocolError("the server closed the connection mid-response")
            if event is not None:
                return event

    def _line(self) -> ReaderEvent | Sentinel | None:
        line = self._buf.take_line(self.max_line)
        if line is None:
            if self._buf.discarding:
                raise RemoteProtocolError(f"response line over {self.max_line} octets")
            return NEED_DATA
        if line is TOO_LONG:
            raise RemoteProtocolError(f"response line over {self.max_line} octets")
        assert isinstance(line, bytes)
        self._count(len(line) + 2)
        first = not self._lines
        self._lines.append(line)
        ann: Announcement | None = None
        if not (first and _status_text_only(line)):
            ann = announcement(line)
        if ann is None:
            frame = Frame(lines=tuple(self._lines), literals=tuple(self._literals))
            self._reset()
            return FrameReceived(frame=frame)
        if ann.size is None:
            raise RemoteProtocolError("literal count beyond number64 (RFC 9051 §9)")
        self._remaining = ann.size
        if ann.size > self.inline_max:
            self._mode = _Mode.STREAM
            self._streamed = (ann.size, ann.binary)
            head = Frame(lines=tuple(self._lines), literals=tuple(self._literals))
            return LiteralStart(
                tag=None, size=ann.size, binary=ann.binary, index=len(self._literals), head=head
            )
        self._count(ann.size)
        self._mode = _Mode.LITERAL
        return None

    def _count(self, octets: int) -> None:
        self._size += octets
        if self._size > self.max_response:
            raise RemoteProtocolError(
                f"response over {self.max_response} octets (not counting streamed literals)"
            )

    def _literal_octets(self) -> Sentinel | None:
        buf = self._buf.buffer
        take = min(self._remaining, len(buf))
        self._literal += buf[:take]
        del buf[:take]
        self._remaining -= take
        if self._remaining:
            return NEED_DATA
        self._literals.append(bytes(self._literal))
        self._literal.clear()
        self._mode = _Mode.LINE
        return None

    def _stream(self) -> ReaderEvent | Sentinel:
        index = len(self._literals)
        if self._remaining == 0:
            assert self._streamed is not None
            size, binary = self._streamed
            self._streamed = None
            self._literals.append(Streamed(size=size, binary=binary, index=index))
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
