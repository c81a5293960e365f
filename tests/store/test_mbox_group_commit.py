"""mbox group commit: appends committed by several threads while a group is being
written go together in the next group (one lock hold, three fsyncs for all), each
with its own UID, or the error of its group."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mailagents.store.mbox import MboxFolder, MboxStore
from tests.store.conftest import make_message

THREADS = 12


def wait_for(predicate: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_concurrent_appends_get_distinct_uids_and_all_arrive(tmp_path: Path) -> None:
    with MboxStore(tmp_path) as store, store.folder("INBOX") as inbox:
        results: dict[int, bytes] = {}
        guard = threading.Lock()

        def deliver(worker: int) -> None:
            for n in range(15):
                data = make_message(f"w{worker}-{n}")
                uid = inbox.append_bytes(data).uid
                assert uid is not None
                with guard:
                    assert uid not in results
                    results[uid] = data

        threads = [threading.Thread(target=deliver, args=(w,)) for w in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(results) == THREADS * 15
        inbox.refresh()
        assert sorted(m.uid for m in inbox.messages()) == sorted(results)
        for uid, data in results.items():
            assert inbox.read_message(uid) == data
    with MboxStore(tmp_path) as store, store.folder("INBOX") as again:
        assert len(again.messages()) == THREADS * 15


def test_commits_that_arrive_during_a_group_go_together_in_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    groups: list[int] = []
    real_commit = MboxFolder._commit

    with MboxStore(tmp_path) as store, store.folder("INBOX") as inbox:

        def slow_first_commit(self: MboxFolder, items: list[Any]) -> list[int]:
            groups.append(len(items))
            if len(groups) == 1:  # hold the first group until all others queue behind it
                wait_for(lambda: len(self._group._waiting) == THREADS - 1)
            return real_commit(self, items)

        monkeypatch.setattr(MboxFolder, "_commit", slow_first_commit)
        uids: list[int] = []
        guard = threading.Lock()

        def deliver(n: int) -> None:
            uid = inbox.append_bytes(make_message(f"m{n}")).uid
            assert uid is not None
            with guard:
                uids.append(uid)

        first = threading.Thread(target=deliver, args=(0,))
        first.start()
        wait_for(lambda: bool(groups))
        others = [threading.Thread(target=deliver, args=(n,)) for n in range(1, THREADS)]
        for t in others:
            t.start()
        for t in [first, *others]:
            t.join(30)
        # One group of one, then one group of all the others, led by one of them.
        assert groups == [1, THREADS - 1]
        assert sorted(uids) == list(range(1, THREADS + 1))
        assert not inbox._group._leading and not inbox._group._waiting


def test_a_failed_group_fails_each_of_its_commits_and_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_commit = MboxFolder._commit
    calls = 0

    with MboxStore(tmp_path) as store, store.folder("INBOX") as inbox:
        inbox.append_bytes(make_message("before"))

        def failing_second(self: MboxFolder, items: list[Any]) -> list[int]:
            nonlocal calls
            calls += 1
            if calls == 1:
                wait_for(lambda: len(self._group._waiting) == 3)
                return real_commit(self, items)
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(MboxFolder, "_commit", failing_second)
        outcomes: dict[str, object] = {}

        def deliver(name: str) -> None:
            try:
                outcomes[name] = inbox.append_bytes(make_message(name)).uid
            except OSError as exc:
                outcomes[name] = exc

        first = threading.Thread(target=deliver, args=("first",))
        first.start()
        wait_for(lambda: calls == 1)
        rest = [threading.Thread(target=deliver, args=(f"r{n}",)) for n in range(3)]
        for t in rest:
            t.start()
        for t in [first, *rest]:
            t.join(30)
        assert outcomes["first"] == 2
        assert all(isinstance(outcomes[f"r{n}"], OSError) for n in range(3))
        monkeypatch.undo()
        # The folder goes on: the next append works, and only what succeeded is there.
        assert inbox.append_bytes(make_message("after")).uid == 3
        inbox.refresh()
        assert [inbox.read_message(m.uid) for m in inbox.messages()] == [
            make_message("before"), make_message("first"), make_message("after")
        ]
