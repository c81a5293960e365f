"""The side index of an mbox folder: ``.NAME.mailagents-index`` next to the mbox.

A text file (UTF-8), one record a line, fields separated by single spaces. A full
index is written whole (to ``.NAME.mailagents-index.new``, fsynced, renamed over)::

    mailagents-mbox-index 1
    V <uidvalidity> <uidnext> <highestmodseq> [<forgotten> [<first-recent>]]
    S <st_dev> <st_ino> <st_size> <st_mtime_ns>        the mbox as the index knows it
    M <uid> <offset> <length> <from_len> <crc> <size> <quoted> <modseq> <cmodseq>
      <internaldate> [flag ...]                         one per message, by UID
    X <uid> <modseq>                                    the bounded expunge log
    E <count of M records>                              a full index is complete

and then grows by appended journal records (each append fsynced):

    P <old mbox size>     an append is in progress: truncate back to this size if found
    A <fields of M>       a message appended
    C                     the append (or its recovery) is over
    F <uid> <modseq> [flag ...]    flags changed
    X <uid> <modseq>      expunged
    S ...                 the mbox after our change

``offset``/``length`` locate the message on disk (``From`` line to the next one),
``from_len`` is the ``From`` line's length, ``crc`` its checksum, ``size`` the CRLF size,
``quoted`` whether mboxrd unquoting applies (not for mboxcl2 messages), ``cmodseq`` the
MODSEQ at which the message appeared. A journal line cut short by a crash is ignored and
truncated away. The journal is compacted into a full index now and then.

The expunge log keeps the newest :data:`EXPUNGE_LOG_MAX` expunges; ``forgotten`` (the
last field of ``V``, absent in older indexes: 0) is the highest MODSEQ of an expunge
dropped from it, so that a question about an earlier MODSEQ is known to be answered
incompletely (``Changes.expunged_complete``). ``first-recent`` is the \\Recent
watermark: messages with this UID or above have not been claimed by an IMAP session
yet. A ``V`` record appended to the journal moves it (older readers take such a record
as it is: same UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ only grow).
"""

from __future__ import annotations

import collections
import datetime
import os
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from mailagents.store._fileio import fsync_dir, write_all
from mailagents.store._mbox_format import FileRef
from mailagents.store._model import MessageInfo

MAGIC = "mailagents-mbox-index 1"
EXPUNGE_LOG_MAX = 10_000

StatKey = tuple[int, int, int, int]


