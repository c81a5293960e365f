"""Wake-ups of a session between commands (mailagents/agents/_imap_session.py,
``StoreIMAPHandler.on_wake``): read the folder after ``WAKE_DELAY`` and only if no read
began since, so that the echo of the session's own change is not one more whole read
of the folder when its next command reads it anyway; a change by someone else is still
told unsolicited between commands. On Maildir and mbox, with imaplib and a raw
socket."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailagents.agents import _imap_session
from mailagents.aio import _watching
from mailagents.aio._watching import FolderWatcher
from mailagents.store import Store
from mailagents.store._model import Store as StoreBase
from tests.agents.test_imap_session import login, make_store, serve


@pytest.fixture(params=["maildir", "mbox"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from make_store(request.param, tmp_path)


@pytest.fixture
def refreshes(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """When each folder refresh was asked of a store's executor."""
    times: list[float] = []
    original = StoreBase.run

    async def run(self: Store, func: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(func, "__name__", "") == "refresh":
            times.append(time.monotonic())
        return await original(self, func, *args, **kwargs)

    monkeypatch.setattr(StoreBase, "run", run)
    return times


@pytest.fixture
def hub_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wake-ups through the change hub only (no inotify echo, no poll in the test's
    time), so that the count of reads is the handler's doing."""
    shared: dict[Any, FolderWatcher] = {}

    def watcher(loop: Any = None) -> FolderWatcher:
        import asyncio

        loop = loop or asyncio.get_running_loop()
        if loop not in shared:
            shared[loop] = FolderWatcher(inotify=False, poll_interval=3600)
        return shared[loop]

    monkeypatch.setattr(_imap_session, "folder_watcher", watcher)
    assert _watching.folder_watcher is not watcher


def test_the_echo_of_its_own_store_is_covered_by_the_next_command(
    store: Store, refreshes: list[float], hub_only: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_imap_session, "WAKE_DELAY", 1.0)

    def client(port: int) -> tuple[int, int]:
        imap = login(port)
        imap.select("INBOX")
        refreshes.clear()
        assert imap.store("2", "+FLAGS", "(\\Flagged)")[0] == "OK"  # wakes itself
        assert imap.noop()[0] == "OK"  # well within WAKE_DELAY
        after_noop = len(refreshes)
        time.sleep(1.5)  # past WAKE_DELAY: the delayed wake-up finds NOOP's read
        assert imap.noop()[0] == "OK"
        total = len(refreshes)
        imap.logout()
        return after_noop, total

    after_noop, total = serve(store, client)
    # STORE's read and NOOP's; without the delay the wake-up was a third between them.
    assert after_noop == 2
    assert total == 3  # and the second NOOP's: the delayed wake-up read nothing


def test_a_change_by_another_session_is_still_told_between_commands(store: Store) -> None:
    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            stream = sock.makefile("rb")
            stream.readline()
            sock.sendall(b"a LOGIN user secret\r\nb SELECT INBOX\r\n")
            while not stream.readline().startswith(b"b OK"):
                pass
            other = login(port)
            other.select("INBOX")
            assert other.store("3", "+FLAGS", "(\\Answered)")[0] == "OK"
            other.logout()
            sock.settimeout(10)  # nothing sent: the update comes unsolicited
            return stream.readline()

    line = serve(store, client)
    assert line.startswith(b"* 3 FETCH (FLAGS (") and b"\\Answered" in line


def test_a_delayed_wake_up_after_logout_is_harmless(
    store: Store, hub_only: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_imap_session, "WAKE_DELAY", 0.2)

    def client(port: int) -> str:
        imap = login(port)
        imap.select("INBOX")
        imap.store("1", "-FLAGS", "(\\Seen)")
        imap.logout()  # the wake-up is still due
        time.sleep(0.4)
        again = login(port)  # the server goes on
        typ, _ = again.select("INBOX")
        again.logout()
        return typ

    assert serve(store, client) == "OK"
