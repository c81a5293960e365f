"""From an identity or an address to its :class:`~mailagents.store.Store`: the one rule
every agent uses (the MSA's and MDA's deliveries, the POP3 and IMAP MAAs)."""

from __future__ import annotations

import asyncio
import collections
import os
import re
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from mailagents.store._model import Store
from mailagents.store.maildir import MaildirStore
from mailagents.store.mbox import MboxStore

__all__ = ["MailboxFormat", "StoreResolver", "safe_name"]

MailboxFormat = Literal["maildir", "mbox"]

_UNSAFE = re.compile(r"[^\w@.+=-]")


def safe_name(text: str) -> str:
    """``text`` as one safe path component: any character other than letters, digits
    and ``@.+=_-`` written ``%XX`` (its UTF-8 bytes), a leading dot as ``%2E``, and an
    empty text as ``%00``; so that no address can name a path outside its own folder."""
    safe = _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)
    if safe.startswith("."):
        safe = "%2E" + safe[1:]
    return safe or "%00"


class StoreResolver:
    """Each user's :class:`~mailagents.store.Store`, from a path template or a callable.

    ``mailboxes`` is a path template or a callable from an identity to its store. In
    the template, ``{user}`` is the identity (``alice@example.test``, or ``alice``
    without a domain), ``{local}`` and ``{domain}`` its parts (``{domain}`` empty
    without one); all in lower case and passed through :func:`safe_name`, so that no
    identity names a path outside its own folder. ``format`` says what the template
    names: a Maildir (``"maildir"``) or the root of an mbox store (``"mbox"``); stores
    are created when missing, as a delivery would.

    The stores made from the template share one executor of ``max_workers`` threads
    (instead of one pool per user), and are remembered: the ``max_stores`` used last,
    and any other still in use somewhere (so that two objects never serve one path in
    this process). :meth:`close` closes them and stops the executor. A callable's
    stores are its own business: they are neither remembered nor closed here.
    """

    def __init__(
        self,
        mailboxes: str | os.PathLike[str] | Callable[[str], Store],
        *,
        format: MailboxFormat = "maildir",
        fsync: bool = True,
        max_stores: int = 1024,
        max_workers: int = 16,
    ) -> None:
        if format not in ("maildir", "mbox"):
            raise ValueError(f"unknown mailbox format {format!r}")
        if max_stores < 1 or max_workers < 1:
            raise ValueError("max_stores and max_workers must be at least 1")
        self.mailboxes: str | Callable[[str], Store] = (
            mailboxes if callable(mailboxes) else os.fspath(mailboxes)
        )
        """The path template, or the callable giving each identity's store."""
        self.format: MailboxFormat = format
        """What the template names: ``"maildir"`` or ``"mbox"``."""
        self.fsync = fsync
        """Whether the stores made from the template fsync (off only for tests)."""
        self.max_stores = max_stores
        """How many stores, the last used, are kept open when nothing else uses them."""
        self.max_workers = max_workers
        """Threads of the executor the template's stores share."""
        self._lock = threading.Lock()
        self._recent: collections.OrderedDict[str, Store] = collections.OrderedDict()
        self._live: weakref.WeakValueDictionary[str, Store] = weakref.WeakValueDictionary()
        self._executor: ThreadPoolExecutor | None = None
        self._paths: dict[str, str] = {}
        self._cache_paths = isinstance(self.mailboxes, str) and os.path.isabs(self.mailboxes)

    @property
    def is_template(self) -> bool:
        """Whether :attr:`mailboxes` is a path template (not a callable)."""
        return isinstance(self.mailboxes, str)

    def path(self, identity: str) -> str:
        """The absolute path the template gives for ``identity`` (an address or a bare
        user name)."""
        template = self.mailboxes
        if not isinstance(template, str):
            raise TypeError("mailboxes is a callable, not a path template")
        path = self._paths.get(identity)
        if path is not None:
            return path
        local, at, domain = identity.lower().rpartition("@")
        if at and local:
            local, domain = safe_name(local), safe_name(domain)
            user = f"{local}@{domain}"
        else:
            local = user = safe_name(identity.lower())
            domain = ""
        path = os.path.abspath(template.format(user=user, local=local, domain=domain))
        if self._cache_paths:  # a relative template depends on the working directory
            with self._lock:
                if len(self._paths) >= 4 * self.max_stores:
                    self._paths.clear()
                self._paths[identity] = path
        return path

    def _shared_executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.max_workers, thread_name_prefix="mailagents-store"
                )
            return self._executor

    def _remember(self, path: str, store: Store) -> None:
        # Called with the lock held.
        self._recent[path] = store
        self._recent.move_to_end(path)
        while len(self._recent) > self.max_stores:
            self._recent.popitem(last=False)  # still in _live while someone uses it

    def _open_already(self, path: str) -> Store | None:
        with self._lock:
            found = self._live.get(path)
            if found is not None:
                self._remember(path, found)
            return found

    def store_at(self, path: str) -> Store:
        """The template's store at ``path`` (absolute), made once. Blocks (it may
        create directories)."""
        found = self._open_already(path)
        if found is not None:
            return found
        executor = self._shared_executor()
        made: Store
        if self.format == "mbox":
            made = MboxStore(path, fsync=self.fsync, executor=executor)
        else:
            made = MaildirStore(path, fsync=self.fsync, executor=executor)
        with self._lock:
            found = self._live.get(path)
            if found is None:
                self._live[path] = found = made
            self._remember(path, found)
        if found is not made:
            made.close()
        return found

    def open(self, identity: str) -> Store:
        """The store of ``identity``. Blocks."""
        mailboxes = self.mailboxes
        if not isinstance(mailboxes, str):
            return mailboxes(identity)
        return self.store_at(self.path(identity))

    async def store_for(self, identity: str) -> Store:
        """The store of ``identity``, from async code: the callable's answer, or the
        template's store (made off the event loop when it is not open yet)."""
        mailboxes = self.mailboxes
        if not isinstance(mailboxes, str):
            return mailboxes(identity)
        path = self.path(identity)
        found = self._open_already(path)
        if found is not None:
            return found
        return await asyncio.to_thread(self.store_at, path)

    def open_stores(self) -> int:
        """How many of the template's stores are open (remembered or in use)."""
        with self._lock:
            return len(self._live)

    def close(self) -> None:
        """Close every store made from the template and stop their executor (waiting
        for the work running in it)."""
        with self._lock:
            stores = list(self._live.values())
            self._live.clear()
            self._recent.clear()
            executor, self._executor = self._executor, None
        for store in stores:
            store.close()
        if executor is not None:
            executor.shutdown(wait=True)
