"""Thin asyncio adapters around the protocol cores: sockets, TLS, time-outs, limits.

An adapter reads from the transport, feeds the core, answers the core's decision events
through the application's handler and writes what the core gives back. It makes no
protocol decision of its own: those live in the cores (:mod:`mailagents.smtp`).

- :class:`SMTPServer` (and :func:`serve_smtp`): an SMTP or LMTP server; the application
  subclasses :class:`SMTPHandler`, and each call gets the connection's :class:`Session`.
  It runs on the protocol-neutral listener that the POP3 and IMAP servers share:
  connection limits, deadlines, back-pressure, the failed-login
  throttle and graceful shutdown, all set in one :class:`ListenerLimits`.
- :class:`POP3Server` (and :func:`serve_pop3`): a POP3 server on the same listener;
  the application subclasses :class:`POP3Handler` (credentials, the maildrop at login,
  each message streamed, the deletions at QUIT), and each call gets the connection's
  :class:`POP3Session`.
- :class:`IMAPServer` (and :func:`serve_imap`): an IMAP4rev2/rev1 server on the same
  listener (STARTTLS or implicit TLS, per-state deadlines, sessions per user, COMPRESS,
  IDLE woken by folder changes); the application subclasses :class:`IMAPHandler`
  (credentials, each command of the authenticated and selected states), and each call
  gets the connection's :class:`IMAPSession`. The store-backed handler is
  :class:`mailagents.agents.StoreIMAPHandler`.
- :class:`SMTPClient`: an SMTP or LMTP client (STARTTLS, AUTH, pipelining, BDAT,
  per-recipient results), with typed errors carrying the server's reply; it streams a
  spooled :class:`mailagents.delivery.Message`, binds a source address, and follows a
  :class:`TLSPolicy` (none, opportunistic, required, verified) reporting a
  :class:`TLSOutcome` per connection, as a relaying MTA needs.
- :class:`POP3Client`: a POP3 client (implicit TLS or STLS, verified by default; login
  by SCRAM, PLAIN or USER/PASS; streamed RETR; :meth:`POP3Client.fetch`, fetchmail's
  "keep" mode by unique id), with typed errors carrying the server's response.
- :class:`IMAPClient`: an IMAP4rev2/rev1 client (implicit TLS or STARTTLS, verified by
  default; LOGIN or SASL with SASL-IR; SELECT with CONDSTORE/QRESYNC; FETCH into parsed
  structures, big literals streamed to a file; SEARCH/ESEARCH, STORE, COPY/MOVE with
  COPYUID, APPEND with APPENDUID; IDLE as an async iterator; COMPRESS=DEFLATE), with
  typed errors carrying the server's response code.
- What long sessions need (an IMAP server): :class:`FolderWatcher` wakes a session when
  a folder changes (the stores' change hub, inotify or one poll per folder),
  :class:`StateTimeouts` gives each session state its own idle deadline, and
  :class:`DeflateCodec` is RFC 4978's COMPRESS=DEFLATE for the codec hook.
- :func:`make_self_signed` (and ``mailagents.aio.tls``): a certificate for demos and
  tests, and the usual server and client ``ssl.SSLContext`` objects.
"""

from mailagents.aio._codec import Codec, CodecError, DeflateCodec
from mailagents.aio._deadlines import StateTimeouts
from mailagents.aio._limits import ListenerLimits
from mailagents.aio._smtp_tls import TLSOutcome, TLSPolicy
from mailagents.aio._throttle import AuthThrottle
from mailagents.aio._watching import FolderWatch, FolderWatcher, folder_watcher
from mailagents.aio.imap import IMAPHandler, IMAPServer, IMAPSession, serve_imap
from mailagents.aio.imap_client import (
    IMAPAuthenticationError,
    IMAPClient,
    IMAPCommandError,
    IMAPConnecting,
    IMAPConnectionClosed,
    IMAPError,
    IMAPIdle,
    IMAPProtocolError,
    IMAPTimeout,
    IMAPTimeouts,
    IMAPTLSError,
    SearchResult,
    SelectResult,
    UpdateHandler,
)
from mailagents.aio.pop3 import POP3Handler, POP3Server, POP3Session, serve_pop3
from mailagents.aio.pop3_client import (
    FetchResult,
    MessageSink,
    POP3AuthenticationError,
    POP3Client,
    POP3Connecting,
    POP3ConnectionClosed,
    POP3Error,
    POP3ProtocolError,
    POP3ResponseError,
    POP3Timeout,
    POP3Timeouts,
    POP3TLSError,
)
from mailagents.aio.smtp import Session, SMTPHandler, SMTPServer, serve_smtp
from mailagents.aio.smtp_client import (
    ClientTimeouts,
    SendResult,
    SMTPAuthenticationError,
    SMTPClient,
    SMTPConnecting,
    SMTPConnectionClosed,
    SMTPError,
    SMTPProtocolError,
    SMTPRecipientsRefused,
    SMTPResponseError,
    SMTPTimeout,
    SMTPTLSError,
)
from mailagents.aio.tls import (
    SelfSignedCertificate,
    client_context,
    make_self_signed,
    server_context,
)

__all__ = [
    "Codec",
    "CodecError",
    "DeflateCodec",
    "FolderWatch",
    "FolderWatcher",
    "IMAPAuthenticationError",
    "IMAPClient",
    "IMAPHandler",
    "IMAPServer",
    "IMAPSession",
    "IMAPCommandError",
    "IMAPConnecting",
    "IMAPConnectionClosed",
    "IMAPError",
    "IMAPIdle",
    "IMAPProtocolError",
    "IMAPTLSError",
    "IMAPTimeout",
    "IMAPTimeouts",
    "SearchResult",
    "SelectResult",
    "StateTimeouts",
    "UpdateHandler",
    "folder_watcher",
    "AuthThrottle",
    "ListenerLimits",
    "ClientTimeouts",
    "FetchResult",
    "MessageSink",
    "POP3AuthenticationError",
    "POP3Client",
    "POP3Connecting",
    "POP3ConnectionClosed",
    "POP3Error",
    "POP3ProtocolError",
    "POP3ResponseError",
    "POP3TLSError",
    "POP3Timeout",
    "POP3Timeouts",
    "POP3Handler",
    "POP3Server",
    "POP3Session",
    "SMTPAuthenticationError",
    "SMTPClient",
    "SMTPConnecting",
    "SMTPConnectionClosed",
    "SMTPError",
    "SMTPProtocolError",
    "SMTPRecipientsRefused",
    "SMTPResponseError",
    "SMTPTLSError",
    "SMTPTimeout",
    "SendResult",
    "TLSOutcome",
    "TLSPolicy",
    "SMTPHandler",
    "SMTPServer",
    "SelfSignedCertificate",
    "Session",
    "client_context",
    "make_self_signed",
    "serve_imap",
    "serve_pop3",
    "serve_smtp",
    "server_context",
]
