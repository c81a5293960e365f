"""Listings of Maildir directories kept up to date by ``inotify(7)``, so that a sync
does not list ``cur/`` (a thousand file names cost about a millisecond) to learn what
it mostly knows already.

Why directory timestamps are not enough: a directory changed twice within one tick of
the kernel's file-time clock keeps one ``mtime``, so a reader that saw the first change
cannot tell the second from its timestamps; :mod:`~mailagents.store._maildir_sync`
therefore lists any directory changed within the last two seconds again on every
sync, and a busy folder is always one. inotify has no such blind spot: the kernel
queues a folder's events inside the ``rename``, ``link`` or ``unlink`` call that makes
them, so after a read of the queue every change that had completed is known.

One :class:`Inotify` descriptor serves the whole process (the per-user limit of
descriptors is small, 128 by default); each :class:`DirListing` adds a watch on its
directory, lists the directory once after the watch is in place, and applies each
event (created, moved in: present; deleted, moved out: gone) to that listing. Events
that reached the queue before the listing are applied too: each says the final state
of one name, so applying them again changes nothing. A queue overflow, a watch the
kernel dropped (the directory removed or moved), a fork, or a second file for one base
name make a listing *invalid*: its next use lists the directory again. Where inotify is
missing or its limits are reached, :meth:`DirListing.current` returns ``None`` and the
caller lists the directory itself.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref

from mailagents.store._watch_inotify import (
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
    Inotify,
    available,
)

_MASK = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF
_ADDED = IN_CREATE | IN_MOVED_TO
_REMOVED = IN_DELETE | IN_MOVED_FROM
_LOST = IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF
_MAX_READS = 8
"""Reads of the queue in one pump at most (each up to 16 reads of 64 KiB)."""


def list_names(path: str) -> tuple[dict[str, str], bool]:
    """``path`` listed: base name (before ``:``) → file name, skipping names that start
    with ``.``; and whether some base name had two files (the first listed is kept)."""
    files: dict[str, str] = {}
    duplicate = False
    for name in os.listdir(path):
        if name.startswith("."):
            continue
        base = name.partition(":")[0]
        if base in files:
            duplicate = True
            continue
        files[base] = name
    return files, duplicate


class DirListing:
    """The files of one directory, as :func:`list_names` would list them now."""

    __slots__ = ("__weakref__", "_changed", "_files", "_valid", "_wd", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self._files: dict[str, str] = {}
        self._changed: set[str] = set()
        self._valid = False
        self._wd: int | None = None

    def current(self) -> tuple[dict[str, str], bool] | None:
        """What :func:`list_names` returns for the directory now (a copy), from the
        kept listing when it is valid; ``None`` when the directory cannot be watched
        (the caller lists it itself). Forgets the changed names. Raises
        :exc:`FileNotFoundError` when the directory is gone."""
        with _HUB.lock:
            if not _HUB.pump() or not self._ensure():
                return None
            self._changed.clear()
            if self._valid:
                return dict(self._files), False
        return list_names(self.path)

    def changes(self) -> tuple[dict[str, str | None], int] | None:
        """The base names whose files changed since the last :meth:`current` or
        :meth:`changes`, each with its file name now (``None``: gone), and how many
        files the directory holds; ``None`` when the listing is not valid (then only
        :meth:`current` says what is there)."""
        with _HUB.lock:
            if not _HUB.pump() or not self._valid or self._wd is None:
                return None
            changed = {base: self._files.get(base) for base in self._changed}
            self._changed.clear()
            return changed, len(self._files)

    # -- under the hub's lock --------------------------------------------------------

    def _ensure(self) -> bool:
        """Watched, and listed if the listing was not valid; ``False`` if this
        directory cannot be watched."""
        if self._wd is None:
            wd = _HUB.add(self)
            if wd is None:
                return False
            self._wd = wd
        if not self._valid:
            files, duplicate = list_names(self.path)
            self._files = files
            self._valid = not duplicate
        return True

    def _apply(self, mask: int, name: str) -> None:
        if not name or name.startswith("."):
            return
        base = name.partition(":")[0]
        if mask & _ADDED:
            known = self._files.get(base)
            if known is not None and known != name:
                self._valid = False  # two files for one base: list_names decides
            self._files[base] = name
            self._changed.add(base)
        elif mask & _REMOVED:
            if self._files.get(base) == name:
                del self._files[base]
            self._changed.add(base)

    def _lose(self) -> None:
        """The watch is gone (or never to be trusted again): list again next time."""
        self._valid = False
        self._wd = None


class _Hub:
    """The process's one inotify descriptor and the listings on its watches."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._inotify: Inotify | None = None
        self._broken = not available()
        self._by_wd: dict[int, list[weakref.ref[DirListing]]] = {}
        self._dead: list[int] = []

    def add(self, listing: DirListing) -> int | None:
        """Watch the listing's directory; ``None`` if inotify cannot (missing, or out
        of descriptors or watches). :exc:`FileNotFoundError` if it is gone."""
        if self._broken:
            return None
        if self._inotify is None:
            try:
                self._inotify = Inotify()
            except OSError:
                self._broken = True
                return None
        try:
            wd = self._inotify.add(listing.path, _MASK | IN_ONLYDIR)
        except OSError as exc:
            if not os.path.isdir(listing.path):
                raise FileNotFoundError(listing.path) from exc
            return None  # the limit of watches: this directory is listed each time
        refs = self._by_wd.setdefault(wd, [])
        refs[:] = [r for r in refs if r() is not None]
        dead = self._dead

        def died(_ref: weakref.ref[DirListing]) -> None:
            dead.append(wd)  # at garbage collection, maybe under the lock: no lock here

        refs.append(weakref.ref(listing, died))
        return wd

    def pump(self) -> bool:
        """Apply the queued events to their listings; ``False`` if inotify is not
        used here at all."""
        if self._broken:
            return False
        ino = self._inotify
        if ino is None:
            return True
        while self._dead:
            wd = self._dead.pop()
            refs = self._by_wd.get(wd)
            if refs is not None:
                refs[:] = [r for r in refs if r() is not None]
                if not refs:
                    del self._by_wd[wd]
                    ino.remove(wd)
        for _ in range(_MAX_READS):
            events = ino.read()
            if not events:
                break
            for event in events:
                if event.mask & IN_Q_OVERFLOW:
                    self._lose_all()
                    continue
                refs = self._by_wd.get(event.wd)
                if refs is None:
                    continue
                for ref in refs:
                    listing = ref()
                    if listing is None:
                        continue
                    if event.mask & _LOST:
                        listing._lose()
                    else:
                        listing._apply(event.mask, event.name)
                if event.mask & IN_IGNORED:
                    del self._by_wd[event.wd]
        else:
            # More than a bound's worth queued: what is left is applied next time, and
            # until then no listing can say it is complete.
            self._lose_all()
        return True

    def _lose_all(self) -> None:
        for refs in self._by_wd.values():
            for ref in refs:
                listing = ref()
                if listing is not None:
                    listing._valid = False

    def after_fork(self) -> None:
        """In a forked child: the descriptor is the parent's too, and its events are
        not ours to take; start over with a new one."""
        self.lock = threading.Lock()
        for refs in self._by_wd.values():
            for ref in refs:
                listing = ref()
                if listing is not None:
                    listing._lose()
        self._by_wd = {}
        self._dead = []
        if self._inotify is not None:
            with contextlib.suppress(OSError):
                self._inotify.close()
            self._inotify = None


_HUB = _Hub()
os.register_at_fork(after_in_child=_HUB.after_fork)
