"""The streaming byte-stuffer (mailagents/pop3/_dotstuff.py); the line reader it used to
hold is the kernel's, tested in tests/protocol/test_lines.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents.pop3._dotstuff import DotStuffer

STUFFING = [
    # (message, TOP lines, expected body before ".\r\n")
    (b"a\r\nb\r\n", None, b"a\r\nb\r\n"),
    (b".\r\n", None, b"..\r\n"),
    (b"..x\r\n.\r\n", None, b"...x\r\n..\r\n"),
    (b"a\nb\n", None, b"a\r\nb\r\n"),  # bare LF -> CRLF
    (b"a\r\nb", None, b"a\r\nb\r\n"),  # no final newline
    (b"a\rb\r\n", None, b"a\rb\r\n"),  # a lone CR stays
    (b"a\r", None, b"a\r\n"),  # a final CR ends the line
    (b"", None, b""),
    (b"\r\n", None, b"\r\n"),
    (b"x.\r\n.x", None, b"x.\r\n..x\r\n"),
    (b"H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\n", 0, b"H: 1\r\nH: 2\r\n\r\n"),
    (b"H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\n", 1, b"H: 1\r\nH: 2\r\n\r\nb1\r\n"),
    (b"H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\n", 2, b"H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\n"),
    (b"H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\n", 9, b"H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\n"),
    (b"H: 1\n\n.b1\nb2", 1, b"H: 1\r\n\r\n..b1\r\n"),
    (b"H: 1\n\r\nb1\nb2", 5, b"H: 1\r\n\r\nb1\r\nb2\r\n"),
    (b"H: 1\r\nno body", 0, b"H: 1\r\nno body\r\n"),  # no blank line: all header
    (b"H: 1\r\n\r\n\r\n\r\nx", 2, b"H: 1\r\n\r\n\r\n\r\n"),  # empty body lines count
]


@pytest.mark.parametrize(("message", "lines", "expected"), STUFFING)
def test_dot_stuffing(message: bytes, lines: int | None, expected: bytes) -> None:
    for size in (len(message) or 1, 1, 2, 3):
        stuffer = DotStuffer(lines)
        out = bytearray()
        for i in range(0, len(message), size):
            out += stuffer.feed(message[i : i + size])
        out += stuffer.finish()
        assert bytes(out) == expected + b".\r\n", (message, lines, size)
        assert not stuffer.wants_more


def test_top_wants_more() -> None:
    stuffer = DotStuffer(1)
    assert stuffer.feed(b"H: 1\r\n\r\n") == b"H: 1\r\n\r\n"
    assert stuffer.wants_more
    assert stuffer.feed(b"b1\r\nb2\r\n") == b"b1\r\n"
    assert not stuffer.wants_more
    assert stuffer.feed(b"more\r\n") == b""
    with pytest.raises(ValueError):
        DotStuffer(-1)


def unstuff(data: bytes) -> bytes:
    assert data.endswith(b"\r\n.\r\n") or data == b".\r\n"
    lines = data[:-3].split(b"\r\n")[:-1] if data != b".\r\n" else []
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)


@given(st.binary(max_size=300), st.lists(st.integers(1, 50), max_size=20))
def test_stuffing_round_trip(message: bytes, cuts: list[int]) -> None:
    stuffer = DotStuffer()
    out = bytearray()
    pos = 0
    for cut in cuts:
        out += stuffer.feed(message[pos : pos + cut])
        pos += cut
    out += stuffer.feed(message[pos:])
    out += stuffer.finish()
    data = bytes(out)
    # No line of the body is a lone "." and every line ends with CRLF.
    body = data[:-3]
    assert b"\r\n.\r\n" not in b"\r\n" + body
    assert body.count(b"\n") == body.count(b"\r\n")
    # Un-stuffing gives back the message with CRLF line ends.
    normal = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if normal and not normal.endswith(b"\r\n"):
        normal = normal[:-1] + b"\r\n" if normal.endswith(b"\r") else normal + b"\r\n"
    assert unstuff(data) == normal


# --- the bulk path of DotStuffer.feed against the line-by-line one ----------------------


class LineByLine(DotStuffer):
    """The reference: every chunk through the exact line-by-line rules."""

    __slots__ = ()

    def feed(self, data: bytes) -> bytes:
        return self._feed_lines(data)


# Mail-like pieces, so that CRLF, bare LF, lone CR, dots at line starts and blank lines
# (TOP's header end) all turn up often; raw bytes too.
PIECES = st.sampled_from(
    [b"\r\n", b"\n", b"\r", b".", b"..", b"\r\n.", b"\r\n\r\n", b"a", b"H: v", b"x.y", b" "]
)
MESSAGES = st.one_of(
    st.lists(PIECES, max_size=60).map(b"".join),
    st.binary(max_size=200),
    st.lists(st.sampled_from([b"\r\n", b"\r\n.", b"ab", b"\r\n\r\n"]), max_size=60).map(
        b"".join
    ),
)


def chunked(message: bytes, cuts: list[int]) -> list[bytes]:
    chunks = []
    pos = 0
    for cut in cuts:
        chunks.append(message[pos : pos + cut])
        pos += cut
    chunks.append(message[pos:])
    return chunks


@given(
    MESSAGES,
    st.lists(st.integers(0, 40), max_size=20),
    st.one_of(st.none(), st.integers(0, 6)),
)
def test_bulk_path_same_bytes_as_line_by_line(
    message: bytes, cuts: list[int], lines: int | None
) -> None:
    fast, slow = DotStuffer(lines), LineByLine(lines)
    for chunk in chunked(message, cuts):
        assert fast.feed(chunk) == slow.feed(chunk), (message, cuts, lines)
        assert fast.wants_more == slow.wants_more
    assert fast.finish() == slow.finish()


@pytest.mark.parametrize("lines", [None, 0, 1, 3, 100])
@pytest.mark.parametrize(
    "message",
    [
        b"H: 1\r\nH: 2\r\n\r\n.b1\r\nb2\r\n..b3\r\n\r\n.\r\nend",
        b"H: 1\nH: 2\n\n.b1\nb2\n..b3\n\n.\nend\n",
        b"H: 1\r\nH: 2\n\r\n.b1\nb2\r\n.\r\n",
        b".starts\r\nwith a dot\r\n\r\n.\r\n.",
        b"lone\rCR\r\n.x\r\r\n\r.\n",
    ],
)
def test_bulk_path_every_split(message: bytes, lines: int | None) -> None:
    """Every split into two chunks, and one byte at a time, against the reference."""
    splits = [[cut] for cut in range(len(message) + 1)] + [[1] * len(message)]
    for cuts in splits:
        fast, slow = DotStuffer(lines), LineByLine(lines)
        got = bytearray()
        want = bytearray()
        for chunk in chunked(message, cuts):
            got += fast.feed(chunk)
            want += slow.feed(chunk)
        got += fast.finish()
        want += slow.finish()
        assert got == want, (message, cuts, lines)


def test_bulk_path_big_chunk() -> None:
    """A message in 64 KiB chunks: CRLF split across chunks, stuffing at a chunk start."""
    line = b"x" * 65 + b"\r\n.y\r\n"
    message = b"Subject: big\r\n\r\n" + line * 5000
    for size in (65536, 65535, 4096, 73):
        fast, slow = DotStuffer(), LineByLine()
        got = b"".join(fast.feed(message[i : i + size]) for i in range(0, len(message), size))
        want = b"".join(slow.feed(message[i : i + size]) for i in range(0, len(message), size))
        assert got == want
        assert got.count(b"\r\n..y\r\n") == 5000
