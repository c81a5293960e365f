"""Stat snapshots of a folder: the poll fallback of the watcher, and the "did anything
change?" test that an mbox answers without its lock.

A :class:`FolderProbe` remembers a :class:`Signature` (device, inode, size, mtime and
ctime in nanoseconds) of each file that tells a change of its folder:

- Maildir: ``new/``, ``cur/`` (a delivery, a flag change or an expunge renames,
  creates or removes an entry there, which changes the directory's times) and
  ``dovecot-uidlist`` (UIDs given by another program);
- mbox: the mbox file itself, and our side index beside it
  (``.NAME.mailagents-index``: flag changes by another process of ours write only
  there).

:meth:`FolderProbe.check` stats them again and says whether any differs. Only
``stat(2)``: no lock, no read, so that an IMAP IDLE poll never competes with a delivery
for the mbox lock; the folder is read (under its lock) only once a difference is seen.

Coarse timestamps: two changes within one tick of the file system's clock (one second
on some file systems, a few milliseconds on others) may leave the same times. A
snapshot whose time is within :data:`RACY_NS` of the moment it was taken is "racy":
once that window has passed, the next check reports a change once more (a possibly
needless look, never a missed change), as git does for its index.
"""

from __future__ import annotations

import os
import stat as stat_module
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RACY_NS", "FolderProbe", "Signature", "folder_files", "signature"]

RACY_NS = 2_000_000_000
"""A snapshot taken less than this many nanoseconds after its file's last change may
miss a second change within the same clock tick (two seconds covers FAT's)."""

UIDLIST = "dovecot-uidlist"
INDEX_SUFFIX = ".mailagents-index"


def mbox_index(path: str) -> str:
    """Where the mbox store keeps the side index of the mbox at ``path`` (beside it;
    a spool inbox outside the store keeps its index in the store's root, which is
    not found here)."""
    parent, name = os.path.split(path)
    return os.path.join(parent, "." + name + INDEX_SUFFIX)


@dataclass(frozen=True, slots=True, kw_only=True)
class Signature:
    """What ``stat(2)`` says of one file, as far as a change shows in it."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @property
    def changed_ns(self) -> int:
        """The later of the modification and status-change times."""
        return max(self.mtime_ns, self.ctime_ns)


def signature(path: str) -> Signature | None:
    """The :class:`Signature` of ``path`` (following symbolic links), or ``None`` if
    there is no file there (or it cannot be looked at)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return Signature(
        device=st.st_dev,
        inode=st.st_ino,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
    )


def folder_files(path: str) -> tuple[str, ...]:
    """The files whose change tells a change of the folder at ``path``: for a Maildir
    folder (a directory) ``new/``, ``cur/`` and ``dovecot-uidlist``, for an mbox
    ``path`` itself and its side index."""
    try:
        is_dir = stat_module.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        is_dir = False
    if is_dir:
        return (os.path.join(path, "new"), os.path.join(path, "cur"), os.path.join(path, UIDLIST))
    return (path, mbox_index(path))


class FolderProbe:
    """Stat snapshots of one folder's files (see :func:`folder_files`).

    ``clock`` gives the wall-clock time in nanoseconds (file times are wall-clock
    times); tests pass their own."""

    __slots__ = ("_clock", "_racy", "_snapshot", "files", "path")

    def __init__(self, path: str, *, clock: Callable[[], int] = time.time_ns) -> None:
        self.path = path
        """The folder (a Maildir directory or an mbox file)."""
        self.files = folder_files(path)
        """The files stat'ed."""
        self._clock = clock
        self._snapshot: tuple[Signature | None, ...] = ()
        self._racy = False
        self.take()

    def _stat(self) -> tuple[Signature | None, ...]:
        return tuple(signature(f) for f in self.files)

    def _is_racy(self, snapshot: tuple[Signature | None, ...], now: int) -> bool:
        return any(s is not None and now - s.changed_ns < RACY_NS for s in snapshot)

    def take(self) -> None:
        """Remember the folder as it is now (no change reported)."""
        self._snapshot = self._stat()
        self._racy = self._is_racy(self._snapshot, self._clock())

    def check(self, *, hint: bool = False) -> bool:
        """Stat the files again: whether the folder may have changed since the last
        :meth:`take` or :meth:`check` (and remember the new state).

        ``hint``: something (an inotify event) says the folder changed. Then a racy
        snapshot (see :data:`RACY_NS`) counts as changed even if the times did not
        move, since a change within the same clock tick would not show in them."""
        now = self._clock()
        snapshot = self._stat()
        if snapshot != self._snapshot:
            self._snapshot = snapshot
            self._racy = self._is_racy(snapshot, now)
            return True
        if hint and self._racy:
            self._racy = self._is_racy(snapshot, now)
            return True
        if self._racy and not self._is_racy(snapshot, now):
            # The clock has moved past the snapshot's tick: a second change within that
            # tick would not show in the times, so say "maybe" once.
            self._racy = False
            return True
        return False
