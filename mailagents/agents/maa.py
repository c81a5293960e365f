"""The mail access agent (MAA): POP3 (RFC 1939) and IMAP (RFC 9051, IMAP4rev1 too)
over the users' stores, on ports 110 (STLS, RFC 2595), 995 (implicit TLS, RFC 8314),
143 (STARTTLS) and 993 (implicit TLS).

:class:`MAA` is a short composition: up to four listeners (two
:class:`~mailagents.aio.POP3Server`, two :class:`~mailagents.aio.IMAPServer`) that
answer logins from one :class:`~mailagents.userdb.UserStore` and count failed logins
together. POP3 serves each user's INBOX through a :class:`StoreMaildrop`; IMAP serves
every folder of the same store through a
:class:`~mailagents.agents.StoreIMAPHandler`::

    users = PasswordFile("users")
    async with MAA("mail.example.test", users,
                   ssl_context=server_context("cert.pem", "key.pem")) as maa:
        await maa.serve()  # 110, 995, 143 and 993
        await asyncio.Event().wait()

Given the same path template, an :class:`~mailagents.agents.MSA` (through
:class:`~mailagents.agents.MaildirDelivery`) and an MAA meet in the same Maildirs.

:class:`StoreMaildrop` is the store side of one POP3 session, usable on its own: it
takes the session lock, snapshots INBOX, streams messages and removes the deleted
ones at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from mailagents import sasl
from mailagents.agents._imap_session import StoreIMAPHandler
from mailagents.agents._imap_session import imap_config as default_imap_config
from mailagents.agents._lifecycle import (
    AsyncClosing,
    bound_port,
    close_listeners,
    start_pair,
)
from mailagents.aio import POP3Handler, POP3Server, POP3Session
from mailagents.aio.imap import IMAPServer
from mailagents.imap import ServerConfig as IMAPConfig
from mailagents.pop3 import (
    Accept,
    Maildrop,
    MaildropEntry,
    OpenMaildrop,
    Reject,
    Response,
    Retrieve,
    ServerConfig,
    Update,
)
from mailagents.store import (
    DELETED,
    SEEN,
    Folder,
    MailboxFormat,
    MailboxInUseError,
    MessageNotFoundError,
    SessionLock,
    Store,
    StoreResolver,
)
from mailagents.userdb import UserStore

__all__ = ["MAA", "MAA_MECHANISMS", "MaildropMessage", "StoreMaildrop", "uidl"]

log = logging.getLogger(__name__)

CHUNK_SIZE = 256 * 1024
"""Octets of a message read from the store at a time."""


def uidl(uidvalidity: int, uid: int) -> str:
    """The POP3 unique-id of a store message: the UID, then UIDVALIDITY, as eight hex
    digits each, exactly as Dovecot 2.3 writes them with its default
    ``pop3_uidl_format = %08Xu%08Xv`` (its expansion gives lower-case digits), so that
    a Maildir Dovecot served keeps its unique-ids and clients in "keep" mode download
    nothing twice. It stays the same across sessions and is printable ASCII as
    RFC 1939 §7 requires."""
    return f"{uid:08x}{uidvalidity:08x}"


@dataclass(frozen=True, slots=True, kw_only=True)
class MaildropMessage:
    """One message of a session's snapshot."""

    uid: int
    """The store UID."""
    size: int
    """Octets with CRLF line ends (what LIST and ``+OK N octets`` report)."""
    uidl: str
    """The POP3 unique-id (see :func:`uidl`)."""


