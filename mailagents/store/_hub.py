"""The in-process change hub: every write through any store handle (a delivery, an
APPEND, a flag change, an expunge) wakes whoever watches that folder in this process,
whichever agent or ``Store`` object made the change.

A folder is known by its key, :func:`folder_key`: the real path of its directory
(Maildir) or of its file (mbox), so that two handles that reached one folder by
different paths (a symbolic link, a relative root) meet under one key.

The hub is plain, thread-safe Python: stores run in executor threads and call
:meth:`ChangeHub.notify` there; the callbacks run in that thread too, so a callback
must be quick and must not block (the asyncio side hands the news to its loop with
``loop.call_soon_threadsafe``, see ``mailagents.aio._watching``). Nothing here imports
asyncio.

Changes made by other programs (Postfix, Dovecot, a hand ``mv`` into ``new/``) are not
seen here: the watcher (:mod:`mailagents.store._watch`) finds them and calls
:meth:`ChangeHub.notify` itself.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from mailagents.store._model import AppendResult, AppendWriter

__all__ = [
    "HUB",
    "ChangeHub",
    "NotifyingWriter",
    "Subscription",
    "folder_key",
    "notified",
    "notify",
    "subscribe",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

Callback = Callable[[str], object]
"""What a subscriber is called with: the folder's key."""

# Keys are cached per path string given (realpath costs a system call per path
# component); the cache is bounded and emptied when full.
_KEY_CACHE_MAX = 4096


def folder_key(path: str | os.PathLike[str]) -> str:
    """The hub's key of the folder at ``path``: its real path (symbolic links resolved,
    absolute, normalised). The folder need not exist."""
    return os.path.realpath(os.fspath(path))


class Subscription:
    """One subscriber's interest in one folder; :meth:`close` ends it (safe to call
    twice). Also a context manager that closes on exit."""

    __slots__ = ("_callback", "_closed", "_hub", "key")

    def __init__(self, hub: ChangeHub, key: str, callback: Callback) -> None:
        self._hub = hub
        self._callback = callback
        self._closed = False
        self.key = key
        """The folder's key (see :func:`folder_key`)."""

    @property
    def closed(self) -> bool:
        """The subscription was closed."""
        return self._closed

    def close(self) -> None:
        """Stop being called for this folder."""
        if not self._closed:
            self._closed = True
            self._hub._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Subscription {self.key!r} {state}>"


class ChangeHub:
    """Subscribers by folder key; :meth:`notify` calls every subscriber of a folder.

    Thread-safe: :meth:`subscribe`, :meth:`notify` and :meth:`Subscription.close` may be
    called from any thread. Callbacks run in the thread that notified, outside the
    hub's lock (a callback may subscribe or close); an exception from one is logged and
    the others are still called. A callback closed while a notification is under way
    may still be called once by it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, tuple[Subscription, ...]] = {}
        self._keys: dict[str, str] = {}

    def key(self, path: str | os.PathLike[str]) -> str:
        """:func:`folder_key` of ``path``, cached per path string."""
        name = os.fspath(path)
        key = self._keys.get(name)
        if key is None:
            key = folder_key(name)
            keys = self._keys
            if len(keys) >= _KEY_CACHE_MAX:
                keys.clear()
            keys[name] = key
        return key

    def subscribe(self, path: str | os.PathLike[str], callback: Callback) -> Subscription:
        """Call ``callback(key)`` after every change of the folder at ``path`` (a Maildir
        folder's directory or an mbox file) until the returned
        :class:`Subscription` is closed."""
        key = folder_key(path)
        sub = Subscription(self, key, callback)
        with self._lock:
            self._subscribers[key] = (*self._subscribers.get(key, ()), sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subscribers.get(sub.key, ())
            rest = tuple(s for s in subs if s is not sub)
            if rest:
                self._subscribers[sub.key] = rest
            else:
                self._subscribers.pop(sub.key, None)

    def watched(self, path: str | os.PathLike[str]) -> bool:
        """Somebody subscribed to the folder at ``path``."""
        return self.key(path) in self._subscribers

    def subscribers(self, path: str | os.PathLike[str]) -> int:
        """How many subscriptions the folder at ``path`` has."""
        return len(self._subscribers.get(self.key(path), ()))

    def notify(self, path: str | os.PathLike[str]) -> int:
        """The folder at ``path`` changed: call its subscribers. Returns how many were
        called. Cheap when nobody watches anything (no system call)."""
        if not self._subscribers:
            return 0
        key = self.key(path)
        return self.notify_key(key)

    def notify_key(self, key: str) -> int:
        """:meth:`notify` for a key already made with :func:`folder_key`."""
        with self._lock:
            subs = self._subscribers.get(key, ())
        called = 0
        for sub in subs:
            if sub.closed:
                continue
            called += 1
            try:
                sub._callback(key)
            except Exception:
                log.exception("change subscriber for %s failed", key)
        return called


HUB = ChangeHub()
"""The process's hub: the stores notify it, sessions subscribe to it."""


def subscribe(path: str | os.PathLike[str], callback: Callback) -> Subscription:
    """:meth:`ChangeHub.subscribe` on :data:`HUB`."""
    return HUB.subscribe(path, callback)


def notify(path: str | os.PathLike[str]) -> int:
    """:meth:`ChangeHub.notify` on :data:`HUB`: what the stores call after a write."""
    return HUB.notify(path)


def notified(result: _T, path: str | os.PathLike[str]) -> _T:
    """:func:`notify` about ``path``, then return ``result`` (for a store method that
    ends with ``return write(...)``)."""
    HUB.notify(path)
    return result


class NotifyingWriter(AppendWriter):
    """An ``AppendWriter`` that notifies the hub about ``path`` once its message has
    been committed (the store's own writer does the work)."""

    def __init__(self, writer: AppendWriter, path: str, hub: ChangeHub | None = None) -> None:
        self._writer = writer
        self._path = path
        self._hub = hub if hub is not None else HUB

    def write(self, chunk: bytes) -> None:
        """Add the next piece of the message."""
        self._writer.write(chunk)

    def commit(self) -> AppendResult:
        """Commit through the store's writer, then notify the hub."""
        first = self._writer.result is None
        result = self._writer.commit()
        self.result = result
        if first:
            self._hub.notify(self._path)
        return result

    def abort(self) -> None:
        """Throw the partial message away (nothing is notified)."""
        self._writer.abort()

    def __getattr__(self, name: str) -> Any:
        # Anything else the store's writer offers (its own attributes).
        if name == "_writer":
            raise AttributeError(name)
        return getattr(self._writer, name)
