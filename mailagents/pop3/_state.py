"""The POP3 server's session states and command table, as data (RFC 1939 §3-§7).

It knows nothing about bytes: which commands are in sequence in which state. The
server core consults it; the tests walk every (state, command) pair.
"""

from __future__ import annotations

import enum

__all__ = ["COMMANDS", "State", "in_sequence"]


class State(enum.Enum):
    """Where a POP3 server session stands (RFC 1939 §3)."""

    AUTHORIZATION = "authorization"
    """Greeting sent (or TLS just started): the client must identify itself."""
    AUTH = "auth"
    """A SASL exchange (RFC 5034) is in progress: the next line is a response, not a
    command."""
    TLS_PENDING = "tls_pending"
    """``+OK`` to STLS queued: waiting for the TLS handshake (RFC 2595 §4)."""
    TRANSACTION = "transaction"
    """The maildrop is open: STAT, LIST, RETR and the rest."""
    UPDATE = "update"
    """QUIT in TRANSACTION: the application is removing the deleted messages."""
    CLOSED = "closed"
    """The session is over (QUIT answered, time-out, shutdown or a fatal error)."""


COMMANDS = frozenset(
    {
        # RFC 1939
        "USER", "PASS", "APOP", "QUIT", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET",
        "TOP", "UIDL",
        # RFC 2449, RFC 5034, RFC 2595, RFC 6856
        "CAPA", "AUTH", "STLS", "UTF8",
    }
)
"""Every command verb the server core knows."""

_AUTHORIZATION = frozenset({State.AUTHORIZATION})
_TRANSACTION = frozenset({State.TRANSACTION})

# For each command, the states in which it may be issued; anything else gets -ERR.
_SEQUENCE: dict[str, frozenset[State]] = {
    # RFC 1939 §4 and §7: identification only in AUTHORIZATION.
    "USER": _AUTHORIZATION,
    "PASS": _AUTHORIZATION,
    "APOP": _AUTHORIZATION,
    "AUTH": _AUTHORIZATION,  # RFC 5034 §4
    "STLS": _AUTHORIZATION,  # RFC 2595 §4
    "UTF8": _AUTHORIZATION,  # RFC 6856 §2
    # RFC 1939 §5 and §7: maildrop commands only in TRANSACTION.
    "STAT": _TRANSACTION,
    "LIST": _TRANSACTION,
    "RETR": _TRANSACTION,
    "DELE": _TRANSACTION,
    "NOOP": _TRANSACTION,
    "RSET": _TRANSACTION,
    "TOP": _TRANSACTION,
    "UIDL": _TRANSACTION,
    # RFC 2449 §5: CAPA in both states; QUIT in both (RFC 1939 §4 and §6).
    "CAPA": _AUTHORIZATION | _TRANSACTION,
    "QUIT": _AUTHORIZATION | _TRANSACTION,
}


def in_sequence(state: State, command: str) -> bool:
    """Whether ``command`` (upper case) may be issued in ``state``."""
    allowed = _SEQUENCE.get(command)
    return allowed is not None and state in allowed
