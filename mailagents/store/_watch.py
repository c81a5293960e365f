"""Finding changes that other programs make to the folders (Postfix, Dovecot,
procmail, a hand ``mv`` into ``new/``): the blocking-free core of the process's
watcher. Changes made through this process's own store handles reach the sessions
through the hub (:mod:`mailagents.store._hub`) directly.

One :class:`Watcher` per process holds one inotify descriptor (Linux, see
:mod:`mailagents.store._watch_inotify`) or, elsewhere, a stat snapshot per folder (see
:mod:`mailagents.store._watch_poll`); a folder watched by many sessions is watched
once (:meth:`Watcher.add` counts its users, :meth:`Watcher.remove` drops the watch
with the last). What it watches:

- Maildir: the directories ``new/`` and ``cur/`` (a delivery, a flag change, an
  expunge), and in the folder's directory the entries ``dovecot-uidlist``, ``new`` and
  ``cur`` (UIDs given by another program; a directory replaced, which is watched again);
- mbox: the file (written, truncated, its status changed), and in its directory the
  file's own name (the file replaced by a rename, then watched again) and its side
  index's (flags changed by another process of ours). An event only
  makes the watcher stat the file: only a changed signature (size, times, inode) is
  reported, so that finding out that nothing changed never takes the mbox's lock.

Nothing here blocks or sleeps: the process's event loop (``mailagents.aio._watching``)
waits for :meth:`Watcher.fileno` to be readable and then calls
:meth:`Watcher.read_changes`, and calls :meth:`Watcher.poll_changes` every so often
for the folders inotify does not cover (all of them without inotify). Both return the
keys (see :func:`~mailagents.store._hub.folder_key`) of the folders that changed,
each once however many events it had (a burst is one change).
"""

from __future__ import annotations

import logging
import os
import stat as stat_module
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mailagents.store._hub import folder_key
from mailagents.store._watch_inotify import (
    IN_ATTRIB,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_MODIFY,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_Q_OVERFLOW,
    Inotify,
    available,
)
from mailagents.store._watch_poll import UIDLIST, FolderProbe, mbox_index

__all__ = ["MAX_FOLDERS", "Watcher"]

log = logging.getLogger(__name__)

MAX_FOLDERS = 8192
"""Folders one watcher watches at most by default (each takes up to four inotify
watches; Linux allows 8,192 watches per user by default on older kernels)."""

# One mask for every watched path (inotify keeps one mask per path and inode).
_MASK = (
    IN_CREATE
    | IN_DELETE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_MODIFY
    | IN_CLOSE_WRITE
    | IN_ATTRIB
    | IN_DELETE_SELF
    | IN_MOVE_SELF
)


@dataclass(slots=True, eq=False)
class _Path:
    """One watched path and the folders that use it: key -> the entry names that
    count (``None``: every event on the path itself counts)."""

    path: str
    wd: int
    users: dict[str, frozenset[str] | None] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class _Folder:
    key: str
    probe: FolderProbe
    mbox: bool
    own: tuple[str, ...]  # paths watched themselves (new/ and cur/, or the mbox)
    parent: str  # the directory watched for the names below
    names: frozenset[str]
    users: int = 0
    watched: bool = False  # inotify covers it (else it is polled)


