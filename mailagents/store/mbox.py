"""mbox folders: one file per folder, shared with mutt, s-nail, Dovecot and Python's
``mailbox`` module.

Layout under the store's root (file names are the folder names in UTF-8)::

    INBOX                          the inbox (or the spool given as ``inbox=``)
    Archive                        folder "Archive"
    Archive.sbd/2026               folder "Archive/2026" (Thunderbird's layout, so a
                                   folder can have both messages and children)
    .Archive.mailagents-index      the side index of "Archive" (UIDs, flags, MODSEQs)
    .Archive.mailagents-cache      its message cache (with ``.lock``), see
                                   :meth:`MboxFolder.message_cache`
    .Archive.mailagents-status     its STATUS numbers, kept by :meth:`MboxStore.status`
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
import os
import threading
import time
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from mailagents.store._cache import FolderCache
from mailagents.store._cache_slot import CacheSlot, move_cache_files, remove_cache_files
from mailagents.store._cache_status import StatusCache
from mailagents.store._fileio import fsync_dir
from mailagents.store._groupcommit import GroupCommit
from mailagents.store._hub import notify
from mailagents.store._locking import FileLock
from mailagents.store._mbox_append import (
    CHUNK,
    MboxAppendWriter,
    Spooled,
    append_spooled,
    spool_message,
)
from mailagents.store._mbox_format import MessageStream
from mailagents.store._mbox_index import Entry, IndexState, append_records, stat_key, stat_record
from mailagents.store._mbox_lock import MboxLock
from mailagents.store._mbox_reconcile import reconcile, remove_stale_tmp
from mailagents.store._mbox_rewrite import export, rewrite
from mailagents.store._mbox_status import peek_status, status_of
from mailagents.store._mbox_tree import (
    INDEX_SUFFIX,
    META_LOCK,
    children_dir,
    find_folders,
    folder_file,
    folder_levels,
    index_file,
    make_file,
    mbox_lists,
    read_lines,
    write_lines,
)
from mailagents.store._model import (
    DELETED,
    SPECIAL_USE,
    AppendWriter,
    Changes,
    CopyResult,
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
    apply_flags,
    check_keyword,
    same_flags,
)
from mailagents.store._ranged import check_range, skip, windowed

__all__ = ["MboxFolder", "MboxStore"]

_UIDVALIDITY = ".mailagents-uidvalidity"
CACHE_SUFFIX = ".mailagents-cache"
"""The suffix of a folder's message cache, ``.NAME.mailagents-cache`` beside its side
index."""
STATUS_SUFFIX = ".mailagents-status"
"""The suffix of a folder's kept STATUS numbers, ``.NAME.mailagents-status``."""


def side_file(index_path: str, suffix: str) -> str:
    """The side file of a folder named by ``suffix`` instead of its index's."""
    return index_path.removesuffix(INDEX_SUFFIX) + suffix


