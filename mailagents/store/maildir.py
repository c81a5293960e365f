"""The Maildir store: qmail/Dovecot Maildir with Maildir++ folders, sharing its files
with Dovecot, mutt and Python's ``mailbox`` module.

On disk, under the store's root (the user's Maildir, which is also ``INBOX``):

* ``tmp/``, ``new/``, ``cur/``: messages, LF line ends. A new message is written to
  ``tmp/<unique>``, fsynced, renamed to ``new/<unique>,S=<size>,W=<crlf size>`` (or
  to ``cur/`` with a ``:2,<flags>`` suffix when it has flags), and ``new/`` is fsynced
  before :meth:`~mailagents.store.AppendWriter.commit` returns. Directory fsyncs of
  concurrent commits are shared (group commit). A folder refresh moves ``new/`` files
  to ``cur/`` with ``:2,``, as Dovecot does. Flags are the info letters ``D F R S T`` and
  ``a``-``z`` for keywords (``$Forwarded`` included) as listed in ``dovecot-keywords``;
  letters we do not understand (such as ``P``, which Dovecot ignores too) are kept.
* ``.<level>.<level>/``: Maildir++ folders (``Archive/2026`` is ``.Archive.2026``),
  each level in modified UTF-7 (``Entwürfe`` is ``.Entw&APw-rfe``), each with an empty
  ``maildirfolder`` file. A ``.`` inside a level is refused (it is the separator on
  disk, for Dovecot and mutt too).
* ``dovecot-uidlist`` (version 3, with its ``dovecot-uidlist.lock`` dotlock) in each
  folder maps file names to UIDs, shared with Dovecot; ``dovecot-uidvalidity`` in the
  root allocates UIDVALIDITY values as Dovecot does.
* ``mailagents-modseq`` in each folder: MODSEQs, cached INTERNALDATEs and sizes, and
  the expunge log (an append-only journal, compacted by write-new and rename).
* ``mailagents-snapshot`` in folders of 1,000 messages or more: a cache of
  what opening the folder parses, written by the reading side after an open that found
  the folder consistent and unchanged for a while, used by the next open only if
  nothing it depends on changed since (checked by a stamp and a CRC).
  Deleting it is always safe.
* ``mailagents-cache`` in each folder (with ``mailagents-cache.lock``): the message
  cache (:meth:`MaildirFolder.message_cache`), what FETCH, SEARCH and SORT need of a
  message without reading it again. Deleting it is always safe.
* ``mailagents-status`` in each folder: its STATUS numbers with the identity of the
  files they came from (:meth:`MaildirStore.status`). Deleting it is always safe.
* ``subscriptions`` in the root: Dovecot's format version 2 (a ``V<TAB>2`` header and
  an empty line, then one folder per line, levels in modified UTF-7 separated by TABs);
  version 1 files (one name per line) are read too.
* ``mailagents-special-use`` in the root: ``<attribute><TAB><folder>`` lines. Folders
  named ``Sent``, ``Drafts``, ``Trash``, ``Junk`` and ``Archive`` have that attribute
  unless the file gives it to another folder.

Other files (``dovecot.index*``, ``.customflags``, dot files) are left alone.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import os
import shutil
import threading
from collections.abc import Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from mailagents.store._cache import FolderCache
from mailagents.store._cache_slot import CacheSlot
from mailagents.store._cache_status import StatusCache
from mailagents.store._hub import NotifyingWriter, notified, notify
from mailagents.store._maildir_append import (
    _MaildirAppendWriter,
    append_batch,
    copy_one,
    zone_minutes,
)
from mailagents.store._maildir_flags import change_flags
from mailagents.store._maildir_io import _RENAME_RETRIES, fsync_dir, open_crlf
from mailagents.store._maildir_names import (
    INBOX,
    api_name,
    build_info,
    dir_name,
    file_name,
    folder_levels,
    keyword_letters_needed,
    name_size,
    parse_info,
    split_flags,
    split_name,
    unique_name,
)
from mailagents.store._maildir_status import claim_recent, peek_status

# SNAPSHOT_MIN, TMP_MAX_AGE, _Core, SUBSCRIPTIONS and SPECIAL_USE_FILE stay importable
# from here; the constants are read where they are defined (patch them there).
from mailagents.store._maildir_sync import SNAPSHOT_MIN as SNAPSHOT_MIN
from mailagents.store._maildir_sync import TMP_MAX_AGE as TMP_MAX_AGE
from mailagents.store._maildir_sync import _Core as _Core
from mailagents.store._maildir_sync import _ensure_subdirs, _make_maildir
from mailagents.store._maildir_tree import SPECIAL_USE_FILE as SPECIAL_USE_FILE
from mailagents.store._maildir_tree import SUBSCRIPTIONS as SUBSCRIPTIONS
from mailagents.store._maildir_tree import existing_folders, maildir_lists
from mailagents.store._maildir_uidlist import MAX_KEYWORDS
from mailagents.store._model import (
    DELETED,
    SEEN,
    SPECIAL_USE,
    AppendResult,
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
    check_keyword,
)
from mailagents.store._ranged import check_range

__all__ = ["MaildirFolder", "MaildirStore"]

CACHE_FILE = "mailagents-cache"
"""The message cache's file in each folder directory."""
STATUS_FILE = "mailagents-status"
"""The kept STATUS numbers' file in each folder directory."""


