"""A folder's STATUS numbers kept on disk with the identity of the files they were
computed from, so that STATUS of many folders (a client's LIST-STATUS, RFC 5819, or
its STATUS of every folder at start) costs a few ``stat`` calls per folder instead of
a listing of every message file. Dovecot keeps the same in its mailbox list index.

The sources are what the numbers depend on: for Maildir ``new/``, ``cur/``,
``dovecot-uidlist``, ``mailagents-modseq`` and ``dovecot-keywords`` (a delivery, a
flag change, an expunge, a \\Recent claim each change a directory's or a file's
``mtime``; message files never change in place); for mbox the mbox file and its side
index. The key of each is its device, inode, size, and ``mtime`` and ``ctime`` in
nanoseconds. Numbers are stored only when the key read before computing them equals
the key read after (nothing changed meanwhile), and only when every source's times
are older than ``settle`` seconds: a change in the same clock tick as the computation
would leave the times as they were (the "racy timestamp" problem, which git's index
handles alike), so a source that changed just now is never trusted.

The file (``PATH``) is one line, written to a temporary file and renamed (no fsync: a
lost file is computed again): ``mailagents-status 1 <crc32> <key numbers...> <status
numbers...>``. Anything that does not read back is a miss.

Numbers computed without STATUS SIZE (which before a Maildir folder's first SELECT
reads every message file that has no ``W=`` in its name) are stored with ``-1`` for
SIZE, and answer only a later STATUS that does not ask for SIZE either.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import zlib
from collections.abc import Callable, Sequence

from mailagents.store._model import FolderStatus

__all__ = ["StatusCache"]

_MAGIC = "mailagents-status"
_VERSION = "1"
_FIELDS = (
    "messages",
    "uidvalidity",
    "uidnext",
    "highestmodseq",
    "unseen",
    "deleted",
    "size",
    "recent",
)
_PER_SOURCE = 6
_NO_SIZE = -1
_MAX_FILE = 4096


class StatusCache:
    """The STATUS numbers of one folder, valid while its ``sources`` are unchanged
    (see the module's docstring). ``path`` is where they are kept."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        sources: Sequence[str | os.PathLike[str]],
        *,
        settle: float = 2.0,
    ) -> None:
        if settle < 0:
            raise ValueError("StatusCache: settle must not be negative")
        self.path = os.fspath(path)
        self.sources = tuple(os.fspath(s) for s in sources)
        self.settle = settle

    def _key(self) -> tuple[int, ...]:
        key: list[int] = []
        for source in self.sources:
            try:
                st = os.stat(source)
            except FileNotFoundError:
                key += [0] * _PER_SOURCE
                continue
            key += [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, 1]
        return tuple(key)

    def _settled(self, key: tuple[int, ...]) -> bool:
        limit = time.time_ns() - int(self.settle * 1e9)
        for i in range(0, len(key), _PER_SOURCE):
            if key[i + 3] > limit or key[i + 4] > limit:
                return False
        return True

    def get(self, *, size: bool = True) -> FolderStatus | None:
        """The stored numbers, if the sources are as they were when they were
        computed (and, with ``size``, if SIZE was computed too); ``None`` otherwise.
        Without ``size``, the SIZE figure may be 0."""
        return self._read(self._key(), size=size)

    def _read(self, key: tuple[int, ...], *, size: bool) -> FolderStatus | None:
        try:
            with open(self.path, "rb") as f:
                raw = f.read(_MAX_FILE + 1)
        except (FileNotFoundError, NotADirectoryError):
            return None
        parts = raw.split()
        if len(raw) > _MAX_FILE or len(parts) != 3 + len(key) + len(_FIELDS):
            return None
        if parts[0] != _MAGIC.encode() or parts[1] != _VERSION.encode():
            return None
        body = b" ".join(parts[3:])
        try:
            numbers = tuple(int(p) for p in parts[3:])
            crc = int(parts[2])
        except ValueError:
            return None
        if crc != zlib.crc32(body) or numbers[: len(key)] != key:
            return None
        found = dict(zip(_FIELDS, numbers[len(key) :], strict=True))
        if found["size"] == _NO_SIZE and not size:
            found["size"] = 0
        if min(found.values()) < 0:
            return None
        return FolderStatus(**found)

    def cached(self, compute: Callable[[], FolderStatus], *, size: bool = True) -> FolderStatus:
        """The stored numbers when they still hold, else ``compute()``'s, stored for
        next time when nothing changed while they were computed and the sources have
        settled. ``size=False``: the caller does not want SIZE, and ``compute`` does
        not compute it (its SIZE figure is not stored; the SIZE of what is returned
        may be 0)."""
        before = self._key()
        found = self._read(before, size=size)
        if found is not None:
            return found
        status = compute()
        if self._key() == before and self._settled(before):
            self._write(before, status, size=size)
        return status

    def _write(self, key: tuple[int, ...], status: FolderStatus, *, size: bool) -> None:
        values = [getattr(status, name) for name in _FIELDS]
        if not size:
            values[_FIELDS.index("size")] = _NO_SIZE
        numbers = (*key, *values)
        body = " ".join(str(n) for n in numbers).encode()
        line = b"%s %s %d %s\n" % (_MAGIC.encode(), _VERSION.encode(), zlib.crc32(body), body)
        tmp = f"{self.path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(line)
            os.replace(tmp, self.path)
        except OSError:  # a cache: not worth failing STATUS for
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def clear(self) -> None:
        """Forget the stored numbers (a folder deleted or renamed)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
