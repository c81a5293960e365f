"""Rewriting an mbox, for :class:`~mailagents.store.mbox.MboxFolder`: expunge and
``sync()`` write the kept messages, with their flag headers brought up to date, into a
temporary file beside the mbox and rename it over the old one; renaming INBOX copies
the whole file to a new folder that must not exist.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable, Generator, Iterator

from mailagents.store._fileio import fsync_dir
from mailagents.store._mbox_append import CHUNK, pwrite_all
from mailagents.store._mbox_format import (
    FLAG_HEADERS,
    HEAD,
    LOOKAHEAD,
    FileRef,
    PreadLines,
    flag_header_lines,
    flags_from_headers,
    head_crc,
    header_name,
    make_from_line,
)
from mailagents.store._mbox_index import Entry, IndexState, stat_key, write_full
from mailagents.store._mbox_lock import fcntl_try_lock, fcntl_unlock
from mailagents.store._model import FolderExistsError

TMP_MARK = ".mailagents-tmp-"
"""In the names of the temporary files of a rewrite (``.NAME.mailagents-tmp-XXXX``)."""

_HEADER_LIMIT = 256 * 1024
"""Flag headers are looked for in this much of a message's header section at most."""


def temporary_path(path: str) -> str:
    """A fresh name for a rewrite's temporary file beside ``path``."""
    directory, base = os.path.split(path)
    return os.path.join(directory, "." + base + TMP_MARK + secrets.token_hex(6))


def _is_flag_header(piece: bytes, continuing: bool) -> bool:
    """Whether the header line ``piece`` is (or continues) a flag header."""
    return header_name(piece) in FLAG_HEADERS or (continuing and piece[:1] in (b" ", b"\t"))


def _flag_headers(lines: PreadLines) -> tuple[list[bytes], bool]:
    """The flag header lines of the header section ahead in ``lines``, and whether
    they can be regenerated (the section ended within the bounded look)."""
    hidden: list[bytes] = []
    header_bytes = 0
    bol = True
    continuing = False
    while header_bytes < _HEADER_LIMIT:
        piece = lines.readline(LOOKAHEAD + 1)
        if not piece:
            break
        header_bytes += len(piece)
        if bol:
            if piece == b"\n":
                return hidden, True
            continuing = _is_flag_header(piece, continuing)
            if continuing:
                hidden.append(piece)
        bol = piece.endswith(b"\n")
    return hidden, header_bytes < _HEADER_LIMIT


def _headers_with_flags(
    lines: PreadLines, flags: frozenset[str], old: bool
) -> Generator[bytes, None, bytes]:
    """The header section ahead in ``lines`` with its flag headers replaced by headers
    that say ``flags`` (``old``: ``Status:`` said ``O``); returns the last two bytes
    yielded."""
    last = b""
    bol = True
    continuing = False
    while True:
        piece = lines.readline(LOOKAHEAD + 1)
        if not piece or (bol and piece == b"\n"):
            if last and not last.endswith(b"\n"):
                yield b"\n"
            yield b"".join(flag_header_lines(flags, old))
            if not piece:
                return b"\n"
            yield piece
            return b"\n\n"
        if bol:
            continuing = _is_flag_header(piece, continuing)
            if continuing:
                bol = piece.endswith(b"\n")
                continue
        bol = piece.endswith(b"\n")
        yield piece
        last = piece[-2:] if len(piece) >= 2 else last[-1:] + piece


def rewrite_message(fd: int, e: Entry, flags: frozenset[str]) -> Iterator[bytes]:
    """The stored bytes of one message for a rewritten mbox: verbatim when its flag
    headers already say ``flags``, else with those headers regenerated. Always ends with
    the empty line before the next separator."""
    start = e.offset + e.from_len
    end = e.offset + e.length
    hidden, complete = _flag_headers(PreadLines(fd, start, end))
    current, old = flags_from_headers(hidden)
    if e.from_len:
        yield PreadLines(fd, e.offset, end).read(e.from_len)
    else:
        yield make_from_line(None, e.info.internaldate)
    lines = PreadLines(fd, start, end)
    last = b""
    if current != flags and complete:
        last = yield from _headers_with_flags(lines, flags, old)
    while block := lines.read(CHUNK):
        yield block
        last = block[-2:] if len(block) >= 2 else last[-1:] + block
    if not last.endswith(b"\n"):
        yield b"\n\n"
    elif not last.endswith(b"\n\n"):
        yield b"\n"


