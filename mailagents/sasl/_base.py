"""The vocabulary shared by every SASL mechanism: steps, answers, the two base classes.

A server mechanism is a small state machine driven by three calls (``start``,
``receive``, ``provide``); each returns the next :data:`ServerStep`. A client mechanism
turns server challenges into responses. Both exchange raw bytes: base64 and framing
belong to the protocol core (SMTP, POP3, IMAP) that carries the exchange.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from mailagents._protocol import LocalProtocolError, ProtocolError

__all__ = [
    "AuthenticationError",
    "Challenge",
    "ClientMechanism",
    "CredentialsAnswer",
    "Failure",
    "NeedCredentials",
    "NoSuchUser",
    "PasswordVerdict",
    "ScramSecrets",
    "ServerMechanism",
    "ServerStep",
    "Success",
    "authorize",
]


class AuthenticationError(ProtocolError):
    """Raised by a client mechanism when the server's message is malformed or forged.

    For example a SCRAM server-first message whose nonce does not extend ours, an
    iteration count below 4096, or a server signature that does not verify: the server
    cannot be trusted, and the client must abandon the exchange.
    """


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """Data the server sends to the client; the client's answer goes to ``receive``.

    ``data`` is raw bytes and may be empty (PLAIN without an initial response); the
    protocol core base64-encodes it.
    """

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class NeedCredentials:
    """The mechanism needs the caller to look the user up; answer with ``provide``.

    ``authcid`` is the authentication identity (the user whose password is checked),
    ``authzid`` the identity the client asks to act as (``None`` when absent). For
    plaintext mechanisms (PLAIN) ``password`` is set and the caller answers with a
    :class:`PasswordVerdict` (or :class:`ScramSecrets`, which the mechanism can check
    the password against); for SCRAM it is ``None`` and the caller answers with
    :class:`ScramSecrets`. :class:`NoSuchUser` is always a valid answer.
    """

    mechanism: str
    authcid: str
    authzid: str | None
    password: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Success:
    """The exchange succeeded.

    ``identity`` is the authorised identity (the authzid if one was given and allowed,
    otherwise the authcid); ``authcid`` is whose credentials were checked.
    ``final_data`` is server data that must still reach the client with the success
    (SCRAM's ``v=`` server signature): SMTP sends it as one more challenge, IMAP in the
    tagged OK response.
    """

    identity: str
    authcid: str
    final_data: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """The exchange failed; ``reason`` is for logs, never for the client.

    ``temporary`` marks a failure that may succeed later (a user store outage); the
    mechanisms here never set it, the caller may.
    """

    reason: str
    temporary: bool = False


ServerStep: TypeAlias = Challenge | NeedCredentials | Success | Failure
"""What a server mechanism returns from each call."""


# --------------------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordVerdict:
    """The caller's answer to a plaintext :class:`NeedCredentials`: was the password right?

    ``may_act_as`` lists the other identities this user may act as (the authorization
    policy); an authzid outside it fails the exchange.
    """

    valid: bool
    may_act_as: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class ScramSecrets:
    """The stored SCRAM credentials of a user (RFC 5802 §3), as :func:`scram_secrets` makes.

    The server checks a client proof with these without ever knowing the password.
    ``may_act_as`` is the authorization policy, as in :class:`PasswordVerdict`.
    """

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes
    may_act_as: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise LocalProtocolError("ScramSecrets.iterations must be positive")
        if not self.salt:
            raise LocalProtocolError("ScramSecrets.salt must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class NoSuchUser:
    """The caller's answer when the authcid is not a known user."""


CredentialsAnswer: TypeAlias = PasswordVerdict | ScramSecrets | NoSuchUser
"""What the caller passes to :meth:`ServerMechanism.provide`."""


def authorize(authcid: str, authzid: str | None, may_act_as: frozenset[str]) -> str | None:
    """Return the authorised identity, or ``None`` if policy refuses the authzid.

    RFC 4616 §2 and RFC 5802 §5.1 (``a=``): an absent or empty authzid, or one equal to
    the authcid, means "act as myself"; any other identity must be allowed by policy.
    """
    if not authzid or authzid == authcid:
        return authcid
    if authzid in may_act_as:
        return authzid
    return None


# --------------------------------------------------------------------------- mechanisms


class ServerMechanism(abc.ABC):
    """The server side of one SASL exchange. Single use: make a new one per attempt.

    Call :meth:`start` once, then :meth:`receive` after each :class:`Challenge` and
    :meth:`provide` after each :class:`NeedCredentials`, until :class:`Success` or
    :class:`Failure`. A malformed client message yields :class:`Failure`, never an
    exception; calling out of turn raises :class:`LocalProtocolError`.
    """

    name: ClassVar[str]
    """The IANA-registered mechanism name, upper case."""

    @abc.abstractmethod
    def start(self, initial_response: bytes | None) -> ServerStep:
        """Begin the exchange.

        ``initial_response`` is ``None`` when the client sent none, ``b""`` when it sent
        an empty one (``=`` in SMTP), and the decoded bytes otherwise.
        """

    @abc.abstractmethod
    def receive(self, response: bytes) -> ServerStep:
        """Feed the client's (decoded) answer to the last :class:`Challenge`."""

    @abc.abstractmethod
    def provide(self, answer: CredentialsAnswer) -> ServerStep:
        """Give the caller's answer to the last :class:`NeedCredentials`."""


class ClientMechanism(abc.ABC):
    """The client side of one SASL exchange. Single use.

    Send :meth:`initial_response` if the protocol allows one (and it is not ``None``);
    answer each server challenge with :meth:`respond`; when the server reports success,
    call :meth:`verify_success` with any additional data it sent. A malformed or forged
    server message raises :class:`AuthenticationError`; misuse raises
    :class:`LocalProtocolError`.
    """

    name: ClassVar[str]
    """The IANA-registered mechanism name, upper case."""

    @abc.abstractmethod
    def initial_response(self) -> bytes | None:
        """The client's first message, or ``None`` if the mechanism has none.

        Calling it means the message is being sent: call it at most once, first.
        """

    @abc.abstractmethod
    def respond(self, challenge: bytes) -> bytes:
        """Answer a (decoded) server challenge."""

    @abc.abstractmethod
    def verify_success(self, final_data: bytes | None) -> None:
        """Check the server's success (and its additional data, if any).

        Raises :class:`AuthenticationError` if the server did not prove itself.
        """

    @property
    @abc.abstractmethod
    def done(self) -> bool:
        """True once the client has nothing left to send or check."""
