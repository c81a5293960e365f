"""The client side of POP3 as a sans-I/O connection object (RFC 1939, RFC 2449, RFC 5034).

Feed the bytes that arrived with :meth:`ClientConnection.receive_data` (``b""`` when the
server closed), take events with :meth:`ClientConnection.next_event` until it returns
``NEED_DATA``, and write what :meth:`ClientConnection.data_to_send` returns. Commands are
queued with methods (:meth:`~ClientConnection.capa`, :meth:`~ClientConnection.login`,
:meth:`~ClientConnection.retr`, ...); each ends in one event (a retrieval in a
:class:`~mailagents.pop3.client.MessageStart`, its
:class:`~mailagents.pop3.client.MessageChunk` events and a
:class:`~mailagents.pop3.client.MessageEnd`), in the order queued. The core owns the
protocol rules: pipelining only when the server announced PIPELINING (RFC 2449 §6.6), else
one command at a time; multi-line responses and their dot-stuffing (RFC 1939 §3); the APOP
digest (RFC 1939 §7); SASL framing (RFC 5034); STLS (RFC 2595 §4).

A message being retrieved is never held whole: its octets leave as chunk events as
they arrive, so memory stays bounded by what the adapter fed since the last event.

Every value the caller gives is checked before a byte is queued: a CR, LF or NUL in a
user name, a password or a secret raises :class:`~mailagents.pop3.LocalProtocolError` (command
injection), and so does a message number that is not a positive int.

A typical session::

    conn = ClientConnection()
    # receive_data(...) until next_event() gives Greeting, then:
    conn.capa()
    conn.login("alice", "secret")
    conn.uidl()
    conn.retr(1)
    conn.quit()

:class:`ClientConnection` is also importable from :mod:`mailagents.pop3`; the events
it reports live here, as :mod:`mailagents.smtp.client`'s do.
"""

from mailagents.pop3._client import ClientConnection, apop_digest
from mailagents.pop3._client_events import (
    AuthResult,
    Capabilities,
    ClientEvent,
    ConnectionClosed,
    Greeting,
    Listing,
    MessageChunk,
    MessageEnd,
    MessageStart,
    Reply,
    Stat,
    UniqueIds,
)
from mailagents.pop3._response import NEED_DATA

__all__ = [
    "NEED_DATA",
    "AuthResult",
    "Capabilities",
    "ClientConnection",
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
    "apop_digest",
]