def _copy_messages(
    state: IndexState, fd: int, ref: FileRef, drop: set[int], touch: Callable[[], None]
) -> dict[int, Entry]:
    """Write every message of ``state`` but those in ``drop`` to the new file of
    ``ref``; returns their entries there."""
    out = ref.fd
    msgs: dict[int, Entry] = {}
    pos = 0
    buf: list[bytes] = []
    buffered = 0
    for n, (uid, e) in enumerate(state.msgs.items()):
        if uid in drop:
            continue
        if n % 1000 == 999:
            touch()
        offset = pos
        from_line = b""
        head = b""
        for piece in rewrite_message(fd, e, e.info.flags):
            if not from_line:
                from_line = piece
            if len(head) < HEAD:
                head += piece[: HEAD - len(head)]
            buf.append(piece)
            buffered += len(piece)
            pos += len(piece)
            if buffered >= CHUNK:
                pwrite_all(out, b"".join(buf), pos - buffered)
                buf, buffered = [], 0
        msgs[uid] = Entry(
            e.info,
            offset,
            pos - offset,
            len(from_line),
            head_crc(head[: pos - offset]),
            e.quoted,
            e.cmodseq,
            ref,
        )
    if buf:
        pwrite_all(out, b"".join(buf), pos - buffered)
    return msgs


def _discard(*paths: str) -> None:
    """Remove what a failed rewrite or copy wrote."""
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


def rewrite(
    state: IndexState,
    fd: int,
    path: str,
    index: str,
    drop: set[int],
    *,
    fsync: bool,
    touch: Callable[[], None],
) -> IndexState:
    """Under the locks: write the mbox at ``path`` (open on ``fd``) anew without the
    messages in ``drop``, with its index, and rename both over the old ones; returns
    the new index state. ``touch`` keeps the dotlock fresh on long rewrites."""
    st = os.fstat(fd)
    tmp = temporary_path(path)
    out = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, st.st_mode & 0o7777)
    ref = FileRef(out)
    new = IndexState(
        uidvalidity=state.uidvalidity,
        uidnext=state.uidnext,
        highestmodseq=state.highestmodseq,
        expunged=state.expunged.copy(),
        forgotten=state.forgotten,
        first_recent=state.first_recent,
        ref=ref,
    )
    try:
        with contextlib.suppress(OSError):
            os.fchown(out, -1, st.st_gid)
        fcntl_try_lock(out)
        new.msgs = _copy_messages(state, fd, ref, drop, touch)
        if fsync:
            os.fsync(out)
        if drop:
            new.highestmodseq += 1
            for uid in sorted(drop):
                new.log_expunge(uid, new.highestmodseq)
        new.mbox_stat = stat_key(os.fstat(out))
        write_full(new, index, fsync, rename=False)
        os.rename(tmp, path)
    except BaseException:
        _discard(tmp, index + ".new")
        raise
    os.replace(index + ".new", index)
    if fsync:
        fsync_dir(os.path.dirname(path))
        if os.path.dirname(index) != os.path.dirname(path):
            fsync_dir(os.path.dirname(index))
    with contextlib.suppress(OSError):
        fcntl_unlock(out)
    return new


def export(state: IndexState, fd: int, path: str, index: str, *, fsync: bool) -> None:
    """Under the locks: copy the mbox open on ``fd`` whole, with UIDs and flags, to a new
    mbox at ``path`` (which must not exist) with its index at ``index``."""
    size = os.fstat(fd).st_size
    tmp = temporary_path(path)
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        pos = 0
        while pos < size:
            block = os.pread(fd, min(CHUNK, size - pos), pos)
            if not block:
                break
            pos += pwrite_all(out, block, pos)
        if fsync:
            os.fsync(out)
        copy = IndexState(
            uidvalidity=state.uidvalidity,
            uidnext=state.uidnext,
            highestmodseq=state.highestmodseq,
            msgs=dict(state.msgs),
            first_recent=state.first_recent,
            mbox_stat=stat_key(os.fstat(out)),
        )
        write_full(copy, index, fsync, rename=False)
        publish_new(tmp, path)
        os.replace(index + ".new", index)
    except BaseException:
        _discard(tmp, index + ".new")
        raise
    finally:
        os.close(out)
    if fsync:
        fsync_dir(os.path.dirname(path))


def publish_new(tmp: str, path: str) -> None:
    """Give ``tmp`` the name ``path``, which must not exist: a hard link fails if it
    does, so a folder another process created meanwhile is never replaced. Where hard
    links are not possible, the check and the rename leave a small window."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FolderExistsError(path) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EMLINK, errno.EXDEV):
            raise
        if os.path.exists(path):
            raise FolderExistsError(path) from None
        os.rename(tmp, path)
    else:
        os.unlink(tmp)
