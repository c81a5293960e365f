"""Reconciling an mbox folder's side index with the file, for
:class:`~mailagents.store.mbox.MboxFolder`: run under the folder's locks each time
they are taken, so that the index state is up to date before anything reads or
writes.

What it does, in order: finish or drop a rewritten index left by a killed rewrite,
load the index (rebuilding it from the file when it is missing or unusable), drop a
torn tail, undo an unfinished append (the pending record of
:mod:`mailagents.store._mbox_append`), and rescan the file when another program
changed it, keeping every UID it can.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Callable

from mailagents.store._locking import pid_alive
from mailagents.store._mbox_format import HEAD, FileRef, Scanned, head_crc, scan
from mailagents.store._mbox_index import (
    Entry,
    IndexCorrupt,
    IndexState,
    append_records,
    complete_new_index,
    load,
    stat_key,
    stat_record,
    write_full,
)
from mailagents.store._mbox_rewrite import TMP_MARK
from mailagents.store._model import MessageInfo

# The mbox store's one logger, named after its public module (users configure it so).
log = logging.getLogger("mailagents.store.mbox")

COMPACT_MIN = 1000
"""The index is rewritten compactly once it holds more records than this and than the
folder has messages."""

_CHUNK = 256 * 1024

NextUidvalidity = Callable[[int], int]
"""The store's allocator: a new UIDVALIDITY above the one given."""


def remove_stale_tmp(path: str) -> None:
    """Under the lock: remove what a killed rewrite or dotlock attempt left beside the
    mbox at ``path``."""
    base = os.path.basename(path)
    rewrite, dotlock = "." + base + TMP_MARK, "." + base + ".lock."
    with contextlib.suppress(OSError), os.scandir(os.path.dirname(path)) as it:
        for entry in it:
            stale = entry.name.startswith(rewrite)
            if entry.name.startswith(dotlock):
                pid = entry.name[len(dotlock) :].partition(".")[0]
                stale = pid.isdigit() and not pid_alive(int(pid))
            if stale:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def reconcile(
    state: IndexState,
    fd: int,
    path: str,
    index: str,
    *,
    fsync: bool,
    next_uidvalidity: NextUidvalidity,
) -> None:
    """Under the lock: bring ``state`` up to date with the index file ``index`` and the
    mbox open on ``fd`` (at ``path``, named in log messages)."""
    st = os.fstat(fd)
    if state.ref is None or not os.path.samestat(os.fstat(state.ref.fd), st):
        state.ref = FileRef(os.dup(fd))
    new = index + ".new"
    if os.path.exists(new):
        if complete_new_index(new, stat_key(st)):
            os.replace(new, index)
        else:
            os.unlink(new)
    try:
        found = load(state, index)
    except IndexCorrupt as exc:
        log.warning("mbox index %s unusable (%s): rebuilding it", index, exc)
        state.reset()
        found = False
    if not found:
        _fresh_index(state, fd, index, fsync, next_uidvalidity)
        return
    if state.tail:
        os.truncate(index, state.pos)
        state.tail = 0
    if state.pending is not None:
        _recover(state, fd, state.pending, path, index, fsync)
    st = os.fstat(fd)
    if state.mbox_stat != stat_key(st):
        _rescan(state, fd, st, path, index, fsync, next_uidvalidity)
    elif state.records > max(COMPACT_MIN, len(state.msgs)):
        write_full(state, index, fsync)


def make_entry(state: IndexState, s: Scanned, uid: int, modseq: int) -> Entry:
    """The index entry of a message found by a scan."""
    date = s.date or datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    info = MessageInfo(uid=uid, flags=s.flags, internaldate=date, size=s.size, modseq=modseq)
    return Entry(info, s.offset, s.length, s.from_len, s.crc, s.quoted, modseq, state.ref)


def _fresh_index(
    state: IndexState, fd: int, index: str, fsync: bool, next_uidvalidity: NextUidvalidity
) -> None:
    st = os.fstat(fd)
    state.reset()
    state.uidvalidity = next_uidvalidity(0)
    for s in scan(fd, 0, st.st_size):
        uid = state.uidnext
        state.uidnext += 1
        state.msgs[uid] = make_entry(state, s, uid, 1)
    state.mbox_stat = stat_key(st)
    write_full(state, index, fsync)


def _foreign_after(fd: int, start: int, end: int) -> bool:
    """Whether another message's separator follows ``start`` (someone appended after a
    partial append of ours)."""
    pos = start + 1
    tail = b""
    while pos < end:
        block = os.pread(fd, min(_CHUNK, end - pos), pos)
        if not block:
            break
        if (tail + block).find(b"\n\nFrom ") >= 0:
            return True
        tail = block[-6:]
        pos += len(block)
    return False


