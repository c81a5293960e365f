"""IMAP as sans-I/O pieces: IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) with LITERAL+
and LITERAL- (RFC 7888), ENABLE (5161), IDLE (2177), NAMESPACE (2342), ID (2971),
UIDPLUS (4315), MOVE (6851), CONDSTORE and QRESYNC (7162), SPECIAL-USE (6154),
LIST-EXTENDED (5258), LIST-STATUS (5819), ESEARCH (4731), SEARCHRES (5182), SORT and
THREAD (5256), UNSELECT (3691), BINARY (3516), UTF8=ACCEPT (6855), COMPRESS=DEFLATE
(4978), APPENDLIMIT (7889), SASL-IR (4959) and the RFC 5530 response codes.

- the grammar both ways: :func:`parse_command` and :func:`write_command` over the
  classes of :mod:`mailagents.imap.commands`, :func:`parse_response` and
  :func:`write_response` over those of :mod:`mailagents.imap.responses`; one command
  or response travels as a :class:`Frame` (its lines and the literals between them);
- the server's session core, :class:`ServerConnection`: its events and the
  application's decisions are here, with :class:`SelectedMailbox`, the session's view
  of the selected mailbox (RFC 9051 §7.5.1: when an EXPUNGE may be sent);
- a message's MIME structure scanned once (:class:`MimeScanner`, :class:`PartMap`),
  and from it ENVELOPE (:class:`Envelope`), BODYSTRUCTURE (:func:`body_structure`),
  the octets of ``BODY[section]<partial>`` (:func:`locate_section`) and BINARY's
  decoding (:func:`iter_binary`);
- the client's session core in :mod:`mailagents.imap.client` (its events share names
  with the server's, so they live there, as in :mod:`mailagents.pop3.client`).
"""

from mailagents._protocol import (
    NEED_DATA,
    PAUSED,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    Sentinel,
)
from mailagents.imap._binary import (
    UnknownEncoding,
    binary_size,
    iter_binary,
)
from mailagents.imap._body_model import (
    Address,
    Body,
    BodyExtension,
    Envelope,
    MultipartBody,
    Parameters,
    SinglePartBody,
)
from mailagents.imap._bodystructure import (
    body_structure,
)
from mailagents.imap._command_parser import (
    CommandLimits,
    CommandSyntaxError,
    parse_command,
)
from mailagents.imap._command_writer import (
    write_command,
)
from mailagents.imap._config import (
    DEFAULT_EXTENSIONS,
    ServerConfig,
)
from mailagents.imap._envelope import (
    envelope_from_header,
)
from mailagents.imap._events import (
    AppendChunk,
    AppendEnd,
    AppendRequested,
    AppendStart,
    Authenticated,
    AuthenticationFailed,
    CommandReceived,
    CommandRejected,
    Complete,
    CompressionStarted,
    ConnectionClosed,
    Continue,
    Greeting,
    IdleEnded,
    IdleStarted,
    LiteralData,
    StartTLS,
    Untagged,
)
from mailagents.imap._frame import (
    Frame,
    Streamed,
)
from mailagents.imap._mime import (
    MimeLimits,
    MimePart,
    MimeScanner,
    PartMap,
    PartMapError,
    scan_message,
)
from mailagents.imap._response_parser import (
    ResponseSyntaxError,
    parse_response,
)
from mailagents.imap._response_writer import (
    write_response,
)
from mailagents.imap._sections import (
    SectionSpan,
    iter_section,
    locate_part,
    locate_section,
    section_octets,
    section_size,
)
from mailagents.imap._selected import (
    Exists,
    Expunge,
    FlagsUpdate,
    SelectedMailbox,
    Vanished,
    may_expunge,
)
from mailagents.imap._seqset import (
    SequenceSet,
)
from mailagents.imap._server import (
    Decision,
    ServerConnection,
)
from mailagents.imap._server_core import (
    ServerEvent,
)
from mailagents.imap._state import (
    State,
)

__all__ = [
    "Address",
    "AppendChunk",
    "AppendEnd",
    "AppendRequested",
    "AppendStart",
    "Authenticated",
    "AuthenticationFailed",
    "Body",
    "BodyExtension",
    "CommandLimits",
    "CommandReceived",
    "CommandRejected",
    "CommandSyntaxError",
    "Complete",
    "CompressionStarted",
    "ConnectionClosed",
    "Continue",
    "DEFAULT_EXTENSIONS",
    "Decision",
    "Envelope",
    "Exists",
    "Expunge",
    "FlagsUpdate",
    "Frame",
    "Greeting",
    "IdleEnded",
    "IdleStarted",
    "LiteralData",
    "LocalProtocolError",
    "MimeLimits",
    "MimePart",
    "MimeScanner",
    "MultipartBody",
    "NEED_DATA",
    "PAUSED",
    "Parameters",
    "PartMap",
    "PartMapError",
    "ProtocolError",
    "RemoteProtocolError",
    "ResponseSyntaxError",
    "SectionSpan",
    "SelectedMailbox",
    "Sentinel",
    "SequenceSet",
    "ServerConfig",
    "ServerConnection",
    "ServerEvent",
    "SinglePartBody",
    "StartTLS",
    "State",
    "Streamed",
    "UnknownEncoding",
    "Untagged",
    "Vanished",
    "binary_size",
    "body_structure",
    "envelope_from_header",
    "iter_binary",
    "iter_section",
    "locate_part",
    "locate_section",
    "may_expunge",
    "parse_command",
    "parse_response",
    "scan_message",
    "section_octets",
    "section_size",
    "write_command",
    "write_response",
]
