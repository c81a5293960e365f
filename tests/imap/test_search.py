"""The search-key tree (RFC 9051 §6.4.4, RFC 7162 §3.1.5, RFC 5182, RFC 5256): values
are validated, depth is measured without recursion, and every key parses to its shape."""

from __future__ import annotations

import datetime

import pytest

from mailagents._protocol import LocalProtocolError
from mailagents.imap._command_parser import parse_command
from mailagents.imap._commands import Search
from mailagents.imap._frame import Frame
from mailagents.imap._search import (
    FLAG_KEYS,
    And,
    DateKey,
    FlagKey,
    HeaderKey,
    KeywordKey,
    ModSeqKey,
    Not,
    Or,
    SearchKey,
    SetKey,
    SizeKey,
    SortCriterion,
    TextKey,
    search_depth,
)
from mailagents.imap._seqset import SequenceSet

ALL = FlagKey(name="ALL")


def keys(text: str) -> tuple[SearchKey, ...]:
    command = parse_command(Frame(lines=(b"t SEARCH " + text.encode(),)))
    assert isinstance(command, Search)
    return command.criteria


@pytest.mark.parametrize("name", sorted(FLAG_KEYS))
def test_every_key_without_argument(name: str) -> None:
    assert keys(name.lower()) == (FlagKey(name=name),)


@pytest.mark.parametrize("name", ["BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"])
def test_every_text_key(name: str) -> None:
    assert keys(f'{name} "a b"') == (TextKey(name=name, value="a b"),)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"])
def test_every_date_key(name: str) -> None:
    expected = (DateKey(name=name, date=datetime.date(2020, 2, 29)),)  # type: ignore[arg-type]
    assert keys(f"{name} 29-feb-2020") == expected
    assert keys(f'{name} "29-Feb-2020"') == expected


def test_other_keys() -> None:
    assert keys("LARGER 9223372036854775807 SMALLER 0") == (
        SizeKey(name="LARGER", size=2**63 - 1),
        SizeKey(name="SMALLER", size=0),
    )
    assert keys("HEADER Message-ID <a@b>") == (HeaderKey(field="Message-ID", value="<a@b>"),)
    assert keys("KEYWORD $Junk UNKEYWORD x") == (
        KeywordKey(name="KEYWORD", keyword="$Junk"),
        KeywordKey(name="UNKEYWORD", keyword="x"),
    )
    assert keys("1,3:* UID 5 $ UID $") == (
        SetKey(set=SequenceSet.parse("1,3:*")),
        SetKey(set=SequenceSet.parse("5"), uid=True),
        SetKey(set=SequenceSet(saved=True)),
        SetKey(set=SequenceSet(saved=True), uid=True),
    )
    assert keys('MODSEQ "/flags/\\\\Seen" PRIV 0 MODSEQ 7') == (
        ModSeqKey(modseq=0, entry="/flags/\\Seen", entry_type="priv"),
        ModSeqKey(modseq=7),
    )


def test_nesting_shapes() -> None:
    assert keys("OR OR SEEN DRAFT NOT (UID 1 ALL)") == (
        Or(
            left=Or(left=FlagKey(name="SEEN"), right=FlagKey(name="DRAFT")),
            right=Not(key=And(keys=(SetKey(set=SequenceSet.parse("1"), uid=True), ALL))),
        ),
    )
    assert keys("(ALL) ((ALL))") == (And(keys=(ALL,)), And(keys=(And(keys=(ALL,)),)))


def test_search_depth() -> None:
    assert search_depth((ALL, ALL)) == 1
    assert search_depth((Not(key=ALL),)) == 2
    assert search_depth((Or(left=ALL, right=And(keys=(Not(key=ALL),))),)) == 4
    deep: SearchKey = ALL
    for _ in range(20_000):
        deep = Not(key=deep)
    assert search_depth((deep,)) == 20_001


@pytest.mark.parametrize(
    "make",
    [
        lambda: FlagKey(name="SEEN "),
        lambda: FlagKey(name="seen"),
        lambda: TextKey(name="HEADER", value="x"),  # type: ignore[arg-type]
        lambda: TextKey(name="TEXT", value="a\x00"),
        lambda: HeaderKey(field="a\x00", value=""),
        lambda: DateKey(name="AFTER", date=datetime.date(2020, 1, 1)),  # type: ignore[arg-type]
        lambda: DateKey(name="ON", date=datetime.datetime(2020, 1, 1)),
        lambda: SizeKey(name="LARGER", size=-1),
        lambda: SizeKey(name="LARGER", size=2**63),
        lambda: SizeKey(name="BIGGER", size=1),  # type: ignore[arg-type]
        lambda: KeywordKey(name="KEYWORD", keyword="\\Seen"),
        lambda: KeywordKey(name="KEYWORD", keyword=""),
        lambda: KeywordKey(name="FLAG", keyword="x"),  # type: ignore[arg-type]
        lambda: ModSeqKey(modseq=-1),
        lambda: ModSeqKey(modseq=1, entry="/flags/x"),
        lambda: ModSeqKey(modseq=1, entry="/flags/x", entry_type="public"),  # type: ignore[arg-type]
        lambda: And(keys=()),
        lambda: SortCriterion(key="BOGUS"),
        lambda: SortCriterion(key="date"),
    ],
)
def test_invalid_keys_refused(make: object) -> None:
    with pytest.raises(LocalProtocolError):
        make()  # type: ignore[operator]


def test_sort_keys_of_rfc5957() -> None:
    assert SortCriterion(key="DISPLAYFROM", reverse=True).reverse
    assert SortCriterion(key="DISPLAYTO").key == "DISPLAYTO"
