"""The events :class:`mailagents.smtp.client.ClientConnection` reports: each queued
command ends in exactly one of them, in the order queued (the greeting first)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from mailagents.smtp._address import Path
from mailagents.smtp._events import ConnectionClosed
from mailagents.smtp._reply import Reply

__all__ = ["AuthResult", "ClientEvent", "Greeting", "Response", "TransactionResult"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Greeting:
    """The server's greeting (RFC 5321 §3.1): 220 to go on; 554 means no service here
    (only QUIT is allowed), 421 that the server is closing."""

    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """The reply to a simple command: ``command`` is ``"EHLO"``, ``"HELO"``, ``"LHLO"``,
    ``"RSET"``, ``"NOOP"``, ``"VRFY"``, ``"QUIT"`` or ``"STARTTLS"``.

    For STARTTLS a 220 means: start TLS on the transport now, then call
    :meth:`~mailagents.smtp.client.ClientConnection.tls_started` and send EHLO again
    (RFC 3207 §4.2).
    """

    command: str
    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthResult:
    """The end of an AUTH exchange (RFC 4954). ``success`` is true only after a 235 *and*
    the mechanism's check of the server (SCRAM's server signature). ``error`` says why
    the client gave up when the failure is ours to report (a malformed or forged server
    message); the server may then be an impostor: close the connection."""

    success: bool
    reply: Reply
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionResult:
    """The outcome of one :meth:`~mailagents.smtp.client.ClientConnection.send_mail`.

    ``mail_reply`` answers MAIL; ``recipient_replies`` pairs each RCPT sent with its
    reply, in order (recipients after a failed MAIL, or cut off by a 421, are missing).
    ``data_replies`` holds the final replies to the content: in SMTP one reply (DATA's
    refusal, the reply after the final dot, or the reply to the failing or the last
    BDAT); in LMTP one reply per accepted recipient in RCPT order (RFC 2033 §4.2), or a
    single reply when DATA itself was refused. It is empty when no content was sent
    because every recipient was refused (or MAIL was).

    ``accepted`` lists the recipients the server took responsibility for: in SMTP every
    accepted recipient if the final reply is 2xx, else none; in LMTP those whose own
    final reply is 2xx.

    ``recipients`` lists every recipient given to ``send_mail``, in order, including
    those whose RCPT was never sent; it repeats what the other fields say, so it
    takes no part in comparisons.
    """

    mail_reply: Reply
    recipient_replies: tuple[tuple[Path, Reply], ...]
    data_replies: tuple[Reply, ...]
    accepted: tuple[Path, ...]
    recipients: tuple[Path, ...] = field(default=(), compare=False)

    @property
    def success(self) -> bool:
        """Whether at least one recipient was accepted for delivery."""
        return bool(self.accepted)

    @property
    def refused(self) -> tuple[Path, ...]:
        """The recipients not in ``accepted``, in RCPT order."""
        taken = set(self.accepted)
        return tuple(path for path, _ in self.recipient_replies if path not in taken)


ClientEvent: TypeAlias = Greeting | Response | AuthResult | TransactionResult | ConnectionClosed
"""Everything :meth:`~mailagents.smtp.client.ClientConnection.next_event` can return
besides ``NEED_DATA``."""
