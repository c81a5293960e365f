"""Local delivery (an MDA): :class:`MDA` writes each message into its local recipients'
stores (Maildir or mbox), streaming, with one result per recipient, so that an LMTP
server (:class:`~mailagents.agents.LMTPServer`) can answer each and ``python -m
mailagents deliver`` can say which exit status.

Who is local and where their mail goes is a :class:`~mailagents.agents.LocalRecipients`
table (a users file and an aliases file). :class:`~mailagents.agents.MaildirDelivery`,
the MSA's default delivery, is the plain form: every recipient's Maildir from a path
template, with group commit (``mailagents.agents._maildir_delivery``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Literal

from mailagents.agents._maildir_delivery import MaildirDelivery
from mailagents.agents._recipients import LocalRecipients, LocalTarget
from mailagents.delivery import Handoff, Message, RecipientResult
from mailagents.smtp import Mailbox, Reply
from mailagents.store import (
    Folder,
    FolderNotFoundError,
    MailboxFormat,
    MaildirStore,
    Store,
    StoreResolver,
)

__all__ = ["MDA", "MaildirDelivery"]

log = logging.getLogger(__name__)

_NO_SUCH_USER = Reply(code=550, enhanced="5.1.1", lines=("No such user here",))
_LOOP = Reply(code=554, enhanced="5.4.6", lines=("Too many Received: fields: a mail loop?",))
_BROKEN_ALIAS = Reply(
    code=451, enhanced="4.3.0", lines=("Local configuration error, try again later",)
)
_NOT_WRITTEN = Reply(code=451, enhanced="4.3.0", lines=("Local error: the copy was not written",))
_OVER_QUOTA = {
    "temporary": Reply(code=452, enhanced="4.2.2", lines=("Mailbox full",)),
    "permanent": Reply(code=552, enhanced="5.2.2", lines=("Mailbox full",)),
}


def count_received(header: bytes) -> int:
    """How many ``Received:`` fields a header section holds (RFC 5321 §6.3 counts them
    to find loops)."""
    count = 1 if header[:9].lower() == b"received:" else 0
    return count + header.lower().count(b"\nreceived:")


def _du(path: str) -> int:
    """Octets in the files under ``path`` (a store's size). Blocks."""
    total = 0
    for directory, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):  # renamed or removed meanwhile
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


