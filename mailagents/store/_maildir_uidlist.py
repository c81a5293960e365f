"""Dovecot's Maildir metadata files, shared with Dovecot:

* ``dovecot-uidlist`` version 3: a header ``3 V<uidvalidity> N<nextuid> G<guid>``
  (more ``<key><value>`` fields may follow and are kept), then one line per message,
  ``<uid> [<key><value> ...] :<base file name>`` (the name without ``:2,`` info).
  Changed only under the dotlock ``dovecot-uidlist.lock``: new records are appended
  (``O_APPEND``, then fsync), a full rewrite goes to ``dovecot-uidlist.tmp``, is
  fsynced and renamed over. A reader reads the file incrementally (same inode, grown)
  and ignores a torn last line. The next UID is the larger of ``N`` and the last
  record's UID + 1, as in Dovecot.
* ``dovecot-keywords``: ``<index> <keyword>`` lines; index 0 is the letter ``a``.
  Written (under the uidlist lock) by ``dovecot-keywords.lock`` + rename, as Dovecot.
* ``dovecot-uidvalidity`` in the store's root: Dovecot's allocator of UIDVALIDITY
  values (the file holds the last value in hex; ``dovecot-uidvalidity.<hex>`` is
  renamed to the next value, which makes allocation atomic between processes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from mailagents.store._fileio import write_all
from mailagents.store._locking import DotLock
from mailagents.store._maildir_io import fsync_dir

__all__ = ["Keywords", "UidList", "UidRecord", "next_uidvalidity"]

log = logging.getLogger(__name__)

UIDLIST = "dovecot-uidlist"
KEYWORDS = "dovecot-keywords"
UIDVALIDITY = "dovecot-uidvalidity"
MAX_KEYWORDS = 26
LOCK_STALE = 120.0


@dataclass(slots=True)
class UidRecord:
    """One uidlist line."""

    uid: int
    base: str
    ext: tuple[str, ...] = ()


def _read_from(path: str, fd: int, offset: int) -> bytes:
    os.lseek(fd, offset, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


class UidList:
    """The parsed ``dovecot-uidlist`` of one folder, re-read incrementally."""

    def __init__(self, folder_path: str, root: str, *, fsync: bool = True) -> None:
        self.folder_path = folder_path
        self.root = root
        self.path = os.path.join(folder_path, UIDLIST)
        self.fsync = fsync
        self._lazy_lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.exists = False
        self.version = 3
        self.uidvalidity = 0
        self.next_uid = 1
        self.hdr_next_uid = 1
        self.guid = ""
        self.hdr_ext: list[str] = []
        self._by_base: dict[str, UidRecord] = {}
        self._by_uid: dict[int, UidRecord] = {}
        # Records restored from a snapshot and not yet turned into UidRecords:
        # (uids, bases, {uid: ext}), built on first use of by_base / by_uid.
        self._lazy: tuple[list[int], list[str], dict[int, tuple[str, ...]]] | None = None
        self._ident: tuple[int, int] | None = None
        self._offset = 0
        self._size = 0
        self._header = b""

    def reset(self) -> None:
        """Forget everything read (as a new object)."""
        self._reset()

    @property
    def pristine(self) -> bool:
        """Nothing was read or written through this object yet."""
        return (
            not self.exists
            and self._ident is None
            and self._lazy is None
            and not self._by_uid
            and self.uidvalidity == 0
        )

    @property
    def file_ident(self) -> tuple[tuple[int, int] | None, int]:
        """``((device, inode), size)`` of the file as last read or written."""
        return self._ident, self._size

    @property
    def by_base(self) -> dict[str, UidRecord]:
        """Base file name → record."""
        if self._lazy is not None:
            self._materialize()
        return self._by_base

    @property
    def by_uid(self) -> dict[int, UidRecord]:
        """UID → record."""
        if self._lazy is not None:
            self._materialize()
        return self._by_uid

    def _materialize(self) -> None:
        with self._lazy_lock:
            lazy = self._lazy
            if lazy is None:
                return
            uids, bases, exts = lazy
            by_uid = {uid: UidRecord(uid, base) for uid, base in zip(uids, bases, strict=True)}
            for uid, ext in exts.items():
                by_uid[uid].ext = ext
            self._by_base = {rec.base: rec for rec in by_uid.values()}
            self._by_uid = by_uid
            self._lazy = None

    # -- snapshots (see mailagents.store._maildir_snapshot) ---------------------------

    def snapshot(self, uids: list[int] | None = None) -> tuple[Any, ...] | None:
        """What a fresh parse of the file produced, as plain values for
        :meth:`restore`; ``None`` if there is nothing worth keeping. The records are
        in UID order; ``uids`` is used for their UIDs when it holds the same ones (one
        list object, written once by :mod:`marshal`)."""
        if not self.exists or self._ident is None:
            return None
        by_uid, by_base = self.by_uid, self.by_base
        if len(by_base) != len(by_uid) or any(by_uid.get(r.uid) is not r for r in by_base.values()):
            return None  # not the one-to-one map a parse builds: do not keep it
        order = sorted(by_uid)
        if uids is not None and uids == order:
            order = uids
        records = [by_uid[uid] for uid in order]
        return (
            self.version,
            self.uidvalidity,
            self.next_uid,
            self.hdr_next_uid,
            self.guid,
            list(self.hdr_ext),
            self._ident,
            self._offset,
            self._size,
            self._header,
            order,
            [r.base for r in records],
            {r.uid: r.ext for r in records if r.ext},
        )

    def restore(self, data: Any) -> None:
        """Become what :meth:`snapshot` returned (records are built on first use).
        :class:`ValueError` (and nothing changed) if ``data`` is not such a value."""
        (
            version,
            uidvalidity,
            next_uid,
            hdr_next_uid,
            guid,
            hdr_ext,
            ident,
            offset,
            size,
            header,
            uids,
            bases,
            exts,
        ) = data
        _check_ints(version, uidvalidity, next_uid, hdr_next_uid, offset, size, *ident)
        uid_set = set(uids) if type(uids) is list else set()
        if (
            version not in (1, 3)
            or uidvalidity <= 0
            or type(guid) is not str
            or not _is_str_list(hdr_ext)
            or len(ident) != 2
            or type(header) is not bytes
            or not 0 < offset <= size
            or type(uids) is not list
            or not _is_str_list(bases)
            or len(uids) != len(bases)
            or (uids and set(map(type, uids)) != {int})
            or len(uid_set) != len(uids)
            or len(set(bases)) != len(bases)
            or type(exts) is not dict
            or any(
                u not in uid_set or type(e) is not tuple or any(type(f) is not str for f in e)
                for u, e in exts.items()
            )
        ):
            raise ValueError("not a uidlist snapshot")
        self._reset()
        self.exists = True
        self.version = version
        self.uidvalidity = uidvalidity
        self.next_uid = next_uid
        self.hdr_next_uid = hdr_next_uid
        self.guid = guid
        self.hdr_ext = list(hdr_ext)
        self._ident = (ident[0], ident[1])
        self._offset = offset
        self._size = size
        self._header = header
        self._lazy = (uids, bases, exts)

    def lock(self, timeout: float | None = 30.0) -> DotLock:
        """A new (not yet taken) dotlock object for this uidlist."""
        return DotLock(self.path + ".lock", timeout=timeout, stale_after=LOCK_STALE)

    @property
    def torn(self) -> bool:
        """The file has bytes after the last complete line we read."""
        return self._size > self._offset

    # -- reading ---------------------------------------------------------------------

    def peek_uidvalidity(self) -> int:
        """UIDVALIDITY from the header alone (0 if there is no valid file), for
        callers that need nothing else."""
        if self.uidvalidity:
            return self.uidvalidity
        try:
            with open(self.path, "rb") as f:
                line = f.readline(4096)
        except FileNotFoundError:
            return 0
        parts = line.split()
        if not line.endswith(b"\n") or not parts or parts[0] not in (b"1", b"3"):
            return 0
        if parts[0] == b"1":
            return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0
        for field in parts[1:]:
            if field.startswith(b"V") and field[1:].isdigit():
                return int(field[1:])
        return 0

    def refresh(self) -> bool:
        """Read what changed since the last call; returns whether anything did."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            changed = self.exists
            if changed:
                self._reset()
            return changed
        try:
            st = os.fstat(fd)
            ident = (st.st_dev, st.st_ino)
            if ident == self._ident and st.st_size == self._size:
                return False
            if ident == self._ident and st.st_size > self._offset and self._offset > 0:
                head = os.pread(fd, len(self._header), 0)
                tail = os.pread(fd, 1, self._offset - 1)
                if head == self._header and tail == b"\n":
                    data = _read_from(self.path, fd, self._offset)
                    self._size = self._offset + len(data)
                    self._parse_records(data)
                    return True
            data = _read_from(self.path, fd, 0)
        finally:
            os.close(fd)
        self._reset()
        self._ident = ident
        self._size = len(data)
        self.exists = True
        self._parse_all(data)
        return True

    def _parse_all(self, data: bytes) -> None:
        end = data.find(b"\n")
        if end < 0:
            log.warning("%s: no complete header; treated as missing", self.path)
            self.exists = False
            return
        header = data[:end].decode("utf-8", "surrogateescape")
        self._header = data[: end + 1]
        self._offset = end + 1
        if not self._parse_header(header):
            self.exists = False
            return
        self._parse_records(data[end + 1 :])

    def _parse_header(self, line: str) -> bool:
        parts = line.split()
        if not parts or not parts[0].isdigit():
            log.warning("%s: corrupted header %r", self.path, line)
            return False
        self.version = int(parts[0])
        if self.version == 1:
            if len(parts) < 3 or not parts[1].isdigit() or not parts[2].isdigit():
                return False
            self.uidvalidity, self.hdr_next_uid = int(parts[1]), int(parts[2])
        elif self.version == 3:
            for field in parts[1:]:
                key, value = field[:1], field[1:]
                if key == "V" and value.isdigit():
                    self.uidvalidity = int(value)
                elif key == "N" and value.isdigit():
                    self.hdr_next_uid = int(value)
                elif key == "G":
                    self.guid = value
                else:
                    self.hdr_ext.append(field)
        else:
            log.warning("%s: unsupported version %d", self.path, self.version)
            return False
        if self.uidvalidity == 0 or self.hdr_next_uid == 0:
            return False
        self.next_uid = max(self.next_uid, self.hdr_next_uid)
        return True

    def _parse_records(self, data: bytes) -> None:
        last_nl = data.rfind(b"\n")
        if last_nl < 0:
            return  # only a torn line (or nothing)
        if self._lazy is not None:
            self._materialize()
        self._offset += last_nl + 1
        for raw in data[:last_nl].split(b"\n"):
            line = raw.decode("utf-8", "surrogateescape")
            rec = self._parse_line(line)
            if rec is None:
                if line:
                    log.warning("%s: ignoring bad line %r", self.path, line)
                continue
            self._add(rec)

    def _parse_line(self, line: str) -> UidRecord | None:
        uid_text, _, rest = line.partition(" ")
        if (
            self.version == 3
            and rest.startswith(":")
            and uid_text.isdigit()
            and ":" not in rest[1:]
            and "/" not in rest
            and len(rest) > 1
            and uid_text[0] != "0"
        ):
            return UidRecord(int(uid_text), rest[1:])  # the common "<uid> :<base>"
        if self.version == 3:
            head, sep, base = line.partition(" :")
            if not sep:
                head, sep, base = line.partition(":")
            fields = head.split()
            if not sep or not base or not fields or not fields[0].isdigit():
                return None
            ext = tuple(f for f in fields[1:] if f[:1].isupper())
        else:
            fields = line.split(" ", 1)
            if len(fields) != 2 or not fields[0].isdigit():
                return None
            base, ext = fields[1], ()
        base = base.partition(":")[0]
        uid = int(fields[0])
        if uid == 0 or "/" in base or not base:
            return None
        return UidRecord(uid, base, ext)

    def _add(self, rec: UidRecord) -> None:
        # The callers have built the records (by_base / by_uid) already.
        by_base, by_uid = self._by_base, self._by_uid
        old = by_base.get(rec.base)
        if old is not None and old.uid != rec.uid:
            # The same file listed again with a new UID (Dovecot: "duplicate file
            # entry"): the later line wins.
            by_uid.pop(old.uid, None)
        prev = by_uid.get(rec.uid)
        if prev is not None and prev.base != rec.base:
            by_base.pop(prev.base, None)
        by_base[rec.base] = rec
        by_uid[rec.uid] = rec
        if rec.uid >= self.next_uid:
            self.next_uid = rec.uid + 1

    # -- writing (the caller holds the lock) ------------------------------------------

    def create(self) -> None:
        """Start a new, empty uidlist with a new UIDVALIDITY (written by the next
        :meth:`rewrite`)."""
        self._reset()
        self.uidvalidity = next_uidvalidity(self.root)
        self.guid = os.urandom(16).hex()
        self.exists = True

    def append(self, records: list[UidRecord]) -> None:
        """Add records (UIDs from :attr:`next_uid` upwards) durably, by appending when
        the file allows it, else by a rewrite."""
        if not records:
            return
        if self._lazy is not None:
            self._materialize()
        fd = -1
        if self._ident is not None and self.version == 3 and not self.torn:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            except FileNotFoundError:
                fd = -1
        if fd >= 0:
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == self._ident and st.st_size == self._offset:
                    data = "".join(self._line(r) for r in records).encode(
                        "utf-8", "surrogateescape"
                    )
                    view = memoryview(data)
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                    if self.fsync:
                        os.fsync(fd)
                    for rec in records:
                        self._add(rec)
                    self._offset += len(data)
                    self._size = self._offset
                    return
            finally:
                os.close(fd)
        for rec in records:
            self._add(rec)
        self.rewrite()

    @staticmethod
    def _line(rec: UidRecord) -> str:
        ext = "".join(" " + e for e in rec.ext)
        return f"{rec.uid}{ext} :{rec.base}\n"

    def rewrite(self, drop: set[int] | frozenset[int] = frozenset()) -> None:
        """Write the whole file anew (dropping the records of ``drop``): write a
        temporary file, fsync, rename it over, fsync the directory."""
        for uid in drop:
            rec = self.by_uid.pop(uid, None)
            if rec is not None and self.by_base.get(rec.base) is rec:
                del self.by_base[rec.base]
        if not self.uidvalidity:
            self.uidvalidity = next_uidvalidity(self.root)
        if not self.guid:
            self.guid = os.urandom(16).hex()
        self.version = 3
        self.hdr_next_uid = self.next_uid
        header = f"3 V{self.uidvalidity} N{self.next_uid} G{self.guid}"
        if self.hdr_ext:
            header += " " + " ".join(self.hdr_ext)
        header_bytes = (header + "\n").encode("utf-8", "surrogateescape")
        body = "".join(self._line(self.by_uid[uid]) for uid in sorted(self.by_uid))
        data = header_bytes + body.encode("utf-8", "surrogateescape")
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            write_all(fd, data)
            if self.fsync:
                os.fsync(fd)
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        try:
            os.rename(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if self.fsync:
            fsync_dir(self.folder_path)
        self.exists = True
        self._ident = (st.st_dev, st.st_ino)
        self._header = header_bytes
        self._offset = self._size = len(data)


def _check_ints(*values: object) -> None:
    if any(type(v) is not int for v in values):
        raise ValueError("not an int")


def _is_str_list(value: object) -> bool:
    return type(value) is list and all(type(v) is str for v in value)


def next_uidvalidity(root: str) -> int:
    """A new UIDVALIDITY from Dovecot's ``dovecot-uidvalidity`` allocator in ``root``
    (time-based when the allocator is not there yet; never the same value twice)."""
    path = os.path.join(root, UIDVALIDITY)
    for _ in range(10):
        current = _scan_uidvalidity(root)
        if current is None:
            value = max(int(time.time()), 1) & 0xFFFFFFFF
            try:
                fd = os.open(f"{path}.{value:08x}", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o444)
            except FileExistsError:
                continue
            os.close(fd)
            _write_uidvalidity(path, value)
            return value
        for _ in range(10):
            nxt = (current + 1) & 0xFFFFFFFF or 1
            try:
                os.rename(f"{path}.{current:08x}", f"{path}.{nxt:08x}")
            except FileNotFoundError:
                current = nxt  # raced with another allocator: try the next value
                continue
            _write_uidvalidity(path, nxt)
            return nxt
    # Fall back to the clock, as Dovecot does.
    return max(int(time.time()), 1) & 0xFFFFFFFF


def _scan_uidvalidity(root: str) -> int | None:
    prefix = UIDVALIDITY + "."
    values = []
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(root):
            if name.startswith(prefix):
                with contextlib.suppress(ValueError):
                    values.append(int(name[len(prefix) :], 16))
    if not values:
        return None
    if len(values) > 1:
        for stale in values:
            if stale != max(values):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(root, f"{prefix}{stale:08x}"))
    return max(values)


