"""The text side of SEARCH: header fields and the decoded text of a message's parts.

RFC 9051 §6.4.4 compares strings as substrings, without regard to case; like
Dovecot, values are compared as Unicode after undoing what encodes them:

- a header field's value is unfolded (``unfold`` of the MIME pieces) and its RFC 2047
  encoded-words decoded (:func:`decode_words`; an unknown charset or a broken word is
  kept as written, so nothing raises);
- a text part's body (``text/*``, or a part without a Content-Type, RFC 2045 §5.2)
  has its transfer encoding undone with the streaming decoders of ``_binary``
  (base64, quoted-printable) and its charset decoded (``US-ASCII`` and unknown
  charsets as UTF-8, bad octets replaced); other parts (images, applications) are not
  text and are not searched.

:class:`NeedleScanner` looks for several needles in one pass over a stream of text
chunks, keeping only the last ``len(longest needle) - 1`` characters between chunks,
so a 50 MB body is searched in bounded memory. Comparison is on ``str.casefold``.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import quopri
import re
from collections.abc import Callable, Collection, Iterator
from typing import BinaryIO

from mailagents.imap._binary import UnknownEncoding, binary_decoder
from mailagents.imap._mime import MimeScanner, PartMap, header_fields, parse_content_type, unfold

__all__ = [
    "HEADER_MAX",
    "PART_END",
    "NeedleScanner",
    "TextDecoder",
    "decode_words",
    "header_values",
    "read_header",
    "scan_part_map",
    "text_chunks",
]

HEADER_MAX = 262_144
"""The most octets of a header block read for HEADER, FROM, SENTON...; fields past it
are not seen (Dovecot's parser has a limit of its kind too)."""

PART_END = "\x00"
"""Yielded by :func:`text_chunks` at the end of each part: a search value never holds
NUL, so no match runs from one part into the next."""

_CHUNK = 65_536
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"(=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)[ \t]+(?==\?[^?\s]+\?[bBqQ]\?)")

Opener = Callable[[int, int | None], BinaryIO]
"""``open(start, length)``: a stream of the message's octets from ``start`` (at most
``length`` of them), as ``Folder.open_message`` of one UID gives."""


def _decode_word(match: re.Match[str]) -> str:
    charset, encoding, text = match.group(1), match.group(2).upper(), match.group(3)
    charset = charset.split("*", 1)[0]  # RFC 2231 §5: charset*language
    raw = text.encode("utf-8", "surrogateescape")
    try:
        if encoding == "B":
            data = base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)
        else:
            data = quopri.decodestring(raw, header=True)
        codecs.lookup(charset)
        return data.decode(_text_codec(charset).name, "replace")
    except (binascii.Error, UnicodeError, ValueError, LookupError, TypeError):
        return match.group(0)


def decode_words(value: str) -> str:
    """``value`` with its RFC 2047 encoded-words decoded; the blanks between two
    adjacent encoded-words are dropped (RFC 2047 §6.2)."""
    if "=?" not in value:
        return value
    return _ENCODED_WORD.sub(_decode_word, _BETWEEN_WORDS.sub(r"\1", value))


def header_values(block: bytes, name: str | None = None) -> Iterator[tuple[str, str]]:
    """``(lower-case name, decoded value)`` of the fields of a header block, only those
    called ``name`` (any case) when given."""
    wanted = None if name is None else name.lower()
    for field, raw in header_fields(block):
        if wanted is None or field == wanted:
            yield field, decode_words(unfold(raw))


def read_header(open_message: Opener, limit: int = HEADER_MAX) -> bytes:
    """The header block of a message (up to and with its blank line, at most ``limit``
    octets), read in chunks from its start."""
    out = bytearray()
    with open_message(0, limit) as stream:
        while len(out) < limit:
            chunk = stream.read(min(8192, limit - len(out)))
            if not chunk:
                break
            seen = max(0, len(out) - 3)
            out += chunk
            if out.startswith(b"\r\n") or out.startswith(b"\n"):
                return bytes(out[: 2 if out.startswith(b"\r\n") else 1])
            end = out.find(b"\n\r\n", seen)
            end2 = out.find(b"\n\n", seen)
            if end >= 0 and (end2 < 0 or end < end2):
                return bytes(out[: end + 3])
            if end2 >= 0:
                return bytes(out[: end2 + 2])
    return bytes(out)


