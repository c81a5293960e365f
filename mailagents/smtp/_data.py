"""The SMTP DATA content: the server-side reader and the client-side dot-stuffer.

RFC 5321 §4.1.1.4 (DATA): the mail data end with a line holding a single period,
the sequence ``<CRLF>.<CRLF>``, where the first ``<CRLF>`` ends the previous line; the
DATA command's own ``<CRLF>`` counts as the line end before the first line, so
``.\\r\\n`` right after the 354 reply is an empty message.

RFC 5321 §4.5.2 (transparency): the client doubles a period that starts a line; the
server deletes the first character of any line that starts with a period and has other
characters on it.

RFC 5321 §2.3.8 (lines): lines end with ``<CRLF>`` only; a "bare" CR or LF (one
without the other) is not a line end. Servers that took ``<LF>.<LF>``, ``<LF>.<CRLF>``,
``<CR>.<CR>`` and the like for the end of data let a client "smuggle" a second message
past a relay (CVE-2023-51764 in Postfix, CVE-2024-27305 in aiosmtpd). Here only a real
``<CRLF>.<CRLF>`` ends the data, whatever the bare line-end policy.

RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets including its ``<CRLF>`` (not
counting a leading period doubled for transparency).

The reader scans in bulk with compiled regular expressions and ``bytes`` methods (C
loops that find the next CR or LF with memchr): Python code runs once per ``feed`` and
once per line that starts with a period (up to a few per feed; past those, the rest of
the feed is unstuffed with one ``bytes.replace``), never once per line.
"""

from __future__ import annotations

import enum
import re

from mailagents.smtp._reply import Reply

__all__ = [
    "BareLineEndPolicy",
    "DataError",
    "DataReader",
    "DotStuffer",
    "LineEndNormalizer",
    "dot_stuff",
    "normalize_line_ends",
]

# Lines starting with a period handled one by one in a feed before the rest of it is
# unstuffed in bulk (a search for the end and one bytes.replace).
_STEPS = 16
_CR = 0x0D
_LF = 0x0A
_DOT = 0x2E
# The regular-expression engine finds a literal with memchr on its first octet, which
# is about twice as fast as bytes.find for these short patterns on mail text.
_END = re.compile(rb"\r\n\.")
_EOD = re.compile(rb"\r\n\.\r\n")
_BARE_CR = re.compile(rb"\r(?!\n)")
# Written with the LF first so that the engine can still memchr for it; the
# look-behind then checks the octet before it.
_BARE_LF = re.compile(rb"\n(?<!\r\n)")


class BareLineEndPolicy(enum.Enum):
    """What the server core does with a bare CR or a bare LF in message content
    (RFC 5321 §2.3.8); set in :attr:`ServerConfig.bare_line_ends`.

    A bare CR is a CR not followed by LF; a bare LF is an LF not preceded by CR.
    Under every policy, a bare line end is *never* a line end for the protocol: it
    never ends the data and never starts a line for dot-unstuffing (RFC 5321 §4.5.2),
    so where the content ends does not depend on the policy; only the content does.
    """

    #: Default. The message is rejected (550 5.6.0) once the end of data is seen; the
    #: rest of the data is still consumed.
    REJECT = "reject"
    #: The octets are passed through unchanged.
    ACCEPT = "accept"
    #: Each bare CR and bare LF is written as CRLF in the content. Such a normalised
    #: line end does not start a line: a period after it is kept, and a following
    #: ``.<CRLF>`` does not end the data.
    NORMALIZE = "normalize"


