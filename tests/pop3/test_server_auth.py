"""AUTHORIZATION state of the POP3 server core: greeting, CAPA, USER/PASS, APOP, AUTH
(RFC 5034), STLS (RFC 2595), UTF8 (RFC 6856), and opening the maildrop."""

from __future__ import annotations

from base64 import b64decode, b64encode

import pytest

from mailagents import sasl
from mailagents.pop3 import (
    NEED_DATA,
    PAUSED,
    Authenticated,
    AuthenticationFailed,
    CommandRejected,
    ConnectionClosed,
    LocalProtocolError,
    Maildrop,
    OpenMaildrop,
    Quit,
    Reject,
    Response,
    ServerConfig,
    ServerConnection,
    StartTLS,
    State,
)

from .server_helpers import CHALLENGE, SCRAM, App, plain_config, run

APOP_DIGEST = b"c4c9334bac560ecc979e58001b3e22fb"  # RFC 1939 §7 example


def b64(data: bytes) -> bytes:
    return b64encode(data)


def test_greeting_without_and_with_challenge() -> None:
    assert ServerConnection().data_to_send() == b"+OK localhost POP3 server ready\r\n"
    server = ServerConnection(
        ServerConfig(hostname="dbc.mtview.ca.us", allow_apop=True), challenge=CHALLENGE
    )
    assert server.data_to_send() == (
        b"+OK dbc.mtview.ca.us POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
    )
    assert server.state is State.AUTHORIZATION
    # Without APOP the timestamp (process id and clock) is not shown.
    server = ServerConnection(ServerConfig(hostname="dbc.mtview.ca.us"), challenge=CHALLENGE)
    assert server.data_to_send() == b"+OK dbc.mtview.ca.us POP3 server ready\r\n"


@pytest.mark.parametrize("bad", ["1896@x", "<a b@c>", "<a\r\n>", "<>", "<a<b>"])
def test_bad_challenge(bad: str) -> None:
    with pytest.raises(LocalProtocolError):
        ServerConnection(challenge=bad)


@pytest.mark.parametrize("bytewise", [False, True])
def test_apop_rfc1939_example(bytewise: bool) -> None:
    server = ServerConnection(plain_config(), challenge=CHALLENGE)
    result = run(b"APOP mrose " + APOP_DIGEST + b"\r\n", server, bytewise=bytewise)
    assert result.out == b"+OK maildrop locked and ready, 2 messages (320 octets)\r\n"
    need = result.events[0]
    assert need == sasl.NeedCredentials(mechanism="APOP", authcid="mrose", authzid=None)
    assert result.events[1:] == [
        OpenMaildrop(identity="mrose", mechanism="APOP"),
        Authenticated(identity="mrose", mechanism="APOP"),
    ]
    assert server.state is State.TRANSACTION and server.identity == "mrose"


def test_apop_upper_case_digest_accepted() -> None:
    server = ServerConnection(plain_config(), challenge=CHALLENGE)
    result = run(b"APOP mrose " + APOP_DIGEST.upper() + b"\r\n", server)
    assert result.out.startswith(b"+OK maildrop")


@pytest.mark.parametrize(
    ("line", "app"),
    [
        (b"APOP mrose " + b"0" * 32, App()),
        (b"APOP other " + APOP_DIGEST, App()),
        (b"APOP mrose " + APOP_DIGEST, App(password="other")),
    ],
)
def test_apop_failures(line: bytes, app: App) -> None:
    server = ServerConnection(plain_config(), challenge=CHALLENGE)
    result = run(line + b"\r\n", server, app)
    assert result.out == b"-ERR [AUTH] Authentication failed\r\n"
    assert isinstance(result.events[-1], AuthenticationFailed)
    assert result.events[-1].mechanism == "APOP"
    assert server.state is State.AUTHORIZATION