class StoreMaildrop:
    """The store side of one POP3 session over ``store``'s INBOX.

    :meth:`open` takes the session lock (:class:`~mailagents.store.SessionLock`;
    :class:`~mailagents.store.MailboxInUseError` when another session holds it) and
    snapshots INBOX: messages delivered later stay out of the session (RFC 1939 §8: the
    maildrop is the state at login). :meth:`start_message` (or :meth:`open_message`)
    and :meth:`chunks` stream one message (CRLF bytes, ``chunk_size`` octets at a time,
    never loaded whole);
    :meth:`mark_seen` sets ``\\Seen``; :meth:`remove` expunges the messages deleted in
    the session (in the UPDATE state only); :meth:`close` releases the lock.

    Every method but :meth:`chunks` blocks: async code runs them through
    ``store.run``. The store is not closed with the maildrop (it belongs to the
    caller).
    """

    def __init__(self, store: Store, *, chunk_size: int = CHUNK_SIZE) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.store = store
        """The user's store."""
        self.chunk_size = chunk_size
        """Octets read from the store at a time."""
        self.messages: tuple[MaildropMessage, ...] = ()
        """The snapshot taken by :meth:`open`, by ascending UID (message numbers are
        positions in it, from 1)."""
        self.uidvalidity = 0
        """INBOX's UIDVALIDITY at :meth:`open`."""
        self._lock = SessionLock.for_store(store)
        self._folder: Folder | None = None

    @property
    def folder(self) -> Folder:
        """The open INBOX (between :meth:`open` and :meth:`close`)."""
        if self._folder is None:
            raise RuntimeError("the maildrop is not open")
        return self._folder

    def open(self) -> tuple[MaildropMessage, ...]:
        """Lock the maildrop, open INBOX and take the snapshot. Blocks."""
        if self._folder is not None:
            raise RuntimeError("the maildrop is open already")
        self._lock.acquire()
        try:
            folder = self.store.folder("INBOX")
            try:
                folder.refresh()
                status = folder.status()
                infos = folder.messages()
            except BaseException:
                folder.close()
                raise
        except BaseException:
            self._lock.release()
            raise
        self._folder = folder
        self.uidvalidity = status.uidvalidity
        self.messages = tuple(
            MaildropMessage(uid=i.uid, size=i.size, uidl=uidl(status.uidvalidity, i.uid))
            for i in infos
        )
        return self.messages

    def open_message(self, uid: int) -> BinaryIO:
        """A stream of message ``uid`` with CRLF line ends;
        :class:`~mailagents.store.MessageNotFoundError` when it is gone (expunged
        by another client meanwhile). Blocks."""
        return self.folder.open_message(uid)

    def read_chunk(self, stream: BinaryIO) -> tuple[bytes, bool]:
        """The next ``chunk_size`` octets of ``stream`` (fewer at its end), and whether
        its end was reached. A short read is not taken as the end (not every stream
        says so): reading goes on until ``chunk_size`` octets or an empty read, so a
        small message takes one call. Blocks."""
        size = self.chunk_size
        data = stream.read(size)
        if len(data) >= size:
            return data, False
        if not data:
            return b"", True
        parts = [data]
        got = len(data)
        while got < size:
            more = stream.read(size - got)
            if not more:
                return b"".join(parts), True
            parts.append(more)
            got += len(more)
        return b"".join(parts), False

    def start_message(self, uid: int) -> tuple[BinaryIO, bytes, bool]:
        """:meth:`open_message` and the first :meth:`read_chunk` in one call (one trip
        through the executor for a message of up to ``chunk_size`` octets): the stream,
        the first chunk, and whether that was all (the stream is closed then). Blocks."""
        stream = self.open_message(uid)
        try:
            first, done = self.read_chunk(stream)
        except BaseException:
            stream.close()
            raise
        if done:
            stream.close()
        return stream, first, done

    def start_messages(
        self, uids: Sequence[int], limit: int | None = None
    ) -> list[tuple[BinaryIO, bytes, bool] | None]:
        """:meth:`start_message` for several messages in one call (a read-ahead):
        ``None`` for a message that is gone. The list stops short at any other error
        (reading that message again raises it) and once ``limit`` octets were read.
        Blocks."""
        started: list[tuple[BinaryIO, bytes, bool] | None] = []
        total = 0
        for uid in uids:
            if limit is not None and total >= limit:
                break
            try:
                entry = self.start_message(uid)
            except MessageNotFoundError:
                started.append(None)
                continue
            except Exception:
                break
            started.append(entry)
            total += len(entry[1])
        return started

    async def chunks(
        self, stream: BinaryIO, first: bytes = b"", done: bool = False
    ) -> AsyncGenerator[bytes, None]:
        """The content of ``stream`` (from :meth:`open_message`), read through the
        store's executor ``chunk_size`` octets at a time; the stream is closed at the
        end, also when the caller stops early (``aclose``). ``first`` and ``done`` are
        what :meth:`start_message` read already."""
        try:
            if first:
                yield first
            while not done:
                chunk, done = await self.store.run(self.read_chunk, stream)
                if chunk:
                    yield chunk
        finally:
            stream.close()

    def mark_seen(self, uids: Collection[int]) -> None:
        """Add ``\\Seen`` to messages (after a whole RETR). Blocks."""
        if uids:
            self.folder.set_flags(uids, {SEEN}, "add")

    def remove(self, uids: Collection[int]) -> list[int]:
        """Expunge the messages ``uids`` (deleted in the session; RFC 1939 §6: only in
        the UPDATE state). Returns the UIDs that could not be removed and are still
        there (a message already gone counts as removed). Blocks."""
        folder = self.folder
        wanted = set(uids)
        if not wanted:
            return []
        folder.set_flags(wanted, {DELETED}, "add")
        removed = set(folder.expunge(wanted))
        left = wanted - removed
        if left:
            folder.refresh()
            present = {m.uid for m in folder.messages()}
            left &= present
        return sorted(left)

    def close(self) -> None:
        """Close INBOX and release the session lock (safe to call twice). Blocks."""
        folder, self._folder = self._folder, None
        try:
            if folder is not None:
                folder.close()
        finally:
            self._lock.release()


