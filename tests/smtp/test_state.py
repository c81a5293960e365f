"""The command-sequencing table (mailagents/smtp/_state.py), walked for every reachable
(state, command) pair through a real ServerConnection."""

from __future__ import annotations

import pytest

from mailagents.smtp import Reply, ServerConfig, ServerConnection, State
from mailagents.smtp._state import COMMANDS, in_sequence

from .helpers import codes, run

# How to reach each state from a fresh connection (after the 220 greeting).
ROUTES: dict[State, bytes] = {
    State.CONNECTED: b"",
    State.READY: b"EHLO c.test\r\n",
    State.MAIL: b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n",
    State.RCPT: b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n",
    State.BDAT: b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nBDAT 1\r\nx",
}

ARGUMENTS = {
    "EHLO": b"EHLO c.test", "HELO": b"HELO c.test", "LHLO": b"LHLO c.test",
    "MAIL": b"MAIL FROM:<x@b.test>", "RCPT": b"RCPT TO:<y@d.test>", "DATA": b"DATA",
    "BDAT": b"BDAT 0", "RSET": b"RSET", "NOOP": b"NOOP", "QUIT": b"QUIT",
    "VRFY": b"VRFY x", "EXPN": b"EXPN x", "HELP": b"HELP", "STARTTLS": b"STARTTLS",
    "AUTH": b"AUTH PLAIN =",
}


def new_server(state: State) -> ServerConnection:
    cfg = ServerConfig(starttls=True, auth_mechanisms=("PLAIN",), auth_without_tls=True)
    if state is State.REFUSED:
        return ServerConnection(cfg, greeting=Reply(code=554, lines=("no",)))
    return ServerConnection(cfg)


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("state", [*ROUTES, State.REFUSED])
def test_every_state_and_command(state: State, command: str) -> None:
    server = new_server(state)
    route = ROUTES.get(state, b"")
    if route:
        run(route, server)
    server.data_to_send()  # the greeting and the replies on the way
    assert server.state is state
    _, out, _ = run(ARGUMENTS[command] + b"\r\n", server)
    code = codes(out)[0]
    if command == "LHLO":
        assert code == 500  # LHLO is not SMTP (RFC 2033 §4.1)
    elif in_sequence(state, command):
        assert code not in (503, 554), (state, command, out)
    else:
        assert code in (503, 554), (state, command, out)


def test_states_that_take_no_commands() -> None:
    for state in (State.DATA, State.BDAT_CHUNK, State.AUTH, State.TLS_PENDING, State.CLOSED):
        assert not any(in_sequence(state, c) for c in COMMANDS)
    assert [c for c in COMMANDS if in_sequence(State.REFUSED, c)] == ["QUIT"]