_COPY_BATCH = 64


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
        deliver_only: bool = False,
    ) -> None:
        self.name = name
        self._store = store
        self._path = path
        self._index = index_path
        self._is_inbox = is_inbox
        self._mutex = threading.RLock()
        # Group commit: appends committed while another is being written wait and go
        # together in the next group (one lock, three fsyncs for all).
        self._group: GroupCommit[Spooled, int] = GroupCommit()
        self._state = IndexState()
        self._snap: dict[int, Entry] = {}
        self._snap_meta = (0, 1, 1)
        self._closed = False
        self._lock: MboxLock | None = None
        self._cache = CacheSlot(side_file(index_path, CACHE_SUFFIX), enabled=not deliver_only)
        with self._locked():
            remove_stale_tmp(self._path)
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

    def _sync(self, fd: int) -> None:
        """Under the lock: bring the index state up to date (see
        :mod:`mailagents.store._mbox_reconcile`)."""
        store = self._store
        reconcile(
            self._state,
            fd,
            self._path,
            self._index,
            fsync=store.fsync,
            next_uidvalidity=store._next_uidvalidity,
        )

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
            return status_of(
                self._snap.values(),
                uidvalidity=uidvalidity,
                uidnext=max(uidnext, self._state.uidnext),
                highestmodseq=highestmodseq,
                first_recent=self._state.first_recent,
            )

    def claim_recent(self) -> list[int]:
        """Claim ``\\Recent`` for this session (see
        :meth:`mailagents.store.Folder.claim_recent`): the watermark is a ``V`` record
        in the side index, appended under the locks."""
        with self._locked():
            state = self._state
            mine = [uid for uid in self._snap if uid >= state.first_recent]
            if mine:
                state.first_recent = max(mine) + 1
                append_records(state, self._index, [state.v_record()], self._store.fsync)
            return sorted(mine)

    def message_cache(self) -> FolderCache | None:
        """The folder's message cache, ``.NAME.mailagents-cache`` beside the side index,
        opened on first use (see :meth:`mailagents.store.Folder.message_cache`); a new
        one when the UIDVALIDITY changed; ``None`` on a handle opened with
        ``deliver_only``."""
        with self._mutex:
            self._check_open()
            uidvalidity = self._snap_meta[0]
        return self._cache.get(uidvalidity)

    def messages(self) -> list[MessageInfo]:
        """The snapshot's messages by ascending UID (from the index; no body is read)."""
        with self._mutex:
            self._check_open()
            return [e.info for e in self._snap.values()]

    def info(self, uid: int) -> MessageInfo:
        """One message's metadata (this handle's own appends are known before a
        refresh)."""
        return self._lookup(uid).info

    def open_message(self, uid: int, start: int = 0, length: int | None = None) -> BinaryIO:
        """Stream the message from its place in the file: LF made CRLF, ``>From``
        unquoted and the flag headers left out on the fly. A window (``start``,
        ``length``) is read line by line up to its end, never further."""
        check_range(start, length)
        e = self._lookup(uid)
        assert e.ref is not None
        raw = MessageStream(
            e.ref, e.offset + e.from_len, e.offset + e.length, e.info.size, e.quoted
        )
        if start:
            skip(raw, start)
        return windowed(raw, length, 65536)

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
        return self._store.limited(MboxAppendWriter(self, wanted, date, assign_uid), self.name)

    def _commit_grouped(self, item: Spooled) -> int:
        """Commit ``item`` together with the commits of other threads that arrive while
        a group is being written: the first caller leads, writes every waiting item
        with one :meth:`_commit` (one lock hold, three fsyncs) and hands the lead to a
        waiting caller, so that no thread writes for the others for ever. Each caller
        gets its own UID, or the error of its group (nothing of which was kept)."""
        return self._group.submit(item, self._commit)

    def _commit(self, items: list[Spooled]) -> list[int]:
        """Append spooled messages under the locks (see
        :mod:`mailagents.store._mbox_append`)."""
        with self._locked() as fd:
            state = self._state
            uids = append_spooled(state, fd, self._index, items, fsync=self._store.fsync)
            uidvalidity, uidnext, highest = self._snap_meta
            self._snap_meta = (uidvalidity, max(uidnext, state.uidnext), highest)
            notify(self._path)  # wake the sessions watching this folder
            return uids

    def set_flags(
        self,
        uids: Collection[int],
        flags: Collection[str],
        mode: FlagMode = "set",
        *,
        unchanged_since: int | None = None,
    ) -> tuple[list[MessageInfo], list[int]]:
        """Change flags (the rule of :func:`mailagents.store.apply_flags`; only the
        messages whose flags changed are returned): one fsynced index record per
        message; the mbox itself is not rewritten (the headers follow at the next
        rewrite, see the module docs)."""
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
                new = apply_flags(old, wanted, mode)
                if same_flags(new, old):
                    continue  # unchanged: not reported, no new MODSEQ
                done.append(uid)
                lines.append(f"F {uid} {modseq}{''.join(' ' + f for f in sorted(new))}\n")
            if lines:
                append_records(state, self._index, lines, self._store.fsync)
                notify(self._path)
            for uid in done:
                if uid in self._snap:
                    self._snap[uid] = state.msgs[uid]
            return [state.msgs[uid].info for uid in done], refused

    def copy(self, uids: Collection[int], target: Folder) -> CopyResult:
        """Copy messages (flags and INTERNALDATE kept); returns source → new UID with
        the target's UIDVALIDITY."""
        with self._mutex:
            self._check_open()
            entries = []
            for uid in sorted(set(uids)):
                e = self._snap.get(uid) or self._state.msgs.get(uid)
                if e is not None:
                    entries.append(e)
        mapping: dict[int, int] = {}
        if isinstance(target, MboxFolder):
            total = sum(e.info.size for e in entries)
            target._store.check_room(target.name, total, len(entries))
            for i in range(0, len(entries), _COPY_BATCH):
                batch = entries[i : i + _COPY_BATCH]
                items: list[Spooled] = []
                try:
                    for e in batch:
                        items.append(self._spool_copy(e))
                    new = target._commit(items)
                finally:
                    for item in items:
                        item.spool.close()
                mapping.update((e.info.uid, uid) for e, uid in zip(batch, new, strict=True))
            with target._locked():
                return CopyResult(mapping, uidvalidity=target._state.uidvalidity)
        uidvalidity = 0
        for e in entries:
            writer = target.append(flags=e.info.flags, internaldate=e.info.internaldate)
            try:
                with self.open_message(e.info.uid) as stream:
                    while chunk := stream.read(CHUNK):
                        writer.write(chunk)
                result = writer.commit()
            except BaseException:
                writer.abort()
                raise
            uidvalidity = result.uidvalidity
            if result.uid is not None:
                mapping[e.info.uid] = result.uid
        if not uidvalidity:
            uidvalidity = target.status().uidvalidity
        return CopyResult(mapping, uidvalidity=uidvalidity)

    def _spool_copy(self, e: Entry) -> Spooled:
        with self.open_message(e.info.uid) as stream:
            return spool_message(stream, e.info.flags, e.info.internaldate, self._store.root)

    def move(self, uids: Collection[int], target: Folder) -> CopyResult:
        """Copy, then expunge the originals (whatever their flags): the copies are
        appended and fsynced before the source is rewritten without them, so a crash
        leaves each message in one folder or both, never in neither."""
        mapping = self.copy(uids, target)
        if mapping:
            with self._locked() as fd:
                gone = [u for u in mapping if u in self._state.msgs]
                if gone:
                    self._rewrite(fd, set(gone))
                for uid in mapping:
                    self._snap.pop(uid, None)
        self._cache.drop(list(mapping))
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
        self._cache.drop(gone)
        return gone

    def sync(self) -> None:
        """Rewrite the mbox so that its ``Status:``/``X-Status:``/``X-Keywords:`` headers
        show the flags kept in the index (for mutt and other readers)."""
        with self._locked() as fd:
            self._rewrite(fd, set())

    def _rewrite(self, fd: int, drop: set[int]) -> None:
        lock = self._lock
        self._state = rewrite(
            self._state,
            fd,
            self._path,
            self._index,
            drop,
            fsync=self._store.fsync,
            touch=lock.touch if lock is not None else lambda: None,
        )
        notify(self._path)

    # --- changes -------------------------------------------------------------------------

    def refresh(self) -> Changes:
        """Re-read the index (and the mbox if another program changed it) and report
        what changed since this handle's last refresh."""
        with self._locked():
            changes = self._take_snapshot()
            uids = list(self._snap)
        self._cache.refreshed(changes.uidvalidity, uids, changes.expunged)
        return changes

    def changes_since(self, modseq: int) -> Changes:
        """What the snapshot holds above ``modseq``: messages that appeared after it
        (``added``), messages changed after it (``changed``), and the UIDs expunged
        after it from the bounded expunge log; when the log no longer reaches back to
        ``modseq``, every UID below UIDNEXT not in the snapshot, with
        ``expunged_complete`` false."""
        with self._mutex:
            self._check_open()
            uidvalidity, uidnext, highest = self._snap_meta
            added = []
            changed = []
            for e in self._snap.values():
                if e.cmodseq > modseq:
                    added.append(e.info)
                elif e.info.modseq > modseq:
                    changed.append(e.info)
            complete = modseq >= self._state.forgotten
            if complete:
                expunged = [
                    uid for uid, m in self._state.expunged if m > modseq and uid not in self._snap
                ]
            else:  # the log no longer reaches back: every UID not here may be gone
                expunged = [u for u in range(1, uidnext) if u not in self._snap]
            return Changes(
                uidvalidity=uidvalidity,
                highestmodseq=highest,
                added=tuple(added),
                changed=tuple(changed),
                expunged=tuple(sorted(set(expunged))),
                expunged_complete=complete,
            )

    def close(self) -> None:
        """Release the handle (streams still open keep their descriptor)."""
        with self._mutex:
            self._closed = True
            self._snap = {}
            self._state = IndexState()
        self._cache.close()

    def _export_all(self, path: str, index_path: str) -> None:
        """Copy every message, with UIDs and flags, into a new mbox at ``path`` (which
        must not exist) and empty this one (renaming INBOX)."""
        fsync = self._store.fsync
        with self._locked() as fd:
            state = self._state
            export(state, fd, path, index_path, fsync=fsync)
            os.ftruncate(fd, 0)
            if fsync:
                os.fsync(fd)
            modseq = state.highestmodseq + 1
            lines = [f"X {uid} {modseq}\n" for uid in state.msgs]
            lines.append(stat_record(stat_key(os.fstat(fd))))
            append_records(state, self._index, lines, fsync)
            self._snap = {}


