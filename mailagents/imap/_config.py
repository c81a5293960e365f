"""Configuration of an IMAP server session: what is offered and the limits."""

from __future__ import annotations

from dataclasses import dataclass

from mailagents._protocol import LocalProtocolError

__all__ = ["DEFAULT_EXTENSIONS", "ServerConfig"]

DEFAULT_EXTENSIONS: tuple[str, ...] = (
    "IMAP4rev1",
    "IMAP4rev2",
    "SASL-IR",  # RFC 4959
    "ID",  # RFC 2971
    "IDLE",  # RFC 2177
    "ENABLE",  # RFC 5161
    "UIDPLUS",  # RFC 4315
    "MOVE",  # RFC 6851
    "UNSELECT",  # RFC 3691
    "NAMESPACE",  # RFC 2342
    "CONDSTORE",  # RFC 7162
    "QRESYNC",
    "BINARY",  # RFC 3516
)
"""What the capability list names besides what the core derives (literals, STARTTLS,
LOGINDISABLED, AUTH=...). The application names only what its store backs."""

# What ENABLE can turn on (RFC 5161 §4): the core tracks these itself.
_ENABLEABLE = frozenset({"CONDSTORE", "QRESYNC", "IMAP4REV2", "UTF8=ACCEPT"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """What a ``ServerConnection`` offers and enforces. The defaults are safe:
    passwords travel only over TLS (LOGINDISABLED before it, RFC 9051 §6.2.3), the
    limits are Dovecot's where the RFCs set none."""

    tls_available: bool = False
    """Offer STARTTLS (RFC 9051 §6.2.1): set it when the adapter has a TLS context."""
    tls_active: bool = False
    """The connection is already encrypted (implicit TLS, port 993, RFC 8314)."""
    allow_plaintext_login: bool = False
    """Allow LOGIN and the PLAIN/LOGIN mechanisms without TLS. Off: LOGINDISABLED is
    announced and LOGIN refused (RFC 9051 §6.2.3, §11.1)."""
    auth_mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256")
    """SASL mechanisms offered with AUTHENTICATE (``AUTH=`` capabilities)."""
    allow_legacy_auth: bool = False
    """Allow legacy mechanisms (CRAM-MD5) in ``auth_mechanisms``."""
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    """Capability names announced as they are (see ``DEFAULT_EXTENSIONS``)."""
    enable_extensions: tuple[str, ...] = ()
    """Further capabilities of ``extensions`` that ENABLE turns on (RFC 5161 §3.1) and
    the application implements itself (it reads ``ServerConnection.enabled``); the core
    tracks CONDSTORE, QRESYNC, IMAP4rev2 and UTF8=ACCEPT on its own."""
    literal_plus: bool = True
    """Announce ``LITERAL+`` (RFC 7888); when false, ``LITERAL-`` (non-synchronising
    literals up to 4096 octets)."""
    max_line: int = 65_536
    """Octets of one physical command line with its CRLF (Dovecot's 64 KiB)."""
    max_command: int = 262_144
    """Octets of one command's lines and inline literals together."""
    max_literal: int = 131_072
    """Octets of one literal other than an APPEND message."""
    max_append: int = 64 * 1024 * 1024
    """Octets of one APPEND message (announced as ``APPENDLIMIT=``, RFC 7889)."""
    oversized_bye: bool = False
    """A non-synchronising literal over its limit ends the session with ``* BYE``
    instead of being skipped and answered ``NO [TOOBIG]`` (RFC 7888 §4 allows both)."""
    max_bad_commands: int = 3
    """Invalid commands (syntax, unknown, out of state) before login after which the
    session ends with ``* BYE`` (Dovecot's rule)."""
    max_buffer: int = 1_048_576
    """Octets of input buffered while a command awaits the application's answer; past
    it the session ends."""
    chunk_size: int = 65_536
    """Largest APPEND chunk handed out in one event."""
    server_id: tuple[tuple[str, str | None], ...] | None = None
    """What the server tells of itself in answer to ID (RFC 2971 §3.2): field-value
    pairs such as ``(("name", "mailagents"), ("version", "1.0"))``; ``None`` answers
    ``* ID NIL``. At most 30 pairs, each field name at most 30 octets and named once,
    each value at most 1024 octets (RFC 2971 §3.3)."""
    poll_commands: bool = False
    """Give NOOP and CHECK in the selected state to the application as
    ``CommandReceived`` (answer with ``Complete()``) instead of answering them at once,
    so that it can read the store's changes first: NOOP is how a client polls for
    them (RFC 9051 §6.1.2). Off, the core answers with what it was already told."""
    confirm_append: bool = False
    """Ask the application (``AppendRequested``) before answering ``+`` to a
    synchronising APPEND message literal, so that it can refuse before the octets
    come (``NO [TRYCREATE]`` for a missing mailbox, RFC 9051 §6.3.12)."""

    def __post_init__(self) -> None:
        for name in ("max_line", "max_command", "max_literal", "max_bad_commands",
                     "max_buffer", "chunk_size"):  # fmt: skip
            if getattr(self, name) < 1:
                raise LocalProtocolError(f"{name} must be positive")
        if self.max_line < 1000:
            raise LocalProtocolError("max_line must be at least 1000 (RFC 2683 §3.2.1.5)")
        if self.max_append < 0:
            raise LocalProtocolError("max_append must not be negative")
        if self.max_buffer < self.max_line:
            raise LocalProtocolError("max_buffer must be at least max_line")
        if not self.allow_legacy_auth and any(
            m.upper() == "CRAM-MD5" for m in self.auth_mechanisms
        ):
            raise LocalProtocolError("CRAM-MD5 needs allow_legacy_auth=True")
        for name in (*self.auth_mechanisms, *self.extensions):
            if not name or not name.isascii() or any(c in name for c in ' ()[]{}"\\\r\n\x00'):
                raise LocalProtocolError(f"invalid capability or mechanism name {name!r}")
        self._check_server_id()
        offered = {e.upper() for e in self.extensions}
        for name in self.enable_extensions:
            if name.upper() not in offered:
                raise LocalProtocolError(f"enable_extensions: {name!r} is not in extensions")

    def _check_server_id(self) -> None:
        if self.server_id is None:
            return
        if len(self.server_id) > 30:
            raise LocalProtocolError("server_id: at most 30 field-value pairs (RFC 2971 §3.3)")
        seen: set[str] = set()
        for field, value in self.server_id:
            size = len(field.encode("utf-8", "surrogateescape"))
            if not field or size > 30:
                raise LocalProtocolError(
                    f"server_id field {field!r}: 1 to 30 octets (RFC 2971 §3.3)"
                )
            if field.lower() in seen:
                raise LocalProtocolError(f"server_id field {field!r} named twice (RFC 2971 §3.3)")
            seen.add(field.lower())
            if value is not None and len(value.encode("utf-8", "surrogateescape")) > 1024:
                raise LocalProtocolError(
                    f"server_id value of {field!r}: at most 1024 octets (RFC 2971 §3.3)"
                )
            if any("\x00" in text for text in (field, value or "")):
                raise LocalProtocolError("server_id must not hold NUL")

    def enableable(self) -> frozenset[str]:
        """The ENABLE names this configuration allows (upper case, RFC 5161 §3.1)."""
        offered = {e.upper() for e in self.extensions}
        if "UTF8=ONLY" in offered:
            offered.add("UTF8=ACCEPT")  # RFC 6855 §6: UTF8=ONLY implies UTF8=ACCEPT
        extra = {e.upper() for e in self.enable_extensions}
        return frozenset((offered & _ENABLEABLE) | extra)

    @property
    def utf8_only(self) -> bool:
        """``UTF8=ONLY`` is announced (RFC 6855 §6)."""
        return any(e.upper() == "UTF8=ONLY" for e in self.extensions)
