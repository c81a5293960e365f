"""Configuration of a POP3 server session: what is offered and the limits."""

from __future__ import annotations

from dataclasses import dataclass

from mailagents._protocol import LocalProtocolError

__all__ = ["ServerConfig"]

# RFC 2449 §4: a command line is at most 255 octets *including* the terminating CRLF.
_MIN_COMMAND_LINE = 255


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """What a :class:`~mailagents.pop3.ServerConnection` offers and enforces.

    The defaults are safe: passwords travel only over TLS, legacy mechanisms and APOP
    are off, and the limits are the RFC ones.
    """

    hostname: str = "localhost"
    """The name the server gives in its greeting and sign-off."""
    tls_available: bool = False
    """Offer STLS (RFC 2595 §4): set it when the adapter has a TLS context."""
    tls_active: bool = False
    """The connection is already encrypted (implicit TLS, port 995, RFC 8314)."""
    allow_plaintext_login: bool = False
    """Allow USER/PASS and the PLAIN and LOGIN mechanisms on an unencrypted session.
    Off by default: clear-text passwords travel only over TLS (RFC 2595 §2.3)."""
    auth_mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256")
    """SASL mechanisms offered with AUTH (RFC 5034), listed in CAPA ``SASL``."""
    allow_legacy_auth: bool = False
    """Allow legacy mechanisms (CRAM-MD5) in ``auth_mechanisms``."""
    allow_apop: bool = False
    """Offer APOP (RFC 1939 §7) when the connection was given a challenge. Off by
    default: APOP is MD5 over a plaintext-equivalent secret."""
    expire: str | None = None
    """The CAPA ``EXPIRE`` policy (RFC 2449 §6.7): ``"0"``, ``"NEVER"`` or a number of
    days; ``None`` announces nothing."""
    login_delay: int | None = None
    """The CAPA ``LOGIN-DELAY`` seconds (RFC 2449 §6.5); ``None`` announces nothing.
    The adapter enforces it by answering :class:`~mailagents.pop3.OpenMaildrop` with a
    ``[LOGIN-DELAY]`` rejection."""
    max_line: int = 255
    """Octets of a command line *including* its CRLF (RFC 2449 §4: "255 octets,
    including the terminating CRLF"). Longer lines get ``-ERR line too long``."""
    max_auth_line: int = 12_288
    """Octets of an AUTH command line with its initial response, and of a SASL response
    line, including CRLF (the RFC 4954 §4 figure; RFC 5034 sets none for responses)."""
    max_errors: int = 10
    """After this many commands in a row answered with an ``-ERR`` the core decided on
    (syntax, sequence, limits) the session ends with ``-ERR``. A command carried out
    resets the count. The same meaning as
    :attr:`mailagents.smtp.ServerConfig.max_errors`."""
    max_bad_commands: int = 50
    """After this many such errors in the whole session (in a row or not) the session
    ends with ``-ERR``. The same meaning as
    :attr:`mailagents.smtp.ServerConfig.max_bad_commands`."""
    max_buffer: int = 65_536
    """Octets of input buffered while the core is paused (pipelined commands waiting
    for a decision or during a RETR). An adapter stops reading while
    :attr:`~mailagents.pop3.ServerConnection.paused`; beyond this bound the session
    ends."""
    implementation: str | None = None
    """The CAPA ``IMPLEMENTATION`` text (RFC 2449 §6.9); ``None`` announces nothing."""
    utf8: bool = True
    """Offer the UTF8 capability and command (RFC 6856 §2)."""

    def __post_init__(self) -> None:
        for name in ("max_line", "max_auth_line", "max_errors", "max_bad_commands",
                     "max_buffer"):
            if getattr(self, name) < 1:
                raise LocalProtocolError(f"{name} must be positive")
        if self.max_line < _MIN_COMMAND_LINE:
            raise LocalProtocolError("max_line must be at least 255 (RFC 2449 §4)")
        if self.max_auth_line < self.max_line:
            raise LocalProtocolError("max_auth_line must be at least max_line")
        if self.max_buffer < self.max_auth_line:
            raise LocalProtocolError("max_buffer must be at least max_auth_line")
        if not self.hostname or any(c in self.hostname for c in " \r\n\x00"):
            raise LocalProtocolError("hostname must be one token")
        if not self.allow_legacy_auth and any(
            m.upper() == "CRAM-MD5" for m in self.auth_mechanisms
        ):
            raise LocalProtocolError("CRAM-MD5 needs allow_legacy_auth=True")
        for mech in self.auth_mechanisms:
            if not mech or not all(c.isalnum() or c in "-_" for c in mech) or not mech.isascii():
                raise LocalProtocolError(f"invalid SASL mechanism name {mech!r}")
        if self.expire is not None and not (
            self.expire.upper() == "NEVER" or (self.expire.isascii() and self.expire.isdigit())
        ):
            raise LocalProtocolError('expire is "NEVER" or a number of days (RFC 2449 §6.7)')
        if self.login_delay is not None and self.login_delay < 0:
            raise LocalProtocolError("login_delay must not be negative")
        if self.implementation is not None and any(
            c in self.implementation for c in "\r\n\x00"
        ):
            raise LocalProtocolError("implementation must be one line")
