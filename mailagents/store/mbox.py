"""mbox folders: one file per folder, shared with mutt, s-nail, Dovecot and Python's
``mailbox`` module.

Layout under the store's root (file names are the folder names in UTF-8)::

    INBOX                          the inbox (or the spool given as ``inbox=``)
    Archive                        folder "Archive"
    Archive.sbd/2026               folder "Archive/2026" (Thunderbird's layout, so a
                                   folder can have both messages and children)
    .Archive.mailagents-index      the side index of "Archive" (UIDs, flags, MODSEQs)
    Archive.lock                   the dotlock while someone writes "Archive"
    .mailagents-subscriptions      subscribed names, one a line
    .mailagents-special-use        ``<attribute> <folder>`` lines (RFC 6154)
    .mailagents-uidvalidity        the last UIDVALIDITY handed out in this store

Folder levels cannot start with ``.`` (those are our side files), nor end in ``.sbd``
or ``.lock``. The index of a spool inbox lives in the root (``.INBOX.mailagents-index``).

Format: mboxo, mboxrd and mboxcl2 are read; mboxrd is written: a ``From`` line
(the envelope sender from ``Return-Path:`` or ``MAILER-DAEMON``, and the INTERNALDATE in
UTC), lines matching ``^>*From`` get one more ``>``, and an empty line ends the
message. ``Content-Length:`` (mboxcl2) is honoured when it points exactly at the next
separator or the end of the file. Flags are kept in the side index at once
(durably, without rewriting the mbox) and written into ``Status:``/``X-Status:``/
``X-Keywords:`` headers, as mutt and Dovecot read them, whenever the file is rewritten:
on :meth:`MboxFolder.expunge`, or by :meth:`MboxFolder.sync`. Like Dovecot, those headers
are hidden from the message bytes handed out and stripped from appended messages, so a
message never changes under its UID. For messages that the index does not know (written
by another program), the flags are read from those headers.

Appends are atomic: the old length is recorded in the index (fsynced) before the mbox
grows; whoever finds that record later truncates the file back to it, so a writer killed
mid-append leaves nothing. Expunge rewrites the file into a temporary file in the same
directory and renames it over the mbox.

Locks, in this order: an in-process lock per path, an ``fcntl`` write lock on the mbox
(an open-file-description lock where the system has them: it conflicts with the
``lockf`` locks of mutt, procmail and liblockfile users, and is not lost when another
descriptor on the file is closed), then the dotlock ``NAME.lock``, which is broken when
the process it names is gone, or when it names none and is older than five minutes.
After taking them, the open file is compared with the path and reopened if it was
replaced. The side index is written only under these locks.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import io
import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from mailagents.store._fileio import fsync_dir
from mailagents.store._groupcommit import GroupCommit
from mailagents.store._locking import FileLock, pid_alive
from mailagents.store._mbox_format import (
    FLAG_HEADERS,
    HEAD,
    LOOKAHEAD,
    FileRef,
    InputTransformer,
    MessageStream,
    PreadLines,
    Scanned,
    flag_header_lines,
    flags_from_headers,
    head_crc,
    header_name,
    make_from_line,
    scan,
)
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
from mailagents.store._mbox_lock import MboxLock, fcntl_try_lock, fcntl_unlock
from mailagents.store._model import (
    DELETED,
    SEEN,
    SPECIAL_USE,
    AppendResult,
    AppendWriter,
    Changes,
    FlagMode,
    Folder,
    FolderExistsError,
    FolderInfo,
    FolderNotFoundError,
    FolderStatus,
    InvalidFolderNameError,
    MessageInfo,
    MessageNotFoundError,
    Store,
    StoreError,
    check_keyword,
)

__all__ = ["MboxFolder", "MboxStore"]

log = logging.getLogger(__name__)

INDEX_SUFFIX = ".mailagents-index"
_TMP_MARK = ".mailagents-tmp-"
_CHILDREN = ".sbd"
_SUBSCRIPTIONS = ".mailagents-subscriptions"
_SPECIAL_USE = ".mailagents-special-use"
_UIDVALIDITY = ".mailagents-uidvalidity"
_META_LOCK = ".mailagents-meta.lock"
_COMPACT_MIN = 1000
_COPY_BATCH = 64
_CHUNK = 256 * 1024


def _pwrite_all(fd: int, data: bytes, pos: int) -> int:
    view = memoryview(data)
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], pos + done)
    return done


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


def _rewrite_message(fd: int, e: Entry, flags: frozenset[str]) -> Iterator[bytes]:
    """The stored bytes of one message for a rewritten mbox: verbatim when its flag
    headers already say ``flags``, else with those headers regenerated. Always ends with
    the empty line before the next separator."""
    start = e.offset + e.from_len
    end = e.offset + e.length
    # First pass: the header section (bounded), to read the flag headers there.
    lines = PreadLines(fd, start, end)
    hidden: list[bytes] = []
    header_bytes = 0
    terminated = False
    bol = True
    skip_cont = False
    while header_bytes < 256 * 1024:
        piece = lines.readline(LOOKAHEAD + 1)
        if not piece:
            break
        header_bytes += len(piece)
        if bol:
            if piece == b"\n":
                terminated = True
                break
            name = header_name(piece)
            if name in FLAG_HEADERS or (skip_cont and piece[:1] in (b" ", b"\t")):
                hidden.append(piece)
                skip_cont = True
            else:
                skip_cont = False
        bol = piece.endswith(b"\n")
    current, old = flags_from_headers(hidden)
    regenerate = (current != flags) and (terminated or header_bytes < 256 * 1024)
    last = b""
    if e.from_len:
        reader = PreadLines(fd, e.offset, end)
        yield reader.read(e.from_len)
    else:
        yield make_from_line(None, e.info.internaldate)
    lines = PreadLines(fd, start, end)
    if regenerate:
        bol = True
        skip_cont = False
        while True:
            piece = lines.readline(LOOKAHEAD + 1)
            if not piece or (bol and piece == b"\n"):
                if last and not last.endswith(b"\n"):
                    yield b"\n"
                yield b"".join(flag_header_lines(flags, old))
                last = b"\n"
                if piece:
                    yield piece
                    last = b"\n\n"
                break
            if bol:
                name = header_name(piece)
                if name in FLAG_HEADERS or (skip_cont and piece[:1] in (b" ", b"\t")):
                    skip_cont = True
                    bol = piece.endswith(b"\n")
                    continue
                skip_cont = False
            bol = piece.endswith(b"\n")
            yield piece
            last = piece[-2:] if len(piece) >= 2 else last[-1:] + piece
    while True:
        block = lines.read(_CHUNK)
        if not block:
            break
        yield block
        last = block[-2:] if len(block) >= 2 else last[-1:] + block
    if not last.endswith(b"\n"):
        yield b"\n\n"
    elif not last.endswith(b"\n\n"):
        yield b"\n"


@dataclass
class _Spooled:
    """A message transformed and waiting in a temporary file for its commit."""

    spool: BinaryIO
    size: int
    flags: frozenset[str]
    date: datetime.datetime
    sender: bytes | None


class _MboxAppendWriter(AppendWriter):
    """Spools the transformed message to an anonymous temporary file; the commit copies
    it into the mbox under the locks (see the module docs)."""

    def __init__(
        self,
        folder: MboxFolder,
        flags: frozenset[str],
        date: datetime.datetime,
        assign_uid: bool,
    ) -> None:
        self._folder = folder
        self._flags = flags
        self._date = date
        self._assign_uid = assign_uid
        self._tx = InputTransformer()
        self._spool: BinaryIO | None = None
        self._done = False

    def write(self, chunk: bytes) -> None:
        """Transform and spool the next piece."""
        if self._done:
            raise StoreError("the append is over")
        data = self._tx.feed(bytes(chunk))
        if data:
            self._spool_file().write(data)

    def _spool_file(self) -> BinaryIO:
        if self._spool is None:
            self._spool = tempfile.TemporaryFile(dir=self._folder._store.root)  # noqa: SIM115
        return self._spool

    def commit(self) -> AppendResult:
        """Append to the mbox; returns after the mbox and the index are fsynced."""
        if self.result is not None:
            return self.result
        if self._done:
            raise StoreError("the append was aborted")
        try:
            spool = self._spool_file()
            spool.write(self._tx.finish())
            spool.flush()
            item = _Spooled(spool, self._tx.size, self._flags, self._date, self._tx.return_path)
            uid = self._folder._commit_grouped(item)
        except BaseException:
            self.abort()
            raise
        folder = self._folder
        self.result = AppendResult(
            uidvalidity=folder._state.uidvalidity,
            uid=uid if self._assign_uid else None,
            size=self._tx.size,
        )
        self._close()
        return self.result

    def _close(self) -> None:
        self._done = True
        spool, self._spool = self._spool, None
        if spool is not None:
            spool.close()

    def abort(self) -> None:
        """Drop the spooled message; the mbox was never touched."""
        if self.result is None:
            self._close()


class MboxFolder(Folder):
    """One mbox file (see the module docs). Handles are cheap; each keeps a snapshot
    that :meth:`refresh` brings up to date, and an open descriptor on the version of the
    file its snapshot came from, so a message stays readable until the handle learns
    that it was expunged."""

    def __init__(
        self,
        store: MboxStore,
        name: str,
        path: str,
        index_path: str,
        *,
        is_inbox: bool,
    ) -> None:
        self.name = name
        self._store = store
        self._path = path
        self._index = index_path
        self._is_inbox = is_inbox
        self._mutex = threading.RLock()
        # Group commit: appends committed while another is being written wait and go
        # together in the next group (one lock, three fsyncs for all).
        self._group: GroupCommit[_Spooled, int] = GroupCommit()
        self._state = IndexState()
        self._snap: dict[int, Entry] = {}
        self._snap_meta = (0, 1, 1)
        self._closed = False
        self._lock: MboxLock | None = None
        with self._locked():
            self._remove_stale_tmp()
        self._take_snapshot()

    # --- plumbing ----------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The mbox file."""
        return self._path

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"folder {self.name!r} is closed")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        self._check_open()
        with self._mutex:
            lock = MboxLock(self._path, timeout=self._store.lock_timeout, create=self._is_inbox)
            try:
                fd = lock.acquire()
            except FileNotFoundError:
                raise FolderNotFoundError(self.name) from None
            self._lock = lock
            try:
                self._sync(fd)
                yield fd
            finally:
                self._lock = None
                lock.release()

    def _fsync(self, fd: int) -> None:
        if self._store.fsync:
            os.fsync(fd)

    def _fsync_dirs(self) -> None:
        if self._store.fsync:
            fsync_dir(os.path.dirname(self._path))
            if os.path.dirname(self._index) != os.path.dirname(self._path):
                fsync_dir(os.path.dirname(self._index))

    def _remove_stale_tmp(self) -> None:
        """Under the lock: remove what a killed rewrite or dotlock attempt left."""
        base = os.path.basename(self._path)
        rewrite, dotlock = "." + base + _TMP_MARK, "." + base + ".lock."
        with contextlib.suppress(OSError), os.scandir(os.path.dirname(self._path)) as it:
            for entry in it:
                stale = entry.name.startswith(rewrite)
                if entry.name.startswith(dotlock):
                    pid = entry.name[len(dotlock) :].partition(".")[0]
                    stale = pid.isdigit() and not pid_alive(int(pid))
                if stale:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    def _sync(self, fd: int) -> None:
        """Under the lock: bring the index state up to date with the index file and the
        mbox (recover a pending append, rescan after changes by other programs)."""
        state = self._state
        st = os.fstat(fd)
        if state.ref is None or not os.path.samestat(os.fstat(state.ref.fd), st):
            state.ref = FileRef(os.dup(fd))
        new = self._index + ".new"
        if os.path.exists(new):
            if complete_new_index(new, stat_key(st)):
                os.replace(new, self._index)
            else:
                os.unlink(new)
        try:
            found = load(state, self._index)
        except IndexCorrupt as exc:
            log.warning("mbox index %s unusable (%s): rebuilding it", self._index, exc)
            state.reset()
            found = False
        if not found:
            self._fresh_index(fd)
            return
        if state.tail:
            os.truncate(self._index, state.pos)
            state.tail = 0
        if state.pending is not None:
            self._recover(fd, state.pending)
        st = os.fstat(fd)
        if state.mbox_stat != stat_key(st):
            self._rescan(fd, st)
        elif state.records > max(_COMPACT_MIN, len(state.msgs)):
            write_full(state, self._index, self._store.fsync)

    def _entry(self, s: Scanned, uid: int, modseq: int) -> Entry:
        date = s.date or datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        info = MessageInfo(uid=uid, flags=s.flags, internaldate=date, size=s.size, modseq=modseq)
        return Entry(info, s.offset, s.length, s.from_len, s.crc, s.quoted, modseq, self._state.ref)

    def _fresh_index(self, fd: int) -> None:
        state = self._state
        st = os.fstat(fd)
        state.reset()
        state.uidvalidity = self._store._next_uidvalidity()
        for s in scan(fd, 0, st.st_size):
            uid = state.uidnext
            state.uidnext += 1
            state.msgs[uid] = self._entry(s, uid, 1)
        state.mbox_stat = stat_key(st)
        write_full(state, self._index, self._store.fsync)

    def _recover(self, fd: int, old: int) -> None:
        size = os.fstat(fd).st_size
        if size > old and _foreign_after(fd, old, size):
            log.warning("%s: another program appended after an unfinished append", self._path)
            records = ["C\n"]
        else:
            if size > old:
                log.warning("%s: removing an unfinished append (%d bytes)", self._path, size - old)
                os.ftruncate(fd, old)
                self._fsync(fd)
            state = self._state
            for uid in [u for u, e in state.msgs.items() if e.offset >= old]:
                del state.msgs[uid]  # recorded, but the append never returned
            records = ["C\n"]
        records.append(stat_record(stat_key(os.fstat(fd))))
        append_records(self._state, self._index, records, self._store.fsync)

    def _from_line_ok(self, fd: int, e: Entry, size: int) -> bool:
        if e.offset + e.from_len > size:
            return False
        if e.offset and os.pread(fd, 1, e.offset - 1) != b"\n":
            return False
        return head_crc(os.pread(fd, min(e.length, HEAD), e.offset)) == e.crc

    def _rescan(self, fd: int, st: os.stat_result) -> None:
        """The mbox was changed by another program: keep the UIDs of messages found where
        the index has them (same offset, ``From`` line and length or size), give new
        UIDs to the rest, and a new UIDVALIDITY if the kept UIDs would not ascend."""
        state = self._state
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
        if grew and entries and all(self._from_line_ok(fd, e, st.st_size) for e in entries):
            prefix, candidates, start = entries[:-1], entries[-1:], entries[-1].offset
        scanned = scan(fd, start, st.st_size)
        by_offset = {e.offset: e for e in candidates}
        matched: list[tuple[Scanned, Entry | None]] = []
        for s in scanned:
            e = by_offset.get(s.offset)
            if (
                e is not None
                and (e.length == s.length or e.info.size == s.size)
                and (e.crc == s.crc or self._from_line_ok(fd, e, st.st_size))
            ):
                matched.append((s, e))
            else:
                matched.append((s, None))
        ascending = True
        last = prefix[-1].info.uid if prefix else 0
        seen_new = False
        for _, e in matched:
            if e is None:
                seen_new = True
            elif seen_new or e.info.uid <= last:
                ascending = False
            else:
                last = e.info.uid
        modseq = state.highestmodseq + 1
        msgs: dict[int, Entry] = {e.info.uid: e for e in prefix}
        if not ascending:
            log.warning("%s: messages reordered by another program: new UIDVALIDITY", self._path)
            state.uidvalidity = self._store._next_uidvalidity(state.uidvalidity)
            state.uidnext = 1
            state.expunged.clear()
            msgs = {}
        for s, e in matched:
            if e is not None and ascending:
                msgs[e.info.uid] = Entry(
                    e.info, s.offset, e.length, s.from_len, e.crc, s.quoted, e.cmodseq, state.ref
                )
                continue
            uid = state.uidnext
            state.uidnext += 1
            new = self._entry(s, uid, modseq)
            if e is not None:  # renumbered: keep what the index knew
                new = Entry(
                    MessageInfo(
                        uid=uid,
                        flags=e.info.flags,
                        internaldate=e.info.internaldate,
                        size=e.info.size,
                        modseq=modseq,
                    ),
                    s.offset,
                    s.length,
                    s.from_len,
                    s.crc,
                    s.quoted,
                    modseq,
                    state.ref,
                )
            msgs[uid] = new
        if ascending:
            for uid in state.msgs:
                if uid not in msgs:
                    state.expunged.append((uid, modseq))
        if not ascending or set(msgs) != set(state.msgs):
            state.highestmodseq = modseq
        state.msgs = msgs
        state.mbox_stat = stat_key(st)
        state.pending = None
        write_full(state, self._index, self._store.fsync)

    def _take_snapshot(self) -> Changes:
        with self._mutex:
            state = self._state
            old = self._snap
            old_validity = self._snap_meta[0]
            added: list[MessageInfo] = []
            changed: list[MessageInfo] = []
            expunged: list[int] = []
            if old_validity and old_validity != state.uidvalidity:
                expunged = list(old)
                added = [e.info for e in state.msgs.values()]
            elif old_validity:
                msgs = state.msgs
                for uid, e in msgs.items():
                    before = old.get(uid)
                    if before is None:
                        added.append(e.info)
                    elif before is not e and before.info != e.info:
                        changed.append(e.info)
                expunged = [uid for uid in old if uid not in msgs]
            self._snap = dict(state.msgs)
            self._snap_meta = (state.uidvalidity, state.uidnext, state.highestmodseq)
            return Changes(
                uidvalidity=state.uidvalidity,
                highestmodseq=state.highestmodseq,
                added=tuple(added),
                changed=tuple(changed),
                expunged=tuple(expunged),
            )

    def _lookup(self, uid: int) -> Entry:
        with self._mutex:
            self._check_open()
            e = self._snap.get(uid) or self._state.msgs.get(uid)
        if e is None or e.ref is None:
            raise MessageNotFoundError(uid)
        return e

    # --- reading -------------------------------------------------------------------------

    def status(self) -> FolderStatus:
        """Counts, UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ of the snapshot."""
        with self._mutex:
            self._check_open()
            uidvalidity, uidnext, highestmodseq = self._snap_meta
            return FolderStatus(
                messages=len(self._snap),
                uidvalidity=uidvalidity,
                uidnext=max(uidnext, self._state.uidnext),
                highestmodseq=highestmodseq,
                unseen=sum(1 for e in self._snap.values() if SEEN not in e.info.flags),
            )

    def messages(self) -> list[MessageInfo]:
        """The snapshot's messages by ascending UID (from the index; no body is read)."""
        with self._mutex:
            self._check_open()
            return [e.info for e in self._snap.values()]

    def info(self, uid: int) -> MessageInfo:
        """One message's metadata (this handle's own appends are known before a
        refresh)."""
        return self._lookup(uid).info

    def open_message(self, uid: int) -> BinaryIO:
        """Stream the message from its place in the file: LF made CRLF, ``>From``
        unquoted and the flag headers left out on the fly."""
        e = self._lookup(uid)
        assert e.ref is not None
        raw = MessageStream(
            e.ref, e.offset + e.from_len, e.offset + e.length, e.info.size, e.quoted
        )
        return io.BufferedReader(raw, buffer_size=65536)

    # --- writing -------------------------------------------------------------------------

    def append(
        self,
        *,
        flags: Collection[str] = (),
        internaldate: datetime.datetime | None = None,
        assign_uid: bool = True,
    ) -> AppendWriter:
        """Start appending (see :class:`~mailagents.store.AppendWriter`). The message is
        spooled to an anonymous temporary file in the store's root as it arrives, and
        copied into the mbox under the locks by ``commit()``. A UID is always assigned;
        with ``assign_uid=False`` it is just not reported."""
        self._check_open()
        wanted = frozenset(check_keyword(f) for f in flags)
        date = internaldate or datetime.datetime.now(datetime.UTC)
        if date.tzinfo is None:
            date = date.replace(tzinfo=datetime.UTC)
        return _MboxAppendWriter(self, wanted, date, assign_uid)

    def _commit_grouped(self, item: _Spooled) -> int:
        """Commit ``item`` together with the commits of other threads that arrive while
        a group is being written: the first caller leads, writes every waiting item
        with one :meth:`_commit` (one lock hold, three fsyncs) and hands the lead to a
        waiting caller, so that no thread writes for the others for ever. Each caller
        gets its own UID, or the error of its group (nothing of which was kept)."""
        return self._group.submit(item, self._commit)

    def _commit(self, items: list[_Spooled]) -> list[int]:
        """Append spooled messages: pending record, write, fsync, index records."""
        fsync = self._store.fsync
        with self._locked() as fd:
            state = self._state
            size = os.fstat(fd).st_size
            prefix = b""
            if size:
                tail = os.pread(fd, 2, max(size - 2, 0))
                if not tail.endswith(b"\n"):
                    prefix = b"\n\n"
                elif not (tail == b"\n\n" or size == 1):
                    prefix = b"\n"
            append_records(state, self._index, [f"P {size}\n"], fsync)
            try:
                pos = size + (_pwrite_all(fd, prefix, size) if prefix else 0)
                lines = []
                modseq = state.highestmodseq + 1
                uid = state.uidnext
                uids = []
                for k, item in enumerate(items):
                    from_line = make_from_line(item.sender, item.date)
                    offset = pos
                    pos += _pwrite_all(fd, from_line, pos)
                    item.spool.seek(0)
                    head = from_line + item.spool.read(HEAD)
                    item.spool.seek(0)
                    while chunk := item.spool.read(_CHUNK):
                        pos += _pwrite_all(fd, chunk, pos)
                    info = MessageInfo(
                        uid=uid + k,
                        flags=item.flags,
                        internaldate=item.date,
                        size=item.size,
                        modseq=modseq + k,
                    )
                    entry = Entry(
                        info,
                        offset,
                        pos - offset,
                        len(from_line),
                        head_crc(head[: pos - offset]),
                        True,
                        modseq + k,
                        state.ref,
                    )
                    lines.append(entry.record("A"))
                    uids.append(uid + k)
                self._fsync(fd)
                lines.append(stat_record(stat_key(os.fstat(fd))))
                lines.append("C\n")
                append_records(state, self._index, lines, fsync)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                    self._fsync(fd)
                    for u in [u for u, e in state.msgs.items() if e.offset >= size]:
                        del state.msgs[u]
                    append_records(
                        state,
                        self._index,
                        ["C\n", stat_record(stat_key(os.fstat(fd)))],
                        fsync,
                    )
                raise
            uidvalidity, uidnext, highest = self._snap_meta
            self._snap_meta = (uidvalidity, max(uidnext, state.uidnext), highest)
            return uids

    def set_flags(
        self,
        uids: Collection[int],
        flags: Collection[str],
        mode: FlagMode = "set",
        *,
        unchanged_since: int | None = None,
    ) -> tuple[list[MessageInfo], list[int]]:
        """Change flags: one fsynced index record per message; the mbox itself is not
        rewritten (the headers follow at the next rewrite, see the module docs)."""
        wanted = frozenset(check_keyword(f) for f in flags)
        done: list[int] = []
        refused: list[int] = []
        with self._locked():
            state = self._state
            modseq = state.highestmodseq + 1
            lines = []
            for uid in sorted(set(uids)):
                e = state.msgs.get(uid)
                if e is None:
                    continue
                if unchanged_since is not None and e.info.modseq > unchanged_since:
                    refused.append(uid)
                    continue
                old = e.info.flags
                if mode == "set":
                    new = wanted
                elif mode == "add":
                    new = old | wanted
                elif mode == "remove":
                    new = old - wanted
                else:
                    raise ValueError(f"unknown mode {mode!r}")
                done.append(uid)
                if new != old:
                    lines.append(f"F {uid} {modseq}{''.join(' ' + f for f in sorted(new))}\n")
            if lines:
                append_records(state, self._index, lines, self._store.fsync)
            for uid in done:
                if uid in self._snap:
                    self._snap[uid] = state.msgs[uid]
            return [state.msgs[uid].info for uid in done], refused

    def copy(self, uids: Collection[int], target: Folder) -> dict[int, int]:
        """Copy messages (flags and INTERNALDATE kept); returns source → new UID."""
        with self._mutex:
            self._check_open()
            entries = []
            for uid in sorted(set(uids)):
                e = self._snap.get(uid) or self._state.msgs.get(uid)
                if e is not None:
                    entries.append(e)
        mapping: dict[int, int] = {}
        if isinstance(target, MboxFolder):
            for i in range(0, len(entries), _COPY_BATCH):
                batch = entries[i : i + _COPY_BATCH]
                items: list[_Spooled] = []
                try:
                    for e in batch:
                        items.append(self._spool_copy(e))
                    new = target._commit(items)
                finally:
                    for item in items:
                        item.spool.close()
                mapping.update((e.info.uid, uid) for e, uid in zip(batch, new, strict=True))
            return mapping
        for e in entries:
            writer = target.append(flags=e.info.flags, internaldate=e.info.internaldate)
            try:
                with self.open_message(e.info.uid) as stream:
                    while chunk := stream.read(_CHUNK):
                        writer.write(chunk)
                result = writer.commit()
            except BaseException:
                writer.abort()
                raise
            if result.uid is not None:
                mapping[e.info.uid] = result.uid
        return mapping

    def _spool_copy(self, e: Entry) -> _Spooled:
        tx = InputTransformer()
        spool: BinaryIO = tempfile.TemporaryFile(dir=self._store.root)  # noqa: SIM115
        try:
            with self.open_message(e.info.uid) as stream:
                while chunk := stream.read(_CHUNK):
                    spool.write(tx.feed(chunk))
            spool.write(tx.finish())
            spool.flush()
        except BaseException:
            spool.close()
            raise
        return _Spooled(spool, tx.size, e.info.flags, e.info.internaldate, tx.return_path)

    def move(self, uids: Collection[int], target: Folder) -> dict[int, int]:
        """Copy, then expunge the originals (whatever their flags)."""
        mapping = self.copy(uids, target)
        if mapping:
            with self._locked() as fd:
                gone = [u for u in mapping if u in self._state.msgs]
                if gone:
                    self._rewrite(fd, set(gone))
                for uid in mapping:
                    self._snap.pop(uid, None)
        return mapping

    def expunge(self, uids: Collection[int] | None = None) -> list[int]:
        """Remove the ``\\Deleted`` messages (of ``uids`` if given) by rewriting the mbox
        to a temporary file, fsyncing it and renaming it over the old one; the flags of
        the other messages are written into their headers on the way."""
        only = None if uids is None else set(uids)
        with self._locked() as fd:
            state = self._state
            gone = [
                uid
                for uid, e in state.msgs.items()
                if DELETED in e.info.flags and (only is None or uid in only)
            ]
            if gone:
                self._rewrite(fd, set(gone))
            for uid in gone:
                self._snap.pop(uid, None)
        return gone

    def sync(self) -> None:
        """Rewrite the mbox so that its ``Status:``/``X-Status:``/``X-Keywords:`` headers
        show the flags kept in the index (for mutt and other readers)."""
        with self._locked() as fd:
            self._rewrite(fd, set())

    def _rewrite(self, fd: int, drop: set[int]) -> None:
        state = self._state
        fsync = self._store.fsync
        st = os.fstat(fd)
        directory, base = os.path.split(self._path)
        tmp = os.path.join(directory, "." + base + _TMP_MARK + secrets.token_hex(6))
        out = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, st.st_mode & 0o7777)
        ref = FileRef(out)
        new = IndexState(
            uidvalidity=state.uidvalidity,
            uidnext=state.uidnext,
            highestmodseq=state.highestmodseq,
            expunged=state.expunged.copy(),
            ref=ref,
        )
        try:
            with contextlib.suppress(OSError):
                os.fchown(out, -1, st.st_gid)
            fcntl_try_lock(out)
            pos = 0
            buf: list[bytes] = []
            buffered = 0
            for n, (uid, e) in enumerate(state.msgs.items()):
                if uid in drop:
                    continue
                if n % 1000 == 999 and self._lock is not None:
                    self._lock.touch()
                offset = pos
                from_line = b""
                head = b""
                for piece in _rewrite_message(fd, e, e.info.flags):
                    if not from_line:
                        from_line = piece
                    if len(head) < HEAD:
                        head += piece[: HEAD - len(head)]
                    buf.append(piece)
                    buffered += len(piece)
                    pos += len(piece)
                    if buffered >= _CHUNK:
                        _pwrite_all(out, b"".join(buf), pos - buffered)
                        buf, buffered = [], 0
                new.msgs[uid] = Entry(
                    e.info,
                    offset,
                    pos - offset,
                    len(from_line),
                    head_crc(head[: pos - offset]),
                    e.quoted,
                    e.cmodseq,
                    ref,
                )
            if buf:
                _pwrite_all(out, b"".join(buf), pos - buffered)
            if fsync:
                os.fsync(out)
            if drop:
                new.highestmodseq += 1
                for uid in sorted(drop):
                    new.expunged.append((uid, new.highestmodseq))
            new.mbox_stat = stat_key(os.fstat(out))
            write_full(new, self._index, fsync, rename=False)
            os.rename(tmp, self._path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            with contextlib.suppress(OSError):
                os.unlink(self._index + ".new")
            raise
        os.replace(self._index + ".new", self._index)
        self._fsync_dirs()
        with contextlib.suppress(OSError):
            fcntl_unlock(out)
        self._state = new

    # --- changes -------------------------------------------------------------------------

    def refresh(self) -> Changes:
        """Re-read the index (and the mbox if another program changed it) and report
        what changed since this handle's last refresh."""
        with self._locked():
            return self._take_snapshot()

    def changes_since(self, modseq: int) -> Changes:
        """What the snapshot holds above ``modseq``: messages that appeared after it
        (``added``), messages changed after it (``changed``), and the UIDs expunged
        after it as far as the bounded expunge log remembers."""
        with self._mutex:
            self._check_open()
            uidvalidity, _, highest = self._snap_meta
            added = []
            changed = []
            for e in self._snap.values():
                if e.cmodseq > modseq:
                    added.append(e.info)
                elif e.info.modseq > modseq:
                    changed.append(e.info)
            expunged = [
                uid for uid, m in self._state.expunged if m > modseq and uid not in self._snap
            ]
            return Changes(
                uidvalidity=uidvalidity,
                highestmodseq=highest,
                added=tuple(added),
                changed=tuple(changed),
                expunged=tuple(sorted(set(expunged))),
            )

    def close(self) -> None:
        """Release the handle (streams still open keep their descriptor)."""
        with self._mutex:
            self._closed = True
            self._snap = {}
            self._state = IndexState()

    def _export_all(self, path: str, index_path: str) -> None:
        """Copy every message, with UIDs and flags, into a new mbox at ``path`` (which
        must not exist) and empty this one (renaming INBOX)."""
        fsync = self._store.fsync
        with self._locked() as fd:
            state = self._state
            size = os.fstat(fd).st_size
            directory, base = os.path.split(path)
            tmp = os.path.join(directory, "." + base + _TMP_MARK + secrets.token_hex(6))
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                pos = 0
                while pos < size:
                    block = os.pread(fd, min(_CHUNK, size - pos), pos)
                    if not block:
                        break
                    pos += _pwrite_all(out, block, pos)
                if fsync:
                    os.fsync(out)
                copy = IndexState(
                    uidvalidity=state.uidvalidity,
                    uidnext=state.uidnext,
                    highestmodseq=state.highestmodseq,
                    msgs=dict(state.msgs),
                    mbox_stat=stat_key(os.fstat(out)),
                )
                write_full(copy, index_path, fsync, rename=False)
                _publish_new(tmp, path)
                os.replace(index_path + ".new", index_path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                with contextlib.suppress(OSError):
                    os.unlink(index_path + ".new")
                raise
            finally:
                os.close(out)
            if fsync:
                fsync_dir(directory)
            os.ftruncate(fd, 0)
            self._fsync(fd)
            modseq = state.highestmodseq + 1
            lines = [f"X {uid} {modseq}\n" for uid in state.msgs]
            lines.append(stat_record(stat_key(os.fstat(fd))))
            append_records(state, self._index, lines, fsync)
            self._snap = {}


def _publish_new(tmp: str, path: str) -> None:
    """Give ``tmp`` the name ``path``, which must not exist: a hard link fails if it
    does, so a folder another process created meanwhile is never replaced. Where hard
    links are not possible, the check and the rename leave a small window."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FolderExistsError(path) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EMLINK, errno.EXDEV):
            raise
        if os.path.exists(path):
            raise FolderExistsError(path) from None
        os.rename(tmp, path)
    else:
        os.unlink(tmp)


class MboxStore(Store):
    """Folders as mbox files under ``root`` (see the module docs for the layout).

    ``inbox`` names the INBOX file when it is not ``root/INBOX`` (a spool such as
    ``/var/mail/user``). ``create`` makes a missing root; ``fsync=False`` skips the
    fsyncs (tests only); ``lock_timeout`` bounds the wait for the locks of one mbox."""

    separator = "/"

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        inbox: str | os.PathLike[str] | None = None,
        create: bool = True,
        max_workers: int = 16,
        fsync: bool = True,
        lock_timeout: float = 30.0,
    ) -> None:
        super().__init__(max_workers=max_workers)
        self.root = os.path.abspath(os.fspath(root))
        if create:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
        elif not os.path.isdir(self.root):
            raise FileNotFoundError(errno.ENOENT, "no mbox store here", self.root)
        self.inbox_path = (
            os.path.abspath(os.fspath(inbox))
            if inbox is not None
            else os.path.join(self.root, "INBOX")
        )
        self.fsync = fsync
        self.lock_timeout = lock_timeout
        self._meta_lock = os.path.join(self.root, _META_LOCK)

    # --- names ---------------------------------------------------------------------------

    def _levels(self, name: str) -> list[str]:
        if not isinstance(name, str) or not name:
            raise InvalidFolderNameError(f"invalid folder name {name!r}")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
            raise InvalidFolderNameError(f"control character in folder name {name!r}")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidFolderNameError(f"folder name not encodable: {name!r}") from None
        levels = name.split(self.separator)
        for level in levels:
            if (
                not level
                or level.startswith(".")
                or level.endswith((_CHILDREN, ".lock"))
                or len(level.encode("utf-8")) > 200
            ):
                raise InvalidFolderNameError(f"invalid folder name {name!r}")
        if levels[0].upper() == "INBOX":
            levels[0] = "INBOX"
        return levels

    def _file(self, levels: list[str]) -> str:
        if levels == ["INBOX"]:
            return self.inbox_path
        return os.path.join(self.root, *[lv + _CHILDREN for lv in levels[:-1]], levels[-1])

    def _children(self, levels: list[str]) -> str:
        return os.path.join(self.root, *[lv + _CHILDREN for lv in levels])

    def _index(self, levels: list[str]) -> str:
        if levels == ["INBOX"]:
            return os.path.join(self.root, ".INBOX" + INDEX_SUFFIX)
        directory, base = os.path.split(self._file(levels))
        return os.path.join(directory, "." + base + INDEX_SUFFIX)

    # --- meta files ----------------------------------------------------------------------

    def _read_meta(self, name: str) -> list[str]:
        try:
            with open(os.path.join(self.root, name), encoding="utf-8") as f:
                return [line.rstrip("\n") for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def _write_meta(self, name: str, lines: list[str]) -> None:
        path = os.path.join(self.root, name)
        tmp = path + ".new"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if self.fsync:
            fsync_dir(self.root)

    def _next_uidvalidity(self, above: int = 0) -> int:
        with FileLock(self._meta_lock, timeout=self.lock_timeout):
            lines = self._read_meta(_UIDVALIDITY)
            last = int(lines[0]) if lines and lines[0].isdigit() else 0
            value = max(int(time.time()), last + 1, above + 1)
            if value >= 2**32:
                value = 1 + (value % (2**32 - 1))
            self._write_meta(_UIDVALIDITY, [str(value)])
            return value

    def _special(self) -> dict[str, str]:
        out = {}
        for line in self._read_meta(_SPECIAL_USE):
            attr, _, name = line.partition(" ")
            if attr in SPECIAL_USE and name:
                out[name] = attr
        return out

    def _edit_special(self, change: dict[str, str | None]) -> None:
        with FileLock(self._meta_lock, timeout=self.lock_timeout):
            current = self._special()
            for name, attr in change.items():
                if attr is None:
                    current.pop(name, None)
                else:
                    current[name] = attr
            self._write_meta(_SPECIAL_USE, [f"{a} {n}" for n, a in sorted(current.items())])

    # --- folders -------------------------------------------------------------------------

    def folders(self) -> list[FolderInfo]:
        """INBOX, then every folder by name (a level that only has children is
        ``\\Noselect``)."""
        subscribed = set(self.subscriptions())
        special = self._special()
        found: dict[str, tuple[bool, bool]] = {}

        def walk(directory: str, prefix: list[str]) -> bool:
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                return False
            here: dict[str, list[bool]] = {}
            for entry in entries:
                n = entry.name
                if n.startswith("."):
                    continue
                if n.endswith(_CHILDREN) and entry.is_dir(follow_symlinks=False):
                    base = n[: -len(_CHILDREN)]
                    if base and walk(entry.path, [*prefix, base]):
                        here.setdefault(base, [False, False])[1] = True
                elif not n.endswith(".lock") and entry.is_file() and _looks_like_mbox(entry.path):
                    here.setdefault(n, [False, False])[0] = True
            any_found = False
            for base, (is_file, children) in here.items():
                levels = [*prefix, base]
                name = self.separator.join(levels)
                try:
                    if self._levels(name) != levels:
                        continue  # "inbox" and other spellings of INBOX on disk
                except InvalidFolderNameError:
                    continue
                if levels == ["INBOX"]:
                    found["INBOX"] = (True, children)
                    any_found = True
                    continue
                found[name] = (is_file, children)
                any_found = True
            return any_found

        walk(self.root, [])
        inbox_children = found.pop("INBOX", (True, False))[1]
        result = [
            FolderInfo(
                name="INBOX",
                attributes=frozenset({"\\HasChildren" if inbox_children else "\\HasNoChildren"}),
                subscribed="INBOX" in subscribed,
            )
        ]
        for name in sorted(found):
            selectable, children = found[name]
            attrs = {"\\HasChildren" if children else "\\HasNoChildren"}
            if not selectable:
                attrs.add("\\Noselect")
            elif name in special:
                attrs.add(special[name])
            result.append(
                FolderInfo(name=name, attributes=frozenset(attrs), subscribed=name in subscribed)
            )
        return result

    def folder(self, name: str) -> MboxFolder:
        """Open a folder (INBOX is created when missing)."""
        levels = self._levels(name)
        path = self._file(levels)
        is_inbox = levels == ["INBOX"]
        if not is_inbox and not os.path.isfile(path):
            raise FolderNotFoundError(name)
        return MboxFolder(
            self, self.separator.join(levels), path, self._index(levels), is_inbox=is_inbox
        )

    def _make_file(self, path: str) -> bool:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return False
        os.close(fd)
        directory, base = os.path.split(path)
        for suffix in ("", ".new"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, "." + base + INDEX_SUFFIX + suffix))
        if self.fsync:
            fsync_dir(directory)
        return True

    def _make_parents(self, levels: list[str]) -> None:
        for n in range(1, len(levels)):
            if levels[:n] != ["INBOX"]:
                self._make_file(self._file(levels[:n]))
        os.makedirs(os.path.dirname(self._file(levels)), mode=0o700, exist_ok=True)
        if self.fsync:
            fsync_dir(self.root)

    def create_folder(self, name: str, *, special_use: str | None = None) -> None:
        """Create an empty mbox (and missing parents, as folders of their own)."""
        levels = self._levels(name)
        if special_use is not None and special_use not in SPECIAL_USE:
            raise ValueError(f"not a special-use attribute: {special_use!r}")
        if levels == ["INBOX"]:
            raise FolderExistsError(name)
        self._make_parents(levels)
        if not self._make_file(self._file(levels)):
            raise FolderExistsError(name)
        if special_use is not None:
            self._edit_special({self.separator.join(levels): special_use})

    def _prune(self, levels: list[str]) -> None:
        while levels:
            try:
                os.rmdir(self._children(levels))
            except OSError:
                return
            levels = levels[:-1]

    def delete_folder(self, name: str) -> None:
        """Delete a folder's mbox and index; its children stay (it becomes
        ``\\Noselect``). INBOX cannot be deleted."""
        levels = self._levels(name)
        if levels == ["INBOX"]:
            raise StoreError("INBOX cannot be deleted")
        path = self._file(levels)
        if not os.path.isfile(path):
            if os.path.isdir(self._children(levels)):
                raise StoreError(f"{name!r} has children and holds no messages")
            raise FolderNotFoundError(name)
        lock = MboxLock(path, timeout=self.lock_timeout)
        try:
            lock.acquire()
        except FileNotFoundError:
            raise FolderNotFoundError(name) from None
        try:
            os.unlink(path)
            index = self._index(levels)
            for p in (index, index + ".new"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)
        finally:
            lock.release()
        if self.fsync:
            fsync_dir(os.path.dirname(path))
        self._prune(levels[:-1])
        full = self.separator.join(levels)
        if full in self._special():
            self._edit_special({full: None})

    def rename_folder(self, old: str, new: str) -> None:
        """Rename a folder with its children and index (UIDs kept). Renaming INBOX
        moves its messages (UIDs kept) to the new folder and leaves INBOX empty."""
        old_levels = self._levels(old)
        new_levels = self._levels(new)
        if new_levels == ["INBOX"]:
            raise FolderExistsError(new)
        if new_levels[: len(old_levels)] == old_levels:
            raise InvalidFolderNameError(f"cannot rename {old!r} into itself")
        new_path = self._file(new_levels)
        if old_levels == ["INBOX"]:
            if os.path.lexists(new_path):
                raise FolderExistsError(new)
            self._make_parents(new_levels)
            inbox = self.folder("INBOX")
            try:
                inbox._export_all(new_path, self._index(new_levels))
            finally:
                inbox.close()
            return
        old_path = self._file(old_levels)
        old_children, new_children = self._children(old_levels), self._children(new_levels)
        has_file = os.path.isfile(old_path)
        has_children = os.path.isdir(old_children)
        if not has_file and not has_children:
            raise FolderNotFoundError(old)
        if os.path.lexists(new_path) or (has_children and os.path.lexists(new_children)):
            raise FolderExistsError(new)
        self._make_parents(new_levels)
        if has_file:
            lock = MboxLock(old_path, timeout=self.lock_timeout)
            try:
                lock.acquire()
            except FileNotFoundError:
                raise FolderNotFoundError(old) from None
            try:
                os.rename(old_path, new_path)
                old_index, new_index = self._index(old_levels), self._index(new_levels)
                with contextlib.suppress(FileNotFoundError):
                    os.rename(old_index, new_index)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(old_index + ".new")
            finally:
                lock.release()
        if has_children:
            os.rename(old_children, new_children)
        if self.fsync:
            fsync_dir(os.path.dirname(old_path))
            fsync_dir(os.path.dirname(new_path))
        self._prune(old_levels[:-1])
        special = self._special()
        old_name, new_name = self.separator.join(old_levels), self.separator.join(new_levels)
        change: dict[str, str | None] = {}
        for name, attr in special.items():
            if name == old_name or name.startswith(old_name + self.separator):
                change[name] = None
                change[new_name + name[len(old_name) :]] = attr
        if change:
            self._edit_special(change)

    # --- subscriptions -------------------------------------------------------------------

    def subscribe(self, name: str) -> None:
        """Add to the subscriptions (the folder need not exist)."""
        canonical = self.separator.join(self._levels(name))
        with FileLock(self._meta_lock, timeout=self.lock_timeout):
            names = self._read_meta(_SUBSCRIPTIONS)
            if canonical not in names:
                self._write_meta(_SUBSCRIPTIONS, [*names, canonical])

    def unsubscribe(self, name: str) -> None:
        """Remove from the subscriptions."""
        canonical = self.separator.join(self._levels(name))
        with FileLock(self._meta_lock, timeout=self.lock_timeout):
            names = self._read_meta(_SUBSCRIPTIONS)
            if canonical in names:
                self._write_meta(_SUBSCRIPTIONS, [n for n in names if n != canonical])

    def subscriptions(self) -> list[str]:
        """Subscribed names, in the order they were subscribed."""
        return self._read_meta(_SUBSCRIPTIONS)


def _looks_like_mbox(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(5)
    except OSError:
        return True
    return head in (b"", b"From ")
