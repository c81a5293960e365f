"""The server's command reader (mailagents/imap/_framing_server.py): bytes to command
frames, whole and one byte at a time, the limits, TOOBIG and BYE, IDLE and raw lines."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents._protocol import NEED_DATA, LocalProtocolError
from mailagents.imap._frame import Frame, Streamed
from mailagents.imap._framing import (
    ContinuationNeeded,
    FrameError,
    FrameErrorKind,
    FrameReceived,
    IdleDone,
    LiteralChunk,
    LiteralEnd,
    LiteralStart,
    RawLine,
    announcement,
)
from mailagents.imap._framing_server import CommandReader

K = FrameErrorKind


def collect(
    reader: CommandReader, pieces: Iterable[bytes], *, refuse: bool = False
) -> list[object]:
    """Feed ``pieces`` one after the other, draining events after each; answer every
    ContinuationNeeded with go_ahead (or refuse). Consecutive chunks are merged so that
    the result does not depend on how the input was cut."""
    events: list[object] = []

    def drain() -> None:
        while (event := reader.next_event()) is not NEED_DATA:
            if isinstance(event, LiteralChunk) and events and isinstance(events[-1], LiteralChunk):
                prev = events.pop()
                assert isinstance(prev, LiteralChunk) and prev.index == event.index
                event = LiteralChunk(index=event.index, data=prev.data + event.data)
            events.append(event)
            if isinstance(event, ContinuationNeeded):
                reader.refuse() if refuse else reader.go_ahead()

    for piece in pieces:
        reader.receive_data(piece)
        drain()
    return events


def ways(data: bytes) -> list[list[bytes]]:
    return [[data], [data[i : i + 1] for i in range(len(data))]]


def frames(events: list[object]) -> list[Frame]:
    return [e.frame for e in events if isinstance(e, FrameReceived)]


@pytest.mark.parametrize("split", [0, 1])
def test_simple_commands(split: int) -> None:
    data = b'a1 NOOP\r\na2 LOGIN fred "pass"\r\n\r\n'
    events = collect(CommandReader(), ways(data)[split])
    assert frames(events) == [
        Frame(lines=(b"a1 NOOP",)),
        Frame(lines=(b'a2 LOGIN fred "pass"',)),
        Frame(lines=(b"",)),
    ]


@pytest.mark.parametrize("split", [0, 1])
def test_rfc_7888_example_non_synchronising(split: int) -> None:
    # RFC 7888 §3 (and RFC 2088): C: A001 LOGIN {11+} / FRED FOOBAR {7+} / fat man
    data = b"A001 LOGIN {11+}\r\nFRED FOOBAR {7+}\r\nfat man\r\n"
    events = collect(CommandReader(), ways(data)[split])
    assert events == [
        FrameReceived(
            frame=Frame(
                lines=(b"A001 LOGIN {11+}", b" {7+}", b""),
                literals=(b"FRED FOOBAR", b"fat man"),
            )
        )
    ]


@pytest.mark.parametrize("split", [0, 1])
def test_synchronising_literal_asks_for_continuation(split: int) -> None:
    data = b"A001 LOGIN {11}\r\nFRED FOOBAR {7}\r\nfat man\r\n"
    events = collect(CommandReader(), ways(data)[split])
    assert events == [
        ContinuationNeeded(tag="A001", size=11, binary=False, message=False, index=0),
        ContinuationNeeded(tag="A001", size=7, binary=False, message=False, index=1),
        FrameReceived(
            frame=Frame(
                lines=(b"A001 LOGIN {11}", b" {7}", b""),
                literals=(b"FRED FOOBAR", b"fat man"),
            )
        ),
    ]


def test_reader_waits_until_go_ahead() -> None:
    reader = CommandReader()
    reader.receive_data(b"a LOGIN {3}\r\n")
    assert isinstance(reader.next_event(), ContinuationNeeded)
    assert reader.waiting
    reader.receive_data(b"bob x\r\n")
    assert reader.next_event() is NEED_DATA  # nothing read until the core decides
    reader.go_ahead()
    assert reader.next_event() == FrameReceived(
        frame=Frame(lines=(b"a LOGIN {3}", b" x"), literals=(b"bob",))
    )


def test_refused_literal_drops_the_command() -> None:
    events = collect(CommandReader(), [b"a LOGIN {3}\r\nb NOOP\r\n"], refuse=True)
    assert events[1:] == [FrameReceived(frame=Frame(lines=(b"b NOOP",)))]


def test_go_ahead_and_refuse_misuse() -> None:
    reader = CommandReader()
    with pytest.raises(LocalProtocolError):
        reader.go_ahead()
    with pytest.raises(LocalProtocolError):
        reader.refuse()


@pytest.mark.parametrize("split", [0, 1])
def test_literal8_and_binary_flag(split: int) -> None:
    data = b"a APPEND INBOX ~{3+}\r\n\x00\x01\x02\r\n"
    events = collect(CommandReader(), ways(data)[split])
    assert events == [
        LiteralStart(
            tag="a",
            size=3,
            binary=True,
            index=0,
            head=Frame(lines=(b"a APPEND INBOX ~{3+}",)),
        ),
        LiteralChunk(index=0, data=b"\x00\x01\x02"),
        LiteralEnd(index=0),
        FrameReceived(
            frame=Frame(
                lines=(b"a APPEND INBOX ~{3+}", b""),
                literals=(Streamed(size=3, binary=True, index=0),),
            )
        ),
    ]


MESSAGE = b"From: a@b\r\n\r\nhello\r\n"


@pytest.mark.parametrize("split", [0, 1])
def test_append_message_is_streamed_but_a_literal_mailbox_is_not(split: int) -> None:
    n = len(MESSAGE)
    data = (
        b'A3 append {5}\r\nINBOX (\\Seen) "07-Feb-1994 21:52:25 -0800" {%d}\r\n' % n
        + MESSAGE
        + b"\r\n"
    )
    events = collect(CommandReader(), ways(data)[split])
    assert [type(e) for e in events] == [
        ContinuationNeeded,
        ContinuationNeeded,
        LiteralStart,
        LiteralChunk,
        LiteralEnd,
        FrameReceived,
    ]
    assert events[0] == ContinuationNeeded(tag="A3", size=5, binary=False, message=False, index=0)
    head = Frame(lines=(b"A3 append {5}", data.split(b"\r\n")[1][5:]), literals=(b"INBOX",))
    assert events[1] == ContinuationNeeded(
        tag="A3", size=n, binary=False, message=True, index=1, head=head
    )
    start = events[2]
    assert isinstance(start, LiteralStart) and start.head.literals == (b"INBOX",)
    assert events[3] == LiteralChunk(index=1, data=MESSAGE)
    frame = frames(events)[0]
    assert frame.literals == (b"INBOX", Streamed(size=n, index=1))


def test_multiappend_streams_every_message() -> None:
    data = b"a APPEND INBOX {2+}\r\nm1 (\\Seen) {2+}\r\nm2\r\n"
    events = collect(CommandReader(), [data])
    assert [e.data for e in events if isinstance(e, LiteralChunk)] == [b"m1", b"m2"]
    assert frames(events)[0].literals == (Streamed(size=2, index=0), Streamed(size=2, index=1))


@pytest.mark.parametrize("line", [b"a UID APPEND x {2+}", b"a APPENDX x {2+}", b"a LOGIN {2+}"])
def test_not_an_append(line: bytes) -> None:
    events = collect(CommandReader(), [line + b"\r\nab\r\n"])
    assert frames(events)[0].literals == (b"ab",)


def test_streamed_chunks_are_bounded() -> None:
    reader = CommandReader(chunk_size=10)
    reader.receive_data(b"a APPEND INBOX {25+}\r\n" + b"x" * 25 + b"\r\n")
    sizes = []
    while (event := reader.next_event()) is not NEED_DATA:
        if isinstance(event, LiteralChunk):
            sizes.append(len(event.data))
    assert sizes == [10, 10, 5]


# --- limits ----------------------------------------------------------------------------


def test_line_too_long_is_bad_and_the_session_goes_on() -> None:
    reader = CommandReader(max_line=100)
    data = b"t1 " + b"x" * 500 + b"\r\nt2 NOOP\r\n"
    for pieces in ways(data):
        reader = CommandReader(max_line=100)
        events = collect(reader, pieces)
        assert events == [
            FrameError(tag="t1", kind=K.LINE_TOO_LONG, text="Line too long"),
            FrameReceived(frame=Frame(lines=(b"t2 NOOP",))),
        ]


def test_line_limit_counts_the_crlf() -> None:
    events = collect(CommandReader(max_line=10), [b"12345678\r\n123456789\r\n"])
    assert frames(events) == [Frame(lines=(b"12345678",))]
    assert isinstance(events[1], FrameError)


def test_literal_too_big_synchronising_is_refused_before_the_octets() -> None:
    for pieces in ways(b"a LOGIN {200}\r\nb NOOP\r\n"):
        events = collect(CommandReader(max_literal=100), pieces)
        assert events == [
            FrameError(tag="a", kind=K.LITERAL_TOO_BIG, text="Literal too big"),
            FrameReceived(frame=Frame(lines=(b"b NOOP",))),
        ]


def test_huge_announcement_allocates_nothing() -> None:
    reader = CommandReader()
    events = collect(reader, [b"a APPEND INBOX {4294967295}\r\n"])
    assert events == [FrameError(tag="a", kind=K.LITERAL_TOO_BIG, text="Literal too big")]
    assert reader.buffered == 0


@pytest.mark.parametrize("split", [0, 1])
def test_non_synchronising_too_big_is_skipped_and_answered(split: int) -> None:
    data = b"a LOGIN {200+}\r\n" + b"y" * 200 + b" {3+}\r\nabc\r\nb NOOP\r\n"
    events = collect(CommandReader(max_literal=100), ways(data)[split])
    assert events == [
        FrameError(tag="a", kind=K.LITERAL_TOO_BIG, text="Literal too big"),
        FrameReceived(frame=Frame(lines=(b"b NOOP",))),
    ]


def test_non_synchronising_too_big_with_bye() -> None:
    reader = CommandReader(max_literal=100, oversized_bye=True)
    events = collect(reader, [b"a LOGIN {200+}\r\n" + b"y" * 200 + b"\r\nb NOOP\r\n"])
    assert events == [
        FrameError(tag="a", kind=K.LITERAL_TOO_BIG, fatal=True, text="Literal too big")
    ]
    reader.receive_data(b"c NOOP\r\n")
    assert reader.next_event() is NEED_DATA and reader.buffered == 0


def test_append_limit_is_separate() -> None:
    reader = CommandReader(max_literal=10, max_append=1000)
    events = collect(reader, [b"a APPEND INBOX {500+}\r\n" + b"m" * 500 + b"\r\n"])
    assert isinstance(events[-1], FrameReceived)
    events = collect(CommandReader(max_literal=1000, max_append=10), [b"a APPEND INBOX {500}\r\n"])
    assert events == [FrameError(tag="a", kind=K.LITERAL_TOO_BIG, text="Literal too big")]


def test_literal_minus() -> None:
    ok = b"a LOGIN {4096+}\r\n" + b"u" * 4096 + b" p\r\n"
    reader = CommandReader(literal_minus=True, max_literal=10_000)
    assert isinstance(collect(reader, [ok])[-1], FrameReceived)
    bad = b"a LOGIN {4097+}\r\n" + b"u" * 4097 + b" p\r\nb NOOP\r\n"
    events = collect(reader, [bad])
    assert events[0] == FrameError(
        tag="a",
        kind=K.NON_SYNC_TOO_BIG,
        text="Non-synchronizing literal over 4096 octets (LITERAL-)",
    )
    assert frames(events) == [Frame(lines=(b"b NOOP",))]
    # A synchronising literal of any size within the limits is fine with LITERAL-.
    events = collect(reader, [b"a LOGIN {5000}\r\n"])
    assert isinstance(events[0], ContinuationNeeded)


def test_command_total_limit() -> None:
    reader = CommandReader(max_line=100, max_command=150, max_literal=100)
    data = b"a LOGIN {90+}\r\n" + b"u" * 90 + b" {90+}\r\n" + b"p" * 90 + b"\r\nb NOOP\r\n"
    events = collect(reader, [data])
    assert events[0] == FrameError(tag="a", kind=K.LITERAL_TOO_BIG, text="Literal too big")
    assert frames(events) == [Frame(lines=(b"b NOOP",))]
    lines = b"a X {1+}\r\n" + b"".join(b"1" + b" x" * 40 + b" {1+}\r\n" for _ in range(3))
    events = collect(CommandReader(max_line=100, max_command=150), [lines + b"1\r\nb NOOP\r\n"])
    assert events[0] == FrameError(tag="a", kind=K.COMMAND_TOO_LONG, text="Command too long")
    assert frames(events) == [Frame(lines=(b"b NOOP",))]


@pytest.mark.parametrize(
    ("line", "fatal"),
    [(b"a LOGIN {9223372036854775808}", False), (b"a LOGIN {99999999999999999999+}", True)],
)
def test_count_beyond_number64_is_bad(line: bytes, fatal: bool) -> None:
    reader = CommandReader()
    events = collect(reader, [line + b"\r\n"])
    assert events == [
        FrameError(tag="a", kind=K.BAD_LITERAL, fatal=fatal, text="Literal count too large")
    ]


def test_announcement_parsing() -> None:
    assert announcement(b"a {0}") is not None
    assert announcement(b"a {00012+}") == announcement(b"a {12+}")
    a = announcement(b"x ~{9223372036854775807}")
    assert a is not None and a.size == 2**63 - 1 and a.binary and not a.non_sync
    assert announcement(b'a "{5}"') is None
    assert announcement(b"a {5 }") is None
    assert announcement(b"a {+}") is None
    assert announcement(b"a {}") is None
    assert announcement(b"a }") is None


# --- IDLE, raw lines, STARTTLS -------------------------------------------------------------


def test_idle_done_any_case() -> None:
    reader = CommandReader()
    events = collect(reader, [b"a IDLE\r\n"])
    assert frames(events) == [Frame(lines=(b"a IDLE",))]
    reader.expect_done()
    assert collect(reader, [b"dOnE\r\nb NOOP\r\n"]) == [
        IdleDone(),
        FrameReceived(frame=Frame(lines=(b"b NOOP",))),
    ]
    reader.expect_done()
    assert collect(reader, [b"NOOP\r\n"]) == [
        FrameError(tag=None, kind=K.NOT_DONE, text="Expected DONE")
    ]


def test_raw_line_ignores_literal_syntax() -> None:
    reader = CommandReader()
    reader.read_raw_line(limit=20)
    assert collect(reader, [b"dGVzdA== {5}\r\n"]) == [RawLine(line=b"dGVzdA== {5}")]
    reader.read_raw_line(limit=20)
    events = collect(reader, [b"x" * 30 + b"\r\n"])
    assert events == [FrameError(tag=None, kind=K.LINE_TOO_LONG, text="Line too long")]


def test_mode_change_only_between_commands() -> None:
    reader = CommandReader()
    collect(reader, [b"a LOGIN {3+}\r\n"])
    assert reader.in_command
    with pytest.raises(LocalProtocolError):
        reader.expect_done()


def test_clear_drops_everything() -> None:
    reader = CommandReader()
    reader.receive_data(b"a STARTTLS\r\nb LOGIN {3+}\r\nx")
    assert reader.next_event() == FrameReceived(frame=Frame(lines=(b"a STARTTLS",)))
    reader.clear()
    assert reader.buffered == 0 and reader.next_event() is NEED_DATA


def test_bad_limits() -> None:
    with pytest.raises(LocalProtocolError):
        CommandReader(max_line=0)


# --- properties --------------------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        b"a NOOP\r\n",
        b"b LOGIN {3}\r\nfoo bar\r\n",
        b"c LOGIN {3+}\r\nfoo {2+}\r\nxy\r\n",
        b"d APPEND INBOX {10+}\r\n0123456789\r\n",
        b"e APPEND {1}\r\nX ~{4}\r\n\x00abc\r\n",
        b"f " + b"z" * 150 + b"\r\n",
        b"g LOGIN {300}\r\n",
        b"h LOGIN {300+}\r\n" + b"q" * 300 + b"\r\n",
        b"\r\n",
        b"i APPEND INBOX {4294967295}\r\n",
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_PIECES, max_size=8), st.data())
def test_any_fragmentation_gives_the_same_events(pieces: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(pieces)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)), max_size=20)))
    parts = [stream[i:j] for i, j in zip([0, *cuts], [*cuts, len(stream)], strict=True)]

    def new() -> CommandReader:
        return CommandReader(
            max_line=128, max_command=400, max_literal=200, max_append=50, chunk_size=7
        )

    whole = collect(new(), [stream])
    assert collect(new(), parts) == whole
    assert collect(new(), ways(stream)[1]) == whole


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40) | _PIECES, max_size=10))
def test_any_input_is_framed_and_buffers_stay_bounded(pieces: list[bytes]) -> None:
    limit, chunk = 128, 16
    reader = CommandReader(
        max_line=limit, max_command=400, max_literal=200, max_append=50, chunk_size=chunk
    )
    stream = b"".join(pieces)
    for i in range(0, len(stream), chunk):
        reader.receive_data(stream[i : i + chunk])
        while (event := reader.next_event()) is not NEED_DATA:
            if isinstance(event, ContinuationNeeded):
                reader.go_ahead()
        assert reader.buffered <= limit + chunk
        assert len(reader._literal) <= 200  # an inline literal within its limit
