"""The bounded input buffer of a session: the octets received and not yet fed to the
protocol core. Past its high-water mark the transport stops reading (back-pressure
while the handler is busy or the client does not read), and reading resumes once the
buffer has been taken down to half of it."""

from __future__ import annotations

from typing import Protocol

__all__ = ["FEED", "InputBuffer", "Reader"]

FEED = 32 * 1024
"""Octets handed out by one :meth:`InputBuffer.take` at most, so that the replies one
feed of the core can produce (2.3 times its size for a stream of NOOPs) stay small next
to the write high-water mark."""


class Reader(Protocol):
    """What the buffer pauses and resumes: a transport's reading side."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class InputBuffer:
    """Received octets, in order, handed out at most :data:`FEED` at a time.

    :meth:`append` pauses ``reader`` once more than ``high_water`` octets are held;
    :meth:`take` resumes it once at most half of that is left."""

    __slots__ = ("_chunks", "_low_water", "_offset", "_pending", "high_water", "paused",
                 "reader", "size")

    def __init__(self, high_water: int, reader: Reader | None = None) -> None:
        self.high_water = high_water
        """Octets held before reading pauses."""
        self._low_water = high_water // 2
        self.reader = reader
        """The transport paused and resumed (``None``: none yet; nothing is paused)."""
        self.size = 0
        """Octets held."""
        self.paused = False
        """Reading is paused by this buffer."""
        self._chunks: list[bytes] = []  # appended, not yet looked at
        self._pending = b""  # taken in pieces from _offset (empty: nothing left)
        self._offset = 0

    def __len__(self) -> int:
        return self.size

    def append(self, data: bytes) -> None:
        """Hold ``data``; pause reading if the buffer is now over its high-water mark."""
        self._chunks.append(data)
        self.size += len(data)
        if self.size > self.high_water and not self.paused and self.reader is not None:
            self.paused = True
            self.reader.pause_reading()

    def take(self) -> bytes:
        """The oldest octets held, at most :data:`FEED` of them; ``b""`` when empty.

        A piece that arrived whole and fits is handed out as it came (no copy)."""
        chunks = self._chunks
        if not self._pending:
            if not chunks:
                return b""
            if len(chunks) == 1 and len(chunks[0]) <= FEED:
                data = chunks.pop()
                self.size -= len(data)
                if self.paused and self.size <= self._low_water:
                    self._resume()
                return data
            pending = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            offset = 0
        else:
            pending, offset = self._pending, self._offset
        if offset == 0 and len(pending) <= FEED:
            data = pending
            self._pending, self._offset = b"", 0
        else:
            data = pending[offset : offset + FEED]
            offset += len(data)
            if offset < len(pending):
                self._pending, self._offset = pending, offset
            else:
                self._pending, self._offset = b"", 0
        self.size -= len(data)
        if self.paused and self.size <= self._low_water:
            self._resume()
        return data

    def _resume(self) -> None:
        self.paused = False
        if self.reader is not None:
            self.reader.resume_reading()

    def clear(self) -> None:
        """Drop everything held (reading stays as it is)."""
        self._chunks.clear()
        self._pending, self._offset = b"", 0
        self.size = 0

    def restart(self) -> None:
        """Drop everything held and forget the pause: whoever reads now resumes reading
        itself (``loop.start_tls`` pauses and resumes the transport it upgrades)."""
        self.clear()
        self.paused = False
