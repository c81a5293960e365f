"""A persistent per-folder cache of what IMAP FETCH, SEARCH and SORT need from a
message without reading it again: the MIME part map (``BODYSTRUCTURE``, every
``BODY[section]`` span, the ENVELOPE fields), ``References``, the RFC 5256 base subject
and the parsed Date. Dovecot's ``dovecot.index.cache`` is the model; the format is our
own (``_cache_format``).

Layout. One file per folder (the caller chooses the path: beside Maildir's
``dovecot-uidlist``, beside mbox's side index), plus ``PATH.lock`` for the writers'
lock. A header carries the folder's UIDVALIDITY; then records are only ever appended,
each with its UID, the UIDVALIDITY and a CRC-32, the latest record of a UID winning
(a tombstone record drops one). The handle keeps an index UID → offset in memory,
built by one scan of the file and extended by scanning the tail that other processes
appended since.

What is never served wrong. Every read checks the record again (framing, CRC, UID,
UIDVALIDITY) and, when the caller gives it, the message's size; anything that fails is
a miss, and a miss is recomputed from the message (:meth:`FolderCache.structure`).
A UID's message never changes within one UIDVALIDITY (RFC 9051 §2.3.1.1), so an
entry that another handle has since dropped or replaced, still served by a handle
that indexed it earlier, is still right. A
file whose header is damaged or names another UIDVALIDITY is treated as empty and
replaced by the next writer: a UIDVALIDITY change drops the whole cache. A lost file
is rebuilt on demand, one message at a time.

Concurrency. Several processes may share a folder. Writers take ``PATH.lock``
(``flock`` plus a per-path thread lock); readers take no lock. A writer appends its
records with one ``pwrite`` at the end of the file; a reader that meets a record not
whole yet (or whose CRC fails, which is what a record still being written looks like)
stops its scan there and tries again at the next miss. A writer, holding the lock,
knows nobody else is writing: a torn tail there was left by a writer that died, and is
cut off; so is everything from a damaged record on (those messages are recomputed when
asked for). Compaction writes a new file and renames it over the old one; readers
notice the new inode at their next scan, and go on reading the old file they hold
open until then.

Bounds. The file stays under ``max_size`` octets: when an append would pass it, or
when dead records (superseded or dropped) pass ``dead_fraction`` of the file, the
live records are rewritten into a new file, and if they alone pass three quarters of
the bound, the entries of the lowest UIDs (the oldest messages) are left out; an entry
larger than a quarter of the bound is never written (it is computed each time). Queued
writes are bounded too (``max_pending``; past it new entries are not queued, and will
be computed again).

Off the delivery path. Deliveries never touch the cache. :meth:`FolderCache.put` only
queues: one writer thread per process (started on first use) flushes the queues of
every cache shortly after, so a FETCH that filled the cache never waits for the disk
nor for another process's lock. Nothing is fsynced: a cache lost to a power failure is
rebuilt, and a torn one is cut off by its CRCs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Collection, Iterable
from types import TracebackType
from typing import BinaryIO

from mailagents.imap._mime import MimeLimits, MimeScanner, header_fields, unfold
from mailagents.store._cache_flusher import flusher as _flusher
from mailagents.store._cache_format import (
    DROP,
    ENTRY,
    HEADER_SIZE,
    CachedMessage,
    CacheFormatError,
    decode_entry,
    decode_header,
    encode_entry,
    encode_header,
    encode_record,
    record_at,
)
from mailagents.store._locking import FileLock

__all__ = ["CachedMessage", "FolderCache", "build_entry"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_COMPACT_MIN = 64 << 10


def build_entry(
    uid: int, chunks: Iterable[bytes], limits: MimeLimits | None = None
) -> CachedMessage:
    """Compute the cache entry of a message from its CRLF octets, fed in chunks of any
    size (the message is never held whole: only the part map and the top header, up to
    ``MimeLimits.max_header`` octets, are kept)."""
    limits = limits or MimeLimits()
    scanner = MimeScanner(limits)
    head = bytearray()
    for chunk in chunks:
        if len(head) < limits.max_header:
            head += chunk[: limits.max_header - len(head)]
        scanner.feed(chunk)
    part_map = scanner.close()
    root = part_map.root
    references: str | None = None
    for name, value in header_fields(bytes(head[: root.body_start])):
        if name == "references":
            references = unfold(value)
    return CachedMessage.of(uid, part_map, references)


def _open_existing(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except PermissionError:  # a reader that may not write: it only reads
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def _read_stream(stream: BinaryIO) -> Iterable[bytes]:
    while chunk := stream.read(_CHUNK):
        yield chunk


class FolderCache:
    """The cache of one folder under one UIDVALIDITY (see the module's docstring).

    ``path`` is the cache file; ``background=False`` leaves queued writes to
    :meth:`flush` (tests, tools). Thread-safe; every method may block on the disk, but
    only :meth:`flush`, :meth:`compact` and :meth:`close` wait for the writers' lock."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        uidvalidity: int,
        *,
        max_size: int = 64 << 20,
        dead_fraction: float = 0.5,
        max_pending: int = 4096,
        background: bool = True,
        limits: MimeLimits | None = None,
    ) -> None:
        if max_size < 4096 or not 0.0 < dead_fraction < 1.0 or max_pending < 1:
            raise ValueError("FolderCache: max_size >= 4096, 0 < dead_fraction < 1")
        self.path = os.path.abspath(os.fspath(path))
        self.uidvalidity = uidvalidity
        self.max_size = max_size
        self.dead_fraction = dead_fraction
        self.max_pending = max_pending
        self.limits = limits or MimeLimits()
        self._background = background
        self._lock = threading.RLock()
        self._writer = FileLock(self.path + ".lock")
        self._write_mutex = threading.Lock()  # one flush of this handle at a time
        self._fd: int | None = None
        self._ino: tuple[int, int] | None = None
        self._valid = False  # the open file has our header
        self._scanned = 0
        self._index: dict[int, tuple[int, int]] = {}
        self._live = 0
        self._pending: dict[int, CachedMessage | None] = {}
        self._closed = False

    # -- reading -------------------------------------------------------------------

    def get(self, uid: int, size: int | None = None) -> CachedMessage | None:
        """The cached entry of ``uid`` (``None`` on a miss). With ``size``, an entry
        for a message of another CRLF size is a miss too."""
        with self._lock:
            if uid in self._pending:
                found = self._pending[uid]
            else:
                if uid not in self._index:
                    self._scan(writer=False)
                found = self._load(uid)
        if found is None or (size is not None and found.size != size):
            return None
        return found

    def structure(
        self, uid: int, open_message: Callable[[], BinaryIO], size: int | None = None
    ) -> CachedMessage:
        """The entry of ``uid``, computed from ``open_message()`` (a stream of the
        message's CRLF octets, read once, sequentially) and queued for writing on a
        miss. Unlike :meth:`get`, whose entries read their part map on first use, the
        entry returned has a part map that reads (one that does not is recomputed)."""
        found = self.get(uid, size)
        if found is not None:
            try:
                found.part_map  # noqa: B018 - read now, so that FETCH gets one that reads
                return found
            except CacheFormatError as exc:
                log.warning("cache %s: UID %d recomputed: %s", self.path, uid, exc)
        with open_message() as stream:
            entry = build_entry(uid, _read_stream(stream), self.limits)
        self.put(entry)
        return entry

    def cached_uids(self) -> frozenset[int]:
        """The UIDs with an entry (on disk as far as scanned, or queued)."""
        with self._lock:
            self._scan(writer=False)
            uids = set(self._index)
            for uid, entry in self._pending.items():
                if entry is None:
                    uids.discard(uid)
                else:
                    uids.add(uid)
            return frozenset(uids)

    def _load(self, uid: int) -> CachedMessage | None:
        where = self._index.get(uid)
        if where is None or self._fd is None:
            return None
        start, end = where
        data = os.pread(self._fd, end - start, start)
        try:
            found = record_at(data, 0)
            if found is None:
                raise CacheFormatError("cache record cut short")
            kind, ruid, rvalidity, payload, rend = found
            if kind != ENTRY or ruid != uid or rvalidity != self.uidvalidity:
                raise CacheFormatError("cache record of another message")
            return decode_entry(uid, data[payload : rend - 4])
        except CacheFormatError as exc:
            log.debug("cache %s: UID %d not served: %s", self.path, uid, exc)
            self._forget(uid)
            return None

    def _forget(self, uid: int) -> None:
        where = self._index.pop(uid, None)
        if where is not None:
            self._live -= where[1] - where[0]

    def _reset(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._ino = None
        self._valid = False
        self._scanned = 0
        self._index.clear()
        self._live = 0

    def _scan(self, *, writer: bool) -> int:
        """Bring the index up to the file's end (or to the first record not whole or
        not valid); return the file's size. A writer cuts off what follows that
        point, since nobody else is writing."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._reset()
            return 0
        if (st.st_dev, st.st_ino) != self._ino:
            self._reset()
            try:
                fd = _open_existing(self.path)
            except FileNotFoundError:
                return 0
            fst = os.fstat(fd)
            self._fd, self._ino = fd, (fst.st_dev, fst.st_ino)
            try:
                self._valid = decode_header(os.pread(fd, HEADER_SIZE, 0)) == self.uidvalidity
            except CacheFormatError:
                self._valid = False
            self._scanned = HEADER_SIZE
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if not self._valid or size <= self._scanned:
            return size
        data = os.pread(self._fd, size - self._scanned, self._scanned)
        pos = 0
        while pos < len(data):
            try:
                found = record_at(data, pos)
            except CacheFormatError:
                found = None
            if found is None:
                break
            kind, uid, validity, _payload, end = found
            if validity == self.uidvalidity:
                self._forget(uid)
                if kind == ENTRY:
                    self._index[uid] = (self._scanned + pos, self._scanned + end)
                    self._live += end - pos
            pos = end
        self._scanned += pos
        if writer and self._scanned < size:
            log.info(
                "cache %s: cut off %d octets from %d",
                self.path,
                size - self._scanned,
                self._scanned,
            )
            os.ftruncate(self._fd, self._scanned)
            size = self._scanned
        return size

    # -- writing -------------------------------------------------------------------

    def put(self, entry: CachedMessage) -> None:
        """Queue ``entry`` for writing (never waits for the disk or a lock); it is
        served from the queue meanwhile."""
        self._queue(entry.uid, entry)

    def drop(self, uids: Iterable[int]) -> None:
        """Queue the removal of the entries of ``uids`` (expunged messages)."""
        for uid in uids:
            self._queue(uid, None)

    def _queue(self, uid: int, entry: CachedMessage | None) -> None:
        with self._lock:
            if self._closed:
                raise ValueError("FolderCache is closed")
            full = uid not in self._pending and len(self._pending) >= self.max_pending
            if full and entry is not None:
                return  # computed again when asked for
            self._pending[uid] = entry
        if self._background:
            _flusher().schedule(self)

    def flush(self) -> None:
        """Write what is queued, now (takes the writers' lock)."""
        self._write(keep=None, force_compact=False)

    def compact(self, keep: Collection[int] | None = None) -> None:
        """Write what is queued and rewrite the file with the live entries only (and
        with those of ``keep`` only, when given: the folder's UIDs, so entries of
        messages expunged by other programs go too)."""
        self._write(keep=None if keep is None else frozenset(keep), force_compact=True)

    def _write(self, *, keep: frozenset[int] | None, force_compact: bool) -> None:
        # The handle's own lock is taken only once the writers' lock is held, so that
        # readers never wait for another process's writer.
        if not self._pending and not force_compact:
            return
        with self._write_mutex, self._writer, self._lock:
            if self._closed:
                return
            if not self._pending and not force_compact:
                return
            batch, self._pending = self._pending, {}
            try:
                self._write_locked(batch, keep, force_compact)
            except BaseException:
                for uid, entry in batch.items():  # kept for the next try
                    self._pending.setdefault(uid, entry)
                raise

    def _write_locked(
        self, batch: dict[int, CachedMessage | None], keep: frozenset[int] | None, force: bool
    ) -> None:
        size = self._scan(writer=True)
        if self._fd is not None and not self._valid:
            self._reset()  # another UIDVALIDITY, or damage: start afresh
        records: list[tuple[int, bytes]] = []
        for uid, entry in batch.items():
            if entry is None:
                if uid in self._index:
                    records.append((uid, encode_record(DROP, uid, self.uidvalidity)))
                continue
            record = encode_record(ENTRY, uid, self.uidvalidity, encode_entry(entry))
            if len(record) <= self.max_size // 4:
                records.append((uid, record))
        growth = sum(len(r) for _, r in records)
        dead = size - HEADER_SIZE - self._live
        if (
            force
            or self._fd is None
            or size + growth > self.max_size
            or (size >= _COMPACT_MIN and dead > self.dead_fraction * size)
        ):
            self._rewrite(batch, records, keep)
            return
        if not records:
            return
        blob = b"".join(r for _, r in records)
        assert self._fd is not None
        os.pwrite(self._fd, blob, size)
        pos = size
        for uid, record in records:
            self._forget(uid)
            if record[2] == ENTRY:
                self._index[uid] = (pos, pos + len(record))
                self._live += len(record)
            pos += len(record)
        self._scanned = pos

    def _rewrite(
        self,
        batch: dict[int, CachedMessage | None],
        records: list[tuple[int, bytes]],
        keep: frozenset[int] | None,
    ) -> None:
        """Compaction: the live records (old ones read and checked again, then the
        batch's) into a new file, renamed over the old one."""
        live: dict[int, bytes] = {}
        for uid, (start, end) in sorted(self._index.items()):
            if uid in batch or (keep is not None and uid not in keep) or self._fd is None:
                continue
            data = os.pread(self._fd, end - start, start)
            try:
                if record_at(data, 0) is not None:
                    live[uid] = data
            except CacheFormatError:
                continue
        for uid, record in records:
            if record[2] == ENTRY and (keep is None or uid in keep):
                live[uid] = record
        budget = self.max_size * 3 // 4 - HEADER_SIZE
        total = sum(len(r) for r in live.values())
        for uid in sorted(live):  # the oldest messages go first
            if total <= budget:
                break
            total -= len(live.pop(uid))
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            out = [encode_header(self.uidvalidity)]
            index: dict[int, tuple[int, int]] = {}
            pos = HEADER_SIZE
            for uid in sorted(live):
                record = live[uid]
                out.append(record)
                index[uid] = (pos, pos + len(record))
                pos += len(record)
            os.pwrite(fd, b"".join(out), 0)
            os.replace(tmp, self.path)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._reset()
        fst = os.fstat(fd)
        self._fd, self._ino, self._valid = fd, (fst.st_dev, fst.st_ino), True
        self._index, self._live, self._scanned = index, pos - HEADER_SIZE, pos

    # -- figures and closing ------------------------------------------------------

    def file_size(self) -> int:
        """The cache file's size now (0 when there is none)."""
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return 0

    def close(self) -> None:
        """Write what is queued and release the file. Idempotent."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            with self._write_mutex, self._lock:
                self._closed = True
                self._reset()
            _flusher().forget(self)

    def __enter__(self) -> FolderCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
