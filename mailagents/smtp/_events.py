"""Events a :class:`~mailagents.smtp.ServerConnection` hands to the application, and the
decisions the application sends back.

Events marked *decision* pause the connection: :meth:`ServerConnection.next_event` returns
``PAUSED`` until the application answers with :class:`Accept`, :class:`Reject` (or, in
LMTP, :class:`LMTPReplies`; for authentication, one of the :mod:`mailagents.sasl` answers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailagents._protocol import NEED_DATA, PAUSED, Sentinel
from mailagents.smtp._address import Path
from mailagents.smtp._params import MailParameters, RcptParameters
from mailagents.smtp._reply import Reply

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "Accept",
    "Authenticated",
    "AuthenticationFailed",
    "CommandRejected",
    "ConnectionClosed",
    "DataChunk",
    "Envelope",
    "Hello",
    "LMTPReplies",
    "MailFrom",
    "MessageComplete",
    "MessageRejected",
    "Quit",
    "RcptTo",
    "Recipient",
    "Reject",
    "Reset",
    "Sentinel",
    "StartTLS",
]




@dataclass(frozen=True, slots=True, kw_only=True)
class Recipient:
    """An accepted recipient: its forward-path and its RCPT parameters (DSN)."""

    path: Path
    parameters: RcptParameters = field(default_factory=RcptParameters)


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """The SMTP envelope of one transaction (RFC 5321 §2.3.1)."""

    mail_from: Path
    mail_parameters: MailParameters
    recipients: tuple[Recipient, ...]
    size: int
    """Octets of message content received (after dot-unstuffing)."""
    chunked: bool = False
    """True when the content came with BDAT (RFC 3030) rather than DATA."""

    @property
    def smtputf8(self) -> bool:
        """The client asked for SMTPUTF8 on MAIL (RFC 6531)."""
        return self.mail_parameters.smtputf8


# --- events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """*Decision.* EHLO, HELO or LHLO. Accept sends the greeting reply (with the extension
    list for EHLO and LHLO); Reject sends the given reply and the client must try again."""

    command: str
    """``"EHLO"``, ``"HELO"`` or ``"LHLO"``."""
    domain: str
    """The client's claimed identity as sent: a domain or an address literal."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MailFrom:
    """*Decision.* MAIL FROM with a syntactically valid reverse-path and parameters."""

    path: Path
    parameters: MailParameters


@dataclass(frozen=True, slots=True, kw_only=True)
class RcptTo:
    """*Decision.* RCPT TO with a syntactically valid forward-path and parameters."""

    path: Path
    parameters: RcptParameters


@dataclass(frozen=True, slots=True, kw_only=True)
class DataChunk:
    """Message content as it arrives (dot-unstuffed for DATA, raw for BDAT).

    The concatenation of all chunks of a transaction is the message, CRLF line ends."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageComplete:
    """*Decision.* The end of the message arrived intact. Accept only once the message is
    safe (RFC 5321 §6.1: a 250 means responsibility is taken). In LMTP answer with
    :class:`LMTPReplies`, one reply per recipient in ``envelope.recipients``."""

    envelope: Envelope


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRejected:
    """The core rejected the message being received (too big, bare CR or LF, an overlong
    line) after consuming it to its end; ``reply`` has been queued. Throw away what the
    :class:`DataChunk` events delivered for it."""

    reply: Reply

    @property
    def temporary(self) -> bool:
        """The failure may pass (a 4xx reply); else it is permanent."""
        return self.reply.code < 500


@dataclass(frozen=True, slots=True, kw_only=True)
class Reset:
    """The current transaction was abandoned (RSET, a new EHLO, STARTTLS). Any partial
    message received so far must be thrown away."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTLS:
    """STARTTLS was accepted and its 220 reply queued: send it, start TLS on the
    transport, then call :meth:`ServerConnection.tls_started` (RFC 3207)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Authenticated:
    """AUTH succeeded (235 queued); ``identity`` is the authorised identity."""

    mechanism: str
    identity: str
    authcid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthenticationFailed:
    """AUTH failed or was cancelled; ``reply`` (535, 501, 454...) has been queued. An
    adapter counts these to slow down password guessing."""

    mechanism: str
    reply: Reply

    @property
    def temporary(self) -> bool:
        """The failure is the server's, and may pass (454 4.7.0): not a wrong password,
        so not to be counted against the client; else it is permanent."""
        return self.reply.code < 500


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRejected:
    """The core answered a command with an error itself (syntax, sequence, limits).

    ``command`` is the verb as received, upper-cased (``""`` when it could not be read)."""

    command: str
    reply: Reply

    @property
    def temporary(self) -> bool:
        """The refusal may pass (a 4xx reply, such as 452 for too many recipients)."""
        return self.reply.code < 500


@dataclass(frozen=True, slots=True, kw_only=True)
class Quit:
    """QUIT: 221 was queued. Send it, then close the connection."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed:
    """The peer closed the connection (``receive_data(b"")``). Any message in progress is
    abandoned."""


# --- decisions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Accept:
    """Accept the event awaiting a decision. ``reply`` overrides the core's default 2xx
    reply (for example ``250 2.0.0 queued as 1A2B``); for :class:`Hello`, ``lines``
    adds nothing: the core builds the extension list."""

    reply: Reply | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    """Refuse the event awaiting a decision with ``reply`` (a 4xx or 5xx)."""

    reply: Reply

    def __post_init__(self) -> None:
        if self.reply.code < 400:
            from mailagents._protocol import LocalProtocolError

            raise LocalProtocolError("Reject needs a 4xx or 5xx reply")


@dataclass(frozen=True, slots=True, kw_only=True)
class LMTPReplies:
    """LMTP (RFC 2033 §4.2): one reply per accepted recipient, in RCPT order, answering
    :class:`MessageComplete`."""

    replies: tuple[Reply, ...]
