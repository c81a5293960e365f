"""Events an IMAP ``ServerConnection`` hands to the application, and the decisions the
application sends back.

Events marked *decision* pause the connection: ``next_event()`` returns ``PAUSED``
until the application answers. A :class:`CommandReceived` is answered with any number
of :class:`Untagged` responses and then one :class:`Complete`; a
``sasl.NeedCredentials`` with one of the ``mailagents.sasl`` answers (``NoSuchUser``
refuses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mailagents._protocol import LocalProtocolError
from mailagents.imap._commands import Command
from mailagents.imap._frame import Frame
from mailagents.imap._responses import Continuation, Response, StatusResponse
from mailagents.imap._selected import SelectedMailbox

__all__ = [
    "AppendChunk",
    "AppendEnd",
    "AppendRequested",
    "AppendStart",
    "Authenticated",
    "AuthenticationFailed",
    "CommandReceived",
    "CommandRejected",
    "Complete",
    "CompressionStarted",
    "ConnectionClosed",
    "Continue",
    "Greeting",
    "IdleEnded",
    "IdleStarted",
    "LiteralData",
    "StartTLS",
    "Untagged",
]


def check_text(text: str, what: str) -> None:
    """Refuse text that would break a response line (CR, LF, NUL)."""
    if any(c in text for c in "\r\n\x00"):
        raise LocalProtocolError(f"{what} must not hold CR, LF or NUL")


# --- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandReceived:
    """*Decision.* A valid command for the application to carry out: answer with
    :class:`Untagged` responses, then :class:`Complete`. The core handles the session
    commands itself (CAPABILITY, NOOP, CHECK, LOGOUT, ID, STARTTLS, LOGIN,
    AUTHENTICATE, ENABLE, IDLE, COMPRESS); everything else arrives here.

    What a command changes in the selected mailbox (messages an EXPUNGE or MOVE
    removed, an APPEND or COPY into it) is told to the view (``ServerConnection.mailbox``),
    not sent as responses: the core sends the EXISTS, EXPUNGE or VANISHED before the
    tagged response where RFC 9051 §7.5.1 allows them. An APPEND into the selected
    mailbox may instead be completed with ``code="APPENDUID v uid-set"`` (RFC 4315 §3),
    which tells the view; an OK with neither is refused (``LocalProtocolError``)."""

    command: Command


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRejected:
    """The core answered a command itself with BAD or NO (syntax, unknown, out of
    state, a limit); ``response`` is the line it sent, without CRLF."""

    tag: str | None
    response: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Authenticated:
    """LOGIN or AUTHENTICATE succeeded: the session is authenticated."""

    identity: str
    mechanism: str
    """``"LOGIN"`` or the SASL mechanism name."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthenticationFailed:
    """LOGIN or AUTHENTICATE failed (the NO or BAD is already queued)."""

    mechanism: str
    reason: str
    """For logs, never for the client."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTLS:
    """``OK`` to STARTTLS is queued: send ``data_to_send()``, start TLS, then call
    ``tls_started()`` (RFC 9051 §6.2.1)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CompressionStarted:
    """``OK`` to ``COMPRESS DEFLATE`` is queued: after it, both directions are
    DEFLATE streams (RFC 4978 §3); the adapter compresses what it sends and
    decompresses what it feeds in."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IdleStarted:
    """IDLE began (``+ idling`` queued, RFC 2177): push store changes with
    ``refresh()`` until :class:`IdleEnded`."""

    tag: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IdleEnded:
    """IDLE ended (``DONE``, or a line that was not DONE, answered BAD)."""

    tag: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendStart:
    """An APPEND message literal begins; :class:`AppendChunk` events carry its octets
    and :class:`AppendEnd` closes it; the whole ``Append`` command (with ``Streamed``
    in place of each message) then arrives as :class:`CommandReceived`."""

    tag: str | None
    mailbox: str | None
    """The target mailbox, when the command's start could be read."""
    size: int
    binary: bool
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendRequested:
    """*Decision* (with ``confirm_append``). A synchronising APPEND message literal was
    announced: answer :class:`Continue` (``+`` goes out and the octets follow as
    :class:`AppendStart` and chunks) or a NO/BAD :class:`Complete`, which ends the
    command before the client sends the message (RFC 9051 §4.3)."""

    tag: str | None
    mailbox: str | None
    size: int
    binary: bool
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendChunk:
    """Octets of the APPEND message literal ``index``."""

    index: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendEnd:
    """The APPEND message literal ``index`` is complete."""

    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed:
    """The session is over (LOGOUT, a BYE the core sent, or the client closed): send
    what ``data_to_send()`` still holds and close."""

    reason: str