def stat_key(st: os.stat_result) -> StatKey:
    """What identifies one state of the mbox file."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def stat_record(key: StatKey) -> str:
    """The ``S`` record for a state of the mbox file."""
    return "S {} {} {} {}\n".format(*key)


class IndexCorrupt(Exception):
    """The index cannot be parsed."""


class Entry(NamedTuple):
    """One message: what the model shows, and where it is on disk."""

    info: MessageInfo
    offset: int
    length: int
    from_len: int
    crc: int
    quoted: bool
    cmodseq: int
    ref: FileRef | None

    def with_flags(self, flags: frozenset[str], modseq: int) -> Entry:
        """The entry with new flags and MODSEQ."""
        return self._replace(info=replace(self.info, flags=flags, modseq=modseq))

    def record(self, tag: str = "M") -> str:
        """The index line for this entry."""
        i = self.info
        flags = "".join(" " + f for f in sorted(i.flags))
        return (
            f"{tag} {i.uid} {self.offset} {self.length} {self.from_len} {self.crc} {i.size} "
            f"{int(self.quoted)} {i.modseq} {self.cmodseq} {i.internaldate.isoformat()}"
            f"{flags}\n"
        )


_dates: dict[str, datetime.datetime] = {}
_flag_sets: dict[tuple[str, ...], frozenset[str]] = {}


def _date(text: str) -> datetime.datetime:
    value = _dates.get(text)
    if value is None:
        if len(_dates) > 100_000:
            _dates.clear()
        value = _dates[text] = datetime.datetime.fromisoformat(text)
    return value


def _flags(parts: list[str]) -> frozenset[str]:
    key = tuple(parts)
    value = _flag_sets.get(key)
    if value is None:
        if len(_flag_sets) > 10_000:
            _flag_sets.clear()
        value = _flag_sets[key] = frozenset(key)
    return value


@dataclass
class IndexState:
    """The index as loaded: the folder's UIDs and flags and the journal position."""

    uidvalidity: int = 0
    uidnext: int = 1
    highestmodseq: int = 1
    msgs: dict[int, Entry] = field(default_factory=dict)
    expunged: collections.deque[tuple[int, int]] = field(
        default_factory=lambda: collections.deque(maxlen=EXPUNGE_LOG_MAX)
    )
    forgotten: int = 0
    """The highest MODSEQ of an expunge the bounded log no longer holds."""
    first_recent: int = 1
    """The lowest UID no IMAP session has claimed as \\Recent yet."""
    mbox_stat: StatKey | None = None
    pending: int | None = None
    ino: tuple[int, int] | None = None
    pos: int = 0
    records: int = 0
    tail: int = 0
    ref: FileRef | None = None
    index_ref: FileRef | None = None
    """The index file as last read or written, held open: its inode cannot be reused by
    a newer index while we hold it, so "same file" checks cannot be fooled."""

    def reset(self) -> None:
        """Forget everything but the open file."""
        ref = self.ref
        self.__init__()  # type: ignore[misc]
        self.ref = ref

    def v_record(self) -> str:
        """The ``V`` record of this state."""
        return (
            f"V {self.uidvalidity} {self.uidnext} {self.highestmodseq} {self.forgotten}"
            f" {self.first_recent}\n"
        )

    def log_expunge(self, uid: int, modseq: int) -> None:
        """Add to the expunge log, remembering the MODSEQ of what falls out of it."""
        log = self.expunged
        if log.maxlen is not None and len(log) >= log.maxlen:
            self.forgotten = max(self.forgotten, log[0][1])
        log.append((uid, modseq))

    def new_life(self) -> None:
        """Forget the expunge log (a new UIDVALIDITY: nothing before it counts)."""
        self.expunged.clear()
        self.forgotten = 0
        self.first_recent = 1

    def apply(self, line: str) -> None:
        """Replay one record."""
        parts = line.split(" ")
        tag = parts[0]
        try:
            if tag in ("M", "A"):
                uid = int(parts[1])
                modseq = int(parts[8])
                info = MessageInfo(
                    uid=uid,
                    flags=_flags(parts[11:]),
                    internaldate=_date(parts[10]),
                    size=int(parts[6]),
                    modseq=modseq,
                )
                self.msgs[uid] = Entry(
                    info,
                    int(parts[2]),
                    int(parts[3]),
                    int(parts[4]),
                    int(parts[5]),
                    parts[7] == "1",
                    int(parts[9]),
                    self.ref,
                )
                self.uidnext = max(self.uidnext, uid + 1)
                self.highestmodseq = max(self.highestmodseq, modseq)
            elif tag == "F":
                uid, modseq = int(parts[1]), int(parts[2])
                old = self.msgs.get(uid)
                if old is not None:
                    self.msgs[uid] = old.with_flags(_flags(parts[3:]), modseq)
                self.highestmodseq = max(self.highestmodseq, modseq)
            elif tag == "X":
                uid, modseq = int(parts[1]), int(parts[2])
                self.msgs.pop(uid, None)
                self.log_expunge(uid, modseq)
                self.highestmodseq = max(self.highestmodseq, modseq)
            elif tag == "P":
                self.pending = int(parts[1])
            elif tag == "C":
                self.pending = None
            elif tag == "S":
                a, b, c, d = (int(x) for x in parts[1:5])
                self.mbox_stat = (a, b, c, d)
            elif tag == "V":
                self.uidvalidity = int(parts[1])
                self.uidnext = max(self.uidnext, int(parts[2]))
                self.highestmodseq = max(self.highestmodseq, int(parts[3]))
                if len(parts) > 4:
                    self.forgotten = max(self.forgotten, int(parts[4]))
                if len(parts) > 5:
                    self.first_recent = max(self.first_recent, int(parts[5]))
            elif tag == "E":
                pass
            else:
                raise IndexCorrupt(f"unknown record {line[:40]!r}")
        except (IndexError, ValueError) as exc:
            raise IndexCorrupt(f"bad record {line[:80]!r}") from exc

    def full_text(self) -> bytes:
        """The whole index as a full (compacted) index."""
        out = [
            MAGIC + "\n",
            self.v_record(),
        ]
        if self.mbox_stat is not None:
            out.append(stat_record(self.mbox_stat))
        out.extend(e.record() for e in self.msgs.values())
        out.extend(f"X {uid} {modseq}\n" for uid, modseq in self.expunged)
        out.append(f"E {len(self.msgs)}\n")
        return "".join(out).encode("utf-8")


