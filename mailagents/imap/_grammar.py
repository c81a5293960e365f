"""The IMAP grammar's primitives both ways (RFC 9051 §4 and the formal syntax of §9).

``Reader`` is a cursor over one ``Frame``: it reads
atoms, numbers, strings, mailbox names, flags, sequence sets and dates, and passes from
a line into the literal announced at its end and on into the next line without the
caller noticing (RFC 9051 §4.3: the literal's octets are part of the same logical
line). ``Writer`` builds a frame and picks each string's form: an atom where the
grammar allows one, a quoted string for short text, a literal otherwise; text holding
CR or LF is *always* sent as a literal, so a value can never smuggle in a command of
its own.

Both sides raise ``GrammarError`` on bad input or on a value they cannot write;
the command and response parsers turn it into a BAD reply or a protocol error.

Pure functions over bytes, no I/O.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable
from typing import TypeVar

from mailagents._mutf7 import decode_mutf7, encode_mutf7
from mailagents._protocol import LocalProtocolError
from mailagents.imap._frame import Frame, Streamed
from mailagents.imap._seqset import MAX_NUMBER, SequenceSet

__all__ = ["MAX_NUMBER", "MAX_NUMBER64", "GrammarError", "Reader", "Writer", "WriterError"]

T = TypeVar("T")

MAX_NUMBER64 = 2**63 - 1
"""``number64`` (RFC 9051 §9): at most 2^63 - 1 (literal sizes, MODSEQ values)."""

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {m.upper().encode(): i for i, m in enumerate(MONTHS, 1)}

# RFC 9051 §9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards /
# quoted-specials / resp-specials; ATOM-CHAR is any 7-bit CHAR but those.
_ATOM = re.compile(rb'[^(){ \x00-\x1f\x7f%*"\\\]\x80-\xff]+')
# ASTRING-CHAR = ATOM-CHAR / resp-specials ("]").
_ASTRING = re.compile(rb'[^(){ \x00-\x1f\x7f%*"\\\x80-\xff]+')
# tag = 1*<any ASTRING-CHAR except "+">
_TAG = re.compile(rb'[^(){ \x00-\x1f\x7f%*"\\+\x80-\xff]+')
_DIGITS = re.compile(rb"[0-9]+")
# quoted = DQUOTE *QUOTED-CHAR DQUOTE; QUOTED-CHAR: any TEXT-CHAR but quoted-specials,
# or "\" quoted-specials; RFC 9051 adds UTF-8 (8-bit octets are accepted as they are).
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_UNESCAPE = re.compile(rb"\\([\"\\])")
# A literal announcement ends its line: "{" number64 ["+"] "}" or "~{" ... (literal8).
_LITERAL = re.compile(rb"(~?)\{([0-9]+)(\+?)\}\Z")
# flag = "\" atom (system flags and flag-extension) / atom (keywords); flag-perm adds "\*".
_FLAG = re.compile(rb'\\?[^(){ \x00-\x1f\x7f%*"\\\]\x80-\xff]+')
_FLAG_PERM = re.compile(rb'\\\*|\\?[^(){ \x00-\x1f\x7f%*"\\\]\x80-\xff]+')
_SEQSET = re.compile(rb"\$|(?:[0-9]+|\*)(?::(?:[0-9]+|\*))?(?:,(?:[0-9]+|\*)(?::(?:[0-9]+|\*))?)*")
# date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE
_DATE_TIME = re.compile(
    rb'" ?([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) '
    rb'([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"'
)
# date = date-text / DQUOTE date-text DQUOTE; date-text = date-day "-" date-month "-" date-year
_DATE = re.compile(rb'("?)([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})\1')
_NEEDS_LITERAL = re.compile(rb"[\r\n\x00]")
_EIGHT_BIT = re.compile(rb"[\x80-\xff]")
_QUOTED_MAX = 1024
_LITERAL_MINUS_MAX = 4096


class GrammarError(Exception):
    """Input that does not follow the grammar, or a value that cannot be written.

    ``message`` says what was expected and where.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WriterError(GrammarError, LocalProtocolError):
    """A value the ``Writer`` cannot put on the wire (an atom with a space, a
    string with NUL where no literal8 is allowed, a naive datetime): our own caller's
    mistake, so it is also a ``LocalProtocolError``."""


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


