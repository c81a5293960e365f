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
import dataclasses
import datetime
import errno
import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, cast

from mailagents._mutf7 import decode_mutf7, encode_mutf7
from mailagents.store import _maildir_snapshot
from mailagents.store._fileio import write_all
from mailagents.store._locking import DotLock
from mailagents.store._maildir_io import LFConverter, crlf_size_of, fsync_dir, open_crlf
from mailagents.store._maildir_names import (
    INBOX,
    api_name,
    build_info,
    dir_name,
    file_name,
    folder_levels,
    keyword_letters_needed,
    name_size,
    parse_dir_name,
    parse_info,
    sized_name,
    sort_key,
    split_flags,
    split_name,
    unique_name,
    unique_names,
)
from mailagents.store._maildir_state import Entry, ModseqState
from mailagents.store._maildir_uidlist import Keywords, UidList, UidRecord
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

__all__ = ["MaildirFolder", "MaildirStore"]

log = logging.getLogger(__name__)

SUBSCRIPTIONS = "subscriptions"
SPECIAL_USE_FILE = "mailagents-special-use"
_V2_HEADER = b"V\t2\n\n"
_DEFAULT_SPECIAL_USE = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}
_RECENT_WINDOW_NS = 2_000_000_000  # directories changed this recently are always rescanned
_RENAME_RETRIES = 10
# A file left in tmp/ this long is debris of a crashed writer (Dovecot's rule: 36 hours),
# looked for at most once an hour per folder, by readers.
TMP_MAX_AGE = 36 * 3600
_TMP_CHECK_EVERY = 3600.0
SNAPSHOT_MIN = 1_000
"""Folders with at least this many messages get a ``mailagents-snapshot``."""


def _utc(ts: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC)


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


