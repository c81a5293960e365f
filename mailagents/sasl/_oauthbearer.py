"""The OAUTHBEARER mechanism (RFC 7628 §3), server and client.

The client speaks first, with a GS2 header (RFC 5801 §4) and key/value pairs each
ended by ``%x01`` (RFC 7628 §3.1)::

    kvsep       = %x01
    key         = 1*(ALPHA)
    value       = *(VCHAR / SP / HTAB / CR / LF )
    kvpair      = key "=" value kvsep
    client-resp = (gs2-header kvsep *kvpair kvsep) / kvsep

    C: n,a=user@example.com,^Ahost=server.example.com^Aport=143^Aauth=Bearer <token>^A^A
    S: (success)                                      when the token is good, or
    S: {"status":"invalid_token",...}                 a JSON error as a challenge,
    C: ^A                                             a dummy response, and failure.

``auth`` carries an HTTP ``Authorization`` value, ``Bearer`` and a ``b64token``
(RFC 6750 §2.1); the scheme name is case-insensitive, as in HTTP. Keys we do not know
are ignored (RFC 7628 §3.1); a known key twice is an error. Channel binding is not
defined for OAUTHBEARER, so a ``p=`` GS2 flag fails the exchange.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import ClassVar

from mailagents._protocol import LocalProtocolError
from mailagents.sasl._base import (
    Answer,
    AuthenticationError,
    Challenge,
    ClientMechanism,
    Failure,
    LegacySecret,
    NeedTokenCheck,
    NoSuchUser,
    PasswordVerdict,
    ScramSecrets,
    ServerMechanism,
    ServerStep,
    Success,
    TokenVerdict,
)
from mailagents.sasl._scram import scram_escape, scram_unescape

__all__ = ["OAuthBearerClient", "OAuthBearerServer"]

_KVSEP = "\x01"
_KEY = re.compile(r"[A-Za-z]+")
_VALUE = re.compile(r"[\x21-\x7e \t\r\n]*")
# RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_AUTH = re.compile(r"(?i:bearer) +([A-Za-z0-9\-._~+/]+=*)")
_PORT = re.compile(r"[0-9]{1,5}")
_DEFAULT_ERROR = b'{"status":"invalid_token"}'
_KNOWN_KEYS = ("auth", "host", "port")


class _Malformed(ValueError):
    """A client response that does not follow RFC 7628 §3.1."""


@dataclass(frozen=True, slots=True)
class _ClientResponse:
    authzid: str | None
    auth: str
    host: str | None
    port: int | None


def _parse(message: bytes) -> _ClientResponse:
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed("invalid UTF-8") from None
    # gs2-header = [gs2-nonstd-flag ","] gs2-cb-flag "," [gs2-authzid] "," (RFC 5801 §4);
    # the nonstandard flag is for GSS-API mechanisms only, and OAUTHBEARER has none.
    if text.startswith("p="):
        raise _Malformed("channel binding is not supported")
    if text[:2] not in ("n,", "y,"):
        raise _Malformed("bad GS2 channel-binding flag")
    end = text.find(",", 2)
    if end < 0:
        raise _Malformed("GS2 header not terminated")
    authzid: str | None = None
    authzid_part = text[2:end]
    if authzid_part:
        if not authzid_part.startswith("a="):
            raise _Malformed("expected a= in the GS2 header")
        authzid = scram_unescape(authzid_part[2:])  # raises _Malformed (a ValueError)
        if "\x00" in authzid:
            raise _Malformed("NUL in authzid")
    rest = text[end + 1 :]
    # kvsep *kvpair kvsep: at least the two separators, each pair ending with one.
    if len(rest) < 2 or rest[0] != _KVSEP or rest[-1] != _KVSEP:
        raise _Malformed("the key/value list must start and end with %x01")
    inner = rest[1:-1]
    if inner and inner[-1] != _KVSEP:
        raise _Malformed("a key/value pair is not terminated")
    values: dict[str, str] = {}
    for pair in inner[:-1].split(_KVSEP) if inner else []:
        key, sep, value = pair.partition("=")
        if not sep or not _KEY.fullmatch(key) or not _VALUE.fullmatch(value):
            raise _Malformed("malformed key/value pair")
        if key in _KNOWN_KEYS:
            if key in values:
                raise _Malformed(f"{key}= given twice")
            values[key] = value
    if "auth" not in values:
        raise _Malformed("no auth= value")
    port: int | None = None
    if "port" in values:
        if not _PORT.fullmatch(values["port"]) or int(values["port"]) > 65535:
            raise _Malformed("port= is not a port number")
        port = int(values["port"])
    return _ClientResponse(
        authzid=authzid or None, auth=values["auth"], host=values.get("host"), port=port
    )


class _S(enum.Enum):
    NEW = enum.auto()
    AWAIT_RESPONSE = enum.auto()
    AWAIT_TOKEN_CHECK = enum.auto()
    AWAIT_DUMMY = enum.auto()
    DONE = enum.auto()


class OAuthBearerServer(ServerMechanism):
    """The server side of OAUTHBEARER (RFC 7628).

    Parses the client's message strictly (a malformed one fails the exchange at once)
    and asks the caller with a :class:`NeedTokenCheck`, answered by a
    :class:`TokenVerdict`. A valid token ends in :class:`Success` with the verdict's
    identity. A refused token, an authzid other than that identity, or any answer but a
    :class:`TokenVerdict`, is reported to the client with the JSON error challenge of
    RFC 7628 §3.2.2 (the verdict's ``error_json``, else ``{"status":"invalid_token"}``);
    the client's dummy ``%x01`` response then ends the exchange in :class:`Failure`. An
    empty ``auth=`` value, which a client sends to discover the server's OAuth
    configuration, gets that error challenge directly.
    """

    name: ClassVar[str] = "OAUTHBEARER"

    def __init__(self) -> None:
        self._state = _S.NEW
        self._authzid: str | None = None
        self._reason = ""

    def _end(self, step: Success | Failure) -> ServerStep:
        self._state = _S.DONE
        return step

    def _refuse(self, reason: str, error_json: bytes | None = None) -> ServerStep:
        self._reason = reason
        self._state = _S.AWAIT_DUMMY
        return Challenge(data=error_json if error_json is not None else _DEFAULT_ERROR)

    def start(self, initial_response: bytes | None) -> ServerStep:
        """Begin; without an initial response, an empty challenge asks for the message."""
        if self._state is not _S.NEW:
            raise LocalProtocolError("OAUTHBEARER: start() called twice")
        if initial_response is None:
            self._state = _S.AWAIT_RESPONSE
            return Challenge(data=b"")
        return self._client_response(initial_response)

    def receive(self, response: bytes) -> ServerStep:
        """Feed the client's message (after the empty challenge) or its dummy response."""
        if self._state is _S.AWAIT_RESPONSE:
            return self._client_response(response)
        if self._state is _S.AWAIT_DUMMY:
            # RFC 7628 §3.2.3: the only valid response to an error is a single kvsep;
            # anything else fails the exchange just the same.
            if response != _KVSEP.encode("ascii"):
                return self._end(
                    Failure(reason=f"{self._reason}; then a malformed response to the error")
                )
            return self._end(Failure(reason=self._reason))
        raise LocalProtocolError("OAUTHBEARER: receive() without a pending challenge")

    def _client_response(self, message: bytes) -> ServerStep:
        try:
            parsed = _parse(message)
        except ValueError as exc:
            return self._end(Failure(reason=f"OAUTHBEARER: malformed client response: {exc}"))
        self._authzid = parsed.authzid
        if parsed.auth == "":
            return self._refuse("OAUTHBEARER: empty auth= (a discovery request)")
        match = _AUTH.fullmatch(parsed.auth)
        if match is None:
            return self._end(Failure(reason="OAUTHBEARER: auth= is not a Bearer token"))
        self._state = _S.AWAIT_TOKEN_CHECK
        return NeedTokenCheck(
            mechanism=self.name,
            authzid=parsed.authzid,
            token=match.group(1),
            host=parsed.host,
            port=parsed.port,
        )

    def provide(self, answer: Answer) -> ServerStep:
        """Give the caller's :class:`TokenVerdict` on the token."""
        if self._state is not _S.AWAIT_TOKEN_CHECK:
            raise LocalProtocolError("OAUTHBEARER: provide() without a pending NeedTokenCheck")
        if isinstance(answer, NoSuchUser | PasswordVerdict | ScramSecrets | LegacySecret):
            # A caller that does not know token checks: refuse, safely.
            return self._refuse(f"OAUTHBEARER: {type(answer).__name__} cannot check a token")
        if not isinstance(answer, TokenVerdict):
            raise LocalProtocolError(f"OAUTHBEARER: unexpected answer {answer!r}")
        if not answer.valid:
            return self._refuse("OAUTHBEARER: invalid token", answer.error_json)
        identity = answer.identity
        assert identity  # TokenVerdict enforces it
        if self._authzid is not None and self._authzid != identity:
            return self._refuse(
                f"OAUTHBEARER: the token of {identity!r} may not act as {self._authzid!r}"
            )
        return self._end(Success(identity=identity, authcid=identity))


class _CS(enum.Enum):
    NEW = enum.auto()
    SENT = enum.auto()
    ERROR_ANSWERED = enum.auto()


class OAuthBearerClient(ClientMechanism):
    """The client side of OAUTHBEARER (RFC 7628): one message carrying the bearer token.

    ``token`` is an OAuth 2.0 bearer token (RFC 6750 ``b64token`` characters);
    ``authzid`` the identity to act as (usually the user the token belongs to, or
    ``None``); ``host`` and ``port`` name the server being connected to, which RFC 7628
    §3.1 recommends sending. Invalid values raise :class:`LocalProtocolError`.

    If the server refuses the token it sends a JSON error as a challenge: the client
    keeps it in :attr:`error` and answers with the dummy ``%x01`` (RFC 7628 §3.2.3), and
    the protocol then reports the failure.
    """

    name: ClassVar[str] = "OAUTHBEARER"

    def __init__(
        self,
        token: str,
        *,
        authzid: str | None = None,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        if not _B64TOKEN.fullmatch(token):
            raise LocalProtocolError("OAUTHBEARER: the token is not an RFC 6750 b64token")
        if authzid is not None and ("\x00" in authzid or not authzid):
            raise LocalProtocolError("OAUTHBEARER: authzid is empty or contains NUL")
        if host is not None and not (host and _VALUE.fullmatch(host)):
            raise LocalProtocolError("OAUTHBEARER: host must be printable ASCII")
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535
        ):
            raise LocalProtocolError("OAUTHBEARER: port must be 0 to 65535")
        gs2_header = f"n,a={scram_escape(authzid)}," if authzid else "n,,"
        pairs = []
        if host is not None:
            pairs.append(f"host={host}")
        if port is not None:
            pairs.append(f"port={port}")
        pairs.append(f"auth=Bearer {token}")
        message = gs2_header + _KVSEP + "".join(p + _KVSEP for p in pairs) + _KVSEP
        self._message = message.encode("utf-8")
        self._state = _CS.NEW
        self._error: bytes | None = None

    @property
    def error(self) -> bytes | None:
        """The server's error challenge (JSON, RFC 7628 §3.2.2) if it refused the token."""
        return self._error

    def initial_response(self) -> bytes:
        """The whole client response (OAUTHBEARER is a client-first mechanism)."""
        if self._state is not _CS.NEW:
            raise LocalProtocolError("OAUTHBEARER: the message was already sent")
        self._state = _CS.SENT
        return self._message

    def respond(self, challenge: bytes) -> bytes:
        """Send the message after an empty challenge; answer an error with ``%x01``."""
        if self._state is _CS.NEW:
            if challenge:
                raise AuthenticationError("OAUTHBEARER: the first challenge must be empty")
            return self.initial_response()
        if self._state is _CS.SENT:
            # After our message the server's only challenge is its error (RFC 7628
            # §3.2.2); the dummy response lets it finish the exchange with a failure.
            self._error = challenge
            self._state = _CS.ERROR_ANSWERED
            return _KVSEP.encode("ascii")
        raise AuthenticationError("OAUTHBEARER: unexpected challenge after the error")

    def verify_success(self, final_data: bytes | None) -> None:
        """Accept the server's success; OAUTHBEARER has no additional data."""
        if self._state is _CS.NEW:
            raise AuthenticationError("OAUTHBEARER: success before the token was sent")
        if self._state is _CS.ERROR_ANSWERED:
            raise AuthenticationError("OAUTHBEARER: success after the server refused the token")
        if final_data:
            raise AuthenticationError("OAUTHBEARER: unexpected additional data with success")

    @property
    def done(self) -> bool:
        """True once the message (and the dummy response to an error, if any) was sent."""
        return self._state is not _CS.NEW
