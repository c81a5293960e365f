"""The vocabulary shared by every SASL mechanism: steps, answers, the two base classes.

A server mechanism is a small state machine driven by three calls (``start``,
``receive``, ``provide``); each returns the next :data:`ServerStep`. A client mechanism
turns server challenges into responses. Both exchange raw bytes: base64 and framing
belong to the protocol core (SMTP, POP3, IMAP) that carries the exchange.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field
from typing import ClassVar, TypeAlias

from mailagents._protocol import LocalProtocolError, ProtocolError

__all__ = [
    "Answer",
    "AuthenticationError",
    "Challenge",
    "ClientMechanism",
    "CredentialsAnswer",
    "Failure",
    "LegacySecret",
    "NeedCredentials",
    "NeedTokenCheck",
    "NoSuchUser",
    "PasswordVerdict",
    "ScramSecrets",
    "ServerMechanism",
    "ServerStep",
    "Success",
    "TokenVerdict",
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
class NeedTokenCheck(NeedCredentials):
    """OAUTHBEARER (RFC 7628) asks the caller to check a bearer token; answer with ``provide``.

    ``token`` is the bearer token the client sent (``auth=Bearer <token>``), ``authzid``
    the identity it asks to act as (``None`` when absent), ``host`` and ``port`` the
    server the client believes it is talking to (``None`` when it did not say). The
    caller validates the token (signature, expiry, audience, scope: the pluggable token
    check) and answers with a :class:`TokenVerdict`; any other answer fails the exchange.

    It is a :class:`NeedCredentials` so that a protocol core forwards it wherever it
    forwards credentials requests; ``authcid`` is always empty (a token, not a name,
    identifies the user: the identity comes back in ``TokenVerdict.identity``) and
    ``password`` is ``None``. The token is left out of ``repr()``, so that logging the
    request does not leak it.
    """

    authcid: str = ""
    token: str = field(repr=False)
    host: str | None = None
    port: int | None = None


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
"""What a server mechanism returns from each call (:class:`NeedTokenCheck` is a
:class:`NeedCredentials`)."""


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


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenVerdict:
    """The caller's answer to a :class:`NeedTokenCheck`: is the bearer token good, and whose?

    ``identity`` is the user the token was issued to; it is required when ``valid``
    (the mechanism never trusts the client's authzid alone). An authzid other than
    ``identity`` fails the exchange. ``error_json`` replaces the default error sent to
    the client when the token is refused (RFC 7628 §3.2.2, a JSON object with at least a
    ``status``, for example ``{"status":"invalid_token","scope":"mail",
    "openid-configuration":"https://..."}``); the default is
    ``{"status":"invalid_token"}``. Inconsistent values raise
    :class:`LocalProtocolError`.
    """

    valid: bool
    identity: str | None = None
    error_json: bytes | None = None

    def __post_init__(self) -> None:
        if self.valid and not self.identity:
            raise LocalProtocolError("TokenVerdict: a valid token needs an identity")
        if self.error_json is not None:
            if self.valid:
                raise LocalProtocolError("TokenVerdict: error_json only goes with valid=False")
            try:
                parsed = json.loads(self.error_json)
            except (ValueError, RecursionError):
                raise LocalProtocolError("TokenVerdict: error_json is not JSON") from None
            if not isinstance(parsed, dict) or not isinstance(parsed.get("status"), str):
                raise LocalProtocolError(
                    "TokenVerdict: error_json must be a JSON object with a string status"
                )


@dataclass(frozen=True, slots=True, kw_only=True)
class LegacySecret:
    """The caller's answer to a CRAM-MD5 :class:`NeedCredentials`: the plaintext-equivalent secret.

    CRAM-MD5 (RFC 2195) keys an HMAC-MD5 with the shared secret itself, so the server
    must keep the password, or something that works as well as it, in recoverable
    form. Only users whose entry was made with a legacy-secret option have one; for
    every other user answer :class:`NoSuchUser` (a :class:`PasswordVerdict` or
    :class:`ScramSecrets` cannot check a CRAM-MD5 response, and fails the exchange).
    A ``str`` is used as its UTF-8 encoding.
    """

    secret: str | bytes

    def __post_init__(self) -> None:
        if not isinstance(self.secret, str | bytes):
            raise LocalProtocolError("LegacySecret.secret must be str or bytes")


Answer: TypeAlias = CredentialsAnswer | TokenVerdict | LegacySecret
"""Every answer a server mechanism may be given: ``CredentialsAnswer``, and
:class:`TokenVerdict` (OAUTHBEARER) and :class:`LegacySecret` (CRAM-MD5)."""


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

    Mechanisms that take the newer answers (:class:`TokenVerdict` for OAUTHBEARER,
    :class:`LegacySecret` for CRAM-MD5) accept any ``Answer`` in ``provide``.
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
    def provide(self, answer: Answer) -> ServerStep:
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
