"""Maildir flags: the info-slot setters that make :class:`MessageInfo` cheaply, the
flag modes, and flag changes by renaming files in ``cur/`` (the ``:2,<flags>`` info of
the qmail/Dovecot file name).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Collection
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from mailagents.store._maildir_io import _RENAME_RETRIES, fsync_dir
from mailagents.store._maildir_names import (
    build_info,
    file_name,
    keyword_letters_needed,
    parse_info,
    split_flags,
    split_name,
)
from mailagents.store._model import FlagMode, MessageInfo, apply_flags, same_flags

if TYPE_CHECKING:
    from mailagents.store._maildir_sync import _Core


_INFO_FIELDS = ("uid", "flags", "internaldate", "size", "modseq")


def _info_slot_setters() -> tuple[Any, ...] | None:
    """The slot setters of :class:`MessageInfo`, if it is what they were written for.

    Opening a big folder makes one :class:`MessageInfo` per message, and the frozen
    dataclass's ``__init__`` (``object.__setattr__`` per field) is most of that cost.
    While :class:`MessageInfo` has exactly these slots and no ``__post_init__`` or
    ``__new__`` of its own, filling the slots directly makes an equal object at about a
    third of the cost; otherwise (``None``) the class is called as usual."""
    fields = tuple(f.name for f in dataclasses.fields(MessageInfo))
    slots = vars(MessageInfo).get("__slots__")
    if (
        fields != _INFO_FIELDS
        or slots is None
        or tuple(slots) != _INFO_FIELDS
        or hasattr(MessageInfo, "__post_init__")
        or MessageInfo.__new__ is not object.__new__
    ):
        return None
    return tuple(vars(MessageInfo)[name].__set__ for name in _INFO_FIELDS)


_INFO_SETTERS = _info_slot_setters()


def _new_info(
    uid: int, flags: frozenset[str], date: datetime.datetime, size: int, modseq: int
) -> MessageInfo:
    """``MessageInfo(uid=uid, flags=flags, ...)``, at the cost of
    :func:`_info_slot_setters`' way when it can."""
    if _INFO_SETTERS is None:
        return MessageInfo(uid=uid, flags=flags, internaldate=date, size=size, modseq=modseq)
    info: MessageInfo = object.__new__(MessageInfo)
    set_uid, set_flags, set_date, set_size, set_modseq = _INFO_SETTERS
    set_uid(info, uid)
    set_flags(info, flags)
    set_date(info, date)
    set_size(info, size)
    set_modseq(info, modseq)
    return info


def change_flags(
    core: _Core,
    uids: Collection[int],
    wanted: frozenset[str],
    mode: FlagMode,
    unchanged_since: int | None,
) -> tuple[list[MessageInfo], list[int]]:
    """The work of :meth:`MaildirFolder.set_flags` on the folder's core: rename each
    file in ``cur/`` to its new info, record the MODSEQs; returns the changed messages'
    new metadata and the UIDs refused by ``unchanged_since``."""
    result: list[MessageInfo] = []
    failed: list[int] = []
    renamed = False
    with core.uidlist.lock(), core.mutex:
        core.sync_locked()
        st = core.state
        keywords = keyword_letters_needed(wanted) if mode != "remove" else []
        if keywords:
            core.keywords.ensure(keywords)
        names = core.keywords.names
        letters = core.keywords.letters()
        st.start(core.uidlist.uidvalidity)
        modseq = 0
        try:
            for uid in sorted(set(uids)):
                name = core.files.get(uid)
                entry = st.entries.get(uid)
                if name is None or entry is None:
                    continue
                if unchanged_since is not None and entry.modseq > unchanged_since:
                    failed.append(uid)
                    continue
                for _ in range(_RENAME_RETRIES):
                    base, info = split_name(name)
                    old = parse_info(info, names) | entry.extra
                    new = apply_flags(old, wanted, mode)
                    if same_flags(new, old):
                        if info != entry.info:
                            # Changed by another program since the sync: record it.
                            if not modseq:
                                modseq = st.next_modseq()
                            entry = replace(entry, modseq=modseq, info=info)
                            st.record(uid, entry)
                            core.files[uid] = name
                            core.infos[uid] = core.make_info(uid, entry, names)
                            result.append(core.infos[uid])
                        break
                    named, extra = split_flags(new, letters)
                    new_info = build_info(info, named, letters, names)
                    new_name = file_name(base, new_info)
                    if new_name != name:
                        try:
                            os.rename(
                                os.path.join(core.cur, name),
                                os.path.join(core.cur, new_name),
                            )
                        except FileNotFoundError:
                            found = core.find(base)
                            if found is None:
                                break  # expunged by another program
                            name = found
                            continue
                        renamed = True
                    if not modseq:
                        modseq = st.next_modseq()
                    entry = replace(entry, modseq=modseq, info=new_info, extra=extra)
                    st.record(uid, entry)
                    core.files[uid] = new_name
                    core.infos[uid] = core.make_info(uid, entry, names)
                    result.append(core.infos[uid])
                    break
        finally:
            st.commit()
            core.forget()
        core.rekey()  # files and infos were kept in step with every rename
        if renamed and core.fsync:
            fsync_dir(core.cur)
    return result, failed
