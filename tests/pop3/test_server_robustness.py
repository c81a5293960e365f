"""Bad input to the POP3 server core: long lines, error bursts, non-UTF-8, any bytes in
any fragments (hypothesis), pipelining independent of fragmentation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents import sasl
from mailagents.pop3 import (
    NEED_DATA,
    Accept,
    AuthenticationFailed,
    CommandRejected,
    LocalProtocolError,
    Quit,
    RemoteProtocolError,
    Response,
    ServerConfig,
    ServerConnection,
    State,
)

from .server_helpers import CHALLENGE, App, logged_in, plain_config, run


@pytest.mark.parametrize("bytewise", [False, True])
def test_line_of_255_octets_with_crlf_is_accepted(bytewise: bool) -> None:
    # RFC 2449 §4: 255 octets including the terminating CRLF.
    name = b"m" * (255 - len(b"USER \r\n"))
    server = ServerConnection(plain_config())
    result = run(b"USER " + name + b"\r\n", server, bytewise=bytewise)
    assert result.out == b"+OK Send PASS\r\n"
    result = run(b"USER " + name + b"m\r\nNOOP\r\n", server, bytewise=bytewise)
    assert result.lines == [b"-ERR Line too long", b"-ERR NOOP only after login"]
    assert result.events[0] == CommandRejected(command="", reply=result.events[0].reply)  # type: ignore[union-attr]


@pytest.mark.parametrize("bytewise", [False, True])
def test_very_long_line_is_discarded_up_to_its_end(bytewise: bool) -> None:
    server = ServerConnection(plain_config())
    data = b"USER " + b"x" * 100_000 + b"\r\nSTLS\r\nQUIT\r\n"
    pieces = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    result = run(data if bytewise else pieces, server, bytewise=bytewise)
    assert result.lines == [b"-ERR Line too long", b"-ERR STLS not available",
                            b"+OK localhost POP3 server signing off"]


def test_long_auth_lines_are_allowed_up_to_max_auth_line() -> None:
    server = ServerConnection(plain_config())
    result = run(b"AUTH PLAIN " + b"A" * 1000 + b"\r\n", server)
    assert result.lines == [b"-ERR [AUTH] Authentication failed"]  # long, but read


@pytest.mark.parametrize("bytewise", [False, True])
def test_ten_errors_in_a_row_end_the_session(bytewise: bool) -> None:
    server = ServerConnection(plain_config())
    result = run(b"BAD\r\n" * 9 + b"NOOP\r\nNOOP\r\n", server, bytewise=bytewise)
    assert result.fatal
    assert result.lines[:9] == [b"-ERR Unknown command"] * 9
    assert result.lines[9] == b"-ERR NOOP only after login; too many errors, closing connection"
    assert len(result.lines) == 10
    assert server.state is State.CLOSED


def test_a_good_command_resets_the_error_count() -> None:
    server = ServerConnection(plain_config())
    result = run((b"BAD\r\n" * 9 + b"CAPA\r\n") * 3, server)
    assert not result.fatal
    assert server.state is State.AUTHORIZATION


def test_max_bad_commands_counts_the_session_total() -> None:
    # Errors interleaved with good commands never reach max_errors (in a row), but the
    # session total does.
    cfg = plain_config(max_errors=3, max_bad_commands=4)
    result = run(b"BAD\r\nCAPA\r\n" * 3 + b"BAD\r\nCAPA\r\n", ServerConnection(cfg))
    assert result.fatal
    lenient = plain_config(max_errors=3, max_bad_commands=100)
    result = run(b"BAD\r\nCAPA\r\n" * 10, ServerConnection(lenient))
    assert not result.fatal


def test_error_count_configurable() -> None:
    result = run(b"BAD\r\nBAD\r\n", ServerConnection(plain_config(max_errors=2)))
    assert result.fatal


@pytest.mark.parametrize(
    "line",
    [b"\xff\xfe", b"US\xc3ER x", b"USER a\x00b", b"USER\ta", b"NOOP\x7f", b"\x80"],
)
def test_non_utf8_and_control_characters(line: bytes) -> None:
    result = run(line + b"\r\nQUIT\r\n", ServerConnection(plain_config()))
    assert result.lines[0].startswith(b"-ERR ")
    assert result.lines[1].startswith(b"+OK")
    assert isinstance(result.events[0], CommandRejected)


@pytest.mark.parametrize(
    "kw",
    [{"max_line": 100}, {"max_errors": 0}, {"max_bad_commands": 0},
     {"hostname": "a b"}, {"hostname": ""},
     {"auth_mechanisms": ("CRAM-MD5",)}, {"auth_mechanisms": ("A B",)}, {"expire": "soon"},
     {"login_delay": -1}, {"implementation": "a\r\nb"}, {"max_auth_line": 200},
     {"max_buffer": 300}],
)
def test_config_validation(kw: dict[str, object]) -> None:
    from mailagents.pop3 import LocalProtocolError

    with pytest.raises(LocalProtocolError):
        ServerConfig(**kw)  # type: ignore[arg-type]


# --- properties -------------------------------------------------------------------

ALPHABET = [b"USER mrose", b"PASS tanstaaf", b"APOP mrose c4c9334bac560ecc979e58001b3e22fb",
            b"STAT", b"LIST", b"LIST 1", b"UIDL", b"UIDL 2", b"RETR 1", b"RETR 2", b"TOP 2 1",
            b"DELE 1", b"RSET", b"NOOP", b"CAPA", b"AUTH PLAIN", b"AG1yb3NlAHRhbnN0YWFm", b"*",
            b"UTF8", b"LIST 9", b"QUIT", b"BAD", b"\xff", b".", b"", b"AUTH", b"x" * 300]


def feed(pieces: list[bytes], server: ServerConnection) -> tuple[bytes, list[str], bool]:
    result = run([p for p in pieces if p], server, App())  # b"" would mean EOF
    return result.out, result.types(), result.fatal


def fragments(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(data[last:point])
        last = point
    pieces.append(data[last:])
    return [p for p in pieces if p]


def new_server() -> ServerConnection:
    return ServerConnection(plain_config(), challenge=CHALLENGE)


@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=30))
def test_any_bytes_in_any_fragments(data: bytes, cuts: list[int]) -> None:
    # Only events, NEED_DATA/PAUSED or RemoteProtocolError: run() lets nothing else by.
    out, _, _ = feed(fragments(data, cuts), new_server())
    assert out == b"" or out.endswith(b"\r\n")


@given(
    st.lists(st.sampled_from(ALPHABET), max_size=40),
    st.lists(st.integers(0, 4000), max_size=30),
    st.sampled_from([b"\r\n", b"\n"]),
)
def test_pipelining_is_independent_of_fragmentation(
    commands: list[bytes], cuts: list[int], ending: bytes
) -> None:
    data = b"".join(c + ending for c in commands)
    whole = feed([data], new_server())
    split = feed(fragments(data, cuts), new_server())
    bytewise = feed([data[i : i + 1] for i in range(len(data))], new_server())
    assert whole == split == bytewise


@given(st.lists(st.sampled_from(ALPHABET), max_size=30), st.binary(max_size=200))
def test_garbage_after_login_never_crashes(commands: list[bytes], tail: bytes) -> None:
    server = logged_in()
    try:
        run(b"".join(c + b"\r\n" for c in commands) + tail, server, App())
        server.receive_data(b"")
        run(b"", server, App())
    except RemoteProtocolError:
        assert server.state is State.CLOSED


def test_a_failed_core_stays_failed() -> None:
    server = ServerConnection(ServerConfig(max_errors=2))
    server.data_to_send()
    server.receive_data(b"BOGUS\r\nBOGUS\r\nNOOP\r\n")
    with pytest.raises(RemoteProtocolError) as first:
        while server.next_event() is not NEED_DATA:
            pass
    assert server.data_to_send().endswith(b"too many errors, closing connection\r\n")
    # Every later call raises the same error; nothing more is answered.
    for call in (server.next_event, lambda: server.receive_data(b"NOOP\r\n"),
                 lambda: server.send(Accept())):
        with pytest.raises(RemoteProtocolError) as again:
            call()
        assert again.value is first.value
    assert server.data_to_send() == b""


# --- the adapter-facing API: at_boundary, refuse, events, temporary ----------------------


def test_at_boundary_before_login_and_after_the_end_only() -> None:
    server = ServerConnection(plain_config())
    assert server.at_boundary  # greeted, AUTHORIZATION
    server.receive_data(b"USER mrose\r\nPASS tanstaaf\r\n")
    assert [type(e) for e in server.events()] == [sasl.NeedCredentials]  # then PAUSED
    assert server.paused and not server.at_boundary  # a decision is awaited
    logged = logged_in()
    assert logged.state is State.TRANSACTION and not logged.at_boundary
    run(b"QUIT\r\n", logged)
    assert logged.state is State.CLOSED and logged.at_boundary


def test_at_boundary_is_false_during_a_sasl_exchange() -> None:
    server = ServerConnection(plain_config())
    run(b"AUTH PLAIN\r\n", server)
    assert server.state is State.AUTH and not server.at_boundary


def test_refuse_replaces_the_greeting_with_a_temporary_error() -> None:
    server = ServerConnection(ServerConfig(hostname="pop.test"))
    server.refuse("Too many connections")
    # RFC 3206 §4: [SYS/TEMP], a problem of the server that may pass.
    assert server.data_to_send() == b"-ERR [SYS/TEMP] pop.test Too many connections\r\n"
    assert server.state is State.CLOSED and server.at_boundary
    server.receive_data(b"USER mrose\r\n")
    assert server.next_event() is NEED_DATA and server.data_to_send() == b""
    greeted = ServerConnection()
    assert greeted.data_to_send().startswith(b"+OK ")
    with pytest.raises(LocalProtocolError):
        greeted.refuse()


def test_events_iterates_until_a_sentinel() -> None:
    server = ServerConnection(plain_config())
    server.receive_data(b"CAPA\r\nNOOP\r\nUSER mrose\r\n")
    assert [type(e) for e in server.events()] == [CommandRejected]  # NOOP; then NEED_DATA
    server.receive_data(b"QUIT\r\n")
    assert [type(e) for e in server.events()] == [Quit]


@pytest.mark.parametrize(
    ("code", "temporary"),
    [
        ("SYS/TEMP", True),  # RFC 3206 §4
        ("SYS/TEMP/DISK", True),  # a sub-level of a temporary code (RFC 2449 §8)
        ("IN-USE", True),  # RFC 2449 §8.1.1
        ("LOGIN-DELAY", True),  # RFC 2449 §8.1.2
        ("SYS/PERM", False),  # RFC 3206 §4
        ("AUTH", False),  # RFC 3206 §5: the credentials
        ("SYSTEM", False),  # not SYS
        (None, False),
    ],
)
def test_failure_events_say_whether_they_are_temporary(code: str | None, temporary: bool) -> None:
    reply = Response(ok=False, code=code, text="no")
    assert AuthenticationFailed(mechanism="USER", reply=reply).temporary is temporary
    assert CommandRejected(command="RETR", reply=reply).temporary is temporary


def test_a_wrong_password_is_a_permanent_failure_event() -> None:
    server = ServerConnection(plain_config())
    result = run(b"USER mrose\r\nPASS wrong\r\n", server, App())
    failed = [e for e in result.events if isinstance(e, AuthenticationFailed)]
    assert len(failed) == 1 and not failed[0].temporary
