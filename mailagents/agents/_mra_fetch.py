"""The MRA's passes over one remote account: POP3 (by UIDL) and IMAP (by UIDVALIDITY
and UID, folder by folder), each message handed off and remembered before anything is
removed on the server.

The order that keeps every message: download, hand off (the destination says it is
durable), remember (the state file replaced and fsynced), and only then mark it on the
server (POP3 DELE, committed by QUIT; IMAP ``\\Deleted`` and UID EXPUNGE, MOVE, or
``\\Seen``). A crash before "remember" fetches the message again next time (a
duplicate, never a loss); a crash after it, before the server acted, is finished on the
next run, which removes the messages it remembers but still finds there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from mailagents.agents._mra_state import AccountMemory, digest
from mailagents.aio.imap_client import IMAPClient, IMAPCommandError
from mailagents.aio.pop3_client import POP3Client
from mailagents.delivery import Message, MessageSpool
from mailagents.imap import SequenceSet
from mailagents.imap.responses import FetchData

__all__ = [
    "After",
    "DeliveryRefused",
    "FetchReport",
    "HandOff",
    "Skipped",
    "fetch_imap",
    "fetch_pop3",
]

log = logging.getLogger("mailagents.agents.mra")

After = Literal["keep", "seen", "delete", "move"]
"""What becomes of a remote message once it is handed off and remembered: ``"keep"``
(left as it was), ``"seen"`` (IMAP: ``\\Seen`` set, and set again at each pass on a
fetched message that lost it), ``"delete"`` (POP3 DELE; IMAP
``\\Deleted`` and expunged), ``"move"`` (IMAP: moved to another folder)."""

HandOff = Callable[[str, Message], Awaitable[None]]
"""Hands one message (its id, the message) to the destination; returns once it is
durable there, raises :class:`DeliveryRefused` or any other error otherwise."""

BATCH = 20
"""Messages handed off between two saves of the state (and the removals that follow)."""


class DeliveryRefused(Exception):
    """The destination refused a message: ``permanent`` when it never will take it
    (the message is left on the server and reported; the pass goes on), else the pass
    stops there and the account is tried again later."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent
        """A 5xx: retrying will not help."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Skipped:
    """A message left on the server, and why."""

    folder: str | None
    """The IMAP folder (``None`` for POP3)."""
    id: str
    """Its POP3 unique-id, or its IMAP UID."""
    size: int | None
    """Its size, as the server gave it."""
    reason: str
    """``"too large (N octets, limit L)"`` or ``"refused: ..."``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchReport:
    """What one pass over an account did."""

    account: str
    """The account's name."""
    fetched: tuple[str, ...] = ()
    """The messages handed off, as ``uidl`` (POP3) or ``folder/uidvalidity/uid``."""
    removed: int = 0
    """Messages deleted or moved on the server (those of earlier passes included)."""
    skipped: tuple[Skipped, ...] = ()
    """Messages left on the server: too large, or refused for good."""
    left: int = 0
    """New messages not fetched because of the per-run limit (``max_messages``)."""
    recognised: int = 0
    """IMAP messages recognised by their digest after a UIDVALIDITY change, so not
    fetched again."""
    error: str | None = None
    """Why the pass stopped early (``None``: it ran to its end)."""


