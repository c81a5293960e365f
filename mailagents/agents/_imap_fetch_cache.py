"""The session's cache of what FETCH computed per message (see :class:`FetchCache`)."""

from __future__ import annotations

from collections import OrderedDict

from mailagents.imap._body_model import Body, Envelope
from mailagents.imap._mime import PartMap

__all__ = ["FetchCache", "FetchEntry"]


class FetchEntry:
    """What ``FetchCache`` keeps of one message (each ``None`` until computed)."""

    __slots__ = ("body", "bodystructure", "envelope", "header", "part_map")

    def __init__(self) -> None:
        self.part_map: PartMap | None = None
        self.header: bytes | None = None
        self.envelope: Envelope | None = None
        self.body: Body | None = None
        self.bodystructure: Body | None = None

    @property
    def holds_anything(self) -> bool:
        """Whether anything was computed."""
        return any(
            x is not None
            for x in (self.part_map, self.header, self.envelope, self.body, self.bodystructure)
        )


class FetchCache:
    """What a session keeps of the messages it fetched, so that a second FETCH of the
    same message does not scan it again: a small LRU of part maps, headers,
    ENVELOPEs, BODY and BODYSTRUCTURE keyed by ``(folder name, UIDVALIDITY, UID)`` (a
    UID's message never changes within one UIDVALIDITY, RFC 9051 §2.3.1.1). One per
    session (folder names are a user's own); not thread-safe. Headers longer than
    ``max_header`` octets are not kept."""

    def __init__(self, max_entries: int = 64, *, max_header: int = 16384) -> None:
        if max_entries < 1:
            raise ValueError("FetchCache: max_entries must be at least 1")
        self.max_entries = max_entries
        self.max_header = max_header
        self._entries: OrderedDict[tuple[str, int, int], FetchEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, int, int]) -> FetchEntry | None:
        """The entry of ``(folder name, UIDVALIDITY, UID)``, now the most recent."""
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: tuple[str, int, int], entry: FetchEntry) -> None:
        """Keep ``entry`` if it holds anything (a FETCH of FLAGS alone does not push
        out the messages whose structure was computed)."""
        if key in self._entries or not entry.holds_anything:
            return
        self._entries[key] = entry
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def part_map(self, folder_name: str, uidvalidity: int, uid: int) -> PartMap | None:
        """The kept part map of a message, ``None`` when there is none."""
        found = self._entries.get((folder_name, uidvalidity, uid))
        return None if found is None else found.part_map

    def clear(self) -> None:
        """Forget everything (for example when the selected mailbox changes)."""
        self._entries.clear()
