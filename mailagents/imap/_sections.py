"""Where a ``BODY[section]<partial>`` lies in a message, and its octets (RFC 9051
§6.4.5).

:func:`locate_section` maps a ``Section`` (from ``_fetch_items``) to a
:class:`SectionSpan` of the message using its ``PartMap``;
:func:`iter_section` produces the octets to send, reading the stored message through a
callable ``read(start, length) -> bytes`` (so a store can seek and never load the
message whole), with every bare LF sent as CRLF and ``<partial>`` counted in those
CRLF octets (RFC 9051 §6.4.5 and §7.5.2 count the message as sent).

Part numbers (RFC 9051 §6.4.5): the parts of a multipart are numbered from 1; a
message that is not multipart has one part, 1, its body (``1.MIME`` is then the
message's header, as in Dovecot); the number after a ``message/rfc822`` part
addresses the parts of the embedded message. ``HEADER``, ``HEADER.FIELDS[.NOT]`` and
``TEXT`` apply to the message (no part number) or to a ``message/rfc822`` part
(its embedded message); ``MIME`` is the header of the numbered part. A multipart
without parts has an empty part 1 (it is shown with one, see ``_bodystructure``).
A section that does not exist is ``None``; Dovecot answers it with an empty string
(the interop test checks ours against that).

Pure computation; I/O only through the caller's ``read``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mailagents.imap._fetch_items import Section
from mailagents.imap._mime import PartMap

__all__ = [
    "Reader",
    "SectionSpan",
    "crlf_to_stored",
    "iter_crlf",
    "iter_section",
    "locate_part",
    "locate_section",
    "section_octets",
    "section_size",
    "stored_to_crlf",
]

Reader = Callable[[int, int], bytes]
"""``read(start, length)``: up to ``length`` stored octets of the message from
``start`` (fewer only at its end)."""

_CHUNK = 65_536
_NAME_MAX = 1_000
_BARE_LF = re.compile(rb"(?<!\r)\n")


@dataclass(frozen=True, slots=True, kw_only=True)
class SectionSpan:
    """A range of the message: ``start``/``end`` in stored octets, ``start_crlf``/
    ``end_crlf`` in CRLF octets. With ``fields``, only the header fields named there
    (``exclude``: all but those) are sent, followed by the blank line
    (``HEADER.FIELDS``, RFC 9051 §6.4.5)."""

    start: int
    end: int
    start_crlf: int
    end_crlf: int
    fields: frozenset[str] | None = None
    exclude: bool = False

    @property
    def empty(self) -> bool:
        """Whether the span holds nothing (and is no header filter)."""
        return self.fields is None and self.end <= self.start


def locate_part(part_map: PartMap, numbers: tuple[int, ...]) -> int | None:
    """The index in ``part_map.parts`` of the part ``numbers`` (``()``: the message
    itself, index 0); ``-1`` for part 1 of a multipart without parts; ``None`` when
    there is no such part."""
    parts = part_map.parts
    node = 0
    at_message = True
    own_part = False  # node is a non-multipart message standing as its own part 1
    for k, num in enumerate(numbers):
        last = k == len(numbers) - 1
        part = parts[node]
        if at_message:
            message = node
        elif part.is_multipart:
            if not part.children:
                return -1 if num == 1 and last else None
            if num > len(part.children):
                return None
            node = part.children[num - 1]
            continue
        elif part.is_message and part.children:
            message = part.children[0]
        elif num == 1 and not own_part:
            continue  # a leaf body part is its own part 1, as in Dovecot
        else:
            return None
        at_message = False
        inner = parts[message]
        if inner.is_multipart:
            if not inner.children:
                return -1 if num == 1 and last else None
            if num > len(inner.children):
                return None
            node = inner.children[num - 1]
        elif num == 1:
            node = message
            own_part = True
            continue
        else:
            return None
        own_part = False
    return node


def locate_section(part_map: PartMap, section: Section) -> SectionSpan | None:
    """The :class:`SectionSpan` of ``section``, ``None`` when it does not exist."""
    node = locate_part(part_map, section.part)
    if node is None:
        return None
    if node == -1:
        if section.text not in (None, "MIME"):
            return None
        return SectionSpan(start=0, end=0, start_crlf=0, end_crlf=0)
    parts = part_map.parts
    part = parts[node]
    text = section.text
    if text is None:
        if not section.part:
            return SectionSpan(
                start=part.header_start,
                end=part.end,
                start_crlf=part.header_start_crlf,
                end_crlf=part.end_crlf,
            )
        return SectionSpan(
            start=part.body_start,
            end=part.end,
            start_crlf=part.body_start_crlf,
            end_crlf=part.end_crlf,
        )
    if text == "MIME":
        return SectionSpan(
            start=part.header_start,
            end=part.body_start,
            start_crlf=part.header_start_crlf,
            end_crlf=part.body_start_crlf,
        )
    if section.part:
        if not (part.is_message and part.children):
            return None
        part = parts[part.children[0]]
    if text == "TEXT":
        return SectionSpan(
            start=part.body_start,
            end=part.end,
            start_crlf=part.body_start_crlf,
            end_crlf=part.end_crlf,
        )
    fields = None
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        fields = frozenset(name.lower() for name in section.fields)
    return SectionSpan(
        start=part.header_start,
        end=part.body_start,
        start_crlf=part.header_start_crlf,
        end_crlf=part.body_start_crlf,
        fields=fields,
        exclude=text == "HEADER.FIELDS.NOT",
    )


def iter_crlf(
    read: Reader, start: int, end: int, *, bare_lf: bool = True, chunk_size: int = _CHUNK
) -> Iterator[bytes]:
    """The stored octets ``[start, end)`` as sent: every LF not after a CR becomes
    CRLF (skipped when ``bare_lf`` is false: the message has none)."""
    prev = b"\r"  # what matters of the octet before: whether it is a CR
    if bare_lf and start > 0 and read(start - 1, 1)[-1:] != b"\r":
        prev = b"x"
    pos = start
    while pos < end:
        data = read(pos, min(chunk_size, end - pos))
        if not data:
            return
        pos += len(data)
        if bare_lf and b"\n" in data:
            data = _BARE_LF.sub(b"\r\n", prev + data)[len(prev) :]
        prev = b"\r" if data[-1:] == b"\r" else b"x"
        yield data


def _filter_header(
    chunks: Iterator[bytes], fields: frozenset[str], exclude: bool
) -> Iterator[bytes]:
    """The lines of the header whose field is (not) in ``fields``, then CRLF. A line
    longer than the name bound is judged on its first octets; memory stays bounded."""
    head = bytearray()
    deciding = True
    keep = False
    for chunk in chunks:
        i = 0
        n = len(chunk)
        while i < n:
            e = chunk.find(b"\n", i)
            stop = n if e < 0 else e + 1
            if deciding:
                head += chunk[i:stop]
                if e < 0 and len(head) < _NAME_MAX:
                    i = stop
                    continue
                line = bytes(head)
                head.clear()
                deciding = False
                if line in (b"\r\n", b"\n"):
                    keep = False  # the blank line: added at the end
                elif line[:1] in (b" ", b"\t"):
                    pass  # a continuation: as its field
                else:
                    colon = line.find(b":")
                    name = line[:colon].strip().decode("latin-1").lower() if colon > 0 else ""
                    keep = bool(name) and ((name in fields) != exclude)
                if keep:
                    yield line
            elif keep:
                yield chunk[i:stop]
            if e >= 0:
                deciding = True
            i = stop
    if head:
        line = bytes(head)
        if line[:1] in (b" ", b"\t"):
            if keep:
                yield line
        else:
            colon = line.find(b":")
            name = line[:colon].strip().decode("latin-1").lower() if colon > 0 else ""
            if name and (name in fields) != exclude:
                yield line
    yield b"\r\n"


def _partial(chunks: Iterator[bytes], origin: int, count: int) -> Iterator[bytes]:
    skip, left = origin, count
    for chunk in chunks:
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        piece = chunk[skip : skip + left]
        skip = 0
        left -= len(piece)
        if piece:
            yield piece
        if left <= 0:
            return


def iter_section(
    part_map: PartMap,
    section: Section,
    read: Reader,
    *,
    partial: tuple[int, int] | None = None,
    chunk_size: int = _CHUNK,
) -> Iterator[bytes] | None:
    """The octets of ``BODY[section]<origin.count>`` in chunks, or ``None`` when the
    section does not exist."""
    span = locate_section(part_map, section)
    if span is None:
        return None
    if (
        partial is not None
        and span.fields is None
        and not part_map.has_bare_lf
        and span.end - span.start == span.end_crlf - span.start_crlf
    ):
        # Stored and sent octets are the same: seek straight to the partial range.
        origin, count = partial
        start = min(span.start + origin, span.end)
        return iter_crlf(
            read, start, min(start + count, span.end), bare_lf=False, chunk_size=chunk_size
        )
    bare = span.end - span.start != span.end_crlf - span.start_crlf or span.fields is not None
    start, start_crlf = span.start, span.start_crlf
    if partial is not None and span.fields is None and part_map.checkpoints:
        # Start from the last checkpoint before the range instead of the span's start.
        point = part_map.checkpoint_before_crlf(span.start_crlf + partial[0])
        if point[0] > start:
            start, start_crlf = point
            partial = (span.start_crlf + partial[0] - start_crlf, partial[1])
    chunks = iter_crlf(read, start, span.end, bare_lf=bare, chunk_size=chunk_size)
    if span.fields is not None:
        chunks = _filter_header(chunks, span.fields, span.exclude)
    if partial is not None:
        chunks = _partial(chunks, *partial)
    return chunks


def stored_to_crlf(part_map: PartMap, read: Reader, stored: int) -> int:
    """The CRLF offset of stored offset ``stored`` (reads at most
    ``MimeLimits.checkpoint_every`` octets, none when the message has no bare LF)."""
    if not part_map.has_bare_lf:
        return stored
    if not 0 <= stored <= part_map.size:
        raise ValueError("stored_to_crlf: offset beyond the message")
    point_stored, point_crlf = part_map.checkpoint_before_stored(stored)
    return point_crlf + sum(len(c) for c in iter_crlf(read, point_stored, stored))


def crlf_to_stored(part_map: PartMap, read: Reader, crlf: int) -> int:
    """The stored offset where CRLF offset ``crlf`` falls (the LF of a CRLF added to
    a bare LF maps to that LF); reads at most ``MimeLimits.checkpoint_every`` octets."""
    if not part_map.has_bare_lf:
        return crlf
    if not 0 <= crlf <= part_map.crlf_size:
        raise ValueError("crlf_to_stored: offset beyond the message")
    stored, at = part_map.checkpoint_before_crlf(crlf)
    prev_cr = stored > 0 and read(stored - 1, 1) == b"\r"
    while at < crlf:
        data = read(stored, min(_CHUNK, part_map.size - stored))
        if not data:
            break
        for octet in data:
            step = 2 if octet == 0x0A and not prev_cr else 1
            if at + step > crlf:
                return stored
            at += step
            stored += 1
            prev_cr = octet == 0x0D
            if at >= crlf:
                return stored
    return stored


def section_octets(
    part_map: PartMap,
    section: Section,
    read: Reader,
    *,
    partial: tuple[int, int] | None = None,
) -> bytes | None:
    """:func:`iter_section` joined (for small sections and tests)."""
    chunks = iter_section(part_map, section, read, partial=partial)
    return None if chunks is None else b"".join(chunks)


def section_size(part_map: PartMap, section: Section, read: Reader) -> int | None:
    """The length in octets as sent of ``BODY[section]`` (read only for
    ``HEADER.FIELDS``, computed from the part map otherwise)."""
    span = locate_section(part_map, section)
    if span is None:
        return None
    if span.fields is None:
        return span.end_crlf - span.start_crlf
    chunks = iter_section(part_map, section, read)
    assert chunks is not None
    return sum(len(c) for c in chunks)
