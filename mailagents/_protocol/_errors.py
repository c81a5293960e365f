"""Error types shared by the protocol cores.

Each protocol package re-exports :class:`RemoteProtocolError` and
:class:`LocalProtocolError`; they are the only exceptions a core ever raises.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base class of the two errors a protocol core raises."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol so badly that the session cannot go on.

    When a core raises it, the final reply (for SMTP a 421 or 5xx before close) has
    already been queued: drain ``data_to_send()`` once more, then close.
    """


class LocalProtocolError(ProtocolError):
    """Our own caller misused the core (a command out of order, a value with CR or LF,
    an answer to a question that was not asked)."""
