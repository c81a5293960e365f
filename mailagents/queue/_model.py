"""What the queue knows of a message and of each of its recipients."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from mailagents.smtp import Reply

__all__ = [
    "NoticeKind",
    "Notice",
    "Outcome",
    "OutcomeStatus",
    "QueuedMessage",
    "QueuedRecipient",
    "RecipientState",
]

RecipientState = Literal["queued", "delivered", "transferred", "relayed", "failed"]
"""``"queued"``: still to be delivered (never tried yet, or deferred); ``"delivered"``:
delivered here (by the MDA); ``"transferred"``: a next hop that offers DSN took it,
and with it the duty to report (RFC 3461 §4.1: a success notice comes from where it
is delivered); ``"relayed"``: a next hop without DSN took it (RFC 3461 §6.2.2: no
further notices will come, so a success asked for is reported as relayed here);
``"failed"``: refused for good, or given up."""

OutcomeStatus = Literal["delivered", "transferred", "relayed", "temporary", "permanent"]
"""The result of one attempt for one recipient (see :class:`Outcome`)."""

NoticeKind = Literal["failure", "delay", "success"]
"""The kinds of delivery status notification (RFC 3464): a recipient failed, is
delayed, or was delivered or relayed (asked for with ``NOTIFY=SUCCESS``)."""

FINAL_STATES: frozenset[str] = frozenset({"delivered", "transferred", "relayed", "failed"})


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuedRecipient:
    """One recipient of a queued message and its delivery state."""

    address: str
    """The mailbox to deliver to (``"bob@example.org"``, or ``"postmaster"``)."""
    orcpt: tuple[str, str] | None = None
    """The ORCPT DSN parameter (RFC 3461 §4.2): address type and address, decoded."""
    notify: frozenset[str] | None = None
    """The NOTIFY DSN parameter (RFC 3461 §4.1): ``{"NEVER"}`` or a subset of
    ``{"SUCCESS", "FAILURE", "DELAY"}``; ``None`` when the client gave none."""
    state: RecipientState = "queued"
    """Where it stands."""
    attempts: int = 0
    """Delivery attempts made so far (each refused or deferred one counts)."""
    next_attempt: float = 0.0
    """When it is due (Unix time) while ``"queued"``."""
    last_attempt: float | None = None
    """When it was last tried."""
    reply: Reply | None = None
    """The reply of its last attempt (the next hop's, or one made here for a failure
    to connect or to look the domain up)."""
    remote_mta: str | None = None
    """The host that gave ``reply``, when it came from a remote MTA."""
    expired: bool = False
    """It failed because the queue gave up on it (:attr:`RetrySchedule.give_up`)."""
    notified: frozenset[str] = field(default=frozenset())
    """The kinds of notice already issued for it (``"failure"``, ``"delay"``,
    ``"success"``)."""

    @property
    def domain(self) -> str:
        """The domain part of :attr:`address`, lower-case (``""`` for postmaster)."""
        _, at, domain = self.address.rpartition("@")
        return domain.lower() if at else ""

    @property
    def final(self) -> bool:
        """Whether nothing more will be tried for it."""
        return self.state in FINAL_STATES

    def wants(self, kind: NoticeKind) -> bool:
        """Whether its NOTIFY asks for a notice of ``kind``. Without NOTIFY, failures
        and delays are reported (RFC 3461 §4.1 lets the MTA choose; this is the usual
        choice)."""
        if self.notify is None:
            return kind != "success"
        return kind.upper() in self.notify


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuedMessage:
    """A message in the queue: its envelope, its DSN parameters and its recipients.
    The content is read with :meth:`Queue.open`."""

    id: str
    """The queue identifier (also the file names)."""
    sender: str
    """The reverse-path's mailbox (``""`` for the null sender ``<>``)."""
    recipients: tuple[QueuedRecipient, ...]
    """Its recipients, in the order they were accepted."""
    arrival: float
    """When it was accepted (Unix time)."""
    size: int
    """The content's length in octets."""
    body: str | None = None
    """The BODY parameter it came with (``"8BITMIME"``, ``"BINARYMIME"``, ``"7BIT"``)."""
    smtputf8: bool = False
    """It came with SMTPUTF8 (RFC 6531)."""
    requiretls: bool = False
    """It came with REQUIRETLS (RFC 8689): every hop must be verified TLS."""
    ret: str | None = None
    """The RET DSN parameter (``"FULL"`` or ``"HDRS"``, RFC 3461 §4.3)."""
    envid: str | None = None
    """The ENVID DSN parameter (RFC 3461 §4.4), decoded."""
    identity: str | None = None
    """The authenticated identity that submitted it, if any."""
    client: str | None = None
    """Where it came from (for the logs and ``queue show``)."""
    notice: str | None = None
    """Set for a notice the MTA made: ``"dsn"`` (a delivery status notification) or
    ``"postmaster"`` (a notice to the postmaster about a failed notice)."""

    @property
    def pending(self) -> tuple[QueuedRecipient, ...]:
        """The recipients still to be delivered."""
        return tuple(r for r in self.recipients if not r.final)

    def due(self, now: float) -> tuple[int, ...]:
        """The indexes of the recipients due at ``now``."""
        return tuple(
            i for i, r in enumerate(self.recipients) if not r.final and r.next_attempt <= now
        )

    @property
    def next_attempt(self) -> float | None:
        """When its next recipient is due (``None`` when none is queued)."""
        times = [r.next_attempt for r in self.recipients if not r.final]
        return min(times) if times else None

    def with_recipients(self, recipients: tuple[QueuedRecipient, ...]) -> QueuedMessage:
        """A copy with other recipient states."""
        return replace(self, recipients=recipients)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What one delivery attempt did for one recipient (given to :meth:`Queue.record`)."""

    index: int
    """The recipient's index in :attr:`QueuedMessage.recipients`."""
    status: OutcomeStatus
    """``"delivered"`` (here), ``"transferred"`` (to a next hop with DSN),
    ``"relayed"`` (to a next hop without DSN), ``"temporary"`` (try again later) or
    ``"permanent"`` (fail now)."""
    reply: Reply
    """The reply that says so."""
    remote_mta: str | None = None
    """The host that gave it."""

    def __post_init__(self) -> None:
        expected = 4 if self.status == "temporary" else 5 if self.status == "permanent" else 2
        if self.reply.code // 100 != expected:
            raise ValueError(
                f"a {self.status} outcome needs a {expected}xx reply, not {self.reply.code}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """A delivery status notification the queue owes for one message: its ``kind``
    and the recipients it is about. ``to_postmaster`` is set for a failure of a
    message from the null sender: it is never bounced (RFC 5321 §4.5.5), the local
    postmaster is told instead."""

    kind: NoticeKind
    """``"failure"``, ``"delay"`` or ``"success"``."""
    recipients: tuple[int, ...]
    """Indexes into :attr:`QueuedMessage.recipients`."""
    to_postmaster: bool = False
    """Send it to the postmaster, not to the message's sender."""