# ------------------------------------------------------------------------------- MAA

MAA_MECHANISMS: tuple[str, ...] = ("SCRAM-SHA-256", "PLAIN")
"""The SASL mechanisms an :class:`MAA` offers by default with AUTH (RFC 5034),
strongest first; USER/PASS is offered too, over TLS only unless ``allow_plaintext``."""


_IN_USE = Reject(
    reply=Response(ok=False, code="IN-USE", text="Maildrop already locked by another session")
)
_UNAVAILABLE = Reject(
    reply=Response(ok=False, code="SYS/TEMP", text="Maildrop unavailable, try again later")
)
_GONE = Reject(reply=Response(ok=False, text="Message was removed by another client"))
_NOT_REMOVED = Reject(
    reply=Response(ok=False, code="SYS/TEMP", text="Some deleted messages not removed")
)
_DROP = "maa.maildrop"
_AHEAD = "maa.read_ahead"

READ_AHEAD = 128 * 1024
"""The default of :class:`MAA`'s ``read_ahead``: octets of small messages read ahead
per executor call."""

# At most this many messages are read ahead per executor call.
_READ_AHEAD_MESSAGES = 32

_Started = tuple[BinaryIO, bytes, bool]


class _Batch:
    """Consecutive messages from ``first`` being opened and read in one executor call
    (:meth:`StoreMaildrop.start_messages`)."""

    __slots__ = ("count", "entries", "first", "future")

    def __init__(self, first: int, count: int, future: asyncio.Future[list[_Started | None]]):
        self.first = first
        self.count = count
        self.future = future
        self.entries: dict[int, _Started | None] | None = None
        """By message number, once read; an entry is removed when handed out."""

    @property
    def end(self) -> int:
        """The number after the batch's last message."""
        return self.first + self.count

    def read(self) -> dict[int, _Started | None]:
        """The entries (the executor call is over)."""
        if self.entries is None:
            future = self.future
            done = [] if future.cancelled() or future.exception() else future.result()
            self.entries = {self.first + i: entry for i, entry in enumerate(done)}
        return self.entries

    def discard(self) -> None:
        """Not wanted: close what is left of it once it is read."""
        self.future.add_done_callback(self._close)

    def _close(self, future: asyncio.Future[list[_Started | None]]) -> None:
        entries = self.read()
        self.entries = {}
        for entry in entries.values():
            if entry is not None:
                entry[0].close()


