"""FETCH over one message of a store folder (RFC 9051 §6.4.5): what the IMAP server
sends for each FETCH data item.

:func:`plan_fetch` turns the items of a FETCH command and one message of a
``mailagents.store`` folder into a :class:`FetchPlan`: the ``FetchData`` of the
untagged ``* n FETCH (...)`` response, where every body literal up to ``inline_max``
octets is inline ``bytes`` and every larger one a ``Streamed`` placeholder, plus, in
the same order, one producer per placeholder that yields its octets in chunks of
64 KiB when the session sends it. The session writes the response, feeds the
producers' chunks to the core as literal data, and stores ``\\Seen`` when
``sets_seen`` says so.

The items: FLAGS, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODY, BODYSTRUCTURE, UID,
``BODY[section]<partial>`` and ``BODY.PEEK[...]`` (every section of RFC 9051
§6.4.5), ``BINARY[part]<partial>``, ``BINARY.PEEK`` and ``BINARY.SIZE`` (RFC 3516),
MODSEQ (RFC 7162 §3.1.4), and IMAP4rev1's RFC822, RFC822.HEADER and RFC822.TEXT
(RFC 3501 §6.4.5). Macros (ALL, FAST, FULL) are expanded by the caller with
``mailagents.imap.commands.expand_macro``, or passed to :func:`plan_fetch` as they are.

Reads seek: a section or a partial range reads only its octets through
``folder.open_message(uid, start, length)`` (CRLF octets and offsets, as the stores
give them), so ``BODY[]<0.1024>`` of a 50 MB message reads about 1 KB, and the
whole message, its header, ``TEXT``, ``RFC822.SIZE`` and ``ENVELOPE`` need no MIME
scan. Part numbers, BODY, BODYSTRUCTURE and BINARY need the message's part map
(``mailagents.imap.PartMap``): given by the caller (from the store's folder cache),
kept in a :class:`FetchCache`, or scanned once from the message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mailagents.agents._imap_fetch_cache import FetchCache, FetchEntry
from mailagents.agents._imap_fetch_read import (
    MessageReader,
    closing_chunks,
    exactly,
    read_header,
    window,
)
from mailagents.imap._binary import UnknownEncoding, binary_size, iter_binary
from mailagents.imap._body_model import Body, Envelope
from mailagents.imap._bodystructure import body_structure
from mailagents.imap._envelope import envelope_from_fields, envelope_from_header
from mailagents.imap._fetch_data import BodySection, FetchData, SectionName
from mailagents.imap._fetch_items import (
    FetchAttribute,
    FetchBinarySize,
    FetchBody,
    FetchItem,
    FetchMacro,
    Section,
    expand_macro,
)
from mailagents.imap._frame import Streamed
from mailagents.imap._mime import ENVELOPE_FIELDS, MimeScanner, PartMap, scan_message
from mailagents.imap._sections import iter_section, locate_section, section_octets
from mailagents.store._cache import FolderCache
from mailagents.store._model import Folder, MessageInfo

__all__ = ["FetchCache", "FetchPlan", "Producer", "message_part_map", "plan_fetch"]

Producer = Callable[[], Iterator[bytes]]
"""Called once when its literal is sent: the literal's octets, in chunks."""

_SEEN = "\\Seen"
_WHOLE = Section()
_HEADER = Section(text="HEADER")
_TEXT = Section(text="TEXT")


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchPlan:
    """What to send for one message of a FETCH.

    ``data`` is the response (``* seq FETCH (...)``); its body items larger than
    ``inline_max`` hold ``Streamed`` placeholders (``Streamed.index`` numbers them
    from 0 in this plan, in the order they appear in ``data.sections``), and
    ``literals[i]`` produces the octets of placeholder ``i`` (exactly its ``size``
    octets, in chunks of at most 64 KiB; a message cut short under us is an
    ``OSError`` from the producer). A streamed ``BINARY`` literal is a literal8
    (``Streamed.binary``), which RFC 3516 §4.3's grammar allows for any content.

    ``sets_seen``: a non-PEEK body item (``BODY[...]``, ``BINARY[...]``, RFC822,
    RFC822.TEXT) on a read-write mailbox, for a message without ``\\Seen`` (RFC 9051
    §6.4.5): the session stores ``\\Seen``; ``data.flags`` already shows it (FLAGS is
    added to the response even when not asked for, as the RFC wants).

    ``error``: a BINARY or BINARY.SIZE item whose part has a transfer encoding that
    cannot be undone (RFC 3516 §4.3): the session answers the command
    ``NO [UNKNOWN-CTE]`` instead of sending ``data``.
    """

    data: FetchData
    literals: list[Producer] = field(default_factory=list)
    sets_seen: bool = False
    error: UnknownEncoding | None = None


