"""FETCH plans messages in groups, one executor call each (mailagents/agents/
_imap_mailbox.py): few store calls for many messages, every response in order across
the groups' limits, \\Seen set for each message answered, and an error inside a group
answering what came before it only. Driven by imaplib on Maildir and mbox."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailagents.store import Store
from mailagents.store._model import Store as StoreBase
from tests.agents.test_imap_session import login, make_store, serve


def text(n: int, body: bytes = b"") -> bytes:
    return (
        f"From: a{n}@example.test\r\nTo: b@example.test\r\nSubject: message {n}\r\n"
        f"Message-ID: <{n}@example.test>\r\n\r\n"
    ).encode() + (body or f"Body {n}\r\n".encode())


@pytest.fixture(params=["maildir", "mbox"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from make_store(request.param, tmp_path)


def fill(store: Store, messages: list[bytes]) -> None:
    with store.folder("INBOX") as inbox:
        for data in messages:
            inbox.append_bytes(data)


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every function a store runs in its executor."""
    names: list[str] = []
    original = StoreBase.run

    async def run(self: Store, func: Any, *args: Any, **kwargs: Any) -> Any:
        names.append(getattr(func, "__name__", repr(func)))
        return await original(self, func, *args, **kwargs)

    monkeypatch.setattr(StoreBase, "run", run)
    return names


def fetched(data: list[Any]) -> list[tuple[int, bytes]]:
    """(message number, literal) of each FETCH response with a literal that imaplib
    gave (from a command's data, or its untagged responses after a NO)."""
    out = []
    for item in data:
        if isinstance(item, tuple):
            number = int(item[0].split()[0])
            out.append((number, item[1]))
    return out


def test_a_fetch_of_fifty_headers_is_a_few_store_calls(store: Store, runs: list[str]) -> None:
    fill(store, [text(n) for n in range(4, 101)])  # 100 in all

    def client(port: int) -> tuple[list[tuple[int, bytes]], list[str]]:
        imap = login(port)
        imap.select("INBOX")
        runs.clear()
        typ, data = imap.fetch("21:70", "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER])")
        assert typ == "OK"
        calls = list(runs)
        imap.logout()
        return fetched(data), calls

    got, calls = serve(store, client)
    assert [n for n, _ in got] == list(range(21, 71))
    for number, header in got:
        assert header.startswith(f"From: a{number}@".encode()) and header.endswith(b"\r\n\r\n")
    # One plan call for the fifty (before: fifty), whatever the sync before it costs.
    assert calls.count("_plan_group") == 1 and "plan_fetch" not in calls
    assert len(calls) < 10, calls


def test_many_bodies_across_groups_are_all_answered_in_order_and_seen(
    store: Store, runs: list[str]
) -> None:
    big = b"x" * 78 + b"\r\n"
    # 150 messages: three groups by count; 12 of 100 KB: groups by octets too.
    fill(store, [text(n) for n in range(4, 141)] + [text(n, big * 1280) for n in range(141, 154)])

    def client(port: int) -> tuple[list[tuple[int, bytes]], list[Any], list[str]]:
        imap = login(port)
        imap.select("INBOX")
        runs.clear()
        typ, data = imap.fetch("1:*", "(BODY[])")
        assert typ == "OK"
        calls = list(runs)
        typ, flags = imap.fetch("1:*", "(FLAGS)")
        imap.logout()
        return fetched(data), flags, calls

    got, flags, calls = serve(store, client)
    assert [n for n, _ in got] == list(range(1, 154))
    for number, body in got:
        assert body.startswith(f"From: a{number}@".encode())
        if number > 140:
            assert len(body) > 100_000
    assert len(flags) == 153 and all(b"\\Seen" in f for f in flags)
    # 140 small ones: groups of 64; the 13 big ones: about 1 MiB a group.
    assert 4 <= calls.count("_plan_group") <= 8
    assert calls.count("set_flags") == calls.count("_plan_group")


def test_an_unknown_encoding_in_a_group_answers_what_came_before(store: Store) -> None:
    odd = (
        b"From: a@example.test\r\nSubject: odd\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-unknown\r\n\r\nodd\r\n"
    )
    fill(store, [text(4), odd, text(6)])  # messages 4, 5 (odd), 6

    def client(port: int) -> tuple[str, list[Any], list[Any]]:
        imap = login(port)
        imap.select("INBOX")
        typ, data = imap.fetch("2:6", "(BINARY[1])")
        numbers = [n for n, _ in fetched(imap.untagged_responses.pop("FETCH", []))]
        typ2, flags = imap.fetch("1:6", "(FLAGS)")
        assert typ2 == "OK"
        imap.logout()
        return typ, [numbers, data], flags

    typ, (numbers, data), flags = serve(store, client)
    assert typ == "NO" and b"UNKNOWN-CTE" in data[-1]
    assert numbers == [2, 3, 4]  # then message 5 failed: 6 is not answered
    seen = {}
    for line in flags:
        match = re.match(rb"(\d+) \(FLAGS \((.*?)\)\)", line)
        assert match is not None, line
        seen[int(match.group(1))] = b"\\Seen" in match.group(2)
    # message 1 was seen from the start; 2-4 were answered; 5 and 6 were not.
    assert seen == {1: True, 2: True, 3: True, 4: True, 5: False, 6: False}


def test_a_message_expunged_elsewhere_inside_a_group_is_skipped_and_expungeissued(
    store: Store,
) -> None:
    fill(store, [text(n) for n in range(4, 11)])  # 10 in all

    def client(port: int) -> tuple[str, list[int], bytes]:
        imap = login(port)
        imap.select("INBOX")
        with store.folder("INBOX") as other:
            other.set_flags([5], ["\\Deleted"], "add")
            other.expunge([5])
        typ, data = imap.fetch("1:10", "(BODY.PEEK[])")
        numbers = [n for n, _ in fetched(imap.untagged_responses.pop("FETCH", []))]
        imap.logout()
        return typ, numbers, data[-1]

    typ, numbers, last = serve(store, client)
    assert typ == "NO" and b"EXPUNGEISSUED" in last
    assert numbers == [1, 2, 3, 4, 6, 7, 8, 9, 10]
