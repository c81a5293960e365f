"""Linux ``inotify(7)`` through ``ctypes``: no new dependency, no thread.

:class:`Inotify` is one non-blocking inotify descriptor: :meth:`Inotify.add` and
:meth:`Inotify.remove` manage watches, :meth:`Inotify.read` returns the events queued
so far (nothing when there are none: it never blocks), parsed from the kernel's
``struct inotify_event`` records. An event loop waits for the descriptor to become
readable (``loop.add_reader(inotify.fileno(), ...)``).

:func:`available` says whether this system has inotify at all (Linux with a C library
that exports ``inotify_init1``); elsewhere the watcher polls.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
import sys
from dataclasses import dataclass

__all__ = [
    "IN_ATTRIB",
    "IN_CLOSE_WRITE",
    "IN_CREATE",
    "IN_DELETE",
    "IN_DELETE_SELF",
    "IN_IGNORED",
    "IN_MODIFY",
    "IN_MOVED_FROM",
    "IN_MOVED_TO",
    "IN_MOVE_SELF",
    "IN_ONLYDIR",
    "IN_Q_OVERFLOW",
    "Inotify",
    "InotifyEvent",
    "available",
]

# <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)

_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len
READ_SIZE = 64 * 1024
"""Octets read from the descriptor at a time (many events: each is 16 octets and its
name)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InotifyEvent:
    """One ``struct inotify_event``."""

    wd: int
    """The watch it belongs to (``-1`` for a queue overflow)."""
    mask: int
    """What happened (``IN_*`` bits)."""
    cookie: int
    """Pairs an ``IN_MOVED_FROM`` with its ``IN_MOVED_TO``."""
    name: str
    """The entry's name inside a watched directory (empty for the watched file
    itself); undecodable octets are kept as surrogate escapes."""


_libc: ctypes.CDLL | None = None
_checked = False


def _load() -> ctypes.CDLL | None:
    global _libc, _checked
    if _checked:
        return _libc
    _checked = True
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        init = libc.inotify_init1
        add = libc.inotify_add_watch
        rm = libc.inotify_rm_watch
    except (OSError, AttributeError):
        return None
    init.argtypes = [ctypes.c_int]
    init.restype = ctypes.c_int
    add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    add.restype = ctypes.c_int
    rm.argtypes = [ctypes.c_int, ctypes.c_int]
    rm.restype = ctypes.c_int
    _libc = libc
    return libc


def available() -> bool:
    """inotify can be used here."""
    return _load() is not None


def _error(what: str, path: str | None = None) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}", path)


def parse_events(data: bytes) -> list[InotifyEvent]:
    """The events in ``data``, which holds whole ``struct inotify_event`` records (as a
    read of an inotify descriptor returns them); a truncated last record is dropped."""
    events: list[InotifyEvent] = []
    offset = 0
    size = _HEADER.size
    end = len(data)
    while offset + size <= end:
        wd, mask, cookie, length = _HEADER.unpack_from(data, offset)
        offset += size
        if offset + length > end:
            break
        raw = data[offset : offset + length].rstrip(b"\0")
        offset += length
        events.append(InotifyEvent(wd=wd, mask=mask, cookie=cookie, name=os.fsdecode(raw)))
    return events


class Inotify:
    """One non-blocking, close-on-exec inotify descriptor.

    Raises :exc:`OSError` when inotify is not available or the per-user limit of
    instances is reached."""

    def __init__(self) -> None:
        libc = _load()
        if libc is None:
            raise OSError(errno.ENOSYS, "inotify is not available here")
        self._libc = libc
        fd: int = int(libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
        if fd < 0:
            raise _error("inotify_init1")
        self._fd = fd

    def fileno(self) -> int:
        """The descriptor (``-1`` once closed)."""
        return self._fd

    @property
    def closed(self) -> bool:
        """The descriptor was closed."""
        return self._fd < 0

    def add(self, path: str, mask: int) -> int:
        """Watch ``path`` for the ``IN_*`` events in ``mask``; returns the watch
        descriptor (the same one again for a path already watched, whose mask is then
        replaced). :exc:`OSError` if ``path`` cannot be watched (missing, or the
        per-user limit of watches is reached)."""
        wd = int(self._libc.inotify_add_watch(self._fd, os.fsencode(path), mask))
        if wd < 0:
            raise _error("inotify_add_watch", path)
        return wd

    def remove(self, wd: int) -> None:
        """Stop watching ``wd`` (nothing if it is gone already: its file was
        removed)."""
        if self._fd >= 0:
            self._libc.inotify_rm_watch(self._fd, wd)

    def read(self, max_reads: int = 16) -> list[InotifyEvent]:
        """The events queued now, from at most ``max_reads`` reads of
        :data:`READ_SIZE` octets (a bound on one call's work); an empty list when there
        are none. Never blocks."""
        events: list[InotifyEvent] = []
        for _ in range(max_reads):
            try:
                data = os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
            if not data:  # pragma: no cover - not for inotify
                break
            events.extend(parse_events(data))
        return events

    def close(self) -> None:
        """Close the descriptor (its watches go with it). Safe to call twice."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> Inotify:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
