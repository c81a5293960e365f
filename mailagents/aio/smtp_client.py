"""An asyncio SMTP and LMTP client: a thin adapter around
:class:`mailagents.smtp.ClientConnection`.

The adapter opens the connection, moves bytes between the socket and the core, upgrades
to TLS when the core says STARTTLS was accepted, enforces the per-command time-outs of
RFC 5321 §4.5.3.2 and turns the core's events into results and typed exceptions. Every
protocol rule (pipelining, BDAT, dot-stuffing, SASL framing, LMTP's replies per
recipient, the parameters the server allows) lives in the core::

    async with SMTPClient.connect("mail.example.org", 587) as client:
        await client.login("alice", "secret")
        result = await client.send_message(message)
        accepted, refused = result.accepted, result.refused

``connect`` uses STARTTLS whenever the server offers it and verifies the server's
certificate with :func:`~mailagents.aio.client_context` unless given another context;
a relaying MTA gives a :class:`TLSPolicy` instead (opportunistic TLS, RFC 7435, by
default) and reads the :class:`TLSOutcome` in :attr:`SMTPClient.tls`. A spooled
:class:`mailagents.delivery.Message` is streamed through the core, never read whole.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Mapping, Sequence
from email.message import Message
from types import TracebackType
from typing import Any

from mailagents import delivery, sasl
from mailagents.aio import _client
from mailagents.aio._smtp_content import Address, Pieces, eight_bit, from_message
from mailagents.aio._smtp_results import (
    ClientTimeouts,
    SendResult,
    SMTPAuthenticationError,
    SMTPConnectionClosed,
    SMTPError,
    SMTPProtocolError,
    SMTPRecipientsRefused,
    SMTPResponseError,
    SMTPTimeout,
    SMTPTLSError,
    address,
    all_replies,
    deciding_replies,
    describe,
)
from mailagents.aio._smtp_tls import TLSOutcome, TLSPolicy
from mailagents.aio.tls import client_context
from mailagents.smtp import MailParameters, RcptParameters, Reply
from mailagents.smtp.client import (
    AuthResult,
    ClientConnection,
    ClientEvent,
    ConnectionClosed,
    Greeting,
    Response,
    TransactionResult,
)

__all__ = [
    "ClientTimeouts",
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
]

log = logging.getLogger(__name__)

# login() without a mechanism: the first of these the server offers (RFC 4954).
_PREFERENCE = ("SCRAM-SHA-256", "PLAIN", "LOGIN")
_PASSWORD_MECHANISMS: Mapping[str, Callable[[str, str], sasl.ClientMechanism]] = {
    "SCRAM-SHA-256": sasl.ScramSha256Client,
    "PLAIN": sasl.PlainClient,
    "LOGIN": sasl.LoginClient,
    "CRAM-MD5": sasl.CramMd5Client,
}


class _HandshakeFailed(Exception):
    """A failed STARTTLS handshake that the policy answers with a plaintext retry."""


_DEFAULT_TIMEOUTS = ClientTimeouts()

_ERRORS = _client.ClientErrors(
    timeout=SMTPTimeout,
    tls=SMTPTLSError,
    closed=SMTPConnectionClosed,
    protocol=SMTPProtocolError,
)


# --- the client ---------------------------------------------------------------------------


class SMTPClient:
    """One SMTP (or LMTP) session over asyncio. Make it with :meth:`connect`.

    Requests run one at a time (concurrent calls wait their turn). Any
    :class:`SMTPTimeout`, :class:`SMTPConnectionClosed`, :class:`SMTPProtocolError` or
    :class:`SMTPTLSError` closes the connection; after a 4xx or 5xx refusal
    (:class:`SMTPResponseError`) the session goes on unless the reply was 421. Misuse
    (a CR or LF in an address, a message larger than the server's SIZE, a command out
    of order) raises the core's :class:`~mailagents.smtp.LocalProtocolError` before
    anything is sent.
    """

    _core: ClientConnection
    _stream: _client.ClientStream
    _host: str
    _server_hostname: str | None
    _ssl_context: ssl.SSLContext | None
    _policy: TLSPolicy | None
    _timeouts: ClientTimeouts
    _lock: asyncio.Lock
    _tls: TLSOutcome | None
    _downgraded: bool

    def __init__(self) -> None:
        """Not for direct use: make a client with :meth:`connect`."""
        raise TypeError("use SMTPClient.connect(host, port, ...)")

    @classmethod
    def _create(
        cls,
        core: ClientConnection,
        stream: _client.ClientStream,
        *,
        host: str,
        server_hostname: str | None,
        ssl_context: ssl.SSLContext | None,
        policy: TLSPolicy | None,
        timeouts: ClientTimeouts,
    ) -> SMTPClient:
        self = cls.__new__(cls)
        self._core = core
        self._stream = stream
        self._host = host
        self._server_hostname = server_hostname
        self._ssl_context = ssl_context
        self._policy = policy
        self._timeouts = timeouts
        self._lock = asyncio.Lock()
        self._tls = None
        self._downgraded = False
        return self

    # --- opening ------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        *,
        local_hostname: str = "localhost",
        lmtp: bool = False,
        implicit_tls: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        starttls: bool | None = None,
        server_hostname: str | None = None,
        timeouts: ClientTimeouts = _DEFAULT_TIMEOUTS,
        source_address: tuple[str, int] | None = None,
        tls_policy: TLSPolicy | None = None,
    ) -> SMTPConnecting:
        """Connect, wait for the greeting, say EHLO (LHLO with ``lmtp``; HELO if the
        server refuses EHLO with a 5xx) and set up TLS.

        Await it (``client = await SMTPClient.connect(...)``) or use it as an async
        context manager (``async with SMTPClient.connect(...) as client:``, which quits
        at the end).

        ``implicit_tls`` starts with a TLS handshake (RFC 8314, port 465). Otherwise
        ``starttls`` says what to do: ``None`` (the default) uses STARTTLS when the
        server offers it, ``True`` requires it (:class:`SMTPTLSError` if it is not
        offered or fails), ``False`` never uses it. The certificate is verified against
        ``server_hostname`` (default ``host``) with ``ssl_context``, by default
        :func:`~mailagents.aio.client_context` (the system's trusted authorities).
        A greeting other than 220 raises :class:`SMTPResponseError`.

        ``tls_policy`` (a :class:`TLSPolicy`, which an MTA picks per destination)
        replaces ``starttls`` and ``ssl_context``: give one or the other, not both
        (:class:`ValueError`). Its ``server_hostname``, when set, wins over the
        argument of that name. With ``implicit_tls`` it gives the handshake's context
        (mode ``"none"`` is refused, and there is no plaintext retry). How TLS turned
        out is :attr:`SMTPClient.tls`, logged at INFO once per connection.

        ``source_address`` is the local ``(address, port)`` to connect from (port 0:
        any), for a host with several addresses (the one its PTR and SPF records name).
        """
        return SMTPConnecting(
            cls,
            host,
            port,
            local_hostname=local_hostname,
            lmtp=lmtp,
            implicit_tls=implicit_tls,
            ssl_context=ssl_context,
            starttls=starttls,
            server_hostname=server_hostname,
            timeouts=timeouts,
            source_address=source_address,
            tls_policy=tls_policy,
        )

    @classmethod
    async def _open(
        cls,
        host: str,
        port: int,
        *,
        implicit_tls: bool,
        ssl_context: ssl.SSLContext | None,
        starttls: bool | None,
        tls_policy: TLSPolicy | None,
        **options: Any,
    ) -> SMTPClient:
        if implicit_tls and starttls:
            raise ValueError("implicit_tls and starttls=True exclude each other")
        if tls_policy is not None:
            if not isinstance(tls_policy, TLSPolicy):
                raise TypeError("tls_policy must be a TLSPolicy")
            if starttls is not None or ssl_context is not None:
                raise ValueError("tls_policy replaces starttls and ssl_context: give one only")
            if implicit_tls and tls_policy.mode == "none":
                raise ValueError("implicit_tls with a TLS policy of mode 'none'")
        try:
            client = await cls._open_once(
                host, port, implicit_tls=implicit_tls, ssl_context=ssl_context,
                starttls=starttls, policy=tls_policy, **options,
            )
        except _HandshakeFailed as failure:
            # RFC 7435 §3 puts getting through first: the policy allows one more
            # connection, without TLS. Said loudly, and reported by tls_downgraded.
            log.warning(
                "TLS handshake with %s:%d failed (%s); reconnecting without TLS as the "
                "policy allows", host, port, failure,
            )
            client = await cls._open_once(
                host, port, implicit_tls=False, ssl_context=None, starttls=False,
                policy=TLSPolicy(mode="none"), **options,
            )
            client._downgraded = True
        if client._tls is not None:
            log.info("TLS with %s:%d: %s", host, port, client._tls)
        else:
            log.info("no TLS with %s:%d%s", host, port,
                     " (plaintext retry after a failed handshake)" if client._downgraded else "")
        return client

    @classmethod
    async def _open_once(
        cls,
        host: str,
        port: int,
        *,
        local_hostname: str,
        lmtp: bool,
        implicit_tls: bool,
        ssl_context: ssl.SSLContext | None,
        starttls: bool | None,
        policy: TLSPolicy | None,
        server_hostname: str | None,
        timeouts: ClientTimeouts,
        source_address: tuple[str, int] | None,
    ) -> SMTPClient:
        if policy is not None:
            ssl_context = policy.context() if policy.mode != "none" else None
            starttls = policy.starttls
            server_hostname = policy.server_hostname or server_hostname
        context: ssl.SSLContext | None = None
        if implicit_tls:
            context = ssl_context if ssl_context is not None else client_context()
        stream = await _client.open_connection(
            host, port, ssl_context=context, server_hostname=server_hostname,
            timeout=timeouts.connect, errors=_ERRORS, local_addr=source_address,
        )
        core = ClientConnection(lmtp=lmtp, tls_active=implicit_tls)
        client = cls._create(
            core,
            stream,
            host=host,
            server_hostname=server_hostname,
            ssl_context=ssl_context,
            policy=policy,
            timeouts=timeouts,
        )
        if context is not None:
            client._tls = client._outcome(context, implicit=True)
        try:
            await client._start(local_hostname, starttls)
        except BaseException:
            client._abort()
            raise
        return client

    def _outcome(self, context: ssl.SSLContext, *, implicit: bool) -> TLSOutcome | None:
        transport = self._stream.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is None:  # pragma: no cover - every loop we know reports it
            return None
        return TLSOutcome.of(
            ssl_object, context, server_hostname=self._server_hostname or self._host,
            implicit=implicit,
        )

    async def _start(self, local_hostname: str, starttls: bool | None) -> None:
        event = await self._call(None)
        assert isinstance(event, Greeting)
        if event.reply.code != 220:
            raise SMTPResponseError(
                event.reply, f"the server refused the session: {describe(event.reply)}"
            )
        await self._hello(local_hostname)
        core = self._core
        if starttls is False or core.tls_active:
            return
        if "STARTTLS" not in core.extensions:
            if starttls:
                raise SMTPTLSError("the server does not offer STARTTLS")
            return
        event = await self._call(core.starttls)
        assert isinstance(event, Response)
        if event.reply.code != 220:
            if starttls:
                raise SMTPTLSError(f"STARTTLS refused: {describe(event.reply)}", event.reply)
            log.info("STARTTLS refused by %s (%s); going on without TLS",
                     self._host, describe(event.reply))
            return
        context = self._ssl_context if self._ssl_context is not None else client_context()
        try:
            await _client.start_tls(
                self._stream, context, host=self._host,
                server_hostname=self._server_hostname, timeout=self._timeouts.connect,
                errors=_ERRORS,
            )
        except (SMTPTLSError, SMTPConnectionClosed, SMTPTimeout) as exc:
            policy = self._policy
            if policy is None:
                raise
            if policy.on_handshake_failure == "plaintext":
                raise _HandshakeFailed(str(exc)) from exc
            if isinstance(exc, SMTPTLSError):
                raise
            # "defer": any failed handshake is a TLS failure; the queue retries later.
            raise SMTPTLSError(f"TLS handshake with {self._host} failed: {exc}") from exc
        self._tls = self._outcome(context, implicit=False)
        core.tls_started()
        await self._hello(local_hostname)

    async def _hello(self, local_hostname: str) -> None:
        core = self._core
        # EHLO, or HELO after a 5xx to EHLO: the fall-back is the core's (RFC 5321 §3.2).
        event = await self._call(lambda: core.hello(local_hostname))
        assert isinstance(event, Response)
        if not 200 <= event.reply.code < 300:
            raise SMTPResponseError(event.reply)

    # --- state ----------------------------------------------------------------------------

    @property
    def extensions(self) -> Mapping[str, str]:
        """The server's extensions from its last EHLO/LHLO reply: upper-case keyword to
        parameters (``{"SIZE": "35882577", "PIPELINING": ""}``)."""
        return self._core.extensions

    @property
    def tls_active(self) -> bool:
        """Whether the session runs over TLS."""
        return self._core.tls_active

    @property
    def tls(self) -> TLSOutcome | None:
        """How this connection's TLS turned out (version, cipher, whether the
        certificate was verified, the certificate itself), or ``None`` when the
        session is in plaintext."""
        return self._tls

    @property
    def tls_downgraded(self) -> bool:
        """Whether the TLS handshake failed and this session is the plaintext retry
        that the :class:`TLSPolicy` allowed (``on_handshake_failure="plaintext"``)."""
        return self._downgraded

    @property
    def authenticated(self) -> bool:
        """Whether :meth:`login` (or :meth:`authenticate`) succeeded."""
        return self._core.authenticated

    @property
    def lmtp(self) -> bool:
        """Whether this is an LMTP session."""
        return self._core.lmtp

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (or closing after a 421 or QUIT)."""
        return self._stream.closed

    # --- requests -----------------------------------------------------------------------

    async def login(
        self,
        username: str,
        password: str,
        *,
        mechanism: str | None = None,
        allow_plaintext: bool = False,
    ) -> Reply:
        """Authenticate with a user name and password (RFC 4954) and return the 235.

        Without ``mechanism`` the first of SCRAM-SHA-256, PLAIN and LOGIN that the
        server offers is used; ``mechanism`` may also name CRAM-MD5. Raises
        :class:`SMTPAuthenticationError` when the server offers no such mechanism or
        refuses the credentials.

        PLAIN and LOGIN send the password itself: without TLS they are refused unless
        ``allow_plaintext`` is set (a man in the middle who strips STARTTLS would read
        it otherwise).
        """
        offered = self._core.extensions.get("AUTH")
        if offered is None:
            raise SMTPAuthenticationError("the server does not offer AUTH")
        names = offered.upper().split()
        if mechanism is None:
            chosen = next((name for name in _PREFERENCE if name in names), None)
            if chosen is None:
                raise SMTPAuthenticationError(
                    f"no supported SASL mechanism among those offered ({offered})"
                )
        else:
            chosen = mechanism.upper()
            if chosen not in _PASSWORD_MECHANISMS:
                raise ValueError(f"{mechanism!r} is not a user name and password mechanism")
            if chosen not in names:
                raise SMTPAuthenticationError(
                    f"the server does not offer {chosen} (it offers {offered})"
                )
        if chosen in ("PLAIN", "LOGIN") and not self._core.tls_active and not allow_plaintext:
            raise SMTPAuthenticationError(
                f"{chosen} would send the password in the clear: use TLS, or pass "
                "allow_plaintext=True"
            )
        return await self.authenticate(_PASSWORD_MECHANISMS[chosen](username, password))

    async def authenticate(self, mechanism: sasl.ClientMechanism) -> Reply:
        """Authenticate with any SASL client mechanism (for example a
        :class:`~mailagents.sasl.OAuthBearerClient`) and return the 235."""
        core = self._core
        event = await self._call(lambda: core.authenticate(mechanism))
        assert isinstance(event, AuthResult)
        if event.success:
            return event.reply
        if event.error is not None:
            self._abort()
            raise SMTPAuthenticationError(
                f"the server did not prove itself: {event.error}", event.reply, event.error
            )
        raise SMTPAuthenticationError(
            f"authentication failed: {describe(event.reply)}", event.reply
        )

    async def send_message(
        self,
        message: Message | bytes | delivery.Message,
        *,
        sender: Address | None = None,
        recipients: Sequence[Address] | None = None,
        parameters: MailParameters | None = None,
        recipient_parameters: Sequence[RcptParameters] | None = None,
        use_bdat: bool | None = None,
        chunk_size: int = 1 << 20,
    ) -> SendResult:
        """Send one message in one mail transaction; the connection stays open for more.

        ``message`` is an :class:`email.message.EmailMessage` (or any
        :class:`email.message.Message`), the message's bytes, or a
        :class:`mailagents.delivery.Message` (a spooled message, as a queue holds it).
        For a message object the
        envelope comes from its headers when not given, as ``smtplib.SMTP.send_message``
        does it: the sender from Sender or else From, the recipients from To, Cc and Bcc
        (the ``Resent-`` headers instead when there is one Resent-Date); Bcc and
        Resent-Bcc are left out of what is sent. Bytes and a
        :class:`~mailagents.delivery.Message` need ``sender`` and ``recipients``.

        A :class:`~mailagents.delivery.Message` is streamed, never read whole: its
        pieces (64 KiB reads of the spool file, in a worker thread) go to the core's
        streaming mode one at a time, each written and drained before the next is
        read (a server that takes nothing for ``timeouts.data_block`` seconds raises
        :class:`SMTPTimeout`). The octets sent are those its bytes would give. SIZE
        announces its stored size; unless ``parameters`` give BODY, it is first read
        through once to see whether it has 8-bit octets, so that BODY is chosen (or
        the message refused) as for bytes.

        The core uses PIPELINING and BDAT when the server offers them (``use_bdat``:
        ``False`` never, ``True`` requires CHUNKING; chunks of ``chunk_size``
        octets), and adds SIZE, BODY and SMTPUTF8 as the message needs.
        ``parameters`` and ``recipient_parameters`` add others (DSN, REQUIRETLS).

        Returns a :class:`SendResult` when at least one recipient was accepted. Raises
        :class:`SMTPRecipientsRefused` when every recipient was refused (at RCPT or, in
        LMTP, after the data), :class:`SMTPResponseError` when MAIL, DATA or the content
        was refused or the server closed with 421; either carries the transaction and
        each recipient's deciding reply (``transaction``, ``replies``).
        """
        streamed: delivery.Message | None = None
        data: bytes | None = None
        if isinstance(message, Message):
            sender, recipients, data = from_message(message, sender, recipients)
        elif isinstance(message, bytes | bytearray | memoryview | delivery.Message):
            if sender is None or recipients is None:
                raise ValueError("a message given as bytes needs sender and recipients")
            if isinstance(message, delivery.Message):
                streamed = message
            else:
                data = bytes(message)
        else:
            raise TypeError(
                f"message must be an email Message, bytes or a delivery.Message, not {message!r}"
            )
        rcpts = list(recipients)
        if not rcpts:
            raise ValueError("no recipients")
        core = self._core
        options: dict[str, Any] = {
            "parameters": parameters,
            "recipient_parameters": recipient_parameters,
            "use_bdat": use_bdat,
            "chunk_size": chunk_size,
        }
        if streamed is None:
            event = await self._call(lambda: core.send_mail(sender, rcpts, data, **options))
        else:
            if parameters is None or parameters.body is None:
                options["eight_bit"] = await eight_bit(streamed)
            pieces = Pieces(streamed)

            async def step() -> None:
                piece = await pieces.next()
                if piece is None:
                    core.end_content()
                else:
                    core.send_content(piece)

            try:
                event = await self._call(
                    lambda: core.send_mail(sender, rcpts, None, size=streamed.size, **options),
                    feed=_client.Feed(ready=lambda: core.wants_content, step=step),
                )
            finally:
                pieces.close()
        assert isinstance(event, TransactionResult)
        return self._send_result(event)

    def _send_result(self, result: TransactionResult) -> SendResult:
        data_replies = result.data_replies
        replies = deciding_replies(result, lmtp=self.lmtp)
        for reply in all_replies(result):
            if reply.code == 421:
                raise SMTPResponseError(
                    reply, f"the server is closing: {describe(reply)}",
                    transaction=result, replies=replies,
                )
        if not 200 <= result.mail_reply.code < 300:
            raise SMTPResponseError(
                result.mail_reply, f"the sender was refused: {describe(result.mail_reply)}",
                transaction=result, replies=replies,
            )
        rcpt_ok = [address(p) for p, r in result.recipient_replies if 200 <= r.code < 300]
        accepted = tuple(address(p) for p in result.accepted)
        taken = set(accepted)
        refused = {a: r for a, r in replies.items() if a not in taken}
        if not accepted:
            if not rcpt_ok or (self.lmtp and len(data_replies) == len(rcpt_ok)):
                raise SMTPRecipientsRefused(refused, transaction=result, replies=replies)
            last = data_replies[-1] if data_replies else result.mail_reply
            raise SMTPResponseError(
                last, f"the message was refused: {describe(last)}",
                transaction=result, replies=replies,
            )
        return SendResult(
            accepted=accepted,
            refused=refused,
            data_replies=data_replies,
            replies=replies,
            transaction=result,
        )

    async def noop(self) -> Reply:
        """NOOP: check that the session is alive. Returns the 250."""
        return await self._simple(self._core.noop)

    async def rset(self) -> Reply:
        """RSET: abandon any transaction. Returns the 250."""
        return await self._simple(self._core.rset)

    async def _simple(self, start: Callable[[], None]) -> Reply:
        event = await self._call(start)
        assert isinstance(event, Response)
        if not 200 <= event.reply.code < 300:
            raise SMTPResponseError(event.reply)
        return event.reply

    async def quit(self) -> Reply | None:
        """QUIT, then close the connection. Returns the server's reply (221), or
        ``None`` if the connection was already closed."""
        if self._stream.closed:
            return None
        try:
            event = await self._call(self._core.quit)
        except SMTPConnectionClosed:
            return None
        finally:
            await self.close()
        assert isinstance(event, Response)
        return event.reply

    async def close(self) -> None:
        """Close the connection without QUIT (abort it if it cannot flush within a
        couple of seconds)."""
        await self._stream.close()

    async def __aenter__(self) -> SMTPClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            try:
                await self.quit()
            except SMTPError as error:
                log.debug("QUIT to %s failed: %s", self._host, error)
        await self.close()

    # --- moving bytes ---------------------------------------------------------------------

    def _abort(self) -> None:
        self._stream.abort()

    async def _call(
        self, start: Callable[[], None] | None, *, feed: _client.Feed | None = None
    ) -> ClientEvent:
        """Queue one request on the core (``start``) and run the connection until its
        event arrives, streaming ``feed``'s content as the core asks. ``None`` waits
        for the greeting."""
        async with self._lock:
            event: ClientEvent = await _client.request(
                self._core, self._stream, start, self._wait,
                host=self._host, errors=_ERRORS, closed_event=ConnectionClosed,
                drain_timeout=self._timeouts.data_block,
                rearm_after_write=True,  # each step's time-out starts with its write
                feed=feed,
            )
            assert not isinstance(event, ConnectionClosed)  # request() raised instead
            replies = all_replies(event) if isinstance(event, TransactionResult) else [event.reply]
            if any(reply.code == 421 for reply in replies) or (
                isinstance(event, Response) and event.command == "QUIT"
            ):
                # The server closes after a 421 (RFC 5321 §3.8), and after QUIT.
                stream = self._stream
                stream.closed = True
                if stream.transport is not None:
                    stream.transport.close()
            return event

    def _wait(self) -> _client.Wait:
        """What the core waits for: a key that changes with each reply consumed, and
        the step (``"GREETING"``, ``"MAIL"``, ``"RCPT"``, ``"DATA"``, ``"FINAL"``,
        ``"BDAT"``, or a command such as ``"EHLO"``) with its time-out."""
        core = self._core
        step = core.awaiting or "COMMAND"
        key = (core.replies_received, core.awaiting)
        return _client.Wait(key=key, step=step, seconds=self._limit(step))

    def _limit(self, step: str) -> float:
        t = self._timeouts
        return {
            "GREETING": t.greeting,
            "MAIL": t.mail,
            "RCPT": t.rcpt,
            "DATA": t.data_initiation,
            "BDAT": t.data_block,
            "CONTENT": t.data_block,
            "FINAL": t.data_termination,
        }.get(step, t.command)


class SMTPConnecting(_client.Connecting[SMTPClient]):
    """What :meth:`SMTPClient.connect` returns: await it for the :class:`SMTPClient`,
    or use it as an async context manager (which quits and closes at the end)."""

    def __init__(self, cls: type[SMTPClient], host: str, port: int, **options: Any) -> None:
        super().__init__(lambda: cls._open(host, port, **options))
