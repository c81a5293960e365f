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

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from mailagents import sasl
from mailagents.agents._imap_append import AppendCommands
from mailagents.agents._imap_folders import normal_name
from mailagents.agents._imap_mailbox import OpenMailbox, rev2
from mailagents.aio._watching import FolderWatch, folder_watcher
from mailagents.aio.imap import IMAPServer, IMAPSession
from mailagents.imap import commands as c
from mailagents.imap._config import DEFAULT_EXTENSIONS, ServerConfig
from mailagents.imap._events import Complete
from mailagents.imap._state import State
from mailagents.store import (
    FolderExistsError,
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
"""What the store-backed server announces besides the core's own capabilities
(``UTF8=ACCEPT`` too with ``imap_config(utf8_accept=True)``)."""

_GONE = "Selected mailbox was deleted or renamed, closing connection"


def imap_config(*, utf8_accept: bool = False, **options: Any) -> ServerConfig:
    """A ``ServerConfig`` for :class:`StoreIMAPHandler`: its extensions,
    ``confirm_append`` so that an APPEND into a missing mailbox or over a limit is
    refused before the message comes (RFC 9051 §6.3.12), and ``poll_commands`` so that
    NOOP and CHECK read the store's changes first (RFC 9051 §6.1.2).

    ``utf8_accept`` announces ``UTF8=ACCEPT`` (RFC 6855, RFC 9755): clients that
    ENABLE it get UTF-8 mailbox names and strings; but a client that does not (mbsync
    1.4, and any IMAP4rev1 client that never heard of it) then has every APPEND of a
    message with 8-bit octets in its header refused with NO (RFC 9755 §4), where
    without the announcement it is stored as it comes. Off by default for that reason;
    IMAP4rev2 clients have all of it either way."""
    extensions = (*IMAP_EXTENSIONS, "UTF8=ACCEPT") if utf8_accept else IMAP_EXTENSIONS
    options.setdefault("extensions", tuple(dict.fromkeys(extensions)))
    options.setdefault("confirm_append", True)
    options.setdefault("poll_commands", True)
    return ServerConfig(**options)


WAKE_DELAY = 0.05
"""Seconds a session between commands waits, once woken by a change of its folder,
before reading it (see :meth:`StoreIMAPHandler.on_wake`); IDLE is woken at once."""


def _wake_due(session: IMAPSession) -> None:
    """The delayed wake-up of a session between commands (on the loop)."""
    data = session.data
    data["imap.wake_timer"] = None
    if "imap.mailbox" in data:
        data["imap.wake_due"] = True
        session.wake()


class Credentials(Protocol):
    """What logs users in: ``mailagents.userdb.UserStore`` and the like."""

    def answer_async(self, request: sasl.NeedCredentials) -> Awaitable[sasl.CredentialsAnswer]:
        """The answer to the SASL request."""
        ...


class StoreIMAPHandler(AppendCommands):
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
        """The selected folder changed: tell the view, in IDLE at once; between
        commands after ``WAKE_DELAY`` (50 ms), and only if no read of the folder began
        since (the session's own STORE, EXPUNGE or APPEND wakes it too, through the
        hub and again through inotify, and its next command's read covers it)."""
        box = self.mailbox(session)
        if box is None:
            return
        data = session.data
        due = data.pop("imap.wake_due", False)
        if session.core.state is State.IDLE_SELECTED:
            await self._sync(session, box)
            return
        loop = asyncio.get_running_loop()
        if not due:
            data["imap.woken"] = loop.time()
            if data.get("imap.wake_timer") is None:
                data["imap.wake_timer"] = loop.call_later(WAKE_DELAY, _wake_due, session)
            return
        if data.get("imap.synced", float("-inf")) < data["imap.woken"]:
            await self._sync(session, box)

    async def on_idle(self, session: IMAPSession, idling: bool) -> None:
        """IDLE began: what changed since the last command goes out at once (the
        watch tells the rest as it happens)."""
        box = self.mailbox(session)
        if idling and box is not None and await self._sync(session, box):
            session.core.refresh()

    async def on_close(self, session: IMAPSession) -> None:
        """Release the selected folder, the watch and the spool files."""
        timer: asyncio.TimerHandle | None = session.data.pop("imap.wake_timer", None)
        if timer is not None:
            timer.cancel()
        await self._unselect(session, expunge=False)
        for spool in session.data.pop("imap.spools", {}).values():
            spool.close()

    async def on_command(self, session: IMAPSession, command: c.Command) -> Complete:
        """Dispatch to ``cmd_<verb>``; store errors become NO with a response code."""
        box = self.mailbox(session)
        selecting = isinstance(command, (c.Select, c.Examine))
        if box is not None and not selecting and not await self._sync(session, box):
            return Complete(status="NO", text=_GONE)  # not sent: the session ended
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

    async def _sync(self, session: IMAPSession, box: OpenMailbox) -> bool:
        """Read the selected folder's changes; False when the folder is gone (deleted
        or renamed by another session or program): the session then ends with
        ``* BYE``, as RFC 2180 §3 allows (the client can neither be told that every
        message went nor go on in a mailbox that no longer exists; a BYE closes the
        connection at once, RFC 9051 §7.1.5)."""
        session.data["imap.synced"] = asyncio.get_running_loop().time()
        try:
            await box.sync()
        except FolderNotFoundError:
            log.info("%s: the selected folder %r is gone", session.peer, box.name)
            session.end(_GONE)
            return False
        return True

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
        name = normal_name(command.mailbox)
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

    async def cmd_noop(self, session: IMAPSession, command: c.Noop | c.Check) -> Complete:
        """NOOP and CHECK in the selected state (``poll_commands``): the folder was read
        again before the dispatch, so what changed goes out with the OK (RFC 9051
        §6.1.2: a client polls for new mail and expunges with NOOP)."""
        return Complete()

    cmd_check = cmd_noop

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
        return await self._box(session).copy(session, command, normal_name(command.mailbox))

    async def cmd_move(self, session: IMAPSession, command: c.Move) -> Complete:
        """MOVE (RFC 6851, see ``OpenMailbox.copy``)."""
        return await self._box(session).copy(session, command, normal_name(command.mailbox))

    async def cmd_expunge(self, session: IMAPSession, command: c.Expunge) -> Complete:
        """EXPUNGE and UID EXPUNGE (see ``OpenMailbox.expunge``)."""
        return await self._box(session).expunge(session, command)


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
