"""The kernel's bounded line reader (mailagents/_protocol/_lines.py), shared by every core."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents._protocol import BARE_LF, TOO_LONG, LineReader


def take_all(reader: LineReader, limit: int, *, crlf_only: bool = False) -> list[object]:
    lines: list[object] = []
    while (line := reader.take_line(limit, crlf_only=crlf_only)) is not None:
        lines.append(line)
    return lines


def test_lines_crlf_and_bare_lf() -> None:
    reader = LineReader()
    reader.append(b"a\r\nb\nc\r")
    assert take_all(reader, 10) == [b"a", b"b"]
    assert len(reader) == 2
    reader.append(b"\n")
    assert take_all(reader, 10) == [b"c"]


def test_crlf_only_reports_a_bare_lf_and_goes_on() -> None:
    reader = LineReader()
    reader.append(b"a\nb\r\n" + b"x" * 20 + b"\n")
    # A bare-LF line that is also too long is too long first.
    assert take_all(reader, 10, crlf_only=True) == [BARE_LF, b"b", TOO_LONG]


@pytest.mark.parametrize(
    ("line", "expected"),
    # The limit counts the CRLF: 8 octets of text + CRLF fit in 10.
    [(b"", b""), (b"x" * 8, b"x" * 8), (b"x" * 9, TOO_LONG), (b"x" * 100, TOO_LONG)],
)
@pytest.mark.parametrize("ending", [b"\r\n", b"\n"])
def test_limit_includes_crlf(line: bytes, expected: object, ending: bytes) -> None:
    reader = LineReader()
    reader.append(line + ending + b"ok\r\n")
    assert take_all(reader, 10) == [expected, b"ok"]
    # One byte at a time: the buffer never grows past the limit.
    reader = LineReader()
    got: list[object] = []
    for byte in line + ending + b"ok\r\n":
        reader.append(bytes([byte]))
        assert len(reader) <= 11
        got += take_all(reader, 10)
    assert got == [expected, b"ok"]


def test_discarding_is_visible_until_the_line_ends() -> None:
    reader = LineReader()
    reader.append(b"x" * 50)
    assert reader.take_line(10) is None
    assert reader.discarding
    reader.append(b"\r\nok\r\n")
    assert take_all(reader, 10) == [TOO_LONG, b"ok"]
    assert not reader.discarding


def test_clear_forgets_a_line_being_discarded() -> None:
    reader = LineReader()
    reader.append(b"x" * 50)
    assert reader.take_line(10) is None
    reader.clear()
    assert not reader.discarding
    reader.append(b"auth plain\r\n")
    assert reader.startswith(b"AUTH ")
    assert not reader.startswith(b"AUTH PLAIN X")
    assert reader.take_line(20) == b"auth plain"


def test_buffer_is_shared_with_byte_stream_phases() -> None:
    reader = LineReader()
    reader.append(b"DATA\r\nbody bytes")
    assert reader.take_line(100) == b"DATA"
    assert reader.buffer == b"body bytes"
    del reader.buffer[:5]
    assert len(reader) == 5


@given(st.binary(max_size=400), st.lists(st.integers(1, 40), max_size=30), st.integers(3, 64))
def test_any_fragmentation_gives_the_same_lines(data: bytes, cuts: list[int], limit: int) -> None:
    whole = LineReader()
    whole.append(data)
    expected = take_all(whole, limit, crlf_only=True)
    pieces = LineReader()
    got: list[object] = []
    pos = 0
    for cut in [*cuts, len(data)]:
        pieces.append(data[pos : pos + cut])
        pos += cut
        got += take_all(pieces, limit, crlf_only=True)
        # Bounded: an incomplete line never holds more than the limit (plus the one
        # octet kept for a possible CR) beyond what the last append brought.
        assert b"\n" in pieces.buffer or len(pieces) <= max(limit, cut) + 1
    pieces.append(data[pos:])
    got += take_all(pieces, limit, crlf_only=True)
    assert got == expected
    for line in got:
        assert line in (TOO_LONG, BARE_LF) or (
            isinstance(line, bytes) and b"\n" not in line and len(line) + 2 <= limit
        )
