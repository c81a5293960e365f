"""The MAA's IMAP side: an ``IMAPHandler`` that answers every mailbox command from
each user's ``mailagents.store`` (Maildir or mbox).

:class:`StoreIMAPHandler` logs users in from a user store (anything with
``answer_async(request)``, as ``mailagents.userdb.UserStore``), finds each user's
store through a ``StoreResolver`` (or a coroutine function from identity to store),
and answers CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST (LIST-EXTENDED,
LIST-STATUS, SPECIAL-USE), LSUB, NAMESPACE, STATUS, APPEND (streamed to a spool file,
then into the folder with its flags and date) and, through
``mailagents.agents._imap_mailbox.OpenMailbox``, everything about the selected
mailbox. A folder watch wakes the session when its folder changes, for IDLE and for
updates between commands. Store work runs in the store's executor.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from typing import IO, Any, Protocol

from mailagents import sasl
from mailagents.agents._imap_mailbox import OpenMailbox, rev2
from mailagents.aio._watching import FolderWatch, folder_watcher
from mailagents.aio.imap import IMAPHandler, IMAPServer, IMAPSession
from mailagents.imap import commands as c
from mailagents.imap import responses as r
from mailagents.imap._config import DEFAULT_EXTENSIONS, ServerConfig
from mailagents.imap._events import AppendChunk, AppendRequested, AppendStart, Complete, Continue
from mailagents.imap._frame import Streamed
from mailagents.imap._seqset import SequenceSet
from mailagents.store import (
    SPECIAL_USE,
    FolderExistsError,
    FolderInfo,
    FolderNotFoundError,
    InvalidFolderNameError,
    MessageTooBigError,
    QuotaExceededError,
    Store,
    StoreError,
    StoreResolver,
)

__all__ = ["IMAP_EXTENSIONS", "StoreIMAPHandler", "imap_config", "store_imap_server"]

log = logging.getLogger(__name__)

IMAP_EXTENSIONS: tuple[str, ...] = (
    *DEFAULT_EXTENSIONS,
    "LIST-EXTENDED",  # RFC 5258
    "LIST-STATUS",  # RFC 5819
    "SPECIAL-USE",  # RFC 6154
    "CREATE-SPECIAL-USE",
    "ESEARCH",  # RFC 4731
    "SEARCHRES",  # RFC 5182
    "STATUS=SIZE",  # RFC 8438
    "UIDPLUS",
)
"""What the store-backed server announces besides the core's own capabilities."""

_STATUS_RECENT = "RECENT"
# Levels a mailbox name may not have: they would be read as Maildir's own directories
# or leave the store.
_RESERVED = frozenset({"cur", "new", "tmp", ".", ".."})
_SPOOL_MEMORY = 1024 * 1024


def imap_config(**options: Any) -> ServerConfig:
    """A ``ServerConfig`` for :class:`StoreIMAPHandler`: its extensions, and
    ``confirm_append`` so that an APPEND into a missing mailbox or over a limit is
    refused before the message comes (RFC 9051 §6.3.12)."""
    options.setdefault("extensions", tuple(dict.fromkeys(IMAP_EXTENSIONS)))
    options.setdefault("confirm_append", True)
    return ServerConfig(**options)


class Credentials(Protocol):
    """What logs users in: ``mailagents.userdb.UserStore`` and the like."""

    def answer_async(self, request: sasl.NeedCredentials) -> Awaitable[sasl.CredentialsAnswer]:
        """The answer to the SASL request."""
        ...


def _normal(name: str) -> str:
    """INBOX in any case is INBOX (RFC 9051 §5.1); a trailing separator is dropped."""
    if name.upper() == "INBOX":
        return "INBOX"
    if name.upper().startswith("INBOX/"):
        name = "INBOX" + name[5:]
    return name.rstrip("/") if len(name) > 1 else name


def _check_name(name: str) -> str | None:
    """Why ``name`` cannot be a mailbox (``NO [CANNOT]``), or ``None``."""
    if not name or any(ch in name for ch in "%*\x00\r\n"):
        return "Invalid mailbox name"
    levels = name.split("/")
    if any(not level or level in _RESERVED for level in levels):
        return "Invalid mailbox name"
    return None


def _pattern(reference: str, pattern: str) -> re.Pattern[str]:
    """LIST's reference and pattern as a regular expression (RFC 9051 §6.3.9):
    ``*`` matches anything, ``%`` anything but the separator; INBOX in any case."""
    full = reference + pattern if not pattern.startswith("/") else pattern
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


