"""Tests for mailagents/smtp/_data.py: the DATA reader and the dot-stuffer."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents.smtp import _data
from mailagents.smtp._data import (
    BareLineEndPolicy,
    DataError,
    DataReader,
    dot_stuff,
    normalize_line_ends,
)

ACCEPT = BareLineEndPolicy.ACCEPT
REJECT = BareLineEndPolicy.REJECT
NORMALIZE = BareLineEndPolicy.NORMALIZE
POLICIES = list(BareLineEndPolicy)


@contextmanager
def steps(n: int) -> Iterator[None]:
    """Switch to bulk unstuffing after ``n`` lines starting with a period in a feed."""
    saved = _data._STEPS
    _data._STEPS = n
    try:
        yield
    finally:
        _data._STEPS = saved


class Run:
    """What a reader made of some input, fed the way a core feeds it."""

    def __init__(self, reader: DataReader, pieces: Iterable[bytes]) -> None:
        buf = bytearray()  # the core's receive buffer
        chunks: list[bytes] = []
        self.consumed = 0
        for piece in pieces:
            buf += piece
            if reader.done:
                continue
            consumed, got = reader.feed(buf)
            assert 0 <= consumed <= len(buf)
            assert len(got) <= 1
            assert all(type(c) is bytes and c for c in got)
            del buf[:consumed]
            self.consumed += consumed
            chunks += got
            if not reader.done:
                # Everything before the end of data is consumed: the buffer never grows.
                assert not buf
        self.content = b"".join(chunks)
        self.rest = bytes(buf)
        self.done = reader.done
        self.error = reader.error
        self.size = reader.size

    def outcome(self) -> tuple[bytes, int, bytes, bool, DataError | None, int]:
        return self.content, self.consumed, self.rest, self.done, self.error, self.size


def run(data: bytes, pieces: str = "whole", **kwargs: Any) -> Run:
    """Feed ``data`` whole, one octet at a time, or in two pieces at every offset."""
    if pieces == "whole":
        return Run(DataReader(**kwargs), [data])
    assert pieces == "octets"
    return Run(DataReader(**kwargs), [data[i : i + 1] for i in range(len(data))])


def all_splits(data: bytes, **kwargs: Any) -> list[Run]:
    return [Run(DataReader(**kwargs), [data[:i], data[i:]]) for i in range(len(data) + 1)]


# ---------------------------------------------------------------------------
# The basics: (wire octets after the 354, expected content, expected leftover)

BASIC = [
    pytest.param(b".\r\n", b"", b"", id="empty message"),
    pytest.param(b".\r\nQUIT\r\n", b"", b"QUIT\r\n", id="empty message then a command"),
    pytest.param(b"a\r\n.\r\n", b"a\r\n", b"", id="one line"),
    pytest.param(b"\r\n.\r\n", b"\r\n", b"", id="one empty line"),
    pytest.param(b"a\r\nb\r\n\r\nc\r\n.\r\n", b"a\r\nb\r\n\r\nc\r\n", b"", id="several lines"),
    pytest.param(b"..\r\n.\r\n", b".\r\n", b"", id="a line that is only a stuffed period"),
    pytest.param(b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n", b"", id="only '..' after a line"),
    pytest.param(b"a\r\n...\r\n.\r\n", b"a\r\n..\r\n", b"", id="three periods"),
    pytest.param(b"a\r\n..x\r\n.\r\n", b"a\r\n.x\r\n", b"", id="stuffed period and text"),
    pytest.param(b".x\r\n.\r\n", b"x\r\n", b"", id="message start is a line start"),
    pytest.param(b"a\r\n.x\r\n.\r\n", b"a\r\nx\r\n", b"", id="unstuffed leading period dropped"),
    pytest.param(b"a\r\n. \r\n.\r\n", b"a\r\n \r\n", b"", id="period and a space"),
    pytest.param(b"a.b\r\n.\r\n", b"a.b\r\n", b"", id="period inside a line"),
    pytest.param(b"a.\r\n.\r\n", b"a.\r\n", b"", id="period at the end of a line"),
    pytest.param(b" .\r\n.\r\n", b" .\r\n", b"", id="period after a space"),
    pytest.param(b"a\r\n.\r\n.\r\n", b"a\r\n", b".\r\n", id="a second terminator is not ours"),
    pytest.param(
        b"Subject: x\r\n\r\nhi\r\n.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<z@y>\r\n",
        b"Subject: x\r\n\r\nhi\r\n",
        b"MAIL FROM:<x@y>\r\nRCPT TO:<z@y>\r\n",
        id="pipelined commands after the end are left unconsumed",
    ),
    pytest.param(b"a\x00b\xff\r\n.\r\n", b"a\x00b\xff\r\n", b"", id="any octet is content"),
]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(("data", "content", "rest"), BASIC)
def test_basic(data: bytes, content: bytes, rest: bytes, policy: BareLineEndPolicy) -> None:
    for pieces in ("whole", "octets"):
        r = run(data, pieces, bare_line_ends=policy)
        assert r.content == content
        assert r.rest == rest
        assert r.consumed == len(data) - len(rest)
        assert r.done
        assert r.error is None
        assert r.size == len(content)
    # Every two-piece split gives the same result as the whole.
    whole = run(data, bare_line_ends=policy).outcome()
    for split in all_splits(data, bare_line_ends=policy):
        assert split.outcome() == whole


@pytest.mark.parametrize(
    "data",
    [b"", b"a", b"a\r", b"a\r\n", b"a\r\n.", b"a\r\n.\r", b".", b".\r", b"a\r\n..", b"\r\n."],
)
def test_incomplete_is_consumed_and_not_done(data: bytes) -> None:
    reader = DataReader()
    consumed, _ = reader.feed(data)
    assert consumed == len(data)
    assert not reader.done
    assert reader.error is None


def test_pending_state_is_resolved_by_the_next_feed() -> None:
    reader = DataReader()
    assert reader.feed(b"a\r\n.") == (4, [b"a\r\n"])
    assert reader.feed(b"\r") == (1, [])
    assert reader.feed(b"\nNEXT") == (1, [])
    assert reader.done
    reader = DataReader()
    assert reader.feed(b"a\r\n.") == (4, [b"a\r\n"])
    assert reader.feed(b".b\r") == (3, [b".b"])
    assert reader.feed(b"\n.\r\n") == (4, [b"\r\n"])
    assert reader.done and reader.error is None


def test_feed_after_done_and_empty_feed() -> None:
    reader = DataReader()
    assert reader.feed(b"") == (0, [])
    assert reader.feed(b".\r\nMAIL") == (3, [])
    assert reader.feed(b"MAIL FROM:<>\r\n") == (0, [])
    assert reader.done


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_buffer_types(kind: type) -> None:
    data = b"..a\r\nb\r\n.c\r\n.\r\nNEXT"
    reader = DataReader()
    buf = kind(data)
    consumed, chunks = reader.feed(buf)
    assert (consumed, chunks) == (len(data) - 4, [b".a\r\nb\r\nc\r\n"])
    if isinstance(buf, bytearray):
        del buf[:consumed]  # no export of the caller's buffer is left behind
        assert buf == b"NEXT"


@pytest.mark.parametrize("step", [0, 16])
def test_view_of_a_growing_buffer(step: int) -> None:
    """The way a core feeds it: a memoryview of its bytearray, released at once."""
    wire = dot_stuff(b"".join(b".%d\r\n" % i for i in range(50))) + b".\r\nNEXT"
    reader = DataReader(max_line_length=1000)
    buf = bytearray()
    content = b""
    with steps(step):
        for i in range(0, len(wire), 7):
            buf += wire[i : i + 7]
            if reader.done:
                continue
            with memoryview(buf) as view:
                consumed, chunks = reader.feed(view)
            del buf[:consumed]
            content += b"".join(chunks)
    assert reader.done and reader.error is None
    assert buf == b"NEXT"
    assert content == b"".join(b".%d\r\n" % i for i in range(50))


def test_memoryview_of_other_formats() -> None:
    import array

    words = array.array("H", b"a\r\n.\r\n")
    assert DataReader().feed(memoryview(words)) == (6, [b"a\r\n"])


@pytest.mark.parametrize("step", [0, 1, 3, 16])
@pytest.mark.parametrize("policy", POLICIES)
def test_many_lines_starting_with_a_period(step: int, policy: BareLineEndPolicy) -> None:
    body = b"".join(b"." * (i % 4) + b"%d\r\n" % i for i in range(40)) + b".\r\n..\r\n"
    wire = dot_stuff(body) + b".\r\nNEXT"
    with steps(step):
        for pieces in ("whole", "octets"):
            r = run(wire, pieces, bare_line_ends=policy)
            assert r.outcome() == (body, len(wire) - 4, b"NEXT", True, None, len(body))
        for split in all_splits(wire, bare_line_ends=policy):
            assert split.outcome() == (body, len(wire) - 4, b"NEXT", True, None, len(body))
        # Bare line ends after many stuffed lines are still judged.
        r = run(wire.replace(b"39\r\n", b"39\n"), bare_line_ends=policy)
        assert r.done and r.rest == b"NEXT"
        assert r.error is (DataError.BARE_LINE_END if policy is REJECT else None)


def test_one_chunk_per_feed() -> None:
    body = b"".join(b".line %d\r\n" % i for i in range(1000))
    consumed, chunks = DataReader().feed(dot_stuff(body) + b".\r\n")
    assert len(chunks) == 1
    assert chunks[0] == body


# ---------------------------------------------------------------------------
# SMTP smuggling: only a real CRLF "." CRLF ends the data, whatever the policy.

SMUGGLE = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r.\r",
    b"\r\n.\r",
    b"\r.\r\n",
    b"\r\n\x00.\r\n",
    b"\r\n.\n",
    b"\n.\r",
    b"\r\n .\r\n",
    b"\r\n.\r\r\n",
    b"\r\n.\n\r\n",
    b"\r\n\r.\r\n",
]
SMUGGLED = b"MAIL FROM:<x@y>\r\nRCPT TO:<victim@y>\r\nDATA\r\n\r\nforged\r\n"


def has_bare(data: bytes) -> bool:
    rest = data.replace(b"\r\n", b"")
    return b"\r" in rest or b"\n" in rest


@pytest.mark.parametrize("sep", SMUGGLE, ids=repr)
@pytest.mark.parametrize("policy", POLICIES)
def test_smuggling(sep: bytes, policy: BareLineEndPolicy) -> None:
    body = b"Subject: a\r\n\r\nhello" + sep + SMUGGLED
    data = body + b".\r\nQUIT\r\n"
    # What a receiver that honours only CRLF "." CRLF makes of it: a "." right after
    # a real CRLF is unstuffed, as on any line; nothing else changes.
    unstuffed = body.replace(b"\r\n.", b"\r\n", 1) if b"\r\n." in sep else body
    for pieces in ("whole", "octets"):
        r = run(data, pieces, bare_line_ends=policy)
        # The end is the real one, and everything up to it is consumed.
        assert r.done
        assert r.rest == b"QUIT\r\n"
        assert r.consumed == len(data) - len(b"QUIT\r\n")
        if not has_bare(sep) or policy is ACCEPT:
            # The would-be commands are inside the message, unchanged.
            assert (r.content, r.error) == (unstuffed, None)
        elif policy is REJECT:
            assert r.error is DataError.BARE_LINE_END
            assert SMUGGLED not in r.content
            assert r.size == len(unstuffed)
        else:
            assert r.error is None
            assert r.content == normalize_line_ends(unstuffed)
            assert SMUGGLED in r.content
            assert not has_bare(r.content)


def test_normalize_keeps_period_after_bare_line_end() -> None:
    r = run(b"a\n.\nb\r\n.\r\n", bare_line_ends=NORMALIZE)
    assert (r.content, r.done, r.error) == (b"a\r\n.\r\nb\r\n", True, None)
    r = run(b"a\r\n.\nb\r\n.\r\n", bare_line_ends=NORMALIZE)
    assert r.content == b"a\r\n\r\nb\r\n"  # a period after a real CRLF is unstuffed
    r = run(b"a\rb\r\n\r\r\n.\r\n", bare_line_ends=NORMALIZE)
    assert r.content == b"a\r\nb\r\n\r\n\r\n"
    assert r.size == len(r.content)


@pytest.mark.parametrize(
    "data",
    [b"a\nb", b"a\rb", b"a\r\n\n.", b"\r", b".\n.", b"\n.", b"\n", b"a\r\n\r"],
)
def test_reject_bare_line_ends(data: bytes) -> None:
    data += b"\r\n.\r\n"
    for pieces in ("whole", "octets"):
        r = run(data + b"NOOP\r\n", pieces)
        assert (r.done, r.error, r.rest) == (True, DataError.BARE_LINE_END, b"NOOP\r\n")
        assert r.content == b"" or pieces == "octets"
        assert r.size == run(data, bare_line_ends=ACCEPT).size


def test_bare_cr_split_from_its_lf_across_feeds_is_not_bare() -> None:
    reader = DataReader()
    assert reader.feed(b"a\r") == (2, [b"a"])
    assert reader.feed(b"\nb\r") == (3, [b"\r\nb"])
    assert reader.feed(b"\n.\r\n") == (4, [b"\r\n"])
    assert reader.error is None


def test_chunks_stop_after_error_but_reading_goes_on() -> None:
    reader = DataReader()
    assert reader.feed(b"good\r\n") == (6, [b"good\r\n"])
    assert reader.feed(b"bad\n") == (4, [])
    assert reader.error is DataError.BARE_LINE_END
    assert reader.feed(b"more\r\n..x\r\n") == (11, [])
    assert reader.feed(b".\r\nRSET\r\n") == (3, [])
    assert reader.done
    assert reader.size == len(b"good\r\nbad\nmore\r\n.x\r\n")


# ---------------------------------------------------------------------------
# Limits


def test_max_size() -> None:
    body = b"0123456789\r\n" * 10  # 120 octets
    data = dot_stuff(body) + b".\r\nNOOP\r\n"
    assert run(data, max_size=120).outcome()[:5] == (body, len(data) - 6, b"NOOP\r\n", True, None)
    for pieces in ("whole", "octets"):
        r = run(data, pieces, max_size=119)
        assert (r.done, r.error, r.rest) == (True, DataError.TOO_BIG, b"NOOP\r\n")
        assert r.size == 120
        assert len(r.content) <= 119


def test_max_size_counts_unstuffed_octets() -> None:
    data = b"..\r\n" * 10 + b".\r\n"  # 30 octets of content, 40 on the wire
    r = run(data, max_size=30)
    assert (r.error, r.size) == (None, 30)
    assert run(data, max_size=29).error is DataError.TOO_BIG


def test_size_after_error_counts_normalised_octets() -> None:
    reader = DataReader(bare_line_ends=NORMALIZE, max_size=1)
    assert reader.feed(b"ab\r\n") == (4, [])
    assert reader.error is DataError.TOO_BIG
    assert reader.feed(b"c\nd\r\n.\r\nNOOP") == (8, [])
    assert reader.size == len(b"ab\r\nc\r\nd\r\n")


def test_max_size_zero() -> None:
    assert run(b".\r\n", max_size=0).error is None
    assert run(b"\r\n.\r\n", max_size=0).error is DataError.TOO_BIG


@pytest.mark.parametrize("pieces", ["whole", "octets"])
def test_max_line_length(pieces: str) -> None:
    ok = b"x" * 998 + b"\r\n"  # RFC 5321 §4.5.3.1.6: 1000 octets with the CRLF
    long = b"x" * 999 + b"\r\n"
    assert run(ok * 3 + b".\r\n", pieces, max_line_length=1000).error is None
    # A doubled period does not count (it is removed by unstuffing).
    stuffed = b"." + ok
    assert run(ok + stuffed + b".\r\n", pieces, max_line_length=1000).error is None
    r = run(ok + long + ok + b".\r\nNOOP\r\n", pieces, max_line_length=1000)
    assert (r.done, r.error, r.rest) == (True, DataError.LINE_TOO_LONG, b"NOOP\r\n")
    assert r.size == 3 * 1000 + 1
    # The last line, and a line split by deleted periods, are checked too.
    assert run(ok + long + b".\r\n", pieces, max_line_length=1000).error is not None
    assert run(long + b".\r\n", pieces, max_line_length=1000).error is not None
    assert run(b"a\r\n.." + b"x" * 998 + b"\r\n.\r\n", pieces, max_line_length=1000).error


def test_max_line_length_many_short_lines_and_small_limit() -> None:
    lines = b"".join(b"y" * (i % 7) + b"\r\n" for i in range(500))
    assert run(lines + b".\r\n", max_line_length=8).error is None
    assert run(lines + b"y" * 6 + b"\r\n.\r\n", max_line_length=8).error is None
    r = run(lines + b"y" * 7 + b"\r\n.\r\n", max_line_length=8)
    assert (r.error, r.size) == (DataError.LINE_TOO_LONG, len(lines) + 9)
    r = run(lines + b"y" * 8 + b"\r\n" + lines + b".\r\n", max_line_length=9)
    assert r.error is DataError.LINE_TOO_LONG


def test_no_line_limit_by_default() -> None:
    data = b"z" * 1_000_000 + b"\r\n.\r\n"
    assert run(data).outcome()[1:5] == (len(data), b"", True, None)


def test_first_error_wins() -> None:
    r = run(b"a\nb" + b"x" * 100 + b"\r\n.\r\n", max_line_length=10, max_size=5)
    assert r.error is DataError.BARE_LINE_END
    r = run(b"ab" + b"x" * 100 + b"\r\n.\r\n", max_line_length=10, max_size=5)
    assert r.error is DataError.TOO_BIG


@pytest.mark.parametrize(
    "kwargs", [{"max_line_length": 2}, {"max_size": -1}, {"bare_line_ends": "nonsense"}]
)
def test_bad_configuration(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        DataReader(**kwargs)


def test_policy_by_value() -> None:
    reader = DataReader(bare_line_ends="normalize")  # type: ignore[arg-type]
    assert reader.bare_line_ends is NORMALIZE


def test_error_replies() -> None:
    assert (DataError.BARE_LINE_END.reply.code, DataError.BARE_LINE_END.reply.enhanced) == (
        550,
        "5.6.0",
    )
    assert DataError.TOO_BIG.reply.code == 552
    assert DataError.TOO_BIG.reply.enhanced == "5.3.4"
    assert DataError.LINE_TOO_LONG.reply.code == 500
    for error in DataError:
        assert error.reply.is_permanent


# ---------------------------------------------------------------------------
# The client side

STUFF = [
    (b"", b""),
    (b"a", b"a\r\n"),
    (b"a\r\n", b"a\r\n"),
    (b"a\n", b"a\r\n"),
    (b"a\r", b"a\r\n"),
    (b".", b"..\r\n"),
    (b".\r\n", b"..\r\n"),
    (b"a\n.\nb", b"a\r\n..\r\nb\r\n"),
    (b"a\r.b\r\n..c", b"a\r\n..b\r\n...c\r\n"),
    (b"a.b\n", b"a.b\r\n"),
    (b"\r\r\n\n", b"\r\n\r\n\r\n"),
    (b"\n.\n.", b"\r\n..\r\n..\r\n"),
]


@pytest.mark.parametrize(("body", "wire"), STUFF)
def test_dot_stuff(body: bytes, wire: bytes) -> None:
    assert dot_stuff(body) == wire
    assert dot_stuff(bytearray(body)) == wire
    assert dot_stuff(memoryview(body)) == wire


@pytest.mark.parametrize(
    ("body", "normal"),
    [
        (b"", b""),
        (b"abc", b"abc"),
        (b"a\nb", b"a\r\nb"),
        (b"a\rb", b"a\r\nb"),
        (b"a\r\nb", b"a\r\nb"),
        (b"\r\r\n\n\r", b"\r\n\r\n\r\n\r\n"),
        (b".\n", b".\r\n"),
    ],
)
def test_normalize_line_ends(body: bytes, normal: bytes) -> None:
    assert normalize_line_ends(body) == normal
    assert normalize_line_ends(bytearray(body)) == normal


# ---------------------------------------------------------------------------
# Properties

mail_octets = st.binary(max_size=300) | st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"..", b"a", b"\x00", b" "]), max_size=60
).map(b"".join)


def expected_content(body: bytes) -> bytes:
    normal = normalize_line_ends(body)
    if normal and not normal.endswith(b"\r\n"):
        normal += b"\r\n"
    return normal


@given(
    mail_octets,
    st.sampled_from([REJECT, ACCEPT]),
    st.binary(max_size=20),
    st.sampled_from([0, 1, 16]),
)
def test_round_trip(body: bytes, policy: BareLineEndPolicy, after: bytes, step: int) -> None:
    wire = dot_stuff(body) + b".\r\n"
    assert not has_bare(wire)
    with steps(step):
        r = run(wire + after, bare_line_ends=policy)
    assert r.content == expected_content(body)
    assert (r.consumed, r.rest, r.done, r.error) == (len(wire), after, True, None)
    assert r.size == len(r.content)


@given(
    mail_octets,
    st.lists(st.integers(min_value=0, max_value=400), max_size=8),
    st.sampled_from(POLICIES),
    st.one_of(st.none(), st.integers(min_value=3, max_value=12)),
    st.one_of(st.none(), st.integers(min_value=0, max_value=80)),
    st.booleans(),
    st.sampled_from([0, 1, 16]),
)
def test_any_split_gives_the_same_result(
    data: bytes,
    cuts: list[int],
    policy: BareLineEndPolicy,
    max_line: int | None,
    max_size: int | None,
    terminate: bool,
    step: int,
) -> None:
    if terminate:
        data += b"\r\n.\r\nNEXT"
    kwargs: dict[str, Any] = {
        "bare_line_ends": policy,
        "max_line_length": max_line,
        "max_size": max_size,
    }
    whole = run(data, **kwargs)
    offsets = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *offsets], [*offsets, len(data)], strict=True)]
    with steps(step):
        split = Run(DataReader(**kwargs), pieces)
        octets = run(data, "octets", **kwargs)
        assert run(data, **kwargs).outcome() == whole.outcome()
    for other in (split, octets):
        # The content given out before an error depends on where the input was cut
        # (it streams); all the rest does not.
        assert other.outcome()[1:] == whole.outcome()[1:]
        if whole.error is None:
            assert other.content == whole.content
        else:
            assert whole.content.startswith(other.content) or other.content.startswith(
                whole.content
            )
    if terminate:
        assert whole.done
    if whole.error is None:
        assert whole.size == len(whole.content)
        assert max_size is None or whole.size <= max_size


@given(st.binary(max_size=500), st.sampled_from(POLICIES), st.sampled_from([0, 16]))
def test_arbitrary_octets_never_raise(data: bytes, policy: BareLineEndPolicy, step: int) -> None:
    reader = DataReader(bare_line_ends=policy, max_line_length=50, max_size=100)
    with steps(step):
        consumed, chunks = reader.feed(data)
    assert 0 <= consumed <= len(data)
    assert reader.done or consumed == len(data)
    if reader.done:
        assert data[:consumed].endswith(b"\r\n.\r\n") or data[:consumed] == b".\r\n"


@given(st.binary(max_size=300))
def test_done_exactly_at_the_first_real_terminator(data: bytes) -> None:
    wire = b"\r\n" + data  # the DATA command's CRLF
    end = wire.find(b"\r\n.\r\n")
    r = run(data, bare_line_ends=ACCEPT)
    if end < 0:
        assert not r.done and r.consumed == len(data)
    else:
        assert r.done and r.consumed == end + 5 - 2
        # ACCEPT is the inverse of dot-stuffing a body without bare line ends.
        if b"\r" not in r.content.replace(b"\r\n", b"") and b"\n" not in r.content.replace(
            b"\r\n", b""
        ):
            assert dot_stuff(r.content) + b".\r\n" == data[: r.consumed]
