"""The PLAIN mechanism (RFC 4616), server and client.

The client's single message is ``[authzid] NUL authcid NUL passwd`` in UTF-8, each
field at most 255 octets (RFC 4616 §2). PLAIN must only run over a protected channel.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from typing import ClassVar

from mailagents._protocol import LocalProtocolError
from mailagents.sasl._base import (
    Answer,
    AuthenticationError,
    Challenge,
    ClientMechanism,
    Failure,
    NeedCredentials,
    NoSuchUser,
    PasswordVerdict,
    ScramSecrets,
    ServerMechanism,
    ServerStep,
    Success,
    authorize,
)
from mailagents.sasl._saslprep import saslprep

__all__ = ["PlainClient", "PlainServer"]

_MAX_FIELD = 255  # RFC 4616 §2: "1*SAFE" limited to 255 octets for each field.


class _S(enum.Enum):
    NEW = enum.auto()
    AWAIT_RESPONSE = enum.auto()
    AWAIT_CREDENTIALS = enum.auto()
    DONE = enum.auto()


class PlainServer(ServerMechanism):
    """The server side of PLAIN.

    Without an initial response it sends an empty challenge (RFC 4616 §2). Once the
    message is parsed it asks for credentials with ``password`` set; the caller answers
    with a :class:`PasswordVerdict` after checking the password against its store, or
    with the user's :class:`ScramSecrets`, against which the mechanism checks the
    SASLprep-ared password itself. The authcid, authzid and password are passed on as
    the client sent them; RFC 4616 §2 leaves their comparison to the user store
    (SASLprep, :func:`saslprep`, is the usual preparation).
    """

    name: ClassVar[str] = "PLAIN"

    def __init__(self) -> None:
        self._state = _S.NEW
        self._authcid = ""
        self._authzid: str | None = None
        self._password = ""

    def _end(self, step: Success | Failure) -> ServerStep:
        self._state = _S.DONE
        return step

    def start(self, initial_response: bytes | None) -> ServerStep:
        """Begin; ``None`` means no initial response, so an empty challenge is sent."""
        if self._state is not _S.NEW:
            raise LocalProtocolError("PLAIN: start() called twice")
        if initial_response is None:
            self._state = _S.AWAIT_RESPONSE
            return Challenge(data=b"")
        return self._parse(initial_response)

    def receive(self, response: bytes) -> ServerStep:
        """Feed the client's message, sent in answer to the empty challenge."""
        if self._state is not _S.AWAIT_RESPONSE:
            raise LocalProtocolError("PLAIN: receive() without a pending challenge")
        return self._parse(response)

    def _parse(self, message: bytes) -> ServerStep:
        parts = message.split(b"\x00")
        if len(parts) != 3:
            return self._end(Failure(reason="PLAIN: message needs exactly two NUL separators"))
        raw_authzid, raw_authcid, raw_password = parts
        if any(len(p) > _MAX_FIELD for p in parts):
            return self._end(Failure(reason="PLAIN: a field is longer than 255 octets"))
        if not raw_authcid or not raw_password:
            return self._end(Failure(reason="PLAIN: empty authcid or password"))
        try:
            authzid = raw_authzid.decode("utf-8")
            authcid = raw_authcid.decode("utf-8")
            password = raw_password.decode("utf-8")
        except UnicodeDecodeError:
            return self._end(Failure(reason="PLAIN: invalid UTF-8"))
        self._authzid = authzid or None
        self._authcid = authcid
        self._password = password
        self._state = _S.AWAIT_CREDENTIALS
        return NeedCredentials(
            mechanism=self.name, authcid=authcid, authzid=self._authzid, password=password
        )

    def provide(self, answer: Answer) -> ServerStep:
        """Give the caller's verdict on the credentials."""
        if self._state is not _S.AWAIT_CREDENTIALS:
            raise LocalProtocolError("PLAIN: provide() without a pending NeedCredentials")
        if isinstance(answer, NoSuchUser):
            return self._end(Failure(reason="PLAIN: no such user"))
        if isinstance(answer, PasswordVerdict):
            valid = answer.valid
        elif isinstance(answer, ScramSecrets):
            valid = _password_matches(self._password, answer)
        else:
            raise LocalProtocolError(f"PLAIN: unexpected answer {answer!r}")
        self._password = ""
        if not valid:
            return self._end(Failure(reason="PLAIN: invalid password"))
        identity = authorize(self._authcid, self._authzid, answer.may_act_as)
        if identity is None:
            return self._end(
                Failure(reason=f"PLAIN: {self._authcid!r} may not act as {self._authzid!r}")
            )
        return self._end(Success(identity=identity, authcid=self._authcid))


def _password_matches(password: str, secrets: ScramSecrets) -> bool:
    """Check a plaintext password against stored SCRAM-SHA-256 secrets (RFC 5802 §3)."""
    if len(secrets.stored_key) != hashlib.sha256().digest_size:
        raise LocalProtocolError("PLAIN: ScramSecrets must be SCRAM-SHA-256 secrets")
    try:
        prepared = saslprep(password, allow_unassigned=True)
    except ValueError:
        return False
    salted = hashlib.pbkdf2_hmac(
        "sha256", prepared.encode("utf-8"), secrets.salt, secrets.iterations
    )
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), secrets.stored_key)


def _check_field(label: str, value: str, *, required: bool) -> bytes:
    raw = value.encode("utf-8")
    if "\x00" in value:
        raise LocalProtocolError(f"PLAIN: {label} contains NUL")
    if required and not raw:
        raise LocalProtocolError(f"PLAIN: {label} is empty")
    if len(raw) > _MAX_FIELD:
        raise LocalProtocolError(f"PLAIN: {label} is longer than 255 octets")
    return raw


class PlainClient(ClientMechanism):
    """The client side of PLAIN: one message carrying the credentials.

    Raises :class:`LocalProtocolError` at construction for values PLAIN cannot carry
    (NUL, empty authcid or password, more than 255 octets).
    """

    name: ClassVar[str] = "PLAIN"

    def __init__(self, authcid: str, password: str, authzid: str | None = None) -> None:
        self._message = b"\x00".join(
            [
                _check_field("authzid", authzid or "", required=False),
                _check_field("authcid", authcid, required=True),
                _check_field("password", password, required=True),
            ]
        )
        self._sent = False

    def _send(self) -> bytes:
        self._sent = True
        return self._message

    def initial_response(self) -> bytes:
        """The whole PLAIN message (the client speaks first)."""
        if self._sent:
            raise LocalProtocolError("PLAIN: the message was already sent")
        return self._send()

    def respond(self, challenge: bytes) -> bytes:
        """Answer the server's empty challenge with the message."""
        if self._sent:
            raise AuthenticationError("PLAIN: unexpected challenge after the message")
        if challenge:
            raise AuthenticationError("PLAIN: the server's challenge must be empty")
        return self._send()

    def verify_success(self, final_data: bytes | None) -> None:
        """Accept the server's success; PLAIN has no additional data."""
        if not self._sent:
            raise AuthenticationError("PLAIN: success before the credentials were sent")
        if final_data:
            raise AuthenticationError("PLAIN: unexpected additional data with success")

    @property
    def done(self) -> bool:
        """True once the message has been sent."""
        return self._sent