class _ReadAhead:
    """The read-ahead of one session: clients retrieve messages in order, and each trip
    through the store's executor costs more than reading a small message, so small
    messages are read in batches, the next batch while the client takes the current
    one. A batch is at most ``limit`` octets of messages (as the snapshot lists them;
    what is read stops after ``limit`` octets too), and at most two batches are held.
    """

    __slots__ = ("batches", "drop", "limit")

    def __init__(self, drop: StoreMaildrop, limit: int) -> None:
        self.drop = drop
        self.limit = limit
        self.batches: list[_Batch] = []

    async def take(self, number: int) -> _Started | None:
        """Message ``number`` opened with its first chunk read (see
        :meth:`StoreMaildrop.start_message`), or ``None`` when it is gone."""
        drop = self.drop
        batches = self.batches
        while batches and batches[0].end <= number:
            batches.pop(0).discard()
        batch = batches[0] if batches and batches[0].first <= number else None
        found = False
        started: _Started | None = None
        if batch is not None:
            if not batch.future.done():
                await asyncio.wait([batch.future])  # cancelling this wait leaves it be
            entries = batch.read()
            if number in entries:  # not handed out before, not past an error
                started = entries.pop(number)
                found = True
        else:
            for old in batches:
                old.discard()
            batches.clear()
        last = batches[-1].end if batches else number + 1
        if batch is None or (len(batches) == 1 and last - number <= (batch.count + 1) // 2):
            self._start(last)
        if found:
            return started
        try:
            return await drop.store.run(drop.start_message, drop.messages[number - 1].uid)
        except MessageNotFoundError:
            return None

    def _start(self, first: int) -> None:
        """Start reading the small messages from ``first`` on."""
        limit = self.limit
        if not limit:
            return
        messages = self.drop.messages
        uids: list[int] = []
        total = 0
        for entry in messages[first - 1 : first - 1 + _READ_AHEAD_MESSAGES]:
            total += entry.size
            if total > limit:
                break
            uids.append(entry.uid)
        if not uids:
            return
        loop = asyncio.get_running_loop()
        drop = self.drop
        future = loop.run_in_executor(drop.store.executor, drop.start_messages, uids, limit)
        self.batches.append(_Batch(first, len(uids), future))

    async def close(self) -> None:
        """Drop every batch, once its executor call is over (the folder closes next)."""
        batches, self.batches = self.batches, []
        for batch in batches:
            batch.discard()
        if batches:
            await asyncio.wait([b.future for b in batches])


class _Handler(POP3Handler):
    """The MAA's answers for the sessions of its listeners."""

    def __init__(self, maa: MAA) -> None:
        self.maa = maa

    async def on_credentials(
        self, session: POP3Session, request: sasl.NeedCredentials
    ) -> sasl.Answer | Reject:
        """Answer from the user store (scrypt off the event loop)."""
        return await self.maa.users.answer_async(request)

    async def on_open(self, session: POP3Session, event: OpenMaildrop) -> Maildrop | Reject:
        """Lock and snapshot the user's INBOX."""
        maa = self.maa
        refusal = maa._login_delay(event.identity)
        if refusal is not None:
            return refusal
        store = await maa.store_for(event.identity)
        drop = StoreMaildrop(store)
        try:
            messages = await store.run(drop.open)
        except MailboxInUseError:
            log.info("%s: maildrop of %s in use", session.peer, event.identity)
            return _IN_USE
        except Exception:
            log.exception("cannot open the maildrop of %s", event.identity)
            return _UNAVAILABLE
        session.data[_DROP] = drop
        session.data[_AHEAD] = _ReadAhead(drop, self.maa.read_ahead)
        maa._logged_in(event.identity)
        return Maildrop(messages=tuple(MaildropEntry(size=m.size, uid=m.uidl) for m in messages))

    async def on_retrieve(
        self, session: POP3Session, event: Retrieve
    ) -> AsyncIterator[bytes] | Reject:
        """Stream the message from the store (``\\Seen`` after a whole RETR if the MAA
        marks messages seen)."""
        drop: StoreMaildrop = session.data[_DROP]
        uid = drop.messages[event.number - 1].uid
        ahead: _ReadAhead = session.data[_AHEAD]
        # Opening and reading the first chunk take one executor call (most messages
        # are smaller than a chunk), if the read-ahead did not do it already.
        started = await ahead.take(event.number)
        if started is None:
            return _GONE
        stream, first, done = started
        chunks = drop.chunks(stream, first, done)
        if self.maa.mark_seen and event.lines is None:
            return _seen_after(drop, chunks, uid)
        return chunks

    async def on_update(self, session: POP3Session, event: Update) -> Accept | Reject:
        """Expunge the messages deleted in the session (RFC 1939 §6)."""
        drop: StoreMaildrop = session.data[_DROP]
        uids = [drop.messages[n - 1].uid for n in event.numbers]
        try:
            left = await drop.store.run(drop.remove, uids)
        except Exception:
            log.exception("removing %d message(s) of %s failed", len(uids), session.identity)
            return _NOT_REMOVED
        if left:
            log.warning("%s: %d deleted message(s) not removed", session.identity, len(left))
            return _NOT_REMOVED
        return Accept()

    async def on_close(self, session: POP3Session) -> None:
        """Release the maildrop (also when the session is cancelled)."""
        drop: StoreMaildrop | None = session.data.pop(_DROP, None)
        ahead: _ReadAhead | None = session.data.pop(_AHEAD, None)
        if drop is None:
            return
        try:
            if ahead is not None:
                await ahead.close()
            await drop.store.run(drop.close)
        except asyncio.CancelledError:
            drop.close()  # the lock must not outlive the session
            raise


async def _seen_after(
    drop: StoreMaildrop, chunks: AsyncGenerator[bytes, None], uid: int
) -> AsyncIterator[bytes]:
    """The message's chunks; ``\\Seen`` once all of it was handed over."""
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        await chunks.aclose()
    try:
        await drop.store.run(drop.mark_seen, [uid])
    except Exception:
        log.exception("could not mark message %d seen", uid)


class MAA(AsyncClosing):
    """A mail access agent over the users' stores: POP3 (RFC 1939) and IMAP
    (RFC 9051 and RFC 3501), composed of two :class:`~mailagents.aio.POP3Server` and
    two :class:`~mailagents.aio.IMAPServer` listeners (see :meth:`serve`).

    ``hostname`` names the server (greeting, sign-off); ``users`` answers USER/PASS,
    AUTH (``mechanisms``) and, with ``allow_apop``, APOP
    (:meth:`~mailagents.userdb.UserStore.answer_async`), and IMAP's LOGIN and
    AUTHENTICATE with the same mechanisms; passwords are accepted only over TLS unless
    ``allow_plaintext`` (IMAP announces LOGINDISABLED before TLS). ``ssl_context``
    serves STLS on the POP3 port, STARTTLS on the IMAP port and implicit TLS on the
    POP3S and IMAPS ports. All listeners count failed logins together, so that a
    password guesser gets no second allowance on another port.

    ``mailboxes`` says where each user's mail is: a path template with the rules of
    :class:`~mailagents.agents.MaildirDelivery` (``{user}`` is the identity, ``{local}``
    and ``{domain}`` its parts when it is an address, all in lower case and made safe
    as path components; an identity without ``@`` is ``{user}`` and ``{local}``, with
    ``{domain}`` empty), naming a Maildir, or with ``mailbox_format="mbox"`` the root of
    an :class:`~mailagents.store.MboxStore`; or a callable from the identity to the
    user's :class:`~mailagents.store.Store` (which the MAA then does not close); or a
    :class:`~mailagents.store.StoreResolver` shared with other agents (which the MAA
    does not close either). Stores made from a template (through a resolver of the
    MAA's own: a bounded number kept open, one executor shared) are closed with the
    MAA; ``fsync=False`` is for tests only.

    Each session sees INBOX as it was at login (messages delivered later wait for the
    next session), with unique-ids made of UIDVALIDITY and UID (:func:`uidl`). A second
    session on a maildrop gets ``-ERR [IN-USE]`` (a session lock of its own: delivery
    never waits for POP3). Deleted messages are expunged only at QUIT (the UPDATE
    state); a session that ends otherwise deletes nothing. With ``mark_seen``, a message
    retrieved whole with RETR gets ``\\Seen`` (seen by IMAP clients).

    After a RETR or TOP of message ``n``, the small messages from ``n + 1`` on are
    opened and read in one executor call, up to ``read_ahead`` octets, while the client
    takes ``n`` (clients fetch in order; each trip through the store's executor costs
    more than reading a small message). ``read_ahead=0`` turns this off.

    ``config``, if given, is the base :class:`~mailagents.pop3.ServerConfig` (the MAA
    sets the host name, the mechanisms, plaintext and APOP in it; its ``login_delay``
    is enforced per user with ``-ERR [LOGIN-DELAY]``); ``server_options`` are more
    keyword arguments for each :class:`~mailagents.aio.POP3Server` (``idle_timeout``,
    ``limits``, ``max_connections``).

    IMAP sessions see every folder of the user's store, served by the store-backed
    :class:`~mailagents.agents.StoreIMAPHandler` (changes made by other sessions and
    other programs announced, IDLE). ``imap_config``, if given, is the base
    :class:`mailagents.imap.ServerConfig` (default :func:`~mailagents.agents.imap_config`;
    the MAA sets the mechanisms and plaintext in it); ``imap_options`` are more keyword
    arguments for each :class:`~mailagents.aio.IMAPServer` (``state_timeouts``,
    ``limits``, ``max_connections``, ``max_sessions_per_user``, ``compress``).

    Call :meth:`serve`, then :meth:`close`; or use ``async with`` (which closes).
    """

    def __init__(
        self,
        hostname: str,
        users: UserStore,
        mailboxes: str
        | os.PathLike[str]
        | Callable[[str], Store]
        | StoreResolver = "mail/{user}/Maildir",
        *,
        ssl_context: ssl.SSLContext,
        mailbox_format: MailboxFormat = "maildir",
        mechanisms: Sequence[str] = MAA_MECHANISMS,
        allow_plaintext: bool = False,
        allow_apop: bool = False,
        mark_seen: bool = False,
        read_ahead: int = READ_AHEAD,
        fsync: bool = True,
        config: ServerConfig | None = None,
        server_options: Mapping[str, Any] | None = None,
        imap_config: IMAPConfig | None = None,
        imap_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.hostname = hostname
        """The server's name."""
        self.users = users
        """The :class:`~mailagents.userdb.UserStore` that answers logins."""
        if isinstance(mailboxes, StoreResolver):
            self._own_resolver = False
            resolver = mailboxes
        else:
            self._own_resolver = True
            resolver = StoreResolver(mailboxes, format=mailbox_format, fsync=fsync)
        self.resolver = resolver
        """The :class:`~mailagents.store.StoreResolver` from an identity to its store."""
        self.mailboxes: str | Callable[[str], Store] = resolver.mailboxes
        """The path template, or the callable giving each identity's store."""
        self.mailbox_format: MailboxFormat = resolver.format
        """What a template names: ``"maildir"`` or ``"mbox"`` (an mbox store's root)."""
        self.mark_seen = mark_seen
        """Set ``\\Seen`` on messages retrieved whole."""
        if read_ahead < 0:
            raise ValueError("read_ahead must not be negative")
        self.read_ahead = read_ahead
        """Octets of small messages read ahead per executor call (``0``: none)."""
        self.fsync = resolver.fsync
        """Whether the stores opened from the template fsync."""
        self.ssl_context = ssl_context
        """The TLS context of both listeners."""
        self.config = dataclasses.replace(
            config if config is not None else ServerConfig(),
            hostname=hostname,
            auth_mechanisms=tuple(mechanisms),
            allow_plaintext_login=allow_plaintext,
            allow_apop=allow_apop,
        )
        """The :class:`~mailagents.pop3.ServerConfig` of the listeners (STLS or implicit
        TLS is set by each)."""
        self.server_options: dict[str, Any] = dict(server_options or {})
        """More keyword arguments for each :class:`~mailagents.aio.POP3Server`."""
        self.pop3: POP3Server | None = None
        """The POP3 listener (STLS, port 110) once :meth:`serve` has run."""
        self.pop3s: POP3Server | None = None
        """The POP3S listener (implicit TLS, port 995) once :meth:`serve` has run."""
        self.imap_config = dataclasses.replace(
            imap_config if imap_config is not None else default_imap_config(),
            auth_mechanisms=tuple(mechanisms),
            allow_plaintext_login=allow_plaintext,
        )
        """The :class:`mailagents.imap.ServerConfig` of the IMAP listeners (STARTTLS or
        implicit TLS is set by each)."""
        self.imap_options: dict[str, Any] = dict(imap_options or {})
        """More keyword arguments for each :class:`~mailagents.aio.IMAPServer`."""
        self.imap_handler = StoreIMAPHandler(users, resolver)
        """The :class:`~mailagents.agents.StoreIMAPHandler` both IMAP listeners share."""
        self.imap: IMAPServer | None = None
        """The IMAP listener (STARTTLS, port 143) once :meth:`serve` has run."""
        self.imaps: IMAPServer | None = None
        """The IMAPS listener (implicit TLS, port 993) once :meth:`serve` has run."""
        self._last_login: dict[str, float] = {}

    # ----------------------------------------------------------------- mailboxes

    def mailbox_path(self, identity: str) -> str:
        """The (absolute) path the template gives for ``identity``."""
        return self.resolver.path(identity)

    async def store_for(self, identity: str) -> Store:
        """The store of ``identity``: from the ``mailboxes`` callable, or the template's
        store (created when missing, as a delivery would)."""
        return await self.resolver.store_for(identity)

    # ----------------------------------------------------------------- login delay

    def _login_delay(self, identity: str) -> Reject | None:
        """``-ERR [LOGIN-DELAY]`` when ``identity`` logged in less than
        ``config.login_delay`` seconds ago (RFC 2449 §6.5, §8.1.2)."""
        delay = self.config.login_delay
        last = self._last_login.get(identity)
        if delay and last is not None and time.monotonic() - last < delay:
            return Reject(
                reply=Response(ok=False, code="LOGIN-DELAY", text="Logged in too recently")
            )
        return None

    def _logged_in(self, identity: str) -> None:
        delay = self.config.login_delay
        if not delay:
            return
        now = time.monotonic()
        last = self._last_login
        if len(last) > 10_000:  # forget those whose delay has passed
            for name in [n for n, t in last.items() if now - t >= delay]:
                del last[name]
        last[identity] = now

    # ----------------------------------------------------------------- running

    async def serve(
        self,
        host: str | Sequence[str] = "127.0.0.1",
        pop3_port: int | None = 110,
        pop3s_port: int | None = 995,
        imap_port: int | None = 143,
        imaps_port: int | None = 993,
    ) -> None:
        """Listen on ``host`` (one or several addresses): POP3 with STLS on
        ``pop3_port``, implicit TLS on ``pop3s_port``, IMAP with STARTTLS on
        ``imap_port`` and implicit TLS on ``imaps_port``. ``0`` takes a free port (see
        :attr:`pop3_port` and the others), ``None`` skips that listener. If one cannot
        start, those already started are closed before the error propagates."""
        if any(x is not None for x in (self.pop3, self.pop3s, self.imap, self.imaps)):
            raise RuntimeError("the MAA is already serving")

        def make(implicit_tls: bool, options: Mapping[str, Any]) -> POP3Server:
            return POP3Server(
                _Handler(self),
                self.config,
                ssl_context=self.ssl_context,
                implicit_tls=implicit_tls,
                **options,
            )

        def keep(implicit_tls: bool, server: POP3Server) -> None:
            if implicit_tls:
                self.pop3s = server
            else:
                self.pop3 = server

        await start_pair(self, make, keep, host, pop3_port, pop3s_port, self.server_options)
        # One failed-login throttle for all four listeners.
        imap_options = dict(self.imap_options)
        pop3 = self.pop3 or self.pop3s
        if pop3 is not None:
            imap_options.setdefault("throttle", pop3.throttle)

        def make_imap(implicit_tls: bool, options: Mapping[str, Any]) -> IMAPServer:
            return IMAPServer(
                self.imap_handler,
                self.imap_config,
                ssl_context=self.ssl_context,
                implicit_tls=implicit_tls,
                **options,
            )

        def keep_imap(implicit_tls: bool, server: IMAPServer) -> None:
            if implicit_tls:
                self.imaps = server
            else:
                self.imap = server

        await start_pair(self, make_imap, keep_imap, host, imap_port, imaps_port, imap_options)

    @property
    def pop3_port(self) -> int:
        """The bound port of the POP3 (STLS) listener."""
        return bound_port(self.pop3, "POP3")

    @property
    def pop3s_port(self) -> int:
        """The bound port of the POP3S (implicit TLS) listener."""
        return bound_port(self.pop3s, "POP3S")

    @property
    def imap_port(self) -> int:
        """The bound port of the IMAP (STARTTLS) listener."""
        return bound_port(self.imap, "IMAP")

    @property
    def imaps_port(self) -> int:
        """The bound port of the IMAPS (implicit TLS) listener."""
        return bound_port(self.imaps, "IMAPS")

    async def close(self) -> None:
        """Stop every listener (POP3 sessions end as :meth:`POP3Server.close
        <mailagents.aio.POP3Server.close>` says, nothing deleted for those cut short;
        IMAP sessions get ``* BYE`` after the command in progress) and close the stores
        opened from the template."""
        servers = (self.pop3, self.pop3s, self.imap, self.imaps)
        self.pop3 = self.pop3s = self.imap = self.imaps = None
        await close_listeners(*servers)
        if self._own_resolver:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.resolver.close)
