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
``mailagents.imap.commands.expand_macro`` (or by :func:`expand_items`).

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

from mailagents.imap._binary import UnknownEncoding
from mailagents.imap._fetch_data import FetchData
from mailagents.imap._fetch_items import FetchItem
from mailagents.imap._mime import PartMap
from mailagents.store._model import Folder, MessageInfo

__all__ = ["FetchCache", "FetchPlan", "plan_fetch"]

Producer = Callable[[], Iterator[bytes]]
"""Called once when its literal is sent: the literal's octets, in chunks."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchPlan:
    """What to send for one message of a FETCH.

    ``data`` is the response (``* seq FETCH (...)``); its body items larger than
    ``inline_max`` hold ``Streamed`` placeholders (``Streamed.index`` numbers them
    from 0 in this plan, in the order they appear in ``data.sections``), and
    ``literals[i]`` produces the octets of placeholder ``i`` (exactly ``size`` octets,
    in chunks of at most 64 KiB).

    ``sets_seen``: a non-PEEK body item (``BODY[...]``, ``BINARY[...]``, RFC822,
    RFC822.TEXT) on a read-write mailbox, for a message without ``\\Seen`` (RFC 9051
    §6.4.5): the session stores ``\\Seen``; ``data.flags`` already shows it (FLAGS is
    added to the response even when not asked for, as the RFC wants).

    ``error``: a BINARY item whose part has a transfer encoding that cannot be undone
    (RFC 3516 §4.3): the session answers the command ``NO [UNKNOWN-CTE]`` instead of
    sending ``data``.
    """

    data: FetchData
    literals: list[Producer] = field(default_factory=list)
    sets_seen: bool = False
    error: UnknownEncoding | None = None


class FetchCache:
    """What a session keeps of the messages it fetched, so that a second FETCH of the
    same message does not scan it again: a small LRU of part maps, ENVELOPEs, BODY and
    BODYSTRUCTURE keyed by ``(folder name, UIDVALIDITY, UID)`` (a UID's message never
    changes within one UIDVALIDITY, RFC 9051 §2.3.1.1). One per session; not
    thread-safe."""

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries


def plan_fetch(
    items: tuple[FetchItem, ...],
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
) -> FetchPlan:
    """The :class:`FetchPlan` of ``items`` for ``message`` (sequence number ``seq``)
    of ``folder``.

    ``uid_requested``: a UID FETCH (UID is sent even when not asked for, RFC 9051
    §6.4.9); ``modseq``: MODSEQ is sent even when not asked for (CONDSTORE's
    CHANGEDSINCE, RFC 7162 §3.1.4.1); ``utf8``: UTF8=ACCEPT is enabled (RFC 6855:
    ENVELOPE strings may then carry UTF-8 as they are). ``read_only``: the mailbox was
    opened with EXAMINE (no ``\\Seen`` is set); ``recent``: the session holds the
    message as ``\\Recent`` (IMAP4rev1), added to FLAGS. ``part_map`` is the
    message's part map when the caller has it (the store's folder cache); else one is
    computed when an item needs it, and kept in ``cache`` when both ``cache`` and
    ``uidvalidity`` are given.

    Store errors (``MessageNotFoundError`` for a message expunged by another
    session, ``OSError``) propagate, from this call or from a producer."""
    raise NotImplementedError("plan_fetch: implementation follows")
