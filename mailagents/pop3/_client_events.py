"""The events :class:`mailagents.pop3.client.ClientConnection` reports, one per request
(a retrieval reports a start, chunks and an end).

Every event that answers a command carries the server's status line as a
:class:`~mailagents.pop3.Response`. A command the server refused with ``-ERR`` ends
with :class:`~mailagents.pop3.client.Reply` (``reply.ok`` false), whatever the
command, except CAPA (an empty :class:`~mailagents.pop3.client.Capabilities`) and the
logins (:class:`~mailagents.pop3.client.AuthResult`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeAlias

from mailagents.pop3._response import Response

__all__ = [
    "AuthResult",
    "Capabilities",
    "ClientEvent",
    "ConnectionClosed",
    "Greeting",
    "Listing",
    "MessageChunk",
    "MessageEnd",
    "MessageStart",
    "Reply",
    "Stat",
    "UniqueIds",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Greeting:
    """The server's greeting (RFC 1939 §4). ``challenge`` is the APOP timestamp
    (``<1896.697170952@dbc.mtview.ca.us>``, brackets included, RFC 1939 §7) when the
    greeting carries one, else ``None``. A ``-ERR`` greeting means no service: the
    server is about to close."""

    reply: Response
    challenge: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Capabilities:
    """The answer to CAPA (RFC 2449 §5): upper-case capability tag to its arguments
    (``{"SASL": ("PLAIN", "SCRAM-SHA-256"), "TOP": ()}``). Empty when the server
    answered ``-ERR`` (it predates RFC 2449)."""

    reply: Response
    capabilities: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """The answer to a command with nothing but a status line (``command`` is
    ``"DELE"``, ``"NOOP"``, ``"RSET"``, ``"QUIT"``, ``"STLS"``, ``"UTF8"``), or the
    ``-ERR`` that refused a command which would otherwise report data (``"STAT"``,
    ``"LIST"``, ``"UIDL"``, ``"RETR"``, ``"TOP"``).

    For STLS a ``+OK`` means: start TLS on the transport now, then call
    :meth:`~mailagents.pop3.client.ClientConnection.tls_started` (and CAPA again).
    """

    command: str
    reply: Response


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthResult:
    """The end of a login: ``mechanism`` is ``"USER"`` (USER/PASS), ``"APOP"``, or the
    SASL mechanism's name (RFC 5034). ``success`` is true only after ``+OK`` *and* the
    mechanism's check of the server (SCRAM's server signature); ``reply`` is the
    status line that ended the exchange (for USER/PASS, USER's ``-ERR`` when the name
    was refused). ``error`` says why the client gave up when the failure is ours to
    report (a malformed or forged server challenge): the server may be an impostor."""

    success: bool
    reply: Response
    mechanism: str
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Stat:
    """The answer to STAT (RFC 1939 §5): messages in the maildrop and their total size
    in octets, messages marked as deleted not counted."""

    reply: Response
    count: int
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing:
    """The answer to LIST (RFC 1939 §5): ``(number, size in octets)`` pairs, one pair
    for ``LIST n``."""

    reply: Response
    entries: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class UniqueIds:
    """The answer to UIDL (RFC 1939 §7): ``(number, unique-id)`` pairs, one pair for
    ``UIDL n``."""

    reply: Response
    entries: tuple[tuple[int, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageStart:
    """RETR or TOP was accepted: the message's octets follow as
    :class:`~mailagents.pop3.client.MessageChunk` events, then
    :class:`~mailagents.pop3.client.MessageEnd`."""

    number: int
    reply: Response


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageChunk:
    """A piece of the message being retrieved: dot-stuffing removed, line ends CRLF
    (a bare LF from the server becomes CRLF). A chunk may end in the middle of a line,
    never between a CR and its LF."""

    number: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageEnd:
    """The message ended (the server's final ``.``); ``size`` is the number of octets
    delivered in :class:`~mailagents.pop3.client.MessageChunk` events."""

    number: int
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed:
    """The session is over: after QUIT's answer, or when the server closed the
    connection (a request in progress then gets no event of its own: a retrieval
    without its :class:`~mailagents.pop3.client.MessageEnd` is incomplete)."""


ClientEvent: TypeAlias = (
    Greeting
    | Capabilities
    | Reply
    | AuthResult
    | Stat
    | Listing
    | UniqueIds
    | MessageStart
    | MessageChunk
    | MessageEnd
    | ConnectionClosed
)
"""Everything :meth:`~mailagents.pop3.client.ClientConnection.next_event` can return
besides ``NEED_DATA``."""
