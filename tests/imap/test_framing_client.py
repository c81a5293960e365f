"""The client's response reader (mailagents/imap/_framing_client.py): bytes to response
frames, inline and streamed literals, the limits as RemoteProtocolError."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents._protocol import NEED_DATA, LocalProtocolError, RemoteProtocolError
from mailagents.imap._frame import Frame, Streamed
from mailagents.imap._framing import FrameReceived, LiteralChunk, LiteralEnd, LiteralStart
from mailagents.imap._framing_client import ResponseReader


def collect(reader: ResponseReader, pieces: Iterable[bytes]) -> list[object]:
    events: list[object] = []
    for piece in pieces:
        reader.receive_data(piece)
        while (event := reader.next_event()) is not NEED_DATA:
            if isinstance(event, LiteralChunk) and events and isinstance(events[-1], LiteralChunk):
                prev = events.pop()
                assert isinstance(prev, LiteralChunk)
                event = LiteralChunk(index=event.index, data=prev.data + event.data)
            events.append(event)
    return events


def ways(data: bytes) -> list[list[bytes]]:
    return [[data], [data[i : i + 1] for i in range(len(data))]]


FETCH = (
    b"* 12 FETCH (FLAGS (\\Seen) BODY[HEADER.FIELDS (SUBJECT)] {21}\r\n"
    b"Subject: hi there\r\n\r\n)\r\n"
)


@pytest.mark.parametrize("split", [0, 1])
def test_inline_literal(split: int) -> None:
    events = collect(ResponseReader(), ways(FETCH + b"a1 OK done\r\n")[split])
    assert events == [
        FrameReceived(
            frame=Frame(
                lines=(b"* 12 FETCH (FLAGS (\\Seen) BODY[HEADER.FIELDS (SUBJECT)] {21}", b")"),
                literals=(b"Subject: hi there\r\n\r\n",),
            )
        ),
        FrameReceived(frame=Frame(lines=(b"a1 OK done",))),
    ]


@pytest.mark.parametrize("split", [0, 1])
def test_large_literal_is_streamed(split: int) -> None:
    body = bytes(range(256)) * 4
    data = b"* 1 FETCH (UID 7 BODY[] {1024}\r\n" + body + b" BINARY[1] ~{3}\r\n\x00\x00\x00)\r\n"
    events = collect(ResponseReader(inline_max=100), ways(data)[split])
    head = Frame(lines=(b"* 1 FETCH (UID 7 BODY[] {1024}",))
    assert events == [
        LiteralStart(tag=None, size=1024, binary=False, index=0, head=head),
        LiteralChunk(index=0, data=body),
        LiteralEnd(index=0),
        FrameReceived(
            frame=Frame(
                lines=(b"* 1 FETCH (UID 7 BODY[] {1024}", b" BINARY[1] ~{3}", b")"),
                literals=(Streamed(size=1024, index=0), b"\x00\x00\x00"),
            )
        ),
    ]


@pytest.mark.parametrize(
    "line",
    [b"* OK see {5}", b"a1 NO [ALERT] quota {5}", b"+ {5}", b"+ Ready", b"* BYE {0}"],
)
def test_status_text_ending_like_a_literal_is_text(line: bytes) -> None:
    assert collect(ResponseReader(), [line + b"\r\n"]) == [
        FrameReceived(frame=Frame(lines=(line,)))
    ]


def test_literal_in_an_open_response_code() -> None:
    data = b"a NO [BADCHARSET ({5}\r\nUTF-8)] no\r\n"
    events = collect(ResponseReader(), [data])
    assert events == [
        FrameReceived(frame=Frame(lines=(b"a NO [BADCHARSET ({5}", b")] no"), literals=(b"UTF-8",)))
    ]


def test_line_too_long() -> None:
    reader = ResponseReader(max_line=50)
    reader.receive_data(b"* " + b"x" * 100)
    with pytest.raises(RemoteProtocolError):
        reader.next_event()
    reader = ResponseReader(max_line=50)
    with pytest.raises(RemoteProtocolError):
        collect(reader, [b"* " + b"x" * 49 + b"\r\n"])


def test_response_total_limit_counts_inline_only() -> None:
    reader = ResponseReader(max_response=200, inline_max=100)
    data = b"* 1 FETCH (BODY[] {5000}\r\n" + b"b" * 5000 + b")\r\n"
    assert isinstance(collect(reader, [data])[-1], FrameReceived)
    data = b"* 1 FETCH (A {90}\r\n" + b"b" * 90 + b" B {90}\r\n" + b"c" * 90 + b")\r\n"
    with pytest.raises(RemoteProtocolError):
        collect(ResponseReader(max_response=200, inline_max=100), [data])


def test_bad_count_and_close_mid_response() -> None:
    with pytest.raises(RemoteProtocolError):
        collect(ResponseReader(), [b"* 1 FETCH (BODY[] {99999999999999999999}\r\n"])
    reader = ResponseReader()
    with pytest.raises(RemoteProtocolError):
        collect(reader, [b"* 1 FETCH (BODY[] {10}\r\nabc", b""])
    reader = ResponseReader()
    assert collect(reader, [b"* OK bye\r\n", b""]) == [
        FrameReceived(frame=Frame(lines=(b"* OK bye",)))
    ]
    with pytest.raises(LocalProtocolError):
        reader.receive_data(b"more")


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                FETCH,
                b"* OK x {3}\r\n",
                b"* 2 EXISTS\r\n",
                b"* 1 FETCH (BODY[] {30}\r\n" + b"0" * 30 + b")\r\n",
                b"a NO [BADCHARSET ({1}\r\nX)] t\r\n",
            ]
        ),
        max_size=8,
    ),
    st.data(),
)
def test_any_fragmentation_gives_the_same_events(pieces: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(pieces)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)), max_size=20)))
    parts = [stream[i:j] for i, j in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    parts = [p for p in parts if p]  # b"" would mean the end of the input
    whole = collect(ResponseReader(inline_max=25, chunk_size=4), [stream])
    assert collect(ResponseReader(inline_max=25, chunk_size=4), parts) == whole
    assert len(whole) >= len(pieces)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_any_input_frames_or_raises_remote_protocol_error(stream: bytes) -> None:
    limit, chunk = 64, 16
    reader = ResponseReader(max_line=limit, max_response=300, inline_max=20, chunk_size=chunk)
    try:
        for i in range(0, len(stream), chunk):
            reader.receive_data(stream[i : i + chunk])
            while reader.next_event() is not NEED_DATA:
                pass
            assert reader.buffered <= limit + chunk
        reader.receive_data(b"")
        reader.next_event()
    except RemoteProtocolError:
        pass


def test_take_buffered_hands_over_what_follows_a_response() -> None:
    # RFC 4978 §3: the compressed stream starts right after the OK's CRLF; the octets
    # that came with it belong to the decoder, not to this reader.
    reader = ResponseReader()
    reader.receive_data(b"A1 OK DEFLATE active\r\n\x78\x9c\x01")
    event = reader.next_event()
    assert isinstance(event, FrameReceived)
    assert event.frame == Frame(lines=(b"A1 OK DEFLATE active",))
    assert reader.take_buffered() == b"\x78\x9c\x01"
    assert reader.buffered == 0
    assert reader.next_event() is NEED_DATA