def message_part_map(folder: Folder, uid: int) -> PartMap:
    """The part map of message ``uid``, scanned from its CRLF octets in chunks (the
    message is never held whole)."""
    scanner = MimeScanner()
    with folder.open_message(uid) as stream:
        while chunk := stream.read(1 << 20):
            scanner.feed(chunk)
    return scanner.close()


def _flag_order(flag: str) -> tuple[bool, str]:
    return (not flag.startswith("\\"), flag.lower())


def _slice_size(total: int, partial: tuple[int, int] | None) -> int:
    if partial is None:
        return total
    origin, count = partial
    return max(0, min(count, total - origin))


class _Planner:
    """The state of one :func:`plan_fetch` call."""

    def __init__(
        self,
        message: MessageInfo,
        folder: Folder,
        *,
        inline_max: int,
        part_map: PartMap | None,
        entry: FetchEntry | None,
        max_header: int,
        folder_cache: FolderCache | None = None,
    ) -> None:
        self.folder_cache = folder_cache
        self.message = message
        self.folder = folder
        self.inline_max = inline_max
        self.entry = entry if entry is not None else FetchEntry()
        if part_map is not None:
            self.entry.part_map = part_map
        self.max_header = max_header
        self.literals: list[Producer] = []
        self.error: UnknownEncoding | None = None

    # -- what a message is made of, computed once -------------------------------------

    def part_map(self) -> PartMap:
        entry = self.entry
        if entry.part_map is None:
            folder, uid = self.folder, self.message.uid
            if self.folder_cache is not None:
                cached = self.folder_cache.structure(
                    uid, lambda: folder.open_message(uid), size=self.message.size
                )
                entry.part_map = cached.part_map
            else:
                entry.part_map = message_part_map(folder, uid)
        return entry.part_map

    def header(self) -> bytes:
        """The top-level header with its blank line."""
        entry = self.entry
        if entry.header is not None:
            return entry.header
        header: bytes | None = None
        if entry.part_map is not None:
            end = entry.part_map.root.body_start_crlf
            header = b"".join(window(self.folder, self.message.uid, 0, end))
        else:
            header = read_header(self.folder, self.message.uid)
            if header is None:  # a huge header: the part map says where it ends
                end = self.part_map().root.body_start_crlf
                header = b"".join(window(self.folder, self.message.uid, 0, end))
        if len(header) <= self.max_header:
            entry.header = header
        return header

    def envelope(self) -> Envelope:
        entry = self.entry
        if entry.envelope is None:
            cached = None
            if entry.part_map is None and self.folder_cache is not None:
                cached = self.folder_cache.get(self.message.uid, self.message.size)
            if entry.part_map is not None and entry.part_map.root.envelope:
                entry.envelope = envelope_from_fields(entry.part_map.root.envelope)
            elif cached is not None and len(cached.fields) == len(ENVELOPE_FIELDS):
                entry.envelope = envelope_from_fields(cached.fields)
            else:
                entry.envelope = envelope_from_header(self.header())
        return entry.envelope

    def body(self, *, extended: bool) -> Body:
        entry = self.entry
        if extended:
            if entry.bodystructure is None:
                entry.bodystructure = body_structure(self.part_map(), extended=True)
            return entry.bodystructure
        if entry.body is None:
            entry.body = body_structure(self.part_map(), extended=False)
        return entry.body

    # -- literals ---------------------------------------------------------------------

    def literal(self, size: int, produce: Producer, *, binary: bool = False) -> bytes | Streamed:
        """Inline octets, or a placeholder with its producer."""
        if size <= self.inline_max:
            return b"".join(exactly(produce(), size))
        index = len(self.literals)
        self.literals.append(lambda: exactly(produce(), size))
        return Streamed(size=size, binary=binary, index=index)

    def _window(self, start: int, length: int) -> bytes | Streamed:
        folder, uid = self.folder, self.message.uid
        return self.literal(length, lambda: window(folder, uid, start, length))

    def _memory(self, data: bytes, partial: tuple[int, int] | None) -> bytes | Streamed:
        if partial is not None:
            data = data[partial[0] : partial[0] + partial[1]]
        return self.literal(len(data), lambda: iter((data,)))

    def body_section(self, section: Section, partial: tuple[int, int] | None) -> bytes | Streamed:
        """``BODY[section]<partial>``: an absent section is an empty string, as in
        Dovecot; a partial beyond the end too (RFC 9051 §6.4.5)."""
        size = self.message.size
        if section == _WHOLE:
            start = 0 if partial is None else min(partial[0], size)
            return self._window(start, _slice_size(size, partial))
        if not section.part and self.entry.part_map is None:
            if section.text == "TEXT":
                header_size = len(self.header())
                total = max(0, size - header_size)
                start = header_size + (0 if partial is None else min(partial[0], total))
                return self._window(start, _slice_size(total, partial))
            header = self.header()
            if section.text == "HEADER":
                return self._memory(header, partial)
            # HEADER.FIELDS[.NOT]: the header's own part map filters it.
            filtered = section_octets(scan_message(header), section, _bytes_reader(header))
            return self._memory(filtered or b"", partial)
        part_map = self.part_map()
        span = locate_section(part_map, section)
        if span is None:
            return b""
        folder, uid = self.folder, self.message.uid
        if span.fields is not None:
            with MessageReader(folder, uid, end=span.end) as reader:
                filtered = section_octets(part_map, section, reader)
            return self._memory(filtered or b"", partial)
        total = span.end_crlf - span.start_crlf
        if not part_map.has_bare_lf:
            start = span.start + (0 if partial is None else min(partial[0], total))
            return self._window(start, _slice_size(total, partial))

        def produce() -> Iterator[bytes]:  # pragma: no cover - CRLF part maps only
            reader = MessageReader(folder, uid, end=span.end)
            chunks = iter_section(part_map, section, reader, partial=partial)
            return closing_chunks(chunks or iter(()), reader)

        return self.literal(_slice_size(total, partial), produce)

    def binary_section(
        self, part: tuple[int, ...], partial: tuple[int, int] | None
    ) -> bytes | Streamed | None:
        """``BINARY[part]<partial>`` (RFC 3516 §4.2); ``None`` with ``self.error`` set
        for an unknown transfer encoding."""
        if not part:
            size = self.message.size
            start = 0 if partial is None else min(partial[0], size)
            length = _slice_size(size, partial)
            folder, uid = self.folder, self.message.uid
            return self.literal(length, lambda: window(folder, uid, start, length), binary=True)
        total = self.binary_size(part)
        if total is None:
            return None
        part_map = self.part_map()
        folder, uid = self.folder, self.message.uid

        def produce() -> Iterator[bytes]:
            reader = MessageReader(folder, uid)
            chunks = iter_binary(part_map, part, reader, partial=partial)
            assert not isinstance(chunks, UnknownEncoding)  # binary_size said so
            return closing_chunks(chunks or iter(()), reader)

        return self.literal(_slice_size(total, partial), produce, binary=True)

    def binary_size(self, part: tuple[int, ...]) -> int | None:
        """``BINARY.SIZE[part]``: 0 for a part that does not exist; ``None`` with
        ``self.error`` set for an unknown transfer encoding."""
        if not part:
            return self.message.size
        part_map = self.part_map()
        with MessageReader(self.folder, self.message.uid) as reader:
            size = binary_size(part_map, part, reader)
        if isinstance(size, UnknownEncoding):
            self.error = self.error or size
            return None
        return size or 0


