"""The message cache of one folder handle (:class:`~mailagents.store._cache.FolderCache`),
opened on first use under the handle's UIDVALIDITY and kept in step with the handle:
what it expunges or sees expunged is dropped, the entries of messages that other
programs expunged are compacted away now and then, and it is closed with the handle.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Collection, Iterable

from mailagents.store._cache import FolderCache

__all__ = ["CacheSlot", "move_cache_files", "remove_cache_files"]

log = logging.getLogger(__name__)

_SIDE_SUFFIXES = ("", ".lock", ".tmp")
COMPACT_EVERY = 64
"""A handle checks its cache for entries of messages no longer in the folder at the
first refresh after opening the cache, then at every this many refreshes."""


def remove_cache_files(path: str) -> None:
    """Remove a cache file and its ``.lock`` and ``.tmp`` files (a folder deleted)."""
    for suffix in _SIDE_SUFFIXES:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            os.unlink(path + suffix)


def move_cache_files(old: str, new: str) -> None:
    """Move a cache file to ``new`` (a folder renamed; UIDs and UIDVALIDITY are kept),
    removing its lock and temporary file, and whatever lay at ``new`` before."""
    remove_cache_files(new)
    with contextlib.suppress(FileNotFoundError):
        os.rename(old, new)
    for suffix in _SIDE_SUFFIXES[1:]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(old + suffix)


class CacheSlot:
    """The lazily opened cache at ``path`` of one folder handle; ``enabled=False``
    (a delivery handle) never opens one. Thread-safe."""

    def __init__(self, path: str, *, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled
        self._lock = threading.Lock()
        self._cache: FolderCache | None = None
        self._refreshes = 0
        self._closed = False

    def get(self, uidvalidity: int) -> FolderCache | None:
        """The cache under ``uidvalidity``, opened now if need be; a cache of another
        UIDVALIDITY is closed and a new one opened (which replaces the file at its
        first write). ``None`` when disabled, closed, or without a UIDVALIDITY."""
        if not self.enabled or uidvalidity <= 0:
            return None
        with self._lock:
            if self._closed:
                return None
            old = self._cache
            if old is not None and old.uidvalidity == uidvalidity:
                return old
            self._cache = cache = FolderCache(self.path, uidvalidity)
            self._refreshes = 0
        if old is not None:
            self._close(old)
        return cache

    def current(self) -> FolderCache | None:
        """The cache if one is open."""
        return self._cache

    def drop(self, uids: Collection[int]) -> None:
        """Drop the entries of expunged ``uids`` (when a cache is open)."""
        cache = self._cache
        if cache is not None and uids:
            with contextlib.suppress(ValueError):  # closed meanwhile
                cache.drop(uids)

    def refreshed(self, uidvalidity: int, uids: Iterable[int], expunged: Collection[int]) -> None:
        """After a refresh of the handle: drop what it saw expunged, and now and then
        compact the file to the folder's ``uids`` when it holds entries of others
        (messages expunged by other programs, or by handles of other processes)."""
        cache = self._cache
        if cache is None:
            return
        if cache.uidvalidity != uidvalidity:
            self.get(uidvalidity)
            return
        self.drop(expunged)
        with self._lock:
            due = self._refreshes % COMPACT_EVERY == 0
            self._refreshes += 1
        if not due:
            return
        keep = frozenset(uids)
        try:
            if cache.cached_uids() - keep:
                cache.compact(keep=keep)
        except (OSError, ValueError) as exc:  # a cache: never worth failing a refresh
            log.debug("cache %s: not compacted: %s", self.path, exc)

    def close(self) -> None:
        """Close the cache (its queued writes are written). Idempotent."""
        with self._lock:
            self._closed = True
            cache, self._cache = self._cache, None
        if cache is not None:
            self._close(cache)

    def _close(self, cache: FolderCache) -> None:
        try:
            cache.close()
        except OSError as exc:
            log.debug("cache %s: not flushed at close: %s", self.path, exc)
