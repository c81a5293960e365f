"""The SMTP server's command-sequencing state machine, as data (RFC 5321 §4.1.4, §3.3).

It knows nothing about bytes: :data:`TRANSITIONS` says, for each state, which commands
are in sequence and which state each input leads to. The server core executes it (one
``_transition`` call is the only place its state changes); the tests walk every
(state, input) pair and the documentation draws the diagram from it.
"""

from __future__ import annotations

import enum

__all__ = ["COMMANDS", "EVENTS", "INITIAL", "TRANSITIONS", "State", "in_sequence"]


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
"""Every command verb the server core knows."""

EVENTS = frozenset(
    {"HELLO_REFUSED", "MESSAGE_END", "CHUNK_END", "AUTH_END", "TLS_STARTED", "CLOSE"}
)
"""The inputs of :data:`TRANSITIONS` that are not commands:

- ``HELLO_REFUSED``: the application refused EHLO/HELO/LHLO;
- ``MESSAGE_END``: the content ended (the final dot, the LAST chunk, or a refusal that
  ends the transaction, such as a message over the size limit);
- ``CHUNK_END``: the octets of a BDAT chunk other than the last were read;
- ``AUTH_END``: the SASL exchange ended (success or failure);
- ``TLS_STARTED``: the TLS handshake after STARTTLS completed;
- ``CLOSE``: the session ends (421 from the server, a fatal error or the client's close).
"""

_COMMAND_STATES = (State.CONNECTED, State.READY, State.MAIL, State.RCPT, State.BDAT)


def _table() -> dict[State, dict[str, State]]:
    t: dict[State, dict[str, State]] = {state: {} for state in State}
    for state in _COMMAND_STATES:
        row = t[state]
        # A new EHLO/HELO is allowed at any time and resets the transaction (§4.1.4);
        # the input is the greeting the application accepted.
        for verb in ("EHLO", "HELO", "LHLO"):
            row[verb] = State.READY
        row["HELLO_REFUSED"] = State.CONNECTED
        # RSET ends a transaction; before EHLO it changes nothing (§4.1.1.5).
        row["RSET"] = State.CONNECTED if state is State.CONNECTED else State.READY
        row["NOOP"] = state
        row["QUIT"] = State.CLOSED
        # VRFY/EXPN/HELP do not disturb a transaction (§4.1.4); not inside BDAT.
        if state is not State.BDAT:
            for verb in ("VRFY", "EXPN", "HELP"):
                row[verb] = state
    t[State.REFUSED]["QUIT"] = State.CLOSED  # RFC 5321 §3.1: only QUIT after a 554
    # MAIL starts a transaction (§4.1.1.2), then RCPT (§4.1.1.3), then the content.
    t[State.READY]["MAIL"] = State.MAIL
    t[State.MAIL]["RCPT"] = State.RCPT
    t[State.RCPT]["RCPT"] = State.RCPT
    t[State.RCPT]["DATA"] = State.DATA
    t[State.DATA]["MESSAGE_END"] = State.READY
    # BDAT needs a recipient; later chunks continue the BDAT transaction (RFC 3030 §2).
    t[State.RCPT]["BDAT"] = State.BDAT_CHUNK
    t[State.BDAT]["BDAT"] = State.BDAT_CHUNK
    t[State.BDAT_CHUNK]["CHUNK_END"] = State.BDAT
    t[State.BDAT_CHUNK]["MESSAGE_END"] = State.READY
    # STARTTLS and AUTH only after EHLO and outside a transaction (RFC 3207 §4,
    # RFC 4954 §4); after TLS the session starts afresh (RFC 3207 §4.2).
    t[State.READY]["STARTTLS"] = State.TLS_PENDING
    t[State.TLS_PENDING]["TLS_STARTED"] = State.CONNECTED
    t[State.READY]["AUTH"] = State.AUTH
    t[State.AUTH]["AUTH_END"] = State.READY
    for state in State:
        if state is not State.CLOSED:
            t[state]["CLOSE"] = State.CLOSED
    return t


TRANSITIONS: dict[State, dict[str, State]] = _table()
"""The state machine: for each state, the inputs it accepts and the state each leads to.
An input is a command (in sequence in that state; the transition happens once the
command is accepted, after the application's decision where there is one) or one of
:data:`EVENTS`. A command absent from a state's row is out of sequence there (503 5.5.1,
RFC 5321 §4.1.4); a refused command changes no state. A refused BDAT chunk's octets are
read and skipped (RFC 3030 §2) without leaving the state.
"""

INITIAL: dict[int, State] = {220: State.CONNECTED, 554: State.REFUSED, 421: State.CLOSED}
"""The first state, by the greeting's code (RFC 5321 §3.1, §4.2)."""


def in_sequence(state: State, command: str) -> bool:
    """Whether ``command`` (upper case) may be issued in ``state``."""
    return command in COMMANDS and command in TRANSITIONS[state]
