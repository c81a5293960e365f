"""The mail submission agent (MSA, RFC 6409): authenticated submission on ports 587
(STARTTLS) and 465 (implicit TLS, RFC 8314).

:class:`MSA` is a short composition: two :class:`~mailagents.aio.SMTPServer` listeners
around one :class:`~mailagents.aio.SMTPHandler` that answers AUTH from a
:class:`~mailagents.userdb.UserStore`, checks that the sender is the user's own, adds
the headers an MSA adds, and hands the message to a delivery callable. The policy is in
plain callables: ``senders`` (which addresses a user owns) and ``deliver`` (where a
message goes; the default, :class:`~mailagents.agents.MaildirDelivery` from
:mod:`mailagents.agents.mda`, writes into local Maildirs until the queue exists). The
header checks and the ``Received:`` field are in ``mailagents.agents._headers``::

    users = PasswordFile("users")
    async with MSA("mail.example.test", users, local_domains={"example.test"},
                   ssl_context=server_context("cert.pem", "key.pem")) as msa:
        await msa.serve(submission_port=587, submissions_port=465)
        await asyncio.Event().wait()
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import os
import secrets
import ssl
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

from mailagents import sasl
from mailagents.agents import _headers
from mailagents.agents._lifecycle import AsyncClosing, bound_port, close_listeners, start_pair
from mailagents.agents._maildir_delivery import MaildirDelivery
from mailagents.agents._outbound import Outbound, QueueDelivery
from mailagents.agents._spooling import SpoolingHandler
from mailagents.aio import Session, SMTPServer
from mailagents.delivery import (
    MEMORY_LIMIT,
    Deliver,
    Handoff,
    Message,
    RecipientResult,
    all_delivered,
)
from mailagents.queue import Queue
from mailagents.smtp import (
    Accept,
    Envelope,
    LMTPReplies,
    Mailbox,
    MailFrom,
    RcptTo,
    Recipient,
    Reject,
    Reply,
    ServerConfig,
)
from mailagents.userdb import UserStore

__all__ = [
    "MECHANISMS",
    "CheckMail",
    "Deliver",
    "MSA",
    "SendersPolicy",
    "Submission",
]

log = logging.getLogger(__name__)

MECHANISMS: tuple[str, ...] = ("SCRAM-SHA-256", "PLAIN", "LOGIN")
"""The SASL mechanisms an :class:`MSA` offers by default, strongest first (only over
TLS: the core never offers AUTH in the clear)."""


Submission = Handoff
"""What the MSA hands its delivery callable: a :class:`~mailagents.delivery.Handoff`
whose ``identity`` is the authenticated user, whose ``id`` is the one in the
``Received:`` field and the 250 reply, and whose message carries the ``Received:``
field and any ``Message-ID:`` and ``Date:`` the MSA added."""

SendersPolicy = (
    Callable[[str], Collection[str] | Awaitable[Collection[str]]] | Mapping[str, Collection[str]]
)
"""Which addresses an identity owns: a callable (plain or async) from the identity to
its addresses, or a mapping from identity to addresses. An address ``@domain`` stands
for every address of that domain."""


CheckMail = Callable[[Session, MailFrom], Awaitable[Reply | None]]
"""The MAIL-time check of an :class:`MSA`, called with the session (its ``identity``
is the authenticated user, ``peer`` the client) and the ``MAIL FROM`` event once the
sender is known to be the user's own: ``None`` accepts the transaction, a reply (4xx
or 5xx) refuses it. A per-user sending rate limit is one (``examples/msa_rate_limit.py``)."""


def _reply(code: int, enhanced: str, text: str) -> Reject:
    return Reject(reply=Reply(code=code, enhanced=enhanced, lines=(text,)))


_NOT_YOUR_SENDER = _reply(553, "5.7.1", "Sender address not owned by the authenticated user")
_NOT_YOUR_FROM = _reply(
    550, "5.7.1", "From: or Sender: address not owned by the authenticated user"
)
_NO_FROM = _reply(550, "5.6.0", "The message has no From: header (RFC 5322 §3.6)")
_HEADER_TOO_LONG = _reply(550, "5.6.0", "The header section is too long")
_NO_RELAY = _reply(550, "5.7.1", "Relaying denied: not a local recipient")
_NOT_DELIVERED = _reply(451, "4.3.0", "Delivery failed, try again later")
_AUTH_FIRST = _reply(530, "5.7.0", "Authentication required")
_CHECK_FAILED = _reply(451, "4.3.0", "Sender check failed, try again later")


class _Handler(SpoolingHandler):
    """The MSA's decisions for the sessions of its listeners."""

    def __init__(self, msa: MSA) -> None:
        super().__init__(memory_limit=msa.memory_limit, spool_directory=msa.spool_directory)
        self.msa = msa

    async def on_credentials(self, session: Session, request: sasl.NeedCredentials) -> sasl.Answer:
        """Answer AUTH from the user store (scrypt off the event loop)."""
        return await self.msa.users.answer_async(request)

    async def on_mail(self, session: Session, event: MailFrom) -> Accept | Reject:
        """The reverse-path must be one of the user's addresses (or null)."""
        if session.identity is None:  # the core's require_auth already says 530
            return _AUTH_FIRST
        owned = await self.msa.addresses_of(session.identity)
        session.data["msa.owned"] = (session.identity, owned)
        mailbox = event.path.mailbox
        if mailbox is not None and not _headers.owns(owned, _headers.mailbox_key(mailbox)):
            log.info("%s (%s) may not send as %s", session.peer, session.identity, mailbox)
            return _NOT_YOUR_SENDER
        check = self.msa.check_mail
        if check is not None:
            try:
                reply = await check(session, event)
                refusal = None if reply is None else Reject(reply=reply)
            except Exception:  # a broken hook (or a 2xx "refusal"): try again later
                log.exception("check_mail failed for %s (%s)", session.peer, session.identity)
                return _CHECK_FAILED
            if refusal is not None:
                log.info("%s (%s): MAIL refused: %d %s", session.peer, session.identity,
                         refusal.reply.code, " ".join(refusal.reply.lines))
                return refusal
        return Accept()

    async def on_rcpt(self, session: Session, event: RcptTo) -> Accept | Reject:
        """Local recipients only, unless the MSA relays."""
        if self.msa.relay or self.msa.is_local(event.path.mailbox):
            return Accept()
        return _NO_RELAY

    async def _submit(
        self, session: Session, envelope: Envelope, message: Message
    ) -> Accept | Reject:
        identity = session.identity
        if identity is None:  # pragma: no cover - MAIL needed AUTH
            return _AUTH_FIRST
        cached = session.data.get("msa.owned")
        if cached is not None and cached[0] == identity:
            owned: frozenset[str] = cached[1]
        else:  # pragma: no cover - MAIL computed it
            owned = await self.msa.addresses_of(identity)
        if not message.header_complete:
            return _HEADER_TOO_LONG
        headers = _headers.parse_fields(message.header)
        if "From" not in headers:
            return _NO_FROM
        name = _headers.not_owned_field(headers, owned)
        if name is not None:
            log.info("%s (%s): %s: not the user's own", session.peer, identity, name)
            return _NOT_YOUR_FROM
        msa = self.msa
        submission_id = secrets.token_hex(8)
        final = message.insert_at_header_end(
            _headers.missing_fields(headers, msa.hostname)
        ).prepend(msa.received_header(session, envelope, submission_id))
        submission = Handoff(
            id=submission_id, identity=identity, envelope=envelope, message=final
        )
        try:
            results = await msa.deliver(submission)
        except Exception:
            log.exception("delivery of %s failed", submission_id)
            return _NOT_DELIVERED
        recipients = envelope.recipients
        if not all_delivered(results, recipients):
            return _failed_reply(submission_id, results, recipients)
        log.info(
            "%s (%s) submitted %s for %d recipient(s)",
            session.peer,
            identity,
            submission_id,
            len(recipients),
        )
        return Accept(reply=Reply(code=250, enhanced="2.0.0", lines=(f"Ok: {submission_id}",)))

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        """Check From:/Sender:, add the headers, deliver, and only then say 250."""
        spooled = self.take_message(session)
        try:
            return await self._submit(session, envelope, spooled)
        finally:
            spooled.close()


