"""The evaluation of a search tree over one message at a time (RFC 9051 §6.4.4).

:func:`compile_keys` turns the criteria into a tree of :class:`Node` whose leaves are
tests of a :class:`Candidate` (one message of the view, with its header, part map and
text read lazily, each at most once) and whose ``AND``/``OR`` operands are ordered
cheapest first; :func:`evaluate` walks it with an explicit stack, short-circuiting.

The rules, key by key:

- sets: a bare sequence set against the message number, ``*`` being the number of
  messages; a ``UID`` set against the UID, ``*`` being the last message's UID (so
  ``559:*`` holds the last message even when 559 is beyond it, RFC 9051 §6.4.8);
  ``$`` is the saved result of RFC 5182 (UIDs), empty when nothing was saved;
- flags and keywords compare without regard to case (RFC 9051 §9; a store keeps a
  keyword's spelling, ``Folder``'s ``apply_flags``); ``RECENT``, ``NEW`` (recent and
  unseen) and ``OLD`` (not recent) use the session's recent UIDs (RFC 3501 §6.4.4);
- ``BEFORE``/``ON``/``SINCE``: the internal date's calendar date in the zone it
  carries, "disregarding time and timezone"; ``SENT*`` the same of the ``Date:``
  field parsed by ``email.utils`` (a missing or unparsable field never matches);
- ``LARGER``/``SMALLER``: RFC822.SIZE strictly above or below;
- ``MODSEQ``: the message's mod-sequence at least the value (RFC 7162 §3.1.5; the
  per-flag entry is not tracked apart, so every entry is the message's modseq);
- ``HEADER`` and ``FROM``/``TO``/``CC``/``BCC``/``SUBJECT``: some field of that name
  whose decoded value contains the string (an empty string: the field is present);
- ``BODY``: the decoded text of the text parts; ``TEXT``: the header's decoded fields
  (``name: value``) or the body's text.
"""

from __future__ import annotations

import datetime
import email.utils
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from mailagents.agents._imap_search_text import (
    NeedleScanner,
    decode_words,
    header_values,
    read_header,
    scan_part_map,
    text_chunks,
)
from mailagents.imap._mime import ADDRESS_FIELDS, ENVELOPE_FIELDS, PartMap
from mailagents.imap._search import (
    And,
    DateKey,
    FlagKey,
    HeaderKey,
    KeywordKey,
    ModSeqKey,
    Not,
    Or,
    SearchKey,
    SetKey,
    SizeKey,
    TextKey,
)
from mailagents.store._cache_format import CachedMessage
from mailagents.store._model import MessageInfo

if TYPE_CHECKING:
    from mailagents.agents._imap_search import SearchView

__all__ = ["Candidate", "Context", "Node", "Plan", "compile_keys", "evaluate"]

_LEAF, _AND, _OR, _NOT = range(4)
_CHEAP, _HEADER, _BODY = range(3)

_ENVELOPE_INDEX = {name: i for i, name in enumerate(ENVELOPE_FIELDS)}

_FLAG_OF = {
    "ANSWERED": "\\answered",
    "DELETED": "\\deleted",
    "DRAFT": "\\draft",
    "FLAGGED": "\\flagged",
    "SEEN": "\\seen",
}

Test = Callable[["Candidate"], bool]


class Context:
    """What every message of one search shares: the view, the largest numbers for
    ``*``, the saved set, and every BODY/TEXT needle of the criteria."""

    __slots__ = ("last_seq", "last_uid", "needles", "recent", "view")

    def __init__(self, view: SearchView, needles: frozenset[str]) -> None:
        self.view = view
        self.needles = needles
        self.last_seq = len(view.messages)
        self.last_uid = view.messages[-1].uid if view.messages else 0
        self.recent = frozenset(view.recent)


