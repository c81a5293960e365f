"""The mailbox commands of the store-backed IMAP handler, which need no selected
mailbox: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, NAMESPACE, STATUS, LIST
(LIST-EXTENDED, LIST-STATUS, SPECIAL-USE) and LSUB, as :class:`FolderCommands`, the
base of ``StoreIMAPHandler``. Store work runs in the store's executor."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from mailagents.agents._imap_mailbox import OpenMailbox, rev2
from mailagents.aio.imap import IMAPHandler, IMAPSession
from mailagents.imap import commands as c
from mailagents.imap import responses as r
from mailagents.imap._events import Complete
from mailagents.store import SPECIAL_USE, FolderInfo, Store, StoreResolver

__all__ = ["FolderCommands", "check_name", "denormalized", "normal_name"]

_STATUS_RECENT = "RECENT"
# Levels a mailbox name may not have: they would be read as Maildir's own directories
# or leave the store.
_RESERVED = frozenset({"cur", "new", "tmp", ".", ".."})


def normal_name(name: str) -> str:
    """INBOX in any case is INBOX (RFC 9051 §5.1); a trailing separator is dropped;
    the name in Unicode Normalization Form C, as Net-Unicode wants it (RFC 9051 §5.1:
    a server may take a denormalized name and convert it, and then in every command,
    so that SELECT opens what CREATE made under the same name)."""
    name = unicodedata.normalize("NFC", name)
    if name.upper() == "INBOX":
        return "INBOX"
    if name.upper().startswith("INBOX/"):
        name = "INBOX" + name[5:]
    return name.rstrip("/") if len(name) > 1 else name


def denormalized(supplied: str) -> bool:
    """The client's name is not in NFC: the server tells it the name it uses, with
    OLDNAME (RFC 9051 §6.3.9.7)."""
    return unicodedata.normalize("NFC", supplied) != supplied


def check_name(name: str) -> str | None:
    """Why ``name`` cannot be a new mailbox (``NO [CANNOT]``), or ``None``: no list
    wildcard, no control character (U+0000-U+001F, U+007F-U+009F), no line or
    paragraph separator (RFC 9755 §3, Net-Unicode of RFC 5198), no empty level and
    none that Maildir keeps for itself or that leaves the store."""
    if not name or any(ch in name for ch in "%*\u2028\u2029"):
        return "Invalid mailbox name"
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in name):
        return "Invalid mailbox name"
    levels = name.split("/")
    if any(not level or level in _RESERVED for level in levels):
        return "Invalid mailbox name"
    return None


def _pattern(reference: str, pattern: str) -> re.Pattern[str]:
    """LIST's reference and pattern as a regular expression (RFC 9051 §6.3.9):
    ``*`` matches anything, ``%`` anything but the separator; INBOX in any case."""
    full = reference + pattern if not pattern.startswith("/") else pattern
    full = unicodedata.normalize("NFC", full)  # as the names are (normal_name)
    out = []
    for ch in full:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(ch))
    text = "".join(out)
    if full[:5].upper() == "INBOX":
        text = "(?i:INBOX)" + "".join(out[5:])
    return re.compile(text, re.DOTALL)


class FolderCommands(IMAPHandler):
    """The user's store per session, and the commands that need no selected
    mailbox (see the module text)."""

    stores: StoreResolver | Callable[[str], Awaitable[Store]]
    """Where each user's store comes from."""

    # --- the session's state ---------------------------------------------------------

    @staticmethod
    def mailbox(session: IMAPSession) -> OpenMailbox | None:
        """The session's selected mailbox, if any."""
        found: OpenMailbox | None = session.data.get("imap.mailbox")
        return found

    async def store_of(self, session: IMAPSession) -> Store:
        """The logged-in user's store (opened on first use)."""
        store: Store | None = session.data.get("imap.store")
        if store is None:
            assert session.identity is not None
            if isinstance(self.stores, StoreResolver):
                store = await self.stores.store_for(session.identity)
            else:
                store = await self.stores(session.identity)
            session.data["imap.store"] = store
        return store

    # --- mailboxes -------------------------------------------------------------------

    async def _run(self, session: IMAPSession, func: Callable[..., Any], *args: Any) -> Any:
        store = await self.store_of(session)
        return await store.run(func, *args)

    async def cmd_create(self, session: IMAPSession, command: c.Create) -> Complete:
        """CREATE (RFC 9051 §6.3.4), with USE (RFC 6154 §3)."""
        name = normal_name(command.mailbox)
        why = check_name(name)
        if why is not None or name == "INBOX":
            return Complete(status="NO", code="CANNOT" if why else "ALREADYEXISTS",
                            text=why or "INBOX exists")  # fmt: skip
        uses = command.special_use
        if len(uses) > 1 or any(u.title() not in SPECIAL_USE for u in uses):
            return Complete(status="NO", code="USEATTR", text="Unsupported special use")
        store = await self.store_of(session)
        special = uses[0].title() if uses else None
        await store.run(lambda: store.create_folder(name, special_use=special))
        if rev2(session) and denormalized(command.mailbox):
            # RFC 9051 §6.3.4: the name was normalized; OLDNAME is the supplied one.
            attributes = await self._attributes(store, name)
            await session.send(
                r.ListData(flags=attributes, delimiter="/", mailbox=name, old_name=command.mailbox)
            )
        return Complete()

    async def _attributes(self, store: Store, name: str) -> tuple[str, ...]:
        """The mailbox's LIST attributes now (``\\Subscribed`` included, RFC 9051
        §6.3.6), or none if the store does not list it."""
        listed: list[FolderInfo] = await store.run(store.list_folders)
        found = next((i for i in listed if i.name == name), None)
        return tuple(sorted(found.attributes)) if found is not None else ()

    async def cmd_delete(self, session: IMAPSession, command: c.Delete) -> Complete:
        """DELETE (RFC 9051 §6.3.5): never INBOX."""
        name = normal_name(command.mailbox)
        if name == "INBOX":
            return Complete(status="NO", code="CANNOT", text="INBOX cannot be deleted")
        box = self.mailbox(session)
        if box is not None and box.name == name:
            return Complete(status="NO", code="INUSE", text="Mailbox is selected")
        await self._run(session, (await self.store_of(session)).delete_folder, name)
        if rev2(session) and denormalized(command.mailbox):
            # RFC 9051 §6.3.5: the normalized name, \NonExistent, the supplied OLDNAME.
            await session.send(
                r.ListData(
                    flags=("\\NonExistent",),
                    delimiter="/",
                    mailbox=name,
                    old_name=command.mailbox,
                )
            )
        return Complete()

    async def cmd_rename(self, session: IMAPSession, command: c.Rename) -> Complete:
        """RENAME (RFC 9051 §6.3.6): renaming INBOX moves its messages into the new
        mailbox and leaves INBOX empty."""
        old, new = normal_name(command.mailbox), normal_name(command.new_name)
        why = check_name(new)
        if why is not None:
            return Complete(status="NO", code="CANNOT", text=why)
        if new == "INBOX":
            return Complete(status="NO", code="ALREADYEXISTS", text="INBOX exists")
        store = await self.store_of(session)
        await store.run(store.rename_folder, old, new)
        if rev2(session) and old != "INBOX":
            # RFC 9051 §6.3.6 and §6.3.9.7: the new name with the supplied existing name
            # as OLDNAME, so that the client can follow the mailbox (a SHOULD when a
            # name was normalized, allowed always). INBOX stays: nothing is announced.
            attributes = await self._attributes(store, new)
            await session.send(
                r.ListData(flags=attributes, delimiter="/", mailbox=new, old_name=command.mailbox)
            )
        return Complete()

    async def cmd_subscribe(self, session: IMAPSession, command: c.Subscribe) -> Complete:
        """SUBSCRIBE (RFC 9051 §6.3.7)."""
        store = await self.store_of(session)
        await store.run(store.subscribe, normal_name(command.mailbox))
        return Complete()

    async def cmd_unsubscribe(self, session: IMAPSession, command: c.Unsubscribe) -> Complete:
        """UNSUBSCRIBE (RFC 9051 §6.3.8)."""
        store = await self.store_of(session)
        await store.run(store.unsubscribe, normal_name(command.mailbox))
        return Complete()

    async def cmd_namespace(self, session: IMAPSession, command: c.Namespace) -> Complete:
        """NAMESPACE (RFC 2342): one personal namespace, ``""`` with ``/``."""
        personal = (r.Namespace(prefix="", delimiter="/", extensions=()),)
        await session.send(r.NamespaceData(personal=personal, other=None, shared=None))
        return Complete()

    async def cmd_status(self, session: IMAPSession, command: c.Status) -> Complete:
        """STATUS (RFC 9051 §6.3.11) without opening the folder: MESSAGES, UIDNEXT,
        UIDVALIDITY, UNSEEN, DELETED, SIZE, HIGHESTMODSEQ (RFC 7162), APPENDLIMIT
        (RFC 7889) and, for IMAP4rev1, RECENT."""
        name = normal_name(command.mailbox)
        store = await self.store_of(session)
        data = await self._status_data(session, store, name, command.items)
        await session.send(data)
        return Complete()

    async def _status_data(
        self, session: IMAPSession, store: Store, name: str, items: Iterable[str]
    ) -> r.StatusData:
        status = await store.run(store.status, name)
        values: dict[str, int | None] = {
            "MESSAGES": status.messages,
            "UIDNEXT": status.uidnext,
            "UIDVALIDITY": status.uidvalidity,
            "UNSEEN": status.unseen,
            "DELETED": status.deleted,
            "SIZE": status.size,
            "HIGHESTMODSEQ": status.highestmodseq,
            _STATUS_RECENT: status.recent,
        }
        out: list[tuple[str, r.ExtValue]] = []
        for item in items:
            key = item.upper()
            if key == "APPENDLIMIT":
                # RFC 7889: NIL would say "no limit", but the core announces
                # APPENDLIMIT=max_append and refuses bigger messages; the folder's own
                # limit may be lower.
                limit = store.append_limit(name)
                cap = session.core.config.max_append
                out.append((key, cap if limit is None else min(limit, cap)))
            elif key == _STATUS_RECENT and rev2(session):
                continue
            elif key in values:
                out.append((key, values[key]))
        return r.StatusData(mailbox=name, items=tuple(out))

    async def cmd_list(self, session: IMAPSession, command: c.List) -> Complete:
        """LIST (RFC 9051 §6.3.9) with LIST-EXTENDED selection and return options
        (RFC 5258: SUBSCRIBED, RECURSIVEMATCH, SPECIAL-USE, CHILDREN), LIST-STATUS
        (RFC 5819) and ``\\NonExistent`` for subscribed names whose folder is gone."""
        selection = {o.upper() for o in command.selection}
        returns = {o.upper() for o in command.return_options}
        if command.patterns == ("",):
            # RFC 9051 §6.3.9: the hierarchy delimiter and the root name.
            await session.send(r.ListData(flags=("\\Noselect",), delimiter="/", mailbox=""))
            return Complete()
        subscribed_only = "SUBSCRIBED" in selection
        store = await self.store_of(session)
        listed: list[FolderInfo] = await store.run(
            lambda: store.list_folders(nonexistent=subscribed_only)
        )
        patterns = [_pattern(command.reference, p) for p in command.patterns]
        show_subscribed = subscribed_only or "SUBSCRIBED" in returns
        for info in listed:
            matched = any(p.fullmatch(info.name) for p in patterns)
            child_info: tuple[str, ...] | None = None
            if subscribed_only and "\\Subscribed" not in info.attributes:
                if (
                    matched
                    and "RECURSIVEMATCH" in selection
                    and any(
                        o.name.startswith(info.name + "/") and "\\Subscribed" in o.attributes
                        for o in listed
                    )
                ):
                    child_info = ("SUBSCRIBED",)
                else:
                    continue
            if not matched:
                continue
            if "SPECIAL-USE" in selection and not (info.attributes & SPECIAL_USE):
                continue
            flags = tuple(
                sorted(a for a in info.attributes if show_subscribed or a != "\\Subscribed")
            )
            await session.send(
                r.ListData(flags=flags, delimiter="/", mailbox=info.name, child_info=child_info)
            )
            selectable = not ({"\\Noselect", "\\NonExistent"} & info.attributes)
            if command.status is not None and selectable:
                await session.send(
                    await self._status_data(session, store, info.name, command.status)
                )
        return Complete()

    async def cmd_lsub(self, session: IMAPSession, command: c.Lsub) -> Complete:
        """LSUB (RFC 3501 §6.3.9, IMAP4rev1)."""
        store = await self.store_of(session)
        names: list[str] = await store.run(store.subscriptions)
        pattern = _pattern(command.reference, command.pattern)
        for name in sorted(names):
            if pattern.fullmatch(name):
                await session.send(r.ListData(flags=(), delimiter="/", mailbox=name, lsub=True))
        return Complete()
