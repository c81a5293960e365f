"""LOGIN (draft-murchison-sasl-login): server and client, in memory and alone."""

from __future__ import annotations

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
    LoginClient,
    LoginServer,
    NeedCredentials,
    NoSuchUser,
    PasswordVerdict,
    ServerStep,
    Success,
    TokenVerdict,
    scram_secrets,
    server_mechanism,
)

USERS = {"tim": "tanstaaftanstaaf", "j\u00fcrgen": "p\u00e4ss"}


def user_store(may_act_as: frozenset[str] = frozenset()) -> Callable[[NeedCredentials], Answer]:
    def lookup(need: NeedCredentials) -> Answer:
        assert need.mechanism == "LOGIN"
        assert need.authzid is None
        if need.authcid not in USERS:
            return NoSuchUser()
        return PasswordVerdict(valid=USERS[need.authcid] == need.password, may_act_as=may_act_as)

    return lookup


def drive(
    client: LoginClient,
    server: LoginServer,
    lookup: Callable[[NeedCredentials], Answer],
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


def test_wire_bytes_without_initial_response() -> None:
    server = LoginServer()
    assert server.start(None) == Challenge(data=b"Username:")
    assert server.receive(b"tim") == Challenge(data=b"Password:")
    assert server.receive(b"tanstaaftanstaaf") == NeedCredentials(
        mechanism="LOGIN", authcid="tim", authzid=None, password="tanstaaftanstaaf"
    )
    assert server.provide(PasswordVerdict(valid=True)) == Success(
        identity="tim", authcid="tim", final_data=None
    )


def test_wire_bytes_with_the_username_as_initial_response() -> None:
    server = LoginServer()
    assert server.start(b"tim") == Challenge(data=b"Password:")
    step = server.receive(b"tanstaaftanstaaf")
    assert step == NeedCredentials(
        mechanism="LOGIN", authcid="tim", authzid=None, password="tanstaaftanstaaf"
    )


def test_client_wire_bytes() -> None:
    client = LoginClient("tim", "tanstaaftanstaaf")
    assert client.initial_response() is None
    assert not client.done
    assert client.respond(b"Username:") == b"tim"
    assert not client.done
    assert client.respond(b"Password:") == b"tanstaaftanstaaf"
    assert client.done
    client.verify_success(None)
    client.verify_success(b"")


def test_client_ignores_the_prompts() -> None:
    client = LoginClient("tim", "pw")
    assert client.respond(b"User Name\x00\xff") == b"tim"
    assert client.respond(b"") == b"pw"


def test_client_initial_username() -> None:
    client = LoginClient("tim", "pw", initial_username=True)
    assert client.initial_response() == b"tim"
    assert client.respond(b"Password:") == b"pw"
    assert client.done


def test_client_utf8() -> None:
    client = LoginClient("j\u00fcrgen", "p\u00e4ss")
    assert client.respond(b"Username:") == b"j\xc3\xbcrgen"
    assert client.respond(b"Password:") == b"p\xc3\xa4ss"


# --------------------------------------------------------------------------- both


@pytest.mark.parametrize("initial", [False, True])
@pytest.mark.parametrize(("user", "password"), sorted(USERS.items()))
def test_success(user: str, password: str, initial: bool) -> None:
    client = LoginClient(user, password, initial_username=initial)
    step = drive(client, LoginServer(), user_store())
    assert step == Success(identity=user, authcid=user)
    assert client.done


@pytest.mark.parametrize("initial", [False, True])
def test_wrong_password(initial: bool) -> None:
    step = drive(LoginClient("tim", "wrong", initial_username=initial), LoginServer(), user_store())
    assert isinstance(step, Failure)
    assert not step.temporary


def test_unknown_user() -> None:
    step = drive(LoginClient("nobody", "x"), LoginServer(), user_store())
    assert step == Failure(reason="LOGIN: no such user")


def test_no_authzid_so_policy_does_not_matter() -> None:
    # LOGIN carries no authorization identity: the identity is always the authcid.
    step = drive(
        LoginClient("tim", "tanstaaftanstaaf"), LoginServer(), user_store(frozenset({"root"}))
    )
    assert step == Success(identity="tim", authcid="tim")


def test_password_checked_against_scram_secrets() -> None:
    secrets = scram_secrets("p\u00e4ss", salt=b"salt" * 4, iterations=4096)
    ok = drive(LoginClient("j", "pa\u0308ss"), LoginServer(), lambda need: secrets)
    assert ok == Success(identity="j", authcid="j")  # SASLprep-ared, as PLAIN does
    bad = drive(LoginClient("j", "pass"), LoginServer(), lambda need: secrets)
    assert isinstance(bad, Failure)
    unpreparable = drive(LoginClient("j", "p\u0007"), LoginServer(), lambda need: secrets)
    assert isinstance(unpreparable, Failure)


def test_sha1_sized_secrets_are_misuse() -> None:
    server = LoginServer()
    server.start(b"u")
    server.receive(b"p")
    with pytest.raises(LocalProtocolError):
        server.provide(scram_secrets("p", salt=b"s", hash_name="sha1"))


@pytest.mark.parametrize(
    "answer", [TokenVerdict(valid=True, identity="tim"), LegacySecret(secret="x"), "yes"]
)
def test_answers_login_cannot_use_are_misuse(answer: object) -> None:
    server = LoginServer()
    server.start(b"tim")
    server.receive(b"pw")
    with pytest.raises(LocalProtocolError):
        server.provide(answer)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- server


MALFORMED = [
    b"",  # empty
    b"a\x00b",  # NUL
    b"\x00",
    b"\xff",  # invalid UTF-8
    b"tim\xc3",  # truncated UTF-8
    b"\xed\xa0\x80",  # an encoded surrogate
    b"u" * 256,  # longer than 255 octets
]


@pytest.mark.parametrize("message", MALFORMED)
@pytest.mark.parametrize("initial", [True, False])
def test_malformed_username_fails(message: bytes, initial: bool) -> None:
    server = LoginServer()
    if initial:
        step = server.start(message)
    else:
        server.start(None)
        step = server.receive(message)
    assert isinstance(step, Failure)
    assert step.reason.startswith("LOGIN: ")
    with pytest.raises(LocalProtocolError):
        server.receive(b"pw")


@pytest.mark.parametrize("message", MALFORMED)
def test_malformed_password_fails(message: bytes) -> None:
    server = LoginServer()
    server.start(b"tim")
    step = server.receive(message)
    assert isinstance(step, Failure)
    with pytest.raises(LocalProtocolError):
        server.provide(PasswordVerdict(valid=True))


def test_longest_fields_accepted() -> None:
    server = LoginServer()
    server.start(b"u" * 255)
    step = server.receive(b"p" * 255)
    assert isinstance(step, NeedCredentials)
    assert step.authcid == "u" * 255


def test_server_out_of_turn() -> None:
    server = LoginServer()
    with pytest.raises(LocalProtocolError):
        server.receive(b"tim")
    with pytest.raises(LocalProtocolError):
        server.provide(NoSuchUser())
    server.start(None)
    with pytest.raises(LocalProtocolError):
        server.start(None)
    with pytest.raises(LocalProtocolError):
        server.provide(PasswordVerdict(valid=True))
    server.receive(b"tim")
    with pytest.raises(LocalProtocolError):
        server.provide(PasswordVerdict(valid=True))
    server.receive(b"pw")
    with pytest.raises(LocalProtocolError):
        server.receive(b"pw")
    assert server.provide(PasswordVerdict(valid=False)) == Failure(reason="LOGIN: invalid password")
    with pytest.raises(LocalProtocolError):
        server.start(None)
    with pytest.raises(LocalProtocolError):
        server.receive(b"")
    with pytest.raises(LocalProtocolError):
        server.provide(PasswordVerdict(valid=True))


# --------------------------------------------------------------------------- client


@pytest.mark.parametrize(
    ("authcid", "password"),
    [
        ("", "pw"),
        ("tim", ""),
        ("a\x00b", "pw"),
        ("tim", "p\x00w"),
        ("u" * 256, "pw"),
        ("tim", "\u00e9" * 128),
    ],
)
def test_client_refuses_values_the_server_would_refuse(authcid: str, password: str) -> None:
    with pytest.raises(LocalProtocolError):
        LoginClient(authcid, password)


def test_client_server_errors() -> None:
    client = LoginClient("tim", "pw")
    with pytest.raises(AuthenticationError):
        client.verify_success(None)  # success before anything was sent
    client.respond(b"Username:")
    with pytest.raises(AuthenticationError):
        client.verify_success(None)  # success before the password was sent
    client.respond(b"Password:")
    with pytest.raises(AuthenticationError):
        client.respond(b"Again:")  # a third challenge
    with pytest.raises(AuthenticationError):
        client.verify_success(b"data")


def test_client_initial_response_once_and_first() -> None:
    client = LoginClient("tim", "pw")
    client.initial_response()
    with pytest.raises(LocalProtocolError):
        client.initial_response()
    late = LoginClient("tim", "pw")
    late.respond(b"Username:")
    with pytest.raises(LocalProtocolError):
        late.initial_response()


# --------------------------------------------------------------------------- registry


def test_registered() -> None:
    assert SERVER_MECHANISMS["LOGIN"] is LoginServer
    assert CLIENT_MECHANISMS["LOGIN"] is LoginClient
    assert type(server_mechanism("login")) is LoginServer
    # PLAIN is preferred to LOGIN on both sides (the draft: LOGIN only for legacy).
    for registry in (SERVER_MECHANISMS, CLIENT_MECHANISMS):
        names = list(registry)
        assert names.index("PLAIN") < names.index("LOGIN")


# --------------------------------------------------------------------------- properties


def _is_step(step: ServerStep) -> bool:
    return isinstance(step, Challenge | NeedCredentials | Success | Failure)


@given(st.binary(max_size=600))
def test_any_initial_response_is_a_step(data: bytes) -> None:
    step = LoginServer().start(data)
    assert step == Challenge(data=b"Password:") or isinstance(step, Failure)


@given(st.binary(max_size=600), st.binary(max_size=600))
def test_any_responses_are_steps(username: bytes, password: bytes) -> None:
    server = LoginServer()
    server.start(None)
    step = server.receive(username)
    assert _is_step(step)
    if isinstance(step, Challenge):
        step = server.receive(password)
        assert _is_step(step)
        if isinstance(step, NeedCredentials):
            assert step.password is not None
            assert isinstance(server.provide(PasswordVerdict(valid=True)), Success)
        else:
            assert isinstance(step, Failure)
    else:
        assert isinstance(step, Failure)


@given(st.lists(st.binary(max_size=100), max_size=5), st.booleans())
def test_client_on_arbitrary_challenges(challenges: list[bytes], initial: bool) -> None:
    client = LoginClient("tim", "pw", initial_username=initial)
    client.initial_response()
    for challenge in challenges:
        try:
            assert client.respond(challenge) in (b"tim", b"pw")
        except AuthenticationError:
            break


@given(
    authcid=st.text(min_size=1, max_size=60),
    password=st.text(min_size=1, max_size=60),
    initial=st.booleans(),
)
def test_client_server_round_trip(authcid: str, password: str, initial: bool) -> None:
    try:
        client = LoginClient(authcid, password, initial_username=initial)
    except LocalProtocolError:
        assert "\x00" in authcid + password
        return
    seen: list[NeedCredentials] = []

    def lookup(need: NeedCredentials) -> Answer:
        seen.append(need)
        return PasswordVerdict(valid=True)

    assert drive(client, LoginServer(), lookup) == Success(identity=authcid, authcid=authcid)
    assert seen == [
        NeedCredentials(mechanism="LOGIN", authcid=authcid, authzid=None, password=password)
    ]
