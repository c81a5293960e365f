"""File I/O shared by the store formats: writing a whole buffer, and directory fsyncs
with group commit (concurrent callers share them)."""

from __future__ import annotations

import functools
import os
import threading

from mailagents.store._groupcommit import GroupCommit

__all__ = ["fsync_dir", "write_all"]


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


_syncers: dict[str, GroupCommit[None, None]] = {}
_syncers_lock = threading.Lock()


def fsync_dir(path: str) -> None:
    """fsync the directory ``path`` (so that a rename or create in it is durable),
    sharing the fsync with concurrent callers."""
    path = path or "."
    with _syncers_lock:
        syncer = _syncers.get(path)
        if syncer is None:
            syncer = _syncers[path] = GroupCommit()
    # A caller that renamed a file into the directory needs an fsync that started after
    # its rename: the group commit's rule (see _groupcommit). N concurrent commits cost
    # about two directory fsyncs instead of N.
    syncer.submit(None, functools.partial(_fsync_once, path))