def _write_file_atomic(path: str, data: bytes, *, fsync: bool) -> None:
    """Write ``path`` anew: temporary file, fsync, rename, fsync of the directory."""
    directory = os.path.dirname(path)
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        write_all(fd, data)
        if fsync:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        os.rename(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(directory)


def _make_maildir(path: str, *, folder: bool, exist_ok: bool) -> None:
    if folder:
        try:
            os.mkdir(path)
        except FileExistsError:
            if not exist_ok:
                raise
    else:
        os.makedirs(path, exist_ok=True)
    for sub in ("tmp", "new", "cur"):
        with contextlib.suppress(FileExistsError):
            os.mkdir(os.path.join(path, sub))
    if folder:
        fd = os.open(os.path.join(path, "maildirfolder"), os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)


def _ensure_subdirs(path: str) -> None:
    for sub in ("tmp", "new", "cur"):
        with contextlib.suppress(FileExistsError):
            os.mkdir(os.path.join(path, sub))


_Stamp = tuple[tuple[int, ...] | None, ...]
"""What :meth:`_Core._stamp_now` returns: a tuple of ints per directory and file."""


@dataclass(slots=True)
class _Plan:
    present: dict[int, str]
    unassigned: list[str]
    missing: set[int]
    update: list[int]

    @property
    def needs_write(self) -> bool:
        return bool(self.unassigned or self.missing or self.update)


class _Core:
    """What one process knows of one folder directory, shared by its handles."""

    def __init__(self, store: MaildirStore, path: str) -> None:
        self.store = store
        self.path = path
        self.cur = os.path.join(path, "cur")
        self.new = os.path.join(path, "new")
        self.tmp = os.path.join(path, "tmp")
        self.fsync = store.fsync
        self.uidlist = UidList(path, store.root, fsync=store.fsync)
        self.state = ModseqState(path, fsync=store.fsync)
        self.keywords = Keywords(path, fsync=store.fsync)
        self.mutex = threading.RLock()
        self.files: dict[int, str] = {}
        self.infos: dict[int, MessageInfo] = {}
        self.uidnext = 1
        self.uidvalidity = 0
        self._stamp: _Stamp | None = None
        self._tmp_checked_at: float | None = None

    # -- scanning --------------------------------------------------------------------

    def _stamp_now(self) -> tuple[_Stamp, bool, bool]:
        """Identity of everything a sync reads, whether it is settled (the directories
        are old enough that a change within the same clock tick cannot hide), and
        whether it is quiet (settled, and so are the files: nothing at all changed
        within the window; what a ``mailagents-snapshot`` requires)."""
        parts: list[tuple[int, ...] | None] = []
        settled = quiet = True
        now = time.time_ns()
        for path in (self.cur, self.new):
            st = os.stat(path)
            parts.append((st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns))
            if now - st.st_mtime_ns < _RECENT_WINDOW_NS:
                settled = False
            if now - max(st.st_mtime_ns, st.st_ctime_ns) < _RECENT_WINDOW_NS:
                quiet = False
        for path in (self.uidlist.path, self.state.path, self.keywords.path):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                parts.append(None)
                continue
            parts.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
            if now - max(st.st_mtime_ns, st.st_ctime_ns) < _RECENT_WINDOW_NS:
                quiet = False
        return tuple(parts), settled, quiet and settled

    def _move_new(self) -> bool:
        """Move the files of new/ to cur/; returns whether there were any."""
        try:
            names = os.listdir(self.new)
        except FileNotFoundError:
            self._check_exists()
            raise
        moved = False
        for name in names:
            if name.startswith("."):
                continue
            moved = True
            target = name if ":" in name else name + ":2,"
            with contextlib.suppress(FileNotFoundError):
                os.rename(os.path.join(self.new, name), os.path.join(self.cur, target))
        return moved

    def _clean_tmp(self) -> None:
        """Remove files older than :data:`TMP_MAX_AGE` from ``tmp/``: what a writer
        that crashed (or was killed) between creating and renaming left behind. A file
        still being written is younger (every write moves its mtime)."""
        now = time.monotonic()
        if self._tmp_checked_at is not None and now - self._tmp_checked_at < _TMP_CHECK_EVERY:
            return
        self._tmp_checked_at = now
        cutoff = time.time() - TMP_MAX_AGE
        try:
            entries = list(os.scandir(self.tmp))
        except OSError:
            return
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_mtime < cutoff:
                    os.unlink(entry.path)
                    log.info("%s: removed %s, left in tmp/ since %s", self.path, entry.name,
                             _utc(int(st.st_mtime)).isoformat())
            except OSError:
                continue

    def _check_exists(self) -> None:
        if not os.path.isdir(self.path):
            raise FolderNotFoundError(f"folder directory gone: {self.path}")

    def _scan(self) -> tuple[dict[str, str], bool]:
        """Move new/ to cur/, then list cur/: base name → file name, and whether new/
        had files."""
        moved = self._move_new()
        try:
            names = os.listdir(self.cur)
        except FileNotFoundError:
            self._check_exists()
            raise
        files: dict[str, str] = {}
        for name in names:
            if name.startswith("."):
                continue
            base = name.partition(":")[0]
            if base in files:
                log.warning("%s: two files for %s; using %s", self.cur, base, files[base])
                continue
            files[base] = name
        return files, moved

    def find(self, base: str) -> str | None:
        """The current file name in cur/ (or new/) of a base name, by rescanning."""
        for directory in (self.cur, self.new):
            with contextlib.suppress(FileNotFoundError):
                for name in os.listdir(directory):
                    if name.partition(":")[0] == base:
                        if directory == self.new:
                            self._move_new()
                            return self.find_in_cur(base)
                        return name
        return None

    def find_in_cur(self, base: str) -> str | None:
        """The current file name of a base name in cur/."""
        for name in os.listdir(self.cur):
            if name.partition(":")[0] == base:
                return name
        return None

    def _plan(self, files: dict[str, str]) -> _Plan:
        ul, st = self.uidlist, self.state
        present: dict[int, str] = {}
        unassigned: list[str] = []
        expunged = st.expunged
        by_base = ul.by_base
        for base, name in files.items():
            rec = by_base.get(base)
            if rec is None or rec.uid in expunged:
                unassigned.append(base)
            else:
                present[rec.uid] = name
        entries = st.entries
        update = []
        for uid, name in present.items():
            entry = entries.get(uid)
            if entry is None:
                update.append(uid)
                continue
            _, sep, info = name.partition(":")
            if entry.info != (info if sep else None):
                update.append(uid)
        missing = {u for u in ul.by_uid if u not in present and u not in expunged}
        missing.update(u for u in entries if u not in present)
        return _Plan(present, unassigned, missing, update)

    # -- syncing ---------------------------------------------------------------------

    def sync(self, *, reader: bool = False) -> None:
        """Bring :attr:`files` and :attr:`infos` up to date, taking the uidlist lock
        only when something must be written (new files, changed flags, expunges).

        ``reader`` (a folder being opened or refreshed, never a delivery) allows the
        ``mailagents-snapshot``: the first sync of this object loads it when its stamp
        is the current one, or writes it after parsing a big, consistent, quiet
        folder."""
        with self.mutex:
            try:
                stamp, settled, quiet = self._stamp_now()
            except FileNotFoundError:
                self._check_exists()
                _ensure_subdirs(self.path)
                stamp, settled, quiet = self._stamp_now()
            if reader:
                self._clean_tmp()
            if settled and stamp == self._stamp:
                return
            # Only a first sync (every parser as new, so that what it reads is a parse
            # from scratch) of a folder that nothing touched for a while uses the
            # snapshot, and only when the stamp it was written for is today's.
            use_snapshot = reader and quiet and self._pristine()
            if use_snapshot and self._load_snapshot(stamp):
                return
            self.uidlist.refresh()
            kw_changed = self.keywords.refresh()
            self.state.refresh()
            uidnext = self.uidlist.next_uid
            files, moved = self._scan()
            consistent = False
            body = None
            if self.uidlist.exists and self.state.uidvalidity == self.uidlist.uidvalidity:
                plan = self._plan(files)
                if not plan.needs_write:
                    consistent = True
                    self.uidnext = uidnext
                    self._publish(plan.present, kw_changed)
                    self._stamp = stamp if settled else None
                    if use_snapshot and not moved and len(plan.present) >= SNAPSHOT_MIN:
                        body = self._snapshot_body(plan.present)
        if consistent:
            if body is not None:
                # Serialised and written outside the mutex: these values are ours alone.
                _maildir_snapshot.write(self.path, stamp, body)
            return
        with self.uidlist.lock(), self.mutex:
            self.sync_locked()

    def sync_locked(self) -> None:
        """The sync, with the uidlist lock held: assigns UIDs and MODSEQs."""
        with self.mutex:
            stamp, settled, _ = self._stamp_now()
            if settled and stamp == self._stamp:
                return
            ul, st = self.uidlist, self.state
            ul.refresh()
            kw_changed = self.keywords.refresh()
            st.refresh()
            new_uidlist = not ul.exists
            if new_uidlist:
                ul.create()
            st.start(ul.uidvalidity)
            files, _ = self._scan()
            plan = self._plan(files)
            if plan.missing:
                # A file being renamed by another program can be missed by one listing:
                # look again before calling anything expunged.
                again, _ = self._scan()
                for base, name in again.items():
                    files.setdefault(base, name)
                plan = self._plan(files)
            if plan.unassigned:
                plan.unassigned.sort(key=sort_key)
                first = ul.next_uid
                records = [UidRecord(first + i, b) for i, b in enumerate(plan.unassigned)]
                ul.append(records)
                for rec in records:
                    plan.present[rec.uid] = files[rec.base]
                    plan.update.append(rec.uid)
            elif new_uidlist:
                ul.rewrite()
            modseq = 0
            for uid in plan.update:
                name = plan.present[uid]
                base, info = split_name(name)
                entry = st.entries.get(uid)
                if not modseq:
                    modseq = st.next_modseq()
                if entry is None:
                    path = os.path.join(self.cur, name)
                    try:
                        mtime = int(os.stat(path).st_mtime)
                        size = name_size(base, "W")
                        if size is None:
                            size = crlf_size_of(path)
                    except FileNotFoundError:
                        del plan.present[uid]
                        continue
                    st.record(uid, Entry(modseq, modseq, mtime, size, info))
                else:
                    st.record(uid, replace(entry, modseq=modseq, info=info))
            for uid in sorted(plan.missing):
                if not modseq:
                    modseq = st.next_modseq()
                st.expunge(uid, modseq)
            st.commit()
            self._maybe_compact_uidlist()
            self.uidnext = ul.next_uid
            self._publish(plan.present, kw_changed)
            self._stamp = None

    def _maybe_compact_uidlist(self) -> None:
        ul, st = self.uidlist, self.state
        dead = {uid for uid in ul.by_uid if uid in st.expunged}
        if len(dead) > min(2_000, 100 + len(ul.by_uid) // 4):
            ul.rewrite(drop=dead)

    def _publish(self, present: dict[int, str], rebuild_all: bool) -> None:
        st = self.state
        names = self.keywords.names
        old = self.infos
        infos: dict[int, MessageInfo] = {}
        flag_cache: dict[tuple[str | None, frozenset[str]], frozenset[str]] = {}
        date_cache: dict[int, datetime.datetime] = {}
        entries = st.entries
        make = _new_info
        for uid in present:
            entry = entries.get(uid)
            if entry is None:
                continue
            info = old.get(uid) if old else None
            if rebuild_all or info is None or info.modseq != entry.modseq:
                key = (entry.info, entry.extra)
                flags = flag_cache.get(key)
                if flags is None:
                    flags = flag_cache[key] = parse_info(entry.info, names) | entry.extra
                date = date_cache.get(entry.internaldate)
                if date is None:
                    date = date_cache[entry.internaldate] = _utc(entry.internaldate)
                info = make(uid, flags, date, entry.size, entry.modseq)
            infos[uid] = info
        self.files = {uid: present[uid] for uid in infos}
        self.infos = infos
        self.uidvalidity = self.uidlist.uidvalidity

    # -- the snapshot ----------------------------------------------------------------

    def _pristine(self) -> bool:
        """Nothing was read into this object yet."""
        return (
            self._stamp is None
            and not self.infos
            and not self.files
            and self.uidlist.pristine
            and self.state.pristine
            and self.keywords.pristine
        )

    def _snapshot_body(self, present: dict[int, str]) -> tuple[Any, ...] | None:
        """What :meth:`_load_snapshot` needs, as plain values (``None`` if the state
        cannot be kept). Called right after a consistent first sync: the parsers hold a
        parse from scratch, every present UID has its entry and nothing else has one."""
        order = sorted(present)  # loaded in UID order, which makes later sorts cheap
        uidlist = self.uidlist.snapshot(order)
        state = self.state.snapshot(order)
        if uidlist is None or state is None:
            return None
        return (uidlist, self.keywords.snapshot(), state, order, [present[u] for u in order])

    def _load_snapshot(self, stamp: _Stamp) -> bool:
        """Become what the snapshot written for ``stamp`` holds; ``False`` (and nothing
        changed) if there is none, or any doubt about it."""
        body = _maildir_snapshot.load(self.path, stamp)
        if body is None:
            return False
        ul, st, kw = self.uidlist, self.state, self.keywords
        try:
            uidlist, keywords, state, uids, names = body
            ul.restore(uidlist)
            kw.restore(keywords)
            st.restore(state)
            rows = st.lazy_rows()
            ul_part, st_part, kw_part = stamp[2], stamp[3], stamp[4]
            if (
                rows is None
                or ul_part is None
                or st_part is None
                or ul.file_ident != (ul_part[:2], ul_part[2])
                or st.file_ident != (st_part[:2], st_part[2])
                or kw.loaded_stamp != (None if kw_part is None else kw_part[1:4])
                or ul.uidvalidity != st.uidvalidity
                or rows[0] != uids
                or type(names) is not list
                or len(names) != len(uids)
                or (names and set(map(type, names)) != {str})
            ):
                raise ValueError("snapshot does not match its stamp")
            self._publish_rows(uids, names, rows)
        except Exception:
            log.warning("%s: snapshot not usable; reading the folder", self.path, exc_info=True)
            ul.reset()
            st.reset()
            kw.reset()
            self.files = {}
            self.infos = {}
            return False
        self.uidnext = ul.next_uid
        self._stamp = stamp
        return True

    def _publish_rows(self, uids: list[int], names: list[str], rows: tuple[Any, ...]) -> None:
        """:meth:`_publish` from a snapshot's columns (every present UID, in order)."""
        _, modseqs, idates, sizes, info_suffixes, extras = rows
        kw_names = self.keywords.names
        flag_cache: dict[object, frozenset[str]] = {}
        date_cache: dict[int, datetime.datetime] = {}
        infos: dict[int, MessageInfo] = {}
        # _new_info, inlined: this loop runs once per message of the folder.
        setters = _INFO_SETTERS or (None,) * 5
        set_uid, set_flags, set_date, set_size, set_modseq = setters
        new, cls = object.__new__, MessageInfo
        for uid, modseq, idate, size, suffix in zip(
            uids, modseqs, idates, sizes, info_suffixes, strict=True
        ):
            key = (suffix, extras.get(uid)) if extras else suffix
            flags = flag_cache.get(key)
            if flags is None:
                extra = extras.get(uid, ()) if extras else ()
                flags = flag_cache[key] = parse_info(suffix, kw_names) | frozenset(extra)
            date = date_cache.get(idate)
            if date is None:
                date = date_cache[idate] = _utc(idate)
            if set_uid is None:
                infos[uid] = _new_info(uid, flags, date, size, modseq)
                continue
            info = new(cls)
            set_uid(info, uid)
            set_flags(info, flags)
            set_date(info, date)
            set_size(info, size)
            set_modseq(info, modseq)
            infos[uid] = info
        self.files = dict(zip(uids, names, strict=True))
        self.infos = infos
        self.uidvalidity = self.uidlist.uidvalidity

    @staticmethod
    def make_info(uid: int, entry: Entry, names: list[str | None]) -> MessageInfo:
        """The :class:`MessageInfo` of a state entry."""
        return MessageInfo(
            uid=uid,
            flags=parse_info(entry.info, names) | entry.extra,
            internaldate=_utc(entry.internaldate),
            size=entry.size,
            modseq=entry.modseq,
        )

    def ensure_uidvalidity(self) -> int:
        """The folder's UIDVALIDITY, creating the uidlist if there is none yet."""
        if self.uidvalidity:
            return self.uidvalidity
        self.sync()
        return self.uidvalidity

    def delivery_uidvalidity(self) -> int:
        """The folder's UIDVALIDITY for a message just delivered, without reading the
        folder (a delivery must leave ``new/`` as it is): if there is no uidlist yet,
        an empty one is written, and the next reader's sync numbers the files."""
        known = self.uidvalidity or self.uidlist.peek_uidvalidity()
        if known:
            return known
        ul = self.uidlist
        with ul.lock(), self.mutex:
            ul.refresh()
            if not ul.exists:
                ul.create()
                ul.rewrite()
            return ul.uidvalidity

    def record_new(self, uid: int, name: str, extra: frozenset[str]) -> None:
        """Record keywords without letters for a message just given a UID (the
        caller holds the uidlist lock)."""
        with self.mutex:
            st = self.state
            st.refresh()
            st.start(self.uidlist.uidvalidity)
            modseq = st.next_modseq()
            entry = st.entries.get(uid)
            if entry is not None:
                st.record(uid, replace(entry, modseq=modseq, extra=extra))
            else:
                path = os.path.join(self.cur, name)
                base, info = split_name(name)
                size = name_size(base, "W")
                if size is None:
                    size = crlf_size_of(path)
                mtime = int(os.stat(path).st_mtime)
                st.record(uid, Entry(modseq, modseq, mtime, size, info, extra))
            st.commit()
            self._stamp = None

    def assign(self, bases: list[str]) -> dict[str, int]:
        """Give UIDs to files just made durable in this folder (the caller holds the
        uidlist lock): base name → UID."""
        with self.mutex:
            ul = self.uidlist
            ul.refresh()
            if not ul.exists:
                self.sync_locked()
            missing = [b for b in bases if b not in ul.by_base]
            if missing:
                first = ul.next_uid
                ul.append([UidRecord(first + i, b) for i, b in enumerate(missing)])
            return {b: ul.by_base[b].uid for b in bases}


class _MaildirAppendWriter(AppendWriter):
    """A message streamed into ``tmp/`` and delivered by rename."""

    def __init__(
        self,
        core: _Core,
        flags: frozenset[str],
        internaldate: datetime.datetime | None,
        assign_uid: bool,
    ) -> None:
        self._core = core
        self._flags = flags
        self._internaldate = internaldate
        self._assign_uid = assign_uid
        self._unique = unique_name()
        self._tmp = os.path.join(core.tmp, self._unique)
        self._conv = LFConverter()
        self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._failed = False
        self._base = self._name = ""
        self._extra: frozenset[str] = frozenset()

    def _write_all(self, data: bytes) -> None:
        write_all(self._fd, data)

    def write(self, chunk: bytes) -> None:
        """Add the next piece of the message (CRLF or LF line ends)."""
        if self._fd < 0:
            raise ValueError("append already committed or aborted")
        try:
            self._write_all(self._conv.feed(chunk))
        except BaseException:
            self.abort()
            raise

    def commit(self) -> AppendResult:
        """Make the message durable (file, then directory fsync) and visible."""
        if self.result is not None:
            return self.result
        directory = self._publish()
        if self._core.fsync:
            fsync_dir(directory)
        return self._finish()

    def _publish(self) -> str:
        """The first half of :meth:`commit`: fsync the file and rename it into place.
        Returns the directory it is now in, which must be fsynced before
        :meth:`_finish` (the caller may share that fsync between messages)."""
        if self._fd < 0:
            raise ValueError("append aborted")
        core = self._core
        try:
            self._write_all(self._conv.flush())
            if self._internaldate is not None:
                ts = self._internaldate.timestamp()
                os.utime(self._fd, (ts, ts))
            if core.fsync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            base = sized_name(self._unique, self._conv.disk_size, self._conv.crlf_size)
            extra: frozenset[str] = frozenset()
            if self._flags:
                keywords = keyword_letters_needed(self._flags)
                if keywords:
                    with core.uidlist.lock():
                        core.keywords.ensure(keywords)
                core.keywords.refresh()
                letters = core.keywords.letters()
                named, extra = split_flags(self._flags, letters)
                info = build_info(None, named, letters, core.keywords.names)
                directory, name = core.cur, file_name(base, info)
            else:
                directory, name = core.new, base
            os.rename(self._tmp, os.path.join(directory, name))
        except BaseException:
            self.abort()
            raise
        self._base, self._name, self._extra = base, name, extra
        return directory

    def _finish(self) -> AppendResult:
        """The second half of :meth:`commit`, once the directory is fsynced: the UID
        if asked for, and the result."""
        core = self._core
        base, name, extra = self._base, self._name, self._extra
        uid: int | None = None
        if self._assign_uid or extra:
            with core.uidlist.lock():
                uid = core.assign([base])[base]
                if extra:
                    core.record_new(uid, name, extra)
        uidvalidity = core.delivery_uidvalidity()
        self.result = AppendResult(uidvalidity=uidvalidity, uid=uid, size=self._conv.crlf_size)
        return self.result

    def abort(self) -> None:
        """Remove the temporary file."""
        if self.result is not None:
            return
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


class _BatchFile:
    """One message of :meth:`MaildirFolder.append_batch` while it is in ``tmp/``."""

    __slots__ = ("fd", "name", "path", "size")

    def __init__(self, fd: int, path: str, name: str, size: int) -> None:
        self.fd = fd  # -1 once closed
        self.path = path  # in tmp/
        self.name = name  # its name in new/
        self.size = size  # CRLF size

    def discard(self) -> None:
        """Close the file (if open) and remove it, ignoring errors (a delivery that
        failed part-way)."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def _apply_mode(old: frozenset[str], flags: frozenset[str], mode: FlagMode) -> frozenset[str]:
    lowered = {f.lower() for f in flags}
    if mode == "set":
        return flags
    if mode == "add":
        return old | frozenset(f for f in flags if f.lower() not in {o.lower() for o in old})
    return frozenset(f for f in old if f.lower() not in lowered)


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
        unseen = sum(1 for info in self._infos.values() if SEEN not in info.flags)
        return FolderStatus(
            messages=len(self._infos),
            uidvalidity=self._uidvalidity,
            uidnext=self._uidnext,
            highestmodseq=self._highest,
            unseen=unseen,
        )

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

    def open_message(self, uid: int) -> BinaryIO:
        """The message with CRLF line ends, streamed from the LF file."""
        self._check_open()
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
            return open_crlf(fd)
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
        return _MaildirAppendWriter(self._core, checked, internaldate, assign_uid)

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
        core = self._core
        sync = core.fsync
        outcomes: list[AppendResult | Exception | None] = [None] * len(messages)
        tmp_dir, new_dir = core.tmp + os.sep, core.new + os.sep
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        advise = getattr(os, "posix_fadvise", None) if sync else None
        # What is still in tmp/, by index; a file leaves it when renamed or when it
        # fails (and is removed).
        in_tmp: dict[int, _BatchFile] = {}
        try:
            # 1. Write every file, and start its writeback at once (so that the fsyncs
            #    below find the data on its way).
            for index, unique in enumerate(unique_names(len(messages))):
                data = messages[index].replace(b"\r\n", b"\n")  # as LFConverter does
                disk_size = len(data)
                crlf_size = disk_size + data.count(b"\n")
                path = tmp_dir + unique
                try:
                    fd = os.open(path, flags, 0o600)
                except Exception as exc:
                    outcomes[index] = exc
                    continue
                name = sized_name(unique, disk_size, crlf_size)
                in_tmp[index] = _BatchFile(fd, path, name, crlf_size)
                try:
                    written = os.write(fd, data)
                    if written < disk_size:
                        write_all(fd, memoryview(data)[written:])
                except Exception as exc:
                    in_tmp.pop(index).discard()
                    outcomes[index] = exc
                    continue
                if advise is not None:
                    with contextlib.suppress(OSError):  # only a hint
                        advise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            # 2. fsync every file (its data and inode) before any is renamed. Syncing
            #    them all first, rather than fsync-rename in turn, also leaves tmp/
            #    unchanged between the fsyncs: ext4 without a journal writes the parent
            #    directory of a newly created file with its fsync, so a rename out of
            #    tmp/ in between would cost every later fsync two more writes.
            for index, file in list(in_tmp.items()):
                try:
                    if sync:
                        os.fsync(file.fd)
                    fd, file.fd = file.fd, -1
                    os.close(fd)
                except Exception as exc:
                    in_tmp.pop(index).discard()
                    outcomes[index] = exc
            # 3. Rename each durable file into new/ (readers see it whole: a rename is
            #    atomic), then fsync new/ once for all of them.
            renamed: list[tuple[int, int]] = []
            for index, file in list(in_tmp.items()):
                try:
                    os.rename(file.path, new_dir + file.name)
                except Exception as exc:
                    in_tmp.pop(index).discard()
                    outcomes[index] = exc
                    continue
                del in_tmp[index]
                renamed.append((index, file.size))
            if renamed:
                try:
                    if sync:
                        fsync_dir(core.new)
                    uidvalidity = core.delivery_uidvalidity()
                except Exception as exc:
                    for index, _ in renamed:
                        outcomes[index] = exc
                else:
                    for index, size in renamed:
                        outcomes[index] = AppendResult(uidvalidity=uidvalidity, uid=None, size=size)
        except BaseException:
            # Interrupted (KeyboardInterrupt, ...): remove what is still in tmp/.
            for file in in_tmp.values():
                file.discard()
            raise
        # Every place holds a result or an exception by now.
        return cast(list[AppendResult | Exception], outcomes)

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
        core = self._core
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
                        new = _apply_mode(old, wanted, mode)
                        if {f.lower() for f in new} == {f.lower() for f in old}:
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
                core._stamp = None
            if renamed and core.fsync:
                fsync_dir(core.cur)
        for done in result:
            if done.uid in self._infos:
                self._infos[done.uid] = done
        self._sorted = None
        return result, failed

    def copy(self, uids: Collection[int], target: Folder) -> dict[int, int]:
        """Copy messages (hard links when possible) keeping flags and INTERNALDATE;
        returns source UID → new UID."""
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
            return {}
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
                new_base = self._copy_one(src, dst, name, info.size, new_info)
                if new_base is not None:
                    copied.append((uid, new_base))
                    if extra:
                        extras[new_base] = (file_name(new_base, new_info), extra)
            if copied and dst.fsync:
                fsync_dir(dst.cur)
            assigned = dst.assign([b for _, b in copied])
            for new_base, (new_name, extra) in extras.items():
                dst.record_new(assigned[new_base], new_name, extra)
        return {uid: assigned[base] for uid, base in copied}

    @staticmethod
    def _copy_one(src: _Core, dst: _Core, name: str, size: int, new_info: str) -> str | None:
        base = split_name(name)[0]
        for _ in range(_RENAME_RETRIES):
            source = os.path.join(src.cur, name)
            try:
                disk = name_size(base, "S")
                if disk is None:
                    disk = os.stat(source).st_size
                new_base = sized_name(unique_name(), disk, size)
                target = os.path.join(dst.cur, file_name(new_base, new_info))
                try:
                    os.link(source, target)
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                        raise
                    _copy_file(source, dst, target, fsync=dst.fsync)
                return new_base
            except FileNotFoundError:
                found = src.find(base)
                if found is None:
                    return None
                name = found
        return None

    def _copy_generic(self, uids: Collection[int], target: Folder) -> dict[int, int]:
        mapping: dict[int, int] = {}
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
            if result.uid is not None:
                mapping[uid] = result.uid
        return mapping

    def move(self, uids: Collection[int], target: Folder) -> dict[int, int]:
        """Copy, then expunge the originals (whatever their flags)."""
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
                core._stamp = None
                if core.fsync:
                    fsync_dir(core.cur)
                core._maybe_compact_uidlist()
        for uid in removed:
            self._infos.pop(uid, None)
        self._sorted = None
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
                infos[uid]
                for uid in ordered
                if uid in old and old[uid].modseq != infos[uid].modseq
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
        if modseq < forgotten:
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
        )

    def close(self) -> None:
        """Release the handle."""
        self._closed = True
        self._infos = {}
        self._sorted = None


def _copy_file(source: str, dst: _Core, target: str, *, fsync: bool) -> None:
    """Copy a message file through ``tmp/`` when a hard link is not possible."""
    tmp = os.path.join(dst.tmp, unique_name())
    st = os.stat(source)
    try:
        with open(source, "rb") as fin, open(tmp, "xb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 16)
            fout.flush()
            os.utime(fout.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))
            if fsync:
                os.fsync(fout.fileno())
        os.rename(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class MaildirStore(Store):
    """A user's Maildir: ``root`` is INBOX, Maildir++ subfolders beside it.

    :param root: the Maildir directory (created with ``tmp/``, ``new/`` and ``cur/``
        when ``create`` is true; :class:`FileNotFoundError` otherwise if missing).
    :param max_workers: threads of the store's executor (:meth:`mailagents.store.Store.run`).
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
        fsync: bool = True,
    ) -> None:
        super().__init__(max_workers=max_workers)
        self.root = os.path.abspath(os.fspath(root))
        self.fsync = fsync
        if create:
            _make_maildir(self.root, folder=False, exist_ok=True)
        elif not os.path.isdir(os.path.join(self.root, "cur")):
            raise FileNotFoundError(errno.ENOENT, "not a Maildir", self.root)
        self._cores: dict[str, _Core] = {}
        self._cores_lock = threading.Lock()

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

    def _existing(self) -> list[tuple[str, ...]]:
        """Levels of every folder directory (not INBOX)."""
        found = []
        for name in os.listdir(self.root):
            levels = parse_dir_name(name)
            if levels is None:
                continue
            if levels[0].upper() == INBOX and (len(levels) == 1 or levels[0] != INBOX):
                continue  # ".INBOX" would shadow the root; ".inbox.x" is not canonical
            if dir_name(levels) != name:
                continue  # not the canonical encoding of its name
            if os.path.isdir(os.path.join(self.root, name)):
                found.append(levels)
        return found

    # -- folders ---------------------------------------------------------------------

    def folders(self) -> list[FolderInfo]:
        """Every folder: INBOX first, then by name; parents that exist only as a
        level of a deeper name are listed ``\\Noselect``."""
        existing = set(self._existing())
        every = set(existing)
        for levels in existing:
            for i in range(2 if levels[0] == INBOX else 1, len(levels)):
                every.add(levels[:i])
        every.add(())
        parents = {levels[:i] for levels in every for i in range(1, len(levels))}
        special = self._special_use()
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
            self._set_special_use(api_name(levels), special_use)

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
        existing = self._existing()
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
        old_name, new_name = api_name(old_levels), api_name(new_levels)

        def rename(name: str) -> str:
            if name == old_name:
                return new_name
            if name.startswith(old_name + "/"):
                return new_name + name[len(old_name) :]
            return name

        subs = self._read_subscriptions()
        if any(rename(s) != s for s in subs):
            with self._subscriptions_lock():
                self._write_subscriptions([rename(s) for s in self._read_subscriptions()])
        explicit = self._read_special_use()
        if any(rename(n) != n for n in explicit.values()):
            with DotLock(os.path.join(self.root, SPECIAL_USE_FILE + ".lock")):
                current = self._read_special_use()
                self._write_special_use({a: rename(n) for a, n in current.items()})

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
            if any(lv[: len(levels)] == levels for lv in self._existing()):
                raise StoreError(f"{name!r} is \\Noselect and has children")
            raise FolderNotFoundError(name)
        trash = os.path.join(self.root, "..mailagents-trash-" + unique_name())
        os.rename(path, trash)
        if self.fsync:
            fsync_dir(self.root)
        self._forget([path])
        shutil.rmtree(trash, ignore_errors=True)
        explicit = self._read_special_use()
        if api_name(levels) in explicit.values():
            with DotLock(os.path.join(self.root, SPECIAL_USE_FILE + ".lock")):
                current = self._read_special_use()
                self._write_special_use({a: n for a, n in current.items() if n != api_name(levels)})

    # -- subscriptions ---------------------------------------------------------------

    def _subscriptions_lock(self) -> DotLock:
        return DotLock(os.path.join(self.root, SUBSCRIPTIONS + ".lock"), stale_after=30.0)

    def _read_subscriptions(self) -> list[str]:
        try:
            with open(os.path.join(self.root, SUBSCRIPTIONS), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        names: list[str] = []
        if data.startswith(_V2_HEADER):
            for raw in data[len(_V2_HEADER) :].split(b"\n"):
                if not raw:
                    continue
                levels = [_tab_unescape(p) for p in raw.decode("utf-8", "replace").split("\t")]
                self._add_subscription(names, levels)
        else:
            for raw in data.split(b"\n"):
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                levels = line.split("/") if "/" in line else line.split(".")
                self._add_subscription(names, levels)
        return names

    @staticmethod
    def _add_subscription(names: list[str], levels: list[str]) -> None:
        decoded = []
        for level in levels:
            try:
                decoded.append(decode_mutf7(level))
            except ValueError:
                decoded.append(level)
        try:
            name = api_name(folder_levels("/".join(decoded)))
        except InvalidFolderNameError:
            return
        if name not in names:
            names.append(name)

    def _write_subscriptions(self, names: list[str]) -> None:
        lines = []
        for name in names:
            levels = folder_levels(name) or (INBOX,)
            lines.append("\t".join(_tab_escape(encode_mutf7(lv)) for lv in levels) + "\n")
        data = _V2_HEADER + "".join(lines).encode("utf-8")
        _write_file_atomic(os.path.join(self.root, SUBSCRIPTIONS), data, fsync=self.fsync)

    def subscribe(self, name: str) -> None:
        """Add to ``subscriptions`` (the folder need not exist)."""
        canonical = api_name(folder_levels(name))
        with self._subscriptions_lock():
            names = self._read_subscriptions()
            if canonical not in names:
                self._write_subscriptions([*names, canonical])

    def unsubscribe(self, name: str) -> None:
        """Remove from ``subscriptions``."""
        canonical = api_name(folder_levels(name))
        with self._subscriptions_lock():
            names = self._read_subscriptions()
            if canonical in names:
                self._write_subscriptions([n for n in names if n != canonical])

    def subscriptions(self) -> list[str]:
        """Subscribed folder names, in file order."""
        return self._read_subscriptions()

    # -- special-use -----------------------------------------------------------------

    def _read_special_use(self) -> dict[str, str]:
        """Explicit attribute → folder name."""
        try:
            with open(os.path.join(self.root, SPECIAL_USE_FILE), encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return {}
        result = {}
        for line in text.splitlines():
            attr, sep, name = line.partition("\t")
            if sep and attr in SPECIAL_USE and name:
                result[attr] = name
        return result

    def _write_special_use(self, mapping: dict[str, str]) -> None:
        data = "".join(f"{a}\t{n}\n" for a, n in sorted(mapping.items())).encode("utf-8")
        _write_file_atomic(os.path.join(self.root, SPECIAL_USE_FILE), data, fsync=self.fsync)

    def _set_special_use(self, name: str, attribute: str) -> None:
        with DotLock(os.path.join(self.root, SPECIAL_USE_FILE + ".lock")):
            mapping = {a: n for a, n in self._read_special_use().items() if n != name}
            mapping[attribute] = name
            self._write_special_use(mapping)

    def _special_use(self) -> dict[str, str]:
        """Folder name → special-use attribute, defaults included."""
        explicit = self._read_special_use()
        result = {n: a for a, n in explicit.items()}
        for name, attr in _DEFAULT_SPECIAL_USE.items():
            if attr not in explicit and name not in result:
                result[name] = attr
        return result

    def close(self) -> None:
        """Stop the executor and forget cached folder state."""
        super().close()
        with self._cores_lock:
            self._cores.clear()


_TAB_ESCAPES = {"\x01": "\x011", "\t": "\x01t", "\r": "\x01r", "\n": "\x01n"}
_TAB_UNESCAPES = {"1": "\x01", "t": "\t", "r": "\r", "n": "\n"}


def _tab_escape(text: str) -> str:
    return "".join(_TAB_ESCAPES.get(ch, ch) for ch in text)


def _tab_unescape(text: str) -> str:
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\x01" and i + 1 < len(text):
            out.append(_TAB_UNESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)
