"""The mail transfer agent (MTA): SMTP on port 25 for its own domains and for the
clients it relays for, a durable queue, and outbound delivery by MX lookup.

:class:`MTA` is a short composition: an :class:`~mailagents.aio.SMTPServer` whose
handler decides each recipient with a :class:`~mailagents.agents.RelayPolicy` (never
an open relay), queues each accepted message in a :class:`~mailagents.queue.Queue`
before it says 250, and an :class:`~mailagents.agents.Outbound` loop that delivers
from the queue: local domains to ``deliver`` (an :class:`~mailagents.agents.MDA`),
other domains over SMTP to their MX hosts, with retries and bounces::

    mda = MDA("mail/{user}", LocalRecipients(users, local_domains={"example.test"}))
    async with MTA("mx.example.test", local_domains={"example.test"}, deliver=mda,
                   queue="spool/queue") as mta:
        await mta.serve(host="0.0.0.0", port=25)
        await asyncio.Event().wait()
"""

from __future__ import annotations

import dataclasses
import logging
import os
import ssl
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from mailagents import sasl
from mailagents.agents import _headers
from mailagents.agents._lifecycle import AsyncClosing, bound_port, close_listeners
from mailagents.agents._outbound import ConnectOptions, Outbound, QueueDelivery, TLSChoice
from mailagents.agents._relay import Local, Refused, Relay, RelayDecision, RelayPolicy
from mailagents.agents._spooling import SpoolingHandler
from mailagents.agents.lmtp import CheckRecipient
from mailagents.agents.mda import count_received
from mailagents.aio import Session, SMTPServer
from mailagents.delivery import MEMORY_LIMIT, Deliver, Handoff
from mailagents.dns import MXResolver
from mailagents.queue import Queue, RetrySchedule
from mailagents.smtp import (
    Accept,
    Envelope,
    LMTPReplies,
    RcptTo,
    Reject,
    Reply,
    ServerConfig,
)
from mailagents.userdb import UserStore

__all__ = [
    "MTA",
    "ConnectOptions",
    "Local",
    "Outbound",
    "QueueDelivery",
    "Refused",
    "Relay",
    "RelayDecision",
    "RelayPolicy",
    "TLSChoice",
]

log = logging.getLogger(__name__)

# RFC 5321 §6.3: a message with more Received: fields than this is looping.
MAX_RECEIVED = 100


def _reject(code: int, enhanced: str, text: str) -> Reject:
    return Reject(reply=Reply(code=code, enhanced=enhanced, lines=(text,)))


_NOT_QUEUED = _reject(451, "4.3.0", "Queueing failed, try again later")
_LOOP = _reject(554, "5.4.6", "Too many Received: fields: a mail loop")
_CHECK_FAILED = _reject(451, "4.3.0", "Recipient check failed, try again later")


class _Handler(SpoolingHandler):
    """The MTA's decisions for the sessions on port 25."""

    def __init__(self, mta: MTA) -> None:
        super().__init__(memory_limit=mta.memory_limit, spool_directory=mta.spool_directory)
        self.mta = mta

    async def on_credentials(self, session: Session, request: sasl.NeedCredentials) -> sasl.Answer:
        users = self.mta.users
        assert users is not None  # AUTH is offered only with users
        return await users.answer_async(request)

    async def on_rcpt(self, session: Session, event: RcptTo) -> Accept | Reject:
        mta = self.mta
        decision = mta.policy.classify(event.path, peer=session.peer, identity=session.identity)
        if isinstance(decision, Refused):
            log.info("%s: RCPT %s refused: %s", session.peer, event.path, decision.reason)
            return Reject(reply=decision.reply)
        if isinstance(decision, Local) and mta.check_recipient is not None:
            try:
                reply = await mta.check_recipient(decision.address)
            except Exception:
                log.exception("checking %s failed", decision.address)
                return _CHECK_FAILED
            if reply is not None:
                return Reject(reply=reply)
        return Accept()

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        spooled = self.take_message(session)
        try:
            if count_received(spooled.header) > MAX_RECEIVED:
                return _LOOP
            mta = self.mta
            trace_id = os.urandom(8).hex()
            final = spooled.prepend(_headers.received_field(
                session, envelope, trace_id, hostname=mta.hostname, show_auth_user=False))
            try:
                results = await mta.delivery(
                    Handoff(id=trace_id, envelope=envelope, message=final,
                            identity=session.identity),
                    client=_client_text(session),
                )
            except Exception:
                log.exception("queueing a message from %s failed", session.peer)
                return _NOT_QUEUED
            log.info("%s: accepted from %s for %d recipient(s)", results[0].reply.text,
                     session.peer, len(envelope.recipients))
            return Accept(reply=results[0].reply)
        finally:
            spooled.close()


def _client_text(session: Session) -> str:
    peer = session.peer
    address = str(peer[0]) if peer else "unknown"
    return f"{session.helo or 'unknown'} [{address}]"


