"""Low-level Maildir I/O: group commit of directory fsyncs, CRLF→LF conversion for
writing, and a CRLF view of an LF file for reading."""

from __future__ import annotations

import io
import os
import threading
from typing import BinaryIO

__all__ = ["CRLFReader", "LFConverter", "fsync_dir", "open_crlf"]


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
    """fsync the directory ``path``, sharing the fsync with concurrent callers."""
    with _syncers_lock:
        syncer = _syncers.get(path)
        if syncer is None:
            syncer = _syncers[path] = _DirSyncer(path)
    syncer.sync()


class LFConverter:
    """Streaming CRLF→LF conversion that counts both sizes.

    A CR at the end of one chunk is held back until the next chunk shows whether an LF
    follows; a bare CR is kept as it is."""

    def __init__(self) -> None:
        self.disk_size = 0
        self.lines = 0
        self._cr = False

    def feed(self, chunk: bytes) -> bytes:
        """Convert the next chunk; returns the bytes to write."""
        if self._cr:
            chunk = b"\r" + chunk
            self._cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._cr = True
        out = chunk.replace(b"\r\n", b"\n")
        self.disk_size += len(out)
        self.lines += out.count(b"\n")
        return out

    def flush(self) -> bytes:
        """The held-back CR, if any (at the end of the message)."""
        if self._cr:
            self._cr = False
            self.disk_size += 1
            return b"\r"
        return b""

    @property
    def crlf_size(self) -> int:
        """The size with every LF written as CRLF."""
        return self.disk_size + self.lines


def crlf_size_of(path: str) -> int:
    """Read a file once to count its CRLF size (for files without ``,W=``)."""
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            size += len(chunk) + chunk.count(b"\n")
    return size


class CRLFReader(io.RawIOBase):
    """A raw binary stream giving the LF file ``raw`` with CRLF line ends."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        want = len(buffer)
        if want == 0:
            return 0
        if not self._pending:
            data = self._raw.read(max(1, want // 2))
            if not data:
                return 0
            self._pending = data.replace(b"\n", b"\r\n")
        chunk = self._pending[:want]
        self._pending = self._pending[want:]
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def open_crlf(fd: int) -> BinaryIO:
    """A buffered binary stream over the open LF file ``fd`` giving CRLF bytes."""
    raw = os.fdopen(fd, "rb", buffering=0)
    reader = io.BufferedReader(CRLFReader(raw), buffer_size=1 << 16)
    return reader
