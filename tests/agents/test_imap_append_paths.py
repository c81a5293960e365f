"""APPEND's store work (mailagents/agents/_imap_append.py): into the selected mailbox
through the session's own handle (no second handle opened, the new message told with
EXISTS), a small message spooled in memory without the executor, a big one through
the executor to disk, intact. Driven by imaplib on Maildir and mbox."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailagents.store import Store
from mailagents.store._model import Store as StoreBase
from tests.agents.test_imap_session import login, make_store, serve, untagged


@pytest.fixture(params=["maildir", "mbox"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from make_store(request.param, tmp_path)


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


MESSAGE = b"From: c@example.test\r\nSubject: appended\r\n\r\nHello\r\n"


def appenduid(response: Any) -> int:
    match = re.search(rb"APPENDUID \d+ (\d+)", response[0])
    assert match is not None, response
    return int(match.group(1))


def test_append_into_the_selected_mailbox_uses_its_handle(
    store: Store, runs: list[str]
) -> None:
    def client(port: int) -> tuple[int, list[str], Any, Any]:
        imap = login(port)
        imap.select("INBOX")
        runs.clear()
        typ, data = imap.append("INBOX", "(\\Flagged)", None, MESSAGE)
        assert typ == "OK"
        calls = list(runs)
        exists = untagged(imap, "EXISTS")
        uid = appenduid(data)
        typ, fetched = imap.uid("FETCH", str(uid), "(FLAGS BODY.PEEK[])")
        assert typ == "OK"
        imap.logout()
        return uid, calls, exists, fetched

    uid, calls, exists, fetched = serve(store, client)
    assert uid == 4 and exists[-1] == b"4"
    assert isinstance(fetched[0], tuple) and fetched[0][1] == MESSAGE
    assert b"\\Flagged" in fetched[0][0]
    # No second handle of INBOX (a whole read of the folder), none closed.
    assert "folder" not in calls and "close" not in calls, calls
    assert "write" not in calls  # a small message is spooled in memory
    with store.folder("INBOX") as inbox:
        assert inbox.info(4).size == len(MESSAGE)


def test_append_into_another_mailbox_opens_and_closes_its_own(
    store: Store, runs: list[str]
) -> None:
    store.create_folder("Other")

    def client(port: int) -> tuple[list[str], Any]:
        imap = login(port)
        imap.select("INBOX")
        runs.clear()
        typ, data = imap.append("Other", None, None, MESSAGE)
        assert typ == "OK"
        calls = list(runs)
        exists = untagged(imap, "EXISTS")
        imap.logout()
        return calls, exists

    calls, exists = serve(store, client)
    assert calls.count("folder") == 1 and calls.count("close") == 1
    assert exists == [b"3"]  # only SELECT's: INBOX did not change
    with store.folder("Other") as other:
        assert [m.size for m in other.messages()] == [len(MESSAGE)]


def test_a_big_append_is_spooled_to_disk_in_the_executor_and_arrives_whole(
    store: Store, runs: list[str]
) -> None:
    line = b"0123456789" * 7 + b"\r\n"
    big = b"From: c@example.test\r\nSubject: big\r\n\r\n" + line * (3 * 1024 * 1024 // len(line))

    def client(port: int) -> tuple[int, list[str]]:
        imap = login(port)
        runs.clear()
        typ, data = imap.append("INBOX", None, None, big)
        assert typ == "OK"
        calls = list(runs)
        imap.logout()
        return appenduid(data), calls

    uid, calls = serve(store, client)
    assert "write" in calls  # past 1 MiB the spool is a file
    with store.folder("INBOX") as inbox, inbox.open_message(uid) as stream:
        assert stream.read() == big

