"""The SASL exchange drivers the protocol cores share: one for server cores, one for
client cores.

A protocol carries a SASL exchange in lines of base64 (RFC 4954 §4 for SMTP AUTH,
RFC 5034 §4 for POP3 AUTH, RFC 9051 §6.2.2 for IMAP AUTHENTICATE), with the same
markers everywhere: ``*`` cancels, ``=`` is an empty initial response (an empty line an
empty later response), and server data that comes with success (SCRAM's server
signature) goes out as one more challenge, answered by an empty line, where the protocol
has no field for it (RFC 4422 §5). The drivers own these rules; a core only formats the
challenge line (``334 ...``, ``+ ...``) and maps a failure to its own reply.
"""

from __future__ import annotations

import enum
from base64 import b64encode
from dataclasses import dataclass
from typing import TypeAlias

from mailagents._protocol import LocalProtocolError
from mailagents.sasl._base import (
    Answer,
    AuthenticationError,
    Challenge,
    ClientMechanism,
    LegacySecret,
    NeedCredentials,
    NoSuchUser,
    PasswordVerdict,
    ScramSecrets,
    ServerMechanism,
    ServerStep,
    Success,
    TokenVerdict,
)
from mailagents.sasl._framing import decode_base64

__all__ = [
    "ANSWERS",
    "ClientExchange",
    "ExchangeFailed",
    "ExchangeFailure",
    "ExchangeStep",
    "ServerExchange",
]

ANSWERS = (PasswordVerdict, ScramSecrets, NoSuchUser, TokenVerdict, LegacySecret)
"""The decisions that answer :class:`~mailagents.sasl.NeedCredentials` (the members of
:data:`~mailagents.sasl.Answer`), for a core's ``isinstance`` check."""


