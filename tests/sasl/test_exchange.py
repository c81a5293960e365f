"""The SASL exchange drivers every core shares (mailagents/sasl/_exchange.py): framing,
``*`` to cancel, ``=`` for an empty initial response, final server data, credentials."""

from __future__ import annotations

from base64 import b64encode
from typing import ClassVar

import pytest

from mailagents.sasl import (
    Answer,
    Challenge,
    ClientMechanism,
    Failure,
    LocalProtocolError,
    NeedCredentials,
    NoSuchUser,
    PasswordVerdict,
    PlainClient,
    PlainServer,
    ScramSha256Client,
    ServerMechanism,
    ServerStep,
    Success,
)
from mailagents.sasl._exchange import (
    ClientExchange,
    ExchangeFailed,
    ExchangeFailure,
    ServerExchange,
)

PLAIN = b"\x00tim\x00secret"


def b64(data: bytes) -> str:
    return b64encode(data).decode("ascii")


class Scripted(ServerMechanism):
    """A mechanism that answers each call with the next scripted step."""

    name: ClassVar[str] = "X-SCRIPTED"

    def __init__(self, *steps: ServerStep) -> None:
        self.steps = list(steps)
        self.received: list[bytes | None] = []

    def start(self, initial_response: bytes | None) -> ServerStep:
        self.received.append(initial_response)
        return self.steps.pop(0)

    def receive(self, response: bytes) -> ServerStep:
        self.received.append(response)
        return self.steps.pop(0)

    def provide(self, answer: Answer) -> ServerStep:
        return self.steps.pop(0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("=", b""), (b64(PLAIN), PLAIN), ("AAA", None), ("=AAA", None), ("dGlt\u00e9", None)],
)
def test_decode_initial(text: str, expected: bytes | None) -> None:
    assert ServerExchange.decode_initial(text) == expected


def test_plain_with_initial_response_asks_for_credentials() -> None:
    exchange = ServerExchange(PlainServer())
    step = exchange.start(PLAIN)
    assert isinstance(step, NeedCredentials)
    assert (step.authcid, step.password) == ("tim", "secret")
    done = exchange.provide(PasswordVerdict(valid=True))
    assert isinstance(done, Success) and done.identity == "tim"


def test_plain_without_initial_response_gets_an_empty_challenge() -> None:
    exchange = ServerExchange(PlainServer())
    assert exchange.start(None) == Challenge(data=b"")
    assert isinstance(exchange.receive_line(" " + b64(PLAIN) + " "), NeedCredentials)
    failed = exchange.provide(NoSuchUser())
    assert isinstance(failed, ExchangeFailed)
    assert failed.failure is ExchangeFailure.CREDENTIALS and not failed.temporary


@pytest.mark.parametrize(
    ("line", "failure"),
    [("*", ExchangeFailure.CANCELLED), (" * ", ExchangeFailure.CANCELLED),
     ("not base64!", ExchangeFailure.BAD_BASE64), ("QQ", ExchangeFailure.BAD_BASE64)],
)
def test_cancel_and_bad_base64(line: str, failure: ExchangeFailure) -> None:
    exchange = ServerExchange(PlainServer())
    exchange.start(None)
    step = exchange.receive_line(line)
    assert isinstance(step, ExchangeFailed) and step.failure is failure


def test_an_empty_line_is_an_empty_response() -> None:
    mech = Scripted(Challenge(data=b"?"), Failure(reason="no"))
    exchange = ServerExchange(mech)
    exchange.start(None)
    exchange.receive_line("")
    assert mech.received == [None, b""]


def test_temporary_failure() -> None:
    exchange = ServerExchange(Scripted(Failure(reason="store down", temporary=True)))
    step = exchange.start(b"")
    assert isinstance(step, ExchangeFailed)
    assert step.failure is ExchangeFailure.TEMPORARY and step.temporary
    assert step.reason == "store down"


def test_final_data_goes_out_as_a_challenge_then_an_empty_line_completes() -> None:
    success = Success(identity="tim", authcid="tim", final_data=b"v=proof")
    exchange = ServerExchange(Scripted(success))
    assert exchange.start(b"") == Challenge(data=b"v=proof")
    assert exchange.receive_line("") is success


@pytest.mark.parametrize("line", ["abcd", "=", "x"])
def test_anything_but_an_empty_answer_to_final_data_fails(line: str) -> None:
    exchange = ServerExchange(Scripted(Success(identity="t", authcid="t", final_data=b"v")))
    exchange.start(b"")
    step = exchange.receive_line(line)
    assert isinstance(step, ExchangeFailed) and step.failure is ExchangeFailure.CREDENTIALS


def test_final_data_can_still_be_cancelled() -> None:
    exchange = ServerExchange(Scripted(Success(identity="t", authcid="t", final_data=b"v")))
    exchange.start(b"")
    step = exchange.receive_line("*")
    assert isinstance(step, ExchangeFailed) and step.failure is ExchangeFailure.CANCELLED


def test_wrong_answer_is_our_callers_error() -> None:
    exchange = ServerExchange(PlainServer())
    exchange.start(PLAIN)
    with pytest.raises(LocalProtocolError):
        exchange.provide("nonsense")  # type: ignore[arg-type]


# --- the client driver -------------------------------------------------------------


@pytest.mark.parametrize(
    ("room", "argument", "held"),
    [(None, b64(PLAIN), False), (100, b64(PLAIN), False), (len(b64(PLAIN)), b64(PLAIN), False),
     (len(b64(PLAIN)) - 1, None, True)],
)
def test_initial_argument_or_held(room: int | None, argument: str | None, held: bool) -> None:
    exchange = ClientExchange(PlainClient("tim", "secret"))
    assert exchange.initial_argument(room) == argument
    if held:
        # RFC 4954 §4: the response that did not fit answers the empty challenge.
        assert exchange.answer("") == b64(PLAIN).encode() + b"\r\n"


class Empty(ClientMechanism):
    name: ClassVar[str] = "X-EMPTY"

    def __init__(self, initial: bytes | None) -> None:
        self.initial = initial

    def initial_response(self) -> bytes | None:
        return self.initial

    def respond(self, challenge: bytes) -> bytes:
        return challenge[::-1]

    def verify_success(self, final_data: bytes | None) -> None:
        return None

    @property
    def done(self) -> bool:
        return True


def test_empty_initial_response_is_an_equals_sign() -> None:
    assert ClientExchange(Empty(b"")).initial_argument(10) == "="
    assert ClientExchange(Empty(None)).initial_argument(10) is None


def test_answers_are_base64_and_bad_challenges_cancel() -> None:
    exchange = ClientExchange(Empty(None))
    assert exchange.answer(b64(b"abc")) == b64(b"cba").encode() + b"\r\n"
    assert exchange.answer("%%%") == b"*\r\n"
    assert exchange.error == "the server's challenge is not base64"
    # Once cancelled, every later challenge gets "*" again, and success does not stand.
    assert exchange.answer(b64(b"abc")) == b"*\r\n"
    assert not exchange.verify(None)


def test_a_refused_server_proof_fails_verify() -> None:
    client = ScramSha256Client("user", "pencil")
    exchange = ClientExchange(client)
    exchange.initial_argument(None)
    assert exchange.answer(b64(b"r=bogus")) == b"*\r\n"  # the nonce does not match ours
    assert exchange.error


def test_client_exchange_needs_a_mechanism() -> None:
    with pytest.raises(LocalProtocolError):
        ClientExchange("PLAIN")  # type: ignore[arg-type]
