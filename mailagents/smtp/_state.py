"""The SMTP server's command-sequencing state machine, as data (RFC 5321 §4.1.4, §3.3).

It knows nothing about bytes: which commands are in sequence in which state, and which
state an accepted command leads to. The server core consults it; the tests walk every
(state, command) pair.
"""

from __future__ import annotations

import enum

__all__ = ["COMMANDS", "State", "in_sequence"]


class State(enum.Enum):
    """Where a server session stands."""

    REFUSED = "refused"
    """The greeting was 554: only QUIT is in sequence (RFC 5321 §3.1)."""
    CONNECTED = "connected"
    """Greeting sent (or TLS just started): EHLO/HELO (LHLO) must come first."""
    READY = "ready"
    """Greeted, no mail transaction."""
    MAIL = "mail"
    """MAIL accepted, no recipient accepted yet."""
    RCPT = "rcpt"
    """At least one recipient accepted."""
    DATA = "data"
    """354 sent: message content until CRLF.CRLF."""
    BDAT = "bdat"
    """Inside a BDAT transaction, between chunks (RFC 3030)."""
    BDAT_CHUNK = "bdat_chunk"
    """Reading the octets of one BDAT chunk."""
    AUTH = "auth"
    """A SASL exchange is in progress: the next line is a response, not a command."""
    TLS_PENDING = "tls_pending"
    """220 to STARTTLS queued: waiting for the TLS handshake."""
    CLOSED = "closed"
    """QUIT answered or the session was ended with 421."""


COMMANDS = frozenset(
    {"EHLO", "HELO", "LHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT",
     "VRFY", "EXPN", "HELP", "STARTTLS", "AUTH"}
)

_ANY_COMMAND_STATE = frozenset({State.CONNECTED, State.READY, State.MAIL, State.RCPT, State.BDAT})

# For each command, the states in which it is in sequence. A command outside its states
# gets 503 5.5.1 (RFC 5321 §4.1.4; RFC 3030 §2 for BDAT transactions).
_SEQUENCE: dict[str, frozenset[State]] = {
    # A new EHLO/HELO is allowed at any time and resets the transaction (§4.1.4).
    "EHLO": _ANY_COMMAND_STATE,
    "HELO": _ANY_COMMAND_STATE,
    "LHLO": _ANY_COMMAND_STATE,
    "MAIL": frozenset({State.READY}),
    "RCPT": frozenset({State.MAIL, State.RCPT}),
    "DATA": frozenset({State.RCPT}),
    # BDAT needs a recipient; later chunks continue the BDAT transaction.
    "BDAT": frozenset({State.RCPT, State.BDAT}),
    "RSET": _ANY_COMMAND_STATE,
    "NOOP": _ANY_COMMAND_STATE,
    "QUIT": _ANY_COMMAND_STATE | {State.REFUSED},
    # VRFY/EXPN/HELP do not disturb a transaction (§4.1.4); not inside BDAT.
    "VRFY": _ANY_COMMAND_STATE - {State.BDAT},
    "EXPN": _ANY_COMMAND_STATE - {State.BDAT},
    "HELP": _ANY_COMMAND_STATE - {State.BDAT},
    # STARTTLS and AUTH only after EHLO and outside a transaction (RFC 3207 §4, RFC 4954 §4).
    "STARTTLS": frozenset({State.READY}),
    "AUTH": frozenset({State.READY}),
}


def in_sequence(state: State, command: str) -> bool:
    """Whether ``command`` (upper case) may be issued in ``state``."""
    allowed = _SEQUENCE.get(command)
    return allowed is not None and state in allowed
