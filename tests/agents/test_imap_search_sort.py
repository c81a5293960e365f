"""SORT (RFC 5256 §3, RFC 5957 DISPLAYFROM/DISPLAYTO) over real folders of both store
formats, with and without the folder cache: each key on a corpus built so that every
key gives another order, REVERSE, several keys, ties in sequence-number order."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents.agents._imap_search import SearchView, search
from mailagents.agents._imap_search_sort import casemap, ordered_numbers, sort
from mailagents.imap import Frame, parse_command
from mailagents.imap._search import SortCriterion
from mailagents.imap.commands import Sort
from mailagents.store import Folder, MaildirStore, MboxStore, MessageInfo
from mailagents.store._cache import FolderCache

UTC = datetime.UTC


def day(d: int, hour: int = 12) -> datetime.datetime:
    return datetime.datetime(2026, 12, d, hour, tzinfo=UTC)


CORPUS = [
    (
        b"Subject: Re: [list] Hello (fwd)\r\nFrom: Zed <zed@x.org>\r\nTo: b@x.org\r\n"
        b"Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\nbody\r\n",
        day(9),
    ),
    (
        b"Subject: hello\r\nFrom: alice@x.org\r\nCc: Bob <bob@x.org>\r\nTo: Zoe <zoe@x.org>\r\n"
        b"Date: garbage\r\n\r\nlonger body than the others, by far\r\n",
        day(6),
    ),
    (
        b"Subject: Apple\r\nFrom: =?utf-8?q?=C3=89mile?= <emile@x.org>\r\n"
        b"To: undisclosed:;, Amy <amy@x.org>\r\n"
        b"Date: Mon, 7 Dec 2026 09:00:00 -0500\r\n\r\nb\r\n",
        day(8),
    ),
    (b"Date: Sat, 5 Dec 2026 12:00:00 +0000\r\n\r\n", day(10)),
]

CASES = [
    ("ARRIVAL", [2, 3, 1, 4]),
    ("REVERSE ARRIVAL", [4, 1, 3, 2]),
    ("DATE", [4, 2, 1, 3]),  # 09:00 -0500 is after 10:00 +0000; garbage: internal date
    ("SUBJECT", [4, 3, 1, 2]),  # "" < Apple < Hello = hello (ties by number)
    ("REVERSE SUBJECT", [1, 2, 3, 4]),
    ("REVERSE SUBJECT DATE", [2, 1, 3, 4]),
    ("FROM", [4, 2, 3, 1]),  # "", alice, emile, zed
    ("DISPLAYFROM", [4, 2, 1, 3]),  # "", alice@x.org, Zed, Émile (UTF-8 after ASCII)
    ("TO", [4, 3, 1, 2]),  # "", amy (the group is skipped), b, zoe
    ("DISPLAYTO", [4, 3, 1, 2]),  # "", Amy, b@x.org, Zoe
    ("CC", [1, 3, 4, 2]),
    ("REVERSE CC", [2, 1, 3, 4]),
    ("SIZE", [4, 1, 2, 3]),  # 40, 115, 131, 139 octets
    ("REVERSE SIZE", [3, 2, 1, 4]),
]


@pytest.fixture(params=["maildir", "mbox"])
def folder(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Folder]:
    store = (
        MaildirStore(tmp_path / "Maildir", fsync=False)
        if request.param == "maildir"
        else MboxStore(tmp_path / "mail", fsync=False)
    )
    with store, store.folder("INBOX") as inbox:
        for data, when in CORPUS:
            inbox.append_bytes(data, internaldate=when)
        inbox.refresh()
        yield inbox


def sorted_numbers(view: SearchView, text: str) -> list[int]:
    command = parse_command(Frame(lines=(f"A1 SORT ({text}) UTF-8 ALL".encode(),)))
    assert isinstance(command, Sort)
    uids = search(command.search, view)
    return ordered_numbers(sort(command.criteria, uids, view), view, uid=False)


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_sort_keys(folder: Folder, text: str, expected: list[int]) -> None:
    assert [m.size for m in folder.messages()] == [len(d) for d, _ in CORPUS]
    assert sorted_numbers(SearchView(messages=folder.messages(), folder=folder), text) == expected


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_sort_keys_with_cache(
    folder: Folder, tmp_path: Path, text: str, expected: list[int]
) -> None:
    with FolderCache(tmp_path / "cache", folder.status().uidvalidity, background=False) as cache:
        for m in folder.messages()[:2]:  # two entries cached, two misses
            cache.structure(m.uid, lambda uid=m.uid: folder.open_message(uid), m.size)
        cache.flush()
        view = SearchView(messages=folder.messages(), folder=folder, cache=cache)
        assert sorted_numbers(view, text) == expected


def test_sort_of_a_search_result_and_uid_numbers(folder: Folder) -> None:
    view = SearchView(messages=folder.messages(), folder=folder)
    uids = [m.uid for m in view.messages]
    got = sort([SortCriterion(key="ARRIVAL", reverse=True)], [uids[0], uids[2], 999], view)
    assert got == [uids[0], uids[2]]
    assert ordered_numbers(got, view, uid=True) == got
    assert ordered_numbers([*got, 999], view, uid=False) == [1, 3]


def test_casemap_is_ascii_only() -> None:
    assert casemap("abc") == casemap("ABC")
    assert casemap("é") != casemap("É")  # i;ascii-casemap folds ASCII letters only
    assert casemap("Z") < casemap("é")


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(1, 4), st.integers(0, 3), st.integers(0, 2)), min_size=0, max_size=8
    ),
    criteria=st.lists(
        st.tuples(st.sampled_from(["ARRIVAL", "SIZE"]), st.booleans()), min_size=1, max_size=3
    ),
)
def test_sort_equals_reference(
    rows: list[tuple[int, int, int]], criteria: list[tuple[str, bool]]
) -> None:
    """Multi-key sort with REVERSE per key and ties in sequence-number order, against
    a comparison written from RFC 5256 §3."""
    messages = [
        MessageInfo(uid=10 * n + 1, flags=frozenset(), internaldate=day(d), size=s, modseq=1)
        for n, (d, s, _) in enumerate(rows, 1)
    ]
    view = SearchView(messages=messages, folder=None)  # type: ignore[arg-type]
    got = sort(
        [SortCriterion(key=k, reverse=r) for k, r in criteria], [m.uid for m in messages], view
    )

    def value(m: MessageInfo, key: str) -> object:
        return m.internaldate if key == "ARRIVAL" else m.size

    def before(a: tuple[int, MessageInfo], b: tuple[int, MessageInfo]) -> bool:
        for key, reverse in criteria:
            va, vb = value(a[1], key), value(b[1], key)
            if va != vb:
                return (va > vb) if reverse else (va < vb)  # type: ignore[operator]
        return a[0] < b[0]

    numbered = list(enumerate(messages, 1))
    for i in range(len(got) - 1):
        a = next(p for p in numbered if p[1].uid == got[i])
        b = next(p for p in numbered if p[1].uid == got[i + 1])
        assert before(a, b)
    assert sorted(got) == sorted(m.uid for m in messages)


def test_sort_through_the_header_accessor(folder: Folder) -> None:
    asked: list[int] = []

    def header(uid: int) -> bytes:
        asked.append(uid)
        return folder.read_message(uid).split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"

    view = SearchView(messages=folder.messages(), folder=folder, header=header)
    assert sorted_numbers(view, "FROM") == [4, 2, 3, 1]
    assert sorted(asked) == sorted(m.uid for m in folder.messages())
    asked.clear()
    assert sorted_numbers(view, "REVERSE ARRIVAL SIZE") == [4, 1, 3, 2]
    assert asked == []  # neither key needs a header