def _read_all(fd: int, start: int, end: int) -> bytes:
    parts = []
    while start < end:
        piece = os.pread(fd, min(end - start, 1 << 24), start)
        if not piece:
            break
        parts.append(piece)
        start += len(piece)
    return b"".join(parts)


def _same_index(state: IndexState, st: os.stat_result) -> bool:
    ref = state.index_ref
    return ref is not None and ref.fd >= 0 and os.path.samestat(os.fstat(ref.fd), st)


def load(state: IndexState, path: str) -> bool:
    """Bring ``state`` up to date with the index file: replay new journal records, or
    reload it whole if it was replaced. ``False`` if there is no index.
    ``state.tail`` is set to the length of a cut-short last line (to be truncated)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        state.reset()
        return False
    keep = False
    try:
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        if _same_index(state, st) and st.st_size >= state.pos:
            start = state.pos
        else:
            # Replaced (or never read): read it whole, and hold it open from now on.
            state.reset()
            start = 0
            state.index_ref = FileRef(fd)
            keep = True
        data = _read_all(fd, start, st.st_size)
    finally:
        if not keep:
            os.close(fd)
    cut = data.rfind(b"\n") + 1
    try:
        lines = data[:cut].decode("utf-8").split("\n")[:-1]
    except UnicodeDecodeError as exc:
        raise IndexCorrupt("not UTF-8") from exc
    if start == 0:
        if not lines or lines[0] != MAGIC:
            raise IndexCorrupt("not an mbox index")
        lines = lines[1:]
    journal = len(lines)
    for n, line in enumerate(lines):
        state.apply(line)
        if line.startswith("E "):
            journal = len(lines) - n - 1
    state.records = state.records + journal if start else journal
    state.pos = start + cut
    state.ino = key
    state.tail = len(data) - cut
    return True


def complete_new_index(path: str, mbox: StatKey) -> bool:
    """Whether ``path`` is a whole full index describing the mbox as it is now."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    lines = data.split(b"\n")
    if len(lines) < 4 or lines[0] != MAGIC.encode() or lines[-1] != b"":
        return False
    if not lines[-2].startswith(b"E "):
        return False
    return lines[2] + b"\n" == stat_record(mbox).encode()


def append_records(state: IndexState, path: str, lines: list[str], fsync: bool) -> None:
    """Append journal records (fsynced when asked) and apply them to ``state``."""
    data = "".join(lines).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        # Our read position is only valid if the file is the one we read, and we read
        # all of it. Otherwise (it was replaced, or grew behind our back) the next load
        # must read the whole file again rather than start in the middle of a record.
        in_step = _same_index(state, st) and st.st_size == state.pos
        write_all(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    if in_step:
        state.pos += len(data)
    else:
        state.ino = None
        state.index_ref = None  # the next load reads the whole file
    state.records += len(lines)
    for line in lines:
        state.apply(line.rstrip("\n"))


def write_full(state: IndexState, path: str, fsync: bool, *, rename: bool = True) -> str:
    """Write ``state`` as a full index to ``path + ".new"`` (fsynced) and, unless told
    not to, rename it over ``path``. Returns the ``.new`` path."""
    tmp = path + ".new"
    data = state.full_text()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        write_all(fd, data)
        if fsync:
            os.fsync(fd)
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    ref = FileRef(fd)  # held open: see IndexState.index_ref
    if rename:
        os.replace(tmp, path)
        if fsync:
            fsync_dir(os.path.dirname(path))
    state.ino = (st.st_dev, st.st_ino)
    state.index_ref = ref
    state.pos = len(data)
    state.records = 0
    state.tail = 0
    return tmp
