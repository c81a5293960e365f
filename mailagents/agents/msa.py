"""The mail submission agent (MSA, RFC 6409): authenticated submission on ports 587
(STARTTLS) and 465 (implicit TLS, RFC 8314).

:class:`MSA` is a short composition: two :class:`~mailagents.aio.SMTPServer` listeners
around one :class:`~mailagents.aio.SMTPHandler` that answers AUTH from a
:class:`~mailagents.userdb.UserStore`, checks that the sender is the user's own, adds
the headers an MSA adds, and hands the message to a delivery callable. The policy is in
plain callables: ``senders`` (which addresses a user owns) and ``deliver`` (where a
message goes; the default, :class:`MaildirDelivery`, writes into local Maildirs until
the queue exists)::

    users = PasswordFile("users")
    async with MSA("mail.example.test", users, local_domains={"example.test"},
                   ssl_context=server_context("cert.pem", "key.pem")) as msa:
        await msa.serve(submission_port=587, submissions_port=465)
        await asyncio.Event().wait()
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.parser
import email.policy
import email.utils
import functools
import inspect
import logging
import os
import secrets
import ssl
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mailagents import sasl
from mailagents.agents._lifecycle import (
    AsyncClosing,
    bound_port,
    close_listeners,
    safe_name,
    start_pair,
)
from mailagents.agents._writer import WriterClient
from mailagents.aio import Session, SMTPHandler, SMTPServer
from mailagents.smtp import (
    Accept,
    Envelope,
    LMTPReplies,
    Mailbox,
    MailFrom,
    RcptTo,
    Reject,
    Reply,
    ServerConfig,
)
from mailagents.store import AppendWriter, MaildirFolder, MaildirStore
from mailagents.userdb import UserStore

__all__ = [
    "MECHANISMS",
    "Deliver",
    "MSA",
    "MaildirDelivery",
    "SendersPolicy",
    "Submission",
]

log = logging.getLogger(__name__)

MECHANISMS: tuple[str, ...] = ("SCRAM-SHA-256", "PLAIN", "LOGIN")
"""The SASL mechanisms an :class:`MSA` offers by default, strongest first (only over
TLS: the core never offers AUTH in the clear)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Submission:
    """One accepted message, as handed to the delivery callable."""

    id: str
    """The identifier the MSA gave it (in the ``Received:`` header and the 250 reply)."""
    identity: str
    """The authenticated (authorised) identity that submitted it."""
    envelope: Envelope
    """The envelope: reverse-path, recipients (all accepted) and parameters."""
    message: bytes
    """The message with CRLF line ends, with the ``Received:`` header and any
    ``Message-ID:`` and ``Date:`` the MSA added."""


Deliver = Callable[[Submission], Awaitable[object]]
"""Where a message goes: an async callable that returns only once the message is
durable (then the client gets 250) and raises if it could not make it so (then 451
4.3.0). Its return value is ignored by the MSA."""

SendersPolicy = (
    Callable[[str], Collection[str] | Awaitable[Collection[str]]] | Mapping[str, Collection[str]]
)
"""Which addresses an identity owns: a callable (plain or async) from the identity to
its addresses, or a mapping from identity to addresses. An address ``@domain`` stands
for every address of that domain."""

_PROTECTED_FIELDS = ("From", "Sender")
_PROTECTED_LOWER = frozenset(f.lower() for f in _PROTECTED_FIELDS)
_MAX_CACHED_FIELD = 998  # longer From:/Sender: values are parsed each time, not cached
_MAX_PATHS = 4096  # recipients whose Maildir path MaildirDelivery remembers


def _lower_address(address: str) -> str:
    """An address as compared for ownership: the whole of it in lower case."""
    return address.strip().removeprefix("<").removesuffix(">").lower()


def _mailbox_key(mailbox: Mailbox) -> str:
    return f"{mailbox.local_part}@{mailbox.domain}".lower()


def _owns(owned: frozenset[str], address: str) -> bool:
    """``address`` (lower case) is in ``owned`` or its domain is, as ``@domain``."""
    _, at, domain = address.rpartition("@")
    return address in owned or (bool(at) and "@" + domain in owned)


