"""SCRAM-SHA-256 (RFC 5802, RFC 7677), server and client, without channel binding.

The exchange (RFC 5802 §5)::

    C: n,,n=user,r=<client nonce>                       client-first
    S: r=<client nonce><server nonce>,s=<salt>,i=4096    server-first
    C: c=biws,r=<both nonces>,p=<client proof>           client-final
    S: v=<server signature>                              server-final

Messages are split on ``,``: no attribute value may contain a comma (RFC 5802 §7,
``value-char``), so splitting is exact.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
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

__all__ = [
    "MIN_ITERATIONS",
    "ScramSha256Client",
    "ScramSha256Server",
    "scram_escape",
    "scram_secrets",
    "scram_unescape",
]

MIN_ITERATIONS = 4096
"""The fewest PBKDF2 iterations a client accepts (RFC 7677 §4: at least 4096)."""

_DEFAULT_MAX_ITERATIONS = 1_000_000
_SALT_LENGTH = 16
# printable = %x21-2B / %x2D-7E ;; printable ASCII except "," (RFC 5802 §7).
_PRINTABLE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
# posit-number = %x31-39 *DIGIT; at most 10 digits, which is plenty.
_POSIT_NUMBER = re.compile(r"[1-9][0-9]{0,9}")
# attr-val = ALPHA "=" value; value = 1*value-char (any UTF-8 but NUL and ",").
_ATTR_VAL = re.compile(r"[A-Za-z]=[^\x00,]+")
# Attribute names RFC 5802 defines; they may not reappear as "extensions".
_KNOWN_ATTRIBUTES = frozenset("anmrcspve")


class _Malformed(ValueError):
    """A SCRAM message that does not follow RFC 5802 §7."""


def scram_escape(name: str) -> str:
    """Encode a user name for ``n=``/``a=``: ``=`` as ``=3D``, ``,`` as ``=2C`` (RFC 5802 §5.1)."""
    return name.replace("=", "=3D").replace(",", "=2C")


def scram_unescape(saslname: str) -> str:
    """Decode a ``saslname``; raise :class:`ValueError` on a stray ``=`` or an empty name.

    RFC 5802 §5.1: "If the server receives a username that contains '=' not followed by
    either '2C' or '3D', then the server MUST fail the authentication."
    """
    if not saslname:
        raise _Malformed("empty saslname")
    out: list[str] = []
    i = 0
    while i < len(saslname):
        ch = saslname[i]
        if ch == "=":
            code = saslname[i + 1 : i + 3]
            if code == "2C":
                out.append(",")
            elif code == "3D":
                out.append("=")
            else:
                raise _Malformed("'=' not followed by 2C or 3D in a saslname")
            i += 3
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _b64decode(value: str) -> bytes:
    try:
        raw = value.encode("ascii")
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise _Malformed("invalid base64") from exc
    # Only the canonical encoding: no stray bits in the last character (RFC 4648 §3.5).
    if base64.b64encode(decoded) != raw:
        raise _Malformed("non-canonical base64")
    return decoded


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _attr(part: str, name: str) -> str:
    if not part.startswith(name + "="):
        raise _Malformed(f"expected attribute {name}=")
    return part[2:]


def _nonce(value: str) -> str:
    if not _PRINTABLE.fullmatch(value):
        raise _Malformed("nonce is not printable ASCII without ','")
    return value


def _check_extensions(parts: list[str]) -> None:
    # RFC 5802 §7: "unrecognized attributes not defined in this document MUST be
    # ignored"; but they must be well-formed, and a defined attribute repeated or out of
    # place is an error, not an extension.
    for part in parts:
        if not _ATTR_VAL.fullmatch(part):
            raise _Malformed("malformed attribute")
        if part[0] in _KNOWN_ATTRIBUTES:
            raise _Malformed(f"unexpected attribute {part[0]}=")


def _decode(message: bytes) -> str:
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Malformed("invalid UTF-8") from exc
    if "\x00" in text:
        raise _Malformed("NUL in message")
    return text


def _check_nonce(nonce: str | None) -> str:
    if nonce is None:
        return secrets.token_urlsafe(24)
    if not _PRINTABLE.fullmatch(nonce):
        raise LocalProtocolError("SCRAM nonce must be printable ASCII without ','")
    return nonce


# --------------------------------------------------------------------------- keys


class _Hash:
    """The key derivations of RFC 5802 §3 for one hash function."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.size = hashlib.new(name).digest_size

    def hmac(self, key: bytes, msg: bytes) -> bytes:
        return hmac.digest(key, msg, self.name)

    def h(self, data: bytes) -> bytes:
        return hashlib.new(self.name, data).digest()

    def salted_password(self, password: str, salt: bytes, iterations: int) -> bytes:
        # SaltedPassword := Hi(Normalize(password), salt, i); Hi is PBKDF2 with HMAC
        # (RFC 5802 §2.2). Normalize is SASLprep as a query (unassigned allowed).
        try:
            prepared = saslprep(password, allow_unassigned=True)
        except ValueError as exc:
            raise ValueError(f"password cannot be prepared: {exc}") from None
        return hashlib.pbkdf2_hmac(self.name, prepared.encode("utf-8"), salt, iterations)