def _bytes_reader(data: bytes) -> Callable[[int, int], bytes]:
    return lambda start, length: data[start : start + length]


def _items(items: tuple[FetchItem, ...] | FetchMacro) -> tuple[FetchItem, ...]:
    if isinstance(items, str):
        return expand_macro(items)
    return items


def plan_fetch(
    items: tuple[FetchItem, ...] | FetchMacro,
    message: MessageInfo,
    seq: int,
    folder: Folder,
    *,
    uid_requested: bool,
    modseq: bool,
    utf8: bool,
    inline_max: int = 65536,
    part_map: PartMap | None = None,
    read_only: bool = False,
    recent: bool = False,
    cache: FetchCache | None = None,
    uidvalidity: int | None = None,
    folder_cache: FolderCache | None = None,
) -> FetchPlan:
    """The :class:`FetchPlan` of ``items`` (the data items, or a macro: ``ALL``,
    ``FAST``, ``FULL``) for ``message`` (sequence number ``seq``) of ``folder``.

    ``uid_requested``: a UID FETCH (UID is sent even when not asked for, RFC 9051
    §6.4.9); ``modseq``: MODSEQ is sent even when not asked for (CONDSTORE's
    CHANGEDSINCE, RFC 7162 §3.1.4.1); ``utf8``: UTF8=ACCEPT is enabled (RFC 6855).
    ENVELOPE strings are sent as the header holds them either way (Dovecot does the
    same); the flag is kept for a downgrade to come. ``read_only``: the mailbox was
    opened with EXAMINE (no ``\\Seen`` is set); ``recent``: the session holds the
    message as ``\\Recent`` (IMAP4rev1), added to FLAGS. ``part_map`` is the
    message's part map when the caller has it (the store's folder cache: scanned
    from the CRLF octets); else one is computed when an item needs it (part numbers,
    BODY, BODYSTRUCTURE, BINARY of a part), and kept in ``cache`` when both ``cache``
    and ``uidvalidity`` are given. ``BODY[]``, ``BODY[HEADER]``, ``BODY[TEXT]``,
    ``HEADER.FIELDS``, ``ENVELOPE``, RFC822* and ``BINARY[]`` need no part map.

    A body item asked for twice is sent once. EMAILID, THREADID and SAVEDATE are not
    answered (the stores keep no object ids nor save dates; the session should not
    announce OBJECTID or SAVEDATE).

    Store errors (``MessageNotFoundError`` for a message expunged by another
    session, ``OSError``) propagate, from this call or from a producer."""
    del utf8  # see the docstring
    entry = None
    key = None
    if cache is not None and uidvalidity is not None:
        key = (folder.name, uidvalidity, message.uid)
        entry = cache.get(key)
    planner = _Planner(
        message,
        folder,
        inline_max=inline_max,
        part_map=part_map,
        entry=entry,
        max_header=cache.max_header if cache is not None else 1 << 62,
        folder_cache=folder_cache,
    )
    fields: dict[str, object] = {}
    sections: list[BodySection] = []
    done: set[tuple[SectionName, Section, int | None]] = set()
    binary_sizes: list[tuple[tuple[int, ...], int]] = []
    sets_seen = False

    def first(name: SectionName, section: Section, origin: int | None) -> bool:
        key = (name, section, origin)
        if key in done:
            return False
        done.add(key)
        return True

    for item in _items(items):
        if isinstance(item, FetchBody):
            partial = item.partial
            origin = None if partial is None else partial[0]
            sets_seen = sets_seen or not item.peek
            name: SectionName = "BINARY" if item.binary else "BODY"
            if not first(name, item.section, origin):
                continue
            value: bytes | Streamed | None
            if item.binary:
                value = planner.binary_section(item.section.part, partial)
            else:
                value = planner.body_section(item.section, partial)
            if value is not None:
                sections.append(
                    BodySection(name=name, section=item.section, origin=origin, data=value)
                )
        elif isinstance(item, FetchBinarySize):
            size = planner.binary_size(item.part)
            if size is not None and all(p != item.part for p, _ in binary_sizes):
                binary_sizes.append((item.part, size))
        elif item.name in _RFC822:
            rev1: SectionName = item.name  # type: ignore[assignment]
            sets_seen = sets_seen or rev1 != "RFC822.HEADER"
            if first(rev1, _WHOLE, None):
                value = planner.body_section(_RFC822[item.name], None)
                sections.append(BodySection(name=rev1, data=value))
        else:
            _attribute(item, planner, fields)
    sets_seen = sets_seen and not read_only and _SEEN not in message.flags
    if sets_seen or "flags" in fields:
        flags = set(message.flags) | ({_SEEN} if sets_seen else set())
        ordered = sorted(flags, key=_flag_order)
        fields["flags"] = ("\\Recent", *ordered) if recent else tuple(ordered)
    if uid_requested:
        fields["uid"] = message.uid
    if modseq:
        fields["modseq"] = message.modseq
    if cache is not None and key is not None:
        cache.put(key, planner.entry)
    if planner.error is not None:
        return FetchPlan(data=FetchData(number=seq), error=planner.error)
    data = FetchData(
        number=seq,
        sections=tuple(sections),
        binary_sizes=tuple(binary_sizes),
        **fields,  # type: ignore[arg-type]
    )
    return FetchPlan(data=data, literals=planner.literals, sets_seen=sets_seen)


_RFC822: dict[str, Section] = {"RFC822": _WHOLE, "RFC822.HEADER": _HEADER, "RFC822.TEXT": _TEXT}


def _attribute(item: FetchAttribute, planner: _Planner, fields: dict[str, object]) -> None:
    """A FETCH attribute into ``fields`` (the keyword arguments of ``FetchData``)."""
    message = planner.message
    name = item.name
    if name == "FLAGS":
        fields["flags"] = ()  # filled in by plan_fetch, with \\Seen when it sets it
    elif name == "UID":
        fields["uid"] = message.uid
    elif name == "INTERNALDATE":
        fields["internaldate"] = message.internaldate
    elif name == "RFC822.SIZE":
        fields["rfc822_size"] = message.size
    elif name == "MODSEQ":
        fields["modseq"] = message.modseq
    elif name == "ENVELOPE":
        fields["envelope"] = planner.envelope()
    elif name == "BODY":
        fields["body"] = planner.body(extended=False)
    elif name == "BODYSTRUCTURE":
        fields["bodystructure"] = planner.body(extended=True)
    # EMAILID, THREADID, SAVEDATE: not answered (see plan_fetch).