def _recover(state: IndexState, fd: int, old: int, path: str, index: str, fsync: bool) -> None:
    """An append recorded as pending at length ``old`` never finished: truncate it away,
    unless another program appended after it (then the rescan sorts the file out)."""
    size = os.fstat(fd).st_size
    if size > old and _foreign_after(fd, old, size):
        log.warning("%s: another program appended after an unfinished append", path)
    else:
        if size > old:
            log.warning("%s: removing an unfinished append (%d bytes)", path, size - old)
            os.ftruncate(fd, old)
            if fsync:
                os.fsync(fd)
        for uid in [u for u, e in state.msgs.items() if e.offset >= old]:
            del state.msgs[uid]  # recorded, but the append never returned
    append_records(state, index, ["C\n", stat_record(stat_key(os.fstat(fd)))], fsync)


def _from_line_ok(fd: int, e: Entry, size: int) -> bool:
    """Whether the message the index has at ``e`` still starts there (same ``From``
    line and head)."""
    if e.offset + e.from_len > size:
        return False
    if e.offset and os.pread(fd, 1, e.offset - 1) != b"\n":
        return False
    return head_crc(os.pread(fd, min(e.length, HEAD), e.offset)) == e.crc


def _match(
    fd: int, state: IndexState, st: os.stat_result
) -> tuple[list[Entry], list[tuple[Scanned, Entry | None]]]:
    """Scan the file: the entries kept without a look (when the file only grew and every
    known message is still in place, all but the last) and each scanned message with
    the index entry it is (same offset, length or size, and head), if any."""
    old_stat = state.mbox_stat
    entries = list(state.msgs.values())
    prefix: list[Entry] = []
    candidates = entries
    start = 0
    grew = (
        old_stat is not None
        and (old_stat[0], old_stat[1]) == (st.st_dev, st.st_ino)
        and st.st_size >= old_stat[2]
    )
    if grew and entries and all(_from_line_ok(fd, e, st.st_size) for e in entries):
        prefix, candidates, start = entries[:-1], entries[-1:], entries[-1].offset
    by_offset = {e.offset: e for e in candidates}
    matched: list[tuple[Scanned, Entry | None]] = []
    for s in scan(fd, start, st.st_size):
        e = by_offset.get(s.offset)
        if (
            e is not None
            and (e.length == s.length or e.info.size == s.size)
            and (e.crc == s.crc or _from_line_ok(fd, e, st.st_size))
        ):
            matched.append((s, e))
        else:
            matched.append((s, None))
    return prefix, matched


def _ascending(prefix: list[Entry], matched: list[tuple[Scanned, Entry | None]]) -> bool:
    """Whether the kept UIDs still ascend through the file, with no new message before
    a kept one (else the UIDs cannot be kept: RFC 9051 §2.3.1.1)."""
    last = prefix[-1].info.uid if prefix else 0
    seen_new = False
    for _, e in matched:
        if e is None:
            seen_new = True
        elif seen_new or e.info.uid <= last:
            return False
        else:
            last = e.info.uid
    return True


def _renumbered(state: IndexState, s: Scanned, e: Entry, uid: int, modseq: int) -> Entry:
    """A known message under a new UID, keeping what the index knew of it."""
    info = MessageInfo(
        uid=uid,
        flags=e.info.flags,
        internaldate=e.info.internaldate,
        size=e.info.size,
        modseq=modseq,
    )
    return Entry(info, s.offset, s.length, s.from_len, s.crc, s.quoted, modseq, state.ref)


def _rescan(
    state: IndexState,
    fd: int,
    st: os.stat_result,
    path: str,
    index: str,
    fsync: bool,
    next_uidvalidity: NextUidvalidity,
) -> None:
    """The mbox was changed by another program: keep the UIDs of messages found where
    the index has them (same offset, ``From`` line and length or size), give new
    UIDs to the rest, and a new UIDVALIDITY if the kept UIDs would not ascend."""
    prefix, matched = _match(fd, state, st)
    ascending = _ascending(prefix, matched)
    modseq = state.highestmodseq + 1
    msgs: dict[int, Entry] = {e.info.uid: e for e in prefix}
    if not ascending:
        log.warning("%s: messages reordered by another program: new UIDVALIDITY", path)
        state.uidvalidity = next_uidvalidity(state.uidvalidity)
        state.uidnext = 1
        state.new_life()
        msgs = {}
    for s, e in matched:
        if e is not None and ascending:
            msgs[e.info.uid] = Entry(
                e.info, s.offset, e.length, s.from_len, e.crc, s.quoted, e.cmodseq, state.ref
            )
            continue
        uid = state.uidnext
        state.uidnext += 1
        if e is None:
            msgs[uid] = make_entry(state, s, uid, modseq)
        else:
            msgs[uid] = _renumbered(state, s, e, uid, modseq)
    if ascending:
        for uid in state.msgs:
            if uid not in msgs:
                state.log_expunge(uid, modseq)
    if not ascending or set(msgs) != set(state.msgs):
        state.highestmodseq = modseq
    state.msgs = msgs
    state.mbox_stat = stat_key(st)
    state.pending = None
    write_full(state, index, fsync)
