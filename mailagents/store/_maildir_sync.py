"""Maildir sync: what one process knows of a folder directory (:class:`_Core`), kept
up to date by scanning ``new/`` and ``cur/`` and by the ``dovecot-uidlist`` it shares
with Dovecot.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from mailagents.store import _maildir_snapshot
from mailagents.store._maildir_flags import _INFO_SETTERS, _new_info
from mailagents.store._maildir_io import crlf_size_of
from mailagents.store._maildir_listing import DirListing, list_names
from mailagents.store._maildir_names import name_size, parse_info, sort_key, split_name
from mailagents.store._maildir_state import Entry, ModseqState
from mailagents.store._maildir_uidlist import Keywords, UidList, UidRecord
from mailagents.store._model import FolderNotFoundError, MessageInfo

if TYPE_CHECKING:
    from mailagents.store.maildir import MaildirStore

# The public module's logger, as before the split (its name is what users configure).
log = logging.getLogger("mailagents.store.maildir")

_RECENT_WINDOW_NS = 2_000_000_000  # directories changed this recently are always rescanned
# A file left in tmp/ this long is debris of a crashed writer (Dovecot's rule: 36 hours),
# looked for at most once an hour per folder, by readers.
TMP_MAX_AGE = 36 * 3600
_TMP_CHECK_EVERY = 3600.0
SNAPSHOT_MIN = 1_000
"""Folders with at least this many messages get a ``mailagents-snapshot``."""


def _utc(ts: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC)


def _zoned(date: datetime.datetime, minutes: int) -> datetime.datetime:
    """``date`` in the time zone ``minutes`` east of UTC."""
    return date.astimezone(datetime.timezone(datetime.timedelta(minutes=minutes)))


def _apply_zones(infos: dict[int, MessageInfo], tzoffs: dict[int, int]) -> None:
    """Give the INTERNALDATEs their APPEND time zone (see ``mailagents-modseq``)."""
    for uid, minutes in tzoffs.items():
        info = infos.get(uid)
        if info is not None and info.internaldate.utcoffset() != datetime.timedelta(
            minutes=minutes
        ):
            infos[uid] = replace(info, internaldate=_zoned(info.internaldate, minutes))


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


def _files_key(stamp: _Stamp) -> _Stamp:
    """The part of a stamp that inotify does not watch: which directories (device and
    inode, not their times) and the state files as they are."""
    cur, new = stamp[0], stamp[1]
    return (cur[:2] if cur else None, new[:2] if new else None, *stamp[2:])


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
        # cur/ and new/ as inotify keeps them, and the files key (_files_key) when
        # files and infos were last known to match the disk; see _unchanged.
        self._cur_listing = DirListing(self.cur)
        self._new_listing = DirListing(self.new)
        self._fast_key: _Stamp | None = None

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

    def _unchanged(self, stamp: _Stamp) -> bool:
        """Whether, by inotify, nothing changed in cur/ and new/ since :attr:`files`
        matched them but what :attr:`files` already says (our own renames and
        unlinks), and the state files are as they were then."""
        if self._fast_key is None or self._fast_key != _files_key(stamp):
            return False
        new = self._new_listing.changes()
        if new is None or new[1]:
            return False
        cur = self._cur_listing.changes()
        if cur is None:
            return False
        by_base, expunged, files = self.uidlist.by_base, self.state.expunged, self.files
        for base, name in cur[0].items():
            rec = by_base.get(base)
            known = None if rec is None or rec.uid in expunged else files.get(rec.uid)
            if known != name:
                return False
        return True

    def rekey(self) -> None:
        """After a change of our own under the uidlist lock that left :attr:`files` and
        :attr:`infos` matching the disk: the next sync may skip the scan."""
        self._stamp = None
        try:
            self._fast_key = _files_key(self._stamp_now()[0])
        except FileNotFoundError:
            self._fast_key = None

    def forget(self) -> None:
        """The next sync reads everything (the state files were read or written without
        bringing :attr:`files` and :attr:`infos` up to date)."""
        self._stamp = None
        self._fast_key = None

    def _listed(self, listing: DirListing, *, from_disk: bool = False) -> dict[str, str]:
        """base name → file name in the listing's directory, now (``from_disk``: listed
        from the disk itself, whatever inotify says)."""
        try:
            found = None if from_disk else listing.current()
            if found is None:
                found = list_names(listing.path)
        except FileNotFoundError:
            self._check_exists()
            raise
        files, duplicate = found
        if duplicate:
            log.warning("%s: two files for one base name; using the first listed", listing.path)
        return files

    def _move_new(self) -> bool:
        """Move the files of new/ to cur/; returns whether there were any."""
        moved = False
        for name in self._listed(self._new_listing).values():
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
                    log.info(
                        "%s: removed %s, left in tmp/ since %s",
                        self.path,
                        entry.name,
                        _utc(int(st.st_mtime)).isoformat(),
                    )
            except OSError:
                continue

    def _check_exists(self) -> None:
        if not os.path.isdir(self.path):
            raise FolderNotFoundError(f"folder directory gone: {self.path}")

    def _scan(self) -> tuple[dict[str, str], bool]:
        """Move new/ to cur/, then list cur/ (as inotify keeps it, where it can): base
        name → file name, and whether new/ had files."""
        moved = self._move_new()
        return self._listed(self._cur_listing), moved

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
        # Gone: what the state knows as live. A uidlist record the state does not know
        # (its expunge forgotten by the bounded log, or a message another program added
        # and removed before we saw it) was never shown live since the log's start:
        # reporting it again would only bump HIGHESTMODSEQ for nothing.
        missing = {u for u in entries if u not in present}
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
            if (settled and stamp == self._stamp) or self._unchanged(stamp):
                return
            self._fast_key = None
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
                    self._fast_key = _files_key(stamp)
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
            if (settled and stamp == self._stamp) or self._unchanged(stamp):
                return
            self._fast_key = None
            ul, st = self.uidlist, self.state
            ul.refresh()
            kw_changed = self.keywords.refresh()
            st.refresh()
            new_uidlist = not ul.exists
            if new_uidlist:
                ul.create()
            st.start(ul.uidvalidity, new_folder=new_uidlist)
            files, _ = self._scan()
            plan = self._plan(files)
            if plan.missing:
                # A file being renamed by another program can be missed by one listing:
                # look again before calling anything expunged.
                self._move_new()
                again = self._listed(self._cur_listing, from_disk=True)
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
            self.rekey()

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
        if st.tzoffs:
            _apply_zones(infos, st.tzoffs)
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
        if self.state.tzoffs:
            _apply_zones(infos, self.state.tzoffs)
        self.files = dict(zip(uids, names, strict=True))
        self.infos = infos
        self.uidvalidity = self.uidlist.uidvalidity

    def make_info(self, uid: int, entry: Entry, names: list[str | None]) -> MessageInfo:
        """The :class:`MessageInfo` of a state entry."""
        date = _utc(entry.internaldate)
        minutes = self.state.tzoffs.get(uid)
        if minutes:
            date = _zoned(date, minutes)
        return MessageInfo(
            uid=uid,
            flags=parse_info(entry.info, names) | entry.extra,
            internaldate=date,
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
                # The journal too, empty: no MODSEQ was handed out under this new
                # UIDVALIDITY, which the next reader could not tell from a lost journal.
                self.state.start(ul.uidvalidity, new_folder=True)
                self.state.commit()
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
            self.forget()

    def record_zones(self, zones: dict[int, int]) -> None:
        """Keep the INTERNALDATE time zones (UID → minutes east of UTC) of messages
        just given UIDs (the caller holds the uidlist lock)."""
        with self.mutex:
            st = self.state
            st.refresh()
            st.start(self.uidlist.uidvalidity)
            for uid, minutes in zones.items():
                st.set_tz(uid, minutes)
            st.commit()
            self.forget()

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
