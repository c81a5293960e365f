"""What the SMTP server core says without asking anyone: its constant replies, the EHLO
keywords, and what a session derives from its :class:`~mailagents.smtp.ServerConfig`.

Replies are immutable, so one built here is shared by every session, and its bytes are
computed once (:meth:`Reply._server_bytes`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from mailagents.sasl._exchange import ExchangeFailure
from mailagents.smtp._reply import Reply

if TYPE_CHECKING:
    from mailagents.smtp._config import ServerConfig

__all__ = ["SessionProfile", "reply"]


@functools.lru_cache(maxsize=1024)
def reply(code: int, enhanced: str | None, *lines: str) -> Reply:
    """The reply with these fields, built once: the same object for every session (a
    reply whose text names a client-given value falls out of the bounded cache)."""
    return Reply(code=code, enhanced=enhanced, lines=lines or ("",))


# How each failed SASL exchange is answered (RFC 4954 §4 and §6).
AUTH_FAILURES: dict[ExchangeFailure, Reply] = {
    ExchangeFailure.CANCELLED: reply(501, "5.0.0", "Authentication cancelled"),
    ExchangeFailure.BAD_BASE64: reply(501, "5.5.2", "Invalid base64 in response"),
    ExchangeFailure.CREDENTIALS: reply(535, "5.7.8", "Authentication credentials invalid"),
    ExchangeFailure.TEMPORARY: reply(454, "4.7.0", "Temporary authentication failure"),
}
SENDER_OK = reply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = reply(250, "2.1.5", "Recipient OK")
GO_AHEAD = reply(354, None, "End data with <CR><LF>.<CR><LF>")
MESSAGE_OK = reply(250, "2.0.0", "OK: message accepted")
OK = reply(250, "2.0.0", "OK")
LINE_TOO_LONG = reply(500, "5.5.2", "Line too long")
BARE_LF_LINE = reply(500, "5.5.2", "Command line must end with CRLF")
UNRECOGNIZED = reply(500, "5.5.1", "Command unrecognized")
BDAT_UNAVAILABLE = reply(502, "5.5.1", "BDAT not available")


def ehlo_keywords(cfg: ServerConfig, tls: bool) -> tuple[str, ...]:
    """The EHLO/LHLO keywords (with their parameters) offered under ``cfg``, over TLS
    or not."""
    ext: list[str] = []
    size = cfg.max_message_size
    ext.append(f"SIZE {size}" if size is not None else "SIZE")
    if cfg.pipelining or cfg.lmtp:
        ext.append("PIPELINING")
    if cfg.eightbitmime:
        ext.append("8BITMIME")
        if cfg.smtputf8:
            ext.append("SMTPUTF8")  # RFC 6531 §3.1: only together with 8BITMIME
    if cfg.enhanced_status_codes or cfg.lmtp:
        ext.append("ENHANCEDSTATUSCODES")
    if cfg.starttls and not tls:
        ext.append("STARTTLS")
    if cfg.auth_mechanisms and (tls or cfg.auth_without_tls):
        ext.append("AUTH " + " ".join(m.upper() for m in cfg.auth_mechanisms))
    if cfg.chunking:
        ext.append("CHUNKING")
        if cfg.binarymime:
            ext.append("BINARYMIME")
    if cfg.dsn:
        ext.append("DSN")
    if cfg.requiretls and tls:
        ext.append("REQUIRETLS")  # RFC 8689 §2: offered only over TLS
    return tuple(ext)


class SessionProfile:
    """What every session under one configuration derives from it, computed once when
    the :class:`~mailagents.smtp.ServerConfig` is made (it is immutable) and kept in it,
    so that starting a session computes nothing."""

    __slots__ = ("command_limit", "ehlo", "enhanced", "greeting", "line_bound", "short_line")

    def __init__(self, cfg: ServerConfig) -> None:
        self.enhanced = cfg.enhanced_status_codes or cfg.lmtp
        """Replies carry enhanced status codes (RFC 2034; always in LMTP)."""
        self.command_limit = cfg.command_line_limit
        """The bound of a MAIL or RCPT line, CRLF included."""
        self.line_bound = max(self.command_limit, cfg.max_auth_line)
        """The bound of any line: the line reader's limit."""
        self.short_line = min(cfg.max_line, cfg.max_auth_line)
        """A line no longer than this is within every limit, whatever its verb."""
        # RFC 2034 §4: no enhanced code in the greeting.
        self.greeting = reply(220, None, f"{cfg.hostname} {cfg.greeting_text}".rstrip())
        """The 220 greeting."""
        self.ehlo: tuple[tuple[tuple[str, ...], frozenset[str]], ...] = tuple(
            (keywords, frozenset(k.split(" ", 1)[0] for k in keywords))
            for keywords in (ehlo_keywords(cfg, False), ehlo_keywords(cfg, True))
        )
        """Indexed by "over TLS": the EHLO keywords with their parameters, and the set
        of keywords alone."""
