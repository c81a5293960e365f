"""SEARCH evaluation for the IMAP server (RFC 9051 §6.4.4) over a store's folder.

The session builds a :class:`SearchView` of the selected mailbox and calls
:func:`search` with the parsed criteria (the tree of ``mailagents.imap._search``);
the answer is the matching UIDs, ascending. :func:`search_result` turns them into
what the responses need: the numbers of ``* SEARCH`` (sequence numbers, or UIDs for
UID SEARCH), ESEARCH's ``MIN``/``MAX``/``COUNT``/``ALL`` (RFC 4731 §3.1), the highest
``MODSEQ`` of the matches (RFC 7162 §3.1.5) and the UID set that ``SAVE`` keeps for
``$`` (RFC 5182 §2.1).

Cheap keys first: flags, sizes, dates, sets and MODSEQ are decided from the
``MessageInfo`` alone; headers are read only for the messages still possible, and
bodies last (streamed in chunks, never the whole message in memory).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from mailagents.agents._imap_search_eval import Candidate, Context, compile_keys, evaluate
from mailagents.imap._mime import PartMap
from mailagents.imap._search import SearchKey, has_modseq_key
from mailagents.imap._seqset import SequenceSet
from mailagents.store._cache import FolderCache
from mailagents.store._model import Folder, MessageInfo

__all__ = ["SearchResult", "SearchView", "has_modseq_key", "search", "search_result"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchView:
    """What a search looks at: the selected mailbox as the session sees it.

    ``messages``
        The messages of the mailbox in sequence-number order: message sequence number
        ``n`` is ``messages[n - 1]``. ``*`` in a bare sequence set is ``len(messages)``,
        in a ``UID`` set the UID of the last message (RFC 9051 §6.4.4, §9 ``seq-number``).
    ``folder``
        The store's folder, read with ``open_message(uid, start, length)`` for headers
        (when ``header`` is not given) and bodies.
    ``saved``
        The SEARCHRES saved result (RFC 5182) as a set of UIDs, ``None`` when nothing
        was saved (``$`` then matches nothing, RFC 5182 §2.1); expunged UIDs may stay
        in it, they match nothing.
    ``charset``
        The search's charset, already checked by the session (only ``UTF-8`` and
        ``US-ASCII`` reach here); text values are compared as Unicode.
    ``recent``
        The UIDs this session sees as ``\\Recent`` (IMAP4rev1's ``RECENT``, ``NEW``,
        ``OLD``; session state, not a stored flag). Empty in IMAP4rev2.
    ``part_map``
        Optional: the part map of a message by UID (cache-backed); without it, the
        part map is computed by scanning the message when a BODY or TEXT key needs it.
    ``header``
        Optional: the header block of a message by UID, with its blank line; without
        it, the header is read from ``folder`` up to the end of the header (at most
        ``HEADER_MAX`` octets).
    ``cache``
        Optional: the folder's ``FolderCache`` (``mailagents.store._cache``). When
        given, FROM, TO, CC, BCC, SUBJECT, the SENT* keys and HEADER of an ENVELOPE
        field (Date, Subject, From, Sender, Reply-To, To, Cc, Bcc, In-Reply-To,
        Message-ID) are answered from a message's cache entry without reading the
        message (a miss reads the header, as without a cache), and BODY/TEXT take the
        part map from ``FolderCache.structure``, which computes and queues the
        entry on a miss. ``part_map``, when given too, comes first.
    """

    messages: Sequence[MessageInfo]
    folder: Folder
    saved: SequenceSet | None = None
    charset: str = "UTF-8"
    recent: Collection[int] = field(default_factory=frozenset)
    part_map: Callable[[int], PartMap] | None = None
    header: Callable[[int], bytes] | None = None
    cache: FolderCache | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchResult:
    """The matches of one search, as the responses need them.

    ``numbers`` are what ``* SEARCH`` lists, ascending: message sequence numbers, or
    UIDs when ``uid`` (UID SEARCH). ``uids`` are the matches' UIDs, ascending (what
    ``SAVE`` keeps). ``modseq`` is the highest mod-sequence of the matches (RFC 7162
    §3.1.5), ``None`` when nothing matched.
    """

    numbers: tuple[int, ...]
    uids: tuple[int, ...]
    uid: bool
    modseq: int | None

    @property
    def min(self) -> int | None:
        """ESEARCH ``MIN`` (RFC 4731 §3.1), ``None`` when nothing matched."""
        return self.numbers[0] if self.numbers else None

    @property
    def max(self) -> int | None:
        """ESEARCH ``MAX``, ``None`` when nothing matched."""
        return self.numbers[-1] if self.numbers else None

    @property
    def count(self) -> int:
        """ESEARCH ``COUNT``."""
        return len(self.numbers)

    @property
    def all(self) -> SequenceSet | None:
        """ESEARCH ``ALL``: the numbers as a compressed set (``1:3,7``), ``None`` when
        nothing matched (RFC 4731 §3.1: ALL is then left out)."""
        return SequenceSet.from_numbers(self.numbers) if self.numbers else None

    def saved(
        self, *, min: bool = False, max: bool = False, all: bool = False, count: bool = False
    ) -> SequenceSet | None:
        """The UID set ``SAVE`` keeps for ``$`` given the other RETURN options
        (RFC 5182 §2.1: with only MIN and/or MAX, just those messages; else all
        matches); ``None`` for an empty result."""
        if not self.uids:
            return None
        if (min or max) and not (all or count):
            picked = {self.uids[0]} if min else set()
            if max:
                picked.add(self.uids[-1])
            return SequenceSet.from_numbers(picked)
        return SequenceSet.from_numbers(self.uids)


def search(keys: tuple[SearchKey, ...], view: SearchView) -> list[int]:
    """The UIDs of the messages of ``view`` matching every key of ``keys`` (the
    command's top level, ANDed), ascending.

    The tree is evaluated message by message with an explicit stack (no recursion),
    ``AND`` and ``OR`` short-circuit, and the operands of each are tried cheapest
    first: flags, sizes, internal dates, sets and MODSEQ, then header keys, then BODY
    and TEXT, so a message's content is read only when the cheap keys leave it
    possible. All BODY/TEXT needles of the search are looked for in one pass over a
    message's text."""
    if not view.messages:
        return []
    plan = compile_keys(keys)
    context = Context(view, plan.needles)
    matches = []
    for index, info in enumerate(view.messages):
        if evaluate(plan.root, Candidate(context, info, index + 1)):
            matches.append(info.uid)
    matches.sort()
    return matches


def search_result(uids: Sequence[int], view: SearchView, *, uid: bool) -> SearchResult:
    """The ``SearchResult`` of the matching ``uids`` (from ``search``): sequence
    numbers taken from ``view.messages`` unless ``uid``. UIDs no longer in ``view``
    are left out."""
    wanted = set(uids)
    found = [(n, m) for n, m in enumerate(view.messages, 1) if m.uid in wanted]
    kept = tuple(sorted(m.uid for _, m in found))
    numbers = kept if uid else tuple(sorted(n for n, _ in found))
    modseq = max((m.modseq for _, m in found), default=None)
    return SearchResult(numbers=numbers, uids=kept, uid=uid, modseq=modseq)
