"""The events :class:`mailagents.imap.client.ClientConnection` reports.

Each command ends with one :class:`Completed` (its tagged response, with the untagged
responses it caused); responses no command asked for (a new message's ``EXISTS``, an
``EXPUNGE`` or flag change seen during IDLE or NOOP) are :class:`Update` events as they
arrive. A literal too big to hold (a large ``BODY[]``) comes as
:class:`LiteralStarted`, :class:`LiteralData` events and :class:`LiteralDone`, before
the response that holds it (a ``Streamed`` placeholder stands where it was).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from mailagents.imap._frame import Frame
from mailagents.imap._responses import Response, StatusResponse

__all__ = [
    "Bye",
    "ClientEvent",
    "Completed",
    "ConnectionClosed",
    "Greeting",
    "IdleStarted",
    "LiteralData",
    "LiteralDone",
    "LiteralStarted",
    "Update",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Greeting:
    """The server's greeting (RFC 9051 §7.1): ``OK`` (not authenticated yet),
    ``PREAUTH`` (already authenticated) or ``BYE`` (no service: the server closes)."""

    response: StatusResponse

    @property
    def status(self) -> str:
        """``"OK"``, ``"PREAUTH"`` or ``"BYE"``."""
        return self.response.status


@dataclass(frozen=True, slots=True, kw_only=True)
class Completed:
    """A command's tagged response (RFC 9051 §7.1): ``status`` ``OK``, ``NO`` (the
    command failed) or ``BAD`` (the server did not accept it), with its response
    code and text, and ``data``, the untagged responses the command caused, in order
    of arrival (the ``LIST`` responses of a LIST, the ``FETCH`` responses of a FETCH,
    the ``FLAGS``, ``EXISTS`` and ``OK [UIDVALIDITY ...]`` of a SELECT).

    ``command`` names the command as sent (``"SELECT"``, ``"UID FETCH"``). ``error``
    says why the client does not trust an ``OK``, or why it cancelled: for
    AUTHENTICATE, a server challenge that was not base64 or a server that did not
    prove itself (SCRAM's signature); ``ok`` is then false.
    """

    tag: str
    command: str
    response: StatusResponse
    data: tuple[Response, ...] = ()
    error: str | None = None

    @property
    def status(self) -> str:
        """``"OK"``, ``"NO"`` or ``"BAD"``."""
        return self.response.status

    @property
    def ok(self) -> bool:
        """Whether the command succeeded (``OK``, and no ``error``)."""
        return self.response.status == "OK" and self.error is None


@dataclass(frozen=True, slots=True, kw_only=True)
class Update:
    """An untagged response no pending command asked for: mailbox news (``EXISTS``,
    ``EXPUNGE``, ``FETCH`` with new flags, ``VANISHED``), an ``OK``/``NO``/``BAD``
    with a response code (``[ALERT]``), a ``CAPABILITY`` the server volunteered."""

    response: Response


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye:
    """The server's untagged ``BYE`` (RFC 9051 §7.1.5): it is about to close the
    connection (after LOGOUT, or on its own: a shutdown, an idle time-out)."""

    response: StatusResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class IdleStarted:
    """The server accepted IDLE (its continuation request, RFC 2177 §3): updates come
    as :class:`Update` events until
    :meth:`~mailagents.imap.client.ClientConnection.idle_done`."""

    tag: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LiteralStarted:
    """A literal too big to keep in memory begins (its octets follow as
    :class:`LiteralData`). ``head`` is the response so far, its last line ending with
    the literal's announcement (``* 12 FETCH (UID 7 BODY[] {52428800}``); ``index``
    numbers the response's literals from 0."""

    index: int
    size: int
    binary: bool
    head: Frame


@dataclass(frozen=True, slots=True, kw_only=True)
class LiteralData:
    """Octets of the literal being streamed."""

    index: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class LiteralDone:
    """The streamed literal is complete; the rest of its response follows."""

    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed:
    """The session is over: after LOGOUT's answer, or when the server closed the
    connection (commands still pending then get no :class:`Completed`)."""


ClientEvent: TypeAlias = (
    Greeting
    | Completed
    | Update
    | Bye
    | IdleStarted
    | LiteralStarted
    | LiteralData
    | LiteralDone
    | ConnectionClosed
)
"""Everything :meth:`~mailagents.imap.client.ClientConnection.next_event` returns
besides ``NEED_DATA``."""
