"""Configuration of an SMTP/LMTP server session: extensions offered and limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailagents._protocol import LocalProtocolError
from mailagents.smtp._data import BareLineEndPolicy
from mailagents.smtp._replies import SessionProfile

__all__ = ["ServerConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """What a :class:`~mailagents.smtp.ServerConnection` offers and enforces.

    The defaults are the RFC 5321 §4.5.3 minimums and the extensions every modern
    server offers. Extensions are announced in the EHLO reply only when enabled here.
    """

    hostname: str = "localhost"
    """The name the server gives in its greeting and EHLO reply."""
    lmtp: bool = False
    """Speak LMTP (RFC 2033): LHLO instead of EHLO/HELO, one reply per recipient."""

    # --- extensions ------------------------------------------------------------------
    pipelining: bool = True
    """Offer PIPELINING (RFC 2920). Always on in LMTP."""
    eightbitmime: bool = True
    """Offer 8BITMIME (RFC 6152)."""
    smtputf8: bool = True
    """Offer SMTPUTF8 (RFC 6531); only offered together with 8BITMIME."""
    enhanced_status_codes: bool = True
    """Offer ENHANCEDSTATUSCODES (RFC 2034) and put an x.y.z code in replies. Always on
    in LMTP."""
    chunking: bool = True
    """Offer CHUNKING, the BDAT command (RFC 3030)."""
    binarymime: bool = False
    """Offer BINARYMIME (RFC 3030 §3); needs ``chunking``."""
    dsn: bool = True
    """Offer DSN (RFC 3461): RET, ENVID, NOTIFY and ORCPT are parsed and kept."""
    starttls: bool = False
    """Offer STARTTLS (RFC 3207): set it when the adapter has a TLS context."""
    tls_active: bool = False
    """The connection is already encrypted (implicit TLS, RFC 8314)."""
    requiretls: bool = False
    """Offer REQUIRETLS (RFC 8689) on encrypted sessions. Off by default: honouring it
    is the relaying MTA's job."""
    auth_mechanisms: tuple[str, ...] = ()
    """SASL mechanisms offered with AUTH (RFC 4954), e.g. ``("SCRAM-SHA-256", "PLAIN")``.
    Empty: no AUTH."""
    allow_legacy_auth: bool = False
    """Allow legacy mechanisms (CRAM-MD5) in ``auth_mechanisms``. Off by default: they
    need a plaintext-equivalent secret on the server (see :mod:`mailagents.sasl`)."""
    auth_without_tls: bool = False
    """Offer and accept AUTH on an unencrypted session. Off by default: passwords travel
    only over TLS."""
    require_auth: bool = False
    """MAIL needs a successful AUTH first (530 5.7.0), as an MSA requires (RFC 6409)."""
    require_tls: bool = False
    """Every command but EHLO/HELO, STARTTLS, NOOP, RSET and QUIT needs TLS first
    (530 5.7.0, RFC 3207 §4)."""

    # --- limits (RFC 5321 §4.5.3.1) ---------------------------------------------------
    max_message_size: int | None = 33_554_432
    """Announced with SIZE (RFC 1870) and enforced while receiving (552 5.3.4).
    ``None``: no limit, SIZE announced without a number."""
    max_recipients: int = 100
    """Recipients per transaction; more get 452 4.5.3 (§4.5.3.1.8 requires at least 100)."""
    max_line: int = 512
    """Octets of a command line including its CRLF (§4.5.3.1.4: 512); a longer line is
    answered ``500 5.5.2`` and the session goes on. The parameters of the offered
    extensions add to it for MAIL and RCPT only (see :attr:`command_line_limit`). Raise
    it to be lenient with clients that send longer commands."""
    max_auth_line: int = 12_288
    """Octets of an AUTH command or SASL response line (RFC 4954 §4)."""
    max_text_line: int | None = None
    """Reject messages with a line longer than this many octets including CRLF (RFC 5321
    §4.5.3.1.6 sets 1000). ``None`` (the default) accepts any length, streamed."""
    bare_line_ends: BareLineEndPolicy = BareLineEndPolicy.REJECT
    """What to do with a bare CR or LF in DATA content: reject the message (the default,
    against SMTP smuggling), accept it as is, or normalise it to CRLF."""
    forbid_early_data: bool = True
    """End the session (554 5.5.0) when input arrives behind DATA before its reply: the
    client did not wait for the 354 (RFC 2920 §3.1: DATA ends a pipelined group). Such
    input is never read, neither as content nor, after a refused DATA, as commands.
    Postfix 3.9 does the same by default (``smtpd_forbid_unauth_pipelining``)."""
    max_errors: int = 20
    """After this many commands in a row answered with an error the core decided on
    (syntax, sequence, limits) the session ends with 421 4.7.0. The same meaning as
    :attr:`mailagents.pop3.ServerConfig.max_errors`; here the session total
    (``max_bad_commands``) is reached first unless it is raised."""
    max_bad_commands: int = 20
    """After this many such errors in the whole session (in a row or not) the session
    ends with 421 4.7.0. The same meaning as
    :attr:`mailagents.pop3.ServerConfig.max_bad_commands`."""
    max_buffer: int = 1_048_576
    """Octets of input buffered while a decision is pending (pipelined commands and
    BDAT octets). An adapter stops reading while the core is paused; beyond this bound
    the session ends with 421."""

    # --- other replies ---------------------------------------------------------------
    help_text: tuple[str, ...] = ("See RFC 5321",)
    """The lines of the 214 reply to HELP."""
    greeting_text: str = "ESMTP mailagents"
    """Text after the hostname in the 220 greeting."""

    # What every session derives from this configuration, computed once, below.
    _profile: SessionProfile = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("max_recipients", "max_line", "max_auth_line", "max_errors",
                     "max_bad_commands", "max_buffer"):
            if getattr(self, name) < 1:
                raise LocalProtocolError(f"{name} must be positive")
        if self.max_recipients < 100:
            # §4.5.3.1.8: the minimum total number of recipients that MUST be buffered.
            raise LocalProtocolError("max_recipients must be at least 100 (RFC 5321 §4.5.3.1.8)")
        if self.max_line < 512:
            raise LocalProtocolError("max_line must be at least 512 (RFC 5321 §4.5.3.1.4)")
        if self.max_text_line is not None and self.max_text_line < 1000:
            raise LocalProtocolError("max_text_line must be at least 1000 (RFC 5321 §4.5.3.1.6)")
        if not self.allow_legacy_auth and any(
            m.upper() == "CRAM-MD5" for m in self.auth_mechanisms
        ):
            raise LocalProtocolError("CRAM-MD5 needs allow_legacy_auth=True")
        if any(c in self.hostname for c in " \r\n\x00"):
            raise LocalProtocolError("hostname must be one token")
        object.__setattr__(self, "_profile", SessionProfile(self))

    @property
    def command_line_limit(self) -> int:
        """The command-line bound with what each offered extension's MAIL/RCPT parameters
        may add: SIZE 26 (RFC 1870 §3), BODY= 16, SMTPUTF8 10, AUTH= 500 (RFC 4954 §5),
        DSN 12 + 100 on MAIL and 23 + 500 on RCPT (RFC 3461 §4), REQUIRETLS 11."""
        limit = self.max_line
        limit += 26  # SIZE is always offered, with or without a number
        if self.eightbitmime or self.binarymime:
            limit += 16
        if self.smtputf8:
            limit += 10
        if self.auth_mechanisms:
            limit += 500
        if self.dsn:
            limit += max(12 + 100, 23 + 500)
        if self.requiretls:
            limit += 11
        return limit
