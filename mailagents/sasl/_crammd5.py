"""The CRAM-MD5 mechanism (RFC 2195), server and client. Legacy: off by default.

The server speaks first::

    S: <1896.697170952@postoffice.reston.mci.net>      a unique msg-id-like challenge
    C: tim b913a602c7eda7a495b4e6e7334d3890             user SP hex(HMAC-MD5(secret, challenge))

The password never crosses the wire, but the server must hold a plaintext-equivalent
secret: the HMAC is keyed with the shared secret itself, so whoever reads the server's
store can log in as every user, and the exchange is open to offline dictionary attacks
on a captured challenge and response. That is why the server is not in the default
registry (``SERVER_MECHANISMS``) and works only for users whose
store entry was made with a legacy-secret option (answered with
:class:`~mailagents.sasl.LegacySecret`).

RFC 2195 wants the challenge to carry a timestamp and the server's host name; a
protocol core has neither, so the caller may pass its own challenge, and the default is
``<random digits.random digits@mailagents>`` drawn with :mod:`secrets`.
"""

from __future__ import annotations

import enum
import hmac
import re
import secrets
from typing import ClassVar

from mailagents._protocol import LocalProtocolError
from mailagents.sasl._base import (
    Answer,
    AuthenticationError,
    Challenge,
    ClientMechanism,
    Failure,
    LegacySecret,
    NeedCredentials,
    NoSuchUser,
    PasswordVerdict,
    ScramSecrets,
    ServerMechanism,
    ServerStep,
    Success,
)

__all__ = ["CramMd5Client", "CramMd5Server"]

# A msg-id-like challenge (RFC 2195 §2 asks for the syntax of an RFC 822 msg-id):
# printable ASCII without spaces between angle brackets, with an "@".
_CHALLENGE = re.compile(rb"<[\x21-\x3d\x3f-\x7e]+@[\x21-\x3d\x3f-\x7e]+>")
_DIGEST = re.compile(r"[0-9a-f]{32}")
_MAX_USER = 255


def _digest(key: bytes, challenge: bytes) -> str:
    return hmac.new(key, challenge, "md5").hexdigest()


def _new_challenge() -> bytes:
    first = secrets.randbelow(10**10)
    second = secrets.randbelow(10**10)
    return f"<{first}.{second}@mailagents>".encode("ascii")


class _S(enum.Enum):
    NEW = enum.auto()
    AWAIT_RESPONSE = enum.auto()
    AWAIT_CREDENTIALS = enum.auto()
    DONE = enum.auto()


