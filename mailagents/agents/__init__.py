"""The mail agents, composed from the protocol cores, the stores and the asyncio
adapters, with policy hooks (plain callables) where a user decides.

- :class:`MSA`: the submission agent (RFC 6409) on ports 587 (STARTTLS) and 465
  (implicit TLS), AUTH required, the sender the user's own; it hands each
  :class:`Submission` to a delivery callable, by default :class:`MaildirDelivery`.
"""

from mailagents.agents.msa import (
    MECHANISMS,
    MSA,
    Deliver,
    MaildirDelivery,
    SendersPolicy,
    Submission,
)

__all__ = [
    "MECHANISMS",
    "MSA",
    "Deliver",
    "MaildirDelivery",
    "SendersPolicy",
    "Submission",
]
