"""The POP3 server's session states and command table, as data (RFC 1939 §3-§7).

It knows nothing about bytes: :data:`TRANSITIONS` says, for each state, which commands
are in sequence and which state each input leads to. The server core executes it (one
``_transition`` call is the only place its state changes); the tests walk every
(state, input) pair and the documentation draws the diagram from it.
"""

from __future__ import annotations

import enum

__all__ = ["COMMANDS", "EVENTS", "INITIAL", "TRANSITIONS", "State", "in_sequence"]


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

EVENTS = frozenset({"AUTH_END", "MAILDROP_OPEN", "TLS_STARTED", "UPDATE_END", "CLOSE"})
"""The inputs of :data:`TRANSITIONS` that are not commands:

- ``AUTH_END``: a login ended (USER/PASS, APOP or a SASL exchange; success or failure);
- ``MAILDROP_OPEN``: the application opened the maildrop after a successful login;
- ``TLS_STARTED``: the TLS handshake after STLS completed;
- ``UPDATE_END``: the application answered the deletions of the UPDATE state;
- ``CLOSE``: the session ends (time-out, shutdown, a fatal error or the client's close).
"""


def _table() -> dict[State, dict[str, State]]:
    t: dict[State, dict[str, State]] = {state: {} for state in State}
    auth, trans = t[State.AUTHORIZATION], t[State.TRANSACTION]
    # RFC 1939 §4 and §7: identification only in AUTHORIZATION. USER, PASS and APOP
    # stay there until the login ends (USER/PASS and APOP need no SASL turn); AUTH
    # enters the exchange (RFC 5034 §4).
    for verb in ("USER", "PASS", "APOP", "CAPA", "UTF8"):  # RFC 2449 §5, RFC 6856 §2
        auth[verb] = State.AUTHORIZATION
    auth["AUTH"] = State.AUTH
    auth["AUTH_END"] = State.AUTHORIZATION
    t[State.AUTH]["AUTH_END"] = State.AUTHORIZATION
    auth["MAILDROP_OPEN"] = State.TRANSACTION  # RFC 1939 §4: the maildrop is locked
    auth["STLS"] = State.TLS_PENDING  # RFC 2595 §4
    t[State.TLS_PENDING]["TLS_STARTED"] = State.AUTHORIZATION
    # RFC 1939 §5 and §7: maildrop commands only in TRANSACTION.
    for verb in ("STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "CAPA"):
        trans[verb] = State.TRANSACTION
    # QUIT: from AUTHORIZATION the session ends (§4); from TRANSACTION it enters
    # UPDATE (§6), which ends once the deletions are done.
    auth["QUIT"] = State.CLOSED
    trans["QUIT"] = State.UPDATE
    t[State.UPDATE]["UPDATE_END"] = State.CLOSED
    for state in State:
        if state is not State.CLOSED:
            t[state]["CLOSE"] = State.CLOSED
    return t


TRANSITIONS: dict[State, dict[str, State]] = _table()
"""The state machine: for each state, the inputs it accepts and the state each leads to.
An input is a command (in sequence in that state; the transition happens once the
command is carried out) or one of :data:`EVENTS`. A command absent from a state's row
gets ``-ERR`` there; a refused command changes no state."""

INITIAL = State.AUTHORIZATION
"""The first state, after the greeting (RFC 1939 §4)."""


def in_sequence(state: State, command: str) -> bool:
    """Whether ``command`` (upper case) may be issued in ``state``."""
    return command in COMMANDS and command in TRANSITIONS[state]