def wants_size(items: Collection[str] | None) -> bool:
    """Whether a STATUS of ``items`` (``None``: all) asks for SIZE."""
    return items is None or any(item.upper() == "SIZE" for item in items)


class MaildirFolder(Folder):
    """An open Maildir folder (see :class:`~mailagents.store.Folder`).

    Obtained from :meth:`MaildirStore.folder`. The handle keeps a snapshot that
    :meth:`refresh` brings up to date; its own flag changes and expunges update the
    snapshot at once."""

    def __init__(
        self, store: MaildirStore, path: str, name: str, *, deliver_only: bool = False
    ) -> None:
        self.name = name
        self._store = store
        self._core = store._core(path)
        self._infos: dict[int, MessageInfo] = {}
        self._sorted: list[MessageInfo] | None = None
        self._uidvalidity = 0
        self._uidnext = 1
        self._highest = 1
        self._closed = False
        self._deliver_only = deliver_only
        self._cache = CacheSlot(os.path.join(path, CACHE_FILE), enabled=not deliver_only)
        if deliver_only:
            # Written now if missing, so that a delivery's answer never waits for it.
            self._uidvalidity = self._core.delivery_uidvalidity()
        else:
            self.refresh()

    @property
    def deliver_only(self) -> bool:
        """The handle was opened for delivery only (see :meth:`MaildirStore.folder`)."""
        return self._deliver_only

    @property
    def path(self) -> str:
        """The folder's directory."""
        return self._core.path

    def _check_open(self, *, reading: bool = True) -> None:
        if self._closed:
            raise StoreError("folder handle is closed")
        if reading and self._deliver_only:
            raise StoreError("folder handle is open for delivery only")

    def status(self) -> FolderStatus:
        """Counts, UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ of the snapshot."""
        self._check_open()
        infos = self._infos.values()
        with self._core.mutex:
            first_recent = self._core.state.first_recent
        return FolderStatus(
            messages=len(self._infos),
            uidvalidity=self._uidvalidity,
            uidnext=self._uidnext,
            highestmodseq=self._highest,
            unseen=sum(1 for info in infos if SEEN not in info.flags),
            deleted=sum(1 for info in infos if DELETED in info.flags),
            size=sum(info.size for info in infos),
            recent=sum(1 for uid in self._infos if uid >= first_recent),
        )

    def keywords(self) -> frozenset[str]:
        """The keywords named in ``dovecot-keywords`` and those of the snapshot's
        messages (including the ones past Dovecot's 26 letters, kept in
        ``mailagents-modseq``)."""
        self._check_open()
        core = self._core
        with core.mutex:
            core.keywords.refresh()
            found = {name for name in core.keywords.names if name is not None}
        for info in self._infos.values():
            found.update(f for f in info.flags if not f.startswith("\\"))
        return frozenset(found)

    def can_create_keywords(self) -> bool:
        """Whether ``dovecot-keywords`` has a letter left (26 at most): past that, new
        keywords are kept in ``mailagents-modseq`` only, where Dovecot, mutt and other
        Maildir readers do not see them, so a server should not offer ``\\*``."""
        self._check_open()
        core = self._core
        with core.mutex:
            core.keywords.refresh()
            used = sum(1 for name in core.keywords.names if name is not None)
        return used < MAX_KEYWORDS

    def message_cache(self) -> FolderCache | None:
        """The folder's message cache, ``mailagents-cache`` in its directory, opened
        on first use (see :meth:`mailagents.store.Folder.message_cache`); a new one
        when the UIDVALIDITY changed; ``None`` on a delivery handle."""
        self._check_open(reading=False)
        return self._cache.get(self._uidvalidity)

    def claim_recent(self) -> list[int]:
        """Claim ``\\Recent`` for this session (see
        :meth:`mailagents.store.Folder.claim_recent`): a watermark in
        ``mailagents-modseq``, so that the claim does not depend on ``new/`` (which any
        reader, POP3 included, empties)."""
        self._check_open()
        return claim_recent(self._core, sorted(self._infos))

    def messages(self) -> list[MessageInfo]:
        """Every message of the snapshot by ascending UID."""
        self._check_open()
        if self._sorted is None:
            self._sorted = [self._infos[uid] for uid in sorted(self._infos)]
        return list(self._sorted)

    def info(self, uid: int) -> MessageInfo:
        """One message's metadata from the snapshot."""
        self._check_open()
        try:
            return self._infos[uid]
        except KeyError:
            raise MessageNotFoundError(uid) from None

    def open_message(self, uid: int, start: int = 0, length: int | None = None) -> BinaryIO:
        """The message with CRLF line ends, streamed from the LF file (a window of it
        with ``start`` and ``length``: the bytes before it are counted, not converted,
        and nothing after it is read)."""
        self._check_open()
        check_range(start, length)
        if uid not in self._infos:
            raise MessageNotFoundError(uid)
        core = self._core
        with core.mutex:
            name = core.files.get(uid)
        if name is None:
            raise MessageNotFoundError(uid)
        base = split_name(name)[0]
        for _ in range(_RENAME_RETRIES):
            try:
                fd = os.open(os.path.join(core.cur, name), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                found = core.find(base)
                if found is None:
                    raise MessageNotFoundError(uid) from None
                name = found
                continue
            return open_crlf(fd, start, length, crlf_size=name_size(base, "W"))
        raise MessageNotFoundError(uid)

    def append(
        self,
        *,
        flags: Collection[str] = (),
        internaldate: datetime.datetime | None = None,
        assign_uid: bool = True,
    ) -> AppendWriter:
        """Start appending: bytes go to ``tmp/``; ``commit()`` renames into ``new/``
        (``cur/`` when flags are given) after the fsync and fsyncs the directory. With
        ``assign_uid`` the UID is recorded in ``dovecot-uidlist`` at once (for
        UIDPLUS); without it (the fast MDA path) at the next refresh. A handle open
        for delivery only gives no UIDs."""
        self._check_open(reading=False)
        if assign_uid and self._deliver_only:
            raise StoreError("a handle open for delivery only gives no UIDs")
        checked = frozenset(check_keyword(f) for f in flags)
        writer = self._core.store.limited(
            _MaildirAppendWriter(self._core, checked, internaldate, assign_uid), self.name
        )
        return NotifyingWriter(writer, self._core.path)  # the hub hears of the commit

    def append_batch(self, messages: Sequence[bytes]) -> list[AppendResult | Exception]:
        """Deliver several messages (the fast MDA path: no flags, no UID assigned now)
        with one directory fsync for all of them (group commit).

        Each message is written to ``tmp/`` and fsynced; then each is renamed into
        ``new/``, ``new/`` is fsynced once, and only then is any of them reported
        durable. Returns, in order, each message's
        :class:`~mailagents.store.AppendResult`, or the exception that stopped it
        (nothing of that message is left behind; if the directory fsync fails, every
        message renamed before it gets that error, as
        :meth:`~mailagents.store.AppendWriter.commit` would report it)."""
        self._check_open(reading=False)
        return notified(
            self._core.store.limited_batch(
                self.name, messages, lambda batch: append_batch(self._core, batch)
            ),
            self._core.path,
        )

    def set_flags(
        self,
        uids: Collection[int],
        flags: Collection[str],
        mode: FlagMode = "set",
        *,
        unchanged_since: int | None = None,
    ) -> tuple[list[MessageInfo], list[int]]:
        """Change flags by renaming files in ``cur/`` (see
        :meth:`mailagents.store.Folder.set_flags`).

        A rename that fails because another program renamed the file meanwhile
        rescans the directory and retries with the flags found there."""
        self._check_open()
        wanted = frozenset(check_keyword(f) for f in flags)
        result, failed = change_flags(self._core, uids, wanted, mode, unchanged_since)
        if result:
            notify(self._core.path)
        for done in result:
            if done.uid in self._infos:
                self._infos[done.uid] = done
        self._sorted = None
        return result, failed

    def copy(self, uids: Collection[int], target: Folder) -> CopyResult:
        """Copy messages (hard links when possible) keeping flags and INTERNALDATE;
        returns source UID → new UID with the target's UIDVALIDITY. The new files are
        durable (``cur/`` fsynced) and numbered before this returns."""
        self._check_open()
        if not isinstance(target, MaildirFolder):
            return self._copy_generic(uids, target)
        src, dst = self._core, target._core
        with src.mutex:
            items = [
                (uid, src.files[uid], src.infos[uid])
                for uid in sorted(set(uids))
                if uid in src.files and uid in src.infos
            ]
        if not items:
            return CopyResult(uidvalidity=dst.delivery_uidvalidity())
        target._store.check_room(target.name, sum(i.size for _, _, i in items), len(items))
        keywords = sorted({k for _, _, info in items for k in keyword_letters_needed(info.flags)})
        copied: list[tuple[int, str]] = []
        with dst.uidlist.lock():
            if keywords:
                dst.keywords.ensure(keywords)
            dst.keywords.refresh()
            letters, names = dst.keywords.letters(), dst.keywords.names
            extras: dict[str, tuple[str, frozenset[str]]] = {}
            for uid, name, info in items:
                named, extra = split_flags(info.flags, letters)
                new_info = build_info(None, named, letters, names)
                new_base = copy_one(src, dst, name, info.size, new_info)
                if new_base is not None:
                    copied.append((uid, new_base))
                    if extra:
                        extras[new_base] = (file_name(new_base, new_info), extra)
            if copied and dst.fsync:
                fsync_dir(dst.cur)
            assigned = dst.assign([b for _, b in copied])
            for new_base, (new_name, extra) in extras.items():
                dst.record_new(assigned[new_base], new_name, extra)
            dates = {uid: info.internaldate for uid, _, info in items}
            zones = {assigned[b]: zone_minutes(dates[uid]) for uid, b in copied}
            if any(zones.values()):
                dst.record_zones({uid: m for uid, m in zones.items() if m})
            uidvalidity = dst.uidlist.uidvalidity
        notify(dst.path)
        return CopyResult({uid: assigned[base] for uid, base in copied}, uidvalidity=uidvalidity)

    def _copy_generic(self, uids: Collection[int], target: Folder) -> CopyResult:
        mapping: dict[int, int] = {}
        uidvalidity = 0
        for uid in sorted(set(uids)):
            info = self._infos.get(uid)
            if info is None:
                continue
            try:
                stream = self.open_message(uid)
            except MessageNotFoundError:
                continue
            with stream:
                writer = target.append(flags=info.flags, internaldate=info.internaldate)
                try:
                    while chunk := stream.read(1 << 16):
                        writer.write(chunk)
                    result = writer.commit()
                except BaseException:
                    writer.abort()
                    raise
            uidvalidity = result.uidvalidity
            if result.uid is not None:
                mapping[uid] = result.uid
        if not uidvalidity:
            uidvalidity = target.status().uidvalidity
        return CopyResult(mapping, uidvalidity=uidvalidity)

    def move(self, uids: Collection[int], target: Folder) -> CopyResult:
        """Copy, then expunge the originals (whatever their flags): per message, a
        hard link into the target (durable, numbered), then the source's removal, so a
        crash leaves each message in one folder or both, never in neither."""
        mapping = self.copy(uids, target)
        self._expunge(mapping.keys(), require_deleted=False)
        return mapping

    def expunge(self, uids: Collection[int] | None = None) -> list[int]:
        """Unlink the messages flagged ``\\Deleted`` (only those in ``uids`` if given)."""
        self._check_open()
        return self._expunge(uids, require_deleted=True)

    def _expunge(self, uids: Iterable[int] | None, *, require_deleted: bool) -> list[int]:
        core = self._core
        removed: list[int] = []
        with core.uidlist.lock(), core.mutex:
            core.sync_locked()
            names = core.keywords.names
            candidates = sorted(core.files if uids is None else set(uids) & set(core.files))
            for uid in candidates:
                name = core.files[uid]
                for _ in range(_RENAME_RETRIES):
                    base, info = split_name(name)
                    if require_deleted and DELETED not in parse_info(info, names):
                        break
                    try:
                        os.unlink(os.path.join(core.cur, name))
                    except FileNotFoundError:
                        found = core.find(base)
                        if found is None:
                            removed.append(uid)  # gone already
                            break
                        name = found
                        continue
                    removed.append(uid)
                    break
            if removed:
                st = core.state
                st.start(core.uidlist.uidvalidity)
                modseq = st.next_modseq()
                for uid in removed:
                    st.expunge(uid, modseq)
                    core.files.pop(uid, None)
                    core.infos.pop(uid, None)
                st.commit()
                core.forget()
                if core.fsync:
                    fsync_dir(core.cur)
                core._maybe_compact_uidlist()
                core.rekey()  # files and infos lost exactly what was unlinked
                notify(core.path)
        for uid in removed:
            self._infos.pop(uid, None)
        self._sorted = None
        self._cache.drop(removed)
        return removed

    def refresh(self) -> Changes:
        """Sync with the disk (moving ``new/`` to ``cur/``, giving UIDs to new files,
        noticing renames by other programs) and report what changed."""
        self._check_open()
        core = self._core
        core.sync(reader=True)
        with core.mutex:
            infos = dict(core.infos)
            uidvalidity = core.uidvalidity
            uidnext = core.uidnext
            highest = core.state.highest
        ordered = sorted(infos)
        if ordered:
            uidnext = max(uidnext, ordered[-1] + 1)
        old = self._infos
        if self._uidvalidity and uidvalidity != self._uidvalidity:
            old = {}
            expunged: tuple[int, ...] = tuple(sorted(self._infos))
        else:
            expunged = tuple(sorted(uid for uid in old if uid not in infos))
        if old:
            added = tuple(infos[uid] for uid in ordered if uid not in old)
            changed = tuple(
                infos[uid] for uid in ordered if uid in old and old[uid].modseq != infos[uid].modseq
            )
            self._sorted = None
        else:  # everything is new (a folder being opened)
            added = tuple(map(infos.__getitem__, ordered))
            changed = ()
            self._sorted = list(added)
        self._infos = infos
        self._uidvalidity = uidvalidity
        self._uidnext = uidnext
        self._highest = max(highest, 1)
        self._cache.refreshed(uidvalidity, infos, expunged)
        return Changes(
            uidvalidity=uidvalidity,
            highestmodseq=self._highest,
            added=added,
            changed=changed,
            expunged=expunged,
        )

    def changes_since(self, modseq: int) -> Changes:
        """Messages added or changed after ``modseq`` and UIDs expunged since, from the
        snapshot and the expunge log. When the log no longer reaches back that far,
        every UID below UIDNEXT that is not in the snapshot is reported expunged."""
        self._check_open()
        core = self._core
        with core.mutex:
            created = {uid: e.created for uid, e in core.state.entries.items()}
            log_items = list(core.state.expunged.items())
            forgotten = core.state.forgotten
        added: list[MessageInfo] = []
        changed: list[MessageInfo] = []
        for uid in sorted(self._infos):
            info = self._infos[uid]
            if info.modseq > modseq:
                (added if created.get(uid, 0) > modseq else changed).append(info)
        complete = modseq >= forgotten
        if not complete:
            gone = [u for u in range(1, self._uidnext) if u not in self._infos]
        else:
            gone = sorted(
                uid
                for uid, m in log_items
                if modseq < m <= self._highest and uid not in self._infos
            )
        return Changes(
            uidvalidity=self._uidvalidity,
            highestmodseq=self._highest,
            added=tuple(added),
            changed=tuple(changed),
            expunged=tuple(gone),
            expunged_complete=complete,
        )

    def close(self) -> None:
        """Release the handle (and write what its message cache has queued)."""
        self._closed = True
        self._infos = {}
        self._sorted = None
        self._cache.close()


class MaildirStore(Store):
    """A user's Maildir: ``root`` is INBOX, Maildir++ subfolders beside it.

    :param root: the Maildir directory (created with ``tmp/``, ``new/`` and ``cur/``
        when ``create`` is true; :class:`FileNotFoundError` otherwise if missing).
    :param max_workers: threads of the store's executor (:meth:`mailagents.store.Store.run`).
    :param executor: a thread pool shared with other stores (then :meth:`close` leaves it
        running), instead of one of its own.
    :param fsync: fsync files and directories before reporting success (turn off
        only for tests and throw-away stores).
    """

    separator = "/"

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        create: bool = True,
        max_workers: int = 16,
        executor: ThreadPoolExecutor | None = None,
        fsync: bool = True,
    ) -> None:
        super().__init__(max_workers=max_workers, executor=executor)
        self.root = os.path.abspath(os.fspath(root))
        self.fsync = fsync
        if create:
            _make_maildir(self.root, folder=False, exist_ok=True)
        elif not os.path.isdir(os.path.join(self.root, "cur")):
            raise FileNotFoundError(errno.ENOENT, "not a Maildir", self.root)
        self._cores: dict[str, _Core] = {}
        self._cores_lock = threading.Lock()
        self._lists = maildir_lists(self.root, fsync=fsync)

    # -- helpers ---------------------------------------------------------------------

    def _path(self, levels: tuple[str, ...]) -> str:
        return self.root if not levels else os.path.join(self.root, dir_name(levels))

    def _core(self, path: str) -> _Core:
        with self._cores_lock:
            core = self._cores.get(path)
            if core is None:
                core = self._cores[path] = _Core(self, path)
            return core

    def _forget(self, paths: Iterable[str]) -> None:
        with self._cores_lock:
            for path in paths:
                self._cores.pop(path, None)

    # -- folders ---------------------------------------------------------------------

    def folders(self) -> list[FolderInfo]:
        """Every folder: INBOX first, then by name; parents that exist only as a
        level of a deeper name are listed ``\\Noselect``."""
        existing = set(existing_folders(self.root))
        every = set(existing)
        for levels in existing:
            for i in range(2 if levels[0] == INBOX else 1, len(levels)):
                every.add(levels[:i])
        every.add(())
        parents = {levels[:i] for levels in every for i in range(1, len(levels))}
        special = self._lists.special_use()
        subscribed = set(self.subscriptions())
        result = []
        for levels in sorted(every, key=lambda lv: (lv != (), api_name(lv))):
            name = api_name(levels)
            attrs: set[str] = set()
            has_children = levels in parents or (levels == () and (INBOX,) in parents)
            attrs.add("\\HasChildren" if has_children else "\\HasNoChildren")
            if levels and levels not in existing:
                attrs.add("\\Noselect")
            elif name in special:
                attrs.add(special[name])
            result.append(
                FolderInfo(name=name, attributes=frozenset(attrs), subscribed=name in subscribed)
            )
        return result

    def folder(self, name: str, *, deliver_only: bool = False) -> MaildirFolder:
        """Open a folder; :class:`~mailagents.store.FolderNotFoundError` if it does not
        exist.

        ``deliver_only``: open it for delivery (an MDA, an MRA handing messages over).
        The folder is not read, so ``new/`` is left as it is for the readers: opening
        a folder to read it moves ``new/`` to ``cur/``, which a delivery agent must
        never do, since mail clients show what is in ``new/`` as new mail. Only
        :meth:`~MaildirFolder.append` (without UIDs), :meth:`~MaildirFolder.append_batch`
        and :meth:`~MaildirFolder.close` work on such a handle; anything else raises
        :class:`~mailagents.store.StoreError`."""
        levels = folder_levels(name)
        path = self._path(levels)
        if not os.path.isdir(path):
            raise FolderNotFoundError(name)
        _ensure_subdirs(path)
        return MaildirFolder(self, path, api_name(levels), deliver_only=deliver_only)

    def status(self, name: str, items: Collection[str] | None = None) -> FolderStatus:
        """A folder's STATUS numbers without opening it: from ``dovecot-uidlist``,
        ``mailagents-modseq`` and a listing of ``new/`` and ``cur/``, with no sync and
        ``new/`` left as it is (files not numbered yet count in MESSAGES, UNSEEN, SIZE
        and RECENT; UIDNEXT and HIGHESTMODSEQ are those of the last sync).

        Kept in ``mailagents-status`` while ``new/``, ``cur/``, ``dovecot-uidlist``,
        ``mailagents-modseq`` and ``dovecot-keywords`` are unchanged (``StatusCache``),
        so that a STATUS of an unchanged folder costs a few ``stat`` calls. Without
        ``SIZE`` in ``items`` (``None``: every item), SIZE is 0 and no message file is
        read (before a folder's first SELECT, SIZE reads each file without ``W=``
        in its name)."""
        levels = folder_levels(name)
        path = self._path(levels)
        if not os.path.isdir(path):
            raise FolderNotFoundError(name)
        core = self._core(path)
        size = wants_size(items)
        sources = [
            core.new,
            core.cur,
            core.uidlist.path,
            core.state.path,
            core.keywords.path,
        ]
        cache = StatusCache(os.path.join(path, STATUS_FILE), sources)
        return cache.cached(lambda: peek_status(core, size=size), size=size)

    def create_folder(self, name: str, *, special_use: str | None = None) -> None:
        """Create a folder (with its missing parents): ``.Name/`` with ``tmp/``,
        ``new/``, ``cur/`` and ``maildirfolder``."""
        levels = folder_levels(name)
        if not levels:
            raise FolderExistsError(name)
        if special_use is not None and special_use not in SPECIAL_USE:
            raise ValueError(f"not a special-use attribute: {special_use!r}")
        for i in range(1, len(levels) + 1):
            path = self._path(levels[:i])
            if i < len(levels):
                if not os.path.isdir(path):
                    _make_maildir(path, folder=True, exist_ok=True)
                continue
            try:
                _make_maildir(path, folder=True, exist_ok=False)
            except FileExistsError:
                raise FolderExistsError(name) from None
        if self.fsync:
            fsync_dir(self.root)
        if special_use is not None:
            self._lists.set_special_use(api_name(levels), special_use)

    def set_special_use(self, name: str, attribute: str | None) -> None:
        """Give folder ``name`` a special-use attribute, or take it away (``None``;
        see :meth:`mailagents.store.Store.set_special_use`), in
        ``mailagents-special-use``."""
        levels = folder_levels(name)
        if attribute is not None and attribute not in SPECIAL_USE:
            raise ValueError(f"not a special-use attribute: {attribute!r}")
        if not os.path.isdir(self._path(levels)):
            raise FolderNotFoundError(name)
        if attribute is None:
            self._lists.clear_special_use(api_name(levels))
        else:
            self._lists.set_special_use(api_name(levels), attribute)

    def rename_folder(self, old: str, new: str) -> None:
        """Rename a folder and its children (renaming INBOX moves its messages into
        the new folder and leaves INBOX empty). Subscriptions and special-use follow."""
        old_levels, new_levels = folder_levels(old), folder_levels(new)
        if not new_levels:
            raise FolderExistsError(new)
        if not old_levels:
            self._rename_inbox(new_levels)
            return
        if new_levels[: len(old_levels)] == old_levels:
            raise InvalidFolderNameError(f"cannot rename {old!r} under itself")
        existing = existing_folders(self.root)
        sources = [lv for lv in existing if lv[: len(old_levels)] == old_levels]
        if not sources:
            raise FolderNotFoundError(old)
        moves = [(lv, new_levels + lv[len(old_levels) :]) for lv in sources]
        existing_set = set(existing)
        for _, target in moves:
            if target in existing_set:
                raise FolderExistsError(api_name(target))
        for source, target in sorted(moves):
            os.rename(self._path(source), self._path(target))
        if self.fsync:
            fsync_dir(self.root)
        self._forget([self._path(lv) for move in moves for lv in move])
        self._lists.renamed(api_name(old_levels), api_name(new_levels), self.separator)

    def _rename_inbox(self, new_levels: tuple[str, ...]) -> None:
        new_name = api_name(new_levels)
        self.create_folder(new_name)
        inbox = self._core(self.root)
        target = self._core(self._path(new_levels))
        with inbox.uidlist.lock():
            with contextlib.suppress(FileNotFoundError):
                shutil.copyfile(inbox.keywords.path, target.keywords.path)
            for directory, sub in ((inbox.new, "new"), (inbox.cur, "cur")):
                for name in os.listdir(directory):
                    if name.startswith("."):
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        os.rename(
                            os.path.join(directory, name), os.path.join(target.path, sub, name)
                        )
            if self.fsync:
                fsync_dir(target.new)
                fsync_dir(target.cur)
                fsync_dir(inbox.new)
                fsync_dir(inbox.cur)

    def delete_folder(self, name: str) -> None:
        """Delete a folder and its messages (not INBOX). Its children stay; the name
        then lists as ``\\Noselect``."""
        levels = folder_levels(name)
        if not levels:
            raise StoreError("INBOX cannot be deleted")
        path = self._path(levels)
        if not os.path.isdir(path):
            if any(lv[: len(levels)] == levels for lv in existing_folders(self.root)):
                raise StoreError(f"{name!r} is \\Noselect and has children")
            raise FolderNotFoundError(name)
        trash = os.path.join(self.root, "..mailagents-trash-" + unique_name())
        os.rename(path, trash)
        if self.fsync:
            fsync_dir(self.root)
        self._forget([path])
        shutil.rmtree(trash, ignore_errors=True)
        self._lists.deleted(api_name(levels))

    # -- subscriptions ---------------------------------------------------------------

    def subscribe(self, name: str) -> None:
        """Add to ``subscriptions`` (the folder need not exist)."""
        self._lists.subscribe(api_name(folder_levels(name)))

    def unsubscribe(self, name: str) -> None:
        """Remove from ``subscriptions``."""
        self._lists.unsubscribe(api_name(folder_levels(name)))

    def subscriptions(self) -> list[str]:
        """Subscribed folder names, in file order."""
        return self._lists.subscriptions()

    def close(self) -> None:
        """Stop the executor and forget cached folder state."""
        super().close()
        with self._cores_lock:
            self._cores.clear()
