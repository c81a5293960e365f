"""IMAP literal framing, the part both sides share: the events a reader hands out and
the literal announcement at the end of a line.

RFC 9051 §4.3: a literal is announced at the very end of a line, just before its CRLF:
``{n}`` (synchronising: a client waits for the server's ``+`` before sending the
octets), ``{n+}`` (non-synchronising, RFC 7888 LITERAL+/LITERAL-), ``~{n}`` and
``~{n+}`` (literal8, RFC 3516 BINARY, octets that may hold NUL). RFC 9051 §9 counts
both with ``number64`` (0 to 2^63-1); a longer count is no literal we can read and is
refused with BAD.

The readers themselves are :class:`~mailagents.imap._framing_server.CommandReader`
(server side, command frames) and :class:`~mailagents.imap._framing_client.ResponseReader`
(client side, response frames). Pure data, no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mailagents.imap._frame import Frame

__all__ = [
    "NUMBER64_MAX",
    "Announcement",
    "ContinuationNeeded",
    "FrameError",
    "FrameErrorKind",
    "FrameReceived",
    "IdleDone",
    "LiteralChunk",
    "LiteralEnd",
    "LiteralStart",
    "RawLine",
    "ReaderEvent",
    "announcement",
]

NUMBER64_MAX = 2**63 - 1
"""RFC 9051 §9 ``number64``: the largest literal count that can be announced."""

_NUMBER64_DIGITS = len(str(NUMBER64_MAX))


@dataclass(frozen=True, slots=True)
class Announcement:
    """A literal announced at the end of a line: its octet count (``None`` when the
    count overflows ``number64``), literal8 (``~``), non-synchronising (``+``)."""

    size: int | None
    binary: bool
    non_sync: bool


def announcement(line: bytes) -> Announcement | None:
    """The literal announcement ending ``line`` (without its CRLF), or ``None``.

    Only ``{`` 1*DIGIT [``+``] ``}`` right at the end counts (RFC 9051 §4.3): ``{`` is an
    atom-special, so no atom can end that way, and a quoted string ends with ``"``. A
    count beyond ``number64`` gives ``size=None`` (the caller answers BAD) without
    converting an arbitrarily long string of digits.
    """
    if not line.endswith(b"}"):
        return None
    open_ = line.rfind(b"{")
    if open_ < 0:
        return None
    inner = line[open_ + 1 : -1]
    non_sync = inner.endswith(b"+")
    if non_sync:
        inner = inner[:-1]
    if not inner or not inner.isdigit():
        return None
    binary = open_ > 0 and line[open_ - 1 : open_] == b"~"
    digits = inner.lstrip(b"0") or b"0"
    if len(digits) > _NUMBER64_DIGITS:
        return Announcement(None, binary, non_sync)
    size = int(digits)
    return Announcement(size if size <= NUMBER64_MAX else None, binary, non_sync)


class FrameErrorKind(enum.Enum):
    """Why a command could not be framed; the server core picks the answer."""

    LINE_TOO_LONG = "LINE_TOO_LONG"
    """A physical line passed the line limit (answer BAD); the reader resynchronised at
    its CRLF and the rest of the command, if any, is lost."""
    COMMAND_TOO_LONG = "COMMAND_TOO_LONG"
    """The lines and inline literals of one command passed the total limit (BAD)."""
    LITERAL_TOO_BIG = "LITERAL_TOO_BIG"
    """A literal larger than its limit (``NO [TOOBIG]``, RFC 7888 §4, RFC 5530 §3)."""
    NON_SYNC_TOO_BIG = "NON_SYNC_TOO_BIG"
    """LITERAL- in force and a non-synchronising literal of more than 4096 octets
    (RFC 7888, and RFC 9051 §4.3 for IMAP4rev2: refused, ``BAD [TOOBIG]`` here)."""
    BAD_LITERAL = "BAD_LITERAL"
    """A literal count beyond ``number64`` (BAD)."""
    NOT_DONE = "NOT_DONE"
    """During IDLE a line other than ``DONE`` (RFC 2177 §3: BAD, and IDLE ends)."""


# --- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameReceived:
    """A whole command (server side) or response (client side)."""

    frame: Frame


@dataclass(frozen=True, slots=True, kw_only=True)
class ContinuationNeeded:
    """A synchronising literal within the limits was announced: the reader waits. The
    server core either sends ``+`` and calls ``go_ahead()``, or answers the command with
    a tagged NO/BAD and calls ``refuse()`` (RFC 9051 §4.3, §7.5: the client then sends
    neither the literal nor the rest of the command)."""

    tag: str | None
    size: int
    binary: bool
    message: bool
    """The literal is an APPEND message (limited by the APPEND limit, streamed)."""
    index: int
    """Its place among the command's literals, from 0."""
    head: Frame | None = None
    """For an APPEND message, the frame so far (as in :class:`LiteralStart`), so that
    the server can refuse before the octets come (``NO [TRYCREATE]``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LiteralStart:
    """A literal whose octets are passed on as :class:`LiteralChunk` events, not kept in
    the frame (an APPEND message; on the client side a literal above the inline
    threshold). ``head`` is the frame so far: its last line ends with this literal's
    announcement, so a parser can read what came before it (the APPEND mailbox)."""

    tag: str | None
    size: int
    binary: bool
    index: int
    head: Frame


@dataclass(frozen=True, slots=True, kw_only=True)
class LiteralChunk:
    """Some octets of the streamed literal ``index``."""

    index: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class LiteralEnd:
    """The streamed literal ``index`` is complete; in the frame it is a ``Streamed``."""

    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RawLine:
    """A line read as it is, no literal looked for (a SASL response, RFC 9051 §6.2.2)."""

    line: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class IdleDone:
    """``DONE`` (any case) ended IDLE (RFC 2177 §3)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameError:
    """A command the reader could not frame. ``tag`` is the command's tag when it was
    read (else ``None``: answer untagged). ``fatal``: the reader cannot find where the
    next command starts (or was told to end the session on an oversized literal); the
    core sends ``* BYE`` and the session ends. Otherwise the reader already skipped what
    belonged to the command and the session goes on after the answer."""

    tag: str | None
    kind: FrameErrorKind
    fatal: bool = False
    text: str = ""


ReaderEvent = (
    FrameReceived
    | ContinuationNeeded
    | LiteralStart
    | LiteralChunk
    | LiteralEnd
    | RawLine
    | IdleDone
    | FrameError
)
"""What a reader's ``next_event()`` returns besides ``NEED_DATA``."""
