"""The LOGIN mechanism (draft-murchison-sasl-login-00), server and client.

An obsolete plaintext mechanism, kept for legacy clients::

    S: "Username:"        (a challenge; clients ignore its content)
    C: <user name>        (or sent as the initial response)
    S: "Password:"
    C: <password>

User names and passwords are UTF-8 here, without NUL, each at most 255 octets (the
limit PLAIN has, RFC 4616 §2). There is no authorization identity. Like PLAIN, LOGIN
must only run over a protected channel, and a client should prefer PLAIN when offered.
"""

from __future__ import annotations

import enum
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
)
from mailagents.sasl._plain import _MAX_FIELD, _password_matches

__all__ = ["LoginClient", "LoginServer"]

# The prompts most servers send (the draft suggests "User Name" and "Password"; the
# colon forms are the ones clients meet in practice). Clients ignore them either way.
_USERNAME_PROMPT = b"Username:"
_PASSWORD_PROMPT = b"Password:"


class _S(enum.Enum):
    NEW = enum.auto()
    AWAIT_USERNAME = enum.auto()
    AWAIT_PASSWORD = enum.auto()
    AWAIT_CREDENTIALS = enum.auto()
    DONE = enum.auto()


def _field(label: str, raw: bytes) -> str:
    """Decode one client message; raise :class:`ValueError` with the reason."""
    if not raw:
        raise ValueError(f"empty {label}")
    if len(raw) > _MAX_FIELD:
        raise ValueError(f"{label} is longer than {_MAX_FIELD} octets")
    if b"\x00" in raw:
        raise ValueError(f"NUL in {label}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"invalid UTF-8 in {label}") from None


class LoginServer(ServerMechanism):
    """The server side of LOGIN.

    Sends ``Username:`` (unless the initial response carried the user name) and then
    ``Password:``; then asks for credentials with ``password`` set and ``authzid``
    ``None``. The caller answers as for PLAIN: a :class:`PasswordVerdict`, the user's
    :class:`ScramSecrets` (the mechanism checks the SASLprep-ared password against them,
    with PLAIN's code), or :class:`NoSuchUser`. An empty, over-long, NUL-bearing or
    invalid UTF-8 user name or password fails the exchange.
    """

    name: ClassVar[str] = "LOGIN"

    def __init__(self) -> None:
        self._state = _S.NEW
        self._authcid = ""
        self._password = ""

    def _end(self, step: Success | Failure) -> ServerStep:
        self._state = _S.DONE
        self._password = ""
        return step

    def start(self, initial_response: bytes | None) -> ServerStep:
        """Begin; an initial response, if any, is the user name (even an empty one)."""
        if self._state is not _S.NEW:
            raise LocalProtocolError("LOGIN: start() called twice")
        if initial_response is None:
            self._state = _S.AWAIT_USERNAME
            return Challenge(data=_USERNAME_PROMPT)
        return self._username(initial_response)

    def receive(self, response: bytes) -> ServerStep:
        """Feed the user name (after ``Username:``) or the password (after ``Password:``)."""
        if self._state is _S.AWAIT_USERNAME:
            return self._username(response)
        if self._state is _S.AWAIT_PASSWORD:
            return self._password_response(response)
        raise LocalProtocolError("LOGIN: receive() without a pending challenge")

    def _username(self, message: bytes) -> ServerStep:
        try:
            self._authcid = _field("user name", message)
        except ValueError as exc:
            return self._end(Failure(reason=f"LOGIN: {exc}"))
        self._state = _S.AWAIT_PASSWORD
        return Challenge(data=_PASSWORD_PROMPT)

    def _password_response(self, message: bytes) -> ServerStep:
        try:
            self._password = _field("password", message)
        except ValueError as exc:
            return self._end(Failure(reason=f"LOGIN: {exc}"))
        self._state = _S.AWAIT_CREDENTIALS
        return NeedCredentials(
            mechanism=self.name, authcid=self._authcid, authzid=None, password=self._password
        )

    def provide(self, answer: Answer) -> ServerStep:
        """Give the caller's verdict on the password (or the user's SCRAM secrets)."""
        if self._state is not _S.AWAIT_CREDENTIALS:
            raise LocalProtocolError("LOGIN: provide() without a pending NeedCredentials")
        if isinstance(answer, NoSuchUser):
            return self._end(Failure(reason="LOGIN: no such user"))
        if isinstance(answer, PasswordVerdict):
            valid = answer.valid
        elif isinstance(answer, ScramSecrets):
            valid = _password_matches(self._password, answer)
        else:
            raise LocalProtocolError(f"LOGIN: unexpected answer {answer!r}")
        if not valid:
            return self._end(Failure(reason="LOGIN: invalid password"))
        return self._end(Success(identity=self._authcid, authcid=self._authcid))


class _CS(enum.Enum):
    NEW = enum.auto()
    USERNAME_SENT = enum.auto()
    PASSWORD_SENT = enum.auto()


def _client_field(label: str, value: str) -> bytes:
    raw = value.encode("utf-8")
    try:
        _field(label, raw)
    except ValueError as exc:
        raise LocalProtocolError(f"LOGIN: {exc}") from None
    return raw


class LoginClient(ClientMechanism):
    """The client side of LOGIN: the user name, then the password, whatever the prompts say.

    ``initial_username`` sends the user name as the initial response (the draft allows
    it and most servers accept it; off by default, which every LOGIN server accepts).
    Raises :class:`LocalProtocolError` at construction for values the server would
    refuse (empty, NUL, more than 255 octets).
    """

    name: ClassVar[str] = "LOGIN"

    def __init__(self, authcid: str, password: str, *, initial_username: bool = False) -> None:
        self._username = _client_field("user name", authcid)
        self._password = _client_field("password", password)
        self._initial_username = initial_username
        self._state = _CS.NEW
        self._started = False

    def initial_response(self) -> bytes | None:
        """The user name if ``initial_username`` was set, otherwise ``None``."""
        if self._started:
            raise LocalProtocolError("LOGIN: initial_response() must be called once, first")
        self._started = True
        if not self._initial_username:
            return None
        self._state = _CS.USERNAME_SENT
        return self._username

    def respond(self, challenge: bytes) -> bytes:
        """Answer the next prompt (its content is ignored): user name, then password."""
        self._started = True
        if self._state is _CS.NEW:
            self._state = _CS.USERNAME_SENT
            return self._username
        if self._state is _CS.USERNAME_SENT:
            self._state = _CS.PASSWORD_SENT
            return self._password
        raise AuthenticationError("LOGIN: unexpected challenge after the password")

    def verify_success(self, final_data: bytes | None) -> None:
        """Accept the server's success; LOGIN has no additional data."""
        if self._state is not _CS.PASSWORD_SENT:
            raise AuthenticationError("LOGIN: success before the password was sent")
        if final_data:
            raise AuthenticationError("LOGIN: unexpected additional data with success")

    @property
    def done(self) -> bool:
        """True once the password has been sent."""
        return self._state is _CS.PASSWORD_SENT
