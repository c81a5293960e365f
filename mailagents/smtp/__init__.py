"""SMTP and LMTP as sans-I/O state machines (RFC 5321, RFC 2033 and the extensions).

:class:`ServerConnection` and :class:`ClientConnection` know bytes and events, nothing
else: an adapter (for example :mod:`mailagents.aio`) moves the bytes, and the application
answers the events that need a decision. See the :doc:`/smtp` tutorial.
"""

from mailagents._protocol import LocalProtocolError, ProtocolError, RemoteProtocolError
from mailagents.smtp._address import (
    AddressError,
    Mailbox,
    Path,
    parse_forward_path,
    parse_mailbox,
    parse_path,
    parse_reverse_path,
)
from mailagents.smtp._config import ServerConfig
from mailagents.smtp._data import BareLineEndPolicy, DataError, DataReader, dot_stuff
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
from mailagents.smtp._params import (
    MailParameters,
    ParameterError,
    RcptParameters,
    xtext_decode,
    xtext_encode,
)
from mailagents.smtp._reply import Reply
from mailagents.smtp._state import State
from mailagents.smtp.client import (
    AuthResult,
    ClientConnection,
    ClientEvent,
    Greeting,
    Response,
    TransactionResult,
)
from mailagents.smtp.server import Decision, ServerConnection, ServerEvent

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "Accept",
    "AddressError",
    "AuthResult",
    "Authenticated",
    "AuthenticationFailed",
    "BareLineEndPolicy",
    "ClientConnection",
    "ClientEvent",
    "CommandRejected",
    "ConnectionClosed",
    "DataChunk",
    "DataError",
    "DataReader",
    "Decision",
    "Envelope",
    "Greeting",
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
    "Response",
    "Sentinel",
    "ServerConfig",
    "ServerConnection",
    "ServerEvent",
    "StartTLS",
    "State",
    "TransactionResult",
    "dot_stuff",
    "parse_forward_path",
    "parse_mailbox",
    "parse_path",
    "parse_reverse_path",
    "xtext_decode",
    "xtext_encode",
]
