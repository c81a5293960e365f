"""Locks that hold across threads and processes.

* :class:`FileLock`: an in-process lock per path (so threads of one process queue up
  without a system call) plus ``flock`` on the file across processes. ``flock`` locks
  belong to the open file description, unlike plain ``fcntl`` locks, which are per
  process and vanish when *any* descriptor on the file closes. After taking the lock the
  open file is compared with the path (``fstat`` against ``stat``): if the file was
  replaced meanwhile, it is reopened and locked again.
* :class:`DotLock`: the ``NAME.lock`` convention of Dovecot's uidlist and of Debian's
  mail tools for mbox: created exclusively, removed on release, broken when stale (older
  than ``stale_after`` seconds and, when it names one, its process is gone).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
from types import TracebackType

__all__ = [
    "DotLock",
    "FileLock",
    "LockTimeout",
    "break_stale_dotlock",
    "drop_thread_lock",
    "pid_alive",
    "thread_lock",
]

log = logging.getLogger(__name__)


class LockTimeout(TimeoutError):
    """A lock could not be taken in time."""


_registry_lock = threading.Lock()
_thread_locks: dict[str, tuple[threading.Lock, int]] = {}


def thread_lock(path: str) -> threading.Lock:
    """The in-process lock of ``path`` (reference-counted; pair with drop_thread_lock)."""
    with _registry_lock:
        lock, count = _thread_locks.get(path, (threading.Lock(), 0))
        _thread_locks[path] = (lock, count + 1)
        return lock


def drop_thread_lock(path: str) -> None:
    """Drop one reference taken by :func:`thread_lock`."""
    with _registry_lock:
        lock, count = _thread_locks[path]
        if count <= 1:
            del _thread_locks[path]
        else:
            _thread_locks[path] = (lock, count - 1)


class FileLock:
    """Exclusive lock on ``path`` (created if missing) for threads and processes."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float | None = 30.0):
        self.path = os.path.abspath(os.fspath(path))
        self.timeout = timeout
        self._fd: int | None = None
        self._thread_lock: threading.Lock | None = None

    @property
    def held(self) -> bool:
        """This object holds the lock now."""
        return self._fd is not None

    @property
    def fd(self) -> int:
        """The locked file's descriptor (only while held)."""
        if self._fd is None:
            raise RuntimeError("lock not held")
        return self._fd

    def acquire(self) -> None:
        """Take the lock; :class:`LockTimeout` after ``timeout`` seconds."""
        if self._fd is not None:
            raise RuntimeError("lock already held by this object")
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        tlock = thread_lock(self.path)
        if not tlock.acquire(timeout=-1 if self.timeout is None else self.timeout):
            drop_thread_lock(self.path)
            raise LockTimeout(f"timed out waiting for {self.path}")
        try:
            self._fd = self._flock(deadline)
        except BaseException:
            tlock.release()
            drop_thread_lock(self.path)
            raise
        self._thread_lock = tlock

    def _flock(self, deadline: float | None) -> int:
        delay = 0.001
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if deadline is not None and time.monotonic() >= deadline:
                            raise LockTimeout(f"timed out waiting for {self.path}") from None
                        time.sleep(delay)
                        delay = min(delay * 2, 0.05)
                # The file may have been replaced (renamed over) while we waited.
                try:
                    st_path = os.stat(self.path)
                except FileNotFoundError:
                    st_path = None
                st_fd = os.fstat(fd)
                if st_path is not None and (st_path.st_dev, st_path.st_ino) == (
                    st_fd.st_dev,
                    st_fd.st_ino,
                ):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def release(self) -> None:
        """Release the lock (closing the descriptor drops the flock)."""
        fd, self._fd = self._fd, None
        tlock, self._thread_lock = self._thread_lock, None
        if fd is not None:
            os.close(fd)
        if tlock is not None:
            tlock.release()
            drop_thread_lock(self.path)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def break_stale_dotlock(path: str, stale_after: float, *, bare_pid: bool = False) -> bool:
    """Judge the dotlock at ``path`` and remove it if it is stale; return whether the
    caller may try to take the lock again at once (it was gone, or has been broken).

    A lock naming a process of this host is stale once that process is gone (with
    ``bare_pid``, a lock holding a PID alone counts as this host's, as mutt and
    liblockfile write them); any other lock once it is ``stale_after`` seconds old.
    Only the very file judged stale is removed: if another program broke it and took
    a fresh lock meanwhile, that one is left alone (the window left is the one
    between a ``stat`` and an ``unlink``)."""
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            owner = f.read(256)
    except FileNotFoundError:
        return True  # gone meanwhile
    pid_text, _, host = owner.decode("ascii", "replace").strip().partition(":")
    ours = host == socket.gethostname() or (bare_pid and not host)
    if pid_text.isdigit() and int(pid_text) > 0 and ours:
        if pid_alive(int(pid_text)):
            return False
    elif time.time() - st.st_mtime < stale_after:
        return False
    try:
        now = os.stat(path)
        if (now.st_dev, now.st_ino, now.st_mtime_ns) != (st.st_dev, st.st_ino, st.st_mtime_ns):
            return False  # replaced by a fresh lock since it was judged
        os.unlink(path)
    except FileNotFoundError:
        return True
    log.warning("broke stale dotlock %s", path)
    return True


