"""The mail agents, composed from the protocol cores, the stores and the asyncio
adapters, with policy hooks (plain callables) where a user decides.

- :class:`MSA`: the submission agent (RFC 6409) on ports 587 (STARTTLS) and 465
  (implicit TLS), AUTH required, the sender the user's own; it hands each
  :data:`Submission` to a delivery callable, by default :class:`MaildirDelivery`.
- :class:`MDA` (:mod:`mailagents.agents.mda`): local delivery into the stores
  (Maildir or mbox) of the users and aliases of a :class:`LocalRecipients` table, one
  result per recipient; :class:`MaildirDelivery`, the plain form, writes each message
  durably into its recipients' Maildirs from a path template, batching the messages
  that arrive together for one Maildir.
- :class:`LMTPServer` (:mod:`mailagents.agents.lmtp`): LMTP (RFC 2033) on a TCP port or
  a Unix socket in front of an MDA, one reply per recipient.
- :class:`MTA` (:mod:`mailagents.agents.mta`): SMTP on port 25 for its own domains and
  the clients it relays for (:class:`RelayPolicy`: never an open relay), a durable
  :class:`~mailagents.queue.Queue`, and :class:`Outbound`, the loop that delivers from
  it (local domains to an MDA, others by MX lookup over SMTP) with retries and
  delivery status notifications; :class:`QueueDelivery` lets the MSA submit into it.
- :class:`MAA`: the access agent over the users' Maildir or mbox stores: POP3
  (RFC 1939) on ports 110 (STLS) and 995 (implicit TLS), IMAP (RFC 9051, IMAP4rev1
  too) on ports 143 (STARTTLS) and 993 (implicit TLS); given the same path template as
  the MSA's :class:`MaildirDelivery`, it serves the mail the MSA delivered.
  :class:`StoreMaildrop` is the store side of one POP3 session;
  :class:`StoreIMAPHandler` (with :func:`store_imap_server` and :func:`imap_config`)
  answers every IMAP command from a user's store, usable on its own with an
  :class:`~mailagents.aio.IMAPServer`.
- :class:`MRA` (:mod:`mailagents.agents.mra`): the retrieval agent, fetchmail's job:
  polls remote POP3 and IMAP :class:`Account` objects and hands each new message to a
  delivery callable (an MDA, :class:`MaildirDelivery`, or :class:`SMTPForward` over
  SMTP or LMTP), remembering what it fetched, removing remote copies only once they
  are safe here.
"""

from mailagents.agents._imap_session import (
    IMAP_EXTENSIONS,
    StoreIMAPHandler,
    imap_config,
    store_imap_server,
)
from mailagents.agents._recipients import LocalRecipients, LocalTarget
from mailagents.agents._writer import WriterError
from mailagents.agents.lmtp import CheckRecipient, LMTPServer
from mailagents.agents.maa import (
    MAA,
    MAA_MECHANISMS,
    MaildropMessage,
    StoreMaildrop,
    uidl,
)
from mailagents.agents.mda import MDA, MaildirDelivery
from mailagents.agents.mra import (
    MRA,
    Account,
    AccountBusy,
    FetchReport,
    Skipped,
    SMTPForward,
    StateError,
)
from mailagents.agents.msa import (
    MECHANISMS,
    MSA,
    CheckMail,
    Deliver,
    SendersPolicy,
    Submission,
)
from mailagents.agents.mta import (
    MTA,
    ConnectOptions,
    Local,
    Outbound,
    QueueDelivery,
    Refused,
    Relay,
    RelayDecision,
    RelayPolicy,
    TLSChoice,
)

__all__ = [
    "IMAP_EXTENSIONS",
    "MRA",
    "Account",
    "AccountBusy",
    "FetchReport",
    "SMTPForward",
    "Skipped",
    "StateError",
    "MAA",
    "MAA_MECHANISMS",
    "CheckMail",
    "CheckRecipient",
    "LMTPServer",
    "MDA",
    "MECHANISMS",
    "MSA",
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
    "LocalRecipients",
    "LocalTarget",
    "Deliver",
    "MaildirDelivery",
    "MaildropMessage",
    "SendersPolicy",
    "StoreIMAPHandler",
    "StoreMaildrop",
    "Submission",
    "WriterError",
    "imap_config",
    "store_imap_server",
    "uidl",
]
