"""The selected mailbox of one IMAP session over a store folder: SELECT/EXAMINE
(CONDSTORE, QRESYNC), the store's changes told to the core's view, FETCH, STORE,
SEARCH, COPY/MOVE, EXPUNGE and CLOSE.

Every store call runs in the store's executor (``Store.run``), never on the loop.
Message numbers are the core's view's (``SelectedMailbox``): the handle's refresh is
read and told to the view before each command (:meth:`OpenMailbox.sync`), so a
command sees the client's numbering, and what changed goes out where RFC 9051 §7.5.1
allows it. The metadata of a message expunged by another session stays here until
the client was told, so numbers and SEARCH stay consistent (RFC 2180 §4.1); a body
fetch of such a message gets ``NO [EXPUNGEISSUED]`` (RFC 5530 §3).
"""

from __future__ import annotations

import dataclasses
import logging
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from mailagents.agents._imap_fetch import FetchCache, FetchPlan, plan_fetch
from mailagents.agents._imap_search import SearchView, has_modseq_key, search, search_result
from mailagents.aio.imap import IMAPSession
from mailagents.imap import commands as c
from mailagents.imap import responses as r
from mailagents.imap._events import Complete
from mailagents.imap._fetch_items import FetchItem, expand_macro
from mailagents.imap._mime import PartMap
from mailagents.imap._response_codes import (
    CopyUidCode,
    HighestModSeqCode,
    PermanentFlagsCode,
    ResponseCode,
    UidNextCode,
    UidValidityCode,
    UnseenCode,
)
from mailagents.imap._selected import SelectedMailbox
from mailagents.imap._seqset import SequenceSet
from mailagents.store import (
    SEEN,
    SYSTEM_FLAGS,
    Changes,
    FlagMode,
    Folder,
    FolderNotFoundError,
    MessageInfo,
    MessageNotFoundError,
    QuotaExceededError,
    Store,
)
from mailagents.store._cache import FolderCache

__all__ = ["OpenMailbox", "stream_literal"]

log = logging.getLogger(__name__)

_STORE_MODES: dict[str, FlagMode] = {"replace": "set", "add": "add", "remove": "remove"}
_BODY_ITEMS = ("BODY[", "BODY.PEEK[", "BINARY", "RFC822")
_CHARSETS = ("UTF-8", "US-ASCII")


def rev2(session: IMAPSession) -> bool:
    """The session enabled IMAP4rev2 (no ``\\Recent``, ESEARCH for SEARCH)."""
    return "IMAP4REV2" in session.core.enabled


def condstore(session: IMAPSession) -> bool:
    """A CONDSTORE enabling command was issued (RFC 7162 §3.1)."""
    return "CONDSTORE" in session.core.enabled


async def stream_literal(
    store: Store, producer: Callable[[], Iterator[bytes]]
) -> AsyncIterator[bytes]:
    """The chunks of a fetch plan's literal producer, each read in the store's
    executor."""
    chunks = await store.run(producer)
    try:
        while (chunk := await store.run(next, chunks, None)) is not None:
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            await store.run(close)


_GROUP_MESSAGES = 64
_GROUP_OCTETS = 1 << 20


def _fetch_groups(
    wanted: list[tuple[int, MessageInfo, bool]],
) -> Iterator[list[tuple[int, MessageInfo, bool]]]:
    """The messages of a FETCH in groups planned by one executor call each: at most
    64 messages, and about 1 MiB of message octets (what their inline literals could
    hold in memory at once)."""
    group: list[tuple[int, MessageInfo, bool]] = []
    octets = 0
    for message in wanted:
        group.append(message)
        octets += message[1].size
        if len(group) >= _GROUP_MESSAGES or octets >= _GROUP_OCTETS:
            yield group
            group, octets = [], 0
    if group:
        yield group


