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


# --- the transition table (TRANSITIONS) -------------------------------------------------

from mailagents.smtp import Reject  # noqa: E402
from mailagents.smtp._state import EVENTS, INITIAL, TRANSITIONS  # noqa: E402

# A command as sent to reach its transition: BDAT with an unfinished chunk (so the
# session is in BDAT_CHUNK), AUTH without an initial response (so it is in AUTH).
TRANSITION_ARGUMENTS = {**ARGUMENTS, "BDAT": b"BDAT 1", "AUTH": b"AUTH PLAIN"}


@pytest.mark.parametrize("command", sorted(COMMANDS - {"LHLO"}))
@pytest.mark.parametrize("state", [*ROUTES, State.REFUSED])
def test_every_command_takes_the_tables_transition(state: State, command: str) -> None:
    server = new_server(state)
    if ROUTES.get(state):
        run(ROUTES[state], server)
    assert server.state is state
    run(TRANSITION_ARGUMENTS[command] + b"\r\n", server)
    # In sequence: the table's target (decisions accepted); out of sequence: no change.
    assert server.state is TRANSITIONS[state].get(command, state), (state, command)


def test_lhlo_takes_the_tables_transition_in_lmtp() -> None:
    server = ServerConnection(ServerConfig(lmtp=True))
    run(b"LHLO c.test\r\n", server)
    assert server.state is TRANSITIONS[State.CONNECTED]["LHLO"]


def _refuse_hello(event: object) -> object:
    from .helpers import accept_all

    if type(event).__name__ == "Hello":
        return Reject(reply=Reply(code=550, lines=("no",)))
    return accept_all(event)  # type: ignore[arg-type]


@pytest.mark.parametrize("state", list(ROUTES))
def test_a_refused_hello_takes_the_tables_transition(state: State) -> None:
    server = new_server(state)
    if ROUTES[state]:
        run(ROUTES[state], server)
    run(b"EHLO again.test\r\n", server, _refuse_hello)  # type: ignore[arg-type]
    assert server.state is TRANSITIONS[state]["HELLO_REFUSED"]


# How to produce each event from the state it leaves.
EVENT_ROUTES: list[tuple[State, str, bytes, bytes]] = [
    (State.DATA, "MESSAGE_END", ROUTES[State.RCPT] + b"DATA\r\n", b"x\r\n.\r\n"),
    (State.BDAT_CHUNK, "MESSAGE_END", ROUTES[State.RCPT] + b"BDAT 1 LAST\r\n", b"x"),
    (State.BDAT_CHUNK, "CHUNK_END", ROUTES[State.RCPT] + b"BDAT 1\r\n", b"x"),
    (State.AUTH, "AUTH_END", ROUTES[State.READY] + b"AUTH PLAIN\r\n", b"*\r\n"),
]


@pytest.mark.parametrize(("state", "event", "route", "data"), EVENT_ROUTES)
def test_every_event_takes_the_tables_transition(
    state: State, event: str, route: bytes, data: bytes
) -> None:
    server = new_server(state)
    run(route, server)
    assert server.state is state
    run(data, server)
    assert server.state is TRANSITIONS[state][event]


def test_tls_started_takes_the_tables_transition() -> None:
    server = new_server(State.READY)
    run(ROUTES[State.READY] + b"STARTTLS\r\n", server)
    assert server.state is State.TLS_PENDING
    server.tls_started()
    assert server.state is TRANSITIONS[State.TLS_PENDING]["TLS_STARTED"]


@pytest.mark.parametrize("state", [*ROUTES, State.REFUSED, State.DATA, State.AUTH])
def test_shutdown_takes_the_close_transition_from_every_state(state: State) -> None:
    server = new_server(state)
    route = {
        State.DATA: ROUTES[State.RCPT] + b"DATA\r\n",
        State.AUTH: ROUTES[State.READY] + b"AUTH PLAIN\r\n",
    }.get(state, ROUTES.get(state, b""))
    if route:
        run(route, server)
    assert server.state is state
    server.shutdown()
    assert server.state is TRANSITIONS[state]["CLOSE"] is State.CLOSED