class Watcher:
    """The folders watched by this process, and how their changes are found.

    ``inotify``: use inotify (``None``: where available). ``max_folders`` bounds the
    folders watched at once (:meth:`add` raises :exc:`OSError` beyond it). ``clock``
    (wall-clock nanoseconds) is for the stat snapshots' coarse-timestamp rule."""

    def __init__(
        self,
        *,
        inotify: bool | None = None,
        max_folders: int = MAX_FOLDERS,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if max_folders < 1:
            raise ValueError("max_folders must be at least 1")
        self.max_folders = max_folders
        """Folders watched at once, at most."""
        self._clock = clock
        self._folders: dict[str, _Folder] = {}
        self._paths: dict[str, _Path] = {}
        self._by_wd: dict[int, _Path] = {}
        self._inotify: Inotify | None = None
        if inotify or (inotify is None and available()):
            try:
                self._inotify = Inotify()
            except OSError as exc:
                if inotify:
                    raise
                log.warning("inotify unavailable (%s): polling the folders instead", exc)

    @property
    def mode(self) -> str:
        """``"inotify"`` or ``"poll"``."""
        return "inotify" if self._inotify is not None else "poll"

    def fileno(self) -> int | None:
        """The inotify descriptor to wait on (readable: call :meth:`read_changes`), or
        ``None`` when polling."""
        return self._inotify.fileno() if self._inotify is not None else None

    def __len__(self) -> int:
        return len(self._folders)

    def users(self, key: str) -> int:
        """How many :meth:`add` calls without their :meth:`remove` the folder has."""
        folder = self._folders.get(key)
        return folder.users if folder is not None else 0

    @property
    def polled(self) -> frozenset[str]:
        """The folders that :meth:`poll_changes` looks at: every folder when polling,
        those whose inotify watches could not be set otherwise."""
        return frozenset(k for k, f in self._folders.items() if not f.watched)

    # --- adding and removing ---------------------------------------------------------

    def add(self, path: str | os.PathLike[str]) -> str:
        """Watch the folder at ``path`` (a Maildir folder's directory or an mbox file)
        for one more user; returns its key. The first user sets the watches up."""
        key = folder_key(path)
        folder = self._folders.get(key)
        if folder is None:
            if len(self._folders) >= self.max_folders:
                raise OSError(f"the watcher watches {self.max_folders} folders already")
            folder = self._make(key)
            self._folders[key] = folder
            if self._inotify is not None:
                folder.watched = self._watch(folder)
        folder.users += 1
        return key

    def _make(self, key: str) -> _Folder:
        probe = FolderProbe(key, clock=self._clock)
        try:
            is_dir = stat_module.S_ISDIR(os.stat(key).st_mode)
        except OSError:
            is_dir = False
        if is_dir:
            return _Folder(
                key=key,
                probe=probe,
                mbox=False,
                own=(os.path.join(key, "new"), os.path.join(key, "cur")),
                parent=key,
                names=frozenset({"new", "cur", UIDLIST}),
            )
        parent, name = os.path.split(key)
        index = os.path.basename(mbox_index(key))
        return _Folder(
            key=key,
            probe=probe,
            mbox=True,
            own=(key,),
            parent=parent,
            names=frozenset({name, index}),
        )

    def _watch(self, folder: _Folder) -> bool:
        """Set the folder's inotify watches up; False (and none kept) if one failed."""
        done: list[str] = []
        try:
            for path in folder.own:
                self._use(path, folder.key, None)
                done.append(path)
            self._use(folder.parent, folder.key, folder.names)
            done.append(folder.parent)
        except OSError as exc:
            log.info("cannot watch %s (%s): polling it", folder.key, exc)
            for path in done:
                self._unuse(path, folder.key)
            return False
        return True

    def _use(self, path: str, key: str, names: frozenset[str] | None) -> None:
        assert self._inotify is not None
        entry = self._paths.get(path)
        if entry is None:
            wd = self._inotify.add(path, _MASK)
            entry = self._by_wd.get(wd)  # the same inode under another name
            if entry is None:
                entry = _Path(path=path, wd=wd)
                self._by_wd[wd] = entry
            self._paths[path] = entry
        users = entry.users
        if names is None or (key in users and users[key] is None):
            users[key] = None  # every event on the path counts for the folder
        else:
            users[key] = names | (users.get(key) or frozenset())

    def _unuse(self, path: str, key: str) -> None:
        entry = self._paths.get(path)
        if entry is None:
            return
        entry.users.pop(key, None)
        if not entry.users:
            del self._paths[path]
            if not any(e is entry for e in self._paths.values()):
                self._by_wd.pop(entry.wd, None)
                if self._inotify is not None:
                    self._inotify.remove(entry.wd)

    def remove(self, key: str) -> None:
        """One user of the folder ``key`` is done; the last one's call drops the
        watches. A key not watched is ignored."""
        folder = self._folders.get(key)
        if folder is None:
            return
        folder.users -= 1
        if folder.users > 0:
            return
        del self._folders[key]
        if folder.watched:
            for path in (*folder.own, folder.parent):
                self._unuse(path, key)

    # --- finding changes -------------------------------------------------------------

    def read_changes(self, max_reads: int = 16) -> set[str]:
        """The folders that changed according to the inotify events queued now (at
        most ``max_reads`` reads of the descriptor: call again while it stays
        readable). Empty when polling. Never blocks."""
        ino = self._inotify
        if ino is None:
            return set()
        hinted: set[str] = set()
        rewatch: set[str] = set()
        for event in ino.read(max_reads):
            if event.mask & IN_Q_OVERFLOW:
                # Events were lost: every folder may have changed.
                hinted.update(self._folders)
                continue
            entry = self._by_wd.get(event.wd)
            if entry is None:
                continue
            if event.mask & IN_IGNORED:
                # The watched inode is gone (removed, or its file system unmounted).
                self._by_wd.pop(event.wd, None)
                if self._paths.get(entry.path) is entry:
                    del self._paths[entry.path]
                rewatch.update(entry.users)
                hinted.update(entry.users)
                continue
            for key, names in entry.users.items():
                if names is None:
                    hinted.add(key)
                elif event.name in names:
                    hinted.add(key)
                    if event.mask & (IN_CREATE | IN_MOVED_TO) and event.name != UIDLIST:
                        rewatch.add(key)  # new/, cur/ or the mbox itself replaced
        for key in rewatch:
            self._rewatch(key)
        changed: set[str] = set()
        for key in hinted:
            folder = self._folders.get(key)
            if folder is None:
                continue
            if folder.mbox:
                # Stat first: only a changed signature is news (never the lock).
                if folder.probe.check(hint=True):
                    changed.add(key)
            else:
                folder.probe.take()
                changed.add(key)
        return changed

    def _rewatch(self, key: str) -> None:
        """Watch the folder's paths again after one of them was replaced."""
        folder = self._folders.get(key)
        if folder is None or self._inotify is None:
            return
        for path in folder.own:
            entry = self._paths.get(path)
            try:
                wd = self._inotify.add(path, _MASK)
            except OSError:
                continue  # gone for now; its parent's events bring it back
            if entry is not None and entry.wd == wd:
                continue
            if entry is not None:
                entry.users.pop(key, None)
                if not entry.users:
                    self._paths.pop(path, None)
            fresh = self._by_wd.get(wd)
            if fresh is None:
                fresh = _Path(path=path, wd=wd)
                self._by_wd[wd] = fresh
            fresh.users[key] = None
            self._paths[path] = fresh

    def poll_changes(self) -> set[str]:
        """Stat the folders in :attr:`polled`: those whose files' signatures changed
        (one ``stat(2)`` per file, no lock, no read)."""
        return {k for k, f in self._folders.items() if not f.watched and f.probe.check()}

    def stop_inotify(self) -> set[str]:
        """Give inotify up (its descriptor failed): close it and poll every folder
        from now on. Returns every folder's key: events may have been lost, so each
        may have changed."""
        ino, self._inotify = self._inotify, None
        self._paths.clear()
        self._by_wd.clear()
        for folder in self._folders.values():
            folder.watched = False
            folder.probe.take()
        if ino is not None:
            ino.close()
        return set(self._folders)

    def close(self) -> None:
        """Drop every watch and close the inotify descriptor."""
        self._folders.clear()
        self._paths.clear()
        self._by_wd.clear()
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
