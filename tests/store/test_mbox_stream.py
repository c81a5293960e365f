"""mbox message reads in blocks (``MessageStream`` past the header, ``unquote_body``,
``PreadLines.read_block``) give the very octets of the line-by-line reading they
replace (``PreadLines.readline`` and ``DiskLineFilter.feed`` on every line), whatever
the lines (``From ``, ``>From ``, ``>>From `` and near misses, lines longer than the
lookahead or than a block, a last line without its LF, hidden headers), wherever the
blocks and the reader's reads cut them, and for a big message through a store."""

from __future__ import annotations

import os
import tempfile
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents.store import _mbox_format
from mailagents.store._mbox_format import (
    LOOKAHEAD,
    DiskLineFilter,
    FileRef,
    MessageStream,
    PreadLines,
    unquote_body,
)
from mailagents.store.mbox import MboxStore

_HEADER_LINES = [
    b"Subject: hello",
    b"From: a@example.test",
    b"Status: RO",
    b"X-Keywords: work",
    b" folded continuation",
    b"\tfolded with a tab",
    b">From a quoted header line",
    b"X-Status: A",
]
_BODY_LINES = [
    b"",
    b"plain text",
    b"From the start",
    b">From once",
    b">>From twice",
    b">>>From thrice",
    b">From",
    b">From\ttab",
    b"> From spaced",
    b"x>From inside",
    b">",
    b">>",
    b"From",
    b"carriage\r",
    b"a" * (LOOKAHEAD + 3),
    b"b" * (LOOKAHEAD - 3) + b">From past the lookahead",
    b"c" * 70,
    b">" * (LOOKAHEAD - 4) + b"From at the lookahead's end",
    b">" * (LOOKAHEAD - 3) + b"From past it",
    b"d" * (LOOKAHEAD * 2 + 1),
]


def _quoted(line: bytes) -> bool:
    """mboxrd quoting as DiskLineFilter reads it: ``>+From `` within the first
    ``LOOKAHEAD + 1`` octets."""
    marks = len(line) - len(line.lstrip(b">"))
    return 0 < marks <= LOOKAHEAD - 4 and line[marks:].startswith(b"From ")


def _stored(data: bytes) -> int:
    """A descriptor on an unnamed temporary file holding ``data``."""
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        return os.dup(f.fileno())


def _reference(data: bytes, quoted: bool, size: int) -> bytes:
    """The line-by-line reading (the code before blocks)."""
    fd = _stored(data)
    try:
        lines = PreadLines(fd, 0, len(data))
        filt = DiskLineFilter(quoted)
        out = bytearray()
        while len(out) < size and (piece := lines.readline(LOOKAHEAD + 1)):
            out += filt.feed(piece)
        return bytes(out[:size])
    finally:
        os.close(fd)


def _read(data: bytes, quoted: bool, size: int, reads: list[int]) -> bytes:
    stream = MessageStream(FileRef(_stored(data)), 0, len(data), size, quoted)
    out = bytearray()
    i = 0
    while True:
        buffer = bytearray(reads[i % len(reads)])
        i += 1
        n = stream.readinto(buffer)
        if not n:
            break
        out += buffer[:n]
    stream.close()
    return bytes(out)


@st.composite
def stored_messages(draw: st.DrawFn) -> bytes:
    head = draw(st.lists(st.sampled_from(_HEADER_LINES), max_size=8))
    body = draw(st.lists(st.sampled_from(_BODY_LINES), max_size=60))
    data = b"".join(line + b"\n" for line in head) + b"\n"
    data += b"".join(line + b"\n" for line in body)
    if draw(st.booleans()):
        data += draw(st.sampled_from([b">From no LF", b"tail", b">"]))
    return data


@settings(max_examples=250, deadline=None)
@given(
    data=stored_messages(),
    quoted=st.booleans(),
    block=st.sampled_from([1, LOOKAHEAD + 1, LOOKAHEAD + 2, 5000, 8193, 1 << 16]),
    reads=st.lists(st.integers(1, 9000), min_size=1, max_size=5),
    cut=st.integers(0, 40),
)
def test_blocks_read_as_lines_do(
    data: bytes, quoted: bool, block: int, reads: list[int], cut: int
) -> None:
    full = len(_reference(data, quoted, 1 << 40))
    size = max(0, full - cut)
    with mock.patch.object(_mbox_format, "BODY_BLOCK", block):
        assert _read(data, quoted, size, reads) == _reference(data, quoted, size)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.sampled_from(_BODY_LINES), max_size=30),
    quoted=st.booleans(),
    at=st.integers(0, 400),
)
def test_unquote_body_at_any_cut_of_whole_lines(lines: list[bytes], quoted: bool, at: int) -> None:
    data = b"".join(line + b"\n" for line in lines)
    nl = data.find(b"\n", min(at, len(data)))
    cut = len(data) if nl < 0 else nl + 1
    whole = unquote_body(data, bol=True, quoted=quoted)
    parts = unquote_body(data[:cut], bol=True, quoted=quoted) + unquote_body(
        data[cut:], bol=True, quoted=quoted
    )
    assert parts == whole
    expected = b"".join((ln[1:] if quoted and _quoted(ln) else ln) + b"\r\n" for ln in lines)
    assert whole == expected


def test_unquote_body_mid_line() -> None:
    assert unquote_body(b">From x\n>From y\n", bol=False, quoted=True) == b">From x\r\nFrom y\r\n"
    assert unquote_body(b">>From x\n", bol=True, quoted=False) == b">>From x\r\n"


def test_read_block_ends_at_line_ends() -> None:
    data = b"one\ntwo\nthree without end"
    fd = _stored(data)
    try:
        lines = PreadLines(fd, 0, len(data))
        assert lines.read_block(10) == b"one\ntwo\n"
        assert lines.read_block(3) == b"thr"  # no line end within 3 bytes
        assert lines.read_block(100) == b"ee without end"
        assert lines.read_block(100) == b""
    finally:
        os.close(fd)


def test_big_message_through_the_store(tmp_path: object) -> None:
    line = b"The quick brown fox jumps over the lazy dog.\r\n"
    tricky = b"From here\r\n>From there\r\n>>From everywhere\r\n"
    body = (line * 2000 + tricky) * 60
    data = b"Subject: big\r\nStatus: RO\r\n\r\n" + body
    store = MboxStore(os.path.join(str(tmp_path), "mb"), fsync=False)
    try:
        with store.folder("INBOX") as inbox:
            uid = inbox.append_bytes(data).uid
            assert uid is not None
            inbox.refresh()
            expected = b"Subject: big\r\n\r\n" + body  # Status: is hidden, as before
            assert inbox.read_message(uid) == expected
            with inbox.open_message(uid, 100_000, 300_000) as stream:
                assert stream.read() == expected[100_000:400_000]
    finally:
        store.close()
