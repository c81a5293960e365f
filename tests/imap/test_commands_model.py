"""The command values refuse what no command can say (LocalProtocolError)."""

from __future__ import annotations

import datetime

import pytest

from mailagents._protocol import LocalProtocolError
from mailagents.imap._commands import (
    Append,
    AppendMessage,
    Authenticate,
    Compress,
    Create,
    Enable,
    Expunge,
    Fetch,
    Id,
    List,
    Login,
    QResync,
    Search,
    Select,
    Sort,
    Status,
    Store,
    Thread,
)
from mailagents.imap._fetch_items import FetchAttribute
from mailagents.imap._frame import Streamed
from mailagents.imap._search import FlagKey, SortCriterion
from mailagents.imap._seqset import SequenceSet

ONE = SequenceSet.parse("1")
ALL = (FlagKey(name="ALL"),)

INVALID = [
    lambda: Authenticate(tag="a", mechanism="plain"),
    lambda: Login(tag="a", user="a\x00", password="b"),
    lambda: Enable(tag="a", capabilities=()),
    lambda: Enable(tag="a", capabilities=("condstore",)),
    lambda: Select(tag="a", mailbox="a\x00"),
    lambda: Select(tag="a", mailbox="\ud800"),
    lambda: QResync(uidvalidity=0, modseq=1),
    lambda: QResync(uidvalidity=1, modseq=0),
    lambda: QResync(uidvalidity=1, modseq=1, known_uids=SequenceSet.parse("1:*")),
    lambda: QResync(uidvalidity=1, modseq=1, seq_match=(SequenceSet(saved=True), ONE)),
    lambda: Create(tag="a", mailbox="x", special_use=("Drafts",)),
    lambda: List(tag="a", reference="", patterns=()),
    lambda: List(tag="a", reference="", patterns=("*",), selection=("RECURSIVEMATCH",)),
    lambda: List(tag="a", reference="", patterns=("*",), selection=("REMOTE", "RECURSIVEMATCH")),
    lambda: List(tag="a", reference="", patterns=("*",), selection=("subscribed",)),
    lambda: List(tag="a", reference="", patterns=("*",), return_options=("STATUS",)),
    lambda: List(tag="a", reference="", patterns=("*",), status=()),
    lambda: Status(tag="a", mailbox="x", items=()),
    lambda: Status(tag="a", mailbox="x", items=("FOO",)),
    lambda: Append(tag="a", mailbox="x", messages=()),
    lambda: AppendMessage(data=b"a\x00b"),
    lambda: AppendMessage(data=Streamed(size=3, binary=True)),
    lambda: AppendMessage(data=b"", internal_date=datetime.datetime(2020, 1, 1)),
    lambda: Expunge(tag="a", uid=True),
    lambda: Expunge(tag="a", sequence_set=ONE),
    lambda: Search(tag="a", criteria=()),
    lambda: Search(tag="a", criteria=ALL, return_options=("FOO",)),
    lambda: Search(tag="a", criteria=ALL, charset=""),
    lambda: Fetch(tag="a", sequence_set=ONE, items=()),
    lambda: Fetch(tag="a", sequence_set=ONE, items="MOST"),  # type: ignore[arg-type]
    lambda: Fetch(tag="a", sequence_set=ONE, items="ALL", changedsince=0),
    lambda: Fetch(tag="a", sequence_set=ONE, items="ALL", vanished=True, uid=True),
    lambda: Fetch(tag="a", sequence_set=ONE, items="ALL", vanished=True, changedsince=1),
    lambda: Store(tag="a", sequence_set=ONE, action="toggle"),  # type: ignore[arg-type]
    lambda: Store(tag="a", sequence_set=ONE, unchangedsince=-1),
    lambda: Sort(tag="a", criteria=(), charset="UTF-8", search=ALL),
    lambda: Sort(tag="a", criteria=(SortCriterion(key="DATE"),), charset="", search=ALL),
    lambda: Thread(tag="a", algorithm="refs", charset="UTF-8", search=ALL),
    lambda: Thread(tag="a", algorithm="REFS", charset="UTF-8", search=()),
    lambda: Thread(tag="a", algorithm="REFS", charset="", search=ALL),
    lambda: Id(tag="a", parameters=(("a\x00", None),)),
    lambda: Compress(tag="a", mechanism="deflate"),
]


@pytest.mark.parametrize("make", INVALID)
def test_invalid_values_refused(make: object) -> None:
    with pytest.raises(LocalProtocolError):
        make()  # type: ignore[operator]


def test_valid_values() -> None:
    assert Fetch(
        tag="a",
        uid=True,
        sequence_set=ONE,
        items=(FetchAttribute(name="FLAGS"),),
        changedsince=1,
        vanished=True,
    ).vanished
    assert AppendMessage(data=Streamed(size=3, binary=True), binary=True).binary
    assert AppendMessage(data=b"a\x00b", binary=True).binary
    assert List(
        tag="a", reference="", patterns=("*",), selection=("SPECIAL-USE", "RECURSIVEMATCH")
    ).selection == ("SPECIAL-USE", "RECURSIVEMATCH")