# --- decisions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Greeting:
    """The first response (RFC 9051 §7.1): ``OK`` (not authenticated), ``PREAUTH``
    (already authenticated as ``identity``) or ``BYE`` (refused)."""

    kind: Literal["OK", "PREAUTH", "BYE"] = "OK"
    text: str = "IMAP server ready"
    identity: str | None = None

    def __post_init__(self) -> None:
        check_text(self.text, "Greeting.text")
        if (self.kind == "PREAUTH") != (self.identity is not None):
            raise LocalProtocolError("a PREAUTH greeting, and only it, names the identity")


@dataclass(frozen=True, slots=True, kw_only=True)
class Untagged:
    """One untagged response for the command in progress (or unsolicited), given either
    as a ``response`` object of ``mailagents.imap._responses`` (``ExistsData``,
    ``FetchData``, ``ListData``, an untagged ``StatusResponse`` ...), which the core
    writes with the session's UTF-8 state (mailbox names in UTF-8 once UTF8=ACCEPT or
    IMAP4rev2 is enabled, modified UTF-7 before; SEARCH results as ESEARCH for an
    IMAP4rev2 session), or as a ``frame`` (lines without CRLF, the first starting with
    ``* ``) made by the response writer. A ``Streamed`` literal in it (a large
    ``BODY[]``) is sent as :class:`LiteralData` decisions that follow, exactly its
    ``size`` octets in all, before anything else."""

    frame: Frame | None = None
    response: Response | None = None

    def __post_init__(self) -> None:
        if (self.frame is None) == (self.response is None):
            raise LocalProtocolError("Untagged takes a frame or a response, not both")
        if self.response is not None:
            r = self.response
            if isinstance(r, Continuation) or (isinstance(r, StatusResponse) and r.tag):
                raise LocalProtocolError("Untagged.response must be an untagged response")
            return
        assert self.frame is not None
        if not self.frame.lines[0].startswith(b"* "):
            raise LocalProtocolError("an untagged response starts with '* '")
        for line in self.frame.lines:
            if b"\r" in line or b"\n" in line:
                raise LocalProtocolError("frame lines must not hold CR or LF")


@dataclass(frozen=True, slots=True, kw_only=True)
class Continue:
    """The answer to :class:`AppendRequested` that lets the message come."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LiteralData:
    """Octets of the ``Streamed`` literal of the :class:`Untagged` response being sent."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Complete:
    """The tagged end of the command in progress (RFC 9051 §7.1): ``status``, an
    optional response ``code`` (``"TRYCREATE"``, ``"APPENDUID 38505 3955"``) and text.
    An OK to SELECT or EXAMINE carries the ``selected`` view of the mailbox."""

    status: Literal["OK", "NO", "BAD"] = "OK"
    text: str = ""
    code: str | None = None
    selected: SelectedMailbox | None = None

    def __post_init__(self) -> None:
        check_text(self.text, "Complete.text")
        if self.code is not None:
            check_text(self.code, "Complete.code")
            if not self.code or "]" in self.code:
                raise LocalProtocolError("Complete.code must be non-empty, without ']'")
        if self.selected is not None and self.status != "OK":
            raise LocalProtocolError("only an OK selects a mailbox")