_SHA256 = _Hash("sha256")


def scram_secrets(
    password: str,
    *,
    salt: bytes | None = None,
    iterations: int = MIN_ITERATIONS,
    hash_name: str = "sha256",
) -> ScramSecrets:
    """Derive the values a user store keeps for SCRAM instead of the password.

    SaltedPassword = PBKDF2(SASLprep(password), salt, iterations); ClientKey and
    ServerKey are HMACs of it; StoredKey = H(ClientKey) (RFC 5802 §3). A random 16-octet
    salt is drawn when none is given. Raises :class:`ValueError` if the password cannot
    be prepared with SASLprep or ``iterations`` is not positive.
    """
    if iterations < 1:
        raise ValueError("iterations must be positive")
    if salt is None:
        salt = secrets.token_bytes(_SALT_LENGTH)
    if not salt:
        raise ValueError("salt must not be empty")
    hf = _Hash(hash_name)
    salted = hf.salted_password(password, salt, iterations)
    client_key = hf.hmac(salted, b"Client Key")
    return ScramSecrets(
        salt=salt,
        iterations=iterations,
        stored_key=hf.h(client_key),
        server_key=hf.hmac(salted, b"Server Key"),
    )


# --------------------------------------------------------------------------- server


class _SS(enum.Enum):
    NEW = enum.auto()
    AWAIT_CLIENT_FIRST = enum.auto()
    AWAIT_CREDENTIALS = enum.auto()
    AWAIT_CLIENT_FINAL = enum.auto()
    DONE = enum.auto()