def test_apop_with_a_password_verdict_fails() -> None:
    server = ServerConnection(plain_config(), challenge=CHALLENGE)
    server.receive_data(b"APOP mrose " + APOP_DIGEST + b"\r\n")
    assert isinstance(server.next_event(), sasl.NeedCredentials)
    server.send(sasl.PasswordVerdict(valid=True))  # cannot check a digest
    assert isinstance(server.next_event(), AuthenticationFailed)


@pytest.mark.parametrize(
    ("config", "challenge", "line"),
    [
        (plain_config(allow_apop=False), CHALLENGE, b"APOP mrose " + APOP_DIGEST),
        (plain_config(), None, b"APOP mrose " + APOP_DIGEST),
        (plain_config(), CHALLENGE, b"APOP mrose"),
        (plain_config(), CHALLENGE, b"APOP mrose xyz"),
        (plain_config(), CHALLENGE, b"APOP " + APOP_DIGEST),
        (plain_config(), CHALLENGE, b"APOP a b " + APOP_DIGEST),
    ],
)
def test_apop_not_available_or_bad_syntax(
    config: ServerConfig, challenge: str | None, line: bytes
) -> None:
    result = run(line + b"\r\n", ServerConnection(config, challenge=challenge))
    assert result.out.startswith(b"-ERR ")
    assert [type(e) for e in result.events] == [CommandRejected]


@pytest.mark.parametrize("bytewise", [False, True])
def test_user_pass(bytewise: bool) -> None:
    server = ServerConnection(plain_config())
    result = run(b"USER mrose\r\nPASS tanstaaf\r\nSTAT\r\n", server, bytewise=bytewise)
    assert result.lines == [
        b"+OK Send PASS", b"+OK maildrop locked and ready, 2 messages (320 octets)",
        b"+OK 2 320",
    ]
    need = result.events[0]
    assert need == sasl.NeedCredentials(
        mechanism="PLAIN", authcid="mrose", authzid=None, password="tanstaaf"
    )
    assert result.events[1] == OpenMaildrop(identity="mrose", mechanism="USER")


def test_pass_keeps_spaces() -> None:
    app = App(password="tan staaf ")
    result = run(b"USER mrose\r\nPASS tan staaf \r\n", ServerConnection(plain_config()), app)
    assert result.lines[1].startswith(b"+OK maildrop")


@pytest.mark.parametrize(
    ("data", "app"),
    [
        (b"USER mrose\r\nPASS wrong\r\n", App()),
        (b"USER nobody\r\nPASS tanstaaf\r\n", App()),
    ],
)
def test_user_pass_failure(data: bytes, app: App) -> None:
    server = ServerConnection(plain_config())
    result = run(data + b"STAT\r\nUSER mrose\r\nPASS tanstaaf\r\n", server, app)
    assert result.lines[1] == b"-ERR [AUTH] Authentication failed"
    assert result.lines[2].startswith(b"-ERR ")  # STAT before login
    assert result.lines[4].startswith(b"+OK maildrop")
    failed = [e for e in result.events if isinstance(e, AuthenticationFailed)]
    assert failed == [AuthenticationFailed(mechanism="USER", reply=Response(
        ok=False, code="AUTH", text="Authentication failed"))]


def test_credentials_rejected_temporarily() -> None:
    reject = Reject(reply=Response(ok=False, code="SYS/TEMP", text="user store down"))
    result = run(b"USER mrose\r\nPASS tanstaaf\r\n", ServerConnection(plain_config()),
                 App(credentials_reject=reject))
    assert result.lines[1] == b"-ERR [SYS/TEMP] user store down"
    assert isinstance(result.events[-1], AuthenticationFailed)


@pytest.mark.parametrize(
    "data",
    [
        b"PASS tanstaaf\r\n",  # no USER
        b"USER mrose\r\nNOOP\r\nPASS tanstaaf\r\n",  # not immediately after USER
        b"USER mrose\r\nPASS\r\n",
        b"USER\r\n",
        b"USER  \r\n",
        "USER m\u00f6se\r\n".encode(),  # UTF-8 before UTF8
    ],
)
def test_user_pass_sequence_and_syntax(data: bytes) -> None:
    result = run(data, ServerConnection(plain_config()))
    assert result.lines[-1].startswith(b"-ERR ")
    assert isinstance(result.events[-1], CommandRejected)
    assert not any(isinstance(e, sasl.NeedCredentials) for e in result.events)