class Candidate:
    """One message under evaluation; its flags (folded), header block, parsed
    ``Date:``, part map and text matches are computed on first use."""

    __slots__ = (
        "_date",
        "_dated",
        "_entry",
        "_flags",
        "_found",
        "_header",
        "_looked_up",
        "context",
        "info",
        "seq",
    )

    def __init__(self, context: Context, info: MessageInfo, seq: int) -> None:
        self.context = context
        self.info = info
        self.seq = seq
        self._flags: frozenset[str] | None = None
        self._header: bytes | None = None
        self._date: datetime.date | None = None
        self._dated = False
        self._found: set[str] | None = None
        self._entry: CachedMessage | None = None
        self._looked_up = False

    def _open(self, start: int, length: int | None) -> BinaryIO:
        return self.context.view.folder.open_message(self.info.uid, start, length)

    @property
    def flags(self) -> frozenset[str]:
        """The message's flags in lower case."""
        if self._flags is None:
            self._flags = frozenset(f.lower() for f in self.info.flags)
        return self._flags

    @property
    def header(self) -> bytes:
        """The header block (from the view's accessor when it has one)."""
        if self._header is None:
            accessor = self.context.view.header
            if accessor is not None:
                self._header = accessor(self.info.uid)
            else:
                self._header = read_header(self._open)
        return self._header

    def _cached(self) -> CachedMessage | None:
        if not self._looked_up:
            self._looked_up = True
            cache = self.context.view.cache
            if cache is not None:
                self._entry = cache.get(self.info.uid, self.info.size)
        return self._entry

    def field_values(self, name: str) -> list[str]:
        """The decoded values of the header fields called ``name`` (any case): from
        the cache entry for an ENVELOPE field when there is one, else from the header
        block. Of a repeated ENVELOPE field, every value counts for an address field,
        the last for another (as ENVELOPE and the cache have them); of any other
        field, every value."""
        key = name.lower()
        index = _ENVELOPE_INDEX.get(key)
        if index is not None:
            entry = self._cached()
            if entry is not None:
                raw = entry.fields[index]
                if raw is None:
                    return []
                values = raw.split("\n") if key in ADDRESS_FIELDS else [raw]
                return [decode_words(v) for v in values]
        values = [value for _, value in header_values(self.header, key)]
        if index is not None and key not in ADDRESS_FIELDS:
            return values[-1:]  # as ENVELOPE and the cache take it
        return values

    @property
    def sent_date(self) -> datetime.date | None:
        """The calendar date of the ``Date:`` field (its last one, as the cache keeps
        it), in the zone it is written in; ``None`` when missing or unparsable."""
        if not self._dated:
            self._dated = True
            entry = self._cached()
            if entry is not None:
                self._date = None if entry.sent_date is None else entry.sent_date.date()
            else:
                values = self.field_values("date")
                if values:
                    try:
                        self._date = email.utils.parsedate_to_datetime(values[-1]).date()
                    except (TypeError, ValueError, IndexError, OverflowError):
                        self._date = None
        return self._date

    def part_map(self) -> PartMap:
        """The message's part map (the view's accessor, else the cache, else a scan)."""
        view = self.context.view
        uid = self.info.uid
        if view.part_map is not None:
            return view.part_map(uid)
        if view.cache is not None:
            entry = view.cache.structure(uid, lambda: self._open(0, None), self.info.size)
            return entry.part_map
        return scan_part_map(self._open)

    def body_has(self, needle: str) -> bool:
        """Whether the text parts contain ``needle`` (every needle of the search is
        looked for in the one pass the first call makes)."""
        if self._found is None:
            scanner = NeedleScanner(self.context.needles)
            chunks: Iterator[str] = text_chunks(self.part_map(), self._open)
            for chunk in chunks:
                if scanner.feed(chunk):
                    break
            self._found = scanner.found
        return needle.casefold() in self._found


@dataclass(frozen=True, slots=True)
class Node:
    """A compiled search key: a leaf ``test`` or an operator over ``children``;
    ``cost`` orders the operands of ``AND``/``OR``."""

    op: int
    cost: int
    children: tuple[Node, ...] = ()
    test: Test | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """The compiled criteria and the BODY/TEXT needles they hold."""

    root: Node
    needles: frozenset[str]


def _flag_test(name: str) -> Test:
    if name == "ALL":
        return lambda c: True
    if name in _FLAG_OF:
        flag = _FLAG_OF[name]
        return lambda c: flag in c.flags
    if name.startswith("UN") and name[2:] in _FLAG_OF:
        flag = _FLAG_OF[name[2:]]
        return lambda c: flag not in c.flags
    if name == "RECENT":
        return lambda c: c.info.uid in c.context.recent
    if name == "NEW":
        return lambda c: c.info.uid in c.context.recent and "\\seen" not in c.flags
    return lambda c: c.info.uid not in c.context.recent  # OLD


def _set_test(key: SetKey) -> Test:
    wanted = key.set
    if wanted.saved:

        def saved(c: Candidate) -> bool:
            got = c.context.view.saved
            return got is not None and got.contains(c.info.uid, c.context.last_uid)

        return saved
    if key.uid:
        return lambda c: wanted.contains(c.info.uid, c.context.last_uid)
    return lambda c: wanted.contains(c.seq, c.context.last_seq)


def _date_test(key: DateKey) -> tuple[Test, int]:
    day = key.date
    if key.name in ("BEFORE", "ON", "SINCE"):
        compare = {"BEFORE": day.__gt__, "ON": day.__eq__, "SINCE": day.__le__}[key.name]
        return (lambda c: bool(compare(c.info.internaldate.date()))), _CHEAP
    compare = {"SENTBEFORE": day.__gt__, "SENTON": day.__eq__, "SENTSINCE": day.__le__}[key.name]

    def sent(c: Candidate) -> bool:
        got = c.sent_date
        return got is not None and bool(compare(got))

    return sent, _HEADER


