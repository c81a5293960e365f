"""The client side of IMAP as a sans-I/O connection object (RFC 9051 IMAP4rev2,
RFC 3501 IMAP4rev1 and extensions).

Feed the bytes that arrived with :meth:`ClientConnection.receive_data` (``b""`` when the
server closed), take events with :meth:`ClientConnection.next_event` until it returns
``NEED_DATA``, and write what :meth:`ClientConnection.data_to_send` returns. Commands
are command values given to :meth:`ClientConnection.send` with a tag from
:meth:`ClientConnection.new_tag`, or shortcuts (:meth:`~ClientConnection.login`,
:meth:`~ClientConnection.authenticate`, :meth:`~ClientConnection.starttls`,
:meth:`~ClientConnection.idle`, ...); each ends in one
:class:`~mailagents.imap.client.Completed` with its tag, carrying the untagged
responses it caused. Untagged responses no command asked for arrive as
:class:`~mailagents.imap.client.Update` events.

The core owns the protocol rules: tags; synchronising literals held until the server's
``+`` (not with LITERAL+, nor LITERAL- up to 4096 octets, RFC 7888), and dropped when the
server answers the command instead (RFC 9051 §7.5); a string holding CR or LF always
goes as a literal, so no value can end a command line early; capabilities learned from
the greeting, CAPABILITY responses and codes, forgotten after STARTTLS and login; bytes
after STARTTLS's OK treated as the injection they are; PREAUTH in the clear refused
when TLS is required; SASL framing (RFC 9051 §6.2.2, SASL-IR RFC 4959); IDLE (RFC 2177);
the start of COMPRESS (RFC 4978). A literal bigger than ``inline_max`` is never held:
it streams out as :class:`~mailagents.imap.client.LiteralData` events.

A typical session::

    conn = ClientConnection()
    # receive_data(...) until next_event() gives Greeting, then:
    conn.login("alice", "secret")
    conn.send(Select(tag=conn.new_tag(), mailbox="INBOX"))
    conn.logout()
"""

from mailagents._protocol import NEED_DATA
from mailagents.imap._client import ClientConnection
from mailagents.imap._client_events import (
    Bye,
    ClientEvent,
    Completed,
    ConnectionClosed,
    Greeting,
    IdleStarted,
    LiteralData,
    LiteralDone,
    LiteralStarted,
    Update,
)
from mailagents.imap._client_ops import ClientState
from mailagents.imap._client_sender import LiteralWanted

__all__ = [
    "NEED_DATA",
    "Bye",
    "ClientConnection",
    "ClientEvent",
    "ClientState",
    "Completed",
    "ConnectionClosed",
    "Greeting",
    "IdleStarted",
    "LiteralData",
    "LiteralDone",
    "LiteralStarted",
    "LiteralWanted",
    "Update",
]