def test_utf8_then_utf8_user() -> None:
    app = App(user="m\u00f6se", password="p\u00e4ss")
    data = "UTF8\r\nUSER m\u00f6se\r\nPASS p\u00e4ss\r\n".encode()
    server = ServerConnection(plain_config())
    result = run(data, server, app)
    assert result.lines[0] == b"+OK UTF8 enabled"
    assert result.lines[2].startswith(b"+OK maildrop")
    assert server.utf8 and server.identity == "m\u00f6se"


def test_utf8_not_offered() -> None:
    result = run(b"UTF8\r\nUTF8 x\r\n", ServerConnection(plain_config(utf8=False)))
    assert result.lines == [b"-ERR UTF8 not available", b"-ERR UTF8 not available"]
    result = run(b"UTF8 x\r\n", ServerConnection(plain_config()))
    assert result.lines == [b"-ERR UTF8 takes no arguments"]


@pytest.mark.parametrize("verb", [b"USER mrose", b"PASS x", b"AUTH PLAIN", b"AUTH LOGIN"])
def test_clear_text_login_needs_tls(verb: bytes) -> None:
    server = ServerConnection(ServerConfig(auth_mechanisms=("PLAIN", "LOGIN", "SCRAM-SHA-256")))
    result = run(verb + b"\r\n", server)
    assert result.out.startswith(b"-ERR [AUTH] ")
    assert b"TLS" in result.out


def test_clear_text_login_over_implicit_tls() -> None:
    server = ServerConnection(ServerConfig(tls_active=True))
    result = run(b"USER mrose\r\nPASS tanstaaf\r\n", server)
    assert result.lines[1].startswith(b"+OK maildrop")
    assert server.tls_active


def auth_plain_message(user: str = "mrose", password: str = "tanstaaf") -> bytes:
    return b64(b"\x00" + user.encode() + b"\x00" + password.encode())


@pytest.mark.parametrize("bytewise", [False, True])
def test_auth_plain_with_initial_response(bytewise: bool) -> None:
    server = ServerConnection(plain_config())
    result = run(b"AUTH PLAIN " + auth_plain_message() + b"\r\n", server, bytewise=bytewise)
    assert result.lines == [b"+OK maildrop locked and ready, 2 messages (320 octets)"]
    assert result.events[1] == OpenMaildrop(identity="mrose", mechanism="PLAIN")


@pytest.mark.parametrize("bytewise", [False, True])
def test_auth_plain_without_initial_response(bytewise: bool) -> None:
    server = ServerConnection(plain_config())
    result = run(b"auth plain\r\n" + auth_plain_message() + b"\r\n", server, bytewise=bytewise)
    assert result.lines == [b"+ ", b"+OK maildrop locked and ready, 2 messages (320 octets)"]


def test_auth_plain_empty_initial_response() -> None:
    # RFC 5034 §4: "=" is an empty initial response; PLAIN then fails (no message).
    result = run(b"AUTH PLAIN =\r\n", ServerConnection(plain_config()))
    assert result.lines == [b"-ERR [AUTH] Authentication failed"]


@pytest.mark.parametrize(
    ("data", "last"),
    [
        (b"AUTH PLAIN\r\n*\r\n", b"-ERR Authentication cancelled"),
        (b"AUTH PLAIN\r\n!!!\r\n", b"-ERR Invalid base64 in response"),
        (b"AUTH PLAIN\r\n" + b"A" * 13000 + b"\r\n", b"-ERR Line too long"),
        (b"AUTH PLAIN " + auth_plain_message(password="bad") + b"\r\n",
         b"-ERR [AUTH] Authentication failed"),
    ],
)
def test_auth_failures_return_to_authorization(data: bytes, last: bytes) -> None:
    server = ServerConnection(plain_config())
    result = run(data + b"NOOP\r\n", server)
    assert last in result.lines
    assert result.lines[-1] == b"-ERR NOOP only after login"
    assert any(isinstance(e, AuthenticationFailed) for e in result.events)
    assert server.state is State.AUTHORIZATION


