"""The MIME part map of a message, computed once by a streaming scanner.

:class:`MimeScanner` is fed a message in chunks of any size (``feed``) and hands back a
:class:`PartMap` at the end (``close``). It never holds the message: only the current
header block (bounded by :attr:`MimeLimits.max_header`, the excess counted, not kept),
the start of the current line (a few dozen octets, to recognise a boundary), the
stack of open parts and the active boundaries. There is no recursion anywhere: nesting
is an explicit stack, bounded by :attr:`MimeLimits.max_depth`.

Offsets and sizes. Every part records three positions (where its header starts, where
its body starts, where it ends), each twice: in *stored* octets (the offsets of the
bytes as fed, what a store seeks to) and in *CRLF* octets (the message as IMAP sends
it, every bare LF counted as CRLF: RFC 9051 §7.5.2 wants sizes and ``<partial>``
ranges in that form). ``PartMap.has_bare_lf`` says whether the two differ at all;
for a message where they do, ``PartMap.checkpoints`` holds offset pairs every
``MimeLimits.checkpoint_every`` stored octets, so that ``_sections`` translates any
offset either way by reading at most that much. Line counts are the number of LFs in a range,
as Dovecot counts them (a last line without a line end is not counted).

The rules follow RFC 2045/2046 and, where those leave room, Dovecot's message parser
(whose output the interop test compares with ours):

- A header ends at the first empty line; a part is MIME when it has a
  ``Content-Type`` or ``MIME-Version`` field or is the child of a multipart, and only
  then are its ``Content-*`` fields used (RFC 2045 §4). Without a type a part is
  ``text/plain`` (RFC 2045 §5.2), or ``message/rfc822`` below a ``multipart/digest``
  (RFC 2046 §5.1.5).
- RFC 2046 §5.1.1: a boundary line is ``--`` and the boundary, then anything (the
  line only has to *start* with it, as Dovecot accepts; of several matching active
  boundaries the longest wins, the innermost of equals); ``--`` after the boundary
  closes the multipart, the rest is its epilogue. The line end before a boundary line
  belongs to the boundary, unless it ended another boundary line or the header of a
  multipart or message (a leaf part's header then loses its blank line's line end,
  as in Dovecot). A
  boundary of an outer multipart closes the inner parts too (and forgets their
  boundaries); a missing close delimiter ends everything at the end of the message; a
  boundary line inside a header ends that header (and the part) there.
- ``message/rfc822`` (and ``message/global``, RFC 6532 §3.5, which RFC 9051 §7.5.2
  treats alike) parts hold the embedded message as one child of their own: its header
  starts where the part's body starts.
- Limits, as Dovecot has them: past :attr:`MimeLimits.max_parts` parts, boundary lines
  are no longer recognised (the rest is the body of the last part); a multipart or
  message part at :attr:`MimeLimits.max_depth` is not descended into (it keeps its
  type and has no children).

Pure data and computation, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from mailagents._protocol import LocalProtocolError
from mailagents.imap._mime_headers import (
    header_fields,
    merge_rfc2231,
    parse_content_type,
    parse_params,
    unfold,
)
from mailagents.imap._varint import VarintReader, put_number, put_text

__all__ = [
    "ADDRESS_FIELDS",
    "ENVELOPE_FIELDS",
    "MIME_FIELDS",
    "MimeLimits",
    "MimePart",
    "MimeScanner",
    "PartMap",
    "PartMapError",
    "header_fields",
    "merge_rfc2231",
    "parse_content_type",
    "parse_params",
    "scan_message",
    "unfold",
]

ENVELOPE_FIELDS: tuple[str, ...] = (
    "date",
    "subject",
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "in-reply-to",
    "message-id",
)
"""The header fields an ENVELOPE is made of, in its order (RFC 9051 §7.5.2)."""

MIME_FIELDS: tuple[str, ...] = (
    "content-type",
    "content-transfer-encoding",
    "content-id",
    "content-description",
    "content-md5",
    "content-disposition",
    "content-language",
    "content-location",
)
"""The ``Content-*`` fields a BODYSTRUCTURE is made of, in the order kept in
``MimePart.mime``."""

ADDRESS_FIELDS: frozenset[str] = frozenset({"from", "sender", "reply-to", "to", "cc", "bcc"})
"""The address-list fields of ``ENVELOPE_FIELDS``. When one is repeated, the
values are kept together, separated by LF; any other field's last value counts."""

