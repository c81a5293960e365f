"""STATUS numbers of an mbox folder (for :class:`~mailagents.store.mbox.MboxFolder` and
:meth:`~mailagents.store.mbox.MboxStore.status`), the latter read from the side index
alone, without the folder's locks.

Reading without the locks is safe because the index is only ever replaced whole (a
rename) or grown by appended records, a torn last record being ignored; the answer is
used only when the index describes the mbox exactly as it is now (its ``S`` record),
with no append in flight, and otherwise the caller opens the folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from mailagents.store._mbox_index import Entry, IndexCorrupt, IndexState, load, stat_key
from mailagents.store._model import DELETED, SEEN, FolderStatus

__all__ = ["peek_status", "status_of"]


def status_of(
    entries: Iterable[Entry],
    *,
    uidvalidity: int,
    uidnext: int,
    highestmodseq: int,
    first_recent: int,
) -> FolderStatus:
    """The :class:`~mailagents.store.FolderStatus` of these messages."""
    messages = unseen = deleted = recent = size = 0
    for e in entries:
        info = e.info
        messages += 1
        size += info.size
        if SEEN not in info.flags:
            unseen += 1
        if DELETED in info.flags:
            deleted += 1
        if info.uid >= first_recent:
            recent += 1
    return FolderStatus(
        messages=messages,
        uidvalidity=uidvalidity,
        uidnext=uidnext,
        highestmodseq=highestmodseq,
        unseen=unseen,
        deleted=deleted,
        size=size,
        recent=recent,
    )


def peek_status(path: str, index: str) -> FolderStatus | None:
    """The STATUS of the mbox at ``path`` from its index ``index``; ``None`` when the
    index cannot answer alone (missing, unreadable, behind the mbox, or an append
    under way)."""
    state = IndexState()
    try:
        if not load(state, index):
            return None
        st = os.stat(path)
    except (IndexCorrupt, OSError):
        return None
    finally:
        if state.index_ref is not None:
            state.index_ref.close()
    if state.pending is not None or state.mbox_stat != stat_key(st) or not state.uidvalidity:
        return None
    return status_of(
        state.msgs.values(),
        uidvalidity=state.uidvalidity,
        uidnext=state.uidnext,
        highestmodseq=state.highestmodseq,
        first_recent=state.first_recent,
    )