def _header_test(field: str, value: str) -> Test:
    needle = value.casefold()

    def test(c: Candidate) -> bool:
        return any(needle in v.casefold() for v in c.field_values(field))

    return test


def _text_test(needle: str) -> Test:
    folded = needle.casefold()

    def test(c: Candidate) -> bool:
        for name, value in header_values(c.header):
            if folded in f"{name}: {value}".casefold():
                return True
        return c.body_has(needle)

    return test


def _leaf(key: SearchKey, needles: set[str]) -> Node:
    cost = _CHEAP
    test: Test
    if isinstance(key, FlagKey):
        test = _flag_test(key.name)
    elif isinstance(key, SetKey):
        test = _set_test(key)
    elif isinstance(key, SizeKey):
        size = key.size
        test = (
            (lambda c: c.info.size > size)
            if key.name == "LARGER"
            else (lambda c: c.info.size < size)
        )
    elif isinstance(key, ModSeqKey):
        modseq = key.modseq
        test = lambda c: c.info.modseq >= modseq  # noqa: E731
    elif isinstance(key, KeywordKey):
        keyword = key.keyword.lower()
        if key.name == "KEYWORD":
            test = lambda c: keyword in c.flags  # noqa: E731
        else:
            test = lambda c: keyword not in c.flags  # noqa: E731
    elif isinstance(key, DateKey):
        test, cost = _date_test(key)
    elif isinstance(key, HeaderKey):
        test, cost = _header_test(key.field, key.value), _HEADER
    elif isinstance(key, TextKey):
        if key.name in ("BODY", "TEXT"):
            needles.add(key.value)
            cost = _BODY
            if key.name == "BODY":
                value = key.value
                test = lambda c: c.body_has(value)  # noqa: E731
            else:
                test = _text_test(key.value)
        else:
            test, cost = _header_test(key.name, key.value), _HEADER
    else:  # pragma: no cover - every leaf type is handled above
        raise TypeError(f"not a search key: {key!r}")
    return Node(_LEAF, cost, test=test)


def compile_keys(keys: tuple[SearchKey, ...]) -> Plan:
    """Compile the criteria (ANDed) into a :class:`Plan`, without recursion."""
    needles: set[str] = set()
    # Post-order with an explicit stack: (key, visited) entries; results on `built`.
    built: list[Node] = []
    stack: list[tuple[SearchKey | tuple[SearchKey, ...], bool]] = [(keys, False)]
    while stack:
        item, visited = stack.pop()
        children: tuple[SearchKey, ...]
        if isinstance(item, tuple):
            children = item
        elif isinstance(item, Not):
            children = (item.key,)
        elif isinstance(item, Or):
            children = (item.left, item.right)
        elif isinstance(item, And):
            children = item.keys
        else:
            built.append(_leaf(item, needles))
            continue
        if not visited:
            stack.append((item, True))
            stack.extend((child, False) for child in reversed(children))
            continue
        count = len(children)
        nodes = tuple(built[len(built) - count :]) if count else ()
        del built[len(built) - count :]
        if isinstance(item, Not):
            built.append(Node(_NOT, nodes[0].cost, nodes))
        else:
            op = _OR if isinstance(item, Or) else _AND
            if not nodes:
                built.append(Node(_LEAF, _CHEAP, test=lambda c: True))
            elif len(nodes) == 1:
                built.append(nodes[0])
            else:
                ordered = tuple(sorted(nodes, key=lambda n: n.cost))
                built.append(Node(op, ordered[-1].cost, ordered))
    return Plan(root=built[0], needles=frozenset(needles))


def evaluate(root: Node, candidate: Candidate) -> bool:
    """Whether ``candidate`` matches the compiled tree ``root`` (explicit stack,
    ``AND``/``OR`` short-circuit in operand order)."""
    stack: list[list[Node | int]] = []
    node = root
    while True:
        while node.op != _LEAF:
            stack.append([node, 0])
            node = node.children[0]
        assert node.test is not None
        value = node.test(candidate)
        while stack:
            frame = stack[-1]
            parent, index = frame
            assert isinstance(parent, Node) and isinstance(index, int)
            if parent.op == _NOT:
                value = not value
                stack.pop()
                continue
            if (parent.op == _AND and not value) or (parent.op == _OR and value):
                stack.pop()
                continue
            index += 1
            if index == len(parent.children):
                stack.pop()
                continue
            frame[1] = index
            node = parent.children[index]
            break
        else:
            return value
