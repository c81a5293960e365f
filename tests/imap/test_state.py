"""The IMAP server's state table (mailagents/imap/_state.py): every (state, command)
pair against RFC 9051 §6 read on its own, and the table's shape."""

from __future__ import annotations

import pytest

from mailagents._protocol import compile_moves, reachable, to_dot
from mailagents.imap._state import COMMANDS, EVENTS, INITIAL, TRANSITIONS, State, valid_in

S = State

# RFC 9051 §6.1-§6.4 (and RFC 2971, 4978, 5161, 5256, 3501 for ID, COMPRESS, ENABLE,
# SORT/THREAD, CHECK/LSUB), written out independently of the module's sets.
ANY = ["CAPABILITY", "NOOP", "LOGOUT", "ID"]
NOT_AUTH = ["STARTTLS", "AUTHENTICATE", "LOGIN"]
AUTH = [
    "ENABLE",
    "SELECT",
    "EXAMINE",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "LIST",
    "LSUB",
    "NAMESPACE",
    "STATUS",
    "APPEND",
    "IDLE",
    "COMPRESS",
]
SELECTED = [
    "CLOSE",
    "UNSELECT",
    "EXPUNGE",
    "SEARCH",
    "FETCH",
    "STORE",
    "COPY",
    "MOVE",
    "UID",
    "SORT",
    "THREAD",
    "CHECK",
]

EXPECTED_VALID = {
    S.NOT_AUTHENTICATED: set(ANY + NOT_AUTH),
    S.AUTHENTICATED: set(ANY + AUTH),
    S.SELECTED: set(ANY + AUTH + SELECTED) - {"ENABLE"},  # RFC 5161 §3.1
}


def test_the_command_list_is_the_rfcs() -> None:
    assert set(ANY + NOT_AUTH + AUTH + SELECTED) == COMMANDS


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("state", list(State))
def test_every_state_and_command(state: State, command: str) -> None:
    assert valid_in(state, command) is (command in EXPECTED_VALID.get(state, set()))


@pytest.mark.parametrize(
    ("state", "command", "target"),
    [
        (S.NOT_AUTHENTICATED, "LOGIN", S.AUTHENTICATED),
        (S.NOT_AUTHENTICATED, "AUTHENTICATE", S.AUTHENTICATING),
        (S.NOT_AUTHENTICATED, "STARTTLS", S.TLS_PENDING),
        (S.NOT_AUTHENTICATED, "NOOP", S.NOT_AUTHENTICATED),
        (S.AUTHENTICATED, "SELECT", S.SELECTED),
        (S.AUTHENTICATED, "EXAMINE", S.SELECTED),
        (S.SELECTED, "SELECT", S.SELECTED),
        (S.SELECTED, "CLOSE", S.AUTHENTICATED),
        (S.SELECTED, "UNSELECT", S.AUTHENTICATED),
        (S.SELECTED, "FETCH", S.SELECTED),
        (S.AUTHENTICATED, "IDLE", S.IDLE_AUTHENTICATED),
        (S.SELECTED, "IDLE", S.IDLE_SELECTED),
        (S.IDLE_AUTHENTICATED, "DONE", S.AUTHENTICATED),
        (S.IDLE_SELECTED, "DONE", S.SELECTED),
        (S.AUTHENTICATING, "AUTH_OK", S.AUTHENTICATED),
        (S.AUTHENTICATING, "AUTH_FAILED", S.NOT_AUTHENTICATED),
        (S.TLS_PENDING, "TLS_STARTED", S.NOT_AUTHENTICATED),
        (S.SELECTED, "SELECT_FAILED", S.AUTHENTICATED),  # RFC 9051 §6.3.2
        (S.AUTHENTICATED, "SELECT_FAILED", S.AUTHENTICATED),
        (S.GREETING, "GREETING_OK", S.NOT_AUTHENTICATED),
        (S.GREETING, "GREETING_PREAUTH", S.AUTHENTICATED),
        (S.GREETING, "GREETING_BYE", S.LOGOUT),
        (S.SELECTED, "LOGOUT", S.LOGOUT),
        (S.NOT_AUTHENTICATED, "LOGOUT", S.LOGOUT),
    ],
)
def test_transitions(state: State, command: str, target: State) -> None:
    assert TRANSITIONS[state][command] is target


@pytest.mark.parametrize(
    "state",
    [S.GREETING, S.AUTHENTICATING, S.TLS_PENDING, S.IDLE_AUTHENTICATED, S.IDLE_SELECTED, S.LOGOUT],
)
def test_states_that_take_no_commands(state: State) -> None:
    assert not any(valid_in(state, c) for c in COMMANDS)


def test_the_table_is_closed_and_every_state_is_reachable() -> None:
    inputs = {i for row in TRANSITIONS.values() for i in row}
    assert inputs <= COMMANDS | EVENTS
    assert inputs >= EVENTS
    assert not COMMANDS & EVENTS
    assert set(TRANSITIONS) == set(State)
    assert reachable(TRANSITIONS, [INITIAL]) == set(State)
    assert all(TRANSITIONS[s]["END"] is S.LOGOUT for s in State if s is not S.LOGOUT)
    assert TRANSITIONS[S.LOGOUT] == {}


def test_compiles_and_draws() -> None:
    moves = compile_moves(TRANSITIONS)
    state, row = moves[INITIAL]["GREETING_OK"]
    assert state is S.NOT_AUTHENTICATED and row is moves[S.NOT_AUTHENTICATED]
    dot = to_dot(TRANSITIONS, "imap", initial=[INITIAL], hide=["END"])
    assert '"SELECTED" -> "AUTHENTICATED"' in dot