class CramMd5Server(ServerMechanism):
    """The server side of CRAM-MD5 (RFC 2195). Legacy: enable it explicitly.

    ``challenge`` is the server's challenge, for example
    ``<pid.clock@host.example>`` made by the caller with its clock and host name; by
    default a random one. It must be unique per exchange and look like a msg-id
    (:class:`LocalProtocolError` otherwise). The client's response is parsed as the user
    name, a space and 32 lower-case hex digits (RFC 2195 §2); the user name must be
    UTF-8 without NUL, at most 255 octets. Then the mechanism asks for credentials
    (``password`` ``None``): answer with the user's :class:`LegacySecret`, against which
    the digest is compared in constant time, or :class:`NoSuchUser`. A
    :class:`PasswordVerdict` or :class:`ScramSecrets` cannot check the response, so it
    fails the exchange. A client that sends an initial response fails too: CRAM-MD5
    starts with the server.
    """

    name: ClassVar[str] = "CRAM-MD5"

    def __init__(self, *, challenge: bytes | None = None) -> None:
        if challenge is None:
            challenge = _new_challenge()
        elif not isinstance(challenge, bytes) or not _CHALLENGE.fullmatch(challenge):
            raise LocalProtocolError("CRAM-MD5: the challenge must look like <unique@host>")
        self._challenge = challenge
        self._state = _S.NEW
        self._authcid = ""
        self._digest = ""

    def _end(self, step: Success | Failure) -> ServerStep:
        self._state = _S.DONE
        return step

    def start(self, initial_response: bytes | None) -> ServerStep:
        """Begin with the challenge; an initial response from the client fails."""
        if self._state is not _S.NEW:
            raise LocalProtocolError("CRAM-MD5: start() called twice")
        if initial_response is not None:
            return self._end(Failure(reason="CRAM-MD5: the client cannot send first"))
        self._state = _S.AWAIT_RESPONSE
        return Challenge(data=self._challenge)

    def receive(self, response: bytes) -> ServerStep:
        """Feed the client's ``user SP digest`` response."""
        if self._state is not _S.AWAIT_RESPONSE:
            raise LocalProtocolError("CRAM-MD5: receive() without a pending challenge")
        raw_user, sep, raw_digest = response.rpartition(b" ")
        if not sep or not raw_user:
            return self._end(Failure(reason="CRAM-MD5: response is not 'user digest'"))
        if len(raw_user) > _MAX_USER or b"\x00" in raw_user:
            return self._end(Failure(reason="CRAM-MD5: user name too long or contains NUL"))
        try:
            authcid = raw_user.decode("utf-8")
            digest = raw_digest.decode("ascii")
        except UnicodeDecodeError:
            return self._end(Failure(reason="CRAM-MD5: invalid UTF-8 in response"))
        if not _DIGEST.fullmatch(digest):
            return self._end(Failure(reason="CRAM-MD5: digest is not 32 lower-case hex digits"))
        self._authcid, self._digest = authcid, digest
        self._state = _S.AWAIT_CREDENTIALS
        return NeedCredentials(mechanism=self.name, authcid=authcid, authzid=None)

    def provide(self, answer: Answer) -> ServerStep:
        """Give the user's :class:`LegacySecret`, or :class:`NoSuchUser`."""
        if self._state is not _S.AWAIT_CREDENTIALS:
            raise LocalProtocolError("CRAM-MD5: provide() without a pending NeedCredentials")
        if isinstance(answer, NoSuchUser):
            return self._end(Failure(reason="CRAM-MD5: no such user"))
        if isinstance(answer, PasswordVerdict | ScramSecrets):
            return self._end(
                Failure(reason=f"CRAM-MD5: {type(answer).__name__} cannot check the response")
            )
        if not isinstance(answer, LegacySecret):
            raise LocalProtocolError(f"CRAM-MD5: unexpected answer {answer!r}")
        secret = answer.secret
        key = secret.encode("utf-8") if isinstance(secret, str) else secret
        expected = _digest(key, self._challenge)
        if not hmac.compare_digest(expected.encode("ascii"), self._digest.encode("ascii")):
            return self._end(Failure(reason="CRAM-MD5: invalid digest"))
        return self._end(Success(identity=self._authcid, authcid=self._authcid))


class CramMd5Client(ClientMechanism):
    """The client side of CRAM-MD5 (RFC 2195): ``user SP hex(HMAC-MD5(password, challenge))``.

    Use it only when nothing better is offered. The password is keyed as UTF-8. Raises
    :class:`LocalProtocolError` at construction for a user name the server would refuse
    (empty, NUL, more than 255 octets), and :class:`AuthenticationError` for a challenge
    that is not msg-id-like.
    """

    name: ClassVar[str] = "CRAM-MD5"

    def __init__(self, authcid: str, password: str) -> None:
        user = authcid.encode("utf-8")
        if not user or b"\x00" in user or len(user) > _MAX_USER:
            raise LocalProtocolError("CRAM-MD5: user name empty, with NUL, or too long")
        self._user = user
        self._key = password.encode("utf-8")
        self._answered = False

    def initial_response(self) -> None:
        """None: the server speaks first."""
        return None

    def respond(self, challenge: bytes) -> bytes:
        """Answer the server's challenge with the user name and the keyed digest."""
        if self._answered:
            raise AuthenticationError("CRAM-MD5: unexpected second challenge")
        if not _CHALLENGE.fullmatch(challenge):
            raise AuthenticationError("CRAM-MD5: the challenge does not look like <unique@host>")
        self._answered = True
        return self._user + b" " + _digest(self._key, challenge).encode("ascii")

    def verify_success(self, final_data: bytes | None) -> None:
        """Accept the server's success; CRAM-MD5 has no additional data."""
        if not self._answered:
            raise AuthenticationError("CRAM-MD5: success before the response was sent")
        if final_data:
            raise AuthenticationError("CRAM-MD5: unexpected additional data with success")

    @property
    def done(self) -> bool:
        """True once the response has been sent."""
        return self._answered