class DataError(enum.Enum):
    """Why the content of a DATA transaction is to be rejected (the first problem seen)."""

    #: A bare CR or a bare LF under :attr:`BareLineEndPolicy.REJECT` (RFC 5321 §2.3.8).
    BARE_LINE_END = "bare-line-end"
    #: A line longer than ``max_line_length`` octets (RFC 5321 §4.5.3.1.6).
    LINE_TOO_LONG = "line-too-long"
    #: More than ``max_size`` octets of content (RFC 1870, RFC 5321 §4.5.3.1.7).
    TOO_BIG = "too-big"

    @property
    def reply(self) -> Reply:
        """The reply a server gives after the end of data for this error.

        * bare line end: 550 5.6.0 (RFC 5321 §4.3.2 lists 550 for policy rejections
          at the end of DATA; RFC 3463 X.6.0 "other or undefined media error": the IANA
          registry has no code specific to bare CR/LF);
        * line too long: 500 5.5.0 (RFC 5321 §4.5.3.1.10 "Line too long"; RFC 3463
          X.5.0 "other or undefined protocol status");
        * too big: 552 5.3.4 (RFC 1870 §6.1; RFC 3463 X.3.4 "message too big for
          system").
        """
        return _REPLIES[self]


_REPLIES: dict[DataError, Reply] = {
    DataError.BARE_LINE_END: Reply(
        code=550, enhanced="5.6.0", lines=("Message contains a bare CR or LF",)
    ),
    DataError.LINE_TOO_LONG: Reply(code=500, enhanced="5.5.0", lines=("Line too long",)),
    DataError.TOO_BIG: Reply(
        code=552, enhanced="5.3.4", lines=("Message size exceeds fixed maximum message size",)
    ),
}


