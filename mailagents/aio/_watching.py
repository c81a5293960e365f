"""Folder change notification on an event loop: the asyncio driver of the process's
watcher (:mod:`mailagents.store._watch`) and the sessions' side of the change hub
(:mod:`mailagents.store._hub`).

A session that wants to hear about its folder (an IMAP session in IDLE, or one that
sends unsolicited EXISTS/EXPUNGE between commands) calls
:meth:`FolderWatcher.watch` with the folder's path and a callback (typically the
session's ``wake``); the returned :class:`FolderWatch` has an :class:`asyncio.Event`
too. Both fire, on the loop, after

- any write through any store handle of this process (the hub, within a loop
  iteration: the store notifies from its executor thread and the news crosses to the
  loop with ``loop.call_soon_threadsafe``, once however many writes came meanwhile);
- a change by another program, found by the process's one inotify descriptor (read
  with ``loop.add_reader``, events of :attr:`FolderWatcher.coalesce` seconds gathered
  into one notification per folder) or, without inotify, by one stat poll per watched
  folder every :attr:`FolderWatcher.poll_interval` seconds, never one per session.

The watcher's watches and its poll task exist only while some folder is watched: the
last :meth:`FolderWatch.close` of a folder drops its watches, the last of all closes
the inotify descriptor and stops the poll task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import weakref
from collections.abc import Callable
from types import TracebackType

from mailagents.store._hub import HUB, ChangeHub, Subscription
from mailagents.store._watch import MAX_FOLDERS, Watcher

__all__ = ["FolderWatch", "FolderWatcher", "folder_watcher"]

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0
"""Seconds between two stat polls of the folders inotify does not cover."""
COALESCE = 0.02
"""Seconds of inotify events gathered into one notification per folder."""


class FolderWatch:
    """One subscriber's watch of one folder, made by :meth:`FolderWatcher.watch`.

    :attr:`changed` is set (and the callback called) on the loop after each change;
    clear it, or use :meth:`wait`, which clears it. :meth:`close` ends the watch (safe
    to call twice); also an async-free context manager."""

    def __init__(
        self,
        watcher: FolderWatcher,
        key: str,
        callback: Callable[[], object] | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.key = key
        """The folder's key (its real path)."""
        self.changed = asyncio.Event()
        """Set after a change of the folder."""
        self._watcher = watcher
        self._callback = callback
        self._loop = loop
        self._scheduled = False
        self._closed = False
        self._subscription: Subscription | None = None
        self._core: Watcher | None = None  # the watcher core holding its watch

    @property
    def closed(self) -> bool:
        """The watch was closed."""
        return self._closed

    def _from_hub(self, key: str) -> None:
        # Any thread. One hop to the loop however many notifications arrive meanwhile.
        if self._scheduled or self._closed:
            return
        self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._fire)
        except RuntimeError:  # the loop is closed: nobody to tell
            self._scheduled = False

    def _fire(self) -> None:
        self._scheduled = False
        if self._closed:
            return
        self.changed.set()
        if self._callback is not None:
            try:
                self._callback()
            except Exception:
                log.exception("change callback for %s failed", self.key)

    async def wait(self) -> None:
        """Wait for the next change (or return at once if one came since the last
        wait), then clear :attr:`changed`."""
        await self.changed.wait()
        self.changed.clear()

    def close(self) -> None:
        """Stop watching."""
        if self._closed:
            return
        self._closed = True
        if self._subscription is not None:
            self._subscription.close()
        self._watcher._release(self.key, self._core)

    def __enter__(self) -> FolderWatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class FolderWatcher:
    """The process's watcher on one event loop (see :func:`folder_watcher` for the
    shared one): one inotify descriptor or one poll task for every folder watched.

    ``inotify``: ``None`` uses it where available, ``False`` always polls.
    ``poll_interval`` and ``coalesce`` are in seconds; ``max_folders`` bounds the
    folders watched at once. Made and used on the loop's thread."""

    def __init__(
        self,
        *,
        hub: ChangeHub | None = None,
        inotify: bool | None = None,
        poll_interval: float = POLL_INTERVAL,
        coalesce: float = COALESCE,
        max_folders: int = MAX_FOLDERS,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not poll_interval > 0 or not coalesce >= 0:
            raise ValueError("poll_interval must be positive, coalesce not negative")
        self.hub = hub if hub is not None else HUB
        """The hub the watches subscribe to, and that changes found on disk are told."""
        self.poll_interval = poll_interval
        """Seconds between two polls."""
        self.coalesce = coalesce
        """Seconds of inotify events gathered into one notification."""
        self.max_folders = max_folders
        """Folders watched at once, at most."""
        self._inotify = inotify
        self._given_loop = loop
        self._loop = loop  # the loop in use while something is watched
        self._core: Watcher | None = None
        self._reading: int | None = None  # the descriptor given to add_reader
        self._poller: asyncio.Task[None] | None = None
        self._found: set[str] = set()
        self._flush_handle: asyncio.TimerHandle | None = None

    @property
    def mode(self) -> str | None:
        """``"inotify"`` or ``"poll"`` while a folder is watched, else ``None``."""
        return self._core.mode if self._core is not None else None

    @property
    def folders(self) -> int:
        """Folders watched now."""
        return len(self._core) if self._core is not None else 0

    def watch(
        self, path: str | os.PathLike[str], callback: Callable[[], object] | None = None
    ) -> FolderWatch:
        """Watch the folder at ``path`` (a Maildir folder's directory or an mbox file):
        the returned :class:`FolderWatch` is set, and ``callback()`` called on the
        loop, after each change. :exc:`OSError` beyond ``max_folders``."""
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        core = self._core
        if core is None:
            core = self._core = Watcher(inotify=self._inotify, max_folders=self.max_folders)
        try:
            key = core.add(path)
        except BaseException:
            if not len(core):
                self._stop()
            raise
        watch = FolderWatch(self, key, callback, loop)
        watch._core = core
        watch._subscription = self.hub.subscribe(key, watch._from_hub)
        self._drive()
        return watch

    def _drive(self) -> None:
        """Start what finds changes on disk, as the watched folders need it."""
        core = self._core
        loop = self._loop
        if core is None or loop is None:
            return
        fd = core.fileno()
        if fd is not None and self._reading is None:
            loop.add_reader(fd, self._readable)
            self._reading = fd
        if core.polled and self._poller is None:
            self._poller = loop.create_task(self._poll())

    def _release(self, key: str, core: Watcher | None) -> None:
        if core is None or core is not self._core:
            return  # the watcher was closed since: nothing of it is left
        core.remove(key)
        if not len(core):
            self._stop()

    def _stop(self) -> None:
        core, self._core = self._core, None
        if self._reading is not None and self._loop is not None:
            with contextlib.suppress(Exception):  # the loop may be closed already
                self._loop.remove_reader(self._reading)
        self._reading = None
        # Hold no loop while idle: the shared watcher of a finished loop (kept in a
        # weak dictionary by its loop) must not keep that loop alive.
        self._loop = self._given_loop
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._found.clear()
        if core is not None:
            core.close()

    def _readable(self) -> None:
        core = self._core
        if core is None:
            return
        try:
            found = core.read_changes()
        except OSError:
            # A descriptor that keeps failing would be readable for ever: poll instead.
            log.exception("reading the inotify descriptor failed: polling the folders")
            if self._reading is not None and self._loop is not None:
                self._loop.remove_reader(self._reading)
            self._reading = None
            found = core.stop_inotify()
            self._drive()
        if not found:
            return
        self._found |= found
        if self._flush_handle is None and self._loop is not None:
            self._flush_handle = self._loop.call_later(self.coalesce, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        found, self._found = self._found, set()
        for key in found:
            self.hub.notify_key(key)

    async def _poll(self) -> None:
        try:
            while self._core is not None and self._core.polled:
                await asyncio.sleep(self.poll_interval)
                core = self._core
                if core is None:
                    break
                for key in core.poll_changes():
                    self.hub.notify_key(key)
        finally:
            if self._poller is asyncio.current_task():
                self._poller = None

    def close(self) -> None:
        """Drop every watch (the :class:`FolderWatch` objects stay closed to it)."""
        self._stop()


_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FolderWatcher] = (
    weakref.WeakKeyDictionary()
)


def folder_watcher(loop: asyncio.AbstractEventLoop | None = None) -> FolderWatcher:
    """The shared :class:`FolderWatcher` of ``loop`` (default: the running loop),
    made on first use with the defaults."""
    loop = loop if loop is not None else asyncio.get_running_loop()
    watcher = _shared.get(loop)
    if watcher is None:
        watcher = _shared[loop] = FolderWatcher()
    return watcher
