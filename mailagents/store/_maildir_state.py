"""``mailagents-modseq``: MODSEQs, cached sizes and dates, and the expunge log of one
Maildir folder (a file of ours; other programs leave it alone).

An append-only journal, changed only under the folder's uidlist dotlock::

    mailagents-modseq 1 C<crc> V<uidvalidity> H<highestmodseq> E<forgotten> R<first-recent>
    m <uid> <modseq> <created-modseq> <internaldate> <crlf-size> <info> <extra>
    x <uid> <modseq>
    r <first-recent>
    z <uid> <minutes>

``C`` is the CRC-32 of the rest of the first line, so that a first line cut short or
changed anywhere is known as damaged (journals written before it have no ``C`` and
must have ``V``, ``H`` and ``E``).

``R`` and ``r`` (the last one wins, and it only grows) are the \\Recent watermark: the
messages with this UID or above have not been claimed by an IMAP session yet (RFC 3501
§2.3.2: exactly one session sees a message as \\Recent).

``z`` keeps the time zone of a message's INTERNALDATE (minutes east of UTC), as
APPEND gave it; the date itself is the file's mtime, in seconds.

``m`` records a message as last seen: its info suffix (``=`` and the suffix
percent-encoded, ``-`` for none), so that a rename by another program is noticed as a
flag change, and the keywords that have no letter (``dovecot-keywords`` names 26 at
most; ``-`` for none, else ``=`` and percent-encoded names joined by ``,``), which live
here only; ``x`` records an expunge. The last
``m`` of a UID wins. New lines are appended and fsynced; when the journal has grown to
several times the live records it is compacted: written anew, fsynced and renamed
over. Expunges older than the newest :data:`EXPUNGE_LOG` are forgotten then, and ``E``
says up to which MODSEQ the log is incomplete. A torn last line is ignored. A header
whose UIDVALIDITY is not the uidlist's means the state belongs to an older life of the
folder and is started afresh.

HIGHESTMODSEQ never goes backwards under one UIDVALIDITY (RFC 7162 §3.1.1), even when
the journal is lost or its header is unreadable: a state started afresh for a folder
whose uidlist already existed starts above every MODSEQ this process has seen, above
every MODSEQ still readable in the damaged journal, and above :func:`clock_floor`, the
current time in microseconds. Every MODSEQ handed out under the UIDVALIDITY is below
that floor: each one was either counted up from 1, or from an earlier floor, by one per
fsynced change, and no folder changes a million times a second, so a counter started at
an earlier instant stays below the clock. The expunge log then starts empty with ``E``
at the restart point, so that clients asking about an earlier MODSEQ are told that the
log is incomplete (``Changes.expunged_complete``). Only a folder whose uidlist we create
ourselves starts at 1. What is not detected: a journal cut short after an intact
first line (records lost at line boundaries, by hand or by a failing disk: a crash only
ever loses the unfinished last append, whose MODSEQ nobody was told). Such a journal
reads as a shorter history, and the MODSEQs given next can repeat lost ones.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from mailagents.store._fileio import write_all
from mailagents.store._maildir_io import fsync_dir

__all__ = ["Entry", "ModseqState", "clock_floor"]

log = logging.getLogger(__name__)

STATE = "mailagents-modseq"
EXPUNGE_LOG = 10_000
_MAGIC = "mailagents-modseq"
_NO_EXTRA: frozenset[str] = frozenset()


def clock_floor() -> int:
    """The lowest MODSEQ a state started afresh may use: the time in microseconds (see
    the module docs for why no MODSEQ handed out before can be above it)."""
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class Entry:
    """What the state knows of one live message."""

    modseq: int
    created: int
    internaldate: int
    size: int
    info: str | None
    extra: frozenset[str] = frozenset()
    """Keywords without a Maildir letter."""


class ModseqState:
    """The parsed journal, re-read incrementally."""

    def __init__(self, folder_path: str, *, fsync: bool = True) -> None:
        self.folder_path = folder_path
        self.path = os.path.join(folder_path, STATE)
        self.fsync = fsync
        self._lazy_lock = threading.Lock()
        self._max_seen: dict[int, int] = {}
        """UIDVALIDITY → the highest MODSEQ this object ever saw under it (kept across
        resets: a journal lost under our feet must not take our memory with it)."""
        self.uidvalidity = 0
        self.highest = 1
        self._reset(0)

    def _reset(self, uidvalidity: int) -> None:
        if self.uidvalidity:
            seen = self._max_seen.get(self.uidvalidity, 0)
            self._max_seen[self.uidvalidity] = max(seen, self.highest)
        self.salvaged = 0
        """The highest MODSEQ read from a journal whose header was unusable."""
        self.first_recent = 1
        """The lowest UID that no session has claimed as \\Recent yet."""
        self.tzoffs: dict[int, int] = {}
        """UID → the INTERNALDATE's offset from UTC in minutes, where it is not 0."""
        self.uidvalidity = uidvalidity
        self.highest = 1
        self.forgotten = 0
        self._entries: dict[int, Entry] = {}
        self._expunged: dict[int, int] = {}
        # Records restored from a snapshot and not yet turned into entries (the columns
        # of :meth:`snapshot`), built on first use of entries / expunged.
        self._lazy: tuple[Any, ...] | None = None
        self._lines = 0
        self._ident: tuple[int, int] | None = None
        self._offset = 0
        self._size = 0
        self._pending: list[str] = []

    def reset(self) -> None:
        """Forget everything read (as a new object)."""
        self._reset(0)

    @property
    def pristine(self) -> bool:
        """Nothing was read or written through this object yet."""
        return (
            self._ident is None
            and self.uidvalidity == 0
            and self._lazy is None
            and not self._entries
            and not self._expunged
            and not self._pending
        )

    @property
    def file_ident(self) -> tuple[tuple[int, int] | None, int]:
        """``((device, inode), size)`` of the journal as last read or written."""
        return self._ident, self._size

    @property
    def entries(self) -> dict[int, Entry]:
        """UID → entry of every live message."""
        if self._lazy is not None:
            self._materialize()
        return self._entries

    @property
    def expunged(self) -> dict[int, int]:
        """The expunge log: UID → MODSEQ of its expunge."""
        if self._lazy is not None:
            self._materialize()
        return self._expunged

    def _materialize(self) -> None:
        with self._lazy_lock:
            lazy = self._lazy
            if lazy is None:
                return
            uids, modseqs, createds, idates, sizes, infos, extras, x_uids, x_modseqs = lazy
            no_extra = _NO_EXTRA
            entries = {
                uid: Entry(modseq, created, idate, size, info, no_extra)
                for uid, modseq, created, idate, size, info in zip(
                    uids, modseqs, createds, idates, sizes, infos, strict=True
                )
            }
            for uid, names in extras.items():
                e = entries[uid]
                entries[uid] = Entry(
                    e.modseq, e.created, e.internaldate, e.size, e.info, frozenset(names)
                )
            self._entries = entries
            self._expunged = dict(zip(x_uids, x_modseqs, strict=True))
            self._lazy = None

    # -- snapshots (see mailagents.store._maildir_snapshot) ---------------------------

    def snapshot(self, order: list[int]) -> tuple[Any, ...] | None:
        """What a fresh parse of the journal produced, as plain values for
        :meth:`restore`, the entries in the order of ``order`` (which must name each
        live UID once); ``None`` if it cannot be kept."""
        entries, expunged = self.entries, self.expunged
        if self._ident is None or self._pending or len(order) != len(entries):
            return None
        try:
            rows = [entries[uid] for uid in order]
        except KeyError:
            return None
        shared: dict[str | None, str | None] = {}
        return (
            self.uidvalidity,
            self.highest,
            self.forgotten,
            self._lines,
            self._ident,
            self._offset,
            self._size,
            order,  # the caller's list: marshal writes it once when used twice
            [e.modseq for e in rows],
            [e.created for e in rows],
            [e.internaldate for e in rows],
            [e.size for e in rows],
            # One object per distinct suffix: marshal then writes each suffix once.
            [shared.setdefault(e.info, e.info) for e in rows],
            {uid: tuple(sorted(e.extra)) for uid, e in zip(order, rows, strict=True) if e.extra},
            list(expunged),
            list(expunged.values()),
            self.first_recent,
            dict(self.tzoffs),
        )

    def restore(self, data: Any) -> None:
        """Become what :meth:`snapshot` returned (entries are built on first use).
        :class:`ValueError` (and nothing changed) if ``data`` is not such a value."""
        (
            uidvalidity,
            highest,
            forgotten,
            lines,
            ident,
            offset,
            size,
            uids,
            modseqs,
            createds,
            idates,
            sizes,
            infos,
            extras,
            x_uids,
            x_modseqs,
            first_recent,
            tzoffs,
        ) = data
        _check_ints(uidvalidity, highest, forgotten, lines, offset, size, first_recent, *ident)
        columns = (uids, modseqs, createds, idates, sizes, x_uids, x_modseqs)
        if (
            uidvalidity <= 0
            or len(ident) != 2
            or not 0 < offset <= size
            or any(type(c) is not list or (c and set(map(type, c)) != {int}) for c in columns)
            or type(infos) is not list
            or not len(uids) == len(modseqs) == len(createds) == len(idates) == len(sizes)
            or len(infos) != len(uids)
            or len(x_uids) != len(x_modseqs)
            or (infos and not set(map(type, infos)) <= {str, type(None)})
            or type(extras) is not dict
            or type(tzoffs) is not dict
            or any(type(k) is not int or type(v) is not int for k, v in tzoffs.items())
        ):
            raise ValueError("not a state snapshot")
        uid_set = set(uids)
        if (
            len(uid_set) != len(uids)
            or len(set(x_uids)) != len(x_uids)
            or not uid_set.isdisjoint(x_uids)
            or any(
                u not in uid_set or type(e) is not tuple or any(type(k) is not str for k in e)
                for u, e in extras.items()
            )
            or max(modseqs, default=0) > highest
            or max(x_modseqs, default=0) > highest
        ):
            raise ValueError("not a state snapshot")
        self._reset(uidvalidity)
        self.highest = highest
        self.forgotten = forgotten
        self.first_recent = first_recent
        self.tzoffs = tzoffs
        self._lines = lines
        self._ident = (ident[0], ident[1])
        self._offset = offset
        self._size = size
        self._lazy = (uids, modseqs, createds, idates, sizes, infos, extras, x_uids, x_modseqs)

    def _known_uids(self) -> set[int]:
        lazy = self._lazy
        if lazy is not None:
            return set(lazy[0]) | set(lazy[7])
        return set(self._entries) | set(self._expunged)

    def lazy_rows(self) -> tuple[Any, ...] | None:
        """``(uids, modseqs, internaldates, sizes, infos, extras)`` columns of a restored
        snapshot whose entries were not built yet (``None`` once they are)."""
        lazy = self._lazy
        if lazy is None:
            return None
        uids, modseqs, _, idates, sizes, infos, extras, _, _ = lazy
        return uids, modseqs, idates, sizes, infos, extras

    # -- reading ---------------------------------------------------------------------

    def refresh(self) -> set[int]:
        """Read what other writers added; returns the UIDs whose records changed."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            changed = self._known_uids()
            if self._ident is not None:
                self._reset(0)
            return changed
        try:
            st = os.fstat(fd)
            ident = (st.st_dev, st.st_ino)
            if ident == self._ident and st.st_size == self._size:
                return set()
            if ident == self._ident and st.st_size > self._offset > 0:
                os.lseek(fd, self._offset, os.SEEK_SET)
                data = _read_all(fd)
                self._size = self._offset + len(data)
                return self._parse(data)
            os.lseek(fd, 0, os.SEEK_SET)
            data = _read_all(fd)
        finally:
            os.close(fd)
        before = self._known_uids()
        self._reset(0)
        self._ident = ident
        self._size = len(data)
        end = data.find(b"\n")
        if end < 0 or not self._parse_header(data[:end].decode("ascii", "replace")):
            self._ident = None
            self.salvaged = _salvage(data)
            return before
        self._offset = end + 1
        changed = self._parse(data[end + 1 :])
        return changed | before

    def _parse_header(self, line: str) -> bool:
        parts = line.split()
        if len(parts) < 2 or parts[0] != _MAGIC or parts[1] != "1":
            log.warning("%s: bad header %r, starting afresh", self.path, line)
            return False
        fields = parts[2:]
        if fields and fields[0].startswith("C"):
            rest = " ".join(fields[1:])
            if fields[0][1:] != str(zlib.crc32(rest.encode("ascii", "replace"))):
                log.warning("%s: header %r fails its check, starting afresh", self.path, line)
                return False
            fields = fields[1:]
        keys = {field[:1] for field in fields if field[1:].isdigit()}
        if not {"V", "H", "E"} <= keys:  # every writer writes them: a header cut short
            log.warning("%s: incomplete header %r, starting afresh", self.path, line)
            return False
        for field in fields:
            key, value = field[:1], field[1:]
            if not value.isdigit():
                continue
            if key == "V":
                self.uidvalidity = int(value)
            elif key == "H":
                self.highest = max(self.highest, int(value))
            elif key == "E":
                self.forgotten = int(value)
            elif key == "R":
                self.first_recent = max(self.first_recent, int(value))
        return True

    def _parse(self, data: bytes) -> set[int]:
        last_nl = data.rfind(b"\n")
        if last_nl < 0:
            return set()
        self._offset += last_nl + 1
        changed: set[int] = set()
        entries = self.entries
        expunged = self.expunged  # (both built now if they were lazy)
        highest = self.highest
        lines = 0
        for line in data[:last_nl].decode("utf-8", "replace").split("\n"):
            parts = line.split(" ")
            # The common record, "m uid modseq created idate size info extra", with no
            # escapes and no extra keywords, takes a fast path; anything else the
            # general one.
            if (
                len(parts) == 8
                and parts[0] == "m"
                and parts[7] == "-"
                and "%" not in parts[6]
                and parts[1].isdigit()
                and parts[2].isdigit()
                and parts[3].isdigit()
                and parts[4].isdigit()
                and parts[5].isdigit()
            ):
                uid = int(parts[1])
                modseq = int(parts[2])
                field = parts[6]
                entries[uid] = Entry(
                    modseq,
                    int(parts[3]),
                    int(parts[4]),
                    int(parts[5]),
                    None if field == "-" else field[1:],
                    _NO_EXTRA,
                )
                if expunged:
                    expunged.pop(uid, None)
                if modseq > highest:
                    highest = modseq
                lines += 1
                changed.add(uid)
                continue
            self.highest = highest
            self._lines += lines
            lines = 0
            general = self._apply(line)
            highest = self.highest
            if general is not None:
                changed.add(general)
        self.highest = highest
        self._lines += lines
        return changed

    def _apply(self, line: str) -> int | None:
        parts = line.split(" ")
        try:
            if parts[0] == "m" and len(parts) == 8:
                uid, modseq, created, idate, size = (int(p) for p in parts[1:6])
                field = parts[6]
                if field == "-":
                    info = None
                elif "%" in field:
                    info = unquote(field[1:])
                else:
                    info = field[1:]
                extra = (
                    _NO_EXTRA
                    if parts[7] == "-"
                    else frozenset(unquote(k) for k in parts[7][1:].split(",") if k)
                )
                self.entries[uid] = Entry(modseq, created, idate, size, info, extra)
                self.expunged.pop(uid, None)
            elif parts[0] == "x" and len(parts) == 3:
                uid, modseq = int(parts[1]), int(parts[2])
                self.entries.pop(uid, None)
                self.expunged[uid] = modseq
            elif parts[0] == "z" and len(parts) == 3:
                uid, minutes = int(parts[1]), int(parts[2])
                if uid not in self.expunged:
                    self.tzoffs[uid] = minutes
                self._lines += 1
                return None
            elif parts[0] == "r" and len(parts) == 2:
                self.first_recent = max(self.first_recent, int(parts[1]))
                self._lines += 1
                return None
            else:
                raise ValueError(line)
        except ValueError:
            if line:
                log.warning("%s: ignoring bad line %r", self.path, line)
            return None
        self._lines += 1
        self.highest = max(self.highest, modseq)
        return uid

    # -- writing (the caller holds the uidlist lock) ----------------------------------

    def start(self, uidvalidity: int, *, new_folder: bool = False) -> None:
        """Begin changes under the lock; a different UIDVALIDITY, a missing or damaged
        journal starts afresh: at 1 when ``new_folder`` (the caller has just created the
        uidlist: no MODSEQ was ever handed out under its UIDVALIDITY), else above
        every MODSEQ that may have been handed out (see the module docs)."""
        if self.uidvalidity != uidvalidity or self._ident is None:
            salvaged = self.salvaged
            self._reset(uidvalidity)
            if not new_folder:
                floor = max(salvaged, self.restart_floor(uidvalidity))
                log.warning(
                    "%s: MODSEQ state started afresh above %d (journal missing or damaged)",
                    self.path,
                    floor,
                )
                self.highest = floor
                self.forgotten = floor
            self._pending = ["!"]  # marker: a full rewrite is needed
        else:
            self._pending = []

    def restart_floor(self, uidvalidity: int) -> int:
        """Where a state started afresh under ``uidvalidity`` would start: above every
        MODSEQ that may have been handed out (see the module docs)."""
        return max(self.salvaged, self._max_seen.get(uidvalidity, 0), clock_floor())

    def next_modseq(self) -> int:
        """A new MODSEQ (above every one handed out)."""
        self.highest += 1
        return self.highest

    def record(self, uid: int, entry: Entry) -> None:
        """Note a message as seen (new, or changed)."""
        self.entries[uid] = entry
        self.expunged.pop(uid, None)
        self._pending.append(_m_line(uid, entry))

    def set_tz(self, uid: int, minutes: int) -> None:
        """Keep the time zone of a message's INTERNALDATE."""
        if self.tzoffs.get(uid, 0) != minutes:
            self.tzoffs[uid] = minutes
            self._pending.append(f"z {uid} {minutes}\n")

    def expunge(self, uid: int, modseq: int) -> None:
        """Note an expunge."""
        self.tzoffs.pop(uid, None)
        self.entries.pop(uid, None)
        self.expunged[uid] = modseq
        self._pending.append(f"x {uid} {modseq}\n")

    def claim_recent(self, first: int) -> None:
        """Move the \\Recent watermark up to ``first`` (nothing if it is there already)."""
        if first > self.first_recent:
            self.first_recent = first
            self._pending.append(f"r {first}\n")

    def commit(self) -> None:
        """Write the pending records durably (append, or compact)."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        rewrite = pending[0] == "!"
        if rewrite:
            pending = pending[1:]
        live = len(self.entries) + len(self.expunged)
        if rewrite or self._lines + len(pending) > 2 * live + 1000:
            self.compact()
            return
        data = "".join(pending).encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != self._ident or st.st_size != self._offset:
                os.close(fd)
                fd = -1
                self.compact()
                return
            write_all(fd, data)
            if self.fsync:
                os.fsync(fd)
        finally:
            if fd >= 0:
                os.close(fd)
        self._offset += len(data)
        self._size = self._offset
        self._lines += len(pending)

    def compact(self) -> None:
        """Rewrite the journal: one line per live message, the newest expunges."""
        if len(self.expunged) > EXPUNGE_LOG:
            ordered = sorted(self.expunged.items(), key=lambda item: item[1])
            dropped = ordered[: len(ordered) - EXPUNGE_LOG]
            self.forgotten = max(self.forgotten, max(m for _, m in dropped))
            self._expunged = dict(ordered[len(dropped) :])
        fields = f"V{self.uidvalidity} H{self.highest} E{self.forgotten} R{self.first_recent}"
        lines = [f"{_MAGIC} 1 C{zlib.crc32(fields.encode())} {fields}\n"]
        for uid in sorted(self.entries):
            lines.append(_m_line(uid, self.entries[uid]))
        for uid, minutes in sorted(self.tzoffs.items()):
            if uid not in self.expunged and minutes:
                lines.append(f"z {uid} {minutes}\n")
        for uid, modseq in sorted(self.expunged.items(), key=lambda item: item[1]):
            lines.append(f"x {uid} {modseq}\n")
        data = "".join(lines).encode("utf-8")
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
        os.rename(tmp, self.path)
        if self.fsync:
            fsync_dir(self.folder_path)
        self._ident = (st.st_dev, st.st_ino)
        self._offset = self._size = len(data)
        self._lines = len(lines) - 1


def _salvage(data: bytes) -> int:
    """The highest MODSEQ in the records of a journal whose header is unusable."""
    highest = 0
    for line in data.split(b"\n")[1:]:
        parts = line.split(b" ")
        field = parts[2] if len(parts) > 2 and parts[0] in (b"m", b"x") else b""
        if field.isdigit():
            highest = max(highest, int(field))
    return highest


def _check_ints(*values: object) -> None:
    if any(type(v) is not int for v in values):
        raise ValueError("not an int")


def _m_line(uid: int, e: Entry) -> str:
    info = "-" if e.info is None else "=" + quote(e.info, safe=",")
    extra = "=" + ",".join(quote(k, safe="") for k in sorted(e.extra)) if e.extra else "-"
    return f"m {uid} {e.modseq} {e.created} {e.internaldate} {e.size} {info} {extra}\n"


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)