@pytest.mark.parametrize(
    "line",
    [b"AUTH FOO", b"AUTH PLAIN !!!", b"AUTH PLAIN a b", b"AUTH CRAM-MD5"],
)
def test_auth_command_rejected(line: bytes) -> None:
    result = run(line + b"\r\n", ServerConnection(plain_config()))
    assert result.out.startswith(b"-ERR ")
    assert [type(e) for e in result.events] == [CommandRejected]


def test_auth_without_argument_lists_mechanisms() -> None:
    result = run(b"AUTH\r\n", ServerConnection(plain_config()))
    assert result.out == b"+OK Mechanisms follow\r\nPLAIN\r\nSCRAM-SHA-256\r\n.\r\n"
    result = run(b"AUTH\r\n", ServerConnection(ServerConfig()))
    assert result.out == b"+OK Mechanisms follow\r\nSCRAM-SHA-256\r\n.\r\n"


def scram_dialogue(server: ServerConnection, client: sasl.ClientMechanism) -> list[object]:
    """Drive AUTH SCRAM-SHA-256 between the core and the sasl client mechanism."""
    app = App()
    server.data_to_send()  # the greeting
    first = client.initial_response()
    assert first is not None
    server.receive_data(b"AUTH SCRAM-SHA-256 " + b64(first) + b"\r\n")
    events: list[object] = []
    for _ in range(10):
        while True:
            event = server.next_event()
            if event is NEED_DATA or event is PAUSED:
                break
            events.append(event)
            for decision in app(server, event) or ():
                server.send(decision)
        out = server.data_to_send()
        if not out.startswith(b"+ "):
            events.append(out)
            return events
        challenge = b64decode(out[2:-2])
        if client.done or b"v=" in challenge:
            client.verify_success(challenge)
            server.receive_data(b"\r\n")
        else:
            server.receive_data(b64(client.respond(challenge)) + b"\r\n")
    raise AssertionError("no end")


def test_scram_sha_256_end_to_end() -> None:
    server = ServerConnection(ServerConfig())  # no TLS: SCRAM is still offered
    events = scram_dialogue(server, sasl.ScramSha256Client("mrose", "tanstaaf"))
    assert events[-1] == b"+OK maildrop locked and ready, 2 messages (320 octets)\r\n"
    assert OpenMaildrop(identity="mrose", mechanism="SCRAM-SHA-256") in events
    assert server.state is State.TRANSACTION


def test_scram_wrong_password() -> None:
    server = ServerConnection(ServerConfig())
    events = scram_dialogue(server, sasl.ScramSha256Client("mrose", "wrong"))
    assert events[-1] == b"-ERR [AUTH] Authentication failed\r\n"
    assert server.state is State.AUTHORIZATION


def test_scram_final_data_answered_with_non_empty_line_fails() -> None:
    server = ServerConnection(ServerConfig())
    client = sasl.ScramSha256Client("mrose", "tanstaaf")
    first = client.initial_response()
    assert first is not None
    server.data_to_send()
    server.receive_data(b"AUTH SCRAM-SHA-256 " + b64(first) + b"\r\n")
    assert isinstance(server.next_event(), sasl.NeedCredentials)
    server.send(SCRAM)
    assert server.next_event() is NEED_DATA
    out = server.data_to_send()
    server.receive_data(b64(client.respond(b64decode(out[2:-2]))) + b"\r\n")
    events = []
    while (event := server.next_event()) not in (NEED_DATA, PAUSED):
        events.append(event)
        for decision in App()(server, event) or ():
            server.send(decision)
    assert server.data_to_send().startswith(b"+ ")  # v=... as a challenge
    result = run(b"Zm9v\r\n", server)
    assert result.out == b"-ERR [AUTH] Authentication failed\r\n"


