"""``mailagents-snapshot``: a cache of what opening a big Maildir folder reads.

Opening a folder parses ``dovecot-uidlist`` and ``mailagents-modseq`` and lists
``cur/`` and ``new/``; for 100,000 messages that is most of a second. After an open that
found the folder consistent, the reading side writes what it parsed to this file, with
the *stamp* of everything the parse depended on (device, inode, size, mtime and ctime of
the uidlist, the state journal and ``dovecot-keywords``; device, inode, mtime and ctime
of ``cur/`` and ``new/``). The next process that opens the folder and finds the very same
stamp loads the file instead of parsing. Any doubt means the normal path: another stamp,
another format version, a short or damaged file (a CRC-32 covers every byte after the
fixed header), or values that are not what the writer makes.

The file is a cache only: it is written by temporary file and rename, without fsync, by
one writer at a time (``mailagents-snapshot.tmp`` is created exclusively), and removing
it is always safe. Layout: :data:`MAGIC`, then ``>IIQI`` (format version, stamp length,
body length, CRC-32 of stamp and body), then the stamp and the body, each a
:mod:`marshal` dump of plain tuples, lists, ints and strings.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
import struct
import time
import zlib
from typing import Any

from mailagents.store._fileio import write_all

__all__ = ["SNAPSHOT", "VERSION", "load", "write"]

log = logging.getLogger(__name__)

SNAPSHOT = "mailagents-snapshot"
VERSION = 3
MAGIC = b"mailagents-snapshot\n"
_HEADER = struct.Struct(">IIQI")
_FIXED = len(MAGIC) + _HEADER.size
_STALE_TMP_NS = 60 * 1_000_000_000  # a temporary file this old was left by a crash


def path_of(folder_path: str) -> str:
    """The snapshot file of a folder directory."""
    return os.path.join(folder_path, SNAPSHOT)


def load(folder_path: str, stamp: object) -> Any:
    """The body of the folder's snapshot if the file is whole, of this format version,
    and was written for exactly ``stamp``; else ``None``."""
    try:
        fd = os.open(path_of(folder_path), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, _FIXED, 0)
        if len(head) != _FIXED or not head.startswith(MAGIC):
            return None
        version, stamp_len, body_len, crc = _HEADER.unpack_from(head, len(MAGIC))
        if version != VERSION or size != _FIXED + stamp_len + body_len:
            return None
        stamp_data = os.pread(fd, stamp_len, _FIXED)
        if len(stamp_data) != stamp_len or marshal.loads(stamp_data) != stamp:
            return None
        body_data = _pread_all(fd, body_len, _FIXED + stamp_len)
    except (OSError, ValueError, EOFError, TypeError):
        return None
    finally:
        os.close(fd)
    if len(body_data) != body_len or zlib.crc32(body_data, zlib.crc32(stamp_data)) != crc:
        log.debug("%s: damaged snapshot ignored", folder_path)
        return None
    try:
        return marshal.loads(body_data)
    except (ValueError, EOFError, TypeError):
        return None


def write(folder_path: str, stamp: Any, body: Any) -> bool:
    """Write the snapshot (temporary file and rename; no fsync: it is a cache). Returns
    whether it was written; failures are logged and otherwise ignored."""
    path = path_of(folder_path)
    tmp = path + ".tmp"
    try:
        stamp_data = marshal.dumps(stamp)
        body_data = marshal.dumps(body)
    except ValueError:
        log.debug("%s: snapshot not serialisable", folder_path, exc_info=True)
        return False
    crc = zlib.crc32(body_data, zlib.crc32(stamp_data))
    header = MAGIC + _HEADER.pack(VERSION, len(stamp_data), len(body_data), crc)
    try:
        fd = _create_tmp(tmp)
    except OSError:
        log.debug("%s: cannot create %s", folder_path, tmp, exc_info=True)
        return False
    if fd < 0:
        return False  # another process is writing one
    try:
        try:
            for part in (header, stamp_data, body_data):
                write_all(fd, part)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError:
        log.debug("%s: snapshot not written", folder_path, exc_info=True)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False
    return True


def _create_tmp(tmp: str) -> int:
    """Create the temporary file exclusively: -1 if another writer has it (one left
    behind by a crash long ago is removed)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        return os.open(tmp, flags, 0o600)
    except FileExistsError:
        try:
            age = time.time_ns() - os.stat(tmp).st_mtime_ns
        except FileNotFoundError:
            age = _STALE_TMP_NS
        if age < _STALE_TMP_NS:
            return -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        try:
            return os.open(tmp, flags, 0o600)
        except FileExistsError:
            return -1


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    chunks = []
    while length > 0:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            break
        chunks.append(chunk)
        length -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)
