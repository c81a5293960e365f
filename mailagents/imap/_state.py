"""The IMAP server's session states and command table, as data (RFC 9051 §3, §6).

It knows nothing about bytes: :data:`TRANSITIONS` says, for each state, which commands
are valid and which state each input leads to. The server core executes it through
``mailagents._protocol.compile_moves`` (one ``_transition`` is the only place its state
changes); the tests walk every (state, command) pair and the documentation draws the
diagram from it (``mailagents._protocol.to_dot``).

A command's entry is the state once it completed with a tagged OK; a command that fails
changes nothing, except SELECT and EXAMINE: a failed one leaves no mailbox selected
(RFC 9051 §6.3.2, the ``SELECT_FAILED`` event).
"""

from __future__ import annotations

import enum

__all__ = [
    "ANY_STATE",
    "AUTHENTICATED_ONLY",
    "COMMANDS",
    "EVENTS",
    "INITIAL",
    "NOT_AUTHENTICATED_ONLY",
    "SELECTED_ONLY",
    "TRANSITIONS",
    "State",
    "valid_in",
]


class State(enum.Enum):
    """Where an IMAP server session stands (RFC 9051 §3), with the sub-states in which
    the next line is not a command."""

    GREETING = "greeting"
    """Connected: the application has not decided the greeting (OK, PREAUTH or BYE,
    RFC 9051 §7.1)."""
    NOT_AUTHENTICATED = "not_authenticated"
    """RFC 9051 §3.1: the client must authenticate (LOGIN, AUTHENTICATE)."""
    AUTHENTICATING = "authenticating"
    """An AUTHENTICATE exchange is under way: the next line is a SASL response
    (RFC 9051 §6.2.2)."""
    TLS_PENDING = "tls_pending"
    """``OK`` to STARTTLS queued: waiting for the TLS handshake (RFC 9051 §6.2.1)."""
    AUTHENTICATED = "authenticated"
    """RFC 9051 §3.2: logged in, no mailbox selected."""
    SELECTED = "selected"
    """RFC 9051 §3.3: a mailbox is selected."""
    IDLE_AUTHENTICATED = "idle_authenticated"
    """IDLE (RFC 2177) begun in the authenticated state: only ``DONE`` is read."""
    IDLE_SELECTED = "idle_selected"
    """IDLE begun in the selected state: only ``DONE`` is read."""
    LOGOUT = "logout"
    """RFC 9051 §3.4: the session is ending (LOGOUT, BYE, a closed connection)."""


ANY_STATE = frozenset({"CAPABILITY", "NOOP", "LOGOUT", "ID"})
"""RFC 9051 §6.1 and ID (RFC 2971 §3.1): valid in every state that takes commands."""

NOT_AUTHENTICATED_ONLY = frozenset({"STARTTLS", "AUTHENTICATE", "LOGIN"})
"""RFC 9051 §6.2."""

AUTHENTICATED_ONLY = frozenset({"ENABLE"})
"""ENABLE is valid in the authenticated state only, before any mailbox is selected
(RFC 5161 §3.1, RFC 9051 §6.3.1)."""

AUTHENTICATED = frozenset(
    {
        # RFC 9051 §6.3 (LSUB: RFC 3501 §6.3.9, kept for IMAP4rev1 clients)
        "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE",
        "LIST", "LSUB", "NAMESPACE", "STATUS", "APPEND", "IDLE",
        # RFC 4978 §3: COMPRESS in the authenticated and selected states
        "COMPRESS",
    }
)  # fmt: skip
"""RFC 9051 §6.3: valid in the authenticated state and (RFC 9051 §3.3) in the selected
state too."""

SELECTED_ONLY = frozenset(
    {
        # RFC 9051 §6.4; CHECK from RFC 3501 §6.4.1; SORT and THREAD from RFC 5256
        "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "UID",
        "SORT", "THREAD", "CHECK",
    }
)  # fmt: skip
"""RFC 9051 §6.4: valid in the selected state only."""

COMMANDS = ANY_STATE | NOT_AUTHENTICATED_ONLY | AUTHENTICATED_ONLY | AUTHENTICATED | SELECTED_ONLY
"""Every command verb the server core knows (``UID`` is one verb: its FETCH, STORE,
COPY, MOVE, SEARCH and EXPUNGE forms are valid where UID is)."""

