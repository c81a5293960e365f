"""The POP3 command table (mailagents/pop3/_state.py), walked for every reachable
(state, command) pair through a real ServerConnection."""

from __future__ import annotations

import pytest

from mailagents.pop3 import CommandRejected, ServerConfig, ServerConnection, State
from mailagents.pop3._state import COMMANDS, in_sequence

from .server_helpers import CHALLENGE, App, run

APOP = b"APOP mrose c4c9334bac560ecc979e58001b3e22fb"

# A well-formed instance of each command (valid in the state where it is in sequence).
ARGUMENTS = {
    "USER": b"USER mrose", "PASS": b"PASS tanstaaf", "APOP": APOP,
    "AUTH": b"AUTH PLAIN AG1yb3NlAHRhbnN0YWFm", "CAPA": b"CAPA", "STLS": b"STLS",
    "UTF8": b"UTF8", "QUIT": b"QUIT", "STAT": b"STAT", "LIST": b"LIST", "RETR": b"RETR 1",
    "DELE": b"DELE 1", "NOOP": b"NOOP", "RSET": b"RSET", "TOP": b"TOP 1 0", "UIDL": b"UIDL",
}

ROUTES: dict[State, bytes] = {
    State.AUTHORIZATION: b"USER mrose\r\n",  # so that PASS is in order
    State.TRANSACTION: b"USER mrose\r\nPASS tanstaaf\r\n",
}


def new_server() -> ServerConnection:
    cfg = ServerConfig(tls_available=True, allow_plaintext_login=True, allow_apop=True)
    return ServerConnection(cfg, challenge=CHALLENGE)


def test_table_covers_every_command() -> None:
    assert set(ARGUMENTS) == COMMANDS


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("state", list(ROUTES))
def test_every_state_and_command(state: State, command: str) -> None:
    server = new_server()
    run(ROUTES[state], server)
    assert server.state is state
    result = run(ARGUMENTS[command] + b"\r\n", server, App())
    first = result.lines[0] if result.lines else b""
    if in_sequence(state, command):
        assert first.startswith((b"+OK", b"+ ")), (state, command, result.out)
        assert not any(isinstance(e, CommandRejected) for e in result.events)
    else:
        assert first.startswith(b"-ERR "), (state, command, result.out)
        assert [type(e) for e in result.events] == [CommandRejected]
        assert result.events[0].command == command  # type: ignore[union-attr]
        assert server.state is state  # a refused command changes nothing


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_during_sasl_exchange_is_a_response(command: str) -> None:
    server = new_server()
    run(b"AUTH PLAIN\r\n", server)
    assert server.state is State.AUTH
    result = run(ARGUMENTS[command] + b"\r\n", server)
    # Not base64 (or not a PLAIN message): the exchange fails, no command runs.
    assert result.lines[0].startswith(b"-ERR ")
    assert server.state is State.AUTHORIZATION


@pytest.mark.parametrize("state", [State.AUTH, State.TLS_PENDING, State.UPDATE, State.CLOSED])
def test_states_that_take_no_commands(state: State) -> None:
    assert not any(in_sequence(state, c) for c in COMMANDS)


def test_closed_and_tls_pending_states() -> None:
    server = new_server()
    run(b"STLS\r\n", server)
    assert server.state is State.TLS_PENDING
    server = new_server()
    run(b"QUIT\r\n", server)
    assert server.state is State.CLOSED
    assert run(b"NOOP\r\n", server).out == b""


def test_unknown_commands() -> None:
    server = new_server()
    result = run(b"HELO x\r\nXTND XMIT\r\nLAST\r\n\r\n", server)
    assert result.lines == [b"-ERR Unknown command"] * 4
    assert [e.command for e in result.events] == ["HELO", "XTND", "LAST", ""]  # type: ignore[union-attr]


# --- the transition table (TRANSITIONS) -------------------------------------------------

from mailagents.pop3 import Reject, Response  # noqa: E402
from mailagents.pop3._state import EVENTS, INITIAL, TRANSITIONS  # noqa: E402


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("state", list(ROUTES))
def test_every_command_takes_the_tables_transition(state: State, command: str) -> None:
    server = new_server()
    run(ROUTES[state], server)
    run(ARGUMENTS[command] + b"\r\n", server, App())
    row = TRANSITIONS[state]
    if command not in row:
        assert server.state is state
    elif command in ("PASS", "APOP"):
        # The login ends (AUTH_END) and the maildrop opens (MAILDROP_OPEN).
        assert server.state is TRANSITIONS[row[command]]["MAILDROP_OPEN"]
    elif command == "AUTH":
        # PLAIN with its initial response: the exchange ends at once.
        auth = TRANSITIONS[row["AUTH"]]["AUTH_END"]
        assert server.state is TRANSITIONS[auth]["MAILDROP_OPEN"]
    elif state is State.TRANSACTION and command == "QUIT":
        # UPDATE, then the application's answer to the deletions.
        assert server.state is TRANSITIONS[row["QUIT"]]["UPDATE_END"]
    else:
        assert server.state is row[command], (state, command)


