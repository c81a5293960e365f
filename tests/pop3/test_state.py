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