class DataReader:
    """Reads the content of one SMTP DATA transaction, from right after the 354 reply
    up to and including the terminating ``.<CRLF>`` (RFC 5321 §4.1.1.4).

    Feed it the receive buffer with :meth:`feed`; it returns how many octets it
    consumed and the unstuffed content found. It consumes every octet up to the end
    of data, keeping at most two octets of pending state internally (a final CR whose
    LF may follow, or a period at the start of a line and the CR after it), so the
    caller's buffer never grows while a message streams in. Octets after the end of
    data belong to the next command and are left unconsumed.

    ``bare_line_ends`` chooses what happens to bare CR and LF (see
    :class:`BareLineEndPolicy`). ``max_line_length`` (``None``: unlimited; RFC 5321
    §4.5.3.1.6 says 1000) flags :attr:`DataError.LINE_TOO_LONG` when a line of the
    content (after unstuffing and normalisation), counted up to and including the LF
    that ends it, is longer than that many octets; under ``ACCEPT`` a bare LF ends a
    line for this count and a bare CR does not. ``max_size`` (``None``: unlimited)
    flags :attr:`DataError.TOO_BIG` when the content exceeds that many octets.

    When several limits are broken, :attr:`error` is the one broken at the earliest
    octet of content, so that the outcome never depends on how the input was cut into
    feeds.

    Once an error is flagged, no more content is returned (the message will be
    rejected), but the reader goes on to the real end of data, and keeps counting
    :attr:`size`.
    """

    __slots__ = (
        "_check_bare",
        "_done",
        "_error",
        "_line_len",
        "_line_start",
        "_max_line",
        "_max_size",
        "_policy",
        "_size",
        "_tail",
    )

    def __init__(
        self,
        *,
        bare_line_ends: BareLineEndPolicy = BareLineEndPolicy.REJECT,
        max_line_length: int | None = None,
        max_size: int | None = None,
    ) -> None:
        if max_line_length is not None and max_line_length < 3:
            # A line needs room for at least one octet and its CRLF.
            raise ValueError("max_line_length must be at least 3")
        if max_size is not None and max_size < 0:
            raise ValueError("max_size must not be negative")
        self._policy = BareLineEndPolicy(bare_line_ends)
        self._check_bare = self._policy is not BareLineEndPolicy.ACCEPT
        self._max_line = max_line_length
        self._max_size = max_size
        self._done = False
        self._error: DataError | None = None
        self._size = 0
        # Octets already consumed but not yet scanned: b"", b"\r", b"." or b".\r".
        self._tail = b""
        # Whether the first octet of the next scan (tail, then new data) starts a line;
        # the DATA command's CRLF makes the very first octet a line start.
        self._line_start = True
        # Octets of the current (unfinished) line so far, for max_line_length.
        self._line_len = 0

    @property
    def done(self) -> bool:
        """Whether the end of data (``<CRLF>.<CRLF>``) has been seen."""
        return self._done

    @property
    def error(self) -> DataError | None:
        """The first error seen, or ``None``."""
        return self._error

    @property
    def size(self) -> int:
        """Octets of content so far, after unstuffing (and after normalisation under
        :attr:`BareLineEndPolicy.NORMALIZE`), counted even once an error stops the
        content from being returned."""
        return self._size

    @property
    def bare_line_ends(self) -> BareLineEndPolicy:
        """The policy this reader applies to bare CR and bare LF."""
        return self._policy

    def feed(self, data: bytes | bytearray | memoryview) -> tuple[int, list[bytes]]:
        """Scan ``data`` and return ``(consumed, chunks)``.

        ``consumed`` counts the octets of ``data`` that belong to the message, up to
        and including the final ``.<CRLF>`` once it is seen; the caller drops them
        from its buffer and keeps the rest (the next command). Before the end of data
        every octet is consumed. ``chunks`` is the content found in this call (at most
        one chunk per call): CRLF line ends, the leading period of each line that had
        one removed, the final ``.<CRLF>`` left out (the CRLF before it belongs to the
        content). After the end of data, ``feed`` consumes nothing.

        ``data`` is scanned in place (a ``memoryview`` of other than one-dimensional
        unsigned octets is copied first); no reference to it or export of its buffer
        is kept, so the caller may release a view or resize its buffer as soon as the
        call returns.
        """
        if self._done or not data:
            return 0, []
        base = len(self._tail)
        buf: bytes | bytearray | memoryview
        if base:
            buf = self._tail + data
            self._tail = b""
        elif isinstance(data, bytes | bytearray) or (data.format == "B" and data.ndim == 1):
            buf = data
        else:
            buf = bytes(data)
        n = len(buf)
        # Spans of content: the octets between the periods deleted by unstuffing.
        spans: list[tuple[int, int]] = []
        bulk = b""
        start = 0  # first octet of content not yet in a span
        pos = 0  # where the next search for CRLF "." starts
        search = _END.search
        budget = _STEPS
        consumed = n - base
        # Index of a period at the start of a line, or -1.
        dot = 0 if self._line_start and buf[0] == _DOT else -1
        self._line_start = False
        while True:
            if dot < 0:
                if not budget:
                    # Many lines start with a period: unstuff the rest in one pass.
                    stop, bulk = self._bulk(buf, pos)
                    if self._done:
                        consumed = stop - base
                    break
                hit = search(buf, pos)
                if hit is None:
                    if buf[n - 1] == _CR:
                        # The LF that would make this CR a line end may come next.
                        self._tail = b"\r"
                        n -= 1
                    elif n >= 2 and buf[n - 2] == _CR and buf[n - 1] == _LF:
                        self._line_start = True
                    if start < n:
                        spans.append((start, n))
                    break
                dot = hit.end() - 1
            # buf[dot] is a period that starts a line (RFC 5321 §4.5.2).
            if start < dot:
                spans.append((start, dot))
            if dot + 1 >= n or (buf[dot + 1] == _CR and dot + 2 >= n):
                # Cannot tell yet whether this is the end of data: keep "." or ".\r".
                self._tail = bytes(buf[dot:])
                self._line_start = True
                break
            if buf[dot + 1] == _CR and buf[dot + 2] == _LF:
                # <CRLF>.<CRLF>: the end of data (RFC 5321 §4.1.1.4).
                self._done = True
                consumed = dot + 3 - base
                break
            # A line starting with a period and other characters: delete the period.
            # A bare CR or LF right after it is content (and judged as such).
            start = pos = dot + 1
            dot = -1
            budget -= 1
        chunk = _join(buf, spans)
        if bulk:
            chunk = chunk + bulk if chunk else bulk
        return consumed, self._content(chunk)

    def _bulk(self, buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, bytes]:
        """Unstuff ``buf[pos:]``, where ``buf[pos - 1]`` is a deleted period, with one
        search for the end and one ``replace``; return the index just past the octets
        used (past the final ``.<CRLF>`` if seen) and the content.

        Before the end of data, every CRLF "." is a period to delete: a line that is
        only a period would be the end.
        """
        end = _EOD.search(buf, pos)
        if end is not None:
            self._done = True
            stop = end.start() + 2
            used = end.end()
        else:
            # Keep what cannot be decided yet, as in feed().
            used = stop = len(buf)
            if _ends(buf, pos, b"\r\n."):
                stop -= 1
            elif _ends(buf, pos, b"\r\n.\r"):
                stop -= 2
            elif _ends(buf, pos, b"\r"):
                stop -= 1
            if stop < used:
                self._tail = bytes(buf[stop:])
            self._line_start = self._tail[:1] == b"." or _ends(buf, pos, b"\r\n")
        return used, _join(buf, [(pos, stop)]).replace(b"\r\n.", b"\r\n")

    def _content(self, chunk: bytes) -> list[bytes]:
        """Account for ``chunk`` as content; return it, unless the message is (or now
        becomes) in error.

        A chunk holds the content between two cuts that never split a CRLF: a cut is at
        a period deleted by unstuffing (which follows a CRLF), before the final period,
        or before a trailing CR kept for later. So a bare CR or LF seen in a chunk is
        bare.

        The first error is the one at the earliest octet of content (ties broken in
        the order bare line end, too big, line too long), so that the outcome never
        depends on how the input was cut into feeds.
        """
        if not chunk:
            return []
        if self._error is not None:
            if self._policy is BareLineEndPolicy.NORMALIZE:
                chunk = normalize_line_ends(chunk)
            self._size += len(chunk)
            return []
        size = self._size
        errors: list[tuple[int, int, DataError]] = []
        if self._check_bare:
            at = _first_bare_line_end(chunk)
            if at >= 0:
                if self._policy is BareLineEndPolicy.REJECT:
                    errors.append((at, 0, DataError.BARE_LINE_END))
                else:
                    chunk = normalize_line_ends(chunk)
        self._size = size + len(chunk)
        if self._max_size is not None and self._size > self._max_size:
            errors.append((self._max_size - size, 1, DataError.TOO_BIG))
        if self._max_line is not None:
            at = self._first_long_line(chunk)
            if at >= 0:
                errors.append((at, 2, DataError.LINE_TOO_LONG))
        if errors:
            self._error = min(errors)[2]
            return []
        return [chunk]

    def _first_long_line(self, chunk: bytes) -> int:
        """The index in ``chunk`` of the octet that makes a line (continuing the
        current one) longer than ``max_line_length``, or -1.

        Each step jumps to the last LF within the limit's reach, so a run of short
        lines costs one ``rfind`` per ``max_line_length`` octets, not one per line.
        """
        limit = self._max_line
        assert limit is not None
        n = len(chunk)
        p = -self._line_len  # the start of the current line (before the chunk at first)
        while True:
            reach = p + limit  # the LF ending this line must be at an index < reach
            lf = chunk.rfind(b"\n", max(p, 0), min(reach, n))
            if lf < 0:
                if reach <= n:
                    return reach - 1
                self._line_len = n - p
                return -1
            p = lf + 1


