"""SequenceSet: parse and format without expanding, membership, iteration, compression."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents._protocol import LocalProtocolError
from mailagents.imap._seqset import MAX_NUMBER, SequenceSet

PARSE = [
    ("1", ((1, 1),)),
    ("*", ((None, None),)),
    ("1:4", ((1, 4),)),
    ("4:2", ((4, 2),)),
    ("2,4:7,9,12:*", ((2, 2), (4, 7), (9, 9), (12, None))),
    ("*:4", ((None, 4),)),
    ("1:4294967295", ((1, MAX_NUMBER),)),
]


@pytest.mark.parametrize(("text", "ranges"), PARSE)
def test_parse_and_format(text: str, ranges: tuple[tuple[int | None, int | None], ...]) -> None:
    s = SequenceSet.parse(text)
    assert s.ranges == ranges
    assert str(s) == text
    assert SequenceSet.parse(text.encode()) == s


def test_saved_result() -> None:
    s = SequenceSet.parse("$")
    assert s.saved and s.ranges == ()
    assert str(s) == "$"
    with pytest.raises(LocalProtocolError):
        list(s.iter_numbers(10))
    with pytest.raises(LocalProtocolError):
        SequenceSet(ranges=((1, 1),), saved=True)


@pytest.mark.parametrize(
    "text", ["", "0", "1:0", "4294967296", "1,", ",1", "1::2", "a", "1 2", "$,1", "-1", "1:*:2"]
)
def test_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        SequenceSet.parse(text)


@pytest.mark.parametrize("ranges", [(), ((0, 1),), ((1, 2**32),), ((True, 1),)])
def test_constructor_validates(ranges: tuple[tuple[int | None, int | None], ...]) -> None:
    with pytest.raises(LocalProtocolError):
        SequenceSet(ranges=ranges)


def test_huge_range_is_not_expanded() -> None:
    s = SequenceSet.parse("1:4294967295")
    assert s.contains(4000000000, largest=10)
    assert not s.contains(0, largest=10)
    assert list(s.iter_numbers(3)) == [1, 2, 3]


def test_star_means_largest() -> None:
    s = SequenceSet.parse("5:*")
    assert s.contains(7, largest=9)
    assert not s.contains(10, largest=9)
    # RFC 9051 §9: with 3 the largest, "5:*" is "3:5"
    assert s.contains(4, largest=3)
    assert list(s.iter_numbers(3)) == [3]
    assert list(SequenceSet.parse("*").iter_numbers(0)) == []


def test_iter_numbers_sorted_unique() -> None:
    s = SequenceSet.parse("7,1:3,2:4,9:8")
    assert list(s.iter_numbers(100)) == [1, 2, 3, 4, 7, 8, 9]
    assert list(s.iter_numbers(3)) == [1, 2, 3]


def test_from_numbers() -> None:
    assert str(SequenceSet.from_numbers([7, 1, 2, 3, 3, 9, 10])) == "1:3,7,9:10"
    assert str(SequenceSet.from_numbers([5])) == "5"
    with pytest.raises(LocalProtocolError):
        SequenceSet.from_numbers([])


numbers = st.integers(1, MAX_NUMBER)
bounds = st.one_of(st.none(), numbers)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(bounds, bounds), min_size=1, max_size=8))
def test_format_parse_round_trip(ranges: list[tuple[int | None, int | None]]) -> None:
    s = SequenceSet(ranges=tuple(ranges))
    assert SequenceSet.parse(str(s)) == s


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(1, 200), min_size=1, max_size=60), st.integers(0, 250))
def test_from_numbers_contains_iter(values: set[int], largest: int) -> None:
    s = SequenceSet.from_numbers(values)
    assert list(s.iter_numbers(250)) == sorted(values)
    for n in range(1, 251):
        assert s.contains(n, largest) == (n in values)
    assert list(s.iter_numbers(largest)) == sorted(v for v in values if v <= largest)
