"""One POP3 status line (RFC 1939 §3) with its optional response code (RFC 2449 §8),
and the two sentinels (shared by every protocol core) that both sides return."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailagents._protocol import NEED_DATA, PAUSED, Sentinel

__all__ = ["NEED_DATA", "PAUSED", "Response", "Sentinel", "parse_response"]



# RFC 2449 §8: resp-code = "[" resp-level *("/" resp-level) "]", resp-level = 1*rchar,
# rchar = %x21-2E / %x30-5C / %x5E-7F (printable, no "/" and no "]").
_LEVEL = r"[\x21-\x2e\x30-\x5c\x5e-\x7f]+"
_CODE = re.compile(rf"{_LEVEL}(?:/{_LEVEL})*")
_CODE_IN_TEXT = re.compile(rf"\[({_LEVEL}(?:/{_LEVEL})*)\](?: |$)")
# Text on a status line: no CR, LF or NUL (they would end or corrupt the line).
_BAD_TEXT = re.compile(r"[\x00\r\n]")


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """A status line: ``+OK text`` or ``-ERR [CODE] text``.

    ``code`` is the RFC 2449 §8 response code without its brackets, levels joined by
    ``/`` (``"IN-USE"``, ``"SYS/TEMP"``); a positive response may carry one too, but
    codes are meant for ``-ERR``.
    """

    ok: bool
    text: str = ""
    code: str | None = None

    def __post_init__(self) -> None:
        if _BAD_TEXT.search(self.text):
            raise ValueError("response text must not contain CR, LF or NUL")
        if self.code is not None and not _CODE.fullmatch(self.code):
            raise ValueError(f"invalid response code {self.code!r} (RFC 2449 §8)")

    def to_bytes(self) -> bytes:
        """The status line on the wire, CRLF included (UTF-8 text is sent as is: only
        after the client enabled RFC 6856 UTF8 should a server use it)."""
        head = "+OK" if self.ok else "-ERR"
        if self.code is not None:
            head = f"{head} [{self.code}]"
        line = f"{head} {self.text}" if self.text else head
        return line.encode("utf-8") + b"\r\n"


# The codes of an -ERR that may pass without the client changing anything: RFC 2449
# §8.1 (IN-USE: the maildrop is locked by another session; LOGIN-DELAY: too soon since
# the last login) and RFC 3206 §4 (SYS/TEMP: a temporary problem of the server).
# SYS/PERM, AUTH and the rest are permanent. Codes are hierarchical (RFC 2449 §8): a
# sub-level under one of these ("SYS/TEMP/DISK") is temporary too.
_TEMPORARY = ("IN-USE", "LOGIN-DELAY", "SYS/TEMP")


def is_temporary(response: Response) -> bool:
    """An ``-ERR`` whose response code says the failure may pass (see ``_TEMPORARY``)."""
    code = response.code
    if response.ok or code is None:
        return False
    code = code.upper()
    return any(code == t or code.startswith(t + "/") for t in _TEMPORARY)


def parse_response(line: bytes) -> Response | None:
    """Parse one status line (without its CRLF); ``None`` when it starts with neither
    ``+OK`` nor ``-ERR`` (RFC 1939 §3: the indicators are upper case, but we accept any
    case as servers in the wild do)."""
    text = line.decode("utf-8", "replace")
    upper = text[:4].upper()
    if upper.startswith("+OK") and (len(text) == 3 or text[3] == " "):
        ok, rest = True, text[4:]
    elif upper == "-ERR" and (len(text) == 4 or text[4] == " "):
        ok, rest = False, text[5:]
    else:
        return None
    rest = _BAD_TEXT.sub("", rest)
    code = None
    match = _CODE_IN_TEXT.match(rest)
    if match is not None:
        code = match.group(1)
        rest = rest[match.end():]
    return Response(ok=ok, text=rest, code=code)