class ExchangeFailure(enum.Enum):
    """Why a server-side exchange ended without success; each core answers it with its
    own reply (SMTP 501/535/454, POP3 ``-ERR [AUTH]``/``[SYS/TEMP]``, IMAP NO/BAD)."""

    CANCELLED = "cancelled"
    """The client sent ``*`` (RFC 4954 §4: 501; RFC 5034 §4: -ERR)."""
    BAD_BASE64 = "bad-base64"
    """A response was not strict base64."""
    CREDENTIALS = "credentials"
    """The mechanism refused the client's credentials (or the client answered the
    final data with anything but an empty line)."""
    TEMPORARY = "temporary"
    """The mechanism (its caller) failed for a reason that may pass: a user store
    outage."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeFailed:
    """The exchange is over without success."""

    failure: ExchangeFailure
    reason: str
    """For logs, never for the client."""

    @property
    def temporary(self) -> bool:
        """The failure may pass if the client tries again later."""
        return self.failure is ExchangeFailure.TEMPORARY


ExchangeStep: TypeAlias = Challenge | NeedCredentials | Success | ExchangeFailed
"""What a :class:`ServerExchange` call gives: a challenge to send (base64 it into the
protocol's continuation line), a credentials request to hand to the application, the
success (no final data left: the driver sent it as a challenge first), or the failure."""


class ServerExchange:
    """One SASL exchange on the server side of a protocol core. Single use.

    Call :meth:`start` with the decoded initial response (:meth:`decode_initial` turns
    the command's argument into it), then :meth:`receive_line` with every client line
    that follows a challenge and :meth:`provide` with the application's answer to a
    :class:`NeedCredentials`, until :class:`Success` or :class:`ExchangeFailed`.
    """

    __slots__ = ("_final", "_success", "mechanism")

    def __init__(self, mechanism: ServerMechanism) -> None:
        self.mechanism = mechanism
        self._final = False  # the final data went out as a challenge: an empty line ends it
        self._success: Success | None = None

    @property
    def name(self) -> str:
        """The mechanism's name."""
        return self.mechanism.name

    @staticmethod
    def decode_initial(text: str) -> bytes | None:
        """The initial response a command's argument carries: ``=`` is the empty one
        (RFC 4954 §4, RFC 5034 §4, RFC 4959 §3); ``None`` when it is not strict base64."""
        return b"" if text == "=" else decode_base64(text)

    def start(self, initial: bytes | None) -> ExchangeStep:
        """Begin: ``initial`` is ``None`` when the command carried no initial response."""
        return self._step(self.mechanism.start(initial))

    def receive_line(self, line: str) -> ExchangeStep:
        """The client's line after a challenge (without its CRLF)."""
        text = line.strip(" ")
        if text == "*":
            return ExchangeFailed(failure=ExchangeFailure.CANCELLED, reason="cancelled")
        if self._final:
            success = self._success
            assert success is not None
            if text:
                return ExchangeFailed(
                    failure=ExchangeFailure.CREDENTIALS,
                    reason="a response to the final server data must be empty",
                )
            return success
        data = b"" if not text else decode_base64(text)
        if data is None:
            return ExchangeFailed(failure=ExchangeFailure.BAD_BASE64, reason="invalid base64")
        return self._step(self.mechanism.receive(data))

    def provide(self, answer: Answer) -> ExchangeStep:
        """The application's answer to the last :class:`NeedCredentials` (raises
        :class:`LocalProtocolError` for an answer the mechanism cannot take)."""
        return self._step(self.mechanism.provide(answer))

    def _step(self, step: ServerStep) -> ExchangeStep:
        if isinstance(step, Success):
            if step.final_data:
                # RFC 4422 §5: success data for a profile without a field for it goes
                # out as one more challenge; the client's empty answer completes it.
                self._final = True
                self._success = step
                return Challenge(data=step.final_data)
            return step
        if isinstance(step, (Challenge, NeedCredentials)):
            return step
        failure = ExchangeFailure.TEMPORARY if step.temporary else ExchangeFailure.CREDENTIALS
        return ExchangeFailed(failure=failure, reason=step.reason)


class ClientExchange:
    """One SASL exchange on the client side of a protocol core. Single use.

    :meth:`initial_argument` gives what goes on the command line; :meth:`answer` turns
    each server challenge (its base64 text) into the line to send; :meth:`verify`
    checks the server's success. A challenge that is not base64, or one the mechanism
    refuses, is answered with ``*`` (cancel) and remembered in :attr:`error`, which the
    core reports with the server's final refusal.
    """

    __slots__ = ("_held", "error", "mechanism")

    def __init__(self, mechanism: ClientMechanism) -> None:
        if not isinstance(mechanism, ClientMechanism):
            raise LocalProtocolError("mechanism must be a sasl.ClientMechanism")
        self.mechanism = mechanism
        self._held: bytes | None = None
        self.error: str | None = None
        """Why the client cancelled the exchange, or why the server's success did not
        verify; ``None`` otherwise."""

    def initial_argument(self, room: int | None) -> str | None:
        """The initial response as it goes on the command line (``=`` when empty), or
        ``None`` when the mechanism has none or the line would pass ``room`` octets for
        it (the response then goes in answer to the first, empty, challenge; RFC 4954
        §4). ``room`` ``None``: no bound. Call it once, only where the protocol allows an
        initial response."""
        first = self.mechanism.initial_response()
        if first is None:
            return None
        encoded = b64encode(first) if first else b"="
        if room is not None and len(encoded) > room:
            self._held = b64encode(first)
            return None
        return encoded.decode("ascii")

    def answer(self, challenge: str) -> bytes:
        """The line (CRLF included) that answers a server challenge given as its base64
        text."""
        if self.error is not None:
            return b"*\r\n"
        held = self._held
        if held is not None:
            self._held = None
            return held + b"\r\n"
        data = decode_base64(challenge.strip(" "))
        if data is None:
            self.error = "the server's challenge is not base64"
            return b"*\r\n"
        try:
            response = self.mechanism.respond(data)
        except (AuthenticationError, LocalProtocolError) as exc:
            self.error = str(exc)
            return b"*\r\n"
        return b64encode(response) + b"\r\n"

    def verify(self, final_data: bytes | None = None) -> bool:
        """Whether the server's success stands: the client did not cancel and the
        mechanism accepts the server's proof (SCRAM's signature); else :attr:`error`
        says why."""
        if self.error is not None:
            return False
        try:
            self.mechanism.verify_success(final_data)
        except (AuthenticationError, LocalProtocolError) as exc:
            self.error = str(exc)
            return False
        return True
