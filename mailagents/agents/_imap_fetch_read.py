"""Reading a stored message for FETCH: ranged reads through ``Folder.open_message``.

The stores give a message as its CRLF octets, and ``open_message(uid, start,
length)`` reaches any window of them without reading what lies after it (and, where
the format allows, without reading what lies before). :class:`MessageReader` is the
``read(start, length)`` callable that ``mailagents.imap``'s section and BINARY
functions take: it keeps one stream open for as long as the reads follow each other
and opens a new window only on a jump, so a section is read once, sequentially, and
nothing past it. :func:`read_header` reads a message's header alone (up to and with
its blank line), so that ``BODY[HEADER]``, ``ENVELOPE`` and ``BODY[TEXT]`` need no
MIME scan of the whole message.

Offsets here are CRLF offsets: a part map used with these readers must have been
scanned from the CRLF octets (``open_message``, as the store's folder cache does).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from mailagents.store._model import Folder

__all__ = ["CHUNK", "MessageReader", "closing_chunks", "exactly", "read_header", "window"]

CHUNK = 65_536
"""The largest chunk a literal producer yields."""

_HEADER_LIMIT = 256 * 1024
_HEADER_STEP = 2048  # the first read; each next one twice as long, up to CHUNK


class MessageReader:
    """``read(start, length)`` over the CRLF octets of message ``uid`` of ``folder``.

    ``end``, when known, is where the reads stop (the end of a section): a window
    opened at ``start`` then asks the store for ``end - start`` octets only. Call
    :meth:`close` when done (or use it as a context manager)."""

    def __init__(self, folder: Folder, uid: int, *, end: int | None = None) -> None:
        self.folder = folder
        self.uid = uid
        self.end = end
        self._stream: BinaryIO | None = None
        self._pos = -1

    def __call__(self, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        if self._stream is None or start != self._pos:
            self.close()
            window_length = None
            if self.end is not None:
                window_length = max(self.end, start + length) - start
            self._stream = self.folder.open_message(self.uid, start, window_length)
            self._pos = start
        out = bytearray()
        while len(out) < length:
            data = self._stream.read(length - len(out))
            if not data:
                break
            out += data
        self._pos += len(out)
        return bytes(out)

    def close(self) -> None:
        """Close the open window, if any."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def __enter__(self) -> MessageReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def window(folder: Folder, uid: int, start: int, length: int) -> Iterator[bytes]:
    """The CRLF octets ``[start, start + length)`` of message ``uid``, in chunks of at
    most :data:`CHUNK` (one window of the store; nothing outside it is read)."""
    if length <= 0:
        return
    with folder.open_message(uid, start, length) as stream:
        left = length
        while left > 0:
            data = stream.read(min(CHUNK, left))
            if not data:
                return
            left -= len(data)
            yield data


def closing_chunks(chunks: Iterator[bytes], reader: MessageReader) -> Iterator[bytes]:
    """``chunks``, then ``reader`` closed (also when the consumer stops early)."""
    try:
        yield from chunks
    finally:
        reader.close()


def exactly(chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
    """``chunks`` cut to ``size`` octets in pieces of at most :data:`CHUNK`; fewer
    octets than announced (a message cut short under us) is an :class:`OSError`, as
    a literal's length cannot be taken back."""
    left = size
    try:
        for chunk in chunks:
            if left <= 0:
                break
            if len(chunk) > left:
                chunk = chunk[:left]
            for i in range(0, len(chunk), CHUNK):
                yield chunk[i : i + CHUNK]
            left -= len(chunk)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    if left > 0:
        raise OSError(f"the message ended {left} octets before the literal announced")


def read_header(folder: Folder, uid: int, limit: int = _HEADER_LIMIT) -> bytes | None:
    """The header of message ``uid``: its octets up to and with the first empty line
    (RFC 5322 §2.1), or the whole message when it has none. ``None`` when the header
    is longer than ``limit`` octets (the caller then scans the message)."""
    with folder.open_message(uid, 0, limit + 1) as stream:
        buf = bytearray()
        step = _HEADER_STEP
        while len(buf) <= limit:
            data = stream.read(step)
            step = min(2 * step, CHUNK)
            if not data:
                return bytes(buf)
            seek_from = max(0, len(buf) - 3)
            buf += data
            if buf.startswith(b"\r\n"):
                return b"\r\n"
            at = buf.find(b"\r\n\r\n", seek_from)
            if at >= 0:
                return bytes(buf[: at + 4])
    return None