class ScramSha256Server(ServerMechanism):
    """The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677), without channel binding.

    ``nonce`` is the server's part of the nonce (random when ``None``; inject it only in
    tests). ``fake_salt_key`` derives a stable fake salt for unknown users, so that a
    client cannot tell unknown users from known ones by their salt (RFC 5802 §5.1, the
    note on ``e=unknown-user``): pass the same secret key to every instance; the
    default, a random key per instance, hides whether the user exists from a single
    attempt only. Unknown users get 4096 iterations: store real users with the same
    count so that the two look alike.

    The authcid in :class:`NeedCredentials` is the ``n=`` user name unescaped and
    prepared with SASLprep (RFC 5802 §5.1); the store should key users the same way.
    """

    name: ClassVar[str] = "SCRAM-SHA-256"
    _hash: ClassVar[_Hash] = _SHA256

    def __init__(self, *, nonce: str | None = None, fake_salt_key: bytes | None = None) -> None:
        self._server_nonce = _check_nonce(nonce)
        self._fake_salt_key = (
            fake_salt_key if fake_salt_key is not None else secrets.token_bytes(32)
        )
        self._state = _SS.NEW
        self._gs2_header = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._authcid = ""
        self._authzid: str | None = None
        self._secrets: ScramSecrets | None = None  # None: unknown user, fail at the end

    def _end(self, step: Success | Failure) -> ServerStep:
        self._state = _SS.DONE
        return step

    def start(self, initial_response: bytes | None) -> ServerStep:
        """Begin; the initial response, if any, is the client-first message."""
        if self._state is not _SS.NEW:
            raise LocalProtocolError("SCRAM: start() called twice")
        if initial_response is None:
            self._state = _SS.AWAIT_CLIENT_FIRST
            return Challenge(data=b"")
        return self._client_first(initial_response)

    def receive(self, response: bytes) -> ServerStep:
        """Feed the client-first message (after an empty challenge) or the client-final."""
        if self._state is _SS.AWAIT_CLIENT_FIRST:
            return self._client_first(response)
        if self._state is _SS.AWAIT_CLIENT_FINAL:
            return self._client_final(response)
        raise LocalProtocolError("SCRAM: receive() without a pending challenge")

    def provide(self, answer: Answer) -> ServerStep:
        """Give the user's :class:`ScramSecrets`, or :class:`NoSuchUser`."""
        if self._state is not _SS.AWAIT_CREDENTIALS:
            raise LocalProtocolError("SCRAM: provide() without a pending NeedCredentials")
        if isinstance(answer, ScramSecrets):
            sizes = {len(answer.stored_key), len(answer.server_key)}
            if sizes != {self._hash.size}:
                raise LocalProtocolError(f"SCRAM: secrets are not {self.name} secrets")
            self._secrets = answer
            salt, iterations = answer.salt, answer.iterations
        elif isinstance(answer, NoSuchUser):
            # Go on with a fake salt, stable per user name, and fail only at the end.
            salt = self._hash.hmac(self._fake_salt_key, self._authcid.encode("utf-8"))
            salt, iterations = salt[:_SALT_LENGTH], MIN_ITERATIONS
        elif isinstance(answer, PasswordVerdict):
            raise LocalProtocolError("SCRAM: answer NeedCredentials with ScramSecrets")
        else:
            raise LocalProtocolError(f"SCRAM: unexpected answer {answer!r}")
        self._server_first = f"r={self._nonce},s={_b64encode(salt)},i={iterations}"
        self._state = _SS.AWAIT_CLIENT_FINAL
        return Challenge(data=self._server_first.encode("ascii"))

    def _client_first(self, message: bytes) -> ServerStep:
        try:
            text = _decode(message)
            # gs2-header = gs2-cbind-flag "," [ authzid ] "," (RFC 5802 §7)
            if text.startswith("p="):
                return self._end(Failure(reason="SCRAM: channel binding is not supported"))
            # "y": the client supports channel binding but thinks we do not; since we do
            # not advertise -PLUS that is true, so it is accepted (RFC 5802 §6).
            if text[:2] not in ("n,", "y,"):
                raise _Malformed("bad GS2 channel-binding flag")
            end = text.find(",", 2)
            if end < 0:
                raise _Malformed("GS2 header not terminated")
            authzid_part = text[2:end]
            authzid = scram_unescape(_attr(authzid_part, "a")) if authzid_part else None
            gs2_header, bare = text[: end + 1], text[end + 1 :]
            parts = bare.split(",")
            # "m=" is reserved for mandatory extensions; none is defined, so an
            # extension we cannot understand: fail (RFC 5802 §5.1).
            if parts[0].startswith("m="):
                return self._end(Failure(reason="SCRAM: mandatory extension not supported"))
            if len(parts) < 2:
                raise _Malformed("client-first needs n= and r=")
            username = scram_unescape(_attr(parts[0], "n"))
            client_nonce = _nonce(_attr(parts[1], "r"))
            _check_extensions(parts[2:])
        except _Malformed as exc:
            return self._end(Failure(reason=f"SCRAM: malformed client-first message: {exc}"))
        # RFC 5802 §5.1: the server prepares the user name with SASLprep as a query
        # string; "If the preparation of the username fails or results in an empty
        # string, the server SHOULD abort the authentication exchange."
        try:
            authcid = saslprep(username, allow_unassigned=True)
        except ValueError as exc:
            return self._end(Failure(reason=f"SCRAM: invalid user name: {exc}"))
        if not authcid:
            return self._end(Failure(reason="SCRAM: empty user name"))
        self._gs2_header = gs2_header
        self._client_first_bare = bare
        self._nonce = client_nonce + self._server_nonce
        self._authcid, self._authzid = authcid, authzid
        self._state = _SS.AWAIT_CREDENTIALS
        return NeedCredentials(mechanism=self.name, authcid=authcid, authzid=authzid)

    def _client_final(self, message: bytes) -> ServerStep:
        hf = self._hash
        try:
            text = _decode(message)
            parts = text.split(",")
            if len(parts) < 3:
                raise _Malformed("client-final needs c=, r= and p=")
            channel_binding = _b64decode(_attr(parts[0], "c"))
            nonce = _attr(parts[1], "r")
            _check_extensions(parts[2:-1])
            proof = _b64decode(_attr(parts[-1], "p"))
        except _Malformed as exc:
            return self._end(Failure(reason=f"SCRAM: malformed client-final message: {exc}"))
        # c= carries the GS2 header of client-first (and no channel-binding data, since
        # none is in use): RFC 5802 §5.1 "c:" and §6.
        if not hmac.compare_digest(channel_binding, self._gs2_header.encode("utf-8")):
            return self._end(Failure(reason="SCRAM: channel binding does not match"))
        # r= must be the whole nonce the server sent (RFC 5802 §5.1 "r:").
        if not hmac.compare_digest(nonce.encode("utf-8"), self._nonce.encode("ascii")):
            return self._end(Failure(reason="SCRAM: nonce does not match"))
        if len(proof) != hf.size:
            return self._end(Failure(reason="SCRAM: proof has the wrong length"))
        secrets_ = self._secrets
        if secrets_ is None:
            return self._end(Failure(reason="SCRAM: no such user"))
        without_proof = text[: text.rindex(",")]
        auth_message = ",".join((self._client_first_bare, self._server_first, without_proof))
        auth_bytes = auth_message.encode("utf-8")
        # RFC 5802 §3: ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage), and the
        # proof is right when H(ClientKey) == StoredKey.
        client_signature = hf.hmac(secrets_.stored_key, auth_bytes)
        client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
        if not hmac.compare_digest(hf.h(client_key), secrets_.stored_key):
            return self._end(Failure(reason="SCRAM: invalid proof"))
        identity = authorize(self._authcid, self._authzid, secrets_.may_act_as)
        if identity is None:
            return self._end(
                Failure(reason=f"SCRAM: {self._authcid!r} may not act as {self._authzid!r}")
            )
        server_signature = hf.hmac(secrets_.server_key, auth_bytes)
        return self._end(
            Success(
                identity=identity,
                authcid=self._authcid,
                final_data=b"v=" + base64.b64encode(server_signature),
            )
        )