_ENV_INDEX = {name: i for i, name in enumerate(ENVELOPE_FIELDS)}
_MIME_INDEX = {name: i for i, name in enumerate(MIME_FIELDS)}

# Part flags.
MULTIPART = 1
MESSAGE = 2
DIGEST = 4
IS_MIME = 8
TEXT = 16
HEADER_TRUNCATED = 32

_HEAD = 256
"""How much of a line starting with ``--`` is kept to match boundaries (RFC 2046
§5.1.1: at most 70 characters, Dovecot allows a little more; longer boundaries are
compared on this many octets)."""


class PartMapError(ValueError):
    """A serialised :class:`PartMap` that is not valid (wrong version, truncated,
    inconsistent offsets, beyond the limits)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MimeLimits:
    """The scanner's bounds. ``max_depth``: how deep multiparts and embedded messages
    nest (Dovecot's default, 100); ``max_parts``: parts in all, the message itself
    included (Dovecot's 10,000); ``max_header``:
    octets of one header block kept for the ``Content-*`` and envelope fields (the
    rest is counted, not kept)."""

    max_depth: int = 100
    max_parts: int = 10_000
    max_header: int = 65_536
    checkpoint_every: int = 65_536
    """How many stored octets apart ``PartMap.checkpoints`` are (kept only for a
    message with bare LFs): translating an offset reads at most this many."""

    def __post_init__(self) -> None:
        if (
            self.max_depth < 1
            or self.max_parts < 1
            or self.max_header < _HEAD
            or self.checkpoint_every < 1
        ):
            raise LocalProtocolError(
                f"MimeLimits: max_depth, max_parts, checkpoint_every >= 1, max_header >= {_HEAD}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class MimePart:
    """One node of the part tree.

    The root (index 0) is the message itself; a multipart's children are its body
    parts; a ``message/rfc822`` part has one child, the embedded message. Offsets:
    ``header_start``/``body_start``/``end`` in stored octets, the ``*_crlf`` ones in
    CRLF octets; ``header_lines``/``body_lines`` count LFs. ``mime`` holds the unfolded
    values of ``MIME_FIELDS`` (``None`` when absent, or when the part is not MIME),
    ``envelope`` those of ``ENVELOPE_FIELDS`` for message nodes (the root and
    embedded messages), else ``()``.
    """

    parent: int
    depth: int
    flags: int
    header_start: int
    body_start: int
    end: int
    header_start_crlf: int
    body_start_crlf: int
    end_crlf: int
    header_lines: int
    body_lines: int
    children: tuple[int, ...] = ()
    mime: tuple[str | None, ...] = (None,) * len(MIME_FIELDS)
    envelope: tuple[str | None, ...] = ()

    @property
    def is_multipart(self) -> bool:
        """A multipart (its children are body parts)."""
        return bool(self.flags & MULTIPART)

    @property
    def is_message(self) -> bool:
        """A ``message/rfc822`` or ``message/global`` part (its child, if any, is the
        embedded message)."""
        return bool(self.flags & MESSAGE)

    @property
    def is_mime(self) -> bool:
        """Whether the part's ``Content-*`` fields count (RFC 2045 §4)."""
        return bool(self.flags & IS_MIME)

    @property
    def header_truncated(self) -> bool:
        """Whether the header block was longer than ``MimeLimits.max_header`` (fields
        past the limit were not seen)."""
        return bool(self.flags & HEADER_TRUNCATED)

    @property
    def header_size(self) -> int:
        """The header's size in CRLF octets (with its blank line)."""
        return self.body_start_crlf - self.header_start_crlf

    @property
    def body_size(self) -> int:
        """The body's size in CRLF octets (``body-fld-octets``)."""
        return self.end_crlf - self.body_start_crlf

    def field(self, name: str) -> str | None:
        """The unfolded value of a ``Content-*`` field of ``MIME_FIELDS``."""
        return self.mime[_MIME_INDEX[name.lower()]]


@dataclass(frozen=True, slots=True, kw_only=True)
class PartMap:
    """The part tree of one message, in pre-order (``parts[0]`` is the message).

    ``size`` is the message's length in stored octets, ``crlf_size`` in CRLF octets
    (``RFC822.SIZE``). Serialisable with :meth:`to_bytes` / :meth:`from_bytes`.
    """

    parts: tuple[MimePart, ...]
    size: int
    crlf_size: int
    checkpoints: tuple[tuple[int, int], ...] = ()
    """``(stored, crlf)`` offset pairs, ascending, about ``checkpoint_every`` stored
    octets apart, when the message has bare LFs (``()`` otherwise, where both
    offsets are the same): from the nearest one, an offset is translated by reading
    at most that far (``crlf_to_stored`` and ``stored_to_crlf`` in ``_sections``)."""

    def checkpoint_before_crlf(self, crlf: int) -> tuple[int, int]:
        """The last ``(stored, crlf)`` pair at or before CRLF offset ``crlf``."""
        return self._before(crlf, 1)

    def checkpoint_before_stored(self, stored: int) -> tuple[int, int]:
        """The last ``(stored, crlf)`` pair at or before stored offset ``stored``."""
        return self._before(stored, 0)

    def _before(self, offset: int, which: int) -> tuple[int, int]:
        points = self.checkpoints
        lo, hi = 0, len(points)
        while lo < hi:
            mid = (lo + hi) // 2
            if points[mid][which] <= offset:
                lo = mid + 1
            else:
                hi = mid
        return points[lo - 1] if lo else (0, 0)

    @property
    def root(self) -> MimePart:
        """The message itself."""
        return self.parts[0]

    @property
    def has_bare_lf(self) -> bool:
        """Whether stored and CRLF offsets differ anywhere."""
        return self.size != self.crlf_size

    # Serialisation: a version byte, then varints and length-prefixed UTF-8.
    VERSION = 1
    MAX_LOAD_PARTS = 1_000_000

    def to_bytes(self) -> bytes:
        """A compact form for a cache (read back by :meth:`from_bytes`)."""
        out = bytearray(b"MPM")
        out.append(self.VERSION)
        put_number(out, self.size)
        put_number(out, self.crlf_size)
        put_number(out, len(self.parts))
        for part in self.parts:
            put_number(out, part.parent + 1)
            put_number(out, part.flags)
            for value in (
                part.header_start,
                part.body_start - part.header_start,
                part.end - part.body_start,
                part.header_start_crlf,
                part.body_start_crlf - part.header_start_crlf,
                part.end_crlf - part.body_start_crlf,
                part.header_lines,
                part.body_lines,
            ):
                put_number(out, value)
            for text in part.mime:
                put_text(out, text)
            put_number(out, len(part.envelope))
            for text in part.envelope:
                put_text(out, text)
        put_number(out, len(self.checkpoints))
        previous = (0, 0)
        for point in self.checkpoints:
            put_number(out, point[0] - previous[0])
            put_number(out, point[1] - previous[1])
            previous = point
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> PartMap:
        """Read back :meth:`to_bytes`; :class:`PartMapError` on anything not valid."""
        if data[:3] != b"MPM" or len(data) < 4:
            raise PartMapError("not a serialised PartMap")
        if data[3] != cls.VERSION:
            raise PartMapError(f"PartMap version {data[3]} is not {cls.VERSION}")
        cur = VarintReader(data, 4, error=PartMapError, what="PartMap")
        size, crlf_size, count = cur.number(), cur.number(), cur.number()
        if not 1 <= count <= cls.MAX_LOAD_PARTS or crlf_size < size:
            raise PartMapError("PartMap counts out of range")
        parts: list[MimePart] = []
        children: list[list[int]] = []
        for index in range(count):
            parent = cur.number() - 1
            if (index == 0) != (parent == -1) or parent >= index:
                raise PartMapError("PartMap parent out of order")
            flags = cur.number()
            hs, hl, bl, hsc, hlc, blc, hlines, blines = (cur.number() for _ in range(8))
            mime = tuple(cur.text() for _ in MIME_FIELDS)
            env_count = cur.number()
            if env_count not in (0, len(ENVELOPE_FIELDS)):
                raise PartMapError("PartMap envelope of the wrong length")
            envelope = tuple(cur.text() for _ in range(env_count))
            depth = 0 if parent < 0 else parts[parent].depth + 1
            part = MimePart(
                parent=parent,
                depth=depth,
                flags=flags,
                header_start=hs,
                body_start=hs + hl,
                end=hs + hl + bl,
                header_start_crlf=hsc,
                body_start_crlf=hsc + hlc,
                end_crlf=hsc + hlc + blc,
                header_lines=hlines,
                body_lines=blines,
                mime=mime,
                envelope=envelope,
            )
            if part.end > size or part.end_crlf > crlf_size:
                raise PartMapError("PartMap part beyond the message")
            if (
                flags >= HEADER_TRUNCATED << 1
                or hsc < hs
                or hlc < hl
                or blc < bl
                or hlines > hlc
                or blines > blc
            ):
                raise PartMapError("PartMap part figures out of range")
            if parent >= 0:
                up = parts[parent]
                if not (up.body_start <= part.header_start and part.end <= up.end):
                    raise PartMapError("PartMap part outside its parent")
                children[parent].append(index)
            parts.append(part)
            children.append([])
        points: list[tuple[int, int]] = []
        previous = (0, 0)
        for _ in range(cur.number()):
            point = (previous[0] + cur.number(), previous[1] + cur.number())
            if point[1] - point[0] < previous[1] - previous[0] or point[0] <= previous[0]:
                raise PartMapError("PartMap checkpoints out of order")
            if point[0] > size or point[1] > crlf_size:
                raise PartMapError("PartMap checkpoint beyond the message")
            points.append(point)
            previous = point
        if not cur.done():
            raise PartMapError("PartMap followed by extra data")
        final = tuple(
            _replace_children(part, tuple(kids)) for part, kids in zip(parts, children, strict=True)
        )
        return cls(parts=final, size=size, crlf_size=crlf_size, checkpoints=tuple(points))

    def walk(self) -> Iterator[tuple[int, MimePart]]:
        """``(index, part)`` in pre-order."""
        return iter(enumerate(self.parts))


def _replace_children(part: MimePart, kids: tuple[int, ...]) -> MimePart:
    return MimePart(
        parent=part.parent,
        depth=part.depth,
        flags=part.flags,
        header_start=part.header_start,
        body_start=part.body_start,
        end=part.end,
        header_start_crlf=part.header_start_crlf,
        body_start_crlf=part.body_start_crlf,
        end_crlf=part.end_crlf,
        header_lines=part.header_lines,
        body_lines=part.body_lines,
        children=kids,
        mime=part.mime,
        envelope=part.envelope,
    )


def mime_flags(mime: tuple[str | None, ...], *, in_digest: bool) -> tuple[int, bytes | None]:
    """The structural flags of a MIME part from its fields, and its boundary."""
    parsed = parse_content_type(mime[0])
    if parsed is None:
        return (MESSAGE if in_digest else TEXT), None
    major, minor, params = parsed
    major, minor = major.lower(), minor.lower()
    if major == "multipart" and minor:
        flags = MULTIPART | (DIGEST if minor == "digest" else 0)
        boundary = next((v for k, v in params if k.lower() == "boundary"), None)
        raw = boundary.encode("utf-8", "surrogateescape") if boundary else None
        return flags, raw
    if major == "message" and minor in ("rfc822", "global"):
        return MESSAGE, None
    return (TEXT if major == "text" else 0), None


# --- the scanner ---------------------------------------------------------------------

_HEADER, _BODY, _SKIP_LINE, _BOUNDARY_REST = range(4)
_ANY_DASHES = (re.compile(rb"\n--"), re.compile(rb"--"))


@dataclass(slots=True)
class _Open:
    parent: int
    depth: int
    flags: int
    hs: tuple[int, int, int]
    bs: tuple[int, int, int] | None = None
    end: tuple[int, int, int] | None = None
    children: list[int] = field(default_factory=list)
    mime: tuple[str | None, ...] = (None,) * len(MIME_FIELDS)
    envelope: tuple[str | None, ...] = ()


class MimeScanner:
    """Computes a :class:`PartMap` from a message fed in chunks; see the module
    docstring for the rules. ``feed`` or ``close`` after ``close`` is a
    ``LocalProtocolError``. Any octets are accepted: nothing else is raised."""

    def __init__(self, limits: MimeLimits | None = None) -> None:
        self._limits = limits or MimeLimits()
        self._pos = 0
        self._crlf = 0
        self._lfs = 0
        self._last = 0  # the last octet consumed (0 at the start)
        self._nl = 0  # stored length of the last line end consumed (1 or 2)
        self._nodes: list[_Open] = [_Open(parent=-1, depth=0, flags=0, hs=(0, 0, 0))]
        self._stack: list[int] = [0]
        self._bounds: list[tuple[bytes, int]] = []
        # The same, indexed: boundary -> its positions in _bounds, and the lengths.
        self._where: dict[bytes, list[int]] = {}
        self._lengths: dict[int, int] = {}
        self._by_length: list[int] = []
        self._mode = _HEADER
        self._after_rest = _BODY
        self._nl_is_content = False
        self._pending = b""
        # The current header block and line (bounded).
        self._header = bytearray()
        self._line = bytearray()
        self._line_at = (0, 0, 0)
        self._line_nl = 0
        self._header_lines = 0
        self._truncated = False
        self._closed = False
        self._finders: dict[tuple[bytes, ...], tuple[re.Pattern[bytes], re.Pattern[bytes]]] = {}
        self._points: list[tuple[int, int]] = []
        self._next_point = self._limits.checkpoint_every

    # -- accounting

    def _snap(self) -> tuple[int, int, int]:
        return (self._pos, self._crlf, self._lfs)

    def _consume(self, buf: bytes, a: int, b: int) -> None:
        if a >= b:
            return
        every = self._limits.checkpoint_every
        while self._pos + (b - a) >= self._next_point:
            # Cut at the checkpoint, so that it is exact.
            cut = a + (self._next_point - self._pos)
            self._consume_range(buf, a, cut)
            self._points.append((self._pos, self._crlf))
            self._next_point += every
            a = cut
        self._consume_range(buf, a, b)

    def _consume_range(self, buf: bytes, a: int, b: int) -> None:
        if a >= b:
            return
        lfs = buf.count(b"\n", a, b)
        if lfs:
            pairs = buf.count(b"\r\n", a, b)
            if buf[a] == 0x0A and self._last == 0x0D:
                pairs += 1
            self._lfs += lfs
            self._crlf += lfs - pairs
            if buf[b - 1] == 0x0A:
                before = buf[b - 2] if b - 2 >= a else self._last
                self._nl = 2 if before == 0x0D else 1
        self._pos += b - a
        self._crlf += b - a
        self._last = buf[b - 1]

    # -- boundaries

    def _finder(self) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
        """Patterns for the next line that starts with an active boundary, and for
        such a line here (so that other lines, ``--`` ones included, are skipped at C
        speed); cached per set of active boundaries."""
        if len(self._bounds) > 16:
            return _ANY_DASHES  # deep nesting: compiling would cost more than it saves
        key = tuple(b for b, _ in self._bounds)
        patterns = self._finders.get(key)
        if patterns is None:
            if len(self._finders) >= 64:
                self._finders.clear()
            alternatives = b"|".join(re.escape(b) for b in sorted(set(key), key=len))
            starter = rb"--(?:" + alternatives + rb")"
            patterns = (re.compile(rb"\n" + starter), re.compile(starter))
            self._finders[key] = patterns
        return patterns

    def _match(self, line: bytes) -> tuple[int, bool] | None:
        """Which active boundary ``line`` (starting with ``--``, without its line end)
        is, and whether it closes; ``None`` when it is none (or past the part limit)."""
        if len(self._nodes) >= self._limits.max_parts:
            return None
        body = line[2:]
        if body.endswith(b"\r"):
            body = body[:-1]
        # The longest active boundary the line starts with; of equal ones the
        # innermost. One look-up per distinct length (at most _HEAD of them).
        for length in self._by_length:
            if length <= len(body):
                where = self._where.get(body[:length])
                if where:
                    return where[-1], body[length : length + 2] == b"--"
        return None

    def _push_bound(self, boundary: bytes, node: int) -> None:
        """A multipart's boundary becomes active (innermost)."""
        self._where.setdefault(boundary, []).append(len(self._bounds))
        self._bounds.append((boundary, node))
        count = self._lengths.get(len(boundary), 0)
        self._lengths[len(boundary)] = count + 1
        if not count:
            self._by_length = sorted(self._lengths, reverse=True)

    def _keep_bounds(self, keep: int) -> None:
        """Forget the active boundaries from position ``keep`` on."""
        while len(self._bounds) > keep:
            boundary, _ = self._bounds.pop()
            where = self._where[boundary]
            where.pop()
            if not where:
                del self._where[boundary]
            count = self._lengths[len(boundary)] - 1
            if count:
                self._lengths[len(boundary)] = count
            else:
                del self._lengths[len(boundary)]
                self._by_length = sorted(self._lengths, reverse=True)

    def _boundary(self, which: int, closing: bool, at: tuple[int, int, int], nl: int) -> None:
        """A boundary line starts at ``at``; the line end before it (``nl`` stored
        octets) is the boundary's when ``_nl_is_content``."""
        end = (at[0] - nl, at[1] - 2, at[2] - 1) if self._nl_is_content else at
        owner = self._bounds[which][1]
        while self._stack[-1] != owner:
            node = self._nodes[self._stack.pop()]
            if node.bs is None:
                node.bs = end
                self._end_header(node, descend=False)
            elif node.bs[0] > end[0]:
                # The boundary right after the blank line takes its line end.
                node.bs = end
            node.end = end
        self._keep_bounds(which + 1)
        if closing:
            self._keep_bounds(which)
            self._after_rest = _BODY
        else:
            self._after_rest = _HEADER
        self._mode = _BOUNDARY_REST

    def _rest_done(self) -> None:
        """The boundary line's end was consumed."""
        self._nl_is_content = False
        if self._after_rest == _HEADER:
            parent = self._stack[-1]
            self._open(parent, in_multipart=True)
        else:
            self._mode = _BODY

    def _open(self, parent: int, *, in_multipart: bool) -> None:
        up = self._nodes[parent]
        index = len(self._nodes)
        node = _Open(
            parent=parent, depth=up.depth + 1, flags=IS_MIME if in_multipart else 0, hs=self._snap()
        )
        self._nodes.append(node)
        up.children.append(index)
        self._stack.append(index)
        self._mode = _HEADER
        self._header.clear()
        self._header_lines = 0
        self._truncated = False

    def _end_header(self, node: _Open, *, descend: bool) -> None:
        """The header block of ``node`` is complete: read its fields and decide how
        its body is scanned."""
        mime: list[str | None] = [None] * len(MIME_FIELDS)
        message_node = node.parent < 0 or bool(self._nodes[node.parent].flags & MESSAGE)
        envelope: list[str | None] = [None] * len(ENVELOPE_FIELDS) if message_node else []
        for name, value in header_fields(bytes(self._header)):
            k = _MIME_INDEX.get(name)
            if k is not None:
                if name == "content-type":
                    node.flags |= IS_MIME
                if mime[k] is None or name == "content-disposition":
                    # The first of each counts, but the last Content-Disposition
                    # (as in Dovecot).
                    mime[k] = unfold(value)
            elif name == "mime-version":
                node.flags |= IS_MIME
            if message_node:
                e = _ENV_INDEX.get(name)
                if e is not None:
                    text = unfold(value)
                    previous = envelope[e]
                    if name in ADDRESS_FIELDS and previous is not None:
                        # Repeated address fields add up (as in Dovecot), one value
                        # a line: an unfolded value holds no line end.
                        text = previous + "\n" + text
                    envelope[e] = text
        if self._truncated:
            node.flags |= HEADER_TRUNCATED
        in_digest = node.parent >= 0 and bool(self._nodes[node.parent].flags & DIGEST)
        if node.flags & IS_MIME:
            node.mime = tuple(mime)
        flags, boundary = mime_flags(node.mime, in_digest=in_digest)
        node.flags |= flags
        node.envelope = tuple(envelope)
        self._header.clear()
        if not descend:
            return
        deep_ok = node.depth + 1 < self._limits.max_depth
        index = self._stack[-1]
        self._nl_is_content = False
        if node.flags & MULTIPART and boundary and deep_ok:
            self._push_bound(boundary, index)
        elif node.flags & MESSAGE and deep_ok and len(self._nodes) < self._limits.max_parts:
            self._open(index, in_multipart=False)
            return
        else:
            # A boundary on the first line of the body takes the blank line's line
            # end (Dovecot: the header then ends before it).
            self._nl_is_content = True
        self._mode = _BODY

    def feed(self, data: bytes) -> None:
        """Scan the next octets of the message."""
        if self._closed:
            raise LocalProtocolError("MimeScanner.feed after close")
        if not data:
            return
        buf = self._pending + data if self._pending else data
        self._pending = b""
        self._run(buf, final=False)

    def close(self) -> PartMap:
        """The end of the message: the part map."""
        if self._closed:
            raise LocalProtocolError("MimeScanner.close twice")
        buf, self._pending = self._pending, b""
        self._run(buf, final=True)
        if self._mode == _HEADER and not (self._line and self._header_boundary()):
            node = self._nodes[self._stack[-1]]
            if self._line:
                self._take_header_line()
            node.bs = self._snap()
            self._end_header(node, descend=False)
        end = self._snap()
        for index in self._stack:
            self._nodes[index].end = end
        self._closed = True
        return self._build()

    def _header_boundary(self) -> bool:
        """Whether the header line just read (already consumed) is a boundary line:
        then the header and its part end before it (RFC 2046 §5.1.1)."""
        if not self._bounds or self._line[:2] != b"--":
            return False
        line = bytes(self._line[:_HEAD])
        e = line.find(b"\n")
        hit = self._match(line[:e] if e >= 0 else line)
        if hit is None:
            return False
        self._line.clear()
        self._nl_is_content = self._header_lines > 0
        self._boundary(*hit, at=self._line_at, nl=self._line_nl)
        return True

    def _take_header_line(self) -> None:
        line = bytes(self._line)
        self._line.clear()
        self._header_lines += 1
        if len(self._header) + len(line) <= self._limits.max_header:
            self._header += line
        else:
            self._truncated = True

    def _run(self, buf: bytes, *, final: bool) -> None:
        p = 0
        n = len(buf)
        while p < n:
            mode = self._mode
            if mode == _HEADER:
                if not self._line:
                    self._line_at, self._line_nl = self._snap(), self._nl
                e = buf.find(b"\n", p)
                stop = n if e < 0 else e + 1
                room = self._limits.max_header - len(self._line)
                if room > 0:
                    self._line += buf[p : min(stop, p + room)]
                self._consume(buf, p, stop)
                p = stop
                if e < 0:
                    return
                if self._header_boundary():
                    self._rest_done()
                    continue
                if len(self._line) <= 2 and bytes(self._line) in (b"\n", b"\r\n"):
                    self._line.clear()
                    node = self._nodes[self._stack[-1]]
                    node.bs = self._snap()
                    self._end_header(node, descend=True)
                    continue
                self._take_header_line()
                continue
            if mode in (_SKIP_LINE, _BOUNDARY_REST):
                e = buf.find(b"\n", p)
                if e < 0:
                    self._consume(buf, p, n)
                    return
                self._consume(buf, p, e + 1)
                p = e + 1
                if mode == _SKIP_LINE:
                    self._mode = _BODY
                    self._nl_is_content = True
                else:
                    self._rest_done()
                continue
            # _BODY, at the start of a line.
            if not self._bounds or len(self._nodes) >= self._limits.max_parts:
                self._consume(buf, p, n)
                if buf[n - 1] == 0x0A:
                    self._nl_is_content = True
                else:
                    self._mode = _SKIP_LINE
                return
            finder, starter = self._finder()
            if starter.match(buf, p) is None:
                # Not a boundary line, unless it is cut short by the chunk's end.
                short = not final and n - p < _HEAD and buf.find(b"\n", p) < 0
                if short and b"--".startswith(buf[p : p + 2]):
                    self._pending = buf[p:]
                    return
                found = finder.search(buf, p)
                if found is None:
                    last = buf.rfind(b"\n", p)
                    if last < 0:
                        self._consume(buf, p, n)
                        self._mode = _SKIP_LINE
                        return
                    self._consume(buf, p, last + 1)
                    self._nl_is_content = True
                    p = last + 1
                    continue
                k = found.start()
                self._consume(buf, p, k + 1)
                self._nl_is_content = True
                p = k + 1
            # A line starting with "--" at p.
            e = buf.find(b"\n", p, p + _HEAD)
            if e < 0 and n - p < _HEAD and not final:
                self._pending = buf[p:]
                return
            line = buf[p:e] if e >= 0 else buf[p : p + _HEAD]
            hit = self._match(line)
            if hit is None:
                if e >= 0:
                    self._consume(buf, p, e + 1)
                    self._nl_is_content = True
                    p = e + 1
                else:
                    self._mode = _SKIP_LINE
                continue
            self._boundary(*hit, at=self._snap(), nl=self._nl)
            if e >= 0:
                self._consume(buf, p, e + 1)
                p = e + 1
                self._rest_done()
            # else: _BOUNDARY_REST consumes up to the line end.

    def _build(self) -> PartMap:
        parts: list[MimePart] = []
        for node in self._nodes:
            bs = node.bs if node.bs is not None else node.hs
            end = node.end if node.end is not None else bs
            if end[0] < bs[0]:
                end = bs
            parts.append(
                MimePart(
                    parent=node.parent,
                    depth=node.depth,
                    flags=node.flags,
                    header_start=node.hs[0],
                    body_start=bs[0],
                    end=end[0],
                    header_start_crlf=node.hs[1],
                    body_start_crlf=bs[1],
                    end_crlf=end[1],
                    header_lines=bs[2] - node.hs[2],
                    body_lines=end[2] - bs[2],
                    children=tuple(node.children),
                    mime=node.mime,
                    envelope=node.envelope,
                )
            )
        points = tuple(self._points) if self._crlf != self._pos else ()
        return PartMap(parts=tuple(parts), size=self._pos, crlf_size=self._crlf, checkpoints=points)


def scan_message(data: bytes, limits: MimeLimits | None = None) -> PartMap:
    """The :class:`PartMap` of a whole message held in memory."""
    scanner = MimeScanner(limits)
    scanner.feed(data)
    return scanner.close()