class DotLock:
    """``NAME.lock`` created with ``O_EXCL`` next to the file it protects.

    The lock file holds ``PID:HOSTNAME``. A lock naming a process of this host is broken
    as soon as that process is gone; any other lock (another host's, another program's)
    once it is older than ``stale_after`` seconds. Threads of this process queue on
    an in-process lock first."""

    def __init__(
        self,
        lock_path: str | os.PathLike[str],
        *,
        timeout: float | None = 30.0,
        stale_after: float = 120.0,
    ):
        self.path = os.path.abspath(os.fspath(lock_path))
        self.timeout = timeout
        self.stale_after = stale_after
        self._held = False
        self._thread_lock: threading.Lock | None = None

    @property
    def held(self) -> bool:
        """This object holds the lock now."""
        return self._held

    def acquire(self) -> None:
        """Create the lock file; :class:`LockTimeout` after ``timeout`` seconds."""
        if self._held:
            raise RuntimeError("lock already held by this object")
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        tlock = thread_lock(self.path + "#dot")
        if not tlock.acquire(timeout=-1 if self.timeout is None else self.timeout):
            drop_thread_lock(self.path + "#dot")
            raise LockTimeout(f"timed out waiting for {self.path}")
        try:
            self._create(deadline)
        except BaseException:
            tlock.release()
            drop_thread_lock(self.path + "#dot")
            raise
        self._thread_lock = tlock
        self._held = True

    def _create(self, deadline: float | None) -> None:
        # The lock is written under a unique name, then hard-linked into place (as
        # Dovecot and liblockfile do), so it never exists without its owner in it: a
        # process killed at any moment leaves either no lock or one naming it.
        content = f"{os.getpid()}:{socket.gethostname()}\n".encode()
        temp = f"{self.path}.{socket.gethostname()}.{os.getpid()}.{threading.get_ident()}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, content)
        finally:
            os.close(fd)
        try:
            delay = 0.001
            while True:
                try:
                    os.link(temp, self.path)
                    return
                except FileExistsError:
                    pass
                if self._break_if_stale():
                    continue
                if deadline is not None and time.monotonic() >= deadline:
                    raise LockTimeout(f"timed out waiting for {self.path}") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def _break_if_stale(self) -> bool:
        # A lock of a dead process of this host is broken at once (a killed delivery
        # must not block the next for minutes); another host's or program's by age.
        return break_stale_dotlock(self.path, self.stale_after)

    def touch(self) -> None:
        """Refresh the lock's mtime during long work so it is not taken as stale."""
        if self._held:
            os.utime(self.path)

    def release(self) -> None:
        """Remove the lock file."""
        if self._held:
            self._held = False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        tlock, self._thread_lock = self._thread_lock, None
        if tlock is not None:
            tlock.release()
            drop_thread_lock(self.path + "#dot")

    def __enter__(self) -> DotLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
