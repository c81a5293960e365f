"""POP3 as sans-I/O state machines (RFC 1939 and the extensions: RFC 2449 CAPA and
response codes, RFC 5034 SASL, RFC 2595 STLS, RFC 3206, RFC 6856 UTF8).

:class:`ServerConnection` and :class:`~mailagents.pop3.client.ClientConnection` know
bytes and events, nothing else: an adapter moves the bytes, and the application answers
the events that need a decision (on the server: credentials, the maildrop at login,
each message retrieved, the deletions at QUIT). The server's events are here, the
client's in :mod:`mailagents.pop3.client`, as in :mod:`mailagents.smtp`.
"""

from mailagents._protocol import LocalProtocolError, ProtocolError, RemoteProtocolError
from mailagents.pop3._client import ClientConnection
from mailagents.pop3._config import ServerConfig
from mailagents.pop3._events import (
    Accept,
    Authenticated,
    AuthenticationFailed,
    CommandRejected,
    ConnectionClosed,
    Maildrop,
    MaildropEntry,
    MessageChunk,
    MessageEnd,
    OpenMaildrop,
    Quit,
    Reject,
    Retrieve,
    StartTLS,
    Update,
)
from mailagents.pop3._response import NEED_DATA, PAUSED, Response, Sentinel
from mailagents.pop3._server import Decision, ServerConnection, ServerEvent
from mailagents.pop3._state import State

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "Accept",
    "Authenticated",
    "AuthenticationFailed",
    "CommandRejected",
    "ConnectionClosed",
    "Decision",
    "LocalProtocolError",
    "Maildrop",
    "MaildropEntry",
    "MessageChunk",
    "MessageEnd",
    "OpenMaildrop",
    "ProtocolError",
    "Quit",
    "Reject",
    "RemoteProtocolError",
    "Response",
    "Retrieve",
    "Sentinel",
    "ServerConfig",
    "ServerConnection",
    "ServerEvent",
    "StartTLS",
    "State",
    "Update",
    "ClientConnection",
]
