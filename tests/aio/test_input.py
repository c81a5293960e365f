"""mailagents.aio._input: the bounded input buffer (order, feed size, pausing and
resuming the reader). No sockets and no clock."""

from __future__ import annotations

import pytest

from mailagents.aio._input import FEED, InputBuffer


class Reader:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")


def drain(buffer: InputBuffer) -> list[bytes]:
    out = []
    while data := buffer.take():
        out.append(data)
    return out


def test_empty() -> None:
    buffer = InputBuffer(100, Reader())
    assert buffer.take() == b"" and len(buffer) == 0


def test_a_piece_that_fits_is_handed_out_as_it_came() -> None:
    buffer = InputBuffer(1 << 20, Reader())
    piece = b"x" * FEED
    buffer.append(piece)
    assert buffer.take() is piece
    assert buffer.size == 0


@pytest.mark.parametrize("sizes", [[1, 2, 3], [FEED + 1], [FEED, 1], [5, FEED * 3 + 7, 9]])
def test_order_kept_and_each_take_at_most_a_feed(sizes: list[int]) -> None:
    buffer = InputBuffer(1 << 30, Reader())
    pieces = [bytes([65 + i]) * n for i, n in enumerate(sizes)]
    for piece in pieces:
        buffer.append(piece)
    assert buffer.size == sum(sizes)
    taken = drain(buffer)
    assert b"".join(taken) == b"".join(pieces)
    assert all(0 < len(t) <= FEED for t in taken)
    assert buffer.size == 0


def test_input_appended_between_takes_comes_after() -> None:
    buffer = InputBuffer(1 << 30, Reader())
    buffer.append(b"a" * (FEED + 10))
    first = buffer.take()
    buffer.append(b"b")
    assert first + b"".join(drain(buffer)) == b"a" * (FEED + 10) + b"b"


def test_reading_pauses_over_the_bound_and_resumes_at_half() -> None:
    reader = Reader()
    buffer = InputBuffer(10 * FEED, reader)
    for _ in range(10):
        buffer.append(b"x" * FEED)
    assert reader.calls == []  # at the bound, not over it
    buffer.append(b"y")
    buffer.append(b"z")
    assert reader.calls == ["pause"] and buffer.paused  # paused once
    while buffer.size > 5 * FEED:
        assert reader.calls == ["pause"]
        buffer.take()
    assert reader.calls == ["pause", "resume"] and not buffer.paused
    drain(buffer)
    assert reader.calls == ["pause", "resume"]


def test_clear_and_restart() -> None:
    reader = Reader()
    buffer = InputBuffer(4, reader)
    buffer.append(b"hello")
    assert buffer.paused
    buffer.clear()
    assert buffer.take() == b"" and buffer.paused  # reading stays paused
    buffer.append(b"again")
    buffer.restart()  # someone else resumed reading (a TLS upgrade)
    assert buffer.take() == b"" and not buffer.paused
    assert reader.calls == ["pause"]


def test_no_reader_yet() -> None:
    buffer = InputBuffer(1)
    buffer.append(b"ab")
    assert not buffer.paused and buffer.take() == b"ab"
