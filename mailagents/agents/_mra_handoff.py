"""The MRA's hand-off: a fetched message, with an envelope made for it, given to a
delivery callable (an MDA, a Maildir, an SMTP or LMTP server), and the re-injection
destination over SMTP or LMTP (:class:`SMTPForward`)."""

from __future__ import annotations

import contextlib
import re
import ssl
from collections.abc import Sequence

from mailagents.aio.smtp_client import SMTPClient, SMTPError, SMTPResponseError
from mailagents.delivery import Handoff, Message, RecipientResult
from mailagents.smtp import (
    AddressError,
    Envelope,
    MailParameters,
    Recipient,
    Reply,
    parse_path,
)

__all__ = ["SMTPForward", "envelope_for", "recipient"]

_RETURN_PATH = re.compile(rb"^Return-Path:[ \t]*(<[^<>\r\n]*>)", re.IGNORECASE | re.MULTILINE)
_UNREACHABLE = Reply(code=451, enhanced="4.4.1", lines=("Destination not reachable",))


def recipient(address: str) -> Recipient:
    """The envelope recipient for ``address`` (``alice@example.test``, with or
    without angle brackets). Raises :class:`~mailagents.smtp.AddressError`."""
    text = address.strip()
    if not text.startswith("<"):
        text = f"<{text}>"
    return Recipient(path=parse_path(text, utf8=True, allow_postmaster=True))


def envelope_for(message: Message, recipients: Sequence[Recipient]) -> Envelope:
    """The envelope of a fetched message: the sender from its ``Return-Path:`` field
    (what the last MTA recorded, RFC 5321 §4.4), else the null sender, so that no
    bounce of a re-injected message goes to someone who did not send it."""
    found = _RETURN_PATH.search(message.header)
    sender = parse_path("<>", allow_null=True)
    if found is not None:
        with contextlib.suppress(AddressError):
            sender = parse_path(found.group(1).decode("utf-8", "replace"), utf8=True,
                                allow_null=True)
    return Envelope(
        mail_from=sender,
        mail_parameters=MailParameters(),
        recipients=tuple(recipients),
        size=message.size,
    )


class SMTPForward:
    """A delivery callable that re-injects each message over SMTP (a local MTA on port
    25) or LMTP (``lmtp=True``: an MDA such as Dovecot's, one reply per recipient).

    A connection per message: the MRA hands messages over one at a time and needs each
    answer before it may delete the remote copy. ``starttls`` as for
    :meth:`~mailagents.aio.SMTPClient.connect` (``None``: when offered). A recipient is
    delivered when the server accepted it (SMTP's 250 after the data, or its own LMTP
    reply); a failure to connect is a temporary failure of every recipient."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        lmtp: bool = False,
        starttls: bool | None = None,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str = "localhost",
    ) -> None:
        self.host = host
        """The server's address."""
        self.port = port
        """The server's port."""
        self.lmtp = lmtp
        """Speak LMTP (RFC 2033) instead of SMTP."""
        self.starttls = starttls
        """STARTTLS: ``None`` when offered, ``True`` required, ``False`` never."""
        self.ssl_context = ssl_context
        """The TLS context for STARTTLS (default: the system's authorities)."""
        self.local_hostname = local_hostname
        """The name given in EHLO/LHLO."""

    async def __call__(self, handoff: Handoff) -> list[RecipientResult]:
        """Send ``handoff`` and say what became of each recipient."""
        envelope = handoff.envelope
        wanted = list(envelope.recipients)
        addresses = [str(r.path.mailbox) for r in wanted]
        try:
            async with SMTPClient.connect(
                self.host,
                self.port,
                lmtp=self.lmtp,
                starttls=self.starttls,
                ssl_context=self.ssl_context,
                local_hostname=self.local_hostname,
            ) as client:
                result = await client.send_message(
                    handoff.message,
                    sender=envelope.mail_from,
                    recipients=[r.path for r in wanted],
                )
            replies = result.replies
        except SMTPResponseError as exc:
            replies = dict(exc.replies) or {a: exc.reply for a in addresses}
        except (SMTPError, OSError):
            replies = {a: _UNREACHABLE for a in addresses}
        results: list[RecipientResult] = []
        for rcpt, address in zip(wanted, addresses, strict=True):
            reply = replies.get(address, _UNREACHABLE)
            if 200 <= reply.code < 300:
                results.append(RecipientResult.ok(rcpt, reply=reply))
            else:
                results.append(RecipientResult.failed(rcpt, reply))
        return results
