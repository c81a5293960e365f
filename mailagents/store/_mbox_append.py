"""Appending to an mbox, for :class:`~mailagents.store.mbox.MboxFolder`: the writer
that transforms and spools a message as it arrives, and the commit that copies spooled
messages into the file under the folder's locks.

The commit records the file's old length in the index (fsynced) before the file grows,
so whoever finds that record later truncates back to it (see
:mod:`mailagents.store._mbox_reconcile`): a writer killed mid-append leaves nothing.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from mailagents.store._mbox_format import HEAD, InputTransformer, head_crc, make_from_line
from mailagents.store._mbox_index import Entry, IndexState, append_records, stat_key, stat_record
from mailagents.store._model import AppendResult, AppendWriter, MessageInfo, StoreError

if TYPE_CHECKING:
    from mailagents.store.mbox import MboxFolder

CHUNK = 256 * 1024
"""Bytes read or written at a time when copying a message."""


def pwrite_all(fd: int, data: bytes, pos: int) -> int:
    """Write all of ``data`` at ``pos``; returns its length."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], pos + done)
    return done


@dataclass
class Spooled:
    """A message transformed and waiting in a temporary file for its commit."""

    spool: BinaryIO
    size: int
    flags: frozenset[str]
    date: datetime.datetime
    sender: bytes | None


def spool_message(
    stream: BinaryIO, flags: frozenset[str], date: datetime.datetime, directory: str
) -> Spooled:
    """Transform the message read from ``stream`` into a temporary file in
    ``directory`` (the copy of a message from one mbox to another)."""
    tx = InputTransformer()
    spool: BinaryIO = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115
    try:
        while chunk := stream.read(CHUNK):
            spool.write(tx.feed(chunk))
        spool.write(tx.finish())
        spool.flush()
    except BaseException:
        spool.close()
        raise
    return Spooled(spool, tx.size, flags, date, tx.return_path)


class MboxAppendWriter(AppendWriter):
    """Spools the transformed message to an anonymous temporary file; the commit copies
    it into the mbox under the locks (see the module docs)."""

    def __init__(
        self,
        folder: MboxFolder,
        flags: frozenset[str],
        date: datetime.datetime,
        assign_uid: bool,
    ) -> None:
        self._folder = folder
        self._flags = flags
        self._date = date
        self._assign_uid = assign_uid
        self._tx = InputTransformer()
        self._spool: BinaryIO | None = None
        self._done = False

    def write(self, chunk: bytes) -> None:
        """Transform and spool the next piece."""
        if self._done:
            raise StoreError("the append is over")
        data = self._tx.feed(bytes(chunk))
        if data:
            self._spool_file().write(data)

    def _spool_file(self) -> BinaryIO:
        if self._spool is None:
            self._spool = tempfile.TemporaryFile(dir=self._folder._store.root)  # noqa: SIM115
        return self._spool

    def commit(self) -> AppendResult:
        """Append to the mbox; returns after the mbox and the index are fsynced."""
        if self.result is not None:
            return self.result
        if self._done:
            raise StoreError("the append was aborted")
        try:
            spool = self._spool_file()
            spool.write(self._tx.finish())
            spool.flush()
            item = Spooled(spool, self._tx.size, self._flags, self._date, self._tx.return_path)
            uid = self._folder._commit_grouped(item)
        except BaseException:
            self.abort()
            raise
        self.result = AppendResult(
            uidvalidity=self._folder._state.uidvalidity,
            uid=uid if self._assign_uid else None,
            size=self._tx.size,
        )
        self._close()
        return self.result

    def _close(self) -> None:
        self._done = True
        spool, self._spool = self._spool, None
        if spool is not None:
            spool.close()

    def abort(self) -> None:
        """Drop the spooled message; the mbox was never touched."""
        if self.result is None:
            self._close()


def _separator(fd: int, size: int) -> bytes:
    """What must come before a new ``From`` line at the end of a file of ``size``
    bytes: the empty line that ends the last message, if it is not there."""
    if not size:
        return b""
    tail = os.pread(fd, 2, max(size - 2, 0))
    if not tail.endswith(b"\n"):
        return b"\n\n"
    if tail == b"\n\n" or size == 1:
        return b""
    return b"\n"


def _write_one(fd: int, item: Spooled, pos: int) -> tuple[int, int, bytes]:
    """Write ``item`` with its ``From`` line at ``pos``: returns the new end, the
    ``From`` line's length and the head of what was written (for its CRC)."""
    from_line = make_from_line(item.sender, item.date)
    end = pos + pwrite_all(fd, from_line, pos)
    item.spool.seek(0)
    head = from_line + item.spool.read(HEAD)
    item.spool.seek(0)
    while chunk := item.spool.read(CHUNK):
        end += pwrite_all(fd, chunk, end)
    return end, len(from_line), head[: end - pos]


def append_spooled(
    state: IndexState, fd: int, index: str, items: Sequence[Spooled], *, fsync: bool
) -> list[int]:
    """Under the folder's locks, with ``state`` up to date: append ``items`` to the
    mbox open on ``fd`` (pending record, write, fsync, index records) and return their
    UIDs. On any failure the file is truncated back and nothing is kept."""
    size = os.fstat(fd).st_size
    prefix = _separator(fd, size)
    append_records(state, index, [f"P {size}\n"], fsync)
    try:
        pos = size + (pwrite_all(fd, prefix, size) if prefix else 0)
        records = []
        modseq = state.highestmodseq + 1
        first = state.uidnext
        for k, item in enumerate(items):
            offset = pos
            pos, from_len, head = _write_one(fd, item, pos)
            info = MessageInfo(
                uid=first + k,
                flags=item.flags,
                internaldate=item.date,
                size=item.size,
                modseq=modseq + k,
            )
            entry = Entry(
                info, offset, pos - offset, from_len, head_crc(head), True, modseq + k, state.ref
            )
            records.append(entry.record("A"))
        if fsync:
            os.fsync(fd)
        records.append(stat_record(stat_key(os.fstat(fd))))
        records.append("C\n")
        append_records(state, index, records, fsync)
    except BaseException:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
            if fsync:
                os.fsync(fd)
            for uid in [u for u, e in state.msgs.items() if e.offset >= size]:
                del state.msgs[uid]
            append_records(state, index, ["C\n", stat_record(stat_key(os.fstat(fd)))], fsync)
        raise
    return list(range(first, first + len(items)))
