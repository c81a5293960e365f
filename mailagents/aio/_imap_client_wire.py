"""The IMAP client core as the asyncio client drives it: plain, or behind RFC 4978's
DEFLATE codec once COMPRESS succeeded.

:class:`Wire` has the three methods :func:`mailagents.aio._client.request` needs of a
core. With a codec installed, what the core writes is compressed and sync-flushed,
and what arrives is inflated only as fast as the core takes it (at most one chunk
ahead), so a small input that inflates to gigabytes never sits in memory.
"""

from __future__ import annotations

import enum

from mailagents._protocol import NEED_DATA, RemoteProtocolError
from mailagents.aio._codec import CodecError, DeflateCodec
from mailagents.imap._client import ClientConnection
from mailagents.imap._client_events import ClientEvent

__all__ = ["Wire"]

_CHUNK = 65_536


class Wire:
    """The core, with or without compression (see the module text)."""

    __slots__ = ("codec", "core", "error")

    def __init__(self, core: ClientConnection) -> None:
        self.core = core
        self.codec: DeflateCodec | None = None
        self.error: RemoteProtocolError | None = None

    def start_compression(self) -> None:
        """COMPRESS was answered OK: install the codec, and feed it what the server
        sent after the OK (already compressed)."""
        codec = DeflateCodec()
        self.codec = codec
        left = self.core.compression_started()
        self._feed(left)

    def next_event(self) -> ClientEvent | enum.Enum:
        core = self.core
        while True:
            if self.error is not None:
                raise self.error
            event = core.next_event()
            if event is not NEED_DATA or self.codec is None:
                return event
            try:
                more = self.codec.read(_CHUNK)
            except CodecError as exc:
                raise RemoteProtocolError(f"the compressed stream is broken: {exc}") from exc
            if not more:
                return event
            core.receive_data(more)

    def data_to_send(self) -> bytes:
        out = self.core.data_to_send()
        if out and self.codec is not None:
            return self.codec.encode(out)
        return out

    def receive_data(self, data: bytes) -> None:
        if self.codec is None or not data:
            self.core.receive_data(data)
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        assert self.codec is not None
        try:
            self.codec.feed(data)
        except CodecError as exc:
            # Raised by the next next_event(), where the adapter handles protocol errors.
            self.error = RemoteProtocolError(f"the compressed stream is broken: {exc}")
