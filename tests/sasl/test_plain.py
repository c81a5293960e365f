"""PLAIN (RFC 4616): server and client, in memory and alone."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents.sasl import (
    AuthenticationError,
    Challenge,
    ClientMechanism,
    CredentialsAnswer,
    Failure,
    LocalProtocolError,
    NeedCredentials,
    NoSuchUser,
    PasswordVerdict,
    PlainClient,
    PlainServer,
    ServerMechanism,
    ServerStep,
    Success,
    scram_secrets,
)

USERS = {"tim": "tanstaaftanstaaf", "Kurt": "xipj3plmq"}


def user_store(
    may_act_as: frozenset[str] = frozenset(),
) -> Callable[[NeedCredentials], CredentialsAnswer]:
    def lookup(need: NeedCredentials) -> CredentialsAnswer:
        assert need.mechanism == "PLAIN"
        if need.authcid not in USERS:
            return NoSuchUser()
        return PasswordVerdict(valid=USERS[need.authcid] == need.password, may_act_as=may_act_as)

    return lookup


def drive(
    client: ClientMechanism,
    server: ServerMechanism,
    lookup: Callable[[NeedCredentials], CredentialsAnswer],
    *,
    initial: bool = True,
) -> ServerStep:
    step = server.start(client.initial_response() if initial else None)
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


# --------------------------------------------------------------------------- client


def test_rfc_4616_examples() -> None:
    # RFC 4616 §4: the two example messages.
    assert PlainClient("tim", "tanstaaftanstaaf").initial_response() == (
        b"\x00tim\x00tanstaaftanstaaf"
    )
    assert PlainClient("Kurt", "xipj3plmq", "Ursel").initial_response() == (
        b"Ursel\x00Kurt\x00xipj3plmq"
    )


def test_client_utf8() -> None:
    assert PlainClient("j\u00fcrgen", "p\u00e4ss").initial_response() == (
        b"\x00j\xc3\xbcrgen\x00p\xc3\xa4ss"
    )


@pytest.mark.parametrize(
    ("authcid", "password", "authzid"),
    [
        ("a\x00b", "pw", None),
        ("user", "p\x00w", None),
        ("user", "pw", "a\x00"),
        ("", "pw", None),
        ("user", "", None),
        ("u" * 256, "pw", None),
        ("user", "p" * 256, None),
        ("user", "pw", "z" * 256),
        ("\u00e9" * 128, "pw", None),  # 128 characters, 256 octets
    ],
)
def test_client_refuses_values_plain_cannot_carry(
    authcid: str, password: str, authzid: str | None
) -> None:
    with pytest.raises(LocalProtocolError):
        PlainClient(authcid, password, authzid)


def test_client_longest_values() -> None:
    msg = PlainClient("u" * 255, "p" * 255, "z" * 255).initial_response()
    assert msg == b"z" * 255 + b"\x00" + b"u" * 255 + b"\x00" + b"p" * 255


def test_client_without_initial_response() -> None:
    client = PlainClient("tim", "tanstaaftanstaaf")
    assert not client.done
    assert client.respond(b"") == b"\x00tim\x00tanstaaftanstaaf"
    assert client.done
    client.verify_success(None)
    client.verify_success(b"")


def test_client_server_errors() -> None:
    with pytest.raises(AuthenticationError):
        PlainClient("tim", "x").respond(b"not empty")
    client = PlainClient("tim", "x")
    with pytest.raises(AuthenticationError):
        client.verify_success(None)  # success before the credentials were sent
    client.initial_response()
    with pytest.raises(AuthenticationError):
        client.respond(b"")  # a second challenge
    with pytest.raises(AuthenticationError):
        client.verify_success(b"data")


def test_client_initial_response_once() -> None:
    client = PlainClient("tim", "x")
    client.initial_response()
    with pytest.raises(LocalProtocolError):
        client.initial_response()


# --------------------------------------------------------------------------- both


@pytest.mark.parametrize("initial", [True, False])
def test_success(initial: bool) -> None:
    step = drive(
        PlainClient("tim", "tanstaaftanstaaf"), PlainServer(), user_store(), initial=initial
    )
    assert step == Success(identity="tim", authcid="tim", final_data=None)


@pytest.mark.parametrize("initial", [True, False])
def test_wrong_password(initial: bool) -> None:
    step = drive(PlainClient("tim", "wrong"), PlainServer(), user_store(), initial=initial)
    assert isinstance(step, Failure)
    assert not step.temporary


def test_unknown_user() -> None:
    step = drive(PlainClient("nobody", "x"), PlainServer(), user_store())
    assert isinstance(step, Failure)


def test_need_credentials_content() -> None:
    server = PlainServer()
    step = server.start(PlainClient("Kurt", "xipj3plmq", "Ursel").initial_response())
    assert step == NeedCredentials(
        mechanism="PLAIN", authcid="Kurt", authzid="Ursel", password="xipj3plmq"
    )


def test_authzid_allowed() -> None:
    step = drive(
        PlainClient("Kurt", "xipj3plmq", "Ursel"),
        PlainServer(),
        user_store(frozenset({"Ursel"})),
    )
    assert step == Success(identity="Ursel", authcid="Kurt")


def test_authzid_refused() -> None:
    step = drive(PlainClient("Kurt", "xipj3plmq", "Ursel"), PlainServer(), user_store())
    assert isinstance(step, Failure)


def test_authzid_refused_even_with_wrong_policy_for_others() -> None:
    step = drive(
        PlainClient("Kurt", "xipj3plmq", "root"),
        PlainServer(),
        user_store(frozenset({"Ursel"})),
    )
    assert isinstance(step, Failure)


def test_authzid_equal_to_authcid() -> None:
    step = drive(PlainClient("Kurt", "xipj3plmq", "Kurt"), PlainServer(), user_store())
    assert step == Success(identity="Kurt", authcid="Kurt")


def test_password_checked_against_scram_secrets() -> None:
    secrets = scram_secrets("p\u00e4ss", salt=b"salt" * 4, iterations=4096)
    ok = drive(PlainClient("j", "pa\u0308ss"), PlainServer(), lambda need: secrets)
    assert ok == Success(identity="j", authcid="j")  # SASLprep-ared before comparing
    bad = drive(PlainClient("j", "pass"), PlainServer(), lambda need: secrets)
    assert isinstance(bad, Failure)
    unpreparable = drive(PlainClient("j", "p\u0007"), PlainServer(), lambda need: secrets)
    assert isinstance(unpreparable, Failure)


def test_sha1_sized_secrets_are_misuse() -> None:
    server = PlainServer()
    server.start(b"\x00u\x00p")
    secrets = scram_secrets("p", salt=b"s", hash_name="sha1")
    with pytest.raises(LocalProtocolError):
        server.provide(secrets)


# --------------------------------------------------------------------------- server


def test_server_without_initial_response_sends_empty_challenge() -> None:
    assert PlainServer().start(None) == Challenge(data=b"")


@pytest.mark.parametrize(
    "message",
    [
        b"",  # the empty initial response
        b"tim",  # no NUL
        b"\x00tim",  # one NUL
        b"\x00tim\x00pw\x00",  # three NULs
        b"a\x00b\x00c\x00d",
        b"\x00\x00pw",  # empty authcid
        b"\x00tim\x00",  # empty password
        b"\x00\x00",
        b"z" * 256 + b"\x00tim\x00pw",  # authzid too long
        b"\x00" + b"u" * 256 + b"\x00pw",  # authcid too long
        b"\x00tim\x00" + b"p" * 256,  # password too long
        b"\x00\xfftim\x00pw",  # invalid UTF-8 in authcid
        b"\x00tim\x00\xc3",  # truncated UTF-8 in password
        b"\xed\xa0\x80\x00tim\x00pw",  # encoded surrogate in authzid
    ],
)
@pytest.mark.parametrize("initial", [True, False])
def test_malformed_messages_fail(message: bytes, initial: bool) -> None:
    server = PlainServer()
    if initial:
        step = server.start(message)
    else:
        assert server.start(None) == Challenge(data=b"")
        step = server.receive(message)
    assert isinstance(step, Failure)
    assert step.reason
    with pytest.raises(LocalProtocolError):
        server.receive(b"\x00tim\x00tanstaaftanstaaf")


def test_longest_fields_accepted() -> None:
    step = PlainServer().start(b"z" * 255 + b"\x00" + b"u" * 255 + b"\x00" + b"p" * 255)
    assert isinstance(step, NeedCredentials)
    assert step.authzid == "z" * 255


def test_empty_authzid_is_absent() -> None:
    step = PlainServer().start(b"\x00tim\x00pw")
    assert isinstance(step, NeedCredentials)
    assert step.authzid is None


def test_server_out_of_turn() -> None:
    server = PlainServer()
    with pytest.raises(LocalProtocolError):
        server.receive(b"\x00tim\x00pw")
    with pytest.raises(LocalProtocolError):
        server.provide(NoSuchUser())
    server.start(None)
    with pytest.raises(LocalProtocolError):
        server.start(None)
    with pytest.raises(LocalProtocolError):
        server.provide(PasswordVerdict(valid=True))
    server.receive(b"\x00tim\x00pw")
    with pytest.raises(LocalProtocolError):
        server.receive(b"\x00tim\x00pw")
    with pytest.raises(LocalProtocolError):
        server.provide("yes")  # type: ignore[arg-type]
    assert server.provide(PasswordVerdict(valid=True)) == Success(identity="tim", authcid="tim")
    with pytest.raises(LocalProtocolError):
        server.start(None)
    with pytest.raises(LocalProtocolError):
        server.receive(b"")
    with pytest.raises(LocalProtocolError):
        server.provide(PasswordVerdict(valid=True))


# --------------------------------------------------------------------------- properties


def _finish(server: PlainServer, step: ServerStep) -> None:
    if isinstance(step, NeedCredentials):
        assert step.password is not None
        step = server.provide(PasswordVerdict(valid=True))
        assert isinstance(step, Success | Failure)
    else:
        assert isinstance(step, Failure)


@given(st.binary(max_size=800))
def test_any_initial_response_is_a_step(data: bytes) -> None:
    server = PlainServer()
    _finish(server, server.start(data))


@given(st.binary(max_size=800))
def test_any_response_is_a_step(data: bytes) -> None:
    server = PlainServer()
    server.start(None)
    _finish(server, server.receive(data))


@given(
    st.lists(st.binary(max_size=300), min_size=1, max_size=4).map(b"\x00".join),
)
def test_nul_separated_messages(data: bytes) -> None:
    server = PlainServer()
    _finish(server, server.start(data))


@given(authcid=st.text(min_size=1, max_size=60), password=st.text(min_size=1, max_size=60))
def test_client_server_round_trip(authcid: str, password: str) -> None:
    try:
        client = PlainClient(authcid, password)
    except LocalProtocolError:
        assert "\x00" in authcid + password
        return
    step = PlainServer().start(client.initial_response())
    assert step == NeedCredentials(
        mechanism="PLAIN", authcid=authcid, authzid=None, password=password
    )