def test_a_sasl_exchange_passes_through_auth() -> None:
    server = new_server()
    run(b"AUTH PLAIN\r\n", server)
    assert server.state is TRANSITIONS[State.AUTHORIZATION]["AUTH"] is State.AUTH
    run(b"*\r\n", server)
    assert server.state is TRANSITIONS[State.AUTH]["AUTH_END"]


def test_a_refused_maildrop_stays_in_authorization() -> None:
    app = App(open_reject=Reject(reply=Response(ok=False, text="busy", code="IN-USE")))
    server = new_server()
    run(b"USER mrose\r\nPASS tanstaaf\r\n", server, app)
    assert server.state is TRANSITIONS[State.AUTHORIZATION]["AUTH_END"]


def test_update_passes_through_update() -> None:
    server = new_server()
    run(ROUTES[State.TRANSACTION], server)
    server.receive_data(b"QUIT\r\n")
    event = server.next_event()
    assert type(event).__name__ == "Update"
    assert server.state is TRANSITIONS[State.TRANSACTION]["QUIT"] is State.UPDATE


def test_tls_started_takes_the_tables_transition() -> None:
    server = new_server()
    run(b"STLS\r\n", server)
    server.tls_started()
    assert server.state is TRANSITIONS[State.TLS_PENDING]["TLS_STARTED"]


@pytest.mark.parametrize("route", [b"", b"AUTH PLAIN\r\n", ROUTES[State.TRANSACTION]])
def test_shutdown_takes_the_close_transition(route: bytes) -> None:
    server = new_server()
    if route:
        run(route, server)
    state = server.state
    server.shutdown()
    assert server.state is TRANSITIONS[state]["CLOSE"] is State.CLOSED


def test_the_table_is_closed_and_every_state_is_reachable() -> None:
    from mailagents._protocol import reachable

    inputs = {i for row in TRANSITIONS.values() for i in row}
    assert inputs <= COMMANDS | EVENTS
    assert inputs >= EVENTS
    assert set(TRANSITIONS) == set(State)
    assert reachable(TRANSITIONS, [INITIAL]) == set(State)
    assert all(TRANSITIONS[s].get("CLOSE") is State.CLOSED for s in State if s is not State.CLOSED)
    assert TRANSITIONS[State.CLOSED] == {}


S = State
# The table against RFC 1939 (and RFC 2449, 2595, 5034) read on their own.
RFC_TRANSITIONS: list[tuple[State, str, State | None, str]] = [
    (S.AUTHORIZATION, "USER", S.AUTHORIZATION, "1939 §7"),
    (S.AUTHORIZATION, "STAT", None, "1939 §5: only in TRANSACTION"),
    (S.AUTHORIZATION, "MAILDROP_OPEN", S.TRANSACTION, "1939 §4"),
    (S.AUTHORIZATION, "QUIT", S.CLOSED, "1939 §4: no UPDATE before login"),
    (S.TRANSACTION, "QUIT", S.UPDATE, "1939 §6"),
    (S.UPDATE, "UPDATE_END", S.CLOSED, "1939 §6"),
    (S.TRANSACTION, "USER", None, "1939 §7: only in AUTHORIZATION"),
    (S.TRANSACTION, "CAPA", S.TRANSACTION, "2449 §5: CAPA in both states"),
    (S.AUTHORIZATION, "CAPA", S.AUTHORIZATION, "2449 §5"),
    (S.AUTHORIZATION, "STLS", S.TLS_PENDING, "2595 §4"),
    (S.TRANSACTION, "STLS", None, "2595 §4: only in AUTHORIZATION"),
    (S.TLS_PENDING, "TLS_STARTED", S.AUTHORIZATION, "2595 §4"),
    (S.AUTHORIZATION, "AUTH", S.AUTH, "5034 §4"),
    (S.TRANSACTION, "AUTH", None, "5034 §4"),
    (S.AUTH, "AUTH_END", S.AUTHORIZATION, "5034 §4"),
]


@pytest.mark.parametrize(("state", "event", "target", "rule"), RFC_TRANSITIONS)
def test_the_table_says_what_the_rfcs_say(
    state: State, event: str, target: State | None, rule: str
) -> None:
    assert TRANSITIONS[state].get(event) is target, rule


def test_the_core_changes_state_only_through_the_table() -> None:
    import inspect

    from mailagents.pop3 import _auth, _maildrop, _server, _server_core

    source = "".join(inspect.getsource(m) for m in (_server_core, _server, _auth, _maildrop))
    assert source.count("self._state = ") == 1  # the first state, in the constructor
    assert source.count("self._state, self._row = move") == 1
