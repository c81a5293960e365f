"""File I/O shared by the store formats: writing a whole buffer, and directory fsyncs
with group commit (concurrent callers share them)."""

from __future__ import annotations

import os
import threading

__all__ = ["fsync_dir", "write_all"]


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _DirSyncer:
    """Directory fsyncs shared by concurrent callers (group commit).

    A caller that renamed a file into the directory needs an fsync that *started*
    after its rename. Generations count the fsyncs started; a caller waits until a
    generation greater than the one started before it arrived has completed, or runs
    that fsync itself when none is running. N concurrent commits then cost about two
    directory fsyncs instead of N.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._started = 0
        self._completed = 0
        self._running = False
        self._failed_gen = 0
        self._failure: OSError | None = None

    def sync(self) -> None:
        with self._cond:
            target = self._started + 1
            while True:
                if self._completed >= target:
                    if self._failure is not None and self._failed_gen >= target:
                        raise self._failure
                    return
                if not self._running:
                    self._running = True
                    self._started += 1
                    gen = self._started
                    break
                self._cond.wait()
        error: OSError | None = None
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            error = exc
        with self._cond:
            self._running = False
            self._completed = gen
            if error is not None:
                self._failure = error
                self._failed_gen = gen
            self._cond.notify_all()
        if error is not None:
            raise error


_syncers: dict[str, _DirSyncer] = {}
_syncers_lock = threading.Lock()


def fsync_dir(path: str) -> None:
    """fsync the directory ``path`` (so that a rename or create in it is durable),
    sharing the fsync with concurrent callers."""
    path = path or "."
    with _syncers_lock:
        syncer = _syncers.get(path)
        if syncer is None:
            syncer = _syncers[path] = _DirSyncer(path)
    syncer.sync()