def _ends(buf: bytes | bytearray | memoryview, pos: int, suffix: bytes) -> bool:
    """Whether ``buf[pos:]`` ends with ``suffix`` (memoryview has no endswith)."""
    start = len(buf) - len(suffix)
    return start >= pos and buf[start:] == suffix


def _join(buf: bytes | bytearray | memoryview, spans: list[tuple[int, int]]) -> bytes:
    """The octets of ``buf`` in ``spans``, as one ``bytes``, copied once."""
    if not spans:
        return b""
    if len(spans) == 1 and isinstance(buf, bytes):
        lo, hi = spans[0]
        return buf[lo:hi]  # no copy when the span is all of buf
    with memoryview(buf) as view:
        pieces = [view[lo:hi] for lo, hi in spans]
        joined = b"".join(pieces)
        del pieces  # release the exports before the view
    return joined


def _first_bare_line_end(chunk: bytes) -> int:
    """The index of the first CR not followed by LF or LF not preceded by CR, or -1.

    ``chunk`` must not end with a CR whose LF is still to come.
    """
    cr = _BARE_CR.search(chunk)
    lf = _BARE_LF.search(chunk, 0, cr.start() if cr is not None else len(chunk))
    if lf is not None:
        return lf.start()
    return cr.start() if cr is not None else -1


