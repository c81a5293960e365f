"""SMTP and LMTP as sans-I/O state machines (RFC 5321, RFC 2033 and the extensions).

:class:`ServerConnection` and :class:`~mailagents.smtp.client.ClientConnection` know bytes
and events, nothing else: an adapter (for example :mod:`mailagents.aio`) moves the bytes,
and the application answers the events that need a decision. The server's events are
here, the client's in :mod:`mailagents.smtp.client`. See the :doc:`/smtp` tutorial.
"""

from mailagents._protocol import LocalProtocolError, ProtocolError, RemoteProtocolError
from mailagents.smtp._address import AddressError, Mailbox, Path, parse_mailbox, parse_path
from mailagents.smtp._client import ClientConnection
from mailagents.smtp._config import ServerConfig
from mailagents.smtp._data import BareLineEndPolicy
from mailagents.smtp._events import (
    NEED_DATA,
    PAUSED,
    Accept,
    Authenticated,
    AuthenticationFailed,
    CommandRejected,
    ConnectionClosed,
    DataChunk,
    Envelope,
    Hello,
    LMTPReplies,
    MailFrom,
    MessageComplete,
    MessageRejected,
    Quit,
    RcptTo,
    Recipient,
    Reject,
    Reset,
    Sentinel,
    StartTLS,
)
from mailagents.smtp._params import MailParameters, ParameterError, RcptParameters
from mailagents.smtp._reply import Reply
from mailagents.smtp._server import Decision, ServerConnection, ServerEvent
from mailagents.smtp._state import State

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "Accept",
    "AddressError",
    "Authenticated",
    "AuthenticationFailed",
    "BareLineEndPolicy",
    "ClientConnection",
    "CommandRejected",
    "ConnectionClosed",
    "DataChunk",
    "Decision",
    "Envelope",
    "Hello",
    "LMTPReplies",
    "LocalProtocolError",
    "MailFrom",
    "MailParameters",
    "Mailbox",
    "MessageComplete",
    "MessageRejected",
    "ParameterError",
    "Path",
    "ProtocolError",
    "Quit",
    "RcptParameters",
    "RcptTo",
    "Recipient",
    "Reject",
    "RemoteProtocolError",
    "Reply",
    "Reset",
    "Sentinel",
    "ServerConfig",
    "ServerConnection",
    "ServerEvent",
    "StartTLS",
    "State",
    "parse_mailbox",
    "parse_path",
]