def test_cram_md5_legacy() -> None:
    cfg = plain_config(auth_mechanisms=("CRAM-MD5",), allow_legacy_auth=True)
    server = ServerConnection(cfg)
    server.data_to_send()
    client = sasl.CramMd5Client("mrose", "tanstaaf")
    server.receive_data(b"AUTH CRAM-MD5\r\n")
    assert server.next_event() is NEED_DATA
    out = server.data_to_send()
    assert out.startswith(b"+ ")
    server.receive_data(b64(client.respond(b64decode(out[2:-2]))) + b"\r\n")
    need = server.next_event()
    assert isinstance(need, sasl.NeedCredentials) and need.mechanism == "CRAM-MD5"
    server.send(sasl.LegacySecret(secret="tanstaaf"))
    assert isinstance(server.next_event(), OpenMaildrop)


def test_wrong_answer_type_is_local_error() -> None:
    server = ServerConnection(plain_config())
    server.receive_data(b"USER mrose\r\nPASS x\r\n")
    assert isinstance(server.next_event(), sasl.NeedCredentials)
    with pytest.raises(LocalProtocolError):
        server.send(Maildrop(messages=()))
    with pytest.raises(LocalProtocolError):
        server.send(sasl.LegacySecret(secret="x"))  # PLAIN cannot use it
    server.send(sasl.PasswordVerdict(valid=True))
    assert isinstance(server.next_event(), OpenMaildrop)
    with pytest.raises(LocalProtocolError):
        server.send(sasl.PasswordVerdict(valid=True))


def test_send_without_pending_event() -> None:
    with pytest.raises(LocalProtocolError):
        ServerConnection().send(Maildrop(messages=()))


@pytest.mark.parametrize("code", ["IN-USE", "LOGIN-DELAY", "SYS/TEMP", "SYS/PERM"])
def test_open_maildrop_rejected(code: str) -> None:
    reject = Reject(reply=Response(ok=False, code=code, text="maildrop busy"))
    server = ServerConnection(plain_config())
    result = run(b"USER mrose\r\nPASS tanstaaf\r\nSTAT\r\n", server, App(open_reject=reject))
    assert result.lines[1] == f"-ERR [{code}] maildrop busy".encode()
    assert result.lines[2].startswith(b"-ERR ")
    assert not any(isinstance(e, AuthenticationFailed | Authenticated) for e in result.events)
    assert server.state is State.AUTHORIZATION and server.identity is None
    # and the client may try again
    result = run(b"USER mrose\r\nPASS tanstaaf\r\n", server)
    assert result.lines[1].startswith(b"+OK maildrop")


def test_quit_in_authorization() -> None:
    server = ServerConnection(plain_config())
    result = run(b"QUIT\r\nNOOP\r\n", server)
    assert result.out == b"+OK localhost POP3 server signing off\r\n"
    assert result.events == [Quit()]
    assert server.state is State.CLOSED
    run(b"", server)
    assert server.next_event() is NEED_DATA


def test_peer_close_in_authorization() -> None:
    server = ServerConnection(plain_config())
    result = run([b"USER mrose\r\n", b""], server)
    assert result.events == [ConnectionClosed()]


# --- CAPA ------------------------------------------------------------------------


def capa(server: ServerConnection) -> list[bytes]:
    result = run(b"CAPA\r\n", server)
    assert result.lines[0] == b"+OK Capability list follows"
    assert result.lines[-1] == b"."
    return result.lines[1:-1]


def test_capa_default_without_tls() -> None:
    cfg = ServerConfig(tls_available=True)
    assert capa(ServerConnection(cfg)) == [
        b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING",
        b"SASL SCRAM-SHA-256", b"STLS", b"UTF8",
    ]


