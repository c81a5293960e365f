"""One IMAP command or response as it travels: its lines and the literals between them.

RFC 9051 §4.3: a literal is announced at the end of a line (``{n}``, ``{n+}`` with
LITERAL+/LITERAL- (RFC 7888), ``~{n}`` for literal8 (RFC 3516)); its ``n`` octets
follow the CRLF, and the command or response goes on after them on the same logical
line. A :class:`Frame` keeps exactly that shape, so the reader (bytes to frames), the
parsers (frames to commands and responses), the writers (the other way) and the sender
(which must wait for ``+`` before a synchronising literal) share one representation and
nothing is copied to join lines.

Pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailagents._protocol import LocalProtocolError

__all__ = ["Frame", "Streamed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Streamed:
    """A literal whose octets were not kept in the frame: they went (or go) out as
    chunk events, too big to buffer (an APPEND message, a large ``BODY[]``). The
    parser sees it where the literal stood; ``index`` numbers the frame's literals
    from 0."""

    size: int
    binary: bool = False
    index: int = 0

    def __post_init__(self) -> None:
        if self.size < 0 or self.index < 0:
            raise LocalProtocolError("Streamed.size and Streamed.index must not be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """A whole command or response.

    ``lines`` are the physical lines without their CRLF; every line but the last ends
    with a literal announcement (``{n}``, ``{n+}``, ``~{n}``, ``~{n+}``), whose octets are
    the matching entry of ``literals`` (``bytes``, or :class:`Streamed` when they were
    passed on as chunks). ``len(literals) == len(lines) - 1``.
    """

    lines: tuple[bytes, ...]
    literals: tuple[bytes | Streamed, ...] = ()

    def __post_init__(self) -> None:
        if len(self.lines) != len(self.literals) + 1:
            raise LocalProtocolError("a Frame has exactly one more line than literals")

    def to_bytes(self) -> bytes:
        """The frame on the wire, each line ended by CRLF (streamed literals cannot be
        joined: :class:`~mailagents.imap.LocalProtocolError`)."""
        out = bytearray()
        for line, literal in zip(self.lines, self.literals, strict=False):
            if isinstance(literal, Streamed):
                raise LocalProtocolError("a frame with a streamed literal has no bytes form")
            out += line
            out += b"\r\n"
            out += literal
        out += self.lines[-1]
        out += b"\r\n"
        return bytes(out)
