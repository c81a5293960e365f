"""OAUTHBEARER (RFC 7628): server and client, in memory and alone."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents.sasl import (
    CLIENT_MECHANISMS,
    SERVER_MECHANISMS,
    Answer,
    AuthenticationError,
    Challenge,
    Failure,
    LegacySecret,
    LocalProtocolError,
    NeedCredentials,
    NeedTokenCheck,
    NoSuchUser,
    OAuthBearerClient,
    OAuthBearerServer,
    PasswordVerdict,
    ServerStep,
    Success,
    TokenVerdict,
    scram_secrets,
    server_mechanism,
)

# RFC 7628 §4.1, the IMAP example: the initial client response as it appears there.
RFC_INITIAL_B64 = (
    "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVy"
    "IHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
)
RFC_TOKEN = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
# RFC 7628 §4.3 (and §3.2.2): the error the server sends when the token is refused.
RFC_ERROR_B64 = (
    "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZpZ3Vy"
    "YXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9uIn0="
)
DEFAULT_ERROR = b'{"status":"invalid_token"}'

TOKENS = {RFC_TOKEN: "user@example.com", "good-token": "tim"}


def token_check(error_json: bytes | None = None) -> Callable[[NeedCredentials], Answer]:
    def check(need: NeedCredentials) -> Answer:
        assert isinstance(need, NeedTokenCheck)
        assert need.mechanism == "OAUTHBEARER"
        identity = TOKENS.get(need.token)
        if identity is None:
            return TokenVerdict(valid=False, error_json=error_json)
        return TokenVerdict(valid=True, identity=identity)

    return check


def drive(
    client: OAuthBearerClient,
    server: OAuthBearerServer,
    lookup: Callable[[NeedCredentials], Answer],
    *,
    initial: bool = True,
) -> tuple[ServerStep, list[bytes]]:
    """Run the exchange; return the last step and the challenges the server sent."""
    challenges: list[bytes] = []
    step = server.start(client.initial_response() if initial else None)
    while True:
        if isinstance(step, Challenge):
            challenges.append(step.data)
            step = server.receive(client.respond(step.data))
        elif isinstance(step, NeedCredentials):
            step = server.provide(lookup(step))
        else:
            break
    if isinstance(step, Success):
        client.verify_success(step.final_data)
    return step, challenges


# --------------------------------------------------------------------------- wire


def test_rfc_7628_example_initial_response() -> None:
    expected = base64.b64decode(RFC_INITIAL_B64)
    assert expected == (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
        b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
    )
    client = OAuthBearerClient(
        RFC_TOKEN, authzid="user@example.com", host="server.example.com", port=143
    )
    assert client.initial_response() == expected
    assert OAuthBearerServer().start(expected) == NeedTokenCheck(
        mechanism="OAUTHBEARER",
        authzid="user@example.com",
        token=RFC_TOKEN,
        host="server.example.com",
        port=143,
    )


def test_minimal_initial_response() -> None:
    assert OAuthBearerClient("abc").initial_response() == b"n,,\x01auth=Bearer abc\x01\x01"
    assert OAuthBearerServer().start(b"n,,\x01auth=Bearer abc\x01\x01") == NeedTokenCheck(
        mechanism="OAUTHBEARER", authzid=None, token="abc", host=None, port=None
    )


def test_rfc_7628_example_error_exchange() -> None:
    error = base64.b64decode(RFC_ERROR_B64)
    assert error.startswith(b'{"status":"invalid_token",')
    server = OAuthBearerServer()
    server.start(b"n,,\x01auth=Bearer expired\x01\x01")
    step = server.provide(TokenVerdict(valid=False, error_json=error))
    assert step == Challenge(data=error)
    client = OAuthBearerClient("expired")
    client.initial_response()
    assert client.respond(error) == b"\x01"
    assert client.error == error
    final = server.receive(b"\x01")
    assert final == Failure(reason="OAUTHBEARER: invalid token")


def test_the_default_error_challenge() -> None:
    server = OAuthBearerServer()
    server.start(b"n,,\x01auth=Bearer expired\x01\x01")
    assert server.provide(TokenVerdict(valid=False)) == Challenge(data=DEFAULT_ERROR)


# --------------------------------------------------------------------------- both


@pytest.mark.parametrize("initial", [True, False])
def test_success(initial: bool) -> None:
    client = OAuthBearerClient("good-token", host="mx.example.test", port=587)
    step, challenges = drive(client, OAuthBearerServer(), token_check(), initial=initial)
    assert step == Success(identity="tim", authcid="tim", final_data=None)
    assert challenges == ([] if initial else [b""])
    assert client.done
    assert client.error is None


@pytest.mark.parametrize("initial", [True, False])
def test_invalid_token(initial: bool) -> None:
    client = OAuthBearerClient("bad-token")
    step, challenges = drive(client, OAuthBearerServer(), token_check(), initial=initial)
    assert isinstance(step, Failure)
    assert challenges[-1] == DEFAULT_ERROR
    assert client.error == DEFAULT_ERROR
    with pytest.raises(AuthenticationError):
        client.verify_success(None)  # a server claiming success after the error


def test_invalid_token_with_configured_error() -> None:
    error = base64.b64decode(RFC_ERROR_B64)
    client = OAuthBearerClient("bad-token")
    step, challenges = drive(client, OAuthBearerServer(), token_check(error))
    assert isinstance(step, Failure)
    assert challenges == [error]
    assert client.error == error


def test_authzid_equal_to_the_token_identity() -> None:
    step, _ = drive(
        OAuthBearerClient("good-token", authzid="tim"), OAuthBearerServer(), token_check()
    )
    assert step == Success(identity="tim", authcid="tim")


def test_authzid_of_someone_else_fails() -> None:
    client = OAuthBearerClient("good-token", authzid="root")
    step, challenges = drive(client, OAuthBearerServer(), token_check())
    assert isinstance(step, Failure)
    assert "may not act as" in step.reason
    assert challenges == [DEFAULT_ERROR]


def test_authzid_escaping() -> None:
    client = OAuthBearerClient("t", authzid="a,b=c")
    message = client.initial_response()
    assert message.startswith(b"n,a=a=2Cb=3Dc,\x01")
    step = OAuthBearerServer().start(message)
    assert isinstance(step, NeedTokenCheck)
    assert step.authzid == "a,b=c"


def test_utf8_authzid() -> None:
    message = OAuthBearerClient("t", authzid="j\u00fcrgen").initial_response()
    assert message.startswith("n,a=j\u00fcrgen,".encode())
    step = OAuthBearerServer().start(message)
    assert isinstance(step, NeedTokenCheck)
    assert step.authzid == "j\u00fcrgen"


@pytest.mark.parametrize(
    "answer",
    [
        NoSuchUser(),
        PasswordVerdict(valid=True),
        scram_secrets("x", salt=b"s"),
        LegacySecret(secret="x"),
    ],
)
def test_a_caller_that_does_not_know_token_checks_fails_safely(answer: Answer) -> None:
    step, challenges = drive(OAuthBearerClient("good-token"), OAuthBearerServer(), lambda n: answer)
    assert isinstance(step, Failure)
    assert challenges == [DEFAULT_ERROR]


def test_need_token_check_is_a_need_credentials() -> None:
    # So that a protocol core written for NeedCredentials forwards it unchanged.
    need = NeedTokenCheck(mechanism="OAUTHBEARER", authzid=None, token="t", host=None, port=None)
    assert isinstance(need, NeedCredentials)
    assert need.authcid == ""
    assert need.password is None
    assert dataclasses.is_dataclass(need)
    assert NeedTokenCheck.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert "__slots__" in NeedTokenCheck.__dict__
    with pytest.raises(dataclasses.FrozenInstanceError):
        need.token = "u"  # type: ignore[misc]
    with pytest.raises(TypeError):
        NeedTokenCheck("OAUTHBEARER", "", None, None, "t")  # type: ignore[misc]


# --------------------------------------------------------------------------- server


def test_discovery_request_gets_the_error() -> None:
    # An empty auth= asks for the server's OAuth configuration (RFC 7628 §4.3-4.4).
    server = OAuthBearerServer()
    assert server.start(b"n,,\x01auth=\x01\x01") == Challenge(data=DEFAULT_ERROR)
    step = server.receive(b"\x01")
    assert isinstance(step, Failure)


def test_a_bad_dummy_response_fails_too() -> None:
    server = OAuthBearerServer()
    server.start(b"n,,\x01auth=Bearer x\x01\x01")
    server.provide(TokenVerdict(valid=False))
    step = server.receive(b"n,,\x01auth=Bearer y\x01\x01")
    assert isinstance(step, Failure)
    assert "malformed response to the error" in step.reason
    with pytest.raises(LocalProtocolError):
        server.receive(b"\x01")


@pytest.mark.parametrize(
    ("message", "token", "host", "port"),
    [
        (b"y,,\x01auth=Bearer t\x01\x01", "t", None, None),  # "y" is accepted
        (b"n,,\x01auth=bearer t\x01\x01", "t", None, None),  # scheme case-insensitive
        (b"n,,\x01auth=BEARER   t\x01\x01", "t", None, None),  # 1*SP
        (b"n,,\x01auth=Bearer a-._~+/9==\x01\x01", "a-._~+/9==", None, None),
        (b"n,,\x01foo=bar baz\x01auth=Bearer t\x01qux=\x01\x01", "t", None, None),  # unknown
        (b"n,,\x01port=0\x01auth=Bearer t\x01host=h\x01\x01", "t", "h", 0),  # any order
        (b"n,,\x01port=65535\x01auth=Bearer t\x01\x01", "t", None, 65535),
        (b"n,,\x01host=a b\tc\x01auth=Bearer t\x01\x01", "t", "a b\tc", None),
    ],
)
def test_well_formed_variants(
    message: bytes, token: str, host: str | None, port: int | None
) -> None:
    step = OAuthBearerServer().start(message)
    assert step == NeedTokenCheck(
        mechanism="OAUTHBEARER", authzid=None, token=token, host=host, port=port
    )


MALFORMED = [
    b"",
    b"\x01",  # the dummy response, as a first message
    b"n,,",
    b"n,,\x01",
    b"n,,\x01\x01",  # no auth
    b"n,,auth=Bearer t\x01\x01",  # no kvsep after the GS2 header
    b"n,,\x01auth=Bearer t\x01",  # no final kvsep
    b"n,,\x01auth=Bearer t",
    b"n,,\x01auth=Bearer t\x01\x01x",  # data after the end
    b"n,,\x01auth=Bearer t\x01\x01\x01",
    b"n,,\x01\x01auth=Bearer t\x01\x01",  # the list ends before auth
    b"n,,\x01host=h\x01\x01auth=Bearer t\x01\x01",
    b"p=tls-unique,,\x01auth=Bearer t\x01\x01",  # channel binding
    b"F,n,,\x01auth=Bearer t\x01\x01",  # GS2 non-standard flag
    b"x,,\x01auth=Bearer t\x01\x01",
    b"n\x01auth=Bearer t\x01\x01",
    b"n,a=user",  # GS2 header not terminated
    b"n,b=user,\x01auth=Bearer t\x01\x01",
    b"n,a=,\x01auth=Bearer t\x01\x01",  # empty authzid
    b"n,a=a=3Fb,\x01auth=Bearer t\x01\x01",  # bad escape
    b"n,a=a=,\x01auth=Bearer t\x01\x01",
    b"n,a=\x00,\x01auth=Bearer t\x01\x01",
    b"n,,\x01auth=Bearer t\x01auth=Bearer u\x01\x01",  # auth twice
    b"n,,\x01host=a\x01host=b\x01auth=Bearer t\x01\x01",
    b"n,,\x01port=1\x01port=1\x01auth=Bearer t\x01\x01",
    b"n,,\x01port=\x01auth=Bearer t\x01\x01",
    b"n,,\x01port=abc\x01auth=Bearer t\x01\x01",
    b"n,,\x01port=65536\x01auth=Bearer t\x01\x01",
    b"n,,\x01port=123456\x01auth=Bearer t\x01\x01",
    b"n,,\x01port=-1\x01auth=Bearer t\x01\x01",
    b"n,,\x01k1=v\x01auth=Bearer t\x01\x01",  # key not ALPHA
    b"n,,\x01=v\x01auth=Bearer t\x01\x01",  # empty key
    b"n,,\x01novalue\x01auth=Bearer t\x01\x01",
    b"n,,\x01host=\x00\x01auth=Bearer t\x01\x01",  # value outside VCHAR/SP/HTAB/CR/LF
    b"n,,\x01host=\x7f\x01auth=Bearer t\x01\x01",
    b"n,,\x01host=\xc3\xa9\x01auth=Bearer t\x01\x01",
    b"n,,\x01host=\xff\x01auth=Bearer t\x01\x01",  # invalid UTF-8
    b"n,,\x01auth=Basic dXNlcjpwdw==\x01\x01",  # not Bearer
    b"n,,\x01auth=Bearer\x01\x01",
    b"n,,\x01auth=Bearer \x01\x01",
    b"n,,\x01auth=Bearert\x01\x01",
    b"n,,\x01auth=Bearer a b\x01\x01",
    b"n,,\x01auth=Bearer a=b\x01\x01",
    b"n,,\x01auth=Bearer t \x01\x01",
    b"n,,\x01auth= Bearer t\x01\x01",
    b"n,,\x01auth=Bearer\tt\x01\x01",
]


@pytest.mark.parametrize("message", MALFORMED)
@pytest.mark.parametrize("initial", [True, False])
def test_malformed_messages_fail(message: bytes, initial: bool) -> None:
    server = OAuthBearerServer()
    if initial:
        step = server.start(message)
    else:
        assert server.start(None) == Challenge(data=b"")
        step = server.receive(message)
    assert isinstance(step, Failure)
    assert step.reason.startswith("OAUTHBEARER: ")
    with pytest.raises(LocalProtocolError):
        server.receive(b"\x01")


def test_server_out_of_turn() -> None:
    server = OAuthBearerServer()
    with pytest.raises(LocalProtocolError):
        server.receive(b"\x01")
    with pytest.raises(LocalProtocolError):
        server.provide(TokenVerdict(valid=True, identity="tim"))
    server.start(None)
    with pytest.raises(LocalProtocolError):
        server.start(None)
    with pytest.raises(LocalProtocolError):
        server.provide(TokenVerdict(valid=True, identity="tim"))
    server.receive(b"n,,\x01auth=Bearer t\x01\x01")
    with pytest.raises(LocalProtocolError):
        server.receive(b"\x01")
    with pytest.raises(LocalProtocolError):
        server.provide("yes")  # type: ignore[arg-type]
    assert server.provide(TokenVerdict(valid=True, identity="tim")) == Success(
        identity="tim", authcid="tim"
    )
    with pytest.raises(LocalProtocolError):
        server.receive(b"\x01")
    with pytest.raises(LocalProtocolError):
        server.provide(TokenVerdict(valid=True, identity="tim"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"valid": True},
        {"valid": True, "identity": ""},
        {"valid": True, "identity": "tim", "error_json": DEFAULT_ERROR},
        {"valid": False, "error_json": b""},
        {"valid": False, "error_json": b"not json"},
        {"valid": False, "error_json": b"[1]"},
        {"valid": False, "error_json": b"{}"},
        {"valid": False, "error_json": b'{"status": 1}'},
        {"valid": False, "error_json": b"\xff"},
    ],
)
def test_token_verdict_refuses_inconsistent_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        TokenVerdict(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- client


@pytest.mark.parametrize(
    "kwargs",
    [
        {"token": ""},
        {"token": "a b"},
        {"token": "a\x01"},
        {"token": "=abc"},
        {"token": "t\u00e9"},
        {"token": "t", "authzid": ""},
        {"token": "t", "authzid": "a\x00"},
        {"token": "t", "host": ""},
        {"token": "t", "host": "a\x01b"},
        {"token": "t", "host": "h\u00e9"},
        {"token": "t", "port": -1},
        {"token": "t", "port": 65536},
        {"token": "t", "port": True},
        {"token": "t", "port": "25"},
    ],
)
def test_client_refuses_values_it_cannot_send(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        OAuthBearerClient(**kwargs)  # type: ignore[arg-type]


def test_client_without_initial_response() -> None:
    client = OAuthBearerClient("t")
    assert not client.done
    assert client.respond(b"") == b"n,,\x01auth=Bearer t\x01\x01"
    assert client.done
    client.verify_success(None)
    with pytest.raises(LocalProtocolError):
        client.initial_response()


def test_client_server_errors() -> None:
    with pytest.raises(AuthenticationError):
        OAuthBearerClient("t").respond(b"not empty")
    client = OAuthBearerClient("t")
    with pytest.raises(AuthenticationError):
        client.verify_success(None)  # success before the token was sent
    client.initial_response()
    with pytest.raises(AuthenticationError):
        client.verify_success(b"data")
    assert client.respond(b"whatever the server says") == b"\x01"
    with pytest.raises(AuthenticationError):
        client.respond(DEFAULT_ERROR)  # a second error
    with pytest.raises(AuthenticationError):
        client.verify_success(None)


# --------------------------------------------------------------------------- registry


def test_registered() -> None:
    assert SERVER_MECHANISMS["OAUTHBEARER"] is OAuthBearerServer
    assert CLIENT_MECHANISMS["OAUTHBEARER"] is OAuthBearerClient
    assert type(server_mechanism("oauthbearer")) is OAuthBearerServer


# --------------------------------------------------------------------------- properties


def _finish(server: OAuthBearerServer, step: ServerStep, dummy: bytes) -> None:
    if isinstance(step, NeedTokenCheck):
        step = server.provide(TokenVerdict(valid=False))
    if isinstance(step, Challenge):
        step = server.receive(dummy)
    assert isinstance(step, Failure)


@given(st.binary(max_size=400), st.binary(max_size=10))
def test_any_initial_response_is_a_step(data: bytes, dummy: bytes) -> None:
    server = OAuthBearerServer()
    _finish(server, server.start(data), dummy)


@given(st.binary(max_size=400), st.binary(max_size=10))
def test_any_response_is_a_step(data: bytes, dummy: bytes) -> None:
    server = OAuthBearerServer()
    server.start(None)
    _finish(server, server.receive(data), dummy)


_PIECES = st.sampled_from(
    [
        b"n,",
        b"y,",
        b"p=x,",
        b"a=u",
        b",",
        b"\x01",
        b"auth=",
        b"Bearer ",
        b"t0k",
        b"host=",
        b"port=",
        b"143",
        b"=",
        b"=2C",
        b" ",
        b"\x00",
        b"\xc3\xa9",
    ]
)


@given(st.lists(_PIECES, max_size=14).map(b"".join), st.binary(max_size=4))
def test_near_miss_messages_are_steps(data: bytes, dummy: bytes) -> None:
    server = OAuthBearerServer()
    _finish(server, server.start(data), dummy)


@given(st.lists(st.binary(max_size=200), max_size=4), st.booleans())
def test_client_on_arbitrary_challenges(challenges: list[bytes], initial: bool) -> None:
    client = OAuthBearerClient("t")
    if initial:
        client.initial_response()
    for challenge in challenges:
        try:
            assert isinstance(client.respond(challenge), bytes)
        except AuthenticationError:
            break


@given(
    token=st.from_regex(r"[A-Za-z0-9\-._~+/]{1,40}={0,2}", fullmatch=True),
    authzid=st.none() | st.text(min_size=1, max_size=30).filter(lambda s: "\x00" not in s),
    host=st.none() | st.from_regex(r"[\x21-\x7e][\x20-\x7e]{0,30}", fullmatch=True),
    port=st.none() | st.integers(0, 65535),
)
def test_client_server_round_trip(
    token: str, authzid: str | None, host: str | None, port: int | None
) -> None:
    client = OAuthBearerClient(token, authzid=authzid, host=host, port=port)
    step = OAuthBearerServer().start(client.initial_response())
    assert step == NeedTokenCheck(
        mechanism="OAUTHBEARER", authzid=authzid, token=token, host=host, port=port
    )


def test_the_token_stays_out_of_repr() -> None:
    need = NeedTokenCheck(mechanism="OAUTHBEARER", authzid=None, token="s3cret", host="h", port=1)
    assert "s3cret" not in repr(need)
    assert need != NeedTokenCheck(
        mechanism="OAUTHBEARER", authzid=None, token="x", host="h", port=1
    )