@dataclass(slots=True)
class _Pass:
    """A pass's counts, turned into the :class:`FetchReport`."""

    fetched: list[str] = field(default_factory=list)
    removed: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    left: int = 0
    recognised: int = 0

    def report(self, account: str, error: str | None = None) -> FetchReport:
        return FetchReport(
            account=account,
            fetched=tuple(self.fetched),
            removed=self.removed,
            skipped=tuple(self.skipped),
            left=self.left,
            recognised=self.recognised,
            error=error,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The per-account limits of a pass."""

    max_size: int | None = None
    max_messages: int | None = None


def _admit(
    name: str, folder: str | None, id: str, size: int | None, limits: Limits, counts: _Pass
) -> bool:
    """Whether a new message is fetched in this pass: not when it is over ``max_size``
    (left on the server, reported) or the pass has reached ``max_messages`` (counted
    as left for the next pass)."""
    if limits.max_size is not None and size is not None and size > limits.max_size:
        reason = f"too large ({size} octets, limit {limits.max_size})"
        where = f"{folder} UID {id}" if folder is not None else f"POP3 message {id}"
        log.warning("%s: %s left on the server: %s", name, where, reason)
        counts.skipped.append(Skipped(folder=folder, id=id, size=size, reason=reason))
        return False
    if limits.max_messages is not None and len(counts.fetched) >= limits.max_messages:
        counts.left += 1
        return False
    return True


async def _give(
    hand_off: HandOff, id: str, message: Message, folder: str | None, size: int | None,
    counts: _Pass,
) -> bool:
    """Hand one message off; ``False`` if the destination refused it for good (then it
    is reported as skipped)."""
    try:
        with message:
            await hand_off(id, message)
    except DeliveryRefused as exc:
        if not exc.permanent:
            raise
        log.warning("message %s refused by the destination: %s", id, exc)
        counts.skipped.append(Skipped(folder=folder, id=id, size=size, reason=f"refused: {exc}"))
        return False
    return True


# --- POP3 ----------------------------------------------------------------------------


async def fetch_pop3(
    client: POP3Client,
    name: str,
    memory: AccountMemory,
    hand_off: HandOff,
    *,
    delete: bool,
    limits: Limits,
) -> FetchReport:
    """One pass over a logged-in POP3 session: every message whose UIDL is not
    remembered is retrieved and handed off; with ``delete``, the handed-off ones (and
    those remembered from an earlier pass, still there) are marked with DELE once the
    state is saved. The caller ends the session with QUIT, which removes them
    (RFC 1939 §6: a session that ends otherwise removes nothing)."""
    uids = await client.uidl()
    sizes = await client.list()
    counts = _Pass()
    # Remembered and still there: handed off in an earlier pass whose DELE or QUIT did
    # not happen.
    done_before = [n for n, u in sorted(uids.items()) if u in memory.uidls]
    pending: list[int] = []

    async def commit() -> None:
        memory.uidls &= set(uids.values())
        await _save(memory)
        if delete:
            for number in (*done_before, *pending):
                await client.dele(number)
            counts.removed += len(done_before) + len(pending)
            done_before.clear()
        pending.clear()

    error: str | None = None
    try:
        for number, uid in sorted(uids.items()):
            if uid in memory.uidls:
                continue
            size = sizes.get(number)
            if not _admit(name, None, uid, size, limits, counts):
                continue
            spool = MessageSpool()
            try:
                await client.retrieve(number, spool.write)
            except BaseException:
                spool.discard()
                raise
            if await _give(hand_off, uid, spool.finish(), None, size, counts):
                memory.uidls.add(uid)
                counts.fetched.append(uid)
                pending.append(number)
                if len(pending) >= BATCH:
                    await commit()
    except DeliveryRefused as exc:
        error = f"destination: {exc}"
    finally:
        # What was handed off is remembered even when the pass stops early (after a
        # broken connection the DELEs fail, and the next pass does them).
        await _save_then(commit, memory)
    return counts.report(name, error)


async def _save(memory: AccountMemory) -> None:
    await asyncio.to_thread(memory.save)


async def _save_then(commit: Callable[[], Awaitable[None]], memory: AccountMemory) -> None:
    """Run ``commit`` (save, then act on the server); if acting fails, the state is
    saved anyway, so the next pass finishes it."""
    try:
        await commit()
    except Exception:
        await _save(memory)
        raise


# --- IMAP ----------------------------------------------------------------------------


async def fetch_imap(
    client: IMAPClient,
    name: str,
    memory: AccountMemory,
    hand_off: HandOff,
    *,
    folders: Sequence[str],
    after: After,
    move_to: str | None,
    limits: Limits,
    uidnext: dict[str, int] | None = None,
) -> FetchReport:
    """One pass over a logged-in IMAP session, folder by folder (see the module
    text); the per-run limit counts across folders. ``uidnext``, if given, gets each
    folder's UIDNEXT as its SELECT gave it (what came later is for the next pass)."""
    counts = _Pass()
    errors: list[str] = []
    marks = uidnext if uidnext is not None else {}
    try:
        for folder in folders:
            try:
                await _fetch_folder(client, name, memory, hand_off, folder, after, move_to,
                                    limits, counts, marks)
            except IMAPCommandError as exc:
                # A NO or BAD (a folder missing, a MOVE into one): the session goes on,
                # and so do the other folders; what this one fetched is remembered.
                log.warning("%s: folder %s: %s", name, folder, exc)
                errors.append(f"{folder}: {exc}")
    except DeliveryRefused as exc:
        errors.append(f"destination: {exc}")
    return counts.report(name, "; ".join(errors) or None)


async def _fetch_folder(
    client: IMAPClient,
    name: str,
    memory: AccountMemory,
    hand_off: HandOff,
    folder: str,
    after: After,
    move_to: str | None,
    limits: Limits,
    counts: _Pass,
    marks: dict[str, int],
) -> None:
    selected = await client.select(folder, readonly=after == "keep")
    if selected.uidnext:
        marks[folder] = selected.uidnext
    uidvalidity = selected.uidvalidity or 0
    remembered = memory.folder(folder)
    recognise: dict[str, int] = {}
    if remembered.uidvalidity != uidvalidity:
        if remembered.uidvalidity:
            log.warning(
                "%s: UIDVALIDITY of %s changed (%d to %d): recognising fetched messages "
                "by Message-ID and size",
                name, folder, remembered.uidvalidity, uidvalidity,
            )
            recognise = remembered.reset(uidvalidity)
        else:
            remembered.reset(uidvalidity)
    sizes: dict[int, int | None] = {}
    unseen: set[int] = set()
    if selected.exists:
        for item in await client.fetch("1:*", "(UID RFC822.SIZE FLAGS)"):
            if isinstance(item, FetchData) and item.uid is not None:
                sizes[item.uid] = item.rfc822_size
                if item.flags is not None and "\\seen" not in {f.lower() for f in item.flags}:
                    unseen.add(item.uid)
    new = sorted(u for u in sizes if u not in remembered.uids)
    digests = await _digests(client, new)
    if recognise:
        # Recognised before anything is fetched: once the new UIDVALIDITY is saved, the
        # old digests are gone, and a pass stopped early must not lose the rest.
        for uid in new:
            known = digests.get(uid)
            if known is not None and known in recognise:
                remembered.uids.add(uid)  # fetched before the UIDVALIDITY change
                remembered.digests[uid] = known
                counts.recognised += 1
        new = [u for u in new if u not in remembered.uids]
    # Remembered and still there (delete, move), or still without \Seen (seen): the
    # action of an earlier pass that did not happen.
    done_before = [u for u in sorted(sizes) if u in remembered.uids
                   and (after in ("delete", "move") or (after == "seen" and u in unseen))]
    pending: list[int] = []

    async def commit() -> None:
        remembered.keep_only(sizes)
        await _save(memory)
        acted = [*done_before, *pending]
        if acted:
            counts.removed += await _act(client, acted, after, move_to)
        done_before.clear()
        pending.clear()

    try:
        for uid in new:
            size = sizes[uid]
            known = digests.get(uid)
            if not _admit(name, folder, str(uid), size, limits, counts):
                continue
            spool = MessageSpool()
            try:
                found = await _fetch_one(client, uid, spool)
            except BaseException:
                spool.discard()
                raise
            if not found:
                # Expunged by another client since the pass listed it (RFC 2180 §4.1):
                # nothing to hand off, nothing to remember.
                spool.discard()
                log.info("%s: %s UID %d vanished before it was fetched", name, folder, uid)
                continue
            id = f"{folder}/{uidvalidity}/{uid}"
            if await _give(hand_off, id, spool.finish(), folder, size, counts):
                remembered.uids.add(uid)
                if known is not None:
                    remembered.digests[uid] = known
                counts.fetched.append(id)
                pending.append(uid)
                if len(pending) >= BATCH:
                    await commit()
    finally:
        await _save_then(commit, memory)


async def _fetch_one(client: IMAPClient, uid: int, spool: MessageSpool) -> bool:
    """The whole message ``uid`` into ``spool``; ``False`` when the server has it no
    more: a FETCH answered OK without the message, or NO [EXPUNGEISSUED]."""
    try:
        items = await client.fetch_message(uid, spool.write, uid=True)
    except IMAPCommandError as exc:
        if getattr(exc.code, "name", None) == "EXPUNGEISSUED":
            return False
        raise
    found = False
    for item in items:
        if item.uid != uid and item.uid is not None:
            continue
        for section in item.sections:
            found = True
            if isinstance(section.data, bytes):
                spool.write(section.data)
    return found


async def _digests(client: IMAPClient, uids: list[int]) -> dict[int, str]:
    """The digest (Message-ID and size) of each of ``uids``, 500 at a time."""
    found: dict[int, str] = {}
    for start in range(0, len(uids), 500):
        chunk = uids[start : start + 500]
        items = await client.fetch(SequenceSet.from_numbers(chunk), "(UID RFC822.SIZE ENVELOPE)",
                                   uid=True)
        for item in items:
            if not isinstance(item, FetchData) or item.uid is None:
                continue
            message_id = item.envelope.message_id if item.envelope is not None else None
            made = digest(message_id, item.rfc822_size)
            if made is not None:
                found[item.uid] = made
    return found


async def _act(client: IMAPClient, uids: list[int], after: After, move_to: str | None) -> int:
    """Do ``after`` to ``uids`` on the server; the number removed from the folder."""
    if after == "keep":
        return 0
    chosen = SequenceSet.from_numbers(sorted(uids))
    if after == "seen":
        await client.store(chosen, ["\\Seen"], uid=True, silent=True)
        return 0
    if after == "move":
        assert move_to is not None
        if client.has("MOVE"):
            await client.move(chosen, move_to, uid=True)
            return len(uids)
        await client.copy(chosen, move_to, uid=True)
    await client.store(chosen, ["\\Deleted"], uid=True, silent=True)
    if client.has("UIDPLUS"):
        await client.expunge(chosen)
    else:  # plain EXPUNGE: every \Deleted message of the folder goes
        await client.expunge()
    return len(uids)