@functools.lru_cache(maxsize=1024)
def _parse_addresses(name: str, value: str) -> tuple[str, ...] | None:
    """The addresses (lower case) of a ``From:`` or ``Sender:`` field as the message
    holds it (``value`` folded as it arrived), or ``None`` if the field is defective,
    names none, or the email package fails on it. The same parse as
    ``EmailMessage.get_all(name)`` with the default policy (RFC 5322 §3.6.2), kept for
    the values seen last: a user's ``From:`` is the same from one message to the
    next, and its parse costs about 80 µs."""
    try:
        field = email.policy.default.header_fetch_parse(name, value)
    except Exception:  # the email package fails on some malformed fields (``"``)
        return None
    addresses = getattr(field, "addresses", ())
    if getattr(field, "defects", ()) or not addresses:
        return None
    return tuple(f"{a.username}@{a.domain}".lower() for a in addresses)


def _field_addresses(name: str, value: str) -> tuple[str, ...] | None:
    """:func:`_parse_addresses`, cached only for values of a bounded length."""
    if len(value) > _MAX_CACHED_FIELD:
        return _parse_addresses.__wrapped__(name, value)
    return _parse_addresses(name.lower(), value)


def _header_end(message: bytes) -> int:
    """Where the header section ends: the offset of the empty line (or the end)."""
    if message.startswith(b"\r\n"):
        return 0
    end = message.find(b"\r\n\r\n")
    return len(message) if end < 0 else end + 2


def _comment_text(text: str) -> str:
    """``text`` made safe inside a header comment: printable, no parentheses."""
    return "".join(c if c.isprintable() and c not in "()\\" else "?" for c in text)


def _reply(code: int, enhanced: str, text: str) -> Reject:
    return Reject(reply=Reply(code=code, enhanced=enhanced, lines=(text,)))


_NOT_YOUR_SENDER = _reply(553, "5.7.1", "Sender address not owned by the authenticated user")
_NOT_YOUR_FROM = _reply(
    550, "5.7.1", "From: or Sender: address not owned by the authenticated user"
)
_NO_FROM = _reply(550, "5.6.0", "The message has no From: header (RFC 5322 §3.6)")
_NO_RELAY = _reply(550, "5.7.1", "Relaying denied: not a local recipient")
_NOT_DELIVERED = _reply(451, "4.3.0", "Delivery failed, try again later")
_AUTH_FIRST = _reply(530, "5.7.0", "Authentication required")


class _Handler(SMTPHandler):
    """The MSA's decisions for the sessions of its listeners."""

    def __init__(self, msa: MSA) -> None:
        self.msa = msa

    async def on_credentials(self, session: Session, request: sasl.NeedCredentials) -> sasl.Answer:
        """Answer AUTH from the user store (scrypt off the event loop)."""
        return await self.msa.users.answer_async(request)

    async def on_mail(self, session: Session, event: MailFrom) -> Accept | Reject:
        """The reverse-path must be one of the user's addresses (or null)."""
        if session.identity is None:  # the core's require_auth already says 530
            return _AUTH_FIRST
        owned = await self.msa.addresses_of(session.identity)
        session.data["msa.owned"] = (session.identity, owned)
        mailbox = event.path.mailbox
        if mailbox is not None and not _owns(owned, _mailbox_key(mailbox)):
            log.info("%s (%s) may not send as %s", session.peer, session.identity, mailbox)
            return _NOT_YOUR_SENDER
        return Accept()

    async def on_rcpt(self, session: Session, event: RcptTo) -> Accept | Reject:
        """Local recipients only, unless the MSA relays."""
        if self.msa.relay or self.msa.is_local(event.path.mailbox):
            return Accept()
        return _NO_RELAY

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        """Check From:/Sender:, add the headers, deliver, and only then say 250."""
        identity = session.identity
        if identity is None:  # pragma: no cover - MAIL needed AUTH
            return _AUTH_FIRST
        cached = session.data.get("msa.owned")
        if cached is not None and cached[0] == identity:
            owned: frozenset[str] = cached[1]
        else:  # pragma: no cover - MAIL computed it
            owned = await self.msa.addresses_of(identity)
        end = _header_end(message)
        headers = email.parser.Parser(policy=email.policy.default).parsestr(
            message[:end].decode("utf-8", "replace"), headersonly=True
        )
        if "From" not in headers:
            return _NO_FROM
        for name, value in headers.raw_items():
            if name.lower() in _PROTECTED_LOWER:
                addresses = _field_addresses(name, value)
                if addresses is None or not all(_owns(owned, a) for a in addresses):
                    log.info("%s (%s): %s: not the user's own", session.peer, identity, name)
                    return _NOT_YOUR_FROM
        msa = self.msa
        submission_id = secrets.token_hex(8)
        added = b""
        if "Date" not in headers:
            added += f"Date: {email.utils.formatdate(localtime=True)}\r\n".encode()
        if "Message-ID" not in headers:
            added += f"Message-ID: {email.utils.make_msgid(domain=msa.hostname)}\r\n".encode()
        if end == len(message) and message and not message.endswith(b"\r\n"):
            added = b"\r\n" + added
        final = (
            msa.received_header(session, envelope, submission_id)
            + message[:end]
            + added
            + message[end:]
        )
        submission = Submission(
            id=submission_id, identity=identity, envelope=envelope, message=final
        )
        try:
            await msa.deliver(submission)
        except Exception:
            log.exception("delivery of %s failed", submission_id)
            return _NOT_DELIVERED
        log.info(
            "%s (%s) submitted %s for %d recipient(s)",
            session.peer,
            identity,
            submission_id,
            len(envelope.recipients),
        )
        return Accept(reply=Reply(code=250, enhanced="2.0.0", lines=(f"Ok: {submission_id}",)))