def _failed_reply(
    submission_id: str, results: Sequence[RecipientResult], recipients: Sequence[Recipient]
) -> Reject:
    """SMTP has one reply after DATA: 451 if any recipient is not delivered (the client
    retries; those delivered may get a second copy, none is lost), unless none was
    delivered and every failure is permanent (the first one's reply, a 5xx)."""
    if len(results) != len(recipients):
        log.error("delivery of %s gave %d results for %d recipients",
                  submission_id, len(results), len(recipients))
        return _NOT_DELIVERED
    for result in results:
        if not result.delivered:
            log.info("%s for %s: %s %s", submission_id, result.recipient.path,
                     result.reply.code, " ".join(result.reply.lines))
    if all(r.status == "permanent" for r in results):
        return Reject(reply=results[0].reply)
    return _NOT_DELIVERED


class MSA(AsyncClosing):
    """A mail submission agent (RFC 6409), composed of two SMTP listeners.

    ``hostname`` names the server (greeting, ``Received:``, ``Message-ID:``);
    ``users`` answers AUTH (:meth:`~mailagents.userdb.UserStore.answer_async`, with the
    ``mechanisms`` offered, only over TLS); ``ssl_context`` serves STARTTLS on the
    submission port and implicit TLS on the submissions port.

    Policy hooks:

    * ``senders``: the addresses each authenticated identity owns (see
      :data:`~mailagents.agents.SendersPolicy`). The envelope sender and every address
      in ``From:`` and ``Sender:`` must be among them (553 5.7.1 at MAIL, 550 5.7.1
      after DATA). Without it, or for an identity a mapping does not list, an identity
      owns itself when it is an address (``alice@example.test``). Addresses compare
      case-insensitively.
    * ``check_mail``: an async callable (:data:`~mailagents.agents.CheckMail`) called at each
      ``MAIL FROM`` after the sender check, with the session and the event: ``None``
      accepts, a reply refuses the transaction with it (a per-user sending rate limit
      answers 451 4.7.0, say). If it raises (or returns a 2xx reply): 451 4.3.0.
    * ``deliver``: an async callable (see :data:`~mailagents.delivery.Deliver`) called
      with each :data:`Submission`, which returns one
      :class:`~mailagents.delivery.RecipientResult` per recipient. SMTP has one reply
      after DATA: the client hears 250 only once it has returned with every recipient
      delivered; else 451 4.3.0 (the client retries; a recipient already delivered may
      get a second copy, none is lost), or, when no recipient was delivered and every
      failure is permanent, the first failure's 5xx reply. If it raised: 451 4.3.0.
      The default goes through a :class:`~mailagents.queue.Queue` of its own in
      ``queue`` (a directory, by default ``spool/queue``, or a queue), delivered by an
      :class:`~mailagents.agents.Outbound` loop: local domains into
      ``mail/{user}/Maildir`` (relative to the working directory) with a
      :class:`MaildirDelivery`, other domains (with ``relay``) by MX lookup, retried
      and bounced as an MTA does. The MSA closes them with itself.

    A recipient is accepted when its domain is in ``local_domains`` (others get 550
    5.7.1: no relaying), or any recipient with ``relay=True`` (for a ``deliver`` that
    sends mail onward). ``show_auth_user`` names the user in the ``Received:`` header
    (off by default: it is personal data). ``max_message_size`` goes to the core
    (announced with SIZE); ``config``, if given, is the base
    :class:`~mailagents.smtp.ServerConfig` (the MSA sets the host name, the mechanisms,
    ``require_auth`` and the size limit in it); ``server_options`` are more keyword
    arguments for each :class:`~mailagents.aio.SMTPServer` (time-outs, connection
    limits, the failed-login throttle). A message is spooled as it arrives: up to
    ``memory_limit`` octets in memory, the rest in an unnamed file in
    ``spool_directory`` (the system's temporary directory by default); its header
    section is read from the first 256 KiB (a longer one is refused with 550 5.6.0).

    Call :meth:`serve`, then :meth:`close`; or use ``async with`` (which closes).
    """

    def __init__(
        self,
        hostname: str,
        users: UserStore,
        deliver: Deliver | None = None,
        *,
        local_domains: Collection[str],
        ssl_context: ssl.SSLContext,
        senders: SendersPolicy | None = None,
        check_mail: CheckMail | None = None,
        relay: bool = False,
        show_auth_user: bool = False,
        mechanisms: Sequence[str] = MECHANISMS,
        max_message_size: int | None = ServerConfig().max_message_size,
        config: ServerConfig | None = None,
        server_options: Mapping[str, Any] | None = None,
        memory_limit: int = MEMORY_LIMIT,
        spool_directory: str | os.PathLike[str] | None = None,
        queue: Queue | str | os.PathLike[str] | None = None,
    ) -> None:
        if isinstance(local_domains, str):
            raise TypeError("local_domains is a collection of domains, not one string")
        self.hostname = hostname
        """The server's name."""
        self.users = users
        """The :class:`~mailagents.userdb.UserStore` that answers AUTH."""
        self._own_delivery: MaildirDelivery | None = None
        self._outbound: Outbound | None = None
        if deliver is None:
            # Through a queue of its own: local domains into Maildirs, the rest (with
            # relay=True) by MX lookup, each retried and bounced as an MTA does.
            self._own_delivery = MaildirDelivery("mail/{user}/Maildir")
            own_queue = queue if isinstance(queue, Queue) else Queue(queue or "spool/queue")
            self._outbound = Outbound(own_queue, hostname=hostname, local=self._own_delivery,
                                      local_domains=local_domains)
            deliver = QueueDelivery(own_queue, self._outbound)
        self.deliver: Deliver = deliver
        """The delivery callable."""
        self.local_domains = frozenset(d.lower().rstrip(".") for d in local_domains)
        """The domains whose recipients are accepted (lower case)."""
        self.senders = senders
        """The ``senders`` policy, or ``None`` (each identity owns itself)."""
        self.check_mail = check_mail
        """The MAIL-time check (:data:`~mailagents.agents.CheckMail`), or ``None``."""
        self.relay = relay
        """Accept any recipient (``deliver`` sends mail onward)."""
        self.show_auth_user = show_auth_user
        """Name the authenticated user in the ``Received:`` header."""
        self.ssl_context = ssl_context
        """The TLS context of both listeners."""
        self.config = dataclasses.replace(
            config if config is not None else ServerConfig(),
            hostname=hostname,
            auth_mechanisms=tuple(mechanisms),
            require_auth=True,
            max_message_size=max_message_size,
        )
        """The :class:`~mailagents.smtp.ServerConfig` of the listeners (STARTTLS or
        implicit TLS is set by each)."""
        self.server_options: dict[str, Any] = dict(server_options or {})
        """More keyword arguments for each :class:`~mailagents.aio.SMTPServer` (time-outs,
        connection limits, the failed-login throttle)."""
        self.memory_limit = memory_limit
        """Octets of a message kept in memory; the rest is spooled to a file."""
        self.spool_directory = spool_directory
        """Where spool files are made (``None``: the temporary directory)."""
        self.submission: SMTPServer | None = None
        """The submission listener (STARTTLS, port 587) once :meth:`serve` has run."""
        self.submissions: SMTPServer | None = None
        """The submissions listener (implicit TLS, port 465) once :meth:`serve` has run."""

    # ----------------------------------------------------------------- policy helpers

    async def addresses_of(self, identity: str) -> frozenset[str]:
        """The addresses ``identity`` owns according to ``senders``, in lower case."""
        senders = self.senders
        found: Collection[str] | None
        if senders is None:
            found = None
        elif isinstance(senders, Mapping):
            found = senders.get(identity)
        else:
            result = senders(identity)
            found = await result if inspect.isawaitable(result) else result
        if found is None:
            found = (identity,) if "@" in identity.strip("@") else ()
        elif isinstance(found, str):
            found = (found,)
        return frozenset(_headers.lower_address(a) for a in found)

    def is_local(self, mailbox: Mailbox | None) -> bool:
        """Whether ``mailbox`` is in one of :attr:`local_domains`."""
        return mailbox is not None and mailbox.domain.lower().rstrip(".") in self.local_domains

    def received_header(self, session: Session, envelope: Envelope, submission_id: str) -> bytes:
        """The ``Received:`` trace field (RFC 5321 §4.4) for one message, with the
        protocol of RFC 3848 (``ESMTPA``, ``ESMTPS``, ``ESMTPSA``)."""
        return _headers.received_field(
            session,
            envelope,
            submission_id,
            hostname=self.hostname,
            show_auth_user=self.show_auth_user,
        )

    # ------------------------------------------------------------------------ running

    async def serve(
        self,
        host: str | Sequence[str] = "127.0.0.1",
        submission_port: int | None = 587,
        submissions_port: int | None = 465,
    ) -> None:
        """Listen on ``host`` (one or several addresses): submission with STARTTLS on
        ``submission_port`` and implicit TLS on ``submissions_port``. ``0`` takes a
        free port (see :attr:`submission_port`), ``None`` skips that listener."""
        if self.submission is not None or self.submissions is not None:
            raise RuntimeError("the MSA is already serving")

        def make(implicit_tls: bool, options: Mapping[str, Any]) -> SMTPServer:
            return SMTPServer(
                _Handler(self),
                self.config,
                ssl_context=self.ssl_context,
                implicit_tls=implicit_tls,
                **options,
            )

        def keep(implicit_tls: bool, server: SMTPServer) -> None:
            if implicit_tls:
                self.submissions = server
            else:
                self.submission = server

        await start_pair(
            self, make, keep, host, submission_port, submissions_port, self.server_options
        )
        if self._outbound is not None:
            self._outbound.start()

    @property
    def submission_port(self) -> int:
        """The bound port of the submission (STARTTLS) listener."""
        return bound_port(self.submission, "submission")

    @property
    def submissions_port(self) -> int:
        """The bound port of the submissions (implicit TLS) listener."""
        return bound_port(self.submissions, "submissions")

    async def close(self) -> None:
        """Stop both listeners (sessions end with 421) and the default delivery."""
        servers = (self.submission, self.submissions)
        self.submission = self.submissions = None
        await close_listeners(*servers)
        if self._outbound is not None:
            await self._outbound.close()
        if self._own_delivery is not None:
            await asyncio.to_thread(self._own_delivery.close)
