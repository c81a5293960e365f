"""Low-level Maildir I/O: CRLF→LF conversion for writing, and a CRLF view of an LF file
for reading. (Directory fsyncs with group commit live in ``_fileio``, shared with mbox.)"""

from __future__ import annotations

import io
import os
from typing import BinaryIO

from mailagents.store._fileio import fsync_dir
from mailagents.store._ranged import windowed

# Also used by the other _maildir_* modules: _RENAME_RETRIES.
__all__ = ["CRLFReader", "LFConverter", "fsync_dir", "open_crlf"]


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

    def skip(self, count: int) -> None:
        """Move ``count`` CRLF bytes on: whole chunks are only counted (their CRLF
        length is their length plus their line ends), only the chunk where the window
        starts is converted."""
        if self._pending:
            take = min(count, len(self._pending))
            self._pending = self._pending[take:]
            count -= take
        while count > 0:
            data = self._raw.read(1 << 16)
            if not data:
                return
            crlf = len(data) + data.count(b"\n")
            if crlf <= count:
                count -= crlf
                continue
            self._pending = data.replace(b"\n", b"\r\n")[count:]
            count = 0

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


def open_crlf(fd: int, start: int = 0, length: int | None = None) -> BinaryIO:
    """A buffered binary stream over the open LF file ``fd`` giving CRLF bytes, from
    CRLF offset ``start`` on, at most ``length`` of them."""
    raw = os.fdopen(fd, "rb", buffering=0)
    reader = CRLFReader(raw)
    if start:
        reader.skip(start)
    return windowed(reader, length, 1 << 16)


_RENAME_RETRIES = 10  # tries of an open or rename that another program's rename raced
