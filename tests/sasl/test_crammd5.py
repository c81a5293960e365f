"""CRAM-MD5 (RFC 2195): server and client, in memory and alone; off by default."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents.sasl import (
    CLIENT_MECHANISMS,
    LEGACY_SERVER_MECHANISMS,
    SERVER_MECHANISMS,
    Answer,
    AuthenticationError,
    Challenge,
    CramMd5Client,
    CramMd5Server,
    Failure,
    LegacySecret,
    LocalProtocolError,
    NeedCredentials,
    NoSuchUser,
    PasswordVerdict,
    ServerStep,
    Success,
    TokenVerdict,
    scram_secrets,
    server_mechanism,
)

# RFC 2195 §2, the example exchange.
RFC_CHALLENGE = b"<1896.697170952@postoffice.reston.mci.net>"
RFC_RESPONSE = b"tim b913a602c7eda7a495b4e6e7334d3890"
SECRETS = {"tim": "tanstaaftanstaaf", "j\u00fcrgen": "p\u00e4ss"}


def legacy_store(need: NeedCredentials) -> Answer:
    assert need.mechanism == "CRAM-MD5"
    assert need.authzid is None
    assert need.password is None
    if need.authcid not in SECRETS:
        return NoSuchUser()
    return LegacySecret(secret=SECRETS[need.authcid])


def drive(
    client: CramMd5Client,
    server: CramMd5Server,
    lookup: Callable[[NeedCredentials], Answer] = legacy_store,
) -> ServerStep:
    step = server.start(client.initial_response())
    while True:
        if isinstance(step, Challenge):
            step = server.receive(client.respond(step.data))
        elif isinstance(step, NeedCredentials):
            step = server.provide(lookup(step))
        else:
            break
    if isinstance(step, Success):
        client.verify_success(step.final_data)
    return step


# --------------------------------------------------------------------------- wire


def test_rfc_2195_example_client() -> None:
    client = CramMd5Client("tim", "tanstaaftanstaaf")
    assert client.initial_response() is None
    assert not client.done
    assert client.respond(RFC_CHALLENGE) == RFC_RESPONSE
    assert client.done
    client.verify_success(None)


@pytest.mark.parametrize("secret", ["tanstaaftanstaaf", b"tanstaaftanstaaf"])
def test_rfc_2195_example_server(secret: str | bytes) -> None:
    server = CramMd5Server(challenge=RFC_CHALLENGE)
    assert server.start(None) == Challenge(data=RFC_CHALLENGE)
    assert server.receive(RFC_RESPONSE) == NeedCredentials(
        mechanism="CRAM-MD5", authcid="tim", authzid=None, password=None
    )
    assert server.provide(LegacySecret(secret=secret)) == Success(
        identity="tim", authcid="tim", final_data=None
    )


def test_default_challenge() -> None:
    first = CramMd5Server().start(None)
    second = CramMd5Server().start(None)
    assert isinstance(first, Challenge) and isinstance(second, Challenge)
    assert re.fullmatch(rb"<[0-9]+\.[0-9]+@mailagents>", first.data)
    assert first.data != second.data


@pytest.mark.parametrize(
    "challenge",
    [
        b"",
        b"1896.697170952@host",
        b"<1896.697170952>",
        b"<a b@host>",
        b"<@host>",
        b"<a@>",
        b"<a@host>x",
        b"<a@h\xc3\xa9>",
        "<a@host>",
    ],
)
def test_server_refuses_a_bad_challenge(challenge: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        CramMd5Server(challenge=challenge)


# --------------------------------------------------------------------------- both


@pytest.mark.parametrize(("user", "secret"), sorted(SECRETS.items()))
def test_success(user: str, secret: str) -> None:
    step = drive(CramMd5Client(user, secret), CramMd5Server())
    assert step == Success(identity=user, authcid=user)


def test_user_name_with_a_space() -> None:
    step = drive(
        CramMd5Client("tim smith", "pw"), CramMd5Server(), lambda n: LegacySecret(secret="pw")
    )
    assert step == Success(identity="tim smith", authcid="tim smith")


def test_wrong_password() -> None:
    step = drive(CramMd5Client("tim", "wrong"), CramMd5Server())
    assert step == Failure(reason="CRAM-MD5: invalid digest")


def test_unknown_user() -> None:
    step = drive(CramMd5Client("nobody", "x"), CramMd5Server())
    assert step == Failure(reason="CRAM-MD5: no such user")


@pytest.mark.parametrize(
    "answer",
    [
        PasswordVerdict(valid=True),
        PasswordVerdict(valid=True, may_act_as=frozenset({"tim"})),
        scram_secrets("tanstaaftanstaaf", salt=b"s"),
    ],
)
def test_answers_that_cannot_check_the_digest_fail(answer: Answer) -> None:
    step = drive(CramMd5Client("tim", "tanstaaftanstaaf"), CramMd5Server(), lambda n: answer)
    assert isinstance(step, Failure)
    assert "cannot check" in step.reason


@pytest.mark.parametrize("answer", [TokenVerdict(valid=True, identity="tim"), "yes"])
def test_other_answers_are_misuse(answer: object) -> None:
    server = CramMd5Server(challenge=RFC_CHALLENGE)
    server.start(None)
    server.receive(RFC_RESPONSE)
    with pytest.raises(LocalProtocolError):
        server.provide(answer)  # type: ignore[arg-type]


def test_legacy_secret_type_is_checked() -> None:
    with pytest.raises(LocalProtocolError):
        LegacySecret(secret=123)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- server


@pytest.mark.parametrize("initial", [b"", b"tim", RFC_RESPONSE])
def test_an_initial_response_fails(initial: bytes) -> None:
    server = CramMd5Server()
    step = server.start(initial)
    assert isinstance(step, Failure)
    with pytest.raises(LocalProtocolError):
        server.receive(RFC_RESPONSE)


MALFORMED = [
    b"",
    b"tim",
    b"tim ",
    b" b913a602c7eda7a495b4e6e7334d3890",  # no user name
    b"timb913a602c7eda7a495b4e6e7334d3890",
    b"tim B913A602C7EDA7A495B4E6E7334D3890",  # RFC 2195: lower case
    b"tim b913a602c7eda7a495b4e6e7334d389",  # 31 digits
    b"tim b913a602c7eda7a495b4e6e7334d38900",  # 33 digits
    b"tim b913a602c7eda7a495b4e6e7334d389g",
    b"tim b913a602c7eda7a495b4e6e7334d3890 ",
    b"tim b913a602c7eda7a495b4e6e7334d3890\r\n",
    b"tim\tb913a602c7eda7a495b4e6e7334d3890",
    b"t\x00m b913a602c7eda7a495b4e6e7334d3890",  # NUL
    b"\xff b913a602c7eda7a495b4e6e7334d3890",  # invalid UTF-8
    b"tim \xb913a602c7eda7a495b4e6e7334d3890",
    b"u" * 256 + b" b913a602c7eda7a495b4e6e7334d3890",  # user name too long
]


@pytest.mark.parametrize("response", MALFORMED)
def test_malformed_responses_fail(response: bytes) -> None:
    server = CramMd5Server(challenge=RFC_CHALLENGE)
    server.start(None)
    step = server.receive(response)
    assert isinstance(step, Failure)
    assert step.reason.startswith("CRAM-MD5: ")
    with pytest.raises(LocalProtocolError):
        server.provide(LegacySecret(secret="tanstaaftanstaaf"))


def test_server_out_of_turn() -> None:
    server = CramMd5Server(challenge=RFC_CHALLENGE)
    with pytest.raises(LocalProtocolError):
        server.receive(RFC_RESPONSE)
    with pytest.raises(LocalProtocolError):
        server.provide(NoSuchUser())
    server.start(None)
    with pytest.raises(LocalProtocolError):
        server.start(None)
    with pytest.raises(LocalProtocolError):
        server.provide(LegacySecret(secret="x"))
    server.receive(RFC_RESPONSE)
    with pytest.raises(LocalProtocolError):
        server.receive(RFC_RESPONSE)
    assert isinstance(server.provide(LegacySecret(secret="tanstaaftanstaaf")), Success)
    with pytest.raises(LocalProtocolError):
        server.provide(LegacySecret(secret="tanstaaftanstaaf"))


# --------------------------------------------------------------------------- client


@pytest.mark.parametrize("authcid", ["", "a\x00b", "u" * 256])
def test_client_refuses_bad_user_names(authcid: str) -> None:
    with pytest.raises(LocalProtocolError):
        CramMd5Client(authcid, "pw")


@pytest.mark.parametrize(
    "challenge", [b"", b"no brackets", b"<nohost>", b"<a b@c>", b"<a@b>\r\n", b"\xff"]
)
def test_client_refuses_a_challenge_that_is_not_msg_id_like(challenge: bytes) -> None:
    with pytest.raises(AuthenticationError):
        CramMd5Client("tim", "pw").respond(challenge)


def test_client_server_errors() -> None:
    client = CramMd5Client("tim", "tanstaaftanstaaf")
    with pytest.raises(AuthenticationError):
        client.verify_success(None)  # success before the response was sent
    client.respond(RFC_CHALLENGE)
    with pytest.raises(AuthenticationError):
        client.respond(RFC_CHALLENGE)  # a second challenge
    with pytest.raises(AuthenticationError):
        client.verify_success(b"data")


# --------------------------------------------------------------------------- registry


def test_not_offered_by_default() -> None:
    assert "CRAM-MD5" not in SERVER_MECHANISMS
    for name in ("CRAM-MD5", "cram-md5"):
        with pytest.raises(KeyError):
            server_mechanism(name)


def test_enabled_explicitly() -> None:
    assert dict(LEGACY_SERVER_MECHANISMS) == {"CRAM-MD5": CramMd5Server}
    first = server_mechanism("cram-md5", allow_legacy=True)
    second = server_mechanism("CRAM-MD5", allow_legacy=True)
    assert type(first) is CramMd5Server and first is not second
    # allow_legacy changes nothing else.
    assert type(server_mechanism("PLAIN", allow_legacy=True)).__name__ == "PlainServer"
    with pytest.raises(KeyError):
        server_mechanism("DIGEST-MD5", allow_legacy=True)
    with pytest.raises(TypeError):
        LEGACY_SERVER_MECHANISMS["X"] = CramMd5Server  # type: ignore[index]


def test_client_registered_last() -> None:
    assert CLIENT_MECHANISMS["CRAM-MD5"] is CramMd5Client
    assert list(CLIENT_MECHANISMS)[-1] == "CRAM-MD5"


# --------------------------------------------------------------------------- properties


@given(st.binary(max_size=400))
def test_any_response_is_a_step(data: bytes) -> None:
    server = CramMd5Server(challenge=RFC_CHALLENGE)
    server.start(None)
    step = server.receive(data)
    if isinstance(step, NeedCredentials):
        step = server.provide(LegacySecret(secret="tanstaaftanstaaf"))
        assert isinstance(step, Success) == (data == RFC_RESPONSE)
    assert isinstance(step, Success | Failure)


@given(st.binary(max_size=40).map(lambda b: b + b" b913a602c7eda7a495b4e6e7334d3890"))
def test_any_user_name_is_a_step(data: bytes) -> None:
    server = CramMd5Server(challenge=RFC_CHALLENGE)
    server.start(None)
    step = server.receive(data)
    assert isinstance(step, NeedCredentials | Failure)


@given(st.binary(max_size=200))
def test_any_initial_response_fails(data: bytes) -> None:
    assert isinstance(CramMd5Server().start(data), Failure)


@given(st.lists(st.binary(max_size=100), max_size=3))
def test_client_on_arbitrary_challenges(challenges: list[bytes]) -> None:
    client = CramMd5Client("tim", "pw")
    for challenge in challenges:
        try:
            assert client.respond(challenge).startswith(b"tim ")
        except AuthenticationError:
            break


@given(
    authcid=st.text(min_size=1, max_size=60).filter(lambda s: "\x00" not in s),
    password=st.text(max_size=60),
    secret_as_bytes=st.booleans(),
)
def test_client_server_round_trip(authcid: str, password: str, secret_as_bytes: bool) -> None:
    secret: str | bytes = password.encode() if secret_as_bytes else password
    client = CramMd5Client(authcid, password)
    step = drive(client, CramMd5Server(), lambda need: LegacySecret(secret=secret))
    assert step == Success(identity=authcid, authcid=authcid)