class MDA:
    """A local delivery agent: messages into the stores of local users.

    ``stores`` gives each user's store: a :class:`~mailagents.store.StoreResolver`
    (shared with the MAA, say), or a path template or callable for one made here
    (``format``: ``"maildir"`` or ``"mbox"``; ``fsync``, ``max_workers`` as for the
    resolver). ``recipients`` is the :class:`~mailagents.agents.LocalRecipients` table.

    :meth:`check_recipient` is the RCPT-time check (unknown users get 550 5.1.1 there,
    never a bounce later; a user over quota 452 4.2.2, or 552 5.2.2 with
    ``quota_reply="permanent"``). A call (a :data:`~mailagents.delivery.Deliver`) then
    delivers a :class:`~mailagents.delivery.Handoff` and returns one
    :class:`~mailagents.delivery.RecipientResult` per recipient, in order:

    * a message with more than ``max_received`` ``Received:`` fields (default 100,
      RFC 5321 §6.3) is refused for every recipient with 554 5.4.6 (a loop);
    * each recipient is resolved to its users (aliases expand; two recipients that
      reach the same user's folder get one copy); an address extension
      (``user+tag@``) delivers into the folder ``tag`` when it exists, else INBOX;
    * a copy that would take its user past the quota fails with the quota reply;
    * copies for a Maildir INBOX that arrive together are committed as one batch
      (one directory fsync for them all, as :class:`MaildirDelivery` does);
    * each copy gets ``Return-Path:`` (the envelope sender) and ``Delivered-To:`` (the
      user's address) on top, and is streamed into the store (never read whole into
      memory), then committed (durable: the file and its directory fsynced) before
      the call returns; all copies are written at once, in the stores' executors;
    * a recipient whose alias broke after loading (a user deleted from a password
      file since) fails temporarily (451 4.3.0), never permanently;
    * a recipient is delivered when each of its copies is; otherwise its result is
      the first failure's (451 4.3.0 for a copy that could not be written).

    A store's usage is measured (the size of its files) when first needed and again
    after ``usage_ttl`` seconds, and counted up with each copy meanwhile.
    """

    def __init__(
        self,
        stores: StoreResolver | str | os.PathLike[str] | Callable[[str], Store],
        recipients: LocalRecipients,
        *,
        format: MailboxFormat = "maildir",
        quota_reply: Literal["temporary", "permanent"] = "temporary",
        max_received: int = 100,
        usage_ttl: float = 60.0,
        fsync: bool = True,
        max_workers: int = 16,
    ) -> None:
        if quota_reply not in _OVER_QUOTA:
            raise ValueError("quota_reply is 'temporary' or 'permanent'")
        if max_received < 1:
            raise ValueError("max_received must be at least 1")
        if isinstance(stores, StoreResolver):
            self._own_resolver = False
            resolver = stores
        else:
            self._own_resolver = True
            resolver = StoreResolver(stores, format=format, fsync=fsync, max_workers=max_workers)
        self.resolver = resolver
        """The :class:`~mailagents.store.StoreResolver` from a user to its store."""
        # Copies for a Maildir INBOX, held in memory, are committed in batches (one
        # directory fsync for the copies that arrive together): MaildirDelivery's
        # group commit, over the same resolver.
        self._batcher = (
            MaildirDelivery(resolver)
            if resolver.is_template and resolver.format == "maildir"
            else None
        )
        self.recipients = recipients
        """The :class:`~mailagents.agents.LocalRecipients` table."""
        self.quota_reply = quota_reply
        """Whether a full mailbox is a temporary (4.2.2) or permanent (5.2.2) failure."""
        self.max_received = max_received
        """More ``Received:`` fields than this is a loop (554 5.4.6)."""
        self.usage_ttl = usage_ttl
        """Seconds a measured store usage is trusted (counted up meanwhile)."""
        self._usage: dict[str, tuple[float, int]] = {}
        self._usage_lock = threading.Lock()

    # ---------------------------------------------------------------- recipients

    async def check_recipient(self, mailbox: Mailbox | None) -> Reply | None:
        """The RCPT-time check: ``None`` to accept ``mailbox``, else the reply (550
        5.1.1 for no such user, the quota reply for a user already over quota)."""
        try:
            targets = None if mailbox is None else self.recipients.resolve(mailbox)
        except ValueError:  # an alias broke after loading (a user deleted meanwhile)
            log.exception("cannot resolve %s", mailbox)
            return _BROKEN_ALIAS
        if not targets:
            return _NO_SUCH_USER
        for target in targets:
            if await self._over_quota(target.identity, 0):
                return _OVER_QUOTA[self.quota_reply]
        return None

    async def _over_quota(self, identity: str, size: int) -> bool:
        quota = self.recipients.quota(identity)
        if quota is None:
            return False
        used = await self._used(identity)
        # Full at the quota; a message may take the store up to it, not past it.
        return used >= quota if size == 0 else used + size > quota

    async def _used(self, identity: str) -> int:
        now = time.monotonic()
        with self._usage_lock:
            known = self._usage.get(identity)
        if known is not None and now - known[0] < self.usage_ttl:
            return known[1]
        store = await self.resolver.store_for(identity)
        root = getattr(store, "root", None)
        used = await store.run(_du, root) if isinstance(root, str) else 0
        with self._usage_lock:
            self._usage[identity] = (now, used)
        return used

    def _count(self, identity: str, size: int) -> None:
        with self._usage_lock:
            known = self._usage.get(identity)
            if known is not None:
                self._usage[identity] = (known[0], known[1] + size)

    # ------------------------------------------------------------------ delivery

    async def __call__(self, handoff: Handoff) -> list[RecipientResult]:
        """Deliver ``handoff`` (see the class)."""
        recipients = handoff.envelope.recipients
        message = handoff.message
        received = count_received(message.header)
        if received > self.max_received:
            log.warning("%s: %d Received: fields, refused as a loop", handoff.id, received)
            return [RecipientResult.failed(r, _LOOP) for r in recipients]
        # Each recipient's targets, and each copy (a user's folder) written once.
        wanted: list[list[LocalTarget] | None] = []
        copies: dict[tuple[str, str | None], LocalTarget] = {}
        broken: set[int] = set()
        for index, recipient in enumerate(recipients):
            mailbox = recipient.path.mailbox
            try:
                targets = None if mailbox is None else self.recipients.resolve(mailbox)
            except ValueError:  # an alias broke after loading: try again later
                log.exception("%s: cannot resolve %s", handoff.id, mailbox)
                broken.add(index)
                targets = None
            wanted.append(targets)
            for target in targets or ():
                copies.setdefault((target.identity, target.folder), target)
        sender = handoff.envelope.mail_from
        outcomes = await asyncio.gather(
            *(self._deliver_copy(handoff.id, target, message, str(sender))
              for target in copies.values())
        )
        done = dict(zip(copies, outcomes, strict=True))
        results = []
        for index, (recipient, targets) in enumerate(zip(recipients, wanted, strict=True)):
            if not targets:
                reply = _BROKEN_ALIAS if index in broken else _NO_SUCH_USER
                results.append(RecipientResult.failed(recipient, reply))
                continue
            replies = [done[(t.identity, t.folder)] for t in targets]
            failed = [reply for reply, _ in replies if reply is not None]
            if failed:
                results.append(RecipientResult.failed(recipient, failed[0]))
            else:
                where = ", ".join(str(location) for _, location in replies)
                results.append(RecipientResult.ok(recipient, location=where))
        return results

    async def _deliver_copy(
        self, handoff_id: str, target: LocalTarget, message: Message, sender: str
    ) -> tuple[Reply | None, str | None]:
        """Write one copy: ``(None, where)`` once it is durable, else ``(reply, None)``."""
        try:
            if await self._over_quota(target.identity, message.size):
                log.info("%s: %s is over quota", handoff_id, target.identity)
                return _OVER_QUOTA[self.quota_reply], None
            copy = message.prepend(
                f"Return-Path: {sender}\r\nDelivered-To: {target.address}\r\n".encode()
            )
            if self._batcher is not None and target.folder is None and copy.in_memory:
                directory = self.resolver.path(target.identity)
                await self._batcher.deliver_bytes(directory, copy.read())
                where = "INBOX"
            else:
                store = await self.resolver.store_for(target.identity)
                where = await store.run(_write, store, target.folder, copy)
        except Exception:
            log.exception("%s: the copy for %s was not written", handoff_id, target.identity)
            return _NOT_WRITTEN, None
        self._count(target.identity, message.size)
        log.info("%s: delivered to %s (%s)", handoff_id, target.identity, where)
        return None, where

    def close(self) -> None:
        """Close the stores of the resolver made here (not of one given)."""
        if self._batcher is not None:
            self._batcher.close()
        if self._own_resolver:
            self.resolver.close()

    async def aclose(self) -> None:
        """:meth:`close`, off the event loop."""
        await asyncio.to_thread(self.close)


def _open_folder(store: Store, name: str) -> Folder:
    if isinstance(store, MaildirStore):
        return store.folder(name, deliver_only=True)
    return store.folder(name)


def _write(store: Store, folder_name: str | None, message: Message) -> str:
    """Stream ``message`` into the folder (``None`` or a missing folder: INBOX) and
    commit it. Blocks. Returns the folder's name."""
    folder = None
    if folder_name is not None:
        try:
            folder = _open_folder(store, folder_name)
        except (FolderNotFoundError, ValueError):
            folder = None
    if folder is None:
        folder = _open_folder(store, "INBOX")
    try:
        with folder.append(assign_uid=False) as writer:
            for chunk in message.chunks():
                writer.write(chunk)
        return folder.name
    finally:
        folder.close()