class MTA(AsyncClosing):
    """A mail transfer agent: inbound SMTP for ``local_domains`` and the clients
    allowed to relay, a durable queue, and outbound delivery.

    Inbound, each recipient is decided by ``policy`` (by default a
    :class:`RelayPolicy` of ``local_domains``, ``relay_domains`` and
    ``relay_networks``; authenticated clients may relay when ``users`` is given and
    TLS is on): local ones are checked with ``check_recipient`` (by default
    ``deliver.check_recipient``, as the :class:`~mailagents.agents.MDA` has), others
    relayed, the rest refused with 550 5.7.1. An accepted message gets its
    ``Received:`` field and goes into the queue; 250 is said only once it is durable.
    A message with over 100 ``Received:`` fields is refused (554 5.4.6, a loop).

    Outbound, :attr:`outbound` (an :class:`Outbound`) delivers from the queue: local
    recipients to ``deliver``, others by MX lookup (``resolver``) over SMTP, with the
    ``tls`` policy (a :class:`~mailagents.aio.TLSPolicy`, one per domain, or a
    callable; by default opportunistic STARTTLS without certificate checks, and a
    failed handshake defers, see :doc:`/mta`), to ``outbound_port`` (25: change it
    only in tests); ``connect_options`` and ``outbound_options`` are more
    :meth:`~mailagents.aio.SMTPClient.connect` and :class:`Outbound` arguments.

    ``queue`` is a :class:`~mailagents.queue.Queue` or its directory (then made with
    ``schedule``). ``ssl_context`` offers STARTTLS inbound; ``max_message_size`` is
    announced with SIZE; ``config`` and ``server_options`` are for the listener.
    """

    def __init__(
        self,
        hostname: str,
        *,
        local_domains: Collection[str],
        queue: Queue | str | os.PathLike[str],
        deliver: Deliver | None = None,
        check_recipient: CheckRecipient | None = None,
        relay_domains: Collection[str] = (),
        relay_networks: Collection[str] = (),
        policy: RelayPolicy | None = None,
        users: UserStore | None = None,
        ssl_context: ssl.SSLContext | None = None,
        resolver: MXResolver | None = None,
        tls: TLSChoice = None,
        connect_options: ConnectOptions | None = None,
        outbound_port: int = 25,
        outbound_options: Mapping[str, Any] | None = None,
        schedule: RetrySchedule | None = None,
        max_message_size: int | None = ServerConfig().max_message_size,
        config: ServerConfig | None = None,
        server_options: Mapping[str, Any] | None = None,
        memory_limit: int = MEMORY_LIMIT,
        spool_directory: str | os.PathLike[str] | None = None,
    ) -> None:
        if isinstance(local_domains, str):
            raise TypeError("local_domains is a collection of domains, not one string")
        self.hostname = hostname
        """The MTA's name (greeting, EHLO, ``Received:``, bounces)."""
        self.policy = policy if policy is not None else RelayPolicy(
            local_domains=local_domains, relay_domains=relay_domains,
            relay_networks=relay_networks, relay_authenticated=users is not None,
        )
        """Who may send where."""
        self.deliver = deliver
        """Where local recipients go."""
        if check_recipient is None and deliver is not None:
            check_recipient = getattr(deliver, "check_recipient", None)
        self.check_recipient = check_recipient
        """The RCPT-time check of local recipients (``None``: every one accepted)."""
        self.users = users
        """The user store that answers AUTH (``None``: no AUTH)."""
        self.queue = queue if isinstance(queue, Queue) else Queue(queue, schedule=schedule)
        """The queue."""
        options = dict(outbound_options or {})
        if local_domains:
            # Notices about failed notices go to a postmaster the MDA knows
            # (RFC 5321 §4.5.1: every local domain has one).
            options.setdefault("postmaster", f"postmaster@{min(local_domains)}")
        self.outbound = Outbound(
            self.queue, hostname=hostname, resolver=resolver, local=deliver,
            local_domains=local_domains, tls=tls, connect_options=connect_options,
            port=outbound_port, **options,
        )
        """The delivery loop."""
        self.delivery = QueueDelivery(self.queue, self.outbound)
        """What the inbound side hands each message to."""
        self.ssl_context = ssl_context
        """The STARTTLS context of the listener, if any."""
        base = config if config is not None else ServerConfig()
        self.config = dataclasses.replace(
            base, hostname=hostname, max_message_size=max_message_size,
            auth_mechanisms=base.auth_mechanisms if users is not None else (),
        )
        """The listener's :class:`~mailagents.smtp.ServerConfig`."""
        self.server_options: dict[str, Any] = dict(server_options or {})
        """More keyword arguments for the :class:`~mailagents.aio.SMTPServer`."""
        self.memory_limit = memory_limit
        """Octets of a message kept in memory while it arrives."""
        self.spool_directory = spool_directory
        """Where the arriving message is spooled above that."""
        self.server: SMTPServer | None = None
        """The listener, once :meth:`serve` has run."""

    async def serve(self, host: str | Sequence[str] = "127.0.0.1", port: int = 25) -> None:
        """Listen for SMTP on ``host`` and ``port`` (``0``: a free one, see
        :attr:`port`) and start the delivery loop."""
        if self.server is not None:
            raise RuntimeError("the MTA is already serving")
        self.server = SMTPServer(_Handler(self), self.config, ssl_context=self.ssl_context,
                                 **self.server_options)
        await self.server.start(host, port)
        self.outbound.start()

    @property
    def port(self) -> int:
        """The bound port of the listener."""
        return bound_port(self.server, "MTA")

    async def close(self) -> None:
        """Stop the listener (sessions end with 421) and the delivery loop; what is
        queued stays queued."""
        server, self.server = self.server, None
        await close_listeners(server)
        await self.outbound.close()
