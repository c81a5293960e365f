"""Low-level Maildir I/O: CRLF→LF conversion for writing, and a CRLF view of an LF file
for reading (a file written with CRLF by another program reads as it is). (Directory
fsyncs with group commit live in ``_fileio``, shared with mbox.)"""

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


def _to_crlf(data: bytes, after_cr: bool) -> bytes:
    """``data`` with each bare LF made CRLF; a CRLF already there (a file another
    program wrote with CRLF line ends, as Dovecot's ``mail_save_crlf``) stays as it is.
    ``after_cr``: the byte before ``data`` was a CR, so a leading LF is not bare."""
    if after_cr and data.startswith(b"\n"):
        return b"\n" + _to_crlf(data[1:], False)
    if b"\r\n" in data:
        data = data.replace(b"\r\n", b"\n")
    return data.replace(b"\n", b"\r\n")


def _crlf_length(data: bytes, after_cr: bool) -> int:
    """``len(_to_crlf(data, after_cr))``, counted without converting."""
    length = len(data) + data.count(b"\n") - data.count(b"\r\n")
    if after_cr and data.startswith(b"\n"):
        length -= 1
    return length


def crlf_size_of(path: str) -> int:
    """Read a file once to count its CRLF size (for files without ``,W=``)."""
    size = 0
    after_cr = False
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            size += _crlf_length(chunk, after_cr)
            after_cr = chunk.endswith(b"\r")
    return size


class CRLFReader(io.RawIOBase):
    """A raw binary stream giving the LF file ``raw`` with CRLF line ends.

    ``keep_crlf``: a line end that is CRLF in the file already stays as it is (a file
    another program wrote, with CRLF line ends, as Dovecot's ``mail_save_crlf``, or
    without a ``,W=`` size); otherwise every LF becomes CRLF, the inverse of
    :class:`LFConverter` for the files it wrote (so that a CR before a CRLF in the
    message comes back)."""

    def __init__(self, raw: BinaryIO, *, keep_crlf: bool = False) -> None:
        super().__init__()
        self._raw = raw
        self._pending = b""
        self._after_cr = False
        self._keep_crlf = keep_crlf

    def _convert(self, data: bytes, after_cr: bool) -> bytes:
        if self._keep_crlf:
            return _to_crlf(data, after_cr)
        return data.replace(b"\n", b"\r\n")

    def _length(self, data: bytes, after_cr: bool) -> int:
        if self._keep_crlf:
            return _crlf_length(data, after_cr)
        return len(data) + data.count(b"\n")

    def _read(self, size: int) -> tuple[bytes, bool]:
        """The next ``size`` bytes of the file at most, and whether the byte before
        them was a CR."""
        data = self._raw.read(size)
        after_cr = self._after_cr
        if data:
            self._after_cr = data.endswith(b"\r")
        return data, after_cr

    def readable(self) -> bool:
        return True

    def skip(self, count: int) -> None:
        """Move ``count`` CRLF bytes on: whole chunks are only counted (their CRLF
        length is their length plus their bare line ends), only the chunk where the
        window starts is converted."""
        if self._pending:
            take = min(count, len(self._pending))
            self._pending = self._pending[take:]
            count -= take
        while count > 0:
            data, after_cr = self._read(1 << 16)
            if not data:
                return
            crlf = self._length(data, after_cr)
            if crlf <= count:
                count -= crlf
                continue
            self._pending = self._convert(data, after_cr)[count:]
            count = 0

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        want = len(buffer)
        if want == 0:
            return 0
        if not self._pending:
            data, after_cr = self._read(max(1, want // 2))
            if not data:
                return 0
            self._pending = self._convert(data, after_cr)
        chunk = self._pending[:want]
        self._pending = self._pending[want:]
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def open_crlf(fd: int, start: int = 0, length: int | None = None, *,
              crlf_size: int | None = None) -> BinaryIO:
    """A buffered binary stream over the open LF file ``fd`` giving CRLF bytes, from
    CRLF offset ``start`` on, at most ``length`` of them. ``crlf_size`` is the size
    the file's name gives (``,W=``): when it is missing, or no larger than the file
    (a file with CRLF line ends already), the file's own CRLFs are kept as they are
    (see :class:`CRLFReader`)."""
    raw = os.fdopen(fd, "rb", buffering=0)
    keep = crlf_size is None or crlf_size <= os.fstat(fd).st_size
    reader = CRLFReader(raw, keep_crlf=keep)
    if start:
        reader.skip(start)
    return windowed(reader, length, 1 << 16)


_RENAME_RETRIES = 10  # tries of an open or rename that another program's rename raced
