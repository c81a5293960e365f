"""The LMTP server (RFC 2033) in front of an MDA: what Postfix's ``lmtp`` transport,
or any MTA, hands local mail to, on a TCP port or a Unix socket.

:class:`LMTPServer` is one :class:`~mailagents.aio.SMTPServer` in LMTP mode around a
handler that checks each recipient at RCPT (``check_recipient``, by default the
MDA's: unknown users get 550 5.1.1 there), spools the message, adds a ``Received:``
field and hands it to a delivery callable; after DATA (or BDAT LAST) it gives one
reply per accepted recipient, in RCPT order, each from that recipient's
:class:`~mailagents.delivery.RecipientResult`, so each is sent only once that
recipient's copy is durable (RFC 2033 §4.2)::

    recipients = LocalRecipients("users", "aliases", local_domains={"example.test"})
    mda = MDA("mail/{user}/Maildir", recipients)
    async with LMTPServer("mx.example.test", mda) as lmtp:
        await lmtp.serve_unix("/var/spool/postfix/private/mailagents")
        await asyncio.Event().wait()
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from mailagents.agents import _headers
from mailagents.agents._lifecycle import AsyncClosing
from mailagents.agents._spooling import SpoolingHandler
from mailagents.aio import Session, SMTPServer
from mailagents.delivery import MEMORY_LIMIT, Deliver, Handoff, Message, RecipientResult
from mailagents.smtp import (
    Accept,
    Envelope,
    LMTPReplies,
    Mailbox,
    RcptTo,
    Reject,
    Reply,
    ServerConfig,
)

__all__ = ["CheckRecipient", "LMTPServer"]

log = logging.getLogger(__name__)

CheckRecipient = Callable[[Mailbox | None], Awaitable[Reply | None]]
"""The RCPT-time check: ``None`` accepts the recipient, a reply (4xx or 5xx) refuses
it (:meth:`mailagents.agents.MDA.check_recipient` is one)."""

_NOT_DELIVERED = Reply(code=451, enhanced="4.3.0", lines=("Delivery failed, try again later",))


class _Handler(SpoolingHandler):
    """The LMTP server's decisions."""

    def __init__(self, server: LMTPServer) -> None:
        super().__init__(memory_limit=server.memory_limit,
                         spool_directory=server.spool_directory)
        self.server = server

    async def on_rcpt(self, session: Session, event: RcptTo) -> Accept | Reject:
        check = self.server.check_recipient
        if check is None:
            return Accept()
        reply = await check(event.path.mailbox)
        return Accept() if reply is None else Reject(reply=reply)

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        spooled = self.take_message(session)
        try:
            return LMTPReplies(replies=await self.server.deliver_replies(
                session, envelope, spooled))
        finally:
            spooled.close()


