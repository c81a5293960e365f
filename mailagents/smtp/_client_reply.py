"""The client's reply reader: server bytes to :class:`Reply` values (RFC 5321 §4.2), and
the EHLO extension list (RFC 5321 §4.1.1.1).

    reply-line = *( Reply-code "-" [ textstring ] CRLF )
                 Reply-code [ SP textstring ] CRLF
    Reply-code = %x32-35 %x30-35 %x30-39

The reader is lenient where leniency is harmless (a bare LF ends a line, the third
digit of the code may be anything, text is decoded as UTF-8 with replacement) and strict
where it matters: every line of a multi-line reply carries the same code, and a line or
a reply longer than the configured bounds ends the session (:class:`RemoteProtocolError`),
so that a hostile server cannot make the client buffer without limit.
"""

from __future__ import annotations

import re

from mailagents._protocol import LineReader, RemoteProtocolError
from mailagents.smtp._reply import Reply

__all__ = ["ReplyReader", "parse_extensions"]

# RFC 3463 §2 status code at the start of the text, as RFC 2034 §4 places it.
_ENHANCED = re.compile(r"([245])\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})(?: |$)")
# RFC 5321 §4.1.1.1: ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


def _clean(text: str) -> str:
    # Reply lines may not hold CR or NUL (Reply refuses them); a hostile server's are
    # replaced rather than trusted.
    if "\r" in text or "\x00" in text:
        text = text.replace("\r", "\ufffd").replace("\x00", "\ufffd")
    return text


class ReplyReader:
    """Bounded buffer of server input, cut into complete replies.

    ``max_line`` bounds one reply line in octets, line end included; ``max_lines`` the
    lines of one multi-line reply.
    """

    __slots__ = ("_buf", "_code", "_lines", "_max_line", "_max_lines", "_reader")

    def __init__(self, *, max_line: int, max_lines: int) -> None:
        self._reader = LineReader()
        self._buf = self._reader.buffer
        self._max_line = max_line
        self._max_lines = max_lines
        self._code = 0
        self._lines: list[str] = []

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buf += data

    @property
    def buffered(self) -> bool:
        """Whether any input (a partial line or unread replies) is held."""
        return bool(self._buf) or bool(self._lines)

    def clear(self) -> int:
        """Drop everything buffered; return how many octets were dropped."""
        dropped = len(self._buf)
        self._reader.clear()
        self._lines = []
        self._code = 0
        return dropped

    def next_reply(self) -> Reply | None:
        """The next complete reply, or ``None`` if more input is needed.

        Raises :class:`RemoteProtocolError` for a malformed reply or one beyond the bounds.
        """
        lines = self._reader
        while True:
            raw = lines.take_line(self._max_line)
            if not isinstance(raw, bytes):
                if raw is None and not lines.discarding:
                    return None
                # A client has no reply to give a server that breaks the bound.
                raise RemoteProtocolError(f"reply line longer than {self._max_line} octets")
            reply = self._line(raw)
            if reply is not None:
                return reply

    def _line(self, raw: bytes) -> Reply | None:
        head = raw[:3]
        if (
            len(head) != 3
            or not head.isdigit()
            or head[0] not in b"2345"
            or (len(raw) > 3 and raw[3] not in b" -")
        ):
            shown = raw[:40].decode("ascii", "replace")
            raise RemoteProtocolError(f"malformed reply line {shown!r}")
        code = int(head)
        if self._lines and code != self._code:
            raise RemoteProtocolError(
                f"reply code changed from {self._code} to {code} within a multi-line reply"
            )
        self._code = code
        self._lines.append(_clean(raw[4:].decode("utf-8", "replace")))
        if len(self._lines) > self._max_lines:
            raise RemoteProtocolError(f"reply longer than {self._max_lines} lines")
        if raw[3:4] == b"-":
            return None
        lines = self._lines
        self._lines = []
        return _make_reply(code, lines)


def _make_reply(code: int, lines: list[str]) -> Reply:
    """Build the reply, taking an RFC 3463 code off the start of the text when its class
    matches the reply's (RFC 2034 §4 writes it on every line)."""
    match = _ENHANCED.match(lines[0])
    if match is None or match.group(1) != str(code)[0]:
        return Reply(code=code, lines=tuple(lines))
    enhanced = match.group(0).rstrip(" ")
    prefix = enhanced + " "
    stripped = []
    for line in lines:
        if line.startswith(prefix):
            line = line[len(prefix) :]
        elif line == enhanced:
            line = ""
        stripped.append(line)
    return Reply(code=code, enhanced=enhanced, lines=tuple(stripped))


def parse_extensions(reply: Reply) -> dict[str, str]:
    """The extensions of a 250 EHLO/LHLO reply: upper-case keyword to parameter text.

    The first line is the server's greeting. Old-style ``AUTH=PLAIN LOGIN`` lines (from
    servers written before RFC 2554 was final) are read as ``AUTH``, unless a standard
    ``AUTH`` line is present too. Lines that are not an ehlo-line are ignored.
    """
    extensions: dict[str, str] = {}
    old_auth: str | None = None
    for line in reply.lines[1:]:
        text = line.strip(" ")
        keyword, _, params = text.partition(" ")
        if keyword[:5].upper() == "AUTH=":
            old_auth = " ".join(filter(None, [keyword[5:], params.strip(" ")]))
            continue
        if not _KEYWORD.fullmatch(keyword):
            continue
        extensions.setdefault(keyword.upper(), " ".join(params.split()))
    if old_auth is not None and "AUTH" not in extensions:
        extensions["AUTH"] = " ".join(old_auth.split())
    return extensions
