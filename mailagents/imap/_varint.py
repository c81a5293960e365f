"""The small binary encoding of the stored MIME part map and of the stores' message
cache: unsigned numbers as LEB128 varints, optional texts as a varint length plus one
(0 for ``None``) then their UTF-8 octets. Pure functions, no I/O.
"""

from __future__ import annotations

__all__ = ["VarintReader", "put_number", "put_text"]


def put_number(out: bytearray, n: int) -> None:
    """Append ``n`` (not negative) as a varint: 7 bits an octet, low bits first."""
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def put_text(out: bytearray, text: str | None, errors: str = "surrogateescape") -> None:
    """Append ``text`` (``None`` allowed), encoded in UTF-8 with ``errors``."""
    if text is None:
        out.append(0)
        return
    raw = text.encode("utf-8", errors)
    put_number(out, len(raw) + 1)
    out += raw


class VarintReader:
    """Reads back what :func:`put_number` and :func:`put_text` wrote, from ``pos``;
    anything cut short or malformed raises ``error(message)``, the message naming
    ``what`` is read."""

    __slots__ = ("data", "error", "pos", "what")

    def __init__(
        self,
        data: bytes,
        pos: int = 0,
        *,
        error: type[Exception] = ValueError,
        what: str = "data",
    ) -> None:
        self.data = data
        self.pos = pos
        self.error = error
        self.what = what

    def number(self) -> int:
        """The next varint (at most 64 bits)."""
        data = self.data
        n = shift = 0
        while True:
            if self.pos >= len(data) or shift > 63:
                raise self.error(f"{self.what} cut short")
            byte = data[self.pos]
            self.pos += 1
            n |= (byte & 0x7F) << shift
            if byte < 0x80:
                return n
            shift += 7

    def raw(self, count: int) -> bytes:
        """The next ``count`` octets."""
        if count > len(self.data) - self.pos:
            raise self.error(f"{self.what} cut short")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def text(self, errors: str = "surrogateescape") -> str | None:
        """The next text, or ``None``."""
        n = self.number()
        if n == 0:
            return None
        try:
            return self.raw(n - 1).decode("utf-8", errors)
        except UnicodeDecodeError as exc:
            raise self.error(f"{self.what}: text not UTF-8") from exc

    def done(self) -> bool:
        """Whether everything was read."""
        return self.pos == len(self.data)