def _write_uidvalidity(path: str, value: int) -> None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:  # pragma: no cover - best effort, as in Dovecot
        return
    try:
        os.pwrite(fd, f"{value:08x}".encode(), 0)
    finally:
        os.close(fd)


class Keywords:
    """``dovecot-keywords``: keyword names by letter index (``a`` = 0)."""

    def __init__(self, folder_path: str, *, fsync: bool = True) -> None:
        self.path = os.path.join(folder_path, KEYWORDS)
        self.fsync = fsync
        self.names: list[str | None] = []
        self._stamp: tuple[int, int, int] | None = None

    def reset(self) -> None:
        """Forget what was read (as a new object)."""
        self.names = []
        self._stamp = None

    @property
    def pristine(self) -> bool:
        """Nothing was read yet."""
        return self._stamp is None and not self.names

    @property
    def loaded_stamp(self) -> tuple[int, int, int] | None:
        """``(inode, size, mtime_ns)`` of the file as last read (``None``: none)."""
        return self._stamp

    def snapshot(self) -> tuple[Any, ...]:
        """What was read, as plain values for :meth:`restore`."""
        return list(self.names), self._stamp

    def restore(self, data: Any) -> None:
        """Become what :meth:`snapshot` returned; :class:`ValueError` (and nothing
        changed) if ``data`` is not such a value."""
        names, stamp = data
        if (
            type(names) is not list
            or len(names) > MAX_KEYWORDS
            or any(n is not None and type(n) is not str for n in names)
            or (stamp is not None and (type(stamp) is not tuple or len(stamp) != 3))
        ):
            raise ValueError("not a keywords snapshot")
        if stamp is not None:
            _check_ints(*stamp)
        self.names = list(names)
        self._stamp = None if stamp is None else (stamp[0], stamp[1], stamp[2])

    def refresh(self) -> bool:
        """Re-read the file if it changed; returns whether it did."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            changed = bool(self.names)
            self.names = []
            self._stamp = None
            return changed
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return False
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return self.refresh()
        names: list[str | None] = []
        for raw in data.split(b"\n"):
            idx_text, sep, name = raw.decode("utf-8", "replace").partition(" ")
            if not sep or not idx_text.isdigit() or not name:
                continue
            idx = int(idx_text)
            if idx >= MAX_KEYWORDS:
                continue
            names.extend([None] * (idx + 1 - len(names)))
            names[idx] = name
        changed = names != self.names
        self.names = names
        self._stamp = stamp
        return changed

    def letters(self) -> dict[str, str]:
        """Lower-cased keyword → letter."""
        return {
            name.lower(): chr(ord("a") + idx)
            for idx, name in enumerate(self.names)
            if name is not None
        }

    def ensure(self, keywords: list[str]) -> None:
        """Give keywords a letter while letters are left, writing the file if needed
        (the caller holds the uidlist lock)."""
        self.refresh()
        known = self.letters()
        missing: list[str] = []
        for kw in keywords:
            if kw.lower() not in known and kw.lower() not in (m.lower() for m in missing):
                missing.append(kw)
        names = list(self.names)
        if not missing or (len(names) >= MAX_KEYWORDS and None not in names):
            return
        for kw in missing:
            try:
                idx = names.index(None)
            except ValueError:
                idx = len(names)
                if idx >= MAX_KEYWORDS:
                    break
                names.append(None)
            names[idx] = kw
        text = "".join(f"{i} {n}\n" for i, n in enumerate(names) if n is not None)
        lock_path = self.path + ".lock"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)  # we hold the uidlist lock, as Dovecot does here
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, text.encode("utf-8"))
            if self.fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(lock_path)
            raise
        os.close(fd)
        os.rename(lock_path, self.path)
        self.names = names
        self._stamp = None
        self.refresh()
