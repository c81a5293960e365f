"""One outbound SMTP connection of the MTA: reach a destination's MX hosts in turn,
then deliver jobs (one message's recipients at that destination) over it.

Each recipient ends with an :class:`~mailagents.queue.Outcome`: what the next hop
said at RCPT or after the data, or a reply made here when there was no answer to be
had (a connection that failed, a message the hop cannot take). The loop that takes
jobs from the queue is :mod:`mailagents.agents._outbound`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mailagents.aio import SMTPClient, TLSPolicy
from mailagents.aio.smtp_client import (
    ClientTimeouts,
    SMTPConnectionClosed,
    SMTPError,
    SMTPProtocolError,
    SMTPResponseError,
    SMTPTimeout,
    SMTPTLSError,
)
from mailagents.delivery import Message
from mailagents.dns import Exchanger, IPAddress
from mailagents.queue import Outcome, QueuedMessage
from mailagents.smtp import LocalProtocolError, MailParameters, RcptParameters, Reply

__all__ = ["Hop", "HopConfig", "Job", "refusal"]

log = logging.getLogger("mailagents.agents.mta")

# RFC 5321 §4.5.3.1.8: a server must take at least 100 recipients per transaction.
MAX_RECIPIENTS = 100


def refusal(code: int, enhanced: str, text: str) -> Reply:
    """A reply made here (not by the next hop) for a recipient's outcome."""
    return Reply(code=code, enhanced=enhanced, lines=(text,))


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """Some recipients of one queued message, all for one destination."""

    message: QueuedMessage
    indices: tuple[int, ...]
    content: Callable[[], Message]
    """Opens the content (blocking: call it in an executor)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HopConfig:
    """How the MTA talks to a next hop."""

    hostname: str
    """Our name in EHLO."""
    port: int = 25
    """The port of the next hops (25; another only in tests)."""
    source_address: str | None = None
    """The local address to connect from (``None``: the system's choice)."""
    timeouts: ClientTimeouts = field(default_factory=ClientTimeouts)
    """The client's time-outs (RFC 5321 §4.5.3.2 minimums by default)."""
    max_recipients: int = MAX_RECIPIENTS
    """Recipients per transaction (the rest go in more transactions)."""
    tls: Callable[[str, Exchanger], TLSPolicy] | None = None
    """The TLS policy per destination and host (``None``: opportunistic STARTTLS,
    the certificate not checked, RFC 7435)."""
    connect_options: Callable[[str, Exchanger], dict[str, Any]] | None = None
    """Extra :meth:`SMTPClient.connect` keyword arguments per destination and host."""


def _all(indices: Sequence[int], status: str, reply: Reply, remote: str | None) -> list[Outcome]:
    return [Outcome(index=i, status=status, reply=reply, remote_mta=remote)  # type: ignore[arg-type]
            for i in indices]


def _status(reply: Reply) -> str:
    return "temporary" if reply.code < 500 else "permanent"


class Hop:
    """A connection to one destination (``domain``), opened on the first job."""

    def __init__(self, config: HopConfig, domain: str,
                 targets: Sequence[tuple[Exchanger, IPAddress]], *,
                 requiretls: bool = False) -> None:
        self.config = config
        self.domain = domain
        self.requiretls = requiretls  # RFC 8689: only verified TLS will do
        self.targets = list(targets)
        self._all = list(targets)
        self.client: SMTPClient | None = None
        self.host: str | None = None  # the MX host connected to
        self.last_error: Reply | None = None

    # --- connecting -------------------------------------------------------------------

    async def connect(self) -> bool:
        """Connect to the next target that answers (RFC 5321 §5.1: on a failure to
        connect or a 4xx/5xx greeting, the next address, then the next MX); ``False``
        when none is left (:attr:`last_error` says why)."""
        while self.targets:
            exchanger, address = self.targets.pop(0)
            options: dict[str, Any] = {}
            if self.config.connect_options is not None:
                options = self.config.connect_options(self.domain, exchanger)
            if self.config.source_address is not None:
                options.setdefault("source_address", (self.config.source_address, 0))
            policy = (self.config.tls(self.domain, exchanger) if self.config.tls is not None
                      else TLSPolicy(mode="opportunistic"))
            if self.requiretls and policy.mode != "verified":
                # RFC 8689 §4.1: a verified certificate, whatever the domain's policy.
                # (The system's authorities: a domain whose policy is "verified" with a
                # context of its own keeps it.)
                policy = TLSPolicy(mode="verified", server_hostname=policy.server_hostname)
            if not {"starttls", "ssl_context"} & options.keys():
                options.setdefault("tls_policy", policy)
            try:
                self.client = await SMTPClient.connect(
                    str(address), self.config.port, local_hostname=self.config.hostname,
                    server_hostname=exchanger.host, timeouts=self.config.timeouts, **options,
                )
            except SMTPResponseError as error:
                self.last_error = _temporary(error.reply, f"{exchanger.host}[{address}]")
            except SMTPTLSError as error:
                self.last_error = refusal(451, "4.7.5", f"TLS with {exchanger.host}[{address}] "
                                                        f"failed: {error}")
            except (SMTPError, OSError) as error:
                self.last_error = refusal(451, "4.4.1", f"connect to {exchanger.host}"
                                                        f"[{address}] failed: {error}")
            else:
                self.host = exchanger.host
                tls = self.client.tls
                log.info("connected to %s[%s] for %s: %s%s", exchanger.host, address,
                         self.domain, tls.received_comment() if tls is not None else "no TLS",
                         " (plaintext after a failed handshake)"
                         if self.client.tls_downgraded else "")
                return True
            log.info("%s: %s", self.domain, self.last_error.text)
        return False

    def rewind(self) -> None:
        """Start again from the best target: after a connection that worked ends (it
        broke, or a local failure dropped it), the next job tries every MX anew."""
        self.targets = list(self._all)

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                await client.quit()
            except (SMTPError, OSError) as error:
                log.debug("QUIT to %s failed: %s", self.host, error)
            await client.close()

    # --- delivering -----------------------------------------------------------------------

    async def deliver(self, job: Job, content: Message) -> list[Outcome]:
        """Deliver ``job``'s recipients over this connection; an outcome for each. When
        the connection breaks, the recipients not yet decided are deferred (4.4.2) and
        :attr:`client` is ``None``: the next job connects anew."""
        client = self.client
        assert client is not None
        message = job.message
        remote = self.host
        unfit = self._unfit(client, message)
        if unfit is not None:
            return _all(job.indices, "permanent", unfit, remote)
        outcomes: dict[int, Outcome] = {}
        todo = list(job.indices)
        while todo:
            batch, todo = todo[: self.config.max_recipients], todo[self.config.max_recipients :]
            try:
                result = await self._transaction(client, message, batch, content)
            except (SMTPTimeout, SMTPConnectionClosed, SMTPProtocolError, OSError) as error:
                reply = refusal(451, "4.4.2", f"lost connection with {remote}: {error}")
                outcomes.update((o.index, o) for o in _all(batch + todo, "temporary", reply,
                                                           remote))
                self.client = None
                await client.close()
                break
            retry_now: list[int] = []
            for i, (status, reply) in zip(batch, result, strict=True):
                if reply.code == 452 and status == "temporary" and any(
                    s in ("transferred", "relayed") for s, _ in result
                ):
                    # RFC 5321 §4.5.3.1.10: too many recipients; the rest go in a new
                    # transaction at once.
                    retry_now.append(i)
                else:
                    outcomes[i] = Outcome(index=i, status=status, reply=reply,  # type: ignore[arg-type]
                                          remote_mta=remote)
            todo = retry_now + todo
            if client.closed:
                if todo:
                    reply = refusal(451, "4.4.2", f"{remote} closed the connection")
                    outcomes.update((o.index, o) for o in _all(todo, "temporary", reply, remote))
                self.client = None
                break
        return [outcomes[i] for i in job.indices]

    def _unfit(self, client: SMTPClient, message: QueuedMessage) -> Reply | None:
        """Why the next hop cannot take ``message`` at all, or ``None``."""
        ext = client.extensions
        size = ext.get("SIZE")
        if size is not None and size.strip().isdigit():
            limit = int(size)
            if limit and message.size > limit:  # RFC 1870: 0 means no limit
                return refusal(552, "5.3.4", f"message too big for {self.host} "
                                             f"({message.size} > {limit} octets)")
        body = (message.body or "").upper()
        if body == "8BITMIME" and "8BITMIME" not in ext:
            # RFC 6152 §3: an 8-bit message goes only to a server that offers 8BITMIME
            # (we do not downgrade it).
            return refusal(554, "5.6.3", f"{self.host} does not accept 8-bit messages")
        if body == "BINARYMIME" and not ("BINARYMIME" in ext and "CHUNKING" in ext):
            return refusal(554, "5.6.3", f"{self.host} does not accept binary messages")
        if message.smtputf8 and "SMTPUTF8" not in ext:
            # RFC 6531 §3.2: a message that needs SMTPUTF8 is not sent to a server
            # without it.
            return refusal(553, "5.6.7", f"{self.host} does not support SMTPUTF8")
        if message.requiretls:
            # RFC 8689 §4.1: only over TLS with a verified certificate, to a server
            # that offers REQUIRETLS.
            outcome = client.tls
            verified = outcome is not None and outcome.verified
            if "REQUIRETLS" not in ext or not verified:
                return refusal(550, "5.7.30", f"REQUIRETLS: {self.host} offers no verified "
                                              "TLS with REQUIRETLS")
        return None

    async def _transaction(self, client: SMTPClient, message: QueuedMessage,
                           batch: list[int], content: Message) -> list[tuple[str, Reply]]:
        """One mail transaction for ``batch``: each recipient's status and reply."""
        ext = client.extensions
        dsn = "DSN" in ext
        recipients = [message.recipients[i] for i in batch]
        params = MailParameters(
            body=message.body,
            smtputf8=message.smtputf8,
            requiretls=message.requiretls and "REQUIRETLS" in ext,
            ret=message.ret if dsn else None,
            envid=message.envid if dsn else None,
        )
        rparams = [RcptParameters(notify=r.notify if dsn else None,
                                  orcpt=r.orcpt if dsn else None) for r in recipients]
        # RFC 3461 §6.2.2: a hop without DSN ends our duty to report ("relayed"); one
        # with DSN takes it over ("transferred").
        delivered = "transferred" if dsn else "relayed"
        try:
            sent = await client.send_message(
                content,
                sender=message.sender,
                recipients=[r.address for r in recipients],
                parameters=params,
                recipient_parameters=rparams,
            )
        except SMTPResponseError as error:
            replies: dict[str, Reply] = dict(error.replies or {})
            fallback = error.reply
            return [(_status(reply), reply)
                    for reply in (replies.get(r.address, fallback) for r in recipients)]
        except LocalProtocolError as error:
            reply = refusal(554, "5.6.0", f"cannot send to {self.host}: {error}")
            return [("permanent", reply)] * len(batch)
        out: list[tuple[str, Reply]] = []
        for r in recipients:
            reply = sent.replies[r.address]  # keyed by str(Mailbox), as the queue is
            if 200 <= reply.code < 300:
                out.append((delivered, reply))
            else:
                out.append((_status(reply), reply))
        return out


def _temporary(reply: Reply | None, where: str) -> Reply:
    """A greeting refusal, as the reason to try the next host (always temporary for
    the message: another MX, or a later try, may take it)."""
    text = f"{where} refused the session: " + (reply.text if reply is not None else "")
    return refusal(451, "4.4.0" if reply is None or reply.enhanced is None
                   else "4" + reply.enhanced[1:], text)