def normalize_line_ends(body: bytes | bytearray | memoryview) -> bytes:
    """Return ``body`` with every line end (CRLF, bare LF, bare CR) written as CRLF.

    RFC 5321 §2.3.8: CR and LF are sent only together, as a line end. Used by the
    client for BDAT (RFC 3030), where no dot-stuffing applies.
    """
    data = body if isinstance(body, bytes) else bytes(body)
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    elif b"\n" not in data:
        return data
    return data.replace(b"\n", b"\r\n")


def dot_stuff(body: bytes | bytearray | memoryview) -> bytes:
    """Return ``body`` ready to send after DATA's 354 reply, without the final ``.<CRLF>``.

    Every line end (CRLF, bare LF, bare CR) becomes CRLF (RFC 5321 §2.3.8), a
    non-empty body is made to end with CRLF, and a period that starts a line is
    doubled (RFC 5321 §4.5.2). An empty body stays empty, so that appending
    ``.\\r\\n`` sends an empty message.
    """
    data = body if isinstance(body, bytes) else bytes(body)
    if not data:
        return b""
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if not data.endswith(b"\n"):
        data += b"\n"
    data = data.replace(b"\n.", b"\n..")
    if data[0] == _DOT:
        data = b"." + data
    return data.replace(b"\n", b"\r\n")


class LineEndNormalizer:
    """:func:`normalize_line_ends` for content that comes in pieces: the output of
    :meth:`feed` over any cutting of a body, joined, equals ``normalize_line_ends``
    of the whole body.

    A CR at the end of a piece is written as a line end at once (it is one, bare or
    followed by LF: RFC 5321 §2.3.8); an LF that starts the next piece is then the
    rest of that CRLF and is dropped. Nothing is held back, so the output never lags
    the input.
    """

    __slots__ = ("_after_cr", "_at_line_start")

    def __init__(self) -> None:
        self._after_cr = False  # the last octet fed was a CR
        self._at_line_start = True  # the output so far ends with CRLF (or is empty)

    @property
    def at_line_start(self) -> bool:
        """Whether the output so far is empty or ends with a line end."""
        return self._at_line_start

    def _lines(self, piece: bytes | bytearray | memoryview) -> bytes:
        """``piece`` with its line ends as LF only (the caller turns them into CRLF),
        the LF of a CRLF split from the previous piece removed."""
        data = piece if isinstance(piece, bytes) else bytes(piece)
        if not data:
            return data
        if self._after_cr and data[0] == _LF:
            data = data[1:]
        self._after_cr = piece[-1] == _CR
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if data:
            self._at_line_start = data[-1] == _LF
        return data

    def feed(self, piece: bytes | bytearray | memoryview) -> bytes:
        """The next piece of content, normalised."""
        data = self._lines(piece)
        return data.replace(b"\n", b"\r\n") if b"\n" in data else data


class DotStuffer(LineEndNormalizer):
    """:func:`dot_stuff` for content that comes in pieces: the output of :meth:`feed`
    over any cutting of a body, then :meth:`end`, joined, equals ``dot_stuff`` of the
    whole body (RFC 5321 §4.5.2: a period that starts a line is doubled, whichever
    piece the line began in; line ends are normalised as :class:`LineEndNormalizer`
    does)."""

    __slots__ = ()

    def feed(self, piece: bytes | bytearray | memoryview) -> bytes:
        """The next piece of content, normalised and dot-stuffed."""
        line_start = self._at_line_start
        data = self._lines(piece)
        if not data:
            return data
        data = data.replace(b"\n.", b"\n..")
        if line_start and data[0] == _DOT:
            data = b"." + data
        return data.replace(b"\n", b"\r\n")

    def end(self) -> bytes:
        """What ends the content: CRLF when the last line has none, else nothing (an
        empty body stays empty). The ``.<CRLF>`` that ends DATA is not included."""
        return b"" if self._at_line_start else b"\r\n"