def scan_part_map(open_message: Opener) -> PartMap:
    """The part map of a message computed by scanning it in chunks."""
    scanner = MimeScanner()
    with open_message(0, None) as stream:
        while chunk := stream.read(_CHUNK):
            scanner.feed(chunk)
    return scanner.close()


def _text_codec(charset: str) -> codecs.CodecInfo:
    """The codec of a MIME charset name: unknown names, ``US-ASCII`` and codecs that
    are not text encodings (``base64``, ``rot13``...) read as UTF-8."""
    try:
        info = codecs.lookup(charset.strip())
    except LookupError:
        return codecs.lookup("utf-8")
    if info.name == "ascii" or not getattr(info, "_is_text_encoding", True):
        return codecs.lookup("utf-8")
    return info


class TextDecoder:
    """A part's charset, decoded incrementally with bad octets replaced; a codec that
    fails anyway (UTF-16 without a byte-order mark) gives way to UTF-8 for the rest."""

    __slots__ = ("_decoder",)

    def __init__(self, content_type: str | None) -> None:
        parsed = parse_content_type(content_type)
        charset = "utf-8"
        if parsed is not None:
            charset = next((v for k, v in parsed[2] if k.lower() == "charset"), "utf-8")
        self._decoder = _text_codec(charset).incrementaldecoder("replace")

    def decode(self, data: bytes, final: bool = False) -> str:
        """Decode the next octets (``final`` at the end of the part)."""
        try:
            text = self._decoder.decode(data, final)
        except (UnicodeError, ValueError, TypeError):
            self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
            text = self._decoder.decode(data, final)
        return text if isinstance(text, str) else ""


def text_chunks(part_map: PartMap, open_message: Opener) -> Iterator[str]:
    """The decoded text of every text part of the message (nested messages' parts
    included), in chunks of bounded size, in the order of the parts, each part ended
    by ``PART_END``."""
    for node in part_map.parts:
        if node.children or node.is_multipart or node.is_message:
            continue
        if node.is_mime:
            parsed = parse_content_type(node.field("content-type"))
            if parsed is not None and parsed[0].lower() != "text":
                continue
        decoder = binary_decoder(node.field("content-transfer-encoding"))
        if isinstance(decoder, UnknownEncoding):
            continue
        charset = TextDecoder(node.field("content-type"))
        length = node.end - node.body_start
        if length <= 0:
            continue
        with open_message(node.body_start, length) as stream:
            while chunk := stream.read(_CHUNK):
                text = charset.decode(decoder.feed(chunk))
                if text:
                    yield text
        text = charset.decode(decoder.close(), final=True)
        yield text + PART_END


class NeedleScanner:
    """Looks for every needle of a set in a stream of text chunks, in one pass.

    Needles are compared casefolded; between chunks only the last
    ``len(longest needle) - 1`` characters are kept. :meth:`feed` returns whether every
    needle has been found (the caller may then stop reading).
    """

    __slots__ = ("_keep", "_pending", "_tail", "found")

    def __init__(self, needles: Collection[str]) -> None:
        folded = {n.casefold() for n in needles}
        self.found: set[str] = {n for n in folded if not n}
        self._pending = folded - self.found
        self._keep = max((len(n) for n in self._pending), default=1) - 1
        self._tail = ""

    def feed(self, text: str) -> bool:
        """Search the next chunk; ``True`` when nothing is left to find."""
        if not self._pending:
            return True
        buf = self._tail + text.casefold()
        hits = {n for n in self._pending if n in buf}
        if hits:
            self.found |= hits
            self._pending -= hits
        self._tail = buf[-self._keep :] if self._keep else ""
        return not self._pending