def test_the_table_is_closed_and_every_state_is_reachable() -> None:
    inputs = {i for row in TRANSITIONS.values() for i in row}
    assert inputs <= COMMANDS | EVENTS
    assert inputs >= EVENTS  # no event is declared and never used
    assert set(TRANSITIONS) == set(State)
    seen = set(INITIAL.values())
    frontier = list(seen)
    while frontier:
        for target in TRANSITIONS[frontier.pop()].values():
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == set(State)
    # Every state but CLOSED can be closed; CLOSED has no way out.
    assert all(TRANSITIONS[s].get("CLOSE") is State.CLOSED for s in State if s is not State.CLOSED)
    assert TRANSITIONS[State.CLOSED] == {}


def test_the_core_changes_state_only_through_the_table() -> None:
    import inspect

    from mailagents.smtp import _auth, _bdat, _server, _server_core

    source = "".join(inspect.getsource(m) for m in (_server_core, _server, _bdat, _auth))
    # The constructor sets the first state; every later change is a _transition call.
    assert source.count("self._state = ") == 2
    assert source.count("self._state, self._row = move") == 1


S = State
# The table against RFC 5321 (and RFC 3030, 3207, 4954) read on their own: (state,
# input) -> the state it must lead to, or None where the input is out of sequence.
RFC_TRANSITIONS: list[tuple[State, str, State | None, str]] = [
    (S.CONNECTED, "EHLO", S.READY, "5321 §4.1.1.1"),
    (S.MAIL, "EHLO", S.READY, "5321 §4.1.4: EHLO resets the transaction"),
    (S.BDAT, "HELO", S.READY, "5321 §4.1.4"),
    (S.CONNECTED, "MAIL", None, "5321 §4.1.4: EHLO first"),
    (S.READY, "MAIL", S.MAIL, "5321 §4.1.1.2"),
    (S.MAIL, "MAIL", None, "5321 §4.1.4: no nested MAIL"),
    (S.READY, "RCPT", None, "5321 §3.3: RCPT needs MAIL"),
    (S.MAIL, "RCPT", S.RCPT, "5321 §4.1.1.3"),
    (S.RCPT, "RCPT", S.RCPT, "5321 §3.3: many recipients"),
    (S.MAIL, "DATA", None, "5321 §3.3: no valid recipients"),
    (S.RCPT, "DATA", S.DATA, "5321 §4.1.1.4"),
    (S.DATA, "MESSAGE_END", S.READY, "5321 §4.1.1.4: the transaction ends"),
    (S.RCPT, "BDAT", S.BDAT_CHUNK, "3030 §2"),
    (S.BDAT, "BDAT", S.BDAT_CHUNK, "3030 §2"),
    (S.BDAT, "DATA", None, "3030 §2: no DATA in a BDAT transaction"),
    (S.BDAT, "RCPT", None, "3030 §2"),
    (S.BDAT, "VRFY", None, "3030 §2: only BDAT, RSET, QUIT, NOOP, EHLO"),
    (S.BDAT_CHUNK, "CHUNK_END", S.BDAT, "3030 §2"),
    (S.BDAT_CHUNK, "MESSAGE_END", S.READY, "3030 §2: BDAT LAST"),
    (S.RCPT, "RSET", S.READY, "5321 §4.1.1.5"),
    (S.CONNECTED, "RSET", S.CONNECTED, "5321 §4.1.1.5: no EHLO yet"),
    (S.RCPT, "NOOP", S.RCPT, "5321 §4.1.1.9"),
    (S.RCPT, "VRFY", S.RCPT, "5321 §4.1.4: VRFY leaves the transaction alone"),
    (S.MAIL, "QUIT", S.CLOSED, "5321 §4.1.1.10"),
    (S.REFUSED, "QUIT", S.CLOSED, "5321 §3.1: only QUIT after 554"),
    (S.REFUSED, "EHLO", None, "5321 §3.1"),
    (S.READY, "STARTTLS", S.TLS_PENDING, "3207 §4"),
    (S.MAIL, "STARTTLS", None, "3207 §4: not inside a transaction"),
    (S.TLS_PENDING, "TLS_STARTED", S.CONNECTED, "3207 §4.2: EHLO again"),
    (S.READY, "AUTH", S.AUTH, "4954 §4"),
    (S.MAIL, "AUTH", None, "4954 §4: not during a mail transaction"),
    (S.AUTH, "AUTH_END", S.READY, "4954 §4"),
]


@pytest.mark.parametrize(("state", "event", "target", "rule"), RFC_TRANSITIONS)
def test_the_table_says_what_the_rfcs_say(
    state: State, event: str, target: State | None, rule: str
) -> None:
    assert TRANSITIONS[state].get(event) is target, rule
