"""File I/O shared by the store formats: writing a whole buffer, replacing a small file
atomically, and directory fsyncs with group commit (concurrent callers share them)."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable

from mailagents.store._groupcommit import GroupCommit

__all__ = ["fsync_dir", "write_all", "write_atomic"]


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_once(path: str, items: list[None]) -> list[None]:
    """One directory fsync for every caller of the group."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return [None] * len(items)


_Syncer = tuple[GroupCommit[None, None], Callable[[list[None]], list[None]]]
_syncers: dict[str, _Syncer] = {}
_syncers_lock = threading.Lock()
MAX_SYNCERS = 1024
"""Directories whose fsync group is kept at most; beyond that, the idle ones are
dropped (an MDA writes into the folders of every user it serves)."""


def _drop_idle() -> None:
    """With ``_syncers_lock`` held: forget the groups nobody is in. A caller that still
    holds one it looked up just before runs its own fsync in it, which is as durable
    (it started after that caller's rename), only not shared."""
    for path in [p for p, (group, _) in _syncers.items() if group.idle]:
        del _syncers[path]


def fsync_dir(path: str) -> None:
    """fsync the directory ``path`` (so that a rename or create in it is durable),
    sharing the fsync with concurrent callers."""
    path = path or "."
    syncer = _syncers.get(path)
    if syncer is None:
        with _syncers_lock:
            syncer = _syncers.get(path)
            if syncer is None:
                if len(_syncers) >= MAX_SYNCERS:
                    _drop_idle()
                syncer = _syncers[path] = (GroupCommit(), functools.partial(_fsync_once, path))
    # A caller that renamed a file into the directory needs an fsync that started after
    # its rename: the group commit's rule (see _groupcommit). N concurrent commits cost
    # about two directory fsyncs instead of N.
    group, commit = syncer
    group.submit(None, commit)


def write_atomic(path: str, data: bytes, *, fsync: bool) -> None:
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