class MboxStore(Store):
    """Folders as mbox files under ``root`` (see the module docs for the layout).

    ``inbox`` names the INBOX file when it is not ``root/INBOX`` (a spool such as
    ``/var/mail/user``). ``create`` makes a missing root; ``fsync=False`` skips the
    fsyncs (tests only); ``lock_timeout`` bounds the wait for the locks of one mbox;
    ``executor`` is a thread pool shared with other stores, instead of its own."""

    separator = "/"

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        inbox: str | os.PathLike[str] | None = None,
        create: bool = True,
        max_workers: int = 16,
        executor: ThreadPoolExecutor | None = None,
        fsync: bool = True,
        lock_timeout: float = 30.0,
    ) -> None:
        super().__init__(max_workers=max_workers, executor=executor)
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
        self._meta_lock = os.path.join(self.root, META_LOCK)
        self._lists = mbox_lists(self.root, fsync=fsync, lock_timeout=lock_timeout)

    # --- names ---------------------------------------------------------------------------

    def _levels(self, name: str) -> list[str]:
        return folder_levels(name, self.separator)

    def _file(self, levels: list[str]) -> str:
        return folder_file(self.root, self.inbox_path, levels)

    def _children(self, levels: list[str]) -> str:
        return children_dir(self.root, levels)

    def _index(self, levels: list[str]) -> str:
        return index_file(self.root, self.inbox_path, levels)

    # --- meta files ----------------------------------------------------------------------

    def _next_uidvalidity(self, above: int = 0) -> int:
        path = os.path.join(self.root, _UIDVALIDITY)
        with FileLock(self._meta_lock, timeout=self.lock_timeout):
            lines = read_lines(path)
            last = int(lines[0]) if lines and lines[0].isdigit() else 0
            value = max(int(time.time()), last + 1, above + 1)
            if value >= 2**32:
                value = 1 + (value % (2**32 - 1))
            write_lines(path, [str(value)], fsync=self.fsync)
            return value

    # --- folders -------------------------------------------------------------------------

    def folders(self) -> list[FolderInfo]:
        """INBOX, then every folder by name (a level that only has children is
        ``\\Noselect``)."""
        subscribed = set(self.subscriptions())
        special = self._lists.special_use()
        found = find_folders(self.root, self.separator, self._levels)
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

    def status(self, name: str, items: Collection[str] | None = None) -> FolderStatus:
        """A folder's STATUS numbers from its side index, read without the locks and
        without a rescan, when the index describes the mbox as it is; otherwise the
        folder is opened (which brings the index up to date). Kept in
        ``.NAME.mailagents-status`` while the mbox and its index are unchanged
        (``StatusCache``), so that a STATUS of an unchanged folder does not read the
        index. ``items`` is accepted for the interface's sake: every figure, SIZE
        included, comes from the index."""
        levels = self._levels(name)
        path = self._file(levels)
        if levels != ["INBOX"] and not os.path.isfile(path):
            raise FolderNotFoundError(name)
        index = self._index(levels)

        def compute() -> FolderStatus:
            found = peek_status(path, index)
            if found is not None:
                return found
            with self.folder(name) as folder:
                return folder.status()

        return StatusCache(side_file(index, STATUS_SUFFIX), [path, index]).cached(compute)

    def folder(self, name: str, *, deliver_only: bool = False) -> MboxFolder:
        """Open a folder (INBOX is created when missing). ``deliver_only``: an mbox
        handle changes nothing readers would see, so such a handle is an ordinary one,
        except that it opens no message cache."""
        levels = self._levels(name)
        path = self._file(levels)
        is_inbox = levels == ["INBOX"]
        if not is_inbox and not os.path.isfile(path):
            raise FolderNotFoundError(name)
        return MboxFolder(
            self,
            self.separator.join(levels),
            path,
            self._index(levels),
            is_inbox=is_inbox,
            deliver_only=deliver_only,
        )

    def _make_parents(self, levels: list[str]) -> None:
        for n in range(1, len(levels)):
            if levels[:n] != ["INBOX"]:
                make_file(self._file(levels[:n]), fsync=self.fsync)
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
        if not make_file(self._file(levels), fsync=self.fsync):
            raise FolderExistsError(name)
        self._clear_side_caches(levels)
        if special_use is not None:
            self._lists.set_special_use(self.separator.join(levels), special_use)

    def _clear_side_caches(self, levels: list[str]) -> None:
        """Remove a folder's message cache and kept STATUS numbers (a new file where
        an old one of that name may have left them)."""
        index = self._index(levels)
        remove_cache_files(side_file(index, CACHE_SUFFIX))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(side_file(index, STATUS_SUFFIX))

    def set_special_use(self, name: str, attribute: str | None) -> None:
        """Give folder ``name`` a special-use attribute, or take it away (``None``;
        see :meth:`mailagents.store.Store.set_special_use`)."""
        levels = self._levels(name)
        if attribute is not None and attribute not in SPECIAL_USE:
            raise ValueError(f"not a special-use attribute: {attribute!r}")
        if levels != ["INBOX"] and not os.path.isfile(self._file(levels)):
            raise FolderNotFoundError(name)
        if attribute is None:
            self._lists.clear_special_use(self.separator.join(levels))
        else:
            self._lists.set_special_use(self.separator.join(levels), attribute)

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
            for p in (index, index + ".new", side_file(index, STATUS_SUFFIX)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)
            remove_cache_files(side_file(index, CACHE_SUFFIX))
        finally:
            lock.release()
        if self.fsync:
            fsync_dir(os.path.dirname(path))
        self._prune(levels[:-1])
        self._lists.deleted(self.separator.join(levels))

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
            self._clear_side_caches(new_levels)
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
                move_cache_files(
                    side_file(old_index, CACHE_SUFFIX), side_file(new_index, CACHE_SUFFIX)
                )
                for status in (old_index, new_index):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(side_file(status, STATUS_SUFFIX))
            finally:
                lock.release()
        if has_children:
            os.rename(old_children, new_children)
        if self.fsync:
            fsync_dir(os.path.dirname(old_path))
            fsync_dir(os.path.dirname(new_path))
        self._prune(old_levels[:-1])
        sep = self.separator
        self._lists.renamed(sep.join(old_levels), sep.join(new_levels), sep)

    # --- subscriptions -------------------------------------------------------------------

    def subscribe(self, name: str) -> None:
        """Add to the subscriptions (the folder need not exist)."""
        self._lists.subscribe(self.separator.join(self._levels(name)))

    def unsubscribe(self, name: str) -> None:
        """Remove from the subscriptions."""
        self._lists.unsubscribe(self.separator.join(self._levels(name)))

    def subscriptions(self) -> list[str]:
        """Subscribed names, in the order they were subscribed."""
        return self._lists.subscriptions()
