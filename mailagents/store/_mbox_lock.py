"""Locking an mbox the way Debian's mail tools expect, and within this process.

The order is: an in-process lock per path (threads of this process queue there), then an
``fcntl`` write lock on the whole mbox, then the dotlock ``NAME.lock``. mutt, Python's
``mailbox``, procmail and Debian's liblockfile users take the same two locks.

The ``fcntl`` lock is an open-file-description lock (``F_OFD_SETLK``) where the system
has them (Linux): it conflicts with the classic POSIX ``lockf``/``F_SETLK`` locks those
programs take, but unlike them it is not dropped when *any* descriptor this process has
on the file is closed (a message stream being closed, for instance). Elsewhere
``lockf`` is used.

A dotlock is stale when the process it names (``PID`` or ``PID:HOST``) is gone from this
host, or, when it names none we can check, when it is older than ``stale_after``
seconds. A lock directory we may not write to (a root-owned spool directory) means no
dotlock; the ``fcntl`` lock still holds, as with mutt without its setgid helper.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import secrets
import socket
import struct
import threading
import time

from mailagents.store._locking import (
    LockTimeout,
    break_stale_dotlock,
    drop_thread_lock,
    thread_lock,
)

log = logging.getLogger(__name__)

_OFD_SETLK: int | None = getattr(fcntl, "F_OFD_SETLK", None)


def _flock_struct(ltype: int) -> bytes:
    # struct flock: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
    return struct.pack("hhqqi4x", ltype, os.SEEK_SET, 0, 0, 0)


def fcntl_try_lock(fd: int) -> bool:
    """Try to take the write lock on the whole file; ``False`` if someone holds it."""
    try:
        if _OFD_SETLK is not None:
            fcntl.fcntl(fd, _OFD_SETLK, _flock_struct(fcntl.F_WRLCK))
        else:  # pragma: no cover - not Linux
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def fcntl_unlock(fd: int) -> None:
    """Release the lock taken by :func:`fcntl_try_lock`."""
    if _OFD_SETLK is not None:
        fcntl.fcntl(fd, _OFD_SETLK, _flock_struct(fcntl.F_UNLCK))
    else:  # pragma: no cover - not Linux
        fcntl.lockf(fd, fcntl.LOCK_UN)


class MboxLock:
    """The in-process lock, the ``fcntl`` lock and the dotlock of one mbox file.

    :meth:`acquire` returns a read-write descriptor on the mbox, checked (``fstat``
    against ``stat``) to be the file now at ``path``; it is closed by :meth:`release`.
    """

    def __init__(
        self,
        path: str,
        *,
        timeout: float | None = 30.0,
        stale_after: float = 300.0,
        create: bool = False,
    ) -> None:
        self.path = os.path.abspath(path)
        self.lock_path = self.path + ".lock"
        self.timeout = timeout
        self.stale_after = stale_after
        self.create = create
        self.fd = -1
        self._dotlock = False
        self._tlock: threading.Lock | None = None

    def acquire(self) -> int:
        """Take all three locks; :class:`LockTimeout` after ``timeout`` seconds,
        :class:`FileNotFoundError` if the mbox does not exist (and ``create`` is off)."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        tlock = thread_lock(self.path)
        if not tlock.acquire(timeout=-1 if self.timeout is None else self.timeout):
            drop_thread_lock(self.path)
            raise LockTimeout(f"timed out waiting for {self.path}")
        self._tlock = tlock
        try:
            self._acquire_file(deadline)
        except BaseException:
            self.release()
            raise
        return self.fd

    def _wait(self, deadline: float | None, delay: float) -> float:
        if deadline is not None and time.monotonic() >= deadline:
            raise LockTimeout(f"timed out waiting for {self.path}")
        time.sleep(delay)
        return min(delay * 2, 0.05)

    def _acquire_file(self, deadline: float | None) -> None:
        delay = 0.001
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if self.create else 0)
        while True:
            fd = os.open(self.path, flags, 0o600)
            self.fd = fd
            while not fcntl_try_lock(fd):
                delay = self._wait(deadline, delay)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:  # replaced (renamed over) while we waited: lock the new one
                self._close_fd()
                continue
            while not self._try_dotlock():
                delay = self._wait(deadline, delay)
            return

    def _try_dotlock(self) -> bool:
        # Written to a unique file first and hard-linked into place (liblockfile's way),
        # so that the lock never exists without its owner's PID in it.
        content = f"{os.getpid()}:{socket.gethostname()}\n".encode()
        directory, base = os.path.split(self.lock_path)
        tmp = os.path.join(directory, f".{base}.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                log.info("no dotlock for %s (%s); fcntl lock only", self.path, exc)
                return True
            raise
        try:
            try:
                os.write(fd, content)
            finally:
                os.close(fd)
            try:
                os.link(tmp, self.lock_path)
            except FileExistsError:
                break_stale_dotlock(self.lock_path, self.stale_after, bare_pid=True)
                return False
            except OSError as exc:  # no hard links here: exclusive create instead
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                    raise
                return self._create_dotlock(content)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._dotlock = True
        return True

    def _create_dotlock(self, content: bytes) -> bool:
        try:
            fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            break_stale_dotlock(self.lock_path, self.stale_after, bare_pid=True)
            return False
        try:
            os.write(fd, content)
        finally:
            os.close(fd)
        self._dotlock = True
        return True

    def touch(self) -> None:
        """Refresh the dotlock's mtime during long work."""
        if self._dotlock:
            with contextlib.suppress(OSError):
                os.utime(self.lock_path)

    def _close_fd(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                fcntl_unlock(fd)
            os.close(fd)

    def release(self) -> None:
        """Release everything (safe to call after a failed :meth:`acquire`)."""
        if self._dotlock:
            self._dotlock = False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.lock_path)
        self._close_fd()
        tlock, self._tlock = self._tlock, None
        if tlock is not None:
            tlock.release()
            drop_thread_lock(self.path)
