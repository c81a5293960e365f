"""Local delivery (an MDA): :class:`MaildirDelivery` writes each accepted message into
its recipients' Maildirs, durably, before the agent that accepted it answers.

It is the :class:`~mailagents.agents.MSA`'s default ``deliver`` callable; an
:class:`~mailagents.agents.MAA` given the same path template serves what it delivered.
Messages for one Maildir that arrive together are committed as one batch (group
commit, on the shared helper of ``store._groupcommit``), and ``writer="process"`` moves that
file work into a writer process of its own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import threading
import weakref
from typing import Literal

from mailagents.agents._writer import WriterClient
from mailagents.delivery import Handoff, Message, RecipientResult
from mailagents.smtp import Mailbox, Reply
from mailagents.store import (
    AppendResult,
    AppendWriter,
    MaildirFolder,
    MaildirStore,
    StoreResolver,
)
from mailagents.store._groupcommit import AsyncGroupCommit

__all__ = ["MaildirDelivery"]

log = logging.getLogger(__name__)

_NOT_WRITTEN = Reply(
    code=451, enhanced="4.3.0", lines=("Local error: the message was not written",)
)
_Written = tuple[MaildirStore, AppendWriter]  # a copy in tmp/, and its store
_MAX_INBOXES = 256  # Maildirs whose INBOX handle MaildirDelivery keeps open


class MaildirDelivery:
    """The default delivery: each recipient's Maildir, through
    :class:`~mailagents.store.MaildirStore`, in the executor that every recipient's store
    shares (through a :class:`~mailagents.store.StoreResolver`, of its own or given as
    ``path``; the INBOX handles of the last 256 Maildirs are kept open).

    ``path`` is a template for each recipient's Maildir: ``{user}`` is the address
    (``alice@example.test``), ``{local}`` and ``{domain}`` its parts; all in lower case,
    with any character other than letters, digits and ``@.+=_-`` written ``%XX`` and a
    leading dot as ``%2E``, so that no address can name a path outside its own folder.

    A call (a :data:`~mailagents.delivery.Deliver`) streams the message into every
    recipient's ``tmp/`` first, then commits each (fsync of the file and the
    directory), and returns one :class:`~mailagents.delivery.RecipientResult` per
    recipient, in order, its ``location`` the Maildir directory. If a copy cannot be
    written, those written are removed and the exception propagates (the MSA answers
    451, and nothing was delivered). If a commit fails, that copy is removed and its
    recipients get a temporary failure (451 4.3.0) while the others keep their copies,
    so a retry may duplicate, never lose (RFC 5321 §6.1); with one Maildir, a failed
    commit raises. ``fsync=False`` is for tests only.

    Messages for one recipient (the common case) that arrive while others for the same
    Maildir are being written are delivered together (group commit): one executor call
    writes each into ``tmp/``, fsyncs each, renames each into ``new/``, then fsyncs
    ``new/`` once (:meth:`~mailagents.store.MaildirFolder.append_batch`), and only then
    does any of those calls return. At most ``max_batches`` such batches per Maildir
    are written at once, each of at most ``max_batch`` messages: with one batch at a
    time (the default), what arrives meanwhile waits for the next, larger batch and
    shares its directory fsync; more let a slow message (a big one) hold up fewer
    others, and may help a disk that gains from parallel writes.

    ``writer`` says where that file work runs. ``"thread"`` (the default): in the
    store's executor, in this process. ``"process"`` (opt-in): in one long-lived writer
    process per event loop (``mailagents.agents._writer``, started on the first
    delivery), fed over a socket; it groups what has arrived per Maildir into batches
    of at most 16, and acknowledges each message only after its batch is durable, so
    the call still returns only then. Why a process: in a thread the file work holds
    the GIL often enough to slow the event loop; on two CPUs, ``benchmarks/smtp_server.py``
    (20 concurrent sessions) measured about 1.5 times the durable acceptance rate of
    the thread mode. Trade-offs: an extra process (its
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
    writer); keep it well above the slowest fsync the disk may take. That clock starts
    only once a new writer has said it is ready: start-up (a Python process, a few
    hundred milliseconds on a loaded machine) has its own deadline, ``start_timeout``
    (seconds, default 30), after which the writer is killed and counted as a failed
    start; deliveries that arrive meanwhile wait for it. Messages for
    several Maildirs, and messages spooled to a file (larger than the spool's memory
    limit), still take the thread path (all copies written before any is committed,
    the spool read once). Stop it with :meth:`aclose` (waits for the
    pending acknowledgements, then stops the writer); :meth:`close` only signals it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | StoreResolver,
        *,
        fsync: bool = True,
        max_workers: int = 16,
        max_batches: int = 1,
        max_batch: int = 64,
        writer: Literal["thread", "process"] = "thread",
        max_message_size: int = 1 << 28,
        ack_timeout: float = 120.0,
        start_timeout: float = 30.0,
    ) -> None:
        if max_batches < 1 or max_batch < 1:
            raise ValueError("max_batches and max_batch must be at least 1")
        if writer not in ("thread", "process"):
            raise ValueError(f"writer must be 'thread' or 'process', not {writer!r}")
        if not 0 < max_message_size < 1 << 32:
            raise ValueError("max_message_size must be between 1 and 2**32 - 1")
        if not ack_timeout > 0:
            raise ValueError("ack_timeout must be positive")
        if not start_timeout > 0:
            raise ValueError("start_timeout must be positive")
        self.writer = writer
        """Where single-recipient deliveries are written: ``"thread"`` or ``"process"``."""
        self.max_message_size = max_message_size
        """The largest message the writer process takes (``writer="process"``)."""
        self.ack_timeout = ack_timeout
        """Seconds the writer process may leave a delivery unacknowledged before it is
        taken to be hung and killed (``writer="process"``), counted from the moment
        the writer said it is ready."""
        self.start_timeout = start_timeout
        """Seconds a new writer process may take to say it is ready before it is
        killed and counted as a failed start (``writer="process"``)."""
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WriterClient] = (
            weakref.WeakKeyDictionary()
        )
        if isinstance(path, StoreResolver):
            if not path.is_template or path.format != "maildir":
                raise ValueError("MaildirDelivery needs a resolver with a Maildir template")
            self._own_resolver = False
            resolver = path
        else:
            self._own_resolver = True
            resolver = StoreResolver(path, fsync=fsync, max_workers=max_workers)
        self.resolver = resolver
        """The :class:`~mailagents.store.StoreResolver` giving each recipient's Maildir
        (one executor shared by every Maildir); given one, the delivery shares it and
        does not close it."""
        template = resolver.mailboxes
        assert isinstance(template, str)
        self.path = template
        """The Maildir path template."""
        self.fsync = fsync
        """Whether writes are fsynced (durable) before the call returns."""
        self.max_workers = max_workers
        """Threads of the executor the recipients' stores share (of the resolver made
        here; a resolver given keeps its own)."""
        self.max_batches = max_batches
        """Batches of messages for one Maildir written at once."""
        self.max_batch = max_batch
        """Messages in one batch at most."""
        # Per event loop, per Maildir: the messages waiting for a batch.
        self._queues: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, AsyncGroupCommit[bytes, AppendResult]]
        ] = weakref.WeakKeyDictionary()
        # Maildir directory → its store and INBOX handle, the last _MAX_INBOXES used.
        self._inboxes: collections.OrderedDict[str, tuple[MaildirStore, MaildirFolder]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def maildir(self, mailbox: Mailbox) -> str:
        """The Maildir directory of ``mailbox`` (absolute)."""
        return self.resolver.path(f"{mailbox.local_part}@{mailbox.domain}")

    def _kept_inbox(self, directory: str) -> tuple[MaildirStore, MaildirFolder] | None:
        """The store and INBOX of ``directory`` if they are open (marked as used)."""
        with self._lock:
            found = self._inboxes.get(directory)
            if found is not None:
                self._inboxes.move_to_end(directory)
            return found

    def _inbox(self, directory: str) -> tuple[MaildirStore, MaildirFolder]:
        """The store and INBOX of the Maildir at ``directory``, created and opened once
        (the last few hundred used are kept). Blocks."""
        found = self._kept_inbox(directory)
        if found is not None:
            return found
        store = self.resolver.store_at(directory)
        assert isinstance(store, MaildirStore)
        mine = (store, store.folder("INBOX", deliver_only=True))
        with self._lock:
            found = self._inboxes.setdefault(directory, mine)
            while len(self._inboxes) > _MAX_INBOXES:
                self._inboxes.popitem(last=False)
        if found is not mine:
            mine[1].close()
        return found

    @staticmethod
    def _write_all(
        inboxes: list[tuple[MaildirStore, MaildirFolder]], message: Message
    ) -> list[_Written]:
        """Write every copy into its ``tmp/``, reading the message once; if one fails,
        remove those written and raise. Blocks."""
        writers: list[_Written] = []
        try:
            for store, inbox in inboxes:
                writers.append((store, inbox.append(assign_uid=False)))
            for chunk in message.chunks():
                for _, writer in writers:
                    writer.write(chunk)
        except BaseException:
            for _, writer in writers:
                with contextlib.suppress(Exception):
                    writer.abort()
            raise
        return writers

    async def deliver_bytes(self, directory: str, message: bytes) -> None:
        """Write ``message`` (CRLF line ends) into the INBOX of the Maildir at
        ``directory`` (absolute) with the next batch, and return once it is durable
        (the :class:`~mailagents.agents.MDA` uses it for its copies)."""
        await self._batched(directory, message)

    async def _batched(self, directory: str, message: bytes) -> None:
        """Queue ``message`` for the Maildir's next batch and wait until it is durable."""
        loop = asyncio.get_running_loop()
        groups = self._queues.get(loop)
        if groups is None:
            groups = self._queues[loop] = {}
        group = groups.get(directory)
        if group is None:

            async def commit(messages: list[bytes]) -> list[AppendResult | Exception]:
                # Looked up at each batch, not kept: close() closes the stores, and the
                # next delivery opens the Maildir again.
                store, inbox = await self._opened_inbox(directory)
                return await store.run(inbox.append_batch, messages)

            group = groups[directory] = AsyncGroupCommit(
                commit, max_batches=self.max_batches, max_batch=self.max_batch
            )
        await group.submit(message)

    async def _opened_inbox(self, directory: str) -> tuple[MaildirStore, MaildirFolder]:
        """The store and INBOX of ``directory``: a lookup once it is open (opening is
        blocking work, done off the loop)."""
        found = self._kept_inbox(directory)
        if found is None:
            found = await asyncio.to_thread(self._inbox, directory)
        return found

    async def __call__(self, handoff: Handoff) -> list[RecipientResult]:
        """Deliver ``handoff`` to each recipient's Maildir; one result per recipient,
        in order (see the class)."""
        recipients = handoff.envelope.recipients
        directories: list[str] = []
        for recipient in recipients:
            mailbox = recipient.path.mailbox
            if mailbox is None:
                raise ValueError(f"no mailbox to deliver to: {recipient.path}")
            directories.append(self.maildir(mailbox))
        unique = list(dict.fromkeys(directories))
        outcome: dict[str, BaseException | None] = {}
        message = handoff.message
        if len(unique) == 1 and message.in_memory:
            # One copy: its failure is the whole delivery's, and raises.
            if self.writer == "process":
                await self._client().deliver(unique[0], message.read())
            else:
                # The common case: into the Maildir's next batch (see the class).
                await self._batched(unique[0], message.read())
            outcome[unique[0]] = None
        else:
            outcome = await self._deliver_each(unique, message)
        results = []
        for recipient, directory in zip(recipients, directories, strict=True):
            error = outcome[directory]
            if error is None:
                results.append(RecipientResult.ok(recipient, location=directory))
            else:
                log.warning("delivery of %s into %s failed: %s", handoff.id, directory, error)
                results.append(RecipientResult.failed(recipient, _NOT_WRITTEN))
        return results

    async def _deliver_each(
        self, directories: list[str], message: Message
    ) -> dict[str, BaseException | None]:
        """Stream ``message`` into each Maildir's ``tmp/`` (if one copy fails, those
        written are removed and the exception propagates), then commit every copy at
        once, each in its own store's executor so that the fsyncs overlap; a failed
        commit is its directory's alone."""
        inboxes = [await self._opened_inbox(directory) for directory in directories]
        writers = await inboxes[0][0].run(self._write_all, inboxes, message)
        committed = await asyncio.gather(
            *(store.run(writer.commit) for store, writer in writers),
            return_exceptions=True,
        )
        return {
            directory: result if isinstance(result, BaseException) else None
            for directory, result in zip(directories, committed, strict=True)
        }

    def _client(self) -> WriterClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = WriterClient(
                max_message=self.max_message_size,
                fsync=self.fsync,
                ack_timeout=self.ack_timeout,
                start_timeout=self.start_timeout,
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
        for _, inbox in inboxes:
            inbox.close()
        if self._own_resolver:
            self.resolver.close()
