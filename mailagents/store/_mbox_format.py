"""The mbox file format: separator lines, mboxrd quoting, the flag headers, scanning a
file into messages, and streaming one message out with CRLF line ends.

Reading accepts mboxo, mboxrd and mboxcl2; writing is mboxrd:

* A message starts with a ``From `` line at the start of the file or after an empty line.
* mboxrd quoting: on write every line matching ``^>*From `` gets one more ``>``; on read
  one ``>`` is removed from lines matching ``^>+From ``. (mboxo only quoted ``From ``,
  which this reading undoes too.)
* mboxcl2: a ``Content-Length:`` header is honoured when it points exactly at the next
  separator or at the end of the file; such a message is not unquoted. Otherwise the
  separator scan decides.
* The empty line before the next separator (or at the end of the file) belongs to the
  format, not to the message.

Flags live in headers, as mutt and Dovecot write them: ``Status:`` (``R`` seen, ``O``
old), ``X-Status:`` (``A`` answered, ``D`` deleted, ``F`` flagged, ``T`` draft) and
``X-Keywords:``. Like Dovecot, these headers (and ``X-UID``, ``X-IMAP``,
``X-IMAPbase``) are format metadata: they are hidden from the message bytes handed out,
and stripped from appended messages, so that rewriting them never changes a message.
"""

from __future__ import annotations

import datetime
import io
import os
import re
import zlib
from dataclasses import dataclass

from mailagents.store._model import (
    ANSWERED,
    DELETED,
    DRAFT,
    FLAGGED,
    SEEN,
    SYSTEM_FLAGS,
    check_keyword,
)

LOOKAHEAD = 4096
"""How much of a line decides whether it is quoted or a hidden header."""

_FROM_LINE = re.compile(rb">*From ")
_QUOTED_LINE = re.compile(rb">+From ")
# What DiskLineFilter unquotes: a line whose first LOOKAHEAD + 1 octets (one piece of
# readline) hold ">+From ", so at most LOOKAHEAD - 4 ">" in all.
_QUOTED_AT_BOL = re.compile(rb"(?m)^>(>{0,%d}From )" % (LOOKAHEAD - 5))
_QUOTED_AFTER_LF = re.compile(rb"(?<=\n)>(>{0,%d}From )" % (LOOKAHEAD - 5))
BODY_BLOCK = 1 << 16
"""How much of a message body :class:`MessageStream` converts at once (at least
``LOOKAHEAD + 1``, so that a block cut inside a line holds all of its start that
decides whether it is quoted)."""
_HEADER_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")
HIDDEN_HEADERS = frozenset(
    {b"status", b"x-status", b"x-keywords", b"x-uid", b"x-imap", b"x-imapbase"}
)
FLAG_HEADERS = frozenset({b"status", b"x-status", b"x-keywords"})
"""The hidden headers that a rewrite regenerates from the index."""

_X_STATUS = ((ANSWERED, "A"), (DELETED, "D"), (FLAGGED, "F"), (DRAFT, "T"))
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_ASCTIME = re.compile(
    rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) +(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    rb" +(\d{1,2}) +(\d{1,2}):(\d\d)(?::(\d\d))?(?: +[A-Za-z]{1,5})? +(\d{4})"
    rb"(?: +([+-])(\d\d)(\d\d))?"
)
_ADDR = re.compile(rb"<([^<>\s]*)>")


def header_name(line: bytes) -> bytes | None:
    """The lower-cased field name of a header line, or ``None``."""
    m = _HEADER_NAME.match(line)
    return m.group(1).lower() if m else None


def is_hidden(line: bytes) -> bool:
    """A format-metadata header line (hidden from the message bytes)."""
    return header_name(line) in HIDDEN_HEADERS


# --- From lines ----------------------------------------------------------------------


def make_from_line(sender: bytes | None, date: datetime.datetime) -> bytes:
    """``From <sender> <asctime in UTC>\\n``; ``MAILER-DAEMON`` without a sender."""
    if not sender or any(c <= 0x20 or c >= 0x7F for c in sender):
        sender = b"MAILER-DAEMON"
    d = date.astimezone(datetime.UTC)
    stamp = (
        f"{_DAYS[d.weekday()]} {_MONTHS[d.month - 1]} {d.day:2d} "
        f"{d.hour:02d}:{d.minute:02d}:{d.second:02d} {d.year}"
    )
    return b"From " + sender + b" " + stamp.encode() + b"\n"