EVENTS = frozenset(
    {
        "GREETING_OK", "GREETING_PREAUTH", "GREETING_BYE", "AUTH_OK", "AUTH_FAILED",
        "TLS_STARTED", "SELECT_FAILED", "DONE", "END",
    }
)  # fmt: skip
"""The inputs of :data:`TRANSITIONS` that are not commands:

- ``GREETING_OK``, ``GREETING_PREAUTH``, ``GREETING_BYE``: the greeting the application
  chose was sent (RFC 9051 §3: not authenticated, authenticated, or logout);
- ``AUTH_OK``, ``AUTH_FAILED``: an AUTHENTICATE exchange ended (RFC 9051 §6.2.2);
- ``TLS_STARTED``: the TLS handshake after STARTTLS completed (RFC 9051 §6.2.1);
- ``SELECT_FAILED``: SELECT or EXAMINE failed, so no mailbox is selected (§6.3.2);
- ``DONE``: IDLE ended (RFC 2177 §3);
- ``END``: the session ends (BYE sent, time-out, shutdown, the client's close; not
  to be confused with the CLOSE command).
"""


def _table() -> dict[State, dict[str, State]]:
    s = State
    t: dict[State, dict[str, State]] = {state: {} for state in State}
    t[s.GREETING].update(
        GREETING_OK=s.NOT_AUTHENTICATED, GREETING_PREAUTH=s.AUTHENTICATED,
        GREETING_BYE=s.LOGOUT,
    )  # fmt: skip
    for state in (s.NOT_AUTHENTICATED, s.AUTHENTICATED, s.SELECTED):
        for verb in ANY_STATE:
            t[state][verb] = state
        t[state]["LOGOUT"] = s.LOGOUT  # RFC 9051 §6.1.3
    nauth = t[s.NOT_AUTHENTICATED]
    nauth["LOGIN"] = s.AUTHENTICATED  # §6.2.3
    nauth["AUTHENTICATE"] = s.AUTHENTICATING  # §6.2.2
    nauth["STARTTLS"] = s.TLS_PENDING  # §6.2.1
    t[s.AUTHENTICATING].update(AUTH_OK=s.AUTHENTICATED, AUTH_FAILED=s.NOT_AUTHENTICATED)
    t[s.TLS_PENDING]["TLS_STARTED"] = s.NOT_AUTHENTICATED
    for state in (s.AUTHENTICATED, s.SELECTED):
        row = t[state]
        for verb in AUTHENTICATED:
            row[verb] = state
        row["SELECT"] = row["EXAMINE"] = s.SELECTED  # §6.3.2, §6.3.3
        row["SELECT_FAILED"] = s.AUTHENTICATED
    t[s.AUTHENTICATED]["ENABLE"] = s.AUTHENTICATED
    t[s.AUTHENTICATED]["IDLE"] = s.IDLE_AUTHENTICATED
    t[s.SELECTED]["IDLE"] = s.IDLE_SELECTED
    t[s.IDLE_AUTHENTICATED]["DONE"] = s.AUTHENTICATED
    t[s.IDLE_SELECTED]["DONE"] = s.SELECTED
    sel = t[s.SELECTED]
    for verb in SELECTED_ONLY:
        sel[verb] = s.SELECTED
    sel["CLOSE"] = sel["UNSELECT"] = s.AUTHENTICATED  # §6.4.1, §6.4.2
    for state in State:
        if state is not s.LOGOUT:
            t[state]["END"] = s.LOGOUT
    return t


TRANSITIONS: dict[State, dict[str, State]] = _table()
"""The state machine: for each state, the inputs it accepts and the state each leads to.
A command absent from a state's row is answered BAD there (RFC 9051 §7.1.3) and changes
nothing."""

INITIAL = State.GREETING
"""The first state, before the greeting."""


def valid_in(state: State, command: str) -> bool:
    """Whether ``command`` (upper case) may be issued in ``state``."""
    return command in COMMANDS and command in TRANSITIONS[state]
