"""The maildrop session lock: one POP3 session per mailbox at a time.

RFC 1939 §8 asks a POP3 server to give one client at a time exclusive access to a
maildrop (a second one gets ``-ERR [IN-USE]``, RFC 2449 §8.1.1). The lock is an
exclusive, non-blocking ``flock`` on a file of its own inside the store, separate from
the locks that deliveries and index updates take, so that a delivery never waits for a
POP3 session (messages delivered meanwhile simply stay out of the session's snapshot).

``flock`` locks belong to the open file description: two opens of the file conflict
even inside one process (two sessions of one server), and the kernel drops the lock
when the descriptor is closed, also when the process dies, so a crashed server never
leaves a maildrop locked. The file itself is never removed (removing it would let a
second session lock a new file while the first still holds the old one); after
locking, the descriptor is compared with the path, and a file replaced meanwhile is
opened and locked again.
"""

from __future__ import annotations

import fcntl
import os
from types import TracebackType

from mailagents.store._model import Store, StoreError
from mailagents.store.mbox import MboxStore

__all__ = ["MailboxInUseError", "SessionLock"]

# Lock file names inside a store. A Maildir keeps its side files without a leading dot
# (``dovecot-uidlist``; dot names are Maildir++ folders); an mbox store keeps them with
# one (undotted names are folders, and ``NAME.lock`` is the dotlock of folder NAME).
MAILDIR_LOCK_NAME = "mailagents-pop3.lock"
MBOX_LOCK_NAME = ".mailagents-pop3.lock"
# Attempts when the lock file keeps being replaced under us.
_ATTEMPTS = 8


class MailboxInUseError(StoreError):
    """Another session holds the mailbox (POP3 ``-ERR [IN-USE]``)."""


class SessionLock:
    """An exclusive session lock on a mailbox: :meth:`acquire` takes it at once or
    raises :class:`MailboxInUseError`; :meth:`release` (or the end of the process)
    drops it. Use :meth:`for_store` to lock a store's own lock file.

    Two ``SessionLock`` objects on one path exclude each other, in one process as in
    two. Both methods block briefly (an ``open`` and an ``flock``): async code calls
    them through the store's executor."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(os.fspath(path))
        """The lock file (created when missing, never removed)."""
        self._fd: int | None = None

    @classmethod
    def for_store(cls, store: Store) -> SessionLock:
        """The session lock of ``store``'s mailbox: a file in the Maildir
        (``mailagents-pop3.lock``) or in the mbox store's root
        (``.mailagents-pop3.lock``), where the store's own scans ignore it."""
        root = getattr(store, "root", None)
        if not isinstance(root, str):
            raise TypeError(f"{type(store).__name__} has no root directory to lock in")
        name = MBOX_LOCK_NAME if isinstance(store, MboxStore) else MAILDIR_LOCK_NAME
        return cls(os.path.join(root, name))

    @property
    def held(self) -> bool:
        """This object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock without waiting; :class:`MailboxInUseError` if another session
        (of this process or another) holds it."""
        if self._fd is not None:
            raise RuntimeError("session lock already held by this object")
        for _ in range(_ATTEMPTS):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise MailboxInUseError(f"mailbox in use: {self.path}") from None
                try:
                    st_path = os.stat(self.path)
                except FileNotFoundError:
                    st_path = None
                st_fd = os.fstat(fd)
                if st_path is not None and (st_path.st_dev, st_path.st_ino) == (
                    st_fd.st_dev,
                    st_fd.st_ino,
                ):
                    self._fd = fd
                    return
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # the file was replaced or removed meanwhile: lock the new one
        raise MailboxInUseError(f"lock file keeps changing: {self.path}")

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases the ``flock``). Safe to call
        when not held."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> SessionLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