class LMTPServer(AsyncClosing):
    """An LMTP server (RFC 2033) delivering through ``deliver``.

    ``deliver`` is a :data:`~mailagents.delivery.Deliver` (an
    :class:`~mailagents.agents.MDA`, say); ``check_recipient`` the RCPT-time check,
    by default ``deliver.check_recipient`` when it has one (else every recipient is
    accepted and the results after DATA say each one's fate). If ``deliver`` raises,
    every recipient gets 451 4.3.0.

    ``hostname`` names the server (greeting, ``Received:``). ``config``, if given, is
    the base :class:`~mailagents.smtp.ServerConfig` (LMTP mode, the host name and
    ``max_message_size`` are set in it); ``server_options`` are more keyword arguments
    for the :class:`~mailagents.aio.SMTPServer` (``ssl_context`` for STARTTLS,
    ``limits``...). LMTP is for trusted clients on the same host or network: it has
    no AUTH and no relay control, so listen on loopback or a Unix socket whose mode
    lets only the MTA in. Messages are spooled as in the MSA (``memory_limit``,
    ``spool_directory``).

    Call :meth:`serve` (TCP) or :meth:`serve_unix`, then :meth:`close`; or use
    ``async with`` (which closes, and also closes ``deliver`` when it has a
    ``close``, if ``close_deliver``).
    """

    def __init__(
        self,
        hostname: str,
        deliver: Deliver,
        *,
        check_recipient: CheckRecipient | None = None,
        max_message_size: int | None = ServerConfig().max_message_size,
        config: ServerConfig | None = None,
        server_options: Mapping[str, Any] | None = None,
        memory_limit: int = MEMORY_LIMIT,
        spool_directory: str | os.PathLike[str] | None = None,
        close_deliver: bool = False,
    ) -> None:
        self.hostname = hostname
        """The server's name."""
        self.deliver = deliver
        """The delivery callable."""
        if check_recipient is None:
            check_recipient = getattr(deliver, "check_recipient", None)
        self.check_recipient: CheckRecipient | None = check_recipient
        """The RCPT-time check, or ``None`` (every recipient accepted)."""
        self.config = dataclasses.replace(
            config if config is not None else ServerConfig(),
            hostname=hostname,
            lmtp=True,
            max_message_size=max_message_size,
        )
        """The :class:`~mailagents.smtp.ServerConfig` of the listener."""
        self.server_options: dict[str, Any] = dict(server_options or {})
        """More keyword arguments for the :class:`~mailagents.aio.SMTPServer`."""
        self.memory_limit = memory_limit
        """Octets of a message kept in memory; the rest is spooled to a file."""
        self.spool_directory = spool_directory
        """Where spool files are made (``None``: the temporary directory)."""
        self.close_deliver = close_deliver
        """Whether :meth:`close` also closes ``deliver``."""
        self.server: SMTPServer | None = None
        """The listener, once :meth:`serve` or :meth:`serve_unix` has run."""

    def _listener(self) -> SMTPServer:
        if self.server is not None:
            raise RuntimeError("the LMTP server is already serving")
        self.server = SMTPServer(_Handler(self), self.config, **self.server_options)
        return self.server

    async def serve(self, host: str | Sequence[str] = "127.0.0.1", port: int = 24) -> None:
        """Listen on TCP ``host`` and ``port`` (``0``: a free one, see :attr:`port`)."""
        await self._listener().start(host, port)

    async def serve_unix(
        self,
        path: str | os.PathLike[str],
        *,
        mode: int = 0o660,
        owner: str | int | None = None,
        group: str | int | None = None,
    ) -> None:
        """Listen on the Unix socket ``path`` with that file ``mode``, ``owner`` and
        ``group`` (see :meth:`mailagents.aio.SMTPServer.start_unix`)."""
        await self._listener().start_unix(path, mode=mode, owner=owner, group=group)

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self.server is None:
            raise RuntimeError("the LMTP server is not running")
        return self.server.port

    async def deliver_replies(
        self, session: Session, envelope: Envelope, message: Message
    ) -> tuple[Reply, ...]:
        """Deliver one message received in ``session`` (spooled) and give the reply
        for each recipient of ``envelope``, in order (used by the handler)."""
        handoff_id = secrets.token_hex(8)
        received = _headers.received_field(
            session, envelope, handoff_id, hostname=self.hostname, show_auth_user=False,
            lmtp=True,
        )
        handoff = Handoff(id=handoff_id, envelope=envelope, message=message.prepend(received))
        recipients = envelope.recipients
        try:
            results: Sequence[RecipientResult] = await self.deliver(handoff)
        except Exception:
            log.exception("delivery of %s failed", handoff_id)
            return (_NOT_DELIVERED,) * len(recipients)
        if len(results) != len(recipients):
            log.error("delivery of %s gave %d results for %d recipients",
                      handoff_id, len(results), len(recipients))
            return (_NOT_DELIVERED,) * len(recipients)
        replies = []
        for recipient, result in zip(recipients, results, strict=True):
            log.info("%s for %s: %d %s", handoff_id, recipient.path, result.reply.code,
                     result.status)
            if result.delivered and result.reply.lines == ("Delivered",):
                replies.append(Reply(code=250, enhanced="2.0.0",
                                     lines=(f"{recipient.path} delivered, id {handoff_id}",)))
            else:
                replies.append(result.reply)
        return tuple(replies)

    async def close(self) -> None:
        """Stop the listener (sessions end with 421), then ``deliver`` if
        ``close_deliver``."""
        server, self.server = self.server, None
        if server is not None:
            await server.close()
        if self.close_deliver:
            close = getattr(self.deliver, "aclose", None) or getattr(self.deliver, "close", None)
            if close is not None:
                result = close()
                if asyncio.iscoroutine(result):
                    await result
