"""What IMAP STATUS asks of a Maildir folder, answered without opening it, and the
\\Recent claim of an IMAP session (for :class:`~mailagents.store.maildir.MaildirFolder`).

STATUS (RFC 9051 §6.3.11) must not change the folder: no sync, no move of ``new/`` to
``cur/`` (a mail client shows what is in ``new/`` as new), no UIDs given. The answer is
read from ``dovecot-uidlist``, ``mailagents-modseq`` and ``dovecot-keywords`` and one
listing of ``new/`` and ``cur/``: MESSAGES, UNSEEN, DELETED, SIZE and RECENT count the
files there now (a file no reader has numbered yet counts as a recent, unseen message),
while UIDNEXT and HIGHESTMODSEQ are those of the last sync, never ahead of what the next
SELECT reports (a file that vanishes before it is numbered must not have moved them).
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from mailagents.store._maildir_io import crlf_size_of
from mailagents.store._maildir_names import name_size, parse_info, split_name
from mailagents.store._model import DELETED, SEEN, FolderStatus

if TYPE_CHECKING:
    from mailagents.store._maildir_sync import _Core

__all__ = ["claim_recent", "peek_status"]


def _listing(core: _Core) -> dict[str, tuple[str, str]]:
    """base name → (directory, file name) of every message file in ``new/`` and
    ``cur/`` (``cur/`` wins when a rename between the two is seen twice)."""
    files: dict[str, tuple[str, str]] = {}
    for directory in (core.new, core.cur):
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            core._check_exists()
            continue
        for name in names:
            if not name.startswith("."):
                files[name.partition(":")[0]] = (directory, name)
    return files


def peek_status(core: _Core, *, size: bool = True) -> FolderStatus:
    """The folder's STATUS numbers, from the side files and a listing (see the module
    docs); writes nothing, unless the folder has no uidlist at all (then an empty one
    is made, as a delivery does, so that UIDVALIDITY is stable). ``size=False``: SIZE
    is not computed (0), so no message file is read."""
    uidvalidity = core.delivery_uidvalidity()
    with core.mutex:
        ul, st, kw = core.uidlist, core.state, core.keywords
        ul.refresh()
        kw.refresh()
        st.refresh()
        if ul.exists and ul.uidvalidity:
            uidvalidity = ul.uidvalidity
        usable = st.uidvalidity == uidvalidity
        entries = st.entries if usable else {}
        first_recent = st.first_recent if usable else 1
        by_base = ul.by_base
        names = kw.names
        uidnext = ul.next_uid
        # A journal missing or of another UIDVALIDITY: the next sync starts it above
        # this floor, so reporting the floor now is never ahead of it, nor behind
        # anything reported before.
        highest = max(st.highest, 1) if usable else st.restart_floor(uidvalidity)
    messages = unseen = deleted = recent = octets_total = 0
    for base, (directory, name) in _listing(core).items():
        _, info = split_name(name)
        flags = parse_info(info, names)
        rec = by_base.get(base)
        entry = entries.get(rec.uid) if rec is not None else None
        if rec is None or rec.uid >= first_recent:
            recent += 1  # not numbered yet, or not claimed by a session
        if not size:
            octets = 0  # no file read
        elif entry is not None:
            octets = entry.size
        else:
            sized = name_size(base, "W")
            if sized is None:
                with contextlib.suppress(FileNotFoundError):
                    sized = crlf_size_of(os.path.join(directory, name))
            if sized is None:
                continue  # gone meanwhile
            octets = sized
        messages += 1
        octets_total += octets
        if SEEN not in flags:
            unseen += 1
        if DELETED in flags:
            deleted += 1
    return FolderStatus(
        messages=messages,
        uidvalidity=uidvalidity,
        uidnext=uidnext,
        highestmodseq=highest,
        unseen=unseen,
        deleted=deleted,
        size=octets_total,
        recent=recent,
    )


def claim_recent(core: _Core, uids: list[int]) -> list[int]:
    """Of ``uids`` (a session's snapshot), the ones no session has claimed as \\Recent
    yet, claimed now for the caller: the watermark moves above the highest of them, in
    the journal, under the uidlist lock, so that exactly one session gets each."""
    if not uids:
        return []
    with core.uidlist.lock(), core.mutex:
        st = core.state
        st.refresh()
        first = st.first_recent
        mine = [uid for uid in uids if uid >= first]
        if mine:
            st.start(core.uidlist.uidvalidity)
            st.claim_recent(max(mine) + 1)
            st.commit()
            core.forget()
        return mine
