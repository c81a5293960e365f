"""Maildir append: a message streamed into ``tmp/`` and delivered by rename
(:class:`_MaildirAppendWriter`), the batch writer behind
:meth:`MaildirFolder.append_batch` (one directory fsync for many messages), and the copy
of one message file into another folder (a hard link, else a copy through ``tmp/``).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import os
import shutil
from collections.abc import Sequence
from typing import cast

from mailagents.store._fileio import write_all
from mailagents.store._maildir_io import _RENAME_RETRIES, LFConverter, fsync_dir
from mailagents.store._maildir_names import (
    build_info,
    file_name,
    keyword_letters_needed,
    name_size,
    sized_name,
    split_flags,
    split_name,
    unique_name,
    unique_names,
)
from mailagents.store._maildir_sync import _Core
from mailagents.store._model import AppendResult, AppendWriter


class _MaildirAppendWriter(AppendWriter):
    """A message streamed into ``tmp/`` and delivered by rename."""

    def __init__(
        self,
        core: _Core,
        flags: frozenset[str],
        internaldate: datetime.datetime | None,
        assign_uid: bool,
    ) -> None:
        self._core = core
        self._flags = flags
        self._internaldate = internaldate
        self._assign_uid = assign_uid
        self._unique = unique_name()
        self._tmp = os.path.join(core.tmp, self._unique)
        self._conv = LFConverter()
        self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._failed = False
        self._base = self._name = ""
        self._extra: frozenset[str] = frozenset()

    def _write_all(self, data: bytes) -> None:
        write_all(self._fd, data)

    def write(self, chunk: bytes) -> None:
        """Add the next piece of the message (CRLF or LF line ends)."""
        if self._fd < 0:
            raise ValueError("append already committed or aborted")
        try:
            self._write_all(self._conv.feed(chunk))
        except BaseException:
            self.abort()
            raise

    def commit(self) -> AppendResult:
        """Make the message durable (file, then directory fsync) and visible."""
        if self.result is not None:
            return self.result
        directory = self._publish()
        if self._core.fsync:
            fsync_dir(directory)
        return self._finish()

    def _publish(self) -> str:
        """The first half of :meth:`commit`: fsync the file and rename it into place.
        Returns the directory it is now in, which must be fsynced before
        :meth:`_finish` (the caller may share that fsync between messages)."""
        if self._fd < 0:
            raise ValueError("append aborted")
        core = self._core
        try:
            self._write_all(self._conv.flush())
            if self._internaldate is not None:
                ts = self._internaldate.timestamp()
                os.utime(self._fd, (ts, ts))
            if core.fsync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            base = sized_name(self._unique, self._conv.disk_size, self._conv.crlf_size)
            extra: frozenset[str] = frozenset()
            if self._flags:
                keywords = keyword_letters_needed(self._flags)
                if keywords:
                    with core.uidlist.lock():
                        core.keywords.ensure(keywords)
                core.keywords.refresh()
                letters = core.keywords.letters()
                named, extra = split_flags(self._flags, letters)
                info = build_info(None, named, letters, core.keywords.names)
                directory, name = core.cur, file_name(base, info)
            else:
                directory, name = core.new, base
            os.rename(self._tmp, os.path.join(directory, name))
        except BaseException:
            self.abort()
            raise
        self._base, self._name, self._extra = base, name, extra
        return directory

    def _finish(self) -> AppendResult:
        """The second half of :meth:`commit`, once the directory is fsynced: the UID
        if asked for, and the result."""
        core = self._core
        base, name, extra = self._base, self._name, self._extra
        uid: int | None = None
        if self._assign_uid or extra:
            with core.uidlist.lock():
                uid = core.assign([base])[base]
                if extra:
                    core.record_new(uid, name, extra)
                minutes = zone_minutes(self._internaldate)
                if minutes:
                    core.record_zones({uid: minutes})
        uidvalidity = core.delivery_uidvalidity()
        self.result = AppendResult(uidvalidity=uidvalidity, uid=uid, size=self._conv.crlf_size)
        return self.result

    def abort(self) -> None:
        """Remove the temporary file."""
        if self.result is not None:
            return
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


class _BatchFile:
    """One message of :meth:`MaildirFolder.append_batch` while it is in ``tmp/``."""

    __slots__ = ("fd", "name", "path", "size")

    def __init__(self, fd: int, path: str, name: str, size: int) -> None:
        self.fd = fd  # -1 once closed
        self.path = path  # in tmp/
        self.name = name  # its name in new/
        self.size = size  # CRLF size

    def discard(self) -> None:
        """Close the file (if open) and remove it, ignoring errors (a delivery that
        failed part-way)."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def append_batch(core: _Core, messages: Sequence[bytes]) -> list[AppendResult | Exception]:
    """The work of :meth:`MaildirFolder.append_batch` on the folder's core."""
    sync = core.fsync
    outcomes: list[AppendResult | Exception | None] = [None] * len(messages)
    tmp_dir, new_dir = core.tmp + os.sep, core.new + os.sep
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    advise = getattr(os, "posix_fadvise", None) if sync else None
    # What is still in tmp/, by index; a file leaves it when renamed or when it
    # fails (and is removed).
    in_tmp: dict[int, _BatchFile] = {}
    try:
        # 1. Write every file, and start its writeback at once (so that the fsyncs
        #    below find the data on its way).
        for index, unique in enumerate(unique_names(len(messages))):
            data = messages[index].replace(b"\r\n", b"\n")  # as LFConverter does
            disk_size = len(data)
            crlf_size = disk_size + data.count(b"\n")
            path = tmp_dir + unique
            try:
                fd = os.open(path, flags, 0o600)
            except Exception as exc:
                outcomes[index] = exc
                continue
            name = sized_name(unique, disk_size, crlf_size)
            in_tmp[index] = _BatchFile(fd, path, name, crlf_size)
            try:
                written = os.write(fd, data)
                if written < disk_size:
                    write_all(fd, memoryview(data)[written:])
            except Exception as exc:
                in_tmp.pop(index).discard()
                outcomes[index] = exc
                continue
            if advise is not None:
                with contextlib.suppress(OSError):  # only a hint
                    advise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        # 2. fsync every file (its data and inode) before any is renamed. Syncing
        #    them all first, rather than fsync-rename in turn, also leaves tmp/
        #    unchanged between the fsyncs: ext4 without a journal writes the parent
        #    directory of a newly created file with its fsync, so a rename out of
        #    tmp/ in between would cost every later fsync two more writes.
        for index, file in list(in_tmp.items()):
            try:
                if sync:
                    os.fsync(file.fd)
                fd, file.fd = file.fd, -1
                os.close(fd)
            except Exception as exc:
                in_tmp.pop(index).discard()
                outcomes[index] = exc
        # 3. Rename each durable file into new/ (readers see it whole: a rename is
        #    atomic), then fsync new/ once for all of them.
        renamed: list[tuple[int, int]] = []
        for index, file in list(in_tmp.items()):
            try:
                os.rename(file.path, new_dir + file.name)
            except Exception as exc:
                in_tmp.pop(index).discard()
                outcomes[index] = exc
                continue
            del in_tmp[index]
            renamed.append((index, file.size))
        if renamed:
            try:
                if sync:
                    fsync_dir(core.new)
                uidvalidity = core.delivery_uidvalidity()
            except Exception as exc:
                for index, _ in renamed:
                    outcomes[index] = exc
            else:
                for index, size in renamed:
                    outcomes[index] = AppendResult(uidvalidity=uidvalidity, uid=None, size=size)
    except BaseException:
        # Interrupted (KeyboardInterrupt, ...): remove what is still in tmp/.
        for file in in_tmp.values():
            file.discard()
        raise
    # Every place holds a result or an exception by now.
    return cast(list[AppendResult | Exception], outcomes)


