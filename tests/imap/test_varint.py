"""The varint encoding shared by the stored part map and the stores' message cache."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents.imap._varint import VarintReader, put_number, put_text


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=2**63 - 1)),
    st.lists(st.one_of(st.none(), st.text())),
)
def test_numbers_and_texts_read_back(numbers: list[int], texts: list[str | None]) -> None:
    out = bytearray()
    for n in numbers:
        put_number(out, n)
    for t in texts:
        put_text(out, t, "surrogatepass")
    reader = VarintReader(bytes(out))
    assert [reader.number() for _ in numbers] == numbers
    assert [reader.text("surrogatepass") for _ in texts] == texts
    assert reader.done()


class Broken(ValueError):
    pass


@pytest.mark.parametrize("data", [b"", b"\x80", b"\x05ab", b"\x02\xff"])
def test_anything_cut_short_or_malformed_raises_the_callers_error(data: bytes) -> None:
    reader = VarintReader(data, error=Broken, what="entry")
    with pytest.raises(Broken, match="entry"):
        reader.text("strict")