class MSA(AsyncClosing):
    """A mail submission agent (RFC 6409), composed of two SMTP listeners.

    ``hostname`` names the server (greeting, ``Received:``, ``Message-ID:``);
    ``users`` answers AUTH (:meth:`~mailagents.userdb.UserStore.answer_async`, with the
    ``mechanisms`` offered, only over TLS); ``ssl_context`` serves STARTTLS on the
    submission port and implicit TLS on the submissions port.

    Policy hooks:

    * ``senders``: the addresses each authenticated identity owns (see
      :data:`~mailagents.agents.SendersPolicy`). The envelope sender and every address
      in ``From:`` and ``Sender:`` must be among them (553 5.7.1 at MAIL, 550 5.7.1
      after DATA). Without it, or for an identity a mapping does not list, an identity
      owns itself when it is an address (``alice@example.test``). Addresses compare
      case-insensitively.
    * ``deliver``: an async callable (see :data:`~mailagents.agents.Deliver`) called
      with each :class:`Submission`; the client hears 250 only once it has returned,
      and 451 4.3.0 if it raised. The default is a :class:`MaildirDelivery` into
      ``mail/{user}/Maildir`` (relative to the working directory), which the MSA
      closes with itself.

    A recipient is accepted when its domain is in ``local_domains`` (others get 550
    5.7.1: no relaying), or any recipient with ``relay=True`` (for a ``deliver`` that
    sends mail onward). ``show_auth_user`` names the user in the ``Received:`` header
    (off by default: it is personal data). ``max_message_size`` goes to the core
    (announced with SIZE); ``config``, if given, is the base
    :class:`~mailagents.smtp.ServerConfig` (the MSA sets the host name, the mechanisms,
    ``require_auth`` and the size limit in it); ``server_options`` are more keyword
    arguments for each :class:`~mailagents.aio.SMTPServer` (time-outs, connection
    limits, the failed-login throttle).

    Call :meth:`serve`, then :meth:`close`; or use ``async with`` (which closes).
    """

    def __init__(
        self,
        hostname: str,
        users: UserStore,
        deliver: Deliver | None = None,
        *,
        local_domains: Collection[str],
        ssl_context: ssl.SSLContext,
        senders: SendersPolicy | None = None,
        relay: bool = False,
        show_auth_user: bool = False,
        mechanisms: Sequence[str] = MECHANISMS,
        max_message_size: int | None = ServerConfig().max_message_size,
        config: ServerConfig | None = None,
        server_options: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(local_domains, str):
            raise TypeError("local_domains is a collection of domains, not one string")
        self.hostname = hostname
        """The server's name."""
        self.users = users
        """The :class:`~mailagents.userdb.UserStore` that answers AUTH."""
        self._own_delivery: MaildirDelivery | None = None
        if deliver is None:
            deliver = self._own_delivery = MaildirDelivery("mail/{user}/Maildir")
        self.deliver: Deliver = deliver
        """The delivery callable."""
        self.local_domains = frozenset(d.lower().rstrip(".") for d in local_domains)
        """The domains whose recipients are accepted (lower case)."""
        self.senders = senders
        """The ``senders`` policy, or ``None`` (each identity owns itself)."""
        self.relay = relay
        """Accept any recipient (``deliver`` sends mail onward)."""
        self.show_auth_user = show_auth_user
        """Name the authenticated user in the ``Received:`` header."""
        self.ssl_context = ssl_context
        """The TLS context of both listeners."""
        self.config = dataclasses.replace(
            config if config is not None else ServerConfig(),
            hostname=hostname,
            auth_mechanisms=tuple(mechanisms),
            require_auth=True,
            max_message_size=max_message_size,
        )
        """The :class:`~mailagents.smtp.ServerConfig` of the listeners (STARTTLS or
        implicit TLS is set by each)."""
        self.server_options: dict[str, Any] = dict(server_options or {})
        """More keyword arguments for each :class:`~mailagents.aio.SMTPServer` (time-outs,
        connection limits, the failed-login throttle)."""
        self.submission: SMTPServer | None = None
        """The submission listener (STARTTLS, port 587) once :meth:`serve` has run."""
        self.submissions: SMTPServer | None = None
        """The submissions listener (implicit TLS, port 465) once :meth:`serve` has run."""

    # ----------------------------------------------------------------- policy helpers

    async def addresses_of(self, identity: str) -> frozenset[str]:
        """The addresses ``identity`` owns according to ``senders``, in lower case."""
        senders = self.senders
        found: Collection[str] | None
        if senders is None:
            found = None
        elif isinstance(senders, Mapping):
            found = senders.get(identity)
        else:
            result = senders(identity)
            found = await result if inspect.isawaitable(result) else result
        if found is None:
            found = (identity,) if "@" in identity.strip("@") else ()
        elif isinstance(found, str):
            found = (found,)
        return frozenset(_lower_address(a) for a in found)

    def is_local(self, mailbox: Mailbox | None) -> bool:
        """Whether ``mailbox`` is in one of :attr:`local_domains`."""
        return mailbox is not None and mailbox.domain.lower().rstrip(".") in self.local_domains

    def received_header(self, session: Session, envelope: Envelope, submission_id: str) -> bytes:
        """The ``Received:`` trace field (RFC 5321 §4.4) for one message, with the
        protocol of RFC 3848 (``ESMTPA``, ``ESMTPS``, ``ESMTPSA``)."""
        protocol = "ESMTP" + ("S" if session.tls else "") + ("A" if session.identity else "")
        address = str(session.peer[0]) if session.peer else "unknown"
        literal = f"IPv6:{address}" if ":" in address else address
        helo = _comment_text(session.helo or "unknown")
        source = f"from {helo} ([{literal}])"
        if self.show_auth_user and session.identity:
            source += f"\r\n\t(authenticated as {_comment_text(session.identity)})"
        clause = ""
        if len(envelope.recipients) == 1:
            mailbox = envelope.recipients[0].path.mailbox
            if mailbox is not None:
                clause = f"\r\n\tfor <{mailbox}>"
        date = email.utils.formatdate(localtime=True)
        return (
            f"Received: {source}\r\n\tby {self.hostname} (mailagents) with {protocol}"
            f" id {submission_id}{clause};\r\n\t{date}\r\n"
        ).encode()

    # ------------------------------------------------------------------------ running

    async def serve(
        self,
        host: str | Sequence[str] = "127.0.0.1",
        submission_port: int | None = 587,
        submissions_port: int | None = 465,
    ) -> None:
        """Listen on ``host`` (one or several addresses): submission with STARTTLS on
        ``submission_port`` and implicit TLS on ``submissions_port``. ``0`` takes a
        free port (see :attr:`submission_port`), ``None`` skips that listener."""
        if self.submission is not None or self.submissions is not None:
            raise RuntimeError("the MSA is already serving")

        def make(implicit_tls: bool, options: Mapping[str, Any]) -> SMTPServer:
            return SMTPServer(
                _Handler(self),
                self.config,
                ssl_context=self.ssl_context,
                implicit_tls=implicit_tls,
                **options,
            )

        def keep(implicit_tls: bool, server: SMTPServer) -> None:
            if implicit_tls:
                self.submissions = server
            else:
                self.submission = server

        await start_pair(
            self, make, keep, host, submission_port, submissions_port, self.server_options
        )

    @property
    def submission_port(self) -> int:
        """The bound port of the submission (STARTTLS) listener."""
        return bound_port(self.submission, "submission")

    @property
    def submissions_port(self) -> int:
        """The bound port of the submissions (implicit TLS) listener."""
        return bound_port(self.submissions, "submissions")

    async def close(self) -> None:
        """Stop both listeners (sessions end with 421) and the default delivery."""
        servers = (self.submission, self.submissions)
        self.submission = self.submissions = None
        await close_listeners(*servers)
        if self._own_delivery is not None:
            await asyncio.to_thread(self._own_delivery.close)


class MaildirDelivery:
    """The default delivery: each recipient's Maildir, through
    :class:`~mailagents.store.MaildirStore` and the store's own executor.

    ``path`` is a template for each recipient's Maildir: ``{user}`` is the address
    (``alice@example.test``), ``{local}`` and ``{domain}`` its parts; all in lower case,
    with any character other than letters, digits and ``@.+=_-`` written ``%XX`` and a
    leading dot as ``%2E``, so that no address can name a path outside its own folder.

    A call writes the message into every recipient's ``tmp/`` first, then commits each
    (fsync of the file and the directory). If anything fails, whatever was not yet
    committed is removed and the exception propagates (the MSA answers 451); a
    recipient already committed keeps its copy, so a retry may duplicate, never lose
    (RFC 5321 §6.1). Returns the Maildir directories written to, in recipient order.
    ``fsync=False`` is for tests only.

    Messages for one recipient (the common case) that arrive while others for the same
    Maildir are being written are delivered together (group commit): one executor call
    writes each into ``tmp/``, fsyncs each, renames each into ``new/``, then fsyncs
    ``new/`` once (:meth:`~mailagents.store.MaildirFolder.append_batch`), and only then
    does any of those calls return. At most ``max_batches`` such batches per Maildir
    are written at once, each of at most ``max_batch`` messages: one batch at a time
    costs the least CPU and, measured on ext4, gives the most messages per second
    (what arrives meanwhile waits for the next, larger batch); more let a slow message
    (a big one) hold up fewer others, and may help a disk that gains from parallel
    writes.

    ``writer`` says where that file work runs. ``"thread"`` (the default): in the
    store's executor, in this process. ``"process"`` (opt-in): in one long-lived writer
    process per event loop (``mailagents.agents._writer``, started on the first
    delivery), fed over a socket; it groups what has arrived per Maildir into batches
    of at most 16, and acknowledges each message only after its batch is durable, so
    the call still returns only then. Why a process: in a thread the file work holds
    the GIL often enough to slow the event loop; measured on two CPUs it is about 1.5
    times faster with many concurrent sessions. Trade-offs: an extra process (its
    start, about a quarter of a second, delays the first delivery); each message is
    copied once more, over the socket; messages larger than ``max_message_size`` are
    refused; and if the writer dies, every delivery waiting for
    it raises (the MSA answers 451; a message it had written but not yet acknowledged
    may then be delivered twice after the client's retry, never lost), and the next
    delivery starts a new writer, after a back-off of 50 ms doubling up to 2 s while
    writers keep dying. A writer that stays alive but hangs (a stalled disk, a bug) is
    caught by ``ack_timeout`` (seconds, default 120): once the oldest delivery waiting
    for it has waited longer than that, the writer is killed (SIGKILL) and handled as
    one that died (every delivery waiting raises, a message written but not
    acknowledged may be duplicated on retry, never lost; the next delivery starts a new
    writer); keep it well above the slowest fsync the disk may take. Messages for
    several recipients still take the thread path (all copies written before any is
    committed). Stop it with :meth:`aclose` (waits for the
    pending acknowledgements, then stops the writer); :meth:`close` only signals it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: bool = True,
        max_workers: int = 16,
        max_batches: int = 1,
        max_batch: int = 64,
        writer: Literal["thread", "process"] = "thread",
        max_message_size: int = 1 << 28,
        ack_timeout: float = 120.0,
    ) -> None:
        if max_batches < 1 or max_batch < 1:
            raise ValueError("max_batches and max_batch must be at least 1")
        if writer not in ("thread", "process"):
            raise ValueError(f"writer must be 'thread' or 'process', not {writer!r}")
        if not 0 < max_message_size < 1 << 32:
            raise ValueError("max_message_size must be between 1 and 2**32 - 1")
        if not ack_timeout > 0:
            raise ValueError("ack_timeout must be positive")
        self.writer = writer
        """Where single-recipient deliveries are written: ``"thread"`` or ``"process"``."""
        self.max_message_size = max_message_size
        """The largest message the writer process takes (``writer="process"``)."""
        self.ack_timeout = ack_timeout
        """Seconds the writer process may leave a delivery unacknowledged before it is
        taken to be hung and killed (``writer="process"``)."""
        self._clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, WriterClient
        ] = weakref.WeakKeyDictionary()
        self.path = os.fspath(path)
        """The Maildir path template."""
        self.fsync = fsync
        """Whether writes are fsynced (durable) before the call returns."""
        self.max_workers = max_workers
        """Threads of each user's store executor."""
        self.max_batches = max_batches
        """Batches of messages for one Maildir written at once."""
        self.max_batch = max_batch
        """Messages in one batch at most."""
        # Per event loop, per Maildir: the messages waiting for a batch.
        self._queues: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, _BatchQueue]
        ] = weakref.WeakKeyDictionary()
        self._inboxes: dict[str, tuple[MaildirStore, MaildirFolder]] = {}
        self._lock = threading.Lock()
        # Recipient → Maildir path, computed once per recipient (bounded), when the
        # template is absolute (a relative one depends on the working directory).
        self._paths: dict[tuple[str, str], str] = {}
        self._cache_paths = os.path.isabs(self.path)

    def maildir(self, mailbox: Mailbox) -> str:
        """The Maildir directory of ``mailbox`` (absolute)."""
        key = (mailbox.local_part, mailbox.domain)
        path = self._paths.get(key)
        if path is None:
            local = safe_name(mailbox.local_part.lower())
            domain = safe_name(mailbox.domain.lower())
            path = os.path.abspath(
                self.path.format(user=f"{local}@{domain}", local=local, domain=domain)
            )
            if self._cache_paths:
                if len(self._paths) >= _MAX_PATHS:
                    self._paths.clear()
                self._paths[key] = path
        return path

    def _inbox(self, directory: str) -> tuple[MaildirStore, MaildirFolder]:
        """The store and INBOX of the Maildir at ``directory``, created and opened once.
        Blocks."""
        with self._lock:
            found = self._inboxes.get(directory)
        if found is None:
            store = MaildirStore(directory, fsync=self.fsync, max_workers=self.max_workers)
            mine = (store, store.folder("INBOX", deliver_only=True))
            with self._lock:
                found = self._inboxes.setdefault(directory, mine)
            if found is not mine:
                mine[1].close()
                store.close()
        return found

    @staticmethod
    def _start(folder: MaildirFolder, message: bytes) -> AppendWriter:
        writer = folder.append(assign_uid=False)
        writer.write(message)
        return writer

    @staticmethod
    def _write_all(
        inboxes: list[tuple[MaildirStore, MaildirFolder]], message: bytes
    ) -> list[tuple[MaildirStore, AppendWriter]]:
        """Write every copy into its ``tmp/``; if one fails, remove those written and
        raise. Blocks."""
        writers: list[tuple[MaildirStore, AppendWriter]] = []
        try:
            for store, inbox in inboxes:
                writers.append((store, MaildirDelivery._start(inbox, message)))
        except BaseException:
            for _, writer in writers:
                with contextlib.suppress(Exception):
                    writer.abort()
            raise
        return writers

    async def _batched(
        self, directory: str, store: MaildirStore, inbox: MaildirFolder, message: bytes
    ) -> None:
        """Queue ``message`` for the Maildir's next batch and wait until it is durable."""
        loop = asyncio.get_running_loop()
        queues = self._queues.get(loop)
        if queues is None:
            queues = self._queues[loop] = {}
        queue = queues.get(directory)
        if queue is None:
            queue = queues[directory] = _BatchQueue()
        done: asyncio.Future[None] = loop.create_future()
        queue.pending.append((message, done))
        if queue.running < self.max_batches:
            queue.running += 1
            task = loop.create_task(self._drain(queue, store, inbox))
            queue.tasks.add(task)
            task.add_done_callback(queue.tasks.discard)
        await done

    async def _drain(self, queue: _BatchQueue, store: MaildirStore, inbox: MaildirFolder) -> None:
        """Write batches of what waits in ``queue`` until nothing does."""
        batch: list[tuple[bytes, asyncio.Future[None]]] = []
        try:
            while queue.pending:
                batch = []
                while queue.pending and len(batch) < self.max_batch:
                    item = queue.pending.popleft()
                    if not item[1].done():  # its caller gave up (cancelled): not written
                        batch.append(item)
                if not batch:
                    continue
                try:
                    outcomes = await store.run(inbox.append_batch, [m for m, _ in batch])
                except Exception as exc:  # the executor could not run it at all
                    outcomes = [exc] * len(batch)
                for (_, done), outcome in zip(batch, outcomes, strict=True):
                    if done.done():
                        continue
                    if isinstance(outcome, Exception):
                        done.set_exception(outcome)
                    else:
                        done.set_result(None)
                batch = []
        except BaseException as exc:
            # Cancelled (the loop is closing): nobody will write what waits.
            for _, done in batch + list(queue.pending):
                if done.done():
                    continue
                if isinstance(exc, Exception):
                    done.set_exception(exc)
                else:
                    done.cancel()
            queue.pending.clear()
            raise
        finally:
            queue.running -= 1

    def _opened(self, directory: str) -> tuple[MaildirStore, MaildirFolder] | None:
        with self._lock:
            return self._inboxes.get(directory)

    async def __call__(self, submission: Submission) -> list[str]:
        """Deliver ``submission`` to each recipient's Maildir; see the class."""
        directories: list[str] = []
        for recipient in submission.envelope.recipients:
            mailbox = recipient.path.mailbox
            if mailbox is None:
                raise ValueError(f"no mailbox to deliver to: {recipient.path}")
            directories.append(self.maildir(mailbox))
        unique = list(dict.fromkeys(directories))
        if len(unique) == 1 and self.writer == "process":
            await self._client().deliver(unique[0], submission.message)
            return unique
        inboxes: list[tuple[MaildirStore, MaildirFolder]] = []
        for directory in unique:
            # Opened once (blocking work, off the loop); after that a lookup.
            found = self._opened(directory)
            if found is None:
                found = await asyncio.to_thread(self._inbox, directory)
            inboxes.append(found)
        if len(inboxes) == 1:
            # The common case: into the Maildir's next batch (see the class).
            store, inbox = inboxes[0]
            await self._batched(unique[0], store, inbox, submission.message)
            return unique
        writers = await inboxes[0][0].run(self._write_all, inboxes, submission.message)
        # Every copy is written: commit them all at once, each in its own store's
        # executor so that the fsyncs overlap (a failed commit removes its own).
        committed = await asyncio.gather(
            *(store.run(writer.commit) for store, writer in writers), return_exceptions=True
        )
        for outcome in committed:
            if isinstance(outcome, BaseException):
                raise outcome
        return unique

    def _client(self) -> WriterClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = WriterClient(
                max_message=self.max_message_size, fsync=self.fsync, ack_timeout=self.ack_timeout
            )
        return client

    def writer_pid(self) -> int | None:
        """The process id of this event loop's writer process, if one runs."""
        client = self._clients.get(asyncio.get_running_loop())
        return None if client is None else client.pid

    async def aclose(self, timeout: float = 5.0) -> None:
        """Wait (at most ``timeout`` seconds) for the deliveries pending in this event
        loop's writer process, stop it (killed if it does not exit in time), then
        :meth:`close`."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose(timeout)
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Close every store opened (their executors stop), and signal any writer
        process to stop at once (deliveries it has not acknowledged fail; prefer
        :meth:`aclose`)."""
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            client.terminate()
        with self._lock:
            inboxes = list(self._inboxes.values())
            self._inboxes.clear()
        for store, inbox in inboxes:
            inbox.close()
            store.close()


class _BatchQueue:
    """The messages waiting to be delivered into one Maildir (on one event loop)."""

    __slots__ = ("pending", "running", "tasks")

    def __init__(self) -> None:
        self.pending: deque[tuple[bytes, asyncio.Future[None]]] = deque()
        self.running = 0  # batches being written
        self.tasks: set[asyncio.Task[None]] = set()  # the tasks writing them

