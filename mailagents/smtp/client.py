"""The client side of SMTP and LMTP as a sans-I/O connection object (RFC 5321, RFC 2033).

Feed the bytes that arrived with :meth:`ClientConnection.receive_data` (``b""`` when the
server closed), take events with :meth:`ClientConnection.next_event` until it returns
``NEED_DATA``, and write what :meth:`ClientConnection.data_to_send` returns. Commands
are queued with methods (:meth:`~ClientConnection.ehlo`,
:meth:`~ClientConnection.send_mail`, ...); they run one after the other, each ending in
one event, and the core owns the protocol rules: pipelining (RFC 2920), dot-stuffing,
BDAT chunks (RFC 3030), SASL framing (RFC 4954), the parameters the server's extensions
allow (SIZE, 8BITMIME, SMTPUTF8, DSN, REQUIRETLS) and LMTP's one reply per recipient.

A large message need not be held in memory: ``send_mail(..., message=None)`` streams
it, the caller feeding :meth:`ClientConnection.send_content` whenever
:attr:`ClientConnection.wants_content` is true (and :meth:`~ClientConnection.end_content`
at the end); the bytes on the wire are those of the whole message.

Every value the caller gives is checked before a byte is queued: a CR, LF or NUL in a
domain, an address, a parameter or VRFY text raises
:class:`~mailagents.smtp.LocalProtocolError` (the command-injection class of bugs), and so
does a message the server said it cannot take.

A typical session::

    conn = ClientConnection()
    # receive_data(...) until next_event() gives Greeting, then:
    conn.ehlo("client.example")
    # ... Response(command="EHLO", ...) arrives; conn.extensions is now known
    conn.send_mail("a@example.com", ["b@example.org"], message)
    # ... TransactionResult arrives
    conn.quit()

:class:`ClientConnection` is also importable from :mod:`mailagents.smtp`; the events
it reports live here, as :mod:`mailagents.pop3.client`'s do.
"""

from mailagents.smtp._client import ClientConnection
from mailagents.smtp._client_events import (
    AuthResult,
    ClientEvent,
    Greeting,
    Response,
    TransactionResult,
)
from mailagents.smtp._events import NEED_DATA, ConnectionClosed

__all__ = [
    "NEED_DATA",
    "AuthResult",
    "ClientConnection",
    "ClientEvent",
    "ConnectionClosed",
    "Greeting",
    "Response",
    "TransactionResult",
]
