"""SCRAM-SHA-256 (RFC 5802, RFC 7677): the RFC example, client against server, errors."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents.sasl import (
    MIN_ITERATIONS,
    AuthenticationError,
    Challenge,
    ClientMechanism,
    CredentialsAnswer,
    Failure,
    LocalProtocolError,
    NeedCredentials,
    NoSuchUser,
    PasswordVerdict,
    ScramSecrets,
    ScramSha256Client,
    ScramSha256Server,
    ServerMechanism,
    ServerStep,
    Success,
    scram_secrets,
)

# RFC 7677 §3, the example exchange: user "user", password "pencil".
CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
FULL_NONCE = CLIENT_NONCE + SERVER_NONCE

PENCIL = scram_secrets("pencil", salt=SALT, iterations=4096)


def rfc_client() -> ScramSha256Client:
    return ScramSha256Client("user", "pencil", nonce=CLIENT_NONCE)


def rfc_server() -> ScramSha256Server:
    return ScramSha256Server(nonce=SERVER_NONCE)


def server_at_client_final(
    client_first: bytes = RFC_CLIENT_FIRST, secrets: ScramSecrets = PENCIL
) -> ScramSha256Server:
    server = rfc_server()
    assert isinstance(server.start(client_first), NeedCredentials)
    assert isinstance(server.provide(secrets), Challenge)
    return server


def client_at_server_final() -> ScramSha256Client:
    client = rfc_client()
    client.initial_response()
    assert client.respond(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    return client


# --------------------------------------------------------------------------- RFC 7677 §3


def test_rfc_7677_client() -> None:
    client = rfc_client()
    assert client.initial_response() == RFC_CLIENT_FIRST
    assert client.respond(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    assert not client.done
    client.verify_success(RFC_SERVER_FINAL)
    assert client.done


def test_rfc_7677_client_server_final_as_challenge() -> None:
    # SMTP sends the server-final as a 334 challenge, answered with an empty line.
    client = client_at_server_final()
    assert client.respond(RFC_SERVER_FINAL) == b""
    assert client.done
    client.verify_success(None)
    client.verify_success(RFC_SERVER_FINAL)  # sent again with the success: still fine


def test_rfc_7677_server() -> None:
    server = rfc_server()
    assert server.start(RFC_CLIENT_FIRST) == NeedCredentials(
        mechanism="SCRAM-SHA-256", authcid="user", authzid=None, password=None
    )
    assert server.provide(PENCIL) == Challenge(data=RFC_SERVER_FIRST)
    assert server.receive(RFC_CLIENT_FINAL) == Success(
        identity="user", authcid="user", final_data=RFC_SERVER_FINAL
    )


def test_rfc_7677_server_without_initial_response() -> None:
    server = rfc_server()
    assert server.start(None) == Challenge(data=b"")
    assert isinstance(server.receive(RFC_CLIENT_FIRST), NeedCredentials)
    assert server.provide(PENCIL) == Challenge(data=RFC_SERVER_FIRST)
    step = server.receive(RFC_CLIENT_FINAL)
    assert isinstance(step, Success)
    assert step.final_data == RFC_SERVER_FINAL


def test_scram_secrets() -> None:
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", SALT, 4096)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    expected = ScramSecrets(
        salt=SALT,
        iterations=4096,
        stored_key=hashlib.sha256(client_key).digest(),
        server_key=hmac.digest(salted, b"Server Key", "sha256"),
    )
    assert expected == PENCIL
    fresh = scram_secrets("pencil")
    assert len(fresh.salt) == 16
    assert fresh.iterations == MIN_ITERATIONS == 4096
    assert fresh.salt != scram_secrets("pencil").salt
    # SASLprep: U+2168 and "IX" are the same password.
    assert scram_secrets("\u2168", salt=SALT) == scram_secrets("IX", salt=SALT)
    with pytest.raises(ValueError):
        scram_secrets("pencil", iterations=0)
    with pytest.raises(ValueError):
        scram_secrets("pencil", salt=b"")
    with pytest.raises(ValueError):
        scram_secrets("pen\u0007cil")
    with pytest.raises(LocalProtocolError):
        ScramSecrets(salt=b"", iterations=1, stored_key=b"", server_key=b"")
    with pytest.raises(LocalProtocolError):
        ScramSecrets(salt=b"s", iterations=0, stored_key=b"", server_key=b"")


# --------------------------------------------------------------------------- in memory

USERS = {"user": "pencil", "Kurt": "xipj3plmq", "a,b=c": "s\u00e9same"}


def user_store(
    may_act_as: frozenset[str] = frozenset(),
) -> Callable[[NeedCredentials], CredentialsAnswer]:
    def lookup(need: NeedCredentials) -> CredentialsAnswer:
        assert need.mechanism == "SCRAM-SHA-256"
        assert need.password is None
        if need.authcid not in USERS:
            return NoSuchUser()
        secrets = scram_secrets(USERS[need.authcid], salt=need.authcid.encode() + b"-salt")
        return ScramSecrets(
            salt=secrets.salt,
            iterations=secrets.iterations,
            stored_key=secrets.stored_key,
            server_key=secrets.server_key,
            may_act_as=may_act_as,
        )

    return lookup


def drive(
    client: ClientMechanism,
    server: ServerMechanism,
    lookup: Callable[[NeedCredentials], CredentialsAnswer],
    *,
    initial: bool = True,
    final_as_challenge: bool = False,
) -> tuple[ServerStep, int]:
    """Run an exchange; return the last step and the number of challenges."""
    challenges = 0
    step = server.start(client.initial_response() if initial else None)
    while True:
        if isinstance(step, Challenge):
            challenges += 1
            step = server.receive(client.respond(step.data))
        elif isinstance(step, NeedCredentials):
            step = server.provide(lookup(step))
        else:
            break
    if isinstance(step, Success):
        if final_as_challenge:
            assert step.final_data is not None
            assert client.respond(step.final_data) == b""
            client.verify_success(None)
        else:
            client.verify_success(step.final_data)
        assert client.done
    return step, challenges


@pytest.mark.parametrize("initial", [True, False])
@pytest.mark.parametrize("final_as_challenge", [True, False])
def test_success(initial: bool, final_as_challenge: bool) -> None:
    step, challenges = drive(
        ScramSha256Client("user", "pencil"),
        ScramSha256Server(),
        user_store(),
        initial=initial,
        final_as_challenge=final_as_challenge,
    )
    assert isinstance(step, Success)
    assert (step.identity, step.authcid) == ("user", "user")
    assert challenges == (1 if initial else 2)


def test_user_name_with_comma_and_equals_and_non_ascii_password() -> None:
    client = ScramSha256Client("a,b=c", "se\u0301same")  # SASLprep composes the é
    first = client.initial_response()
    assert first.startswith(b"n,,n=a=2Cb=3Dc,r=")
    server = ScramSha256Server()
    need = server.start(first)
    assert isinstance(need, NeedCredentials)
    assert need.authcid == "a,b=c"
    challenge = server.provide(user_store()(need))
    assert isinstance(challenge, Challenge)
    step = server.receive(client.respond(challenge.data))
    assert isinstance(step, Success)
    assert step.identity == "a,b=c"
    client.verify_success(step.final_data)


def test_wrong_password() -> None:
    client = ScramSha256Client("user", "crayon")
    step, _ = drive(client, ScramSha256Server(), user_store())
    assert isinstance(step, Failure)
    assert not client.done


def test_unknown_user_fails_only_at_the_end() -> None:
    client = ScramSha256Client("nobody", "pencil")
    step, challenges = drive(client, ScramSha256Server(), user_store())
    assert isinstance(step, Failure)
    assert challenges == 1  # the server-first was sent as for a real user


def _server_first_for(user: str, fake_salt_key: bytes | None) -> bytes:
    server = ScramSha256Server(fake_salt_key=fake_salt_key)
    server.start(ScramSha256Client(user, "x").initial_response())
    step = server.provide(NoSuchUser())
    assert isinstance(step, Challenge)
    return step.data


def test_unknown_user_fake_salt_is_stable_per_key() -> None:
    key = b"k" * 32

    def salt_and_iterations(user: str, salt_key: bytes | None) -> list[bytes]:
        return _server_first_for(user, salt_key).split(b",")[1:]

    first = salt_and_iterations("nobody", key)
    assert first == salt_and_iterations("nobody", key)
    assert first[1] == b"i=4096"
    assert len(base64.b64decode(first[0][2:])) == 16
    assert first != salt_and_iterations("somebody", key)
    assert first != salt_and_iterations("nobody", b"other key")


@pytest.mark.parametrize("final_as_challenge", [True, False])
def test_authzid_allowed(final_as_challenge: bool) -> None:
    client = ScramSha256Client("Kurt", "xipj3plmq", "Ursel")
    assert client.initial_response().startswith(b"n,a=Ursel,n=Kurt,r=")
    client = ScramSha256Client("Kurt", "xipj3plmq", "Ursel")
    step, _ = drive(
        client,
        ScramSha256Server(),
        user_store(frozenset({"Ursel"})),
        final_as_challenge=final_as_challenge,
    )
    assert isinstance(step, Success)
    assert (step.identity, step.authcid) == ("Ursel", "Kurt")


def test_authzid_escaped() -> None:
    client = ScramSha256Client("Kurt", "xipj3plmq", "x=y,z")
    assert client.initial_response().startswith(b"n,a=x=3Dy=2Cz,n=Kurt,r=")
    client = ScramSha256Client("Kurt", "xipj3plmq", "x=y,z")
    step, _ = drive(client, ScramSha256Server(), user_store(frozenset({"x=y,z"})))
    assert isinstance(step, Success)
    assert step.identity == "x=y,z"


def test_authzid_refused() -> None:
    step, _ = drive(
        ScramSha256Client("Kurt", "xipj3plmq", "Ursel"),
        ScramSha256Server(),
        user_store(frozenset({"someone else"})),
    )
    assert isinstance(step, Failure)


def test_authzid_equal_to_authcid_and_empty() -> None:
    for authzid in ("Kurt", ""):
        step, _ = drive(
            ScramSha256Client("Kurt", "xipj3plmq", authzid), ScramSha256Server(), user_store()
        )
        assert isinstance(step, Success)
        assert (step.identity, step.authcid) == ("Kurt", "Kurt")


def test_empty_initial_response_fails() -> None:
    assert isinstance(ScramSha256Server().start(b""), Failure)


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.digest(key, msg, "sha256")


def _client_final(
    gs2_header: bytes, bare: bytes, server_first: bytes, password: str, extra: bytes = b""
) -> bytes:
    """RFC 5802 §3, computed independently of the module under test."""
    attrs = dict(a.split(b"=", 1) for a in server_first.split(b","))
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(attrs[b"s"]), int(attrs[b"i"])
    )
    client_key = _hmac(salted, b"Client Key")
    without_proof = b"c=" + base64.b64encode(gs2_header) + b",r=" + attrs[b"r"] + extra
    auth = b",".join((bare, server_first, without_proof))
    signature = _hmac(hashlib.sha256(client_key).digest(), auth)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return without_proof + b",p=" + base64.b64encode(proof)


def test_y_flag_is_accepted_as_no_channel_binding() -> None:
    # RFC 5802 §6: "y" means the client could bind but thinks we cannot; we do not
    # advertise SCRAM-SHA-256-PLUS, so that is right, and the exchange goes on.
    bare = b"n=user,r=" + CLIENT_NONCE.encode()
    server = server_at_client_final(b"y,," + bare)
    final = _client_final(b"y,,", bare, RFC_SERVER_FIRST, "pencil")
    assert final.startswith(b"c=eSws,")
    step = server.receive(final)
    assert isinstance(step, Success)


def test_extensions_are_ignored() -> None:
    # RFC 5802 §7: unknown extensions are ignored, but they are part of AuthMessage.
    bare = b"n=user,r=" + CLIENT_NONCE.encode() + b",x=extension"
    server = server_at_client_final(b"n,," + bare)
    final = _client_final(b"n,,", bare, RFC_SERVER_FIRST, "pencil", extra=b",y=more,z=x")
    assert isinstance(server.receive(final), Success)


def test_the_proof_covers_client_final_extensions() -> None:
    server = server_at_client_final()
    assert isinstance(server.receive(b"c=biws," + R + b",x=ext," + P), Failure)


MALFORMED_CLIENT_FIRST = [
    b"",
    b"n",
    b"n,",
    b"n,,",
    b"x,,n=user,r=abc",  # bad channel-binding flag
    b"N,,n=user,r=abc",
    b"p=tls-unique,,n=user,r=abc",  # channel binding requested: not supported
    b"p=tls-server-end-point,,n=user,r=abc",
    b"n,,m=ext,n=user,r=abc",  # mandatory extension
    b"n,,n=user",  # no nonce
    b"n,,r=abc,n=user",  # wrong order
    b"n,,n=user,r=",  # empty nonce
    b"n,,n=user,r=ab\x7fc",  # nonce not printable
    b"n,,n=user,r=ab\x01c",
    b"n,,n=user,r=ab\xc3\xa9c",  # non-ASCII nonce
    b"n,,n=user,r=abc,",  # empty extension
    b"n,,n=user,r=abc,x",  # extension without value
    b"n,,n=user,r=abc,x=",
    b"n,,n=user,r=abc,1=x",  # extension name not ALPHA
    b"n,,n=user,r=abc,r=def",  # extra attribute
    b"n,,n=user,r=abc,n=other",
    b"n,,n=user,n=user,r=abc",
    b"n,,n=,r=abc",  # empty user name
    b"n,,n=us=er,r=abc",  # stray "="
    b"n,,n=us=2c,r=abc",  # lower-case escape
    b"n,,n=us=2,r=abc",
    b"n,,n=us=,r=abc",
    b"n,,n=\xe2\x80\x8b,r=abc",  # prepares to the empty string
    b"n,,n=us\x07er,r=abc",  # prohibited by SASLprep
    b"n,,n=\xd8\xa71,r=abc",  # fails the bidi rule
    b"n,,n=us\x00er,r=abc",  # NUL
    b"n,,n=us\xffer,r=abc",  # invalid UTF-8
    b"n,,n=user,r=abc\xff",
    b"n,b=x,n=user,r=abc",  # not a=
    b"n,a=,n=user,r=abc",  # empty authzid
    b"n,a=x=y,n=user,r=abc",  # stray "=" in authzid
    b"n,a=x,y,n=user,r=abc",
    b"n,a=x",  # header never ends
    b"y",
    b"y,",
    b",,n=user,r=abc",
]


@pytest.mark.parametrize("message", MALFORMED_CLIENT_FIRST)
@pytest.mark.parametrize("initial", [True, False])
def test_malformed_client_first(message: bytes, initial: bool) -> None:
    server = rfc_server()
    if initial:
        step = server.start(message)
    else:
        assert server.start(None) == Challenge(data=b"")
        step = server.receive(message)
    assert isinstance(step, Failure), step
    with pytest.raises(LocalProtocolError):
        server.receive(RFC_CLIENT_FIRST)


def test_well_formed_client_first_variants() -> None:
    for message, authcid, authzid in [
        (b"n,,n=user,r=abc,x=ext,y=more", "user", None),
        (b"y,,n=user,r=abc", "user", None),
        (b"n,a=admin,n=user,r=abc", "user", "admin"),
        (b"n,,n=I\xc2\xadX,r=abc", "IX", None),  # the server prepares the name
        (b"n,,n=user,r=!\"#$%&'()*+-./~", "user", None),
    ]:
        step = rfc_server().start(message)
        assert step == NeedCredentials(
            mechanism="SCRAM-SHA-256", authcid=authcid, authzid=authzid
        ), message


P = b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
R = b"r=" + FULL_NONCE.encode()
MALFORMED_CLIENT_FINAL = [
    b"",
    b"c=biws",
    b"c=biws," + R,  # no proof
    b"c=biws," + R + b",p=",  # empty proof
    b"c=biws," + R + b",p=AAAA",  # proof too short
    b"c=biws," + R + b",p=" + b"A" * 44,  # proof right length, wrong value
    b"c=biws," + R + b",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ",  # bad padding
    b"c=biws," + R + b",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7And!Q=",  # bad character
    b"c=biws," + R + b",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=\xc3\xa9",
    b"c=biws," + R + b",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVR=",  # non-canonical
    b"c=biwt," + R + b"," + P,  # "n,-"
    b"c=biws,r=" + CLIENT_NONCE.encode() + b"," + P,  # only the client's nonce
    b"c=biws,r=" + FULL_NONCE.encode() + b"x," + P,  # nonce longer
    b"c=biws,r=X" + FULL_NONCE[1:].encode() + b"," + P,  # nonce changed
    b"c=biws,r=," + P,
    b"c=eSws," + R + b"," + P,  # "y,," where the client sent "n,,"
    b"c=cD10bHMtdW5pcXVlLCw=," + R + b"," + P,  # "p=tls-unique,,"
    b"c=biwsAAAA," + R + b"," + P,  # channel-binding data appended
    b"c=," + R + b"," + P,
    b"c=biw," + R + b"," + P,  # bad base64
    b"c=bi!s," + R + b"," + P,
    b"r=" + FULL_NONCE.encode() + b",c=biws," + P,  # wrong order
    b"c=biws," + P + b"," + R,
    b"c=biws," + R + b"," + R + b"," + P,  # extra attribute
    b"c=biws,c=biws," + R + b"," + P,
    b"c=biws," + R + b",p=AAAA," + P,
    b"c=biws," + R + b"," + P + b",x=ext",  # p= is not last
    b"c=biws," + R + b",x," + P,  # malformed extension
    b"c=biws," + R + b",m=ext," + P,
    b"c=biws," + R + b"," + P + b"\x00",
    b"c=biws," + R + b"\xff," + P,
    b"\xff",
    b"n,,n=user,r=" + CLIENT_NONCE.encode(),  # client-first again
    b"m=x,c=biws," + R + b"," + P,
]


@pytest.mark.parametrize("message", MALFORMED_CLIENT_FINAL)
def test_malformed_client_final(message: bytes) -> None:
    server = server_at_client_final()
    step = server.receive(message)
    assert isinstance(step, Failure), step
    with pytest.raises(LocalProtocolError):
        server.receive(RFC_CLIENT_FINAL)


def test_unknown_user_fails_even_with_well_formed_client_final() -> None:
    server = rfc_server()
    server.start(RFC_CLIENT_FIRST)
    step = server.provide(NoSuchUser())
    assert isinstance(step, Challenge)
    assert isinstance(server.receive(RFC_CLIENT_FINAL), Failure)


# --------------------------------------------------------------------------- server misuse


def test_server_out_of_turn() -> None:
    server = rfc_server()
    with pytest.raises(LocalProtocolError):
        server.receive(RFC_CLIENT_FIRST)
    with pytest.raises(LocalProtocolError):
        server.provide(PENCIL)
    server.start(RFC_CLIENT_FIRST)
    with pytest.raises(LocalProtocolError):
        server.start(RFC_CLIENT_FIRST)
    with pytest.raises(LocalProtocolError):
        server.receive(RFC_CLIENT_FINAL)
    with pytest.raises(LocalProtocolError):
        server.provide(PasswordVerdict(valid=True))
    with pytest.raises(LocalProtocolError):
        server.provide(scram_secrets("pencil", hash_name="sha1"))
    with pytest.raises(LocalProtocolError):
        server.provide(object())  # type: ignore[arg-type]
    server.provide(PENCIL)
    with pytest.raises(LocalProtocolError):
        server.provide(PENCIL)
    assert isinstance(server.receive(RFC_CLIENT_FINAL), Success)
    with pytest.raises(LocalProtocolError):
        server.receive(RFC_CLIENT_FINAL)


@pytest.mark.parametrize("nonce", ["", "a,b", "caf\u00e9", "a b"])
def test_bad_injected_nonce(nonce: str) -> None:
    with pytest.raises(LocalProtocolError):
        ScramSha256Server(nonce=nonce)
    with pytest.raises(LocalProtocolError):
        ScramSha256Client("user", "pencil", nonce=nonce)


def test_random_nonces_differ() -> None:
    assert ScramSha256Client("u", "p").initial_response() != (
        ScramSha256Client("u", "p").initial_response()
    )


# --------------------------------------------------------------------------- client errors


@pytest.mark.parametrize(
    ("authcid", "password", "authzid"),
    [
        ("", "pencil", None),
        ("\u00ad", "pencil", None),  # prepares to nothing
        ("us\u0007er", "pencil", None),
        ("user", "pen\u0007cil", None),
        ("user", "pencil", "a\x00b"),
    ],
)
def test_client_refuses_bad_values(authcid: str, password: str, authzid: str | None) -> None:
    with pytest.raises(LocalProtocolError):
        ScramSha256Client(authcid, password, authzid)


def test_client_prepares_user_name() -> None:
    client = ScramSha256Client("I\u00adX", "pencil", nonce="abc")
    assert client.initial_response() == b"n,,n=IX,r=abc"


def test_client_without_initial_response() -> None:
    client = rfc_client()
    assert client.respond(b"") == RFC_CLIENT_FIRST
    assert client.respond(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    assert client.respond(RFC_SERVER_FINAL) == b""
    assert client.done


def test_client_initial_response_once() -> None:
    client = rfc_client()
    client.initial_response()
    with pytest.raises(LocalProtocolError):
        client.initial_response()


def _sf(nonce: str = FULL_NONCE, salt: str = "W22ZaJ0SNY7soEsUEjb6gQ==", i: str = "4096") -> bytes:
    return f"r={nonce},s={salt},i={i}".encode()


BAD_SERVER_FIRST = [
    b"",
    b"\xff",
    _sf() + b"\x00",
    b"e=other-error",
    b"m=ext," + _sf(),
    _sf(nonce=CLIENT_NONCE),  # the server added nothing
    _sf(nonce="X" + FULL_NONCE[1:]),  # not our nonce
    _sf(nonce=SERVER_NONCE),
    _sf(nonce=FULL_NONCE + "\u00e9"),
    _sf(nonce=""),
    _sf(salt=""),  # empty salt
    _sf(salt="W22ZaJ0SNY7soEsUEjb6gQ="),  # bad padding
    _sf(salt="W22ZaJ0SNY7so!sUEjb6gQ=="),
    _sf(i="4095"),  # below RFC 7677's minimum
    _sf(i="1"),
    _sf(i="0"),
    _sf(i="-4096"),
    _sf(i="04096"),
    _sf(i="4096.0"),
    _sf(i=""),
    _sf(i="\u0664\u0660\u0669\u0666"),  # Arabic-Indic digits are not DIGIT
    _sf(i="99999999999999999999"),
    _sf(i="1000001"),  # above max_iterations
    _sf() + b",",
    _sf() + b",x",
    _sf() + b",r=again",
    b"s=W22ZaJ0SNY7soEsUEjb6gQ==,r=" + FULL_NONCE.encode() + b",i=4096",
    b"r=" + FULL_NONCE.encode() + b",i=4096",
    b"r=" + FULL_NONCE.encode(),
    RFC_SERVER_FINAL,
]


@pytest.mark.parametrize("message", BAD_SERVER_FIRST)
def test_client_refuses_bad_server_first(message: bytes) -> None:
    client = rfc_client()
    client.initial_response()
    with pytest.raises(AuthenticationError):
        client.respond(message)
    # A failed exchange stays failed.
    with pytest.raises(LocalProtocolError):
        client.respond(RFC_SERVER_FIRST)
    with pytest.raises(LocalProtocolError):
        client.verify_success(None)
    assert not client.done


def test_client_accepts_server_first_extension() -> None:
    client = rfc_client()
    client.initial_response()
    # An unknown extension is ignored, but it is part of AuthMessage.
    final = client.respond(RFC_SERVER_FIRST + b",x=ext")
    assert final.startswith(b"c=biws," + R + b",p=")
    assert final != RFC_CLIENT_FINAL


def test_client_max_iterations() -> None:
    client = ScramSha256Client("user", "pencil", nonce=CLIENT_NONCE, max_iterations=5000)
    client.initial_response()
    with pytest.raises(AuthenticationError):
        client.respond(_sf(i="5001"))


BAD_SERVER_FINAL = [
    b"",
    b"\xff",
    b"v=",
    b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4",  # bad padding
    b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G5=",  # non-canonical base64
    b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G8=",  # one bit off
    b"v=" + b"A" * 44,
    b"v=AAAA",
    b"e=invalid-proof",
    b"e=unknown-user",
    RFC_SERVER_FINAL + b",",
    RFC_SERVER_FINAL + b",v=again",
    RFC_SERVER_FINAL + b"\x00",
    b"x=y," + RFC_SERVER_FINAL,
    RFC_SERVER_FIRST,
]


@pytest.mark.parametrize("message", BAD_SERVER_FINAL)
@pytest.mark.parametrize("as_challenge", [True, False])
def test_client_refuses_bad_server_final(message: bytes, as_challenge: bool) -> None:
    client = client_at_server_final()
    with pytest.raises(AuthenticationError):
        if as_challenge:
            client.respond(message)
        else:
            client.verify_success(message)
    assert not client.done


def test_client_accepts_server_final_extension() -> None:
    client = client_at_server_final()
    client.verify_success(RFC_SERVER_FINAL + b",x=ext")
    assert client.done


def test_client_server_never_proved_itself() -> None:
    client = client_at_server_final()
    with pytest.raises(AuthenticationError):
        client.verify_success(None)
    client = client_at_server_final()
    with pytest.raises(AuthenticationError):
        client.verify_success(b"")
    client = rfc_client()
    client.initial_response()
    with pytest.raises(AuthenticationError):
        client.verify_success(RFC_SERVER_FINAL)  # success before server-first
    client = rfc_client()
    with pytest.raises(AuthenticationError):
        client.verify_success(None)


def test_client_challenges_out_of_place() -> None:
    with pytest.raises(AuthenticationError):
        rfc_client().respond(RFC_SERVER_FIRST)  # we have not spoken yet
    client = client_at_server_final()
    client.respond(RFC_SERVER_FINAL)
    with pytest.raises(AuthenticationError):
        client.respond(b"")  # after the exchange ended
    client = client_at_server_final()
    client.respond(RFC_SERVER_FINAL)
    with pytest.raises(AuthenticationError):
        client.verify_success(b"v=" + b"A" * 44)  # a different signature with success


# --------------------------------------------------------------------------- properties


@given(st.binary(max_size=300))
def test_server_any_client_first(data: bytes) -> None:
    for initial in (True, False):
        server = rfc_server()
        if initial:
            step = server.start(data)
        else:
            server.start(None)
            step = server.receive(data)
        assert isinstance(step, NeedCredentials | Failure)
        if isinstance(step, NeedCredentials):
            assert isinstance(server.provide(NoSuchUser()), Challenge)


client_first_texts = st.builds(
    lambda flag, authzid, parts: flag + "," + authzid + "," + ",".join(parts),
    st.sampled_from(["n", "y", "p=x", "p", "", "n,"]),
    st.sampled_from(["", "a=x", "a=", "a=x=2C", "a=x=", "b"]),
    st.lists(
        st.sampled_from(["n=user", "r=abc", "m=x", "x=y", "n=", "r=", "n=a=3D", "=", ""])
        | st.text(max_size=8),
        max_size=5,
    ),
)


@given(client_first_texts)
def test_server_structured_client_first(text: str) -> None:
    step = rfc_server().start(text.encode("utf-8", "surrogatepass"))
    assert isinstance(step, NeedCredentials | Failure)


@given(st.binary(max_size=300))
def test_server_any_client_final(data: bytes) -> None:
    step = server_at_client_final().receive(data)
    assert isinstance(step, Failure)


@given(
    st.lists(
        st.sampled_from([b"c=biws", R, P, b"c=eSws", b"x=ext", b"p=AAAA", b"r=", b"c="])
        | st.binary(max_size=10),
        max_size=6,
    )
)
def test_server_structured_client_final(parts: list[bytes]) -> None:
    step = server_at_client_final().receive(b",".join(parts))
    assert isinstance(step, Success | Failure)
    if isinstance(step, Success):
        assert b",".join(parts) == RFC_CLIENT_FINAL


@given(st.binary(max_size=300))
def test_client_any_server_first(data: bytes) -> None:
    client = rfc_client()
    client.initial_response()
    try:
        response = client.respond(data)
    except AuthenticationError:
        return
    assert response.startswith(b"c=biws,r=" + CLIENT_NONCE.encode())


@given(
    nonce_suffix=st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","),
        max_size=10,
    ),
    salt=st.binary(max_size=20),
    iterations=st.sampled_from(["4096", "4097", "4095", "0", "x", ""]),
    extra=st.sampled_from(["", ",x=y", ",y", ",s=again", ",\x00"]),
)
def test_client_structured_server_first(
    nonce_suffix: str, salt: bytes, iterations: str, extra: str
) -> None:
    client = rfc_client()
    client.initial_response()
    message = f"r={CLIENT_NONCE}{nonce_suffix},s={base64.b64encode(salt).decode()}"
    message += f",i={iterations}{extra}"
    try:
        response = client.respond(message.encode())
    except AuthenticationError:
        return
    assert nonce_suffix and salt and iterations in ("4096", "4097")
    assert extra in ("", ",x=y")
    assert response.startswith(b"c=biws,r=" + CLIENT_NONCE.encode() + nonce_suffix.encode())


@given(st.binary(max_size=100), st.booleans())
def test_client_any_server_final(data: bytes, as_challenge: bool) -> None:
    client = client_at_server_final()
    try:
        if as_challenge:
            assert client.respond(data) == b""
        else:
            client.verify_success(data)
    except AuthenticationError:
        assert not client.done
        return
    assert data.startswith(RFC_SERVER_FINAL)
    assert client.done