# --------------------------------------------------------------------------- client


class _CS(enum.Enum):
    NEW = enum.auto()
    AWAIT_SERVER_FIRST = enum.auto()
    AWAIT_SERVER_FINAL = enum.auto()
    DONE = enum.auto()
    FAILED = enum.auto()


class ScramSha256Client(ClientMechanism):
    """The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677), without channel binding.

    The user name and password are prepared with SASLprep (RFC 5802 §2.2, §5.1);
    :class:`LocalProtocolError` if they cannot be. ``nonce`` is the client nonce (random
    when ``None``; inject it only in tests). The client refuses an iteration count below
    4096 (RFC 7677 §4) or above ``max_iterations`` (a server could otherwise make it
    burn CPU), and raises :class:`AuthenticationError` unless the server proves, with
    its signature, that it knows the user's secrets.
    """

    name: ClassVar[str] = "SCRAM-SHA-256"
    _hash: ClassVar[_Hash] = _SHA256

    def __init__(
        self,
        authcid: str,
        password: str,
        authzid: str | None = None,
        *,
        nonce: str | None = None,
        max_iterations: int = _DEFAULT_MAX_ITERATIONS,
    ) -> None:
        try:
            username = saslprep(authcid, allow_unassigned=True)
            saslprep(password, allow_unassigned=True)  # refuse now, not mid-exchange
        except ValueError as exc:
            raise LocalProtocolError(f"SCRAM: {exc}") from None
        if not username:
            raise LocalProtocolError("SCRAM: empty user name")
        if authzid is not None and "\x00" in authzid:
            raise LocalProtocolError("SCRAM: authzid contains NUL")
        self._password = password
        self._nonce = _check_nonce(nonce)
        self._max_iterations = max_iterations
        authzid_part = f"a={scram_escape(authzid)}" if authzid else ""
        self._gs2_header = f"n,{authzid_part},"
        self._client_first_bare = f"n={scram_escape(username)},r={self._nonce}"
        self._state = _CS.NEW
        self._server_signature = b""

    def initial_response(self) -> bytes:
        """The client-first message (SCRAM is a client-first mechanism)."""
        if self._state is not _CS.NEW:
            raise LocalProtocolError("SCRAM: the client-first message was already sent")
        self._state = _CS.AWAIT_SERVER_FIRST
        return (self._gs2_header + self._client_first_bare).encode("utf-8")

    def respond(self, challenge: bytes) -> bytes:
        """Answer an empty challenge (client-first), server-first, or server-final.

        A server-final sent as a challenge (as SMTP does) is verified here and answered
        with an empty response.
        """
        self._check_not_failed()
        try:
            if self._state is _CS.NEW:
                if challenge:
                    raise AuthenticationError("SCRAM: the first challenge must be empty")
                return self.initial_response()
            if self._state is _CS.AWAIT_SERVER_FIRST:
                return self._server_first(challenge)
            if self._state is _CS.AWAIT_SERVER_FINAL:
                self._server_final(challenge)
                return b""
            raise AuthenticationError("SCRAM: unexpected challenge after the exchange ended")
        except AuthenticationError:
            self._state = _CS.FAILED
            raise

    def verify_success(self, final_data: bytes | None) -> None:
        """Check the server-final message sent with success, if it was not a challenge."""
        self._check_not_failed()
        try:
            if self._state is _CS.AWAIT_SERVER_FINAL and final_data:
                self._server_final(final_data)
            elif self._state is not _CS.DONE:
                raise AuthenticationError("SCRAM: the server did not prove its identity")
            elif final_data:
                # Already verified as a challenge: data sent again must verify too.
                self._server_final(final_data)
        except AuthenticationError:
            self._state = _CS.FAILED
            raise

    def _check_not_failed(self) -> None:
        if self._state is _CS.FAILED:
            raise LocalProtocolError("SCRAM: the exchange already failed")

    @property
    def done(self) -> bool:
        """True once the server's signature has been verified."""
        return self._state is _CS.DONE

    def _server_first(self, message: bytes) -> bytes:
        hf = self._hash
        try:
            text = _decode(message)
            parts = text.split(",")
            if parts[0].startswith("m="):
                raise AuthenticationError("SCRAM: server requires an unsupported extension")
            if parts[0].startswith("e="):
                raise AuthenticationError(f"SCRAM: server error {parts[0][2:]!r}")
            if len(parts) < 3:
                raise _Malformed("server-first needs r=, s= and i=")
            nonce = _nonce(_attr(parts[0], "r"))
            salt = _b64decode(_attr(parts[1], "s"))
            iterations_text = _attr(parts[2], "i")
            _check_extensions(parts[3:])
        except _Malformed as exc:
            raise AuthenticationError(f"SCRAM: malformed server-first message: {exc}") from None
        # The server appends its own nonce to ours (RFC 5802 §5.1 "r:").
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise AuthenticationError("SCRAM: the server nonce does not extend ours")
        if not salt:
            raise AuthenticationError("SCRAM: empty salt")
        if not _POSIT_NUMBER.fullmatch(iterations_text):
            raise AuthenticationError("SCRAM: malformed iteration count")
        iterations = int(iterations_text)
        if iterations < MIN_ITERATIONS:
            raise AuthenticationError(
                f"SCRAM: iteration count {iterations} below {MIN_ITERATIONS} (RFC 7677 §4)"
            )
        if iterations > self._max_iterations:
            raise AuthenticationError(f"SCRAM: iteration count {iterations} is too high")
        salted = hf.salted_password(self._password, salt, iterations)
        self._password = ""
        client_key = hf.hmac(salted, b"Client Key")
        server_key = hf.hmac(salted, b"Server Key")
        channel_binding = _b64encode(self._gs2_header.encode("utf-8"))
        without_proof = f"c={channel_binding},r={nonce}"
        auth_message = ",".join((self._client_first_bare, text, without_proof)).encode("utf-8")
        client_signature = hf.hmac(hf.h(client_key), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, client_signature, strict=True))
        self._server_signature = hf.hmac(server_key, auth_message)
        self._state = _CS.AWAIT_SERVER_FINAL
        return f"{without_proof},p={_b64encode(proof)}".encode("ascii")

    def _server_final(self, message: bytes) -> None:
        try:
            text = _decode(message)
            parts = text.split(",")
            if parts[0].startswith("e="):
                raise AuthenticationError(f"SCRAM: server error {parts[0][2:]!r}")
            signature = _b64decode(_attr(parts[0], "v"))
            _check_extensions(parts[1:])
        except _Malformed as exc:
            raise AuthenticationError(f"SCRAM: malformed server-final message: {exc}") from None
        if not hmac.compare_digest(signature, self._server_signature):
            raise AuthenticationError("SCRAM: the server signature does not verify")
        self._state = _CS.DONE