class StoreIMAPHandler(IMAPHandler):
    """The store-backed IMAP handler (see the module text). ``users`` answers the
    logins; ``stores`` is a ``StoreResolver`` or a coroutine function from identity to
    ``Store``; ``watch`` (default on) wakes sessions when their folder changes."""

    def __init__(
        self,
        users: Credentials,
        stores: StoreResolver | Callable[[str], Awaitable[Store]],
        *,
        watch: bool = True,
    ) -> None:
        self.users = users
        """The user store that answers logins."""
        self.stores = stores
        """Where each user's store comes from."""
        self.watch = watch
        """Watch the selected folder for changes."""

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

    # --- IMAPHandler -----------------------------------------------------------------

    async def on_credentials(
        self, session: IMAPSession, request: sasl.NeedCredentials
    ) -> sasl.Answer:
        """Answer from the user store."""
        return await self.users.answer_async(request)

    async def on_login(self, session: IMAPSession) -> None:
        """Open the user's store."""
        await self.store_of(session)

    async def on_wake(self, session: IMAPSession) -> None:
        """The selected folder changed: tell the view."""
        box = self.mailbox(session)
        if box is not None:
            await box.sync()

    async def on_idle(self, session: IMAPSession, idling: bool) -> None:
        """IDLE began: what changed since the last command goes out at once (the
        watch tells the rest as it happens)."""
        box = self.mailbox(session)
        if idling and box is not None:
            await box.sync()
            session.core.refresh()

    async def on_close(self, session: IMAPSession) -> None:
        """Release the selected folder, the watch and the spool files."""
        await self._unselect(session, expunge=False)
        for spool in session.data.pop("imap.spools", {}).values():
            spool.close()

    async def on_command(self, session: IMAPSession, command: c.Command) -> Complete:
        """Dispatch to ``cmd_<verb>``; store errors become NO with a response code."""
        box = self.mailbox(session)
        if box is not None and not isinstance(command, (c.Select, c.Examine)):
            await box.sync()
        method = getattr(self, "cmd_" + type(command).__name__.lower(), None)
        if method is None:
            return Complete(status="BAD", text="Command not implemented")
        try:
            answer: Complete = await method(session, command)
        except FolderNotFoundError:
            return Complete(status="NO", code="NONEXISTENT", text="No such mailbox")
        except FolderExistsError:
            return Complete(status="NO", code="ALREADYEXISTS", text="Mailbox exists")
        except InvalidFolderNameError:
            return Complete(status="NO", code="CANNOT", text="Invalid mailbox name")
        except QuotaExceededError:
            return Complete(status="NO", code="OVERQUOTA", text="Over quota")
        except MessageTooBigError:
            return Complete(status="NO", code="TOOBIG", text="Message too big")
        except StoreError as exc:
            log.warning("%s: %r failed: %s", session.peer, command, exc)
            return Complete(status="NO", code="CANNOT", text="Cannot do that")
        return answer

    # --- mailboxes -------------------------------------------------------------------

    async def _run(self, session: IMAPSession, func: Callable[..., Any], *args: Any) -> Any:
        store = await self.store_of(session)
        return await store.run(func, *args)

    async def cmd_create(self, session: IMAPSession, command: c.Create) -> Complete:
        """CREATE (RFC 9051 §6.3.4), with USE (RFC 6154 §3)."""
        name = _normal(command.mailbox)
        why = _check_name(name)
        if why is not None or name == "INBOX":
            return Complete(status="NO", code="CANNOT" if why else "ALREADYEXISTS",
                            text=why or "INBOX exists")  # fmt: skip
        uses = command.special_use
        if len(uses) > 1 or any(u.title() not in SPECIAL_USE for u in uses):
            return Complete(status="NO", code="USEATTR", text="Unsupported special use")
        store = await self.store_of(session)
        special = uses[0].title() if uses else None
        await store.run(lambda: store.create_folder(name, special_use=special))
        return Complete()

    async def cmd_delete(self, session: IMAPSession, command: c.Delete) -> Complete:
        """DELETE (RFC 9051 §6.3.5): never INBOX."""
        name = _normal(command.mailbox)
        if name == "INBOX":
            return Complete(status="NO", code="CANNOT", text="INBOX cannot be deleted")
        box = self.mailbox(session)
        if box is not None and box.name == name:
            return Complete(status="NO", code="INUSE", text="Mailbox is selected")
        await self._run(session, (await self.store_of(session)).delete_folder, name)
        return Complete()

    async def cmd_rename(self, session: IMAPSession, command: c.Rename) -> Complete:
        """RENAME (RFC 9051 §6.3.6): renaming INBOX moves its messages into the new
        mailbox and leaves INBOX empty."""
        old, new = _normal(command.mailbox), _normal(command.new_name)
        why = _check_name(new)
        if why is not None:
            return Complete(status="NO", code="CANNOT", text=why)
        if new == "INBOX":
            return Complete(status="NO", code="ALREADYEXISTS", text="INBOX exists")
        store = await self.store_of(session)
        await store.run(store.rename_folder, old, new)
        return Complete()

    async def cmd_subscribe(self, session: IMAPSession, command: c.Subscribe) -> Complete:
        """SUBSCRIBE (RFC 9051 §6.3.7)."""
        store = await self.store_of(session)
        await store.run(store.subscribe, _normal(command.mailbox))
        return Complete()

    async def cmd_unsubscribe(self, session: IMAPSession, command: c.Unsubscribe) -> Complete:
        """UNSUBSCRIBE (RFC 9051 §6.3.8)."""
        store = await self.store_of(session)
        await store.run(store.unsubscribe, _normal(command.mailbox))
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
        name = _normal(command.mailbox)
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
                out.append((key, store.append_limit(name)))
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

    # --- SELECT and the selected state -------------------------------------------------

    async def _unselect(self, session: IMAPSession, *, expunge: bool) -> None:
        box: OpenMailbox | None = session.data.pop("imap.mailbox", None)
        watch: FolderWatch | None = session.data.pop("imap.watch", None)
        if watch is not None:
            watch.close()
        if box is not None:
            await box.close(expunge=expunge)

    async def cmd_select(self, session: IMAPSession, command: c.Select | c.Examine) -> Complete:
        """SELECT and EXAMINE (see ``OpenMailbox.open``)."""
        await self._unselect(session, expunge=False)
        name = _normal(command.mailbox)
        store = await self.store_of(session)
        folder = await store.run(store.folder, name)
        box = OpenMailbox(
            store,
            folder,
            name,
            read_only=isinstance(command, c.Examine),
            rev1=not rev2(session),
        )
        try:
            answer = await box.open(session, command)
        except BaseException:
            await store.run(folder.close)
            raise
        session.data["imap.mailbox"] = box
        path = getattr(folder, "path", None)
        if self.watch and isinstance(path, str):
            try:
                session.data["imap.watch"] = folder_watcher().watch(path, session.wake)
            except OSError:
                log.warning("cannot watch %s", path)
        return Complete(code=answer.code, selected=box.view)

    cmd_examine = cmd_select

    async def cmd_close(self, session: IMAPSession, command: c.Close) -> Complete:
        """CLOSE (RFC 9051 §6.4.1): expunge quietly, unselect."""
        await self._unselect(session, expunge=True)
        return Complete()

    async def cmd_unselect(self, session: IMAPSession, command: c.Unselect) -> Complete:
        """UNSELECT (RFC 3691): unselect without expunging."""
        await self._unselect(session, expunge=False)
        return Complete()

    def _box(self, session: IMAPSession) -> OpenMailbox:
        box = self.mailbox(session)
        assert box is not None, "the core lets selected-state commands through only"
        return box

    async def cmd_fetch(self, session: IMAPSession, command: c.Fetch) -> Complete:
        """FETCH (see ``OpenMailbox.fetch``)."""
        return await self._box(session).fetch(session, command)

    async def cmd_store(self, session: IMAPSession, command: c.Store) -> Complete:
        """STORE (see ``OpenMailbox.store_flags``)."""
        return await self._box(session).store_flags(session, command)

    async def cmd_search(self, session: IMAPSession, command: c.Search) -> Complete:
        """SEARCH (see ``OpenMailbox.search``)."""
        return await self._box(session).search(session, command)

    async def cmd_copy(self, session: IMAPSession, command: c.Copy) -> Complete:
        """COPY (see ``OpenMailbox.copy``)."""
        return await self._box(session).copy(session, command, _normal(command.mailbox))

    async def cmd_move(self, session: IMAPSession, command: c.Move) -> Complete:
        """MOVE (RFC 6851, see ``OpenMailbox.copy``)."""
        return await self._box(session).copy(session, command, _normal(command.mailbox))

    async def cmd_expunge(self, session: IMAPSession, command: c.Expunge) -> Complete:
        """EXPUNGE and UID EXPUNGE (see ``OpenMailbox.expunge``)."""
        return await self._box(session).expunge(session, command)

    # --- APPEND ----------------------------------------------------------------------

    async def on_append_requested(
        self, session: IMAPSession, event: AppendRequested
    ) -> Continue | Complete:
        """Refuse before the octets come: a missing mailbox (``TRYCREATE``), a message
        over the APPENDLIMIT (``TOOBIG``, RFC 7889) or the quota (``OVERQUOTA``)."""
        if event.mailbox is None:
            return Continue()
        name = _normal(event.mailbox)
        store = await self.store_of(session)
        try:
            await store.run(store.status, name)
            limit = store.append_limit(name)
            if limit is not None and event.size > limit:
                return Complete(status="NO", code="TOOBIG", text="Message too big")
            await store.run(store.check_room, name, event.size)
        except FolderNotFoundError:
            return Complete(status="NO", code="TRYCREATE", text="No such mailbox")
        except QuotaExceededError:
            return Complete(status="NO", code="OVERQUOTA", text="Over quota")
        except StoreError:
            return Complete(status="NO", code="CANNOT", text="Cannot append there")
        return Continue()

    def _spools(self, session: IMAPSession) -> dict[int, IO[bytes]]:
        spools: dict[int, IO[bytes]] = session.data.setdefault("imap.spools", {})
        return spools

    async def on_append_start(self, session: IMAPSession, event: AppendStart) -> None:
        """Spool the message (flags and date come with the command, after it)."""
        spools = self._spools(session)
        old = spools.pop(event.index, None)
        if old is not None:
            old.close()
        spools[event.index] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115

    async def on_append_chunk(self, session: IMAPSession, event: AppendChunk) -> None:
        """Write to the spool (in the executor once it is on disk)."""
        spool = self._spools(session).get(event.index)
        if spool is None:
            return
        store = await self.store_of(session)
        try:
            await store.run(spool.write, event.data)
        except OSError:
            log.exception("%s: APPEND spool failed", session.peer)
            self._spools(session).pop(event.index, None)
            spool.close()  # the command is then refused: never a cut message kept

    async def cmd_append(self, session: IMAPSession, command: c.Append) -> Complete:
        """APPEND (RFC 9051 §6.3.12; MULTIAPPEND's several messages in turn) with
        APPENDUID (RFC 4315 §3)."""
        spools = self._spools(session)
        try:
            return await self._append(session, command, spools)
        finally:
            for spool in spools.values():
                spool.close()
            spools.clear()

    async def _append(
        self, session: IMAPSession, command: c.Append, spools: dict[int, IO[bytes]]
    ) -> Complete:
        name = _normal(command.mailbox)
        store = await self.store_of(session)
        try:
            folder = await store.run(store.folder, name)
        except FolderNotFoundError:
            return Complete(status="NO", code="TRYCREATE", text="No such mailbox")
        uids: list[int] = []
        uidvalidity = 0
        try:
            for message in command.messages:
                data = message.data
                flags = [f for f in message.flags if f.upper() != "\\RECENT"]
                if isinstance(data, Streamed):
                    spool = spools.get(data.index)
                    if spool is None:
                        return Complete(status="NO", text="Message lost")
                    result = await store.run(_append_spool, folder, spool, flags,
                                             message.internal_date)  # fmt: skip
                else:
                    result = await store.run(
                        folder.append_bytes, data, flags=flags, internaldate=message.internal_date
                    )
                uidvalidity = result.uidvalidity
                if result.uid is not None:
                    uids.append(result.uid)
        except MessageTooBigError:
            return Complete(status="NO", code="TOOBIG", text="Message too big")
        except QuotaExceededError:
            return Complete(status="NO", code="OVERQUOTA", text="Over quota")
        except ValueError as exc:
            return Complete(status="BAD", text=f"Invalid flag or date: {exc}"[:200])
        finally:
            await store.run(folder.close)
        box = self.mailbox(session)
        if box is not None and box.name == name:
            await box.sync()
        if uids and len(uids) == len(command.messages):
            return Complete(code=f"APPENDUID {uidvalidity} {SequenceSet.from_numbers(uids)}")
        return Complete()


def _append_spool(folder: Any, spool: IO[bytes], flags: list[str], date: Any) -> Any:
    spool.seek(0)
    writer = folder.append(flags=flags, internaldate=date)
    try:
        while chunk := spool.read(65536):
            writer.write(chunk)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


def store_imap_server(
    users: Credentials,
    stores: StoreResolver | Callable[[str], Awaitable[Store]],
    *,
    config: ServerConfig | None = None,
    watch: bool = True,
    **options: Any,
) -> IMAPServer:
    """An ``IMAPServer`` serving each user's store with a :class:`StoreIMAPHandler`
    (``options`` are ``IMAPServer``'s: ``ssl_context``, ``implicit_tls``,
    ``state_timeouts``, ``limits``...); ``config`` defaults to :func:`imap_config`.
    Start it with ``await server.start(host, port)``."""
    handler = StoreIMAPHandler(users, stores, watch=watch)
    return IMAPServer(handler, config if config is not None else imap_config(), **options)
