"""Ranged reads of a stored message (IMAP ``BODY[]<start.length>``, RFC 9051 §6.4.5):
a window of the CRLF bytes, reached without reading what lies before it where the
format allows, and never reading past it."""

from __future__ import annotations

import io
from typing import BinaryIO

__all__ = ["Window", "check_range", "skip", "windowed"]

_CHUNK = 1 << 16


def check_range(start: int, length: int | None) -> None:
    """:class:`ValueError` for a negative start or length."""
    if start < 0 or (length is not None and length < 0):
        raise ValueError(f"bad range: start {start}, length {length}")


def skip(raw: io.RawIOBase, count: int) -> None:
    """Read and drop ``count`` bytes of ``raw`` (for streams that cannot seek)."""
    buffer = bytearray(min(count, _CHUNK))
    while count > 0:
        view = memoryview(buffer)[: min(count, len(buffer))]
        n = raw.readinto(view)
        if not n:
            return
        count -= n


class Window(io.RawIOBase):
    """At most ``length`` bytes of ``raw``, from where it stands."""

    def __init__(self, raw: io.RawIOBase, length: int) -> None:
        super().__init__()
        self._raw = raw
        self._left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        view = memoryview(buffer).cast("B")
        n = self._raw.readinto(view[: min(len(view), self._left)]) or 0
        self._left -= n
        return n

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def windowed(raw: io.RawIOBase, length: int | None, buffer_size: int) -> BinaryIO:
    """``raw`` buffered, cut to ``length`` bytes when given."""
    if length is not None:
        raw = Window(raw, length)
    return io.BufferedReader(raw, buffer_size=min(buffer_size, max(length or buffer_size, 1)))
