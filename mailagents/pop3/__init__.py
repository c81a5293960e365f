"""POP3 as sans-I/O state machines (RFC 1939 and the extensions: RFC 2449 CAPA and
response codes, RFC 5034 SASL, RFC 2595 STLS, RFC 3206, RFC 6856 UTF8).

:class:`ServerConnection` knows bytes and events, nothing else: an adapter moves the
bytes, and the application answers the events that need a decision (credentials, the
maildrop at login, each message retrieved, the deletions at QUIT).
"""

from mailagents._protocol import LocalProtocolError, ProtocolError, RemoteProtocolError
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
from mailagents.pop3._lines import DotStuffer
from mailagents.pop3._response import NEED_DATA, PAUSED, Response, Sentinel, parse_response
from mailagents.pop3._state import State
from mailagents.pop3.server import Decision, ServerConnection, ServerEvent

# --- client (added by the lead) ----------------------------------------------------
# The client helper's names (mailagents/pop3/client.py, _client_events.py) are imported
# here and added to __all__ below once that module is in place.
# -------------------------------------------------------------------------------------

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
    # --- client names (added by the lead) ---
]