class Reader:
    """A cursor over a frame (RFC 9051 §9 primitives).

    Every method reads one item at the cursor and moves past it, or raises
    ``GrammarError`` without a usable position afterwards (a frame that fails is
    refused as a whole). ``utf8`` is set once UTF8=ACCEPT is enabled (RFC 6855, RFC 9051
    §6.3.1): mailbox names are then UTF-8, not modified UTF-7.
    """

    __slots__ = ("_i", "_line", "_lines", "_literals", "_pos", "last_literal8", "utf8")

    def __init__(self, frame: Frame, *, utf8: bool = False) -> None:
        self._lines = frame.lines
        self._literals = frame.literals
        self._i = 0
        self._line = frame.lines[0]
        self._pos = 0
        self.utf8 = utf8
        self.last_literal8 = False
        """Whether the last string read was a literal8 (``~{n}``, RFC 3516)."""

    # -- the cursor ------------------------------------------------------------------

    def _fail(self, what: str) -> GrammarError:
        rest = self._line[self._pos : self._pos + 30]
        where = repr(rest)[1:] if rest else "the end of the line"
        return GrammarError(f"{what} expected at {where}")

    def at_end(self) -> bool:
        """Whether the whole frame has been read."""
        return self._pos >= len(self._line) and self._i == len(self._lines) - 1

    def peek(self) -> int | None:
        """The next octet, or ``None`` at the end of a line."""
        line = self._line
        return line[self._pos] if self._pos < len(line) else None

    def sp(self) -> None:
        """One space (``SP``)."""
        if self._line[self._pos : self._pos + 1] != b" ":
            raise self._fail("SP")
        self._pos += 1

    def accept(self, token: bytes) -> bool:
        """Move past ``token`` if it is next (letters in any case); say whether it was."""
        end = self._pos + len(token)
        if self._line[self._pos : end].upper() == token.upper():
            self._pos = end
            return True
        return False

    def expect(self, token: bytes) -> None:
        """``token`` must be next (letters in any case; RFC 9051 §9: the grammar's
        literal strings are case-insensitive)."""
        if not self.accept(token):
            raise self._fail(repr(token)[1:])

    def end(self) -> None:
        """Nothing may follow."""
        if not self.at_end():
            raise self._fail("the end of the line")

    def _match(self, pattern: re.Pattern[bytes], what: str) -> bytes:
        m = pattern.match(self._line, self._pos)
        if m is None:
            raise self._fail(what)
        self._pos = m.end()
        return m.group()

    # -- atoms and numbers ---------------------------------------------------------

    def atom(self) -> str:
        """An ``atom`` (no specials, 7-bit)."""
        return self._match(_ATOM, "an atom").decode("ascii")

    def tag(self) -> str:
        """A command ``tag`` (ASTRING-CHARs but ``+``)."""
        return self._match(_TAG, "a tag").decode("ascii")

    def _digits(self, limit: int, what: str) -> int:
        digits = self._match(_DIGITS, what)
        if len(digits) > 20 or int(digits) > limit:
            raise GrammarError(f"{what} out of range: {digits[:30]!r}")
        return int(digits)

    def number(self) -> int:
        """A ``number``: 0 to 4294967295."""
        return self._digits(MAX_NUMBER, "a number")

    def nz_number(self) -> int:
        """An ``nz-number``: 1 to 4294967295."""
        value = self._digits(MAX_NUMBER, "a non-zero number")
        if value == 0:
            raise GrammarError("a non-zero number expected, got 0")
        return value

    def number64(self) -> int:
        """A ``number64`` (RFC 9051 §9): 0 to 2^63 - 1."""
        return self._digits(MAX_NUMBER64, "a 64-bit number")

    # -- strings -------------------------------------------------------------------

    def _literal(self) -> bytes | Streamed:
        m = _LITERAL.search(self._line, self._pos)
        if m is None or m.start() != self._pos:
            raise self._fail("a string")
        if self._i >= len(self._lines) - 1:
            raise GrammarError("a literal is announced but the frame holds none")
        digits = m.group(2)
        if len(digits) > 20 or int(digits) > MAX_NUMBER64:
            raise GrammarError(f"literal size out of range: {digits[:30]!r}")
        size = int(digits)
        literal = self._literals[self._i]
        binary = bool(m.group(1))
        if isinstance(literal, Streamed):
            if literal.size != size:
                raise GrammarError(f"literal of {literal.size} octets announced as {size}")
        else:
            if len(literal) != size:
                raise GrammarError(f"literal of {len(literal)} octets announced as {size}")
            if not binary and b"\x00" in literal:
                raise GrammarError("NUL in a literal (only literal8 may hold it)")
        self._i += 1
        self._line = self._lines[self._i]
        self._pos = 0
        self.last_literal8 = binary
        return literal

    def string(self) -> bytes | Streamed:
        """A ``string``: quoted, literal or literal8 (the literal's octets, or the
        ``Streamed`` placeholder that stands for them). RFC 9051 §4.3: a literal is
        ``{n}`` (or ``{n+}``, RFC 7888) ending the line, then exactly n octets."""
        line = self._line
        pos = self._pos
        if line[pos : pos + 1] == b'"':
            m = _QUOTED.match(line, pos)
            if m is None:
                raise self._fail("a quoted string")
            self._pos = m.end()
            self.last_literal8 = False
            body = m.group(1)
            return _UNESCAPE.sub(rb"\1", body) if b"\\" in body else body
        return self._literal()

    def nstring(self) -> bytes | Streamed | None:
        """An ``nstring``: a string or ``NIL`` (``None``)."""
        if self.accept(b"NIL"):
            return None
        return self.string()

    def _text_string(self, value: bytes | Streamed) -> bytes:
        if isinstance(value, Streamed):
            raise GrammarError("a streamed literal where text is expected")
        return value

    def text_nstring(self) -> str | None:
        """An ``nstring`` as text (UTF-8, undecodable octets kept by surrogateescape)."""
        value = self.nstring()
        return None if value is None else _decode(self._text_string(value))

    def astring_bytes(self) -> bytes:
        """An ``astring`` (atom-like or a string) as octets."""
        line = self._line
        pos = self._pos
        m = _ASTRING.match(line, pos)
        if m is not None:
            self._pos = m.end()
            return m.group()
        return self._text_string(self.string())

    def astring(self) -> str:
        """An ``astring`` as text (UTF-8, surrogateescape)."""
        return _decode(self.astring_bytes())

    def mailbox(self) -> str:
        """A ``mailbox`` name, decoded: modified UTF-7 (RFC 9051 §5.1.3) unless
        ``utf8``; ``INBOX`` in any case is ``"INBOX"`` (RFC 9051 §5.1)."""
        raw = self.astring_bytes()
        if raw.upper() == b"INBOX":
            return "INBOX"
        try:
            if self.utf8 or _EIGHT_BIT.search(raw):
                return raw.decode("utf-8")
            return decode_mutf7(raw.decode("ascii"))
        except ValueError as exc:
            raise GrammarError(f"mailbox name not in its encoding: {raw[:50]!r}") from exc

    # -- flags, sets, dates -------------------------------------------------------

    def flag(self, *, perm: bool = False) -> str:
        """A ``flag`` (``\\Seen``, a keyword, ``\\`` atom); with ``perm`` also ``\\*``
        (``flag-perm``, PERMANENTFLAGS)."""
        return self._match(_FLAG_PERM if perm else _FLAG, "a flag").decode("ascii")

    def flag_list(self, *, perm: bool = False) -> tuple[str, ...]:
        """A ``flag-list``: ``(`` flags separated by SP ``)``, maybe empty."""
        return self.parenthesized(lambda: self.flag(perm=perm), allow_empty=True)

    def sequence_set(self) -> SequenceSet:
        """A ``sequence-set`` or ``$`` (RFC 5182), kept as ranges."""
        text = self._match(_SEQSET, "a sequence set")
        try:
            return SequenceSet.parse(text)
        except ValueError as exc:
            raise GrammarError(str(exc)) from exc

    def date_time(self) -> datetime.datetime:
        """A ``date-time`` (``"17-Jul-1996 02:44:25 -0700"``), timezone-aware."""
        m = _DATE_TIME.match(self._line, self._pos)
        if m is None:
            raise self._fail("a date-time")
        day, mon, year, hh, mm, ss, sign, zh, zm = m.groups()
        month = _MONTH_NUMBER.get(mon.upper())
        try:
            if month is None or int(zm) > 59:
                raise ValueError("bad month or zone")
            offset = datetime.timedelta(hours=int(zh), minutes=int(zm))
            tz = datetime.timezone(-offset if sign == b"-" else offset)
            value = datetime.datetime(
                int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=tz
            )
        except ValueError as exc:
            raise GrammarError(f"not a valid date-time: {m.group()!r}") from exc
        self._pos = m.end()
        return value

    def date(self) -> datetime.date:
        """A ``date`` (``1-Feb-1994``, quoted or not)."""
        m = _DATE.match(self._line, self._pos)
        if m is None:
            raise self._fail("a date")
        _, day, mon, year = m.groups()
        month = _MONTH_NUMBER.get(mon.upper())
        try:
            if month is None:
                raise ValueError("bad month")
            value = datetime.date(int(year), month, int(day))
        except ValueError as exc:
            raise GrammarError(f"not a valid date: {m.group()!r}") from exc
        self._pos = m.end()
        return value

    def parenthesized(self, item: Callable[[], T], *, allow_empty: bool = False) -> tuple[T, ...]:
        """``(`` item *(SP item) ``)``; ``()`` only with ``allow_empty``."""
        self.expect(b"(")
        items: list[T] = []
        if self.accept(b")"):
            if not allow_empty:
                raise GrammarError("an empty list where at least one item is required")
            return ()
        while True:
            items.append(item())
            if self.accept(b")"):
                return tuple(items)
            self.sp()

    def text(self) -> str:
        """The rest of the line (``text``, may be empty): UTF-8, surrogateescape. It is
        the last thing of a frame; NUL is refused."""
        if self._i != len(self._lines) - 1:
            raise GrammarError("a literal inside text")
        rest = self._line[self._pos :]
        if b"\x00" in rest:
            raise GrammarError("NUL in text")
        self._pos = len(self._line)
        return _decode(rest)


