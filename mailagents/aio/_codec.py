"""The codec hook between a session's transport and its protocol core, and RFC 4978's
COMPRESS=DEFLATE codec.

A :class:`Codec` encodes every write and decodes every input octet once a session has
it installed (``StreamSession.install_codec``, after the reply that switches it on has
been written as it is: RFC 4978 §3 starts compression right after the CRLF of the
tagged OK). It sits above TLS: with both, the compressed stream is what TLS encrypts
(compression before encryption, since encrypted octets do not compress).

Buffers are bounded both ways. Incoming: :meth:`Codec.feed` holds the octets received
(at most ``max_input`` of them undecoded) and :meth:`Codec.read` hands out at most as
many decoded octets as asked for, so that a small input that inflates to gigabytes (a
"zip bomb") is decoded only as fast as the core consumes it; the session stops reading
from the socket meanwhile. Outgoing: each write is compressed and flushed at once.
"""

from __future__ import annotations

import zlib
from typing import Protocol

__all__ = ["Codec", "CodecError", "DeflateCodec"]

MAX_INPUT = 1024 * 1024
"""Undecoded input octets a :class:`DeflateCodec` holds at most by default (the session
pauses reading long before: this bounds one read in flight)."""


class CodecError(Exception):
    """The input cannot be decoded (a corrupt stream, or more held than the bound);
    the session cannot go on."""


class Codec(Protocol):
    """What a session needs of a codec."""

    def encode(self, data: bytes) -> bytes:
        """``data`` as it goes on the wire, complete: the peer can decode all of it
        without waiting for more."""
        ...

    def feed(self, data: bytes) -> None:
        """Octets received from the wire, to be decoded by :meth:`read`. Raises
        :exc:`CodecError` if more than the codec's bound would be held."""
        ...

    def read(self, max_size: int) -> bytes:
        """At most ``max_size`` decoded octets (``b""`` when the input fed so far gives
        none). Raises :exc:`CodecError` for input that cannot be decoded."""
        ...


class DeflateCodec:
    """RFC 4978 COMPRESS=DEFLATE: raw DEFLATE (RFC 1951: no zlib header or checksum,
    ``wbits=-15``) both ways, with ``zlib``.

    Each :meth:`encode` ends with a ``Z_SYNC_FLUSH``: RFC 4978 has the sender flush
    whenever it waits for its peer, which for a server is after every write, so a
    reply never waits in the compressor (and the empty sync block it ends with lets
    decoders that only return whole blocks return it at once). ``level`` is zlib's
    compression level (1 fastest, 9 smallest; RFC 4978 §4 suggests low levels to save
    CPU). ``max_input`` bounds the undecoded input held."""

    __slots__ = ("_compress", "_decompress", "_held", "max_input")

    def __init__(self, *, level: int = 6, max_input: int = MAX_INPUT) -> None:
        if not -1 <= level <= 9:
            raise ValueError("level must be between -1 and 9")
        if max_input < 1:
            raise ValueError("max_input must be at least 1")
        self.max_input = max_input
        """Undecoded input octets held at most."""
        self._compress = zlib.compressobj(level, zlib.DEFLATED, -15)
        self._decompress = zlib.decompressobj(-15)
        self._held = b""

    @property
    def pending(self) -> int:
        """Undecoded input octets held."""
        return len(self._held)

    def encode(self, data: bytes) -> bytes:
        """``data`` compressed and sync-flushed."""
        c = self._compress
        return c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)

    def feed(self, data: bytes) -> None:
        """Hold compressed input for :meth:`read`."""
        if not data:
            return
        if len(self._held) + len(data) > self.max_input:
            raise CodecError(f"more than {self.max_input} compressed octets held")
        self._held = self._held + data if self._held else data

    def read(self, max_size: int) -> bytes:
        """Inflate at most ``max_size`` octets of what was fed."""
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        d = self._decompress
        while self._held:
            if d.eof:
                # The client ended its DEFLATE stream (a final block): nothing may
                # follow on this connection.
                raise CodecError("data after the end of the compressed stream")
            try:
                out = d.decompress(self._held, max_size)
            except zlib.error as exc:
                raise CodecError(f"corrupt DEFLATE stream: {exc}") from None
            self._held = d.unconsumed_tail or d.unused_data
            if out:
                return out
            if d.eof and not self._held:
                break
        return b""
