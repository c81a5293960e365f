"""IMAP as sans-I/O pieces (RFC 9051 IMAP4rev2, RFC 3501 IMAP4rev1 and the extensions
modern clients and servers meet): the grammar both ways, the literal framing, the
server's session state and the MIME structure (ENVELOPE, BODYSTRUCTURE).

Work in progress (issue 14): the public names are exported here as each piece lands.
"""

from mailagents._protocol import LocalProtocolError, ProtocolError, RemoteProtocolError

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]
