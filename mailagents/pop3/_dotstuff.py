"""Streaming multi-line writing for POP3 (RFC 1939 §3).

:class:`DotStuffer` turns a message streamed in arbitrary chunks into the body of a
multi-line response (byte-stuffed, CRLF line ends, optionally cut after the header and
``n`` body lines for TOP). Lines are read with the kernel's bounded
:class:`mailagents._protocol.LineReader`.
"""

from __future__ import annotations

__all__ = ["DotStuffer"]


# Translation tables that mark where the CRs and the LFs are.
_CR = bytes(1 if i == 0x0D else 0 for i in range(256))
_LF = bytes(1 if i == 0x0A else 0 for i in range(256))


class DotStuffer:
    """Stream a message into a multi-line response body (RFC 1939 §3).

    Each line starting with ``.`` gets another ``.`` in front; a bare LF becomes CRLF (a
    lone CR inside a line is left alone); an unterminated last line is ended with CRLF;
    :meth:`finish` adds the ``.`` CRLF terminator. With ``body_lines`` set (TOP,
    RFC 1939 §7) only the header, the blank line after it and at most that many body
    lines pass; :attr:`wants_more` turns false once the cut is made.
    """

    __slots__ = ("_at_start", "_body_left", "_cr", "_cut", "_in_header", "_line_empty")

    def __init__(self, body_lines: int | None = None) -> None:
        if body_lines is not None and body_lines < 0:
            raise ValueError("body_lines must not be negative")
        self._body_left = body_lines
        self._at_start = True  # nothing of the current line written yet
        self._line_empty = True  # the current line has no content (a held CR aside)
        self._cr = False  # a CR was held back: it may be the first half of CRLF
        self._in_header = True
        self._cut = False

    @property
    def wants_more(self) -> bool:
        """False once TOP's cut was made: later chunks are ignored."""
        return not self._cut

    def feed(self, data: bytes) -> bytes:
        """Stuff the next chunk of the message; returns the bytes to send."""
        if self._cut or not data:
            return b""
        head = b""
        if self._cr:
            if data[0] != 0x0A:
                return self._feed_lines(data)  # the held CR is content: rare
            # The held CR and this LF end the current line.
            end = bytearray()
            self._end_line(end)
            head = bytes(end)
            data = data[1:]
            if self._cut or not data:
                return head
        # The bulk path: a chunk whose every CR starts a CRLF (a final CR may be the
        # first half of one) is stuffed with a few whole-chunk bytes operations.
        # Anything else (a lone CR inside a line) takes the line-by-line path, which
        # gives the same bytes.
        held = data[-1] == 0x0D
        if b"\r" not in data:
            # LF line ends only (RFC 1939 §3 wants CRLF).
            data = data.replace(b"\n", b"\r\n")
        elif data[0] != 0x0A and data.translate(_CR)[:-1] == data.translate(_LF)[1:]:
            # CRLF line ends only: every CR is followed by an LF, every LF follows a CR
            # (the final CR, if any, is held back).
            if held:
                data = data[:-1]
        else:
            crlf = data.count(b"\r\n")
            if data.count(b"\r") != crlf + held:
                return head + self._feed_lines(data)
            if held:
                data = data[:-1]
            # Both CRLF and bare LF line ends: make them all CRLF.
            data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if data:
            if self._body_left is not None:
                data = self._top(data)
                if self._cut:
                    held = False  # a CR after the cut is never sent
            # (split and join is the same as replace, only faster)
            out = b"\r\n..".join(data.split(b"\r\n."))
            if self._at_start and data[0] == 0x2E:  # RFC 1939 §3
                out = b"." + out
            self._at_start = self._line_empty = data[-1] == 0x0A
            head += out
        self._cr = held
        return head

    def _top(self, data: bytes) -> bytes:
        """TOP's cut for the bulk path: ``data`` has CRLF line ends and no other CR;
        returns what of it passes, counting the body lines and making the cut."""
        head = b""
        if self._in_header:
            # The blank line that ends the header: an empty line (RFC 5322 §2.1).
            if self._at_start and data.startswith(b"\r\n"):
                end = 2
            else:
                end = data.find(b"\r\n\r\n")
                if end < 0:
                    return data  # still in the header
                end += 4
            self._in_header = False
            if self._body_left == 0:
                self._cut = True
                return data[:end]
            head, data = data[:end], data[end:]
        left = self._body_left
        assert left is not None and left > 0
        lines = data.count(b"\n")
        if lines < left:
            self._body_left = left - lines
            return head + data
        end = -1
        for _ in range(left):
            end = data.index(b"\n", end + 1)
        self._body_left = 0
        self._cut = True
        return head + data[: end + 1]

    def _feed_lines(self, data: bytes) -> bytes:
        """:meth:`feed` one line at a time: the exact rules for any input."""
        out = bytearray()
        parts = data.split(b"\n")
        last = len(parts) - 1
        for i, part in enumerate(parts):
            if self._cut:
                break
            self._content(part, out)
            if i < last:
                self._end_line(out)
        return bytes(out)

    def finish(self) -> bytes:
        """End the message: a CRLF for an unterminated last line, then ``.`` CRLF."""
        out = bytearray()
        if not self._cut and (self._cr or not self._at_start):
            out += b"\r\n"
        self._cut = True
        self._cr = False
        out += b".\r\n"
        return bytes(out)

    def _content(self, part: bytes, out: bytearray) -> None:
        if not part:
            return
        if self._cr:
            # The held CR was not followed by LF: it is content.
            self._cr = False
            self._write(b"\r", out)
        if part.endswith(b"\r"):
            self._cr = True
            part = part[:-1]
        if part:
            self._write(part, out)

    def _write(self, data: bytes, out: bytearray) -> None:
        if self._at_start:
            self._at_start = False
            if data[0] == 0x2E:  # RFC 1939 §3: byte-stuff a line starting with "."
                out += b"."
        self._line_empty = False
        out += data

    def _end_line(self, out: bytearray) -> None:
        self._cr = False  # a held CR is the first half of this line's CRLF
        out += b"\r\n"
        if self._in_header:
            if self._line_empty:
                self._in_header = False  # the blank line after the header was passed
                if self._body_left == 0:
                    self._cut = True
        elif self._body_left is not None:
            self._body_left -= 1
            if self._body_left <= 0:
                self._cut = True
        self._at_start = True
        self._line_empty = True