def _plan_group(
    items: tuple[FetchItem, ...],
    group: list[tuple[int, MessageInfo, bool]],
    folder: Folder,
    options: dict[str, Any],
) -> list[FetchPlan | None]:
    """The fetch plans of ``group`` (number, metadata, ``\\Recent``), in the executor:
    ``None`` for a message gone from the store; the list stops at the first plan with
    an error."""
    plans: list[FetchPlan | None] = []
    for seq, info, recent in group:
        try:
            plan = plan_fetch(items, info, seq, folder, recent=recent, **options)
        except MessageNotFoundError:
            plans.append(None)
            continue
        plans.append(plan)
        if plan.error is not None:
            break
    return plans


def _is_body_item(item: FetchItem) -> bool:
    return str(item).upper().startswith(_BODY_ITEMS)


class OpenMailbox:
    """The mailbox a session has selected: the store folder's handle, the metadata of
    every message the client may still name, the session's ``\\Recent`` set, the
    SEARCHRES result (RFC 5182) and the core's view."""

    def __init__(
        self, store: Store, folder: Folder, name: str, *, read_only: bool, rev1: bool
    ) -> None:
        self.store = store
        """The user's store."""
        self.folder = folder
        """The open folder handle."""
        self.name = name
        """The mailbox name as selected (``INBOX`` normalised)."""
        self.read_only = read_only
        """Opened with EXAMINE."""
        self.rev1 = rev1
        """An IMAP4rev1 session: ``\\Recent`` is claimed and reported."""
        self.view: SelectedMailbox | None = None
        """The core's view, once SELECT completed."""
        self.infos: dict[int, MessageInfo] = {}
        self.recent: set[int] = set()
        """The UIDs this session holds as ``\\Recent`` (RFC 3501 §2.3.2)."""
        self.saved: SequenceSet | None = None
        """The SEARCHRES saved result, as UIDs."""
        self.cache = FetchCache()
        self.folder_cache: FolderCache | None = None
        """The folder's persistent message cache, when it keeps one."""
        self.uidvalidity = 0
        self.session: IMAPSession | None = None
        """The session, once SELECT began (for the RECENT updates of IMAP4rev1)."""
        self._gone: set[int] = set()

    # --- SELECT / EXAMINE ----------------------------------------------------------

    async def open(self, session: IMAPSession, command: c.Select | c.Examine) -> Complete:
        """Answer SELECT or EXAMINE (RFC 9051 §6.3.2, RFC 3501 §6.3.1, RFC 7162 §3.1.2
        and §3.2.5): FLAGS, EXISTS, (RECENT), UIDVALIDITY, UIDNEXT, PERMANENTFLAGS,
        HIGHESTMODSEQ, then with QRESYNC the VANISHED (EARLIER) and FETCH of what changed
        since the client's MODSEQ."""
        store, folder = self.store, self.folder
        self.session = session
        messages = await store.run(folder.messages)
        status = await store.run(folder.status)
        keywords = await store.run(folder.keywords)
        creatable = await store.run(folder.can_create_keywords)
        if self.rev1 and not self.read_only:
            self.recent.update(await store.run(folder.claim_recent))
        self.infos = {m.uid: m for m in messages}
        self.uidvalidity = status.uidvalidity
        self.folder_cache = await store.run(folder.message_cache)
        flags = tuple(sorted(SYSTEM_FLAGS)) + tuple(sorted(keywords))
        await session.send(r.FlagsData(flags=flags))
        await session.send(r.ExistsData(count=len(messages)))
        if not self.rev1:
            # RFC 9051 §6.3.2: a LIST response with the mailbox name and its attributes.
            # With OLDNAME when the client's name was not the normalized one (§6.3.9.7).
            listed = await store.run(store.list_folders)
            found = next((i for i in listed if i.name == self.name), None)
            attributes = tuple(sorted(found.attributes)) if found is not None else ()
            supplied = command.mailbox
            await session.send(
                r.ListData(
                    flags=attributes,
                    delimiter="/",
                    mailbox=self.name,
                    old_name=supplied if _nfc(supplied) != supplied else None,
                )
            )
        if self.rev1:
            await session.send(r.RecentData(count=len(self.recent)))
            unseen = next((n for n, m in enumerate(messages, 1) if SEEN not in m.flags), None)
            if unseen is not None:
                await session.send(_ok(UnseenCode(number=unseen)))
        await session.send(_ok(UidValidityCode(uidvalidity=status.uidvalidity)))
        await session.send(_ok(UidNextCode(uidnext=max(status.uidnext, 1))))
        permanent = () if self.read_only else flags + (("\\*",) if creatable else ())
        await session.send(_ok(PermanentFlagsCode(flags=permanent)))
        if status.highestmodseq >= 1:
            await session.send(_ok(HighestModSeqCode(modseq=status.highestmodseq)))
        else:
            await session.send(_ok(ResponseCode(name="NOMODSEQ")))
        qresync = command.qresync
        if qresync is not None and qresync.uidvalidity == status.uidvalidity:
            await self._resync(session, qresync, messages)
        self.view = SelectedMailbox(
            (m.uid for m in messages),
            condstore=condstore(session) or command.condstore,
            qresync=qresync is not None,
        )
        return Complete(code="READ-ONLY" if self.read_only else "READ-WRITE")

    async def _resync(
        self, session: IMAPSession, qresync: c.QResync, messages: list[MessageInfo]
    ) -> None:
        """RFC 7162 §3.2.5: what changed since the client's MODSEQ."""
        changes = await self.store.run(self.folder.changes_since, qresync.modseq)
        known = qresync.known_uids
        gone = [u for u in changes.expunged if known is None or _in_set(known, u)]
        if gone:
            await session.send(
                r.VanishedData(uids=SequenceSet.from_numbers(sorted(gone)), earlier=True)
            )
        for seq, info in enumerate(messages, 1):
            if info.modseq > qresync.modseq and (known is None or _in_set(known, info.uid)):
                await session.send(
                    r.FetchData(
                        number=seq, uid=info.uid, flags=self._flags(info), modseq=info.modseq
                    )
                )

    def _part_map(self, uid: int) -> PartMap:
        """The part map from the folder's cache (called in the executor)."""
        return self.folder.cached(uid).part_map

    def _flags(self, info: MessageInfo) -> tuple[str, ...]:
        flags = sorted(info.flags)
        if info.uid in self.recent:
            flags.append("\\Recent")
        return tuple(flags)

    # --- the store's changes -------------------------------------------------------

    async def sync(self) -> None:
        """Read the handle's changes and tell them to the view."""
        view = self.view
        if view is None:
            return
        changes: Changes = await self.store.run(self.folder.refresh)
        if changes.uidvalidity != self.uidvalidity:
            # The folder was replaced (removed and made again by another program): its
            # UIDs are not the ones this session knows, and they may not change within
            # a session (RFC 9051 §2.3.1.1). Gone, for the session (it ends with BYE).
            raise FolderNotFoundError(self.name)
        claimed: list[int] = []
        if self.rev1 and not self.read_only and changes.added:
            claimed = await self.store.run(self.folder.claim_recent)
            self.recent.update(claimed)
        for uid in [u for u in self._gone if view.seq(u) is None]:
            self._gone.discard(uid)
            self.infos.pop(uid, None)
        new = [m for m in changes.added if m.uid > view.highest_uid]
        for info in changes.added:
            self.infos[info.uid] = info
        if new:
            view.appended(m.uid for m in new)
        if changes.expunged:
            self._gone.update(changes.expunged)
            view.expunged(changes.expunged)
        for info in changes.changed:
            old = self.infos.get(info.uid)
            self.infos[info.uid] = info
            if old is not None and old.flags == info.flags and old.modseq == info.modseq:
                continue  # told already (this session's own STORE)
            if info.uid <= view.highest_uid:
                view.flags_changed(info.uid, self._flags(info), info.modseq)
        if claimed and self.session is not None:
            # RFC 3501 §7.3.2: RECENT again when new messages came, after their EXISTS
            # (the view's updates that may go out now go first).
            self.session.core.refresh()
            # Only the messages the client still knows: an expunge just told has left
            # the view (its metadata stays in infos until the next sync), and RECENT
            # must not count more messages than EXISTS and the EXPUNGEs left.
            recent = sum(1 for uid in self.recent if view.seq(uid) is not None)
            await self.session.send(r.RecentData(count=recent))

    def _resolve(self, numbers: SequenceSet, uid: bool) -> list[tuple[int, int]]:
        view = self.view
        assert view is not None
        if numbers.saved:
            if self.saved is None:
                return []
            return list(view.messages(self.saved, uid=True))
        return list(view.messages(numbers, uid=uid))

    # --- FETCH -----------------------------------------------------------------------

    async def fetch(self, session: IMAPSession, command: c.Fetch) -> Complete:
        """FETCH and UID FETCH (RFC 9051 §6.4.5), with CHANGEDSINCE and VANISHED
        (RFC 7162 §3.1.4, §3.2.6), through the fetch helper's ``plan_fetch``."""
        items: tuple[FetchItem, ...] = (
            expand_macro(command.items) if isinstance(command.items, str) else command.items
        )
        targets = self._resolve(command.sequence_set, command.uid)
        since = command.changedsince
        if command.vanished and since is not None:
            changes = await self.store.run(self.folder.changes_since, since)
            wanted = {u for _, u in targets}
            gone = sorted(
                u for u in changes.expunged if _in_set(command.sequence_set, u) and u not in wanted
            )
            if gone:
                await session.send(
                    r.VanishedData(uids=SequenceSet.from_numbers(gone), earlier=True)
                )
        issued = False
        todo: list[tuple[int, MessageInfo, bool]] = []
        for seq, uid in targets:
            info = self.infos.get(uid)
            if since is not None and (info is None or info.modseq <= since):
                continue
            assert self.view is not None
            if info is None or self.view.is_expunged(uid):
                issued = issued or any(_is_body_item(i) for i in items)
                if info is None:
                    continue
            todo.append((seq, info, uid in self.recent))
        options = {
            "uid_requested": command.uid,
            "modseq": since is not None,
            "utf8": "UTF8=ACCEPT" in session.core.enabled or rev2(session),
            "read_only": self.read_only,
            "cache": self.cache,
            "uidvalidity": self.uidvalidity,
            "folder_cache": self.folder_cache,
        }
        for group in _fetch_groups(todo):
            # One executor call plans a group of messages (a FETCH of 50 headers was 50).
            plans = await self.store.run(_plan_group, items, group, self.folder, options)
            failure = plans[-1] if plans and plans[-1] is not None else None
            error = failure.error if failure is not None else None
            if error is not None:
                plans.pop()  # it stopped there: what came before is answered
            # zip: the plans may stop short of the group (at an error)
            done = list(zip(group, plans, strict=False))
            seen = [info.uid for (_, info, _), p in done if p is not None and p.sets_seen]
            news: dict[int, MessageInfo] = {}
            if seen and not self.read_only:
                changed, _ = await self.store.run(self.folder.set_flags, seen, [SEEN], "add")
                for new in changed:
                    self.infos[new.uid] = news[new.uid] = new
                    if self.view is not None:
                        # The FLAGS of this response are the news: an update read
                        # before it is stale.
                        self.view.restate_flags(new.uid, self._flags(new), new.modseq, told=True)
            for (_, info, _), plan in done:
                if plan is None:
                    issued = True
                    continue
                data = plan.data
                now = news.get(info.uid) if plan.sets_seen else None
                if now is not None:
                    if data.modseq is not None or condstore(session):
                        # RFC 7162 §3.2.4: a FETCH that implicitly set \\Seen reports
                        # the mod-sequence of that change, not the one read before it
                        # (and once QRESYNC is on, the UID too).
                        data = dataclasses.replace(data, modseq=now.modseq)
                    if data.uid is None and self.view is not None and self.view.qresync:
                        data = dataclasses.replace(data, uid=info.uid)
                await session.send(data, [stream_literal(self.store, p) for p in plan.literals])
            if error is not None:
                return Complete(status="NO", code="UNKNOWN-CTE", text=str(error))
        if issued:
            return Complete(status="NO", code="EXPUNGEISSUED", text="Some messages were expunged")
        return Complete()

    # --- STORE -----------------------------------------------------------------------

    async def store_flags(self, session: IMAPSession, command: c.Store) -> Complete:
        """STORE and UID STORE (RFC 9051 §6.4.6), UNCHANGEDSINCE with MODIFIED
        (RFC 7162 §3.1.3)."""
        if self.read_only:
            return Complete(status="NO", code="READ-ONLY", text="Mailbox is read-only")
        targets = self._resolve(command.sequence_set, command.uid)
        flags = [f for f in command.flags if f.upper() != "\\RECENT"]
        uids = [u for _, u in targets if u in self.infos]
        try:
            changed, failed = await self.store.run(
                self.folder.set_flags,
                uids,
                flags,
                _STORE_MODES[command.action],
                unchanged_since=command.unchangedsince,
            )
        except ValueError as exc:
            return Complete(status="BAD", text=f"Invalid flag: {exc}"[:200].replace("\n", " "))
        for info in changed:
            self.infos[info.uid] = info
            if self.view is not None:
                # A flag update of another program's change, read before this STORE, is
                # stale now: the FETCH below tells the new flags, or (.SILENT) the
                # update must carry them.
                told = not command.silent
                self.view.restate_flags(info.uid, self._flags(info), info.modseq, told=told)
        touched = {info.uid for info in changed}
        refused = set(failed)
        modseqs = command.unchangedsince is not None or condstore(session)
        # RFC 7162 §3.2.4: once QRESYNC is on, every untagged FETCH a STORE causes
        # carries UID (and MODSEQ), the UID form or not.
        with_uid = command.uid or (self.view is not None and self.view.qresync)
        for seq, uid in targets:
            now = self.infos.get(uid)
            if now is None or uid in refused:
                continue
            if command.silent and not (modseqs and uid in touched):
                continue
            await session.send(
                r.FetchData(
                    number=seq,
                    flags=None if command.silent else self._flags(now),
                    uid=uid if with_uid else None,
                    modseq=now.modseq if modseqs else None,
                )
            )
        if refused:
            numbers = [u if command.uid else s for s, u in targets if u in refused]
            return Complete(code=f"MODIFIED {SequenceSet.from_numbers(numbers)}")
        return Complete()

    # --- SEARCH ----------------------------------------------------------------------

    async def search(self, session: IMAPSession, command: c.Search) -> Complete:
        """SEARCH and UID SEARCH (RFC 9051 §6.4.4), ESEARCH (RFC 4731) and SEARCHRES
        (RFC 5182), through the search helper's ``search``."""
        charset = (command.charset or "UTF-8").upper()
        if charset not in _CHARSETS:
            return Complete(status="NO", code="BADCHARSET (UTF-8 US-ASCII)",
                            text="Unsupported charset")  # fmt: skip
        assert self.view is not None
        pairs = list(self.view.messages(SequenceSet.parse("1:*"))) if self.view.exists else []
        view = SearchView(
            messages=[self.infos[u] for _, u in pairs],
            folder=self.folder,
            saved=self.saved,
            charset=charset,
            recent=frozenset(self.recent),
            part_map=self._part_map if self.folder_cache is not None else None,
            cache=self.folder_cache,
        )
        uids = await self.store.run(search, command.criteria, view)
        result = search_result(uids, view, uid=command.uid)
        options = {o.upper() for o in command.return_options or ()}
        if "SAVE" in options:
            self.saved = result.saved(
                min="MIN" in options,
                max="MAX" in options,
                all="ALL" in options,
                count="COUNT" in options,
            )
            options.discard("SAVE")
            if not options:
                return Complete()
        modseq = result.modseq if has_modseq_key(command.criteria) else None
        if command.return_options is not None:
            if not options:
                options = {"ALL"}
            await session.send(
                r.ESearchData(
                    tag=command.tag,
                    uid=command.uid,
                    min=result.min if "MIN" in options else None,
                    max=result.max if "MAX" in options else None,
                    count=result.count if "COUNT" in options else None,
                    all=result.all if "ALL" in options else None,
                    modseq=modseq,
                )
            )
        else:
            await session.send(r.SearchData(numbers=result.numbers, modseq=modseq))
        return Complete()

    # --- COPY, MOVE, EXPUNGE, CLOSE ----------------------------------------------

    async def copy(
        self, session: IMAPSession, command: c.Copy | c.Move, target_name: str
    ) -> Complete:
        """COPY/MOVE and their UID forms (RFC 9051 §6.4.7, §6.4.8, RFC 6851) with
        COPYUID (RFC 4315 §3); a missing target is ``NO [TRYCREATE]``."""
        move = isinstance(command, c.Move)
        if move and self.read_only:
            return Complete(status="NO", code="READ-ONLY", text="Mailbox is read-only")
        targets = self._resolve(command.sequence_set, command.uid)
        uids = [u for _, u in targets if u in self.infos]
        store = self.store
        try:
            target = await store.run(store.folder, target_name)
        except FolderNotFoundError:
            return Complete(status="NO", code="TRYCREATE", text="No such mailbox")
        try:
            operation = self.folder.move if move else self.folder.copy
            result = await store.run(operation, uids, target)
        except QuotaExceededError:
            return Complete(status="NO", code="OVERQUOTA", text="Over quota")
        finally:
            await store.run(target.close)
        code = None
        if result:
            source = sorted(result)
            code = CopyUidCode(
                uidvalidity=result.uidvalidity,
                source=_ordered(source),
                destination=_ordered([result[u] for u in source]),
            )
        if move:
            if code is not None:
                await session.send(r.StatusResponse(status="OK", tag=None, code=code, text="Moved"))
            self.told_expunged(sorted(result))
            await self.sync()
            return Complete()
        if code is None:
            return Complete()
        return Complete(code=f"COPYUID {code.uidvalidity} {code.source} {code.destination}")

    async def expunge(self, session: IMAPSession, command: c.Expunge) -> Complete:
        """EXPUNGE and UID EXPUNGE (RFC 9051 §6.4.3, RFC 4315 §2.1): the view tells
        the client, in order."""
        if self.read_only:
            return Complete(status="NO", code="READ-ONLY", text="Mailbox is read-only")
        only = None
        if command.uid and command.sequence_set is not None:
            only = [u for _, u in self._resolve(command.sequence_set, True)]
        removed = await self.store.run(self.folder.expunge, only)
        self.told_expunged(removed)
        await self.sync()
        return Complete()

    def told_expunged(self, uids: list[int]) -> None:
        """This session removed ``uids`` through its own handle (whose refresh will
        not report them): tell the view."""
        if uids and self.view is not None:
            self._gone.update(uids)
            self.view.expunged(uids)

    async def close(self, *, expunge: bool) -> None:
        """CLOSE (expunge quietly unless read-only, RFC 9051 §6.4.1) or UNSELECT or a
        new SELECT: release the handle."""
        try:
            if expunge and not self.read_only:
                await self.store.run(self.folder.expunge)
        finally:
            await self.store.run(self.folder.close)


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def _ok(code: Any) -> r.StatusResponse:
    return r.StatusResponse(status="OK", tag=None, code=code, text="")


def _in_set(numbers: SequenceSet, uid: int) -> bool:
    for first, last in numbers.ranges:
        a = 0xFFFFFFFF if first is None else first
        b = 0xFFFFFFFF if last is None else last
        if min(a, b) <= uid <= max(a, b):
            return True
    return False


def _ordered(numbers: list[int]) -> SequenceSet:
    """The numbers in their order, as a set of single numbers and ascending runs
    (COPYUID pairs the two sets by position, RFC 4315 §3)."""
    ranges: list[tuple[int | None, int | None]] = []
    for n in numbers:
        if ranges and ranges[-1][1] == n - 1:
            ranges[-1] = (ranges[-1][0], n)
        else:
            ranges.append((n, n))
    return SequenceSet(ranges=tuple(ranges))