class Writer:
    """Builds one frame, choosing the form of each string.

    ``literal_plus`` (RFC 7888 LITERAL+) writes every literal non-synchronising
    (``{n+}``); ``literal_minus`` (LITERAL-) only those of at most 4096 octets. A server
    writes plain ``{n}`` (it never waits for a continuation). ``utf8`` (UTF8=ACCEPT)
    lets 8-bit text go in quoted strings and mailbox names unencoded; ``binary``
    (RFC 3516) lets octets holding NUL go as literal8 (``~{n}``).
    """

    __slots__ = ("_buf", "_lines", "_literals", "binary", "literal_minus", "literal_plus", "utf8")

    def __init__(
        self,
        *,
        literal_plus: bool = False,
        literal_minus: bool = False,
        utf8: bool = False,
        binary: bool = False,
    ) -> None:
        self.literal_plus = literal_plus
        self.literal_minus = literal_minus
        self.utf8 = utf8
        self.binary = binary
        self._buf = bytearray()
        self._lines: list[bytes] = []
        self._literals: list[bytes | Streamed] = []

    def raw(self, data: bytes) -> None:
        """Octets as they are (CR, LF and NUL refused: they would end or corrupt the
        line)."""
        if _NEEDS_LITERAL.search(data):
            raise WriterError("CR, LF or NUL in raw protocol text")
        self._buf += data

    def sp(self) -> None:
        """One space."""
        self._buf += b" "

    def open(self) -> None:
        """``(``"""
        self._buf += b"("

    def close(self) -> None:
        """``)``"""
        self._buf += b")"

    def atom(self, text: str) -> None:
        """An ``atom`` (``WriterError`` if ``text`` is not one)."""
        data = text.encode("utf-8", "surrogateescape")
        if not _ATOM.fullmatch(data):
            raise WriterError(f"not an atom: {text!r}")
        self._buf += data

    def number(self, n: int) -> None:
        """A ``number`` (or ``number64``)."""
        if type(n) is not int or not 0 <= n <= MAX_NUMBER64:
            raise WriterError(f"not a number: {n!r}")
        self._buf += b"%d" % n

    def _quotable(self, data: bytes) -> bool:
        return (
            len(data) <= _QUOTED_MAX
            and not _NEEDS_LITERAL.search(data)
            and (self.utf8 or not _EIGHT_BIT.search(data))
        )

    def _string(self, data: bytes) -> None:
        if self._quotable(data):
            if b"\\" in data or b'"' in data:
                data = data.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
            self._buf += b'"'
            self._buf += data
            self._buf += b'"'
        else:
            self.literal(data)

    def string(self, data: str | bytes) -> None:
        """A ``string``: quoted when short and plain, else a literal (always for CR or
        LF). ``str`` is sent as UTF-8 (surrogateescape)."""
        self._string(data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data)

    def nstring(self, data: str | bytes | None) -> None:
        """An ``nstring``: ``NIL`` for ``None``."""
        if data is None:
            self._buf += b"NIL"
        else:
            self.string(data)

    def astring(self, text: str | bytes) -> None:
        """An ``astring``: bare when every octet is an ASTRING-CHAR and it does not read
        as ``NIL``, else a string."""
        data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
        if _ASTRING.fullmatch(data) and data.upper() != b"NIL":
            self._buf += data
        else:
            self._string(data)

    def literal(self, data: bytes | Streamed, *, binary: bool = False) -> None:
        """A literal (RFC 9051 §4.3): the announcement ends the current line, the octets
        follow. Octets holding NUL go as literal8 when the writer has ``binary`` (or
        ``binary`` is passed: the caller knows the content is binary, RFC 3516);
        otherwise they cannot be sent (``WriterError``). ``Streamed`` stands for octets
        the sender passes on as chunks."""
        if isinstance(data, Streamed):
            size = data.size
            binary = binary or data.binary
        else:
            size = len(data)
            if b"\x00" in data:
                if not (binary or self.binary):
                    raise WriterError("NUL in a literal needs literal8 (BINARY, RFC 3516)")
                binary = True
        plus = self.literal_plus or (self.literal_minus and size <= _LITERAL_MINUS_MAX)
        self._buf += b"%s{%d%s}" % (b"~" if binary else b"", size, b"+" if plus else b"")
        self._lines.append(bytes(self._buf))
        self._literals.append(data)
        self._buf = bytearray()

    def mailbox(self, name: str, *, fold_inbox: bool = True) -> None:
        """A ``mailbox``: modified UTF-7 (RFC 9051 §5.1.3) unless ``utf8``, ``INBOX`` in
        its canonical case unless ``fold_inbox`` is false (OLDNAME)."""
        if fold_inbox and name.upper() == "INBOX":
            self._buf += b"INBOX"
            return
        try:
            data = name.encode("utf-8") if self.utf8 else encode_mutf7(name).encode("ascii")
        except UnicodeError as exc:
            raise WriterError(f"mailbox name cannot be encoded: {name!r}") from exc
        self.astring(data)

    def flag(self, flag: str, *, perm: bool = False) -> None:
        """One ``flag``; with ``perm`` also ``\\*`` (``flag-perm``: only PERMANENTFLAGS
        may name it, RFC 9051 §9, so a STORE of ``\\*`` is refused here)."""
        data = flag.encode("utf-8", "surrogateescape")
        if not (_FLAG_PERM if perm else _FLAG).fullmatch(data):
            raise WriterError(f"not a flag: {flag!r}")
        self._buf += data

    def flag_list(self, flags: Iterable[str], *, perm: bool = False) -> None:
        """A ``flag-list``: ``(\\Seen \\Deleted)``; ``perm`` as for :meth:`flag`."""
        self._buf += b"("
        for i, flag in enumerate(flags):
            if i:
                self._buf += b" "
            self.flag(flag, perm=perm)
        self._buf += b")"

    def sequence_set(self, s: SequenceSet) -> None:
        """A ``sequence-set`` as written in ``s``."""
        self._buf += str(s).encode("ascii")

    def date_time(self, dt: datetime.datetime) -> None:
        """A quoted ``date-time``; ``dt`` must be aware, with a whole-minute offset."""
        offset = dt.utcoffset()
        if offset is None:
            raise WriterError("a date-time needs a timezone")
        minutes, rest = divmod(offset, datetime.timedelta(minutes=1))
        if rest or not 1 <= dt.year <= 9999:
            raise WriterError("a date-time's offset must be whole minutes")
        sign = "-" if minutes < 0 else "+"
        hh, mm = divmod(abs(minutes), 60)
        text = (
            f'"{dt.day:2d}-{MONTHS[dt.month - 1]}-{dt.year:04d} '
            f'{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} {sign}{hh:02d}{mm:02d}"'
        )
        self._buf += text.encode("ascii")

    def date(self, d: datetime.date) -> None:
        """A ``date`` (``1-Feb-1994``, unquoted)."""
        self._buf += f"{d.day}-{MONTHS[d.month - 1]}-{d.year:04d}".encode("ascii")

    def frame(self) -> Frame:
        """The frame written so far."""
        return Frame(lines=(*self._lines, bytes(self._buf)), literals=tuple(self._literals))
