"""POP3 as sans-I/O state machines (RFC 1939 and the extensions: RFC 2449 CAPA and
response codes, RFC 5034 SASL, RFC 2595 STLS, RFC 3206, RFC 6856 UTF8).

:class:`ServerConnection` and :class:`~mailagents.pop3.client.ClientConnection` know
bytes and events, nothing else: an adapter moves the bytes, and the application answers
the events that need a decision (on the server: credentials, the maildrop at login,
each message retrieved, the deletions at QUIT). The client's events are in
:mod:`mailagents.pop3.client`.
"""

from mailagents._protocol import LocalProtocolError, ProtocolError, RemoteProtocolError
from mailagents.pop3._config import ServerConfig
from mailagents.pop3._dotstuff import DotStuffer
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
from mailagents.pop3._response import NEED_DATA, PAUSED, Response, Sentinel, parse_response
from mailagents.pop3._state import State

# The client side: its events share some names with the server's (MessageChunk,
# MessageEnd, ConnectionClosed) with other fields, so they live in mailagents.pop3.client.
from mailagents.pop3.client import ClientConnection, ClientEvent, apop_digest
from mailagents.pop3.server import Decision, ServerConnection, ServerEvent

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "Accept",
    "Authenticated",
    "AuthenticationFailed",
    "CommandRejected",
    "ConnectionClosed",
    "Decision",
    "DotStuffer",
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
    "parse_response",
    "ClientConnection",
    "ClientEvent",
    "apop_digest",
]
