"""SMTP replies: the one value type for every reply code (RFC 5321 §4.2)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailagents._protocol import LocalProtocolError

__all__ = ["Reply"]

# RFC 3463 §2: class "." subject "." detail; class is 2, 4 or 5; subject 0-999; detail 0-999.
_ENHANCED = re.compile(r"[245]\.(?:0|[1-9][0-9]{0,2})\.(?:0|[1-9][0-9]{0,2})")


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """One SMTP reply: a three-digit ``code``, an optional RFC 3463 ``enhanced``
    status code (``"2.1.0"``) and one or more text ``lines``.

    The enhanced code is written at the start of every line, as RFC 2034 §3 says.
    """

    code: int
    enhanced: str | None = None
    lines: tuple[str, ...] = ("",)
    # The bytes a server sends for this reply, computed on first use (see _server_bytes).
    _wire: tuple[bytes, bytes] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise LocalProtocolError(f"reply code out of range: {self.code}")
        if self.enhanced is not None:
            if not _ENHANCED.fullmatch(self.enhanced):
                raise LocalProtocolError(f"malformed enhanced status code: {self.enhanced!r}")
            if self.enhanced[0] != str(self.code)[0]:
                raise LocalProtocolError(
                    f"enhanced code {self.enhanced} does not match the reply class {self.code}"
                )
        if isinstance(self.lines, str):
            object.__setattr__(self, "lines", (self.lines,))
        if not self.lines:
            object.__setattr__(self, "lines", ("",))
        for line in self.lines:
            if "\r" in line or "\n" in line or "\x00" in line:
                raise LocalProtocolError("reply text must not contain CR, LF or NUL")

    @property
    def text(self) -> str:
        """The lines joined with a newline."""
        return "\n".join(self.lines)

    @property
    def is_positive(self) -> bool:
        """2xx or 3xx."""
        return self.code < 400

    @property
    def is_transient(self) -> bool:
        """4xx: try again later."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """5xx: do not repeat the same request."""
        return self.code >= 500

    def without_enhanced(self) -> Reply:
        """The same reply without its enhanced status code."""
        return Reply(code=self.code, lines=self.lines)

    def _server_bytes(self, enhanced: bool) -> bytes:
        """The reply as a server core queues it. Without ``enhanced`` (no
        ENHANCEDSTATUSCODES, or the greeting and the EHLO reply: RFC 2034 §4) the enhanced
        code is left out; with it, a 2xx/4xx/5xx reply that has none gets its class's
        generic code (RFC 2034 §3, RFC 3463 §3.1: X.0.0). Both forms are computed once
        per reply and kept in it: the constant replies a core shares between sessions
        are encoded once per process."""
        forms = self._wire
        if forms is None:
            plain = self.without_enhanced() if self.enhanced is not None else self
            full = self
            if self.enhanced is None and self.code // 100 in (2, 4, 5):
                full = Reply(code=self.code, enhanced=f"{self.code // 100}.0.0", lines=self.lines)
            forms = (plain.to_bytes(), full.to_bytes())
            object.__setattr__(self, "_wire", forms)
        return forms[enhanced]

    def to_bytes(self) -> bytes:
        """The reply as it goes on the wire, CRLF-terminated, multi-line per §4.2.1."""
        prefix = f"{self.enhanced} " if self.enhanced else ""
        out = []
        last = len(self.lines) - 1
        for i, line in enumerate(self.lines):
            sep = " " if i == last else "-"
            text = f"{prefix}{line}" if (prefix or line) else ""
            out.append(f"{self.code}{sep}{text}".rstrip(" ") + "\r\n")
        return "".join(out).encode("utf-8")
