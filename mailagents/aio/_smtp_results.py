"""The SMTP client's exceptions, time-outs and results, and how a transaction's
replies decide each recipient's fate; all exported from :mod:`mailagents.aio` (and
:mod:`mailagents.aio.smtp_client`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from mailagents.smtp import Path, Reply
from mailagents.smtp.client import TransactionResult

__all__ = [
    "ClientTimeouts",
    "SMTPAuthenticationError",
    "SMTPConnectionClosed",
    "SMTPError",
    "SMTPProtocolError",
    "SMTPRecipientsRefused",
    "SMTPResponseError",
    "SMTPTLSError",
    "SMTPTimeout",
    "SendResult",
    "address",
    "all_replies",
    "deciding_replies",
    "describe",
]


# --- exceptions ---------------------------------------------------------------------


class SMTPError(Exception):
    """The base of every error the client raises. ``reply`` is the server's reply
    that caused it, when there is one."""

    def __init__(self, message: str, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.reply = reply

    @property
    def code(self) -> int | None:
        """The reply code (``550``), or ``None`` when no reply caused the error."""
        return self.reply.code if self.reply is not None else None

    @property
    def enhanced(self) -> str | None:
        """The enhanced status code (``"5.1.1"``, RFC 3463), if the server sent one."""
        return self.reply.enhanced if self.reply is not None else None

    @property
    def text(self) -> str:
        """The reply's text, lines joined with a newline (``""`` without a reply)."""
        return self.reply.text if self.reply is not None else ""


def describe(reply: Reply) -> str:
    enhanced = f" {reply.enhanced}" if reply.enhanced else ""
    return f"{reply.code}{enhanced} {reply.text}".rstrip()


class SMTPResponseError(SMTPError):
    """The server refused a request: ``reply`` says why (a 4xx is worth a retry later,
    a 5xx is not).

    When it ends a mail transaction (:meth:`SMTPClient.send_message`: MAIL refused,
    DATA or the content refused, a 421), ``transaction`` is the core's full account
    and ``replies`` gives each recipient the reply that decided its fate, so that a
    queue can record every one: its RCPT refusal; else the refusal of MAIL, of DATA or
    of the content, or in LMTP its own reply after the data; the 421 for a recipient
    cut off by one. Otherwise ``transaction`` is ``None`` and ``replies`` empty."""

    reply: Reply

    def __init__(
        self,
        reply: Reply,
        message: str | None = None,
        *,
        transaction: TransactionResult | None = None,
        replies: Mapping[str, Reply] | None = None,
    ) -> None:
        super().__init__(message or describe(reply), reply)
        self.transaction = transaction
        self.replies: dict[str, Reply] = dict(replies or {})


class SMTPRecipientsRefused(SMTPResponseError):
    """No recipient was accepted. ``refused`` maps each recipient to its reply (as
    ``replies`` does); ``reply`` is the first of them."""

    def __init__(
        self,
        refused: dict[str, Reply],
        *,
        transaction: TransactionResult | None = None,
        replies: Mapping[str, Reply] | None = None,
    ) -> None:
        first = next(iter(refused.values()))
        super().__init__(
            first,
            f"every recipient was refused: {_refused_text(refused)}",
            transaction=transaction,
            replies=refused if replies is None else replies,
        )
        self.refused = refused


def _refused_text(refused: Mapping[str, Reply]) -> str:
    """``"a@example.org: 550 5.1.1 No such user; ..."`` for error messages and logs."""
    return "; ".join(f"{address}: {describe(reply)}" for address, reply in refused.items())


class SMTPAuthenticationError(SMTPError):
    """AUTH failed: the server refused the credentials (``reply``, often 535), offers
    no usable mechanism (no ``reply``), or failed to prove itself (``error`` says how;
    the connection is then closed: the server may be an impostor)."""

    def __init__(
        self, message: str, reply: Reply | None = None, error: str | None = None
    ) -> None:
        super().__init__(message, reply)
        self.error = error


class SMTPTLSError(SMTPError):
    """TLS could not be set up: STARTTLS was required but not offered or refused, or
    the handshake failed (an untrusted certificate: the :class:`ssl.SSLError` is the
    ``__cause__``). The connection is closed."""


class SMTPProtocolError(SMTPError):
    """The server broke the protocol so badly that the session cannot go on (a
    malformed reply, one nothing asked for). The connection is closed."""


