"""SORT (RFC 5256 §3) and DISPLAYFROM/DISPLAYTO (RFC 5957) over a :class:`SearchView`.

:func:`sort` orders the UIDs a search matched by a list of ``SortCriterion``; the
session writes them as ``* SORT`` (sequence numbers through :func:`ordered_numbers`,
or UIDs for UID SORT). The keys, as RFC 5256 §3 defines them:

- ``ARRIVAL``: the internal date; ``DATE``: the sent date (the ``Date:`` field, or the
  internal date when it is missing or unparsable, §2.2), both compared as instants
  (zones taken into account); ``SIZE``: RFC822.SIZE;
- ``SUBJECT``: the base subject (§2.1, ``base_subject`` of the store's cache
  module); ``FROM``, ``TO``, ``CC``: the ``addr-mailbox`` of the first address of the
  field, as ENVELOPE parses it (an empty string when there is none);
- ``DISPLAYFROM``/``DISPLAYTO`` (RFC 5957 §3): the first address's display name
  (RFC 2047-decoded), or its ``mailbox@host`` when it has none;
- strings compare with ``i;ascii-casemap`` (RFC 4790 §9.2: ASCII letters folded,
  other octets as they are, so UTF-8 text orders by octets);
- ``REVERSE`` reverses that key only; messages equal on every key stay in sequence
  number order (§3, "sorted by sequence number").

With ``view.cache``, the header fields come from the cache entries (the base subject
and sent date are stored there already); otherwise, or on a miss, from the header
read through ``view.header`` or the folder.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from mailagents.agents._imap_search_text import decode_words, read_header
from mailagents.imap._body_model import Address, Envelope
from mailagents.imap._envelope import envelope_from_fields, envelope_from_header
from mailagents.imap._search import SortCriterion
from mailagents.store._cache_subject import base_subject, sent_date
from mailagents.store._model import MessageInfo

if TYPE_CHECKING:
    from mailagents.agents._imap_search import SearchView

__all__ = ["ordered_numbers", "sort"]

_HEADER_KEYS = frozenset({"CC", "DATE", "FROM", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"})


def casemap(text: str) -> bytes:
    """The ``i;ascii-casemap`` sort key of ``text`` (RFC 4790 §9.2)."""
    return text.encode("utf-8", "surrogateescape").upper()


def _first(addresses: tuple[Address, ...] | None) -> Address | None:
    for address in addresses or ():
        if address.host is not None:  # skip group start and end entries
            return address
    return None


def _mailbox(addresses: tuple[Address, ...] | None) -> str:
    first = _first(addresses)
    return "" if first is None or first.mailbox is None else first.mailbox


def _display(addresses: tuple[Address, ...] | None) -> str:
    first = _first(addresses)
    if first is None:
        return ""
    if first.name:
        return decode_words(first.name)
    return f"{first.mailbox or ''}@{first.host or ''}"


class _Headers:
    """The envelope, base subject and sent date of one message, computed once."""

    __slots__ = ("date", "envelope", "subject")

    def __init__(self, view: SearchView, info: MessageInfo) -> None:
        entry = None
        if view.cache is not None:
            entry = view.cache.get(info.uid, info.size)
        self.envelope: Envelope
        if entry is not None:
            self.envelope = envelope_from_fields(entry.fields)
            self.subject = entry.base_subject
            sent = entry.sent_date
        else:
            if view.header is not None:
                block = view.header(info.uid)
            else:
                uid = info.uid
                block = read_header(lambda s, n: view.folder.open_message(uid, s, n))
            self.envelope = envelope_from_header(block)
            self.subject = base_subject(self.envelope.subject)
            sent = sent_date(self.envelope.date)
        self.date: datetime.datetime = info.internaldate if sent is None else sent


def _key(name: str) -> Callable[[MessageInfo, _Headers | None], Any]:
    if name == "ARRIVAL":
        return lambda m, h: m.internaldate
    if name == "SIZE":
        return lambda m, h: m.size
    if name == "DATE":
        return lambda m, h: h.date if h else m.internaldate
    if name == "SUBJECT":
        return lambda m, h: casemap(h.subject if h else "")
    if name in ("FROM", "TO", "CC"):
        attr = {"FROM": "from_", "TO": "to", "CC": "cc"}[name]
        return lambda m, h: casemap(_mailbox(getattr(h.envelope, attr)) if h else "")
    attr = "from_" if name == "DISPLAYFROM" else "to"
    return lambda m, h: casemap(_display(getattr(h.envelope, attr)) if h else "")


def sort(criteria: Sequence[SortCriterion], uids: Sequence[int], view: SearchView) -> list[int]:
    """The ``uids`` (of messages in ``view``; others are left out) ordered by
    ``criteria`` (RFC 5256 §3), ties in sequence-number order."""
    wanted = set(uids)
    rows = [m for m in view.messages if m.uid in wanted]  # sequence-number order
    needs_header = any(c.key in _HEADER_KEYS for c in criteria)
    headers = {m.uid: _Headers(view, m) for m in rows} if needs_header else {}
    # Stable sorts from the last key to the first; Python's reverse keeps ties in order.
    for criterion in reversed(criteria):
        key = _key(criterion.key)
        rows.sort(key=lambda m: key(m, headers.get(m.uid)), reverse=criterion.reverse)
    return [m.uid for m in rows]


def ordered_numbers(uids: Sequence[int], view: SearchView, *, uid: bool) -> list[int]:
    """``uids`` in their order as ``* SORT`` lists them: themselves for UID SORT, else
    their sequence numbers in ``view`` (UIDs not in it left out)."""
    if uid:
        present = {m.uid for m in view.messages}
        return [u for u in uids if u in present]
    seq = {m.uid: n for n, m in enumerate(view.messages, 1)}
    return [seq[u] for u in uids if u in seq]
