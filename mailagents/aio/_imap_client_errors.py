"""The asyncio IMAP client's exceptions and time-outs (see
:mod:`mailagents.aio.imap_client`)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from mailagents.aio import _client
from mailagents.imap._responses import StatusResponse

__all__ = [
    "ERRORS",
    "IMAPAuthenticationError",
    "IMAPCommandError",
    "IMAPConnectionClosed",
    "IMAPError",
    "IMAPProtocolError",
    "IMAPTLSError",
    "IMAPTimeout",
    "IMAPTimeouts",
]


class IMAPError(Exception):
    """The base of every error the IMAP client raises. ``response`` is the server's
    status response that caused it, when there is one."""

    def __init__(self, message: str, response: StatusResponse | None = None) -> None:
        super().__init__(message)
        self.response = response


class IMAPCommandError(IMAPError):
    """The server answered a command ``NO`` (it failed) or ``BAD`` (it was not
    accepted). ``status`` says which, ``code`` is the response code (such as
    ``TRYCREATE``, ``NONEXISTENT``, ``OVERQUOTA``, RFC 9051 §7.1) as the parser gives
    it, or ``None``. The session goes on."""

    response: StatusResponse

    def __init__(self, command: str, response: StatusResponse) -> None:
        text = f"{command} failed: {response.status}"
        name = code_name(response)
        if name:
            text += f" [{name}]"
        if response.text:
            text += f" {response.text}"
        super().__init__(text, response)
        self.command = command

    @property
    def status(self) -> str:
        """``"NO"`` or ``"BAD"``."""
        return self.response.status

    @property
    def code(self) -> object:
        """The response code, or ``None``."""
        return self.response.code


def code_name(response: StatusResponse) -> str | None:
    """The name of a status response's code (``"TRYCREATE"``), or ``None``."""
    code = response.code
    if code is None:
        return None
    name = getattr(code, "name", None)
    return name if isinstance(name, str) else type(code).__name__


class IMAPAuthenticationError(IMAPError):
    """A login failed: the server refused it (``response``, perhaps with code
    ``AUTHENTICATIONFAILED`` or ``UNAVAILABLE``), the password would have crossed the
    network in the clear (no ``response``), or the server failed to prove itself
    (``error`` says how; the connection is then closed: it may be an impostor)."""

    def __init__(
        self, message: str, response: StatusResponse | None = None, error: str | None = None
    ) -> None:
        super().__init__(message, response)
        self.error = error


class IMAPTLSError(IMAPError):
    """TLS could not be set up: STARTTLS was required and not offered or refused, the
    server greeted with PREAUTH in the clear while TLS was required, or the handshake
    failed (the :class:`ssl.SSLError` is the ``__cause__``). The connection is closed."""


class IMAPProtocolError(IMAPError):
    """The server broke the protocol so badly that the session cannot go on (a
    malformed response, a tag nothing was sent with, data injected after STARTTLS).
    The connection is closed."""


class IMAPTimeout(IMAPError, TimeoutError):
    """The server did not answer in time. The connection is closed."""


class IMAPConnectionClosed(IMAPError, ConnectionError):
    """The connection is closed: by the server (``response`` is its ``BYE`` if it sent
    one), or here before."""


ERRORS = _client.ClientErrors(
    timeout=IMAPTimeout,
    tls=IMAPTLSError,
    closed=IMAPConnectionClosed,
    protocol=IMAPProtocolError,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class IMAPTimeouts:
    """Seconds the client waits, per step, before it gives up with :class:`IMAPTimeout`.

    Each bounds one event: a whole response, or the next piece of a streamed literal.
    IDLE waits ``idle`` seconds for news before it re-issues IDLE (RFC 2177 §3: a
    server may drop a client idle for 30 minutes; 29 is the usual re-issue period)."""

    connect: float = 60.0
    """The TCP connection and each TLS handshake (implicit TLS, STARTTLS)."""
    command: float = 120.0
    """The greeting and each command's responses."""
    data: float = 300.0
    """Each piece of a streamed literal (a large message being fetched or appended)."""
    idle: float = 29 * 60.0
    """How long one IDLE waits for news before it is renewed."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"IMAPTimeouts.{f.name} must be a positive number")

    @classmethod
    def uniform(cls, seconds: float) -> IMAPTimeouts:
        """The same time-out for every step (handy in tests)."""
        return cls(**{f.name: seconds for f in fields(cls)})