class SMTPTimeout(SMTPError, TimeoutError):
    """The server did not answer (or take our data) within the configured time-out.
    The connection is closed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class SMTPConnectionClosed(SMTPError, ConnectionError):
    """The connection is closed: the server closed it (in the middle of a request,
    or after a 421), or it was closed here before."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


# --- configuration and results ----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientTimeouts:
    """Seconds the client waits, per step, before it gives up with :class:`SMTPTimeout`.

    The defaults are the minimums of RFC 5321 §4.5.3.2. Each time-out bounds one reply
    as a whole (a server that trickles a reply out byte by byte is cut off too), and a
    new one starts with each reply or write.
    """

    connect: float = 60.0
    """The TCP connection and each TLS handshake (implicit TLS, STARTTLS)."""
    greeting: float = 300.0
    """The initial 220 greeting (§4.5.3.2.1)."""
    mail: float = 300.0
    """The reply to MAIL (§4.5.3.2.2)."""
    rcpt: float = 300.0
    """The reply to each RCPT (§4.5.3.2.3)."""
    data_initiation: float = 120.0
    """The 354 reply to DATA (§4.5.3.2.4)."""
    data_block: float = 180.0
    """Each block of data handed to the network (§4.5.3.2.5), and the reply to a BDAT
    chunk that is not the last."""
    data_termination: float = 600.0
    """The reply after the final dot, or to BDAT LAST (§4.5.3.2.6)."""
    command: float = 300.0
    """Any other command: EHLO, STARTTLS, AUTH, RSET, NOOP, QUIT."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"ClientTimeouts.{f.name} must be a positive number")

    @classmethod
    def uniform(cls, seconds: float) -> ClientTimeouts:
        """The same time-out for every step (handy in tests)."""
        return cls(**{f.name: seconds for f in fields(cls)})


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """The outcome of :meth:`SMTPClient.send_message` when at least one recipient was
    accepted (otherwise it raises).

    Addresses are the recipients' mailboxes as strings (``"b@example.org"``).
    """

    accepted: tuple[str, ...]
    """The recipients the server took responsibility for, in RCPT order."""
    refused: dict[str, Reply]
    """The other recipients with the reply that refused each: its RCPT reply, or in
    LMTP its own reply after the data."""
    data_replies: tuple[Reply, ...]
    """The replies to the content: one in SMTP; in LMTP one per recipient accepted at
    RCPT, in order (RFC 2033 §4.2)."""
    replies: dict[str, Reply]
    """Every recipient with the reply that decided its fate."""
    transaction: TransactionResult
    """The core's full account (MAIL's reply, each RCPT's reply, ...)."""


# --- helpers -------------------------------------------------------------------------


def address(path: Path) -> str:
    return str(path.mailbox) if path.mailbox is not None else str(path)


def all_replies(result: TransactionResult) -> list[Reply]:
    out = [result.mail_reply, *(reply for _, reply in result.recipient_replies)]
    return out + list(result.data_replies)


def deciding_replies(result: TransactionResult, *, lmtp: bool) -> dict[str, Reply]:
    """Each recipient (every one given, in order) with the reply that decided its
    fate: MAIL's refusal for all when MAIL was refused (the RCPT replies that follow a
    pipelined refused MAIL only repeat it); else its RCPT refusal, or its own final
    reply in LMTP (RFC 2033 §4.2), or the reply to the content (or DATA's refusal);
    the last reply (a 421) for a recipient whose fate it cut off."""
    paths = result.recipients or tuple(path for path, _ in result.recipient_replies)
    last = all_replies(result)[-1]
    mail = result.mail_reply
    if not 200 <= mail.code < 300:
        return {address(path): mail for path in paths}
    at_rcpt = dict(zip(
        (address(p) for p, _ in result.recipient_replies),
        (r for _, r in result.recipient_replies),
        strict=True,
    ))
    taken = [a for a, r in at_rcpt.items() if 200 <= r.code < 300]
    own = dict(zip(taken, result.data_replies, strict=False)) if lmtp else {}
    final = result.data_replies[-1] if result.data_replies else last
    replies: dict[str, Reply] = {}
    for path in paths:
        key = address(path)
        reply = at_rcpt.get(key)
        if reply is None:
            replies[key] = last
        elif not 200 <= reply.code < 300:
            replies[key] = reply
        else:
            replies[key] = own.get(key, final)
    return replies
