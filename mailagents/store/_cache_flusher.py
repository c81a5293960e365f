"""The process's one writer thread for the folder caches (see ``_cache``): a cache
with queued writes is scheduled, and flushed a moment later (so writes come in
batches), off the threads that serve FETCH and deliver mail. The thread does not
survive a fork; the child starts its own when it first needs one."""

from __future__ import annotations

import logging
import os
import threading
from typing import Protocol

__all__ = ["Flushable", "Flusher", "flusher"]

log = logging.getLogger(__name__)

_FLUSH_DELAY = 0.02


class Flushable(Protocol):
    """What the writer thread needs of a cache."""

    path: str

    def flush(self) -> None:
        """Write what is queued (a closed cache does nothing)."""


class Flusher:
    """The process's one writer thread: flushes the caches that have queued writes,
    a moment after the first one was queued (so writes come in batches)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._dirty: dict[int, Flushable] = {}
        self._thread: threading.Thread | None = None

    def schedule(self, cache: Flushable) -> None:
        """Flush ``cache`` soon (the thread starts on first use)."""
        with self._cond:
            self._dirty[id(cache)] = cache
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="mailagents-cache-writer", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def forget(self, cache: Flushable) -> None:
        """Do not flush ``cache`` (it was closed)."""
        with self._cond:
            self._dirty.pop(id(cache), None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._dirty:
                    self._cond.wait()
            threading.Event().wait(_FLUSH_DELAY)
            with self._cond:
                dirty, self._dirty = self._dirty, {}
            for cache in dirty.values():
                try:
                    cache.flush()
                except Exception:  # a cache is never worth a crash: it is recomputed
                    log.exception("cache %s: write failed", cache.path)


_state: list[Flusher] = []
_state_lock = threading.Lock()


def flusher() -> Flusher:
    """The process's writer (made on first use, and again in a forked child)."""
    with _state_lock:
        if not _state:
            _state.append(Flusher())
        return _state[0]


def _after_fork() -> None:  # the writer thread did not survive the fork
    global _state_lock
    _state.clear()
    _state_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)