def parse_from_date(line: bytes) -> datetime.datetime | None:
    """The date of a ``From `` line (asctime, UTC unless an offset follows), or ``None``."""
    matches = list(_ASCTIME.finditer(line))
    if not matches:
        return None
    mon, day, hh, mm, ss, year, sign, oh, om = matches[-1].groups()
    tz = datetime.UTC
    if sign:
        delta = datetime.timedelta(hours=int(oh), minutes=int(om))
        tz = datetime.timezone(-delta if sign == b"-" else delta)
    try:
        return datetime.datetime(
            int(year),
            _MONTHS.index(mon.decode()) + 1,
            int(day),
            int(hh),
            int(mm),
            int(ss or 0),
            tzinfo=tz,
        )
    except ValueError:
        return None


def return_path_sender(line: bytes) -> bytes | None:
    """The address of a ``Return-Path:`` header line (``b""`` for ``<>``)."""
    m = _ADDR.search(line)
    return m.group(1) if m else None


# --- flags in headers ----------------------------------------------------------------


def flags_from_headers(lines: list[bytes]) -> tuple[frozenset[str], bool]:
    """Flags from hidden header lines (continuations joined); also whether ``Status:``
    holds ``O`` (old)."""
    fields: list[tuple[bytes, bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:
            last, value = fields[-1]
            fields[-1] = (last, value + b" " + line.strip())
            continue
        hname = header_name(line)
        if hname is not None:
            fields.append((hname, line.split(b":", 1)[1].strip()))
    flags: set[str] = set()
    old = False
    for name, value in fields:
        if name == b"status":
            if b"R" in value:
                flags.add(SEEN)
            old = old or b"O" in value
        elif name == b"x-status":
            for flag, letter in _X_STATUS:
                if letter.encode() in value:
                    flags.add(flag)
        elif name == b"x-keywords":
            for word in re.split(rb"[\s,]+", value):
                try:
                    kw = check_keyword(word.decode("utf-8"))
                except (UnicodeDecodeError, ValueError):
                    continue
                if kw not in SYSTEM_FLAGS:
                    flags.add(kw)
    return frozenset(flags), old


def flag_header_lines(flags: frozenset[str], old: bool) -> list[bytes]:
    """The ``Status:``/``X-Status:``/``X-Keywords:`` lines for ``flags`` (mutt style)."""
    out = []
    status = ("R" if SEEN in flags else "") + ("O" if old or SEEN in flags else "")
    if status:
        out.append(b"Status: " + status.encode() + b"\n")
    x_status = "".join(letter for flag, letter in _X_STATUS if flag in flags)
    if x_status:
        out.append(b"X-Status: " + x_status.encode() + b"\n")
    keywords = sorted(f for f in flags if f not in SYSTEM_FLAGS)
    if keywords:
        out.append(b"X-Keywords: " + " ".join(keywords).encode() + b"\n")
    return out


# --- writing -------------------------------------------------------------------------


class InputTransformer:
    """Turns a message as it arrives (CRLF or LF) into mboxrd body bytes: CRLF becomes
    LF, lines matching ``^>*From `` get one more ``>``, hidden headers are dropped.
    Counts :attr:`size`, the CRLF size of what reading it back yields."""

    def __init__(self) -> None:
        self._buf = b""
        self._bol = True
        self._skip = False
        self._in_headers = True
        self._skip_cont = False
        self._ends_nl = True
        self.size = 0
        self.disk_size = 0
        self.return_path: bytes | None = None

    def feed(self, data: bytes, final: bool = False) -> bytes:
        """Transform the next piece; returns the bytes to store."""
        buf = self._buf + data if self._buf else data
        self._buf = b""
        out: list[bytes] = []
        i = 0
        n = len(buf)
        while i < n:
            if self._bol:
                head = buf[i : i + LOOKAHEAD]
                nl = head.find(b"\n")
                if nl < 0 and len(head) < LOOKAHEAD and not final:
                    self._buf = buf[i:]
                    break
                line = head[:nl] if nl >= 0 else head
                self._decide(line, nl >= 0, out)
                self._bol = False
                continue
            nl = buf.find(b"\n", i)
            if nl >= 0:
                seg = buf[i:nl]
                if seg.endswith(b"\r"):
                    seg = seg[:-1]
                if not self._skip:
                    out.append(seg + b"\n")
                    self.size += len(seg) + 2
                    self._ends_nl = True
                self._bol = True
                i = nl + 1
            else:
                seg = buf[i:]
                if seg.endswith(b"\r") and not final:
                    self._buf = b"\r"
                    seg = seg[:-1]
                if seg and not self._skip:
                    out.append(seg)
                    self.size += len(seg)
                    self._ends_nl = False
                break
        result = b"".join(out)
        self.disk_size += len(result)
        return result

    def _decide(self, line: bytes, complete: bool, out: list[bytes]) -> None:
        skip = False
        if self._in_headers:
            if complete and line in (b"", b"\r"):
                self._in_headers = False
                self._skip_cont = False
            elif self._skip_cont and line[:1] in (b" ", b"\t"):
                skip = True
            elif is_hidden(line):
                skip = True
                self._skip_cont = True
            else:
                self._skip_cont = False
                if complete and self.return_path is None and header_name(line) == b"return-path":
                    self.return_path = return_path_sender(line)
        self._skip = skip
        if not skip and _FROM_LINE.match(line):
            out.append(b">")

    def finish(self) -> bytes:
        """The rest, and the format's end of message: a final newline if the message
        lacked one, then the empty line before the next separator."""
        rest = self.feed(b"", final=True) if self._buf else b""
        tail = (b"" if self._ends_nl else b"\n") + b"\n"
        self.disk_size += len(tail)
        return rest + tail


# --- reading -------------------------------------------------------------------------


class PreadLines:
    """``readline(limit)`` over ``[pos, end)`` of a descriptor with ``os.pread`` (so that
    several readers can share one descriptor)."""

    def __init__(self, fd: int, pos: int, end: int, bufsize: int = 65536) -> None:
        self.fd = fd
        self.pos = pos
        self.end = end
        self._bufsize = bufsize
        self._buf = b""
        self._bpos = 0
        self._file_pos = pos

    def readline(self, limit: int) -> bytes:
        """The next line (with its ``\\n``), at most ``limit`` bytes; ``b""`` at the end."""
        while True:
            avail = len(self._buf) - self._bpos
            nl = self._buf.find(b"\n", self._bpos, self._bpos + limit)
            if nl >= 0:
                line = self._buf[self._bpos : nl + 1]
                break
            if avail >= limit or self._file_pos >= self.end:
                line = self._buf[self._bpos : self._bpos + limit]
                break
            want = min(max(self._bufsize, limit), self.end - self._file_pos)
            more = os.pread(self.fd, want, self._file_pos)
            if not more:
                self.end = self._file_pos
                continue
            self._file_pos += len(more)
            self._buf = self._buf[self._bpos :] + more
            self._bpos = 0
        self._bpos += len(line)
        self.pos += len(line)
        return line

    def read_block(self, n: int) -> bytes:
        """Up to ``n`` raw bytes that end with a line's ``\\n``, unless the region ends
        first or no line ends within ``n`` bytes (then ``n`` bytes); ``b""`` at the
        end. What follows the last line end is kept for the next call."""
        avail = len(self._buf) - self._bpos
        if avail < n and self._file_pos < self.end:
            more = os.pread(self.fd, min(n - avail, self.end - self._file_pos), self._file_pos)
            if more:
                self._file_pos += len(more)
                self._buf = self._buf[self._bpos :] + more
                self._bpos = 0
            else:
                self.end = self._file_pos
        stop = min(len(self._buf), self._bpos + n)
        if stop < len(self._buf) or self._file_pos < self.end:  # more follows
            nl = self._buf.rfind(b"\n", self._bpos, stop)
            if nl >= 0:
                stop = nl + 1
        piece = self._buf[self._bpos : stop]
        self._bpos = stop
        self.pos += len(piece)
        return piece

    def read(self, n: int) -> bytes:
        """Up to ``n`` raw bytes."""
        if self._bpos < len(self._buf):
            piece = self._buf[self._bpos : self._bpos + n]
            self._bpos += len(piece)
        else:
            piece = os.pread(self.fd, min(n, self.end - self._file_pos), self._file_pos)
            self._file_pos += len(piece)
        self.pos += len(piece)
        return piece


def unquote_body(data: bytes, *, bol: bool, quoted: bool) -> bytes:
    """Stored body bytes (any run of whole or partial lines; ``bol``: ``data`` starts
    a line) as message bytes: one ``>`` taken from each ``^>+From `` line when
    ``quoted`` (mboxrd), LF made CRLF. What :class:`DiskLineFilter` does line by line
    past the header, done on a whole block: a line cut by the end of ``data`` must
    not be a quoted line's start (:meth:`PreadLines.read_block` ends blocks at line
    ends)."""
    if quoted and b">From " in data:
        data = (_QUOTED_AT_BOL if bol else _QUOTED_AFTER_LF).sub(rb"\1", data)
    return data.replace(b"\n", b"\r\n")


class DiskLineFilter:
    """Turns stored lines (pieces from ``readline(LOOKAHEAD + 1)``) back into message
    bytes: hidden headers dropped, one ``>`` removed from ``^>+From `` lines (when
    ``quoted``), LF made CRLF."""

    def __init__(self, quoted: bool, capture: bool = False) -> None:
        self.quoted = quoted
        self.capture = capture
        self.bol = True
        self.in_headers = True
        self.headers_ended = False
        self._skip_cont = False
        self._skip = False
        self.hidden: list[bytes] = []
        self.content_length: int | None = None
        self.header_unquotes = 0

    def feed(self, piece: bytes) -> bytes:
        """The message bytes for one stored piece."""
        complete = piece.endswith(b"\n")
        if self.bol:
            line = piece[:-1] if complete else piece
            skip = False
            if self.in_headers:
                if complete and line == b"":
                    self.in_headers = False
                    self.headers_ended = True
                elif self._skip_cont and line[:1] in (b" ", b"\t"):
                    skip = True
                elif is_hidden(line):
                    skip = True
                    self._skip_cont = True
                else:
                    self._skip_cont = False
                    if self.capture and header_name(line) == b"content-length":
                        value = line.split(b":", 1)[1].strip()
                        self.content_length = int(value) if value.isdigit() else None
            self._skip = skip
            if skip:
                if self.capture and len(self.hidden) < 64:
                    self.hidden.append(line[:1000])
            elif self.quoted and _QUOTED_LINE.match(piece):
                piece = piece[1:]
                if self.in_headers:
                    self.header_unquotes += 1
        self.bol = complete
        if self._skip:
            return b""
        return piece[:-1] + b"\r\n" if complete else piece


@dataclass(slots=True)
class Scanned:
    """One message found by :func:`scan`."""

    offset: int
    length: int
    from_len: int
    crc: int
    size: int
    quoted: bool
    flags: frozenset[str]
    date: datetime.datetime | None


HEAD = 4096
"""How much of a message's start (``From`` line included) its checksum covers."""


def head_crc(head: bytes) -> int:
    """The checksum kept in the index to recognise a message where it was: of the first
    :data:`HEAD` bytes of its place in the file (``From`` line and headers, mostly)."""
    return zlib.crc32(head[:HEAD])


def _cl_target_ok(fd: int, body_start: int, target: int, end: int) -> bool:
    if target > end:
        return False
    if target == end:
        return True
    peek = os.pread(fd, 7, target)
    if peek.startswith(b"From "):
        return target == body_start or os.pread(fd, 1, target - 1) == b"\n"
    if peek.startswith(b"\nFrom "):
        return True
    return peek == b"\n" and target + 1 == end


class _Msg:
    __slots__ = ("cl_end", "date", "filt", "from_len", "head", "last_empty", "offset", "size")

    def __init__(self, offset: int, from_line: bytes, from_len: int) -> None:
        self.offset = offset
        self.from_len = from_len
        self.head = bytearray(from_line[:HEAD])
        self.date = parse_from_date(from_line[:1024]) if from_line else None
        self.filt = DiskLineFilter(True, capture=True)
        self.size = 0
        self.last_empty = False
        self.cl_end: int | None = None

    def done(self, end: int) -> Scanned:
        size = self.size
        if self.cl_end is None and self.last_empty:
            size -= 2  # the empty line before the separator is the format's
        flags, _old = flags_from_headers(self.filt.hidden)
        return Scanned(
            offset=self.offset,
            length=end - self.offset,
            from_len=self.from_len,
            crc=head_crc(bytes(self.head[: end - self.offset])),
            size=size,
            quoted=self.filt.quoted,
            flags=flags,
            date=self.date,
        )


def scan(fd: int, start: int, end: int) -> list[Scanned]:
    """Find the messages in ``[start, end)``; ``start`` is the file's start or the start
    of a ``From `` line. Never holds more than a buffer of the file in memory."""
    lines = PreadLines(fd, start, end, bufsize=1 << 20)
    found: list[Scanned] = []
    cur: _Msg | None = None
    bol = True
    prev_empty = True
    while True:
        pos = lines.pos
        limit = LOOKAHEAD + 1
        if cur is not None and cur.cl_end is not None and pos < cur.cl_end:
            limit = min(limit, cur.cl_end - pos)
        piece = lines.readline(limit)
        if not piece:
            break
        in_cl_body = cur is not None and cur.cl_end is not None and pos < cur.cl_end
        content_done = cur is not None and cur.cl_end is not None and pos >= cur.cl_end
        if (
            bol
            and not in_cl_body
            and piece.startswith(b"From ")
            and (prev_empty or cur is None or content_done)
        ):
            if cur is not None:
                found.append(cur.done(pos))
            from_line = piece
            while not piece.endswith(b"\n"):
                piece = lines.readline(LOOKAHEAD + 1)
                if not piece:
                    break
                if len(from_line) < 4 * LOOKAHEAD:
                    from_line += piece
            from_len = lines.pos - pos
            cur = _Msg(pos, from_line, from_len)
            bol = True
            prev_empty = False
            continue
        if cur is None:
            if piece == b"\n":  # empty lines before the first From line: no message
                continue
            cur = _Msg(pos, b"", 0)  # no From line at the start: a message all the same
        complete = piece.endswith(b"\n")
        if len(cur.head) < HEAD:
            cur.head += piece[: HEAD - len(cur.head)]
        if not content_done:
            out = cur.filt.feed(piece)
            cur.size += len(out)
            cur.last_empty = bol and piece == b"\n"
            if cur.filt.headers_ended:
                cur.filt.headers_ended = False
                cl = cur.filt.content_length
                if cl is not None and _cl_target_ok(fd, lines.pos, lines.pos + cl, end):
                    cur.cl_end = lines.pos + cl
                    cur.filt.quoted = False
                    cur.size += cur.filt.header_unquotes
        prev_empty = bol and piece == b"\n"
        bol = complete
    if cur is not None:
        found.append(cur.done(lines.pos))
    return found


class FileRef:
    """An open descriptor on one version (inode) of an mbox file, shared by the
    messages read from it; closed when the last user lets go of it."""

    __slots__ = ("__weakref__", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        self.close()


class MessageStream(io.RawIOBase):
    """One stored message as CRLF bytes, read on demand from its place in the file."""

    def __init__(self, ref: FileRef, start: int, end: int, size: int, quoted: bool) -> None:
        super().__init__()
        self._ref: FileRef | None = ref
        self._lines = PreadLines(ref.fd, start, end)
        self._filter = DiskLineFilter(quoted)
        self._remaining = size
        self._pending = b""
        self._ppos = 0

    def readable(self) -> bool:
        return True

    def _next_piece(self) -> bytes:
        """The next raw piece and its message bytes: line by line through the header
        (hidden headers), then in blocks of whole lines."""
        filt = self._filter
        if filt.in_headers:
            piece = self._lines.readline(LOOKAHEAD + 1)
            return filt.feed(piece) if piece else b""
        block = self._lines.read_block(max(BODY_BLOCK, LOOKAHEAD + 1))
        if not block:
            return b""
        out = unquote_body(block, bol=filt.bol, quoted=filt.quoted)
        filt.bol = block.endswith(b"\n")
        return out

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            if self._ppos >= len(self._pending):
                if self._remaining <= 0 or self._ref is None:
                    break
                out = self._next_piece()
                if not out and self._lines.pos >= self._lines.end:
                    self._remaining = 0
                    break
                if len(out) > self._remaining:
                    out = out[: self._remaining]
                self._remaining -= len(out)
                self._pending = out
                self._ppos = 0
                continue
            n = min(len(view) - filled, len(self._pending) - self._ppos)
            view[filled : filled + n] = self._pending[self._ppos : self._ppos + n]
            self._ppos += n
            filled += n
        return filled

    def close(self) -> None:
        self._ref = None
        super().close()
