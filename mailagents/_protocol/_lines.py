"""The bounded line reader every core shares: received bytes, taken out one line at a
time, never more than a bound held for an incomplete line.

SMTP (RFC 5321 §4.5.3.1.4: 512 octets a command line), POP3 (RFC 2449 §4: 255 octets)
and IMAP (a line and a literal announcement) all read lines ended by CRLF; the limit
always counts the line end. Byte-stream phases (SMTP DATA and BDAT, POP3 multi-line
bodies, IMAP literals) read :attr:`LineReader.buffer` directly, so one buffer serves
both kinds of input.
"""

from __future__ import annotations

import enum

__all__ = ["BARE_LF", "TOO_LONG", "LineError", "LineReader"]


class LineError(enum.Enum):
    """What :meth:`LineReader.take_line` returns for a line it will not hand out."""

    TOO_LONG = "TOO_LONG"
    """The line had more octets than the limit, its line end included. What passed the
    limit was thrown away as it arrived."""
    BARE_LF = "BARE_LF"
    """The line ended with LF alone where CRLF is required (``crlf_only``)."""


TOO_LONG = LineError.TOO_LONG
BARE_LF = LineError.BARE_LF


class LineReader:
    """Received bytes, cut into lines.

    A line ends with LF; a CR before it is removed with it. :meth:`take_line` never lets
    an incomplete line grow past its ``limit``: the excess is dropped as it arrives and
    the whole line is reported as :data:`TOO_LONG` once its LF comes, so the session can
    answer it and go on.
    """

    __slots__ = ("_discarding", "buffer")

    def __init__(self) -> None:
        self.buffer = bytearray()
        """The bytes received and not yet taken. Byte-stream phases (message content,
        literals) consume from it directly."""
        self._discarding = False

    def __len__(self) -> int:
        return len(self.buffer)

    def append(self, data: bytes) -> None:
        """Add received bytes."""
        self.buffer += data

    def clear(self) -> None:
        """Throw away everything buffered (STARTTLS: nothing sent before TLS counts)."""
        self.buffer.clear()
        self._discarding = False

    @property
    def discarding(self) -> bool:
        """An incomplete line already passed the limit: its excess is being dropped. A
        client core, which has no reply to give, may end the session at once."""
        return self._discarding

    def startswith(self, prefix: bytes) -> bool:
        """Whether the buffered bytes start with ``prefix`` (ASCII, any case)."""
        return bytes(self.buffer[: len(prefix)]).upper() == prefix.upper()

    def take_line(self, limit: int, *, crlf_only: bool = False) -> bytes | LineError | None:
        """The next complete line without its line end; :data:`TOO_LONG` if it had more
        than ``limit`` octets counting a CRLF line end (whatever it really ended with);
        with ``crlf_only``, :data:`BARE_LF` if it ended with LF alone; ``None`` while no
        line is complete."""
        buf = self.buffer
        end = buf.find(b"\n")
        if end < 0:
            if len(buf) > limit:
                # Too long to be a line we accept: keep only its last octet (it may be
                # the CR of the CRLF), so that the buffer stays bounded.
                self._discarding = True
                del buf[:-1]
            return None
        line = bytes(buf[:end])
        del buf[: end + 1]
        if self._discarding:
            self._discarding = False
            return TOO_LONG
        if line.endswith(b"\r"):
            line = line[:-1]
        elif crlf_only:
            return BARE_LF if len(line) + 2 <= limit else TOO_LONG
        if len(line) + 2 > limit:
            return TOO_LONG
        return line