def test_capa_everything() -> None:
    cfg = ServerConfig(tls_active=True, tls_available=True, expire="never", login_delay=900,
                       implementation=".mailagents", auth_mechanisms=("PLAIN", "SCRAM-SHA-256"))
    assert capa(ServerConnection(cfg)) == [
        b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING", b"USER",
        b"SASL PLAIN SCRAM-SHA-256", b"EXPIRE NEVER", b"LOGIN-DELAY 900", b"UTF8 USER",
        b"IMPLEMENTATION .mailagents",
    ]


def test_capa_in_transaction() -> None:
    from .server_helpers import logged_in

    server = logged_in(tls_available=True, expire="31")
    assert capa(server) == [
        b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING", b"EXPIRE 31",
        b"UTF8",
    ]


def test_capa_takes_no_arguments() -> None:
    assert run(b"CAPA x\r\n", ServerConnection()).out == b"-ERR CAPA takes no arguments\r\n"


# --- STLS ------------------------------------------------------------------------


@pytest.mark.parametrize("bytewise", [False, True])
def test_stls_injection_is_discarded(bytewise: bool) -> None:
    server = ServerConnection(ServerConfig(tls_available=True, allow_plaintext_login=True))
    data = b"STLS\r\nUSER mrose\r\nPASS tanstaaf\r\n"
    if bytewise:
        # one byte at a time: everything after STLS arrives while TLS is pending
        server.data_to_send()
        server.receive_data(b"STLS\r\n")
        assert server.next_event() == StartTLS()
        with pytest.raises(LocalProtocolError):
            server.receive_data(data[6:7])
    else:
        result = run(data, server)
        assert result.events == [StartTLS()]
        assert result.out == b"+OK Begin TLS negotiation\r\n"
    assert server.state is State.TLS_PENDING
    assert server.next_event() is NEED_DATA
    server.tls_started()
    assert server.tls_active and server.state is State.AUTHORIZATION
    assert server.data_to_send() in (b"", b"+OK Begin TLS negotiation\r\n")
    assert server.next_event() is NEED_DATA  # the injected commands were not executed
    assert b"STLS" not in b"".join(capa(server))
    result = run(b"STLS\r\nUSER mrose\r\nPASS tanstaaf\r\n", server)
    assert result.lines[0] == b"-ERR Already using TLS"
    assert result.lines[2].startswith(b"+OK maildrop")


def test_stls_not_available_and_misuse() -> None:
    assert run(b"STLS\r\n", ServerConnection()).out == b"-ERR STLS not available\r\n"
    server = ServerConnection(ServerConfig(tls_available=True))
    assert run(b"STLS x\r\n", server).out == b"-ERR STLS takes no arguments\r\n"
    with pytest.raises(LocalProtocolError):
        server.tls_started()


def test_stls_then_peer_close() -> None:
    server = ServerConnection(ServerConfig(tls_available=True))
    run(b"STLS\r\n", server)
    server.receive_data(b"")
    assert server.next_event() == ConnectionClosed()


def test_stls_after_login_is_out_of_sequence() -> None:
    from .server_helpers import logged_in

    server = logged_in(tls_available=True)
    assert run(b"STLS\r\n", server).out == b"-ERR STLS not allowed after login\r\n"


def test_mechanism_unknown_to_sasl() -> None:
    result = run(b"AUTH X-FOO\r\n", ServerConnection(plain_config(auth_mechanisms=("X-FOO",))))
    assert result.out == b"-ERR Unrecognized authentication mechanism\r\n"


def test_apop_non_ascii_name_needs_utf8() -> None:
    server = ServerConnection(plain_config(), challenge=CHALLENGE)
    result = run("APOP m\u00f6se ".encode() + APOP_DIGEST + b"\r\n", server)
    assert result.lines == [b"-ERR Non-ASCII name: send UTF8 first"]


def test_too_long_line_between_user_and_pass() -> None:
    server = ServerConnection(plain_config())
    result = run(b"USER mrose\r\n" + b"x" * 300 + b"\r\nPASS tanstaaf\r\n", server)
    assert result.lines == [b"+OK Send PASS", b"-ERR Line too long", b"-ERR Send USER first"]