def zone_minutes(date: datetime.datetime | None) -> int:
    """The offset of ``date`` from UTC in whole minutes (0 for none)."""
    offset = date.utcoffset() if date is not None else None
    return 0 if offset is None else int(offset.total_seconds() // 60)


def copy_one(src: _Core, dst: _Core, name: str, size: int, new_info: str) -> str | None:
    base = split_name(name)[0]
    for _ in range(_RENAME_RETRIES):
        source = os.path.join(src.cur, name)
        try:
            disk = name_size(base, "S")
            if disk is None:
                disk = os.stat(source).st_size
            new_base = sized_name(unique_name(), disk, size)
            target = os.path.join(dst.cur, file_name(new_base, new_info))
            try:
                os.link(source, target)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                _copy_file(source, dst, target, fsync=dst.fsync)
            return new_base
        except FileNotFoundError:
            found = src.find(base)
            if found is None:
                return None
            name = found
    return None


def _copy_file(source: str, dst: _Core, target: str, *, fsync: bool) -> None:
    """Copy a message file through ``tmp/`` when a hard link is not possible."""
    tmp = os.path.join(dst.tmp, unique_name())
    st = os.stat(source)
    try:
        with open(source, "rb") as fin, open(tmp, "xb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 16)
            fout.flush()
            os.utime(fout.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))
            if fsync:
                os.fsync(fout.fileno())
        os.rename(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
