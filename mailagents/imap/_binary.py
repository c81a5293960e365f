"""BINARY[section] (RFC 3516): a part's content with its transfer encoding undone.

:func:`binary_decoder` gives a streaming decoder for a ``Content-Transfer-Encoding``
(chunks in, chunks out, bounded state): ``base64`` (RFC 2045 §6.8; characters outside
the alphabet are skipped, decoding stops at the padding), ``quoted-printable``
(RFC 2045 §6.7; soft line breaks removed, blanks before a line end dropped, a broken
``=`` sequence kept as it is), ``7bit``/``8bit``/``binary`` as they are. Any other
encoding is an :class:`UnknownEncoding` value, which the server answers with
``NO [UNKNOWN-CTE]`` (RFC 3516 §4.3).

:func:`iter_binary` and :func:`binary_size` apply it to a part of a message through
its part map, reading through ``read(start, length)`` as ``_sections`` does; the part's
octets are taken as sent (bare LF as CRLF) before decoding, so a quoted-printable text
keeps CRLF line ends. ``BINARY[]`` (no part number) is the message as it is;
multipart and message parts are sent as they are (their encoding must be an identity
one, else :class:`UnknownEncoding`).

Pure computation; I/O only through the caller's ``read``.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass

from mailagents.imap._mime import PartMap
from mailagents.imap._mime_headers import read_token, skip_cfws
from mailagents.imap._sections import Reader, iter_crlf, locate_part

__all__ = [
    "Base64Decoder",
    "BinaryDecoder",
    "IdentityDecoder",
    "QuotedPrintableDecoder",
    "UnknownEncoding",
    "binary_decoder",
    "binary_size",
    "iter_binary",
]

_IDENTITY = frozenset({"7bit", "8bit", "binary"})
_NOT_B64 = re.compile(rb"[^A-Za-z0-9+/=]+")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownEncoding:
    """A transfer encoding BINARY cannot undo (RFC 3516 §4.3: ``NO [UNKNOWN-CTE]``)."""

    encoding: str


class BinaryDecoder:
    """A streaming decoder: :meth:`feed` chunks, :meth:`close` at the end; each
    returns the decoded octets available so far."""

    def feed(self, data: bytes) -> bytes:
        """Decode the next chunk."""
        raise NotImplementedError

    def close(self) -> bytes:
        """The last decoded octets."""
        return b""


class IdentityDecoder(BinaryDecoder):
    """``7bit``, ``8bit``, ``binary``: the octets as they are."""

    def feed(self, data: bytes) -> bytes:
        """The chunk unchanged."""
        return data


class Base64Decoder(BinaryDecoder):
    """``base64`` (RFC 2045 §6.8): non-alphabet characters are skipped, decoding
    ends at the first padding; an incomplete last group is decoded as far as it
    goes."""

    def __init__(self) -> None:
        self._rest = b""
        self._done = False

    def feed(self, data: bytes) -> bytes:
        """Decode the next chunk."""
        if self._done:
            return b""
        data = self._rest + _NOT_B64.sub(b"", data)
        pad = data.find(b"=")
        if pad >= 0:
            self._done = True
            data = data[:pad]
            usable = len(data)
        else:
            usable = len(data) - len(data) % 4
        self._rest = data[usable:]
        body = data[:usable]
        if self._done:
            self._rest = b""
            return self._tail(body)
        return binascii.a2b_base64(body) if body else b""

    @staticmethod
    def _tail(data: bytes) -> bytes:
        whole = len(data) - len(data) % 4
        out = binascii.a2b_base64(data[:whole]) if whole else b""
        rest = data[whole:]
        if len(rest) >= 2:
            out += binascii.a2b_base64(rest + b"=" * (4 - len(rest)))
        return out

    def close(self) -> bytes:
        """Decode what was left of an unpadded last group."""
        rest, self._rest = self._rest, b""
        return self._tail(rest) if not self._done else b""


class QuotedPrintableDecoder(BinaryDecoder):
    """``quoted-printable`` (RFC 2045 §6.7): ``=XX`` escapes, soft line breaks
    (``=`` at a line end) removed, blanks at a line end dropped (rule 3); a broken
    ``=`` is kept. Works line by line; a line is held until its end, bounded by
    ``max_line`` (a longer one is decoded in pieces)."""

    def __init__(self, max_line: int = 65_536) -> None:
        self._line = bytearray()
        self._max = max_line

    def feed(self, data: bytes) -> bytes:
        """Decode the complete lines of the next chunk."""
        self._line += data
        end = self._line.rfind(b"\n")
        if end < 0:
            if len(self._line) <= self._max:
                return b""
            # A very long line: decode all but a possible escape at its end.
            cut = len(self._line)
            tail = self._line.rfind(b"=", cut - 2)
            if tail >= 0:
                cut = tail
            piece = bytes(self._line[:cut])
            del self._line[:cut]
            return self._decode_piece(piece)
        lines = bytes(self._line[: end + 1])
        del self._line[: end + 1]
        out = bytearray()
        for line in lines.splitlines(keepends=True):
            out += self._decode_line(line)
        return bytes(out)

    def close(self) -> bytes:
        """Decode the last line (without a line end)."""
        line = bytes(self._line)
        self._line.clear()
        return self._decode_line(line) if line else b""

    @staticmethod
    def _decode_piece(piece: bytes) -> bytes:
        return _QP_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), piece)

    def _decode_line(self, line: bytes) -> bytes:
        if line.endswith(b"\r\n"):
            body, ending = line[:-2], b"\r\n"
        elif line.endswith(b"\n"):
            body, ending = line[:-1], b"\r\n"
        else:
            body, ending = line, b""
        body = body.rstrip(b" \t")
        if body.endswith(b"=") and ending:
            return self._decode_piece(body[:-1])
        return self._decode_piece(body) + ending


def binary_decoder(encoding: str | None) -> BinaryDecoder | UnknownEncoding:
    """The decoder for a ``Content-Transfer-Encoding`` value (``None``: ``7bit``)."""
    token = "7bit"
    if encoding is not None:
        token = read_token(encoding, skip_cfws(encoding, 0))[0] or "7bit"
    name = token.lower()
    if name in _IDENTITY:
        return IdentityDecoder()
    if name == "base64":
        return Base64Decoder()
    if name == "quoted-printable":
        return QuotedPrintableDecoder()
    return UnknownEncoding(encoding=token)


def iter_binary(
    part_map: PartMap,
    part: tuple[int, ...],
    read: Reader,
    *,
    partial: tuple[int, int] | None = None,
    chunk_size: int = 65_536,
) -> Iterator[bytes] | UnknownEncoding | None:
    """The decoded octets of ``BINARY[part]<origin.count>`` in chunks (the partial
    range counts decoded octets), :class:`UnknownEncoding`, or ``None`` when the part
    does not exist."""
    index = locate_part(part_map, part)
    if index is None:
        return None
    if index == -1:
        return iter(())
    node = part_map.parts[index]
    if part:
        start, end = node.body_start, node.end
        same = node.end - node.body_start == node.body_size
    else:
        start, end = node.header_start, node.end
        same = not part_map.has_bare_lf
    decoder: BinaryDecoder | UnknownEncoding = IdentityDecoder()
    if part:
        decoder = binary_decoder(node.field("content-transfer-encoding"))
        composite = node.is_multipart or node.is_message
        if composite and isinstance(decoder, (Base64Decoder, QuotedPrintableDecoder)):
            return UnknownEncoding(encoding=node.field("content-transfer-encoding") or "")
    if isinstance(decoder, UnknownEncoding):
        return decoder
    chunks = iter_crlf(read, start, end, bare_lf=not same, chunk_size=chunk_size)
    out = _decode(chunks, decoder)
    return out if partial is None else _slice(out, *partial)


def _decode(chunks: Iterator[bytes], decoder: BinaryDecoder) -> Iterator[bytes]:
    for chunk in chunks:
        data = decoder.feed(chunk)
        if data:
            yield data
    data = decoder.close()
    if data:
        yield data


def _slice(chunks: Iterator[bytes], origin: int, count: int) -> Iterator[bytes]:
    skip, left = origin, count
    for chunk in chunks:
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        piece = chunk[skip : skip + left]
        skip = 0
        left -= len(piece)
        if piece:
            yield piece
        if left <= 0:
            return


def binary_size(
    part_map: PartMap, part: tuple[int, ...], read: Reader
) -> int | UnknownEncoding | None:
    """``BINARY.SIZE[part]``: the decoded length (RFC 3516 §4.2), computed by decoding
    (streaming, nothing kept); an identity encoding needs no reading."""
    index = locate_part(part_map, part)
    if index is None:
        return None
    if index == -1:
        return 0
    node = part_map.parts[index]
    if not part:
        return part_map.crlf_size
    decoder = binary_decoder(node.field("content-transfer-encoding"))
    if isinstance(decoder, IdentityDecoder):
        return node.body_size
    chunks = iter_binary(part_map, part, read)
    if chunks is None or isinstance(chunks, UnknownEncoding):
        return chunks
    return sum(len(c) for c in chunks)
