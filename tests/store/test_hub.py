"""The in-process change hub (mailagents/store/_hub.py): subscribers by the folder's
real path, notified from any thread, and the writer wrapper that notifies after a
commit."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from mailagents.store import AppendResult, AppendWriter
from mailagents.store._hub import (
    HUB,
    ChangeHub,
    NotifyingWriter,
    folder_key,
    notified,
    notify,
    subscribe,
)


def test_subscriber_is_called_with_the_key(tmp_path: Path) -> None:
    hub = ChangeHub()
    seen: list[str] = []
    sub = hub.subscribe(tmp_path, seen.append)
    assert hub.notify(tmp_path) == 1
    assert seen == [os.path.realpath(tmp_path)]
    assert sub.key == folder_key(tmp_path)
    assert hub.watched(tmp_path) and hub.subscribers(tmp_path) == 1


def test_key_is_the_real_path_whatever_path_reached_the_folder(tmp_path: Path) -> None:
    real = tmp_path / "Maildir"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    hub = ChangeHub()
    seen: list[str] = []
    hub.subscribe(real, seen.append)
    hub.notify(link)
    hub.notify(str(tmp_path / "Maildir" / ".." / "Maildir"))
    assert seen == [str(real), str(real)]


def test_other_folders_are_not_woken(tmp_path: Path) -> None:
    hub = ChangeHub()
    seen: list[str] = []
    hub.subscribe(tmp_path / "a", seen.append)
    assert hub.notify(tmp_path / "b") == 0
    assert seen == []


def test_close_stops_the_calls_and_is_idempotent(tmp_path: Path) -> None:
    hub = ChangeHub()
    seen: list[str] = []
    first = hub.subscribe(tmp_path, seen.append)
    second = hub.subscribe(tmp_path, seen.append)
    first.close()
    first.close()
    assert first.closed and not second.closed
    assert hub.notify(tmp_path) == 1
    with second:
        pass
    assert second.closed
    assert hub.notify(tmp_path) == 0
    assert not hub.watched(tmp_path)
    assert len(seen) == 1
    assert "closed" in repr(second)


def test_a_failing_callback_is_logged_and_the_others_still_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub = ChangeHub()
    seen: list[str] = []

    def broken(key: str) -> None:
        raise RuntimeError("boom")

    hub.subscribe(tmp_path, broken)
    hub.subscribe(tmp_path, seen.append)
    with caplog.at_level(logging.ERROR, logger="mailagents.store._hub"):
        assert hub.notify(tmp_path) == 2
    assert seen == [str(tmp_path)]
    assert "boom" in caplog.text


def test_a_callback_may_close_its_subscription_while_called(tmp_path: Path) -> None:
    hub = ChangeHub()
    calls: list[str] = []
    subs = []

    def once(key: str) -> None:
        calls.append(key)
        subs[0].close()

    subs.append(hub.subscribe(tmp_path, once))
    hub.notify(tmp_path)
    hub.notify(tmp_path)
    assert calls == [str(tmp_path)]


def test_notify_from_many_threads_while_subscribing(tmp_path: Path) -> None:
    hub = ChangeHub()
    lock = threading.Lock()
    counts = {"n": 0}

    def count(key: str) -> None:
        with lock:
            counts["n"] += 1

    hub.subscribe(tmp_path, count)

    def churn() -> None:
        for _ in range(200):
            hub.subscribe(tmp_path, count).close()

    def fire() -> None:
        for _ in range(200):
            hub.notify(tmp_path)

    threads = [threading.Thread(target=f) for f in (churn, fire, fire, churn)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts["n"] >= 400  # the permanent subscriber saw every notification
    assert hub.subscribers(tmp_path) == 1


def test_the_process_hub_functions(tmp_path: Path) -> None:
    seen: list[str] = []
    with subscribe(tmp_path, seen.append):
        assert notify(tmp_path) == 1
        assert notified([1, 2], tmp_path) == [1, 2]
    assert notify(tmp_path) == 0
    assert seen == [str(tmp_path), str(tmp_path)]
    assert not HUB.watched(tmp_path)


def test_key_cache_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mailagents.store._hub as hub_module

    monkeypatch.setattr(hub_module, "_KEY_CACHE_MAX", 4)
    hub = ChangeHub()
    hub.subscribe(tmp_path / "x", lambda key: None)
    for n in range(10):
        hub.notify(tmp_path / str(n))
        assert len(hub._keys) <= 4


class StubWriter(AppendWriter):
    """A store's writer, as far as NotifyingWriter sees it (the stores notify the
    process hub themselves, so a real one would be counted twice)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.aborted = False
        self.extra = "its own attribute"

    def write(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def commit(self) -> AppendResult:
        if self.result is None:
            self.result = AppendResult(uid=7, uidvalidity=1, size=len(b"".join(self.chunks)))
        return self.result

    def abort(self) -> None:
        self.aborted = True


def test_notifying_writer_notifies_once_after_commit(tmp_path: Path) -> None:
    hub = ChangeHub()
    seen: list[str] = []
    hub.subscribe(tmp_path, seen.append)
    inner = StubWriter()
    writer = NotifyingWriter(inner, str(tmp_path), hub)
    writer.write(b"Subject: x\r\n\r\nbody\r\n")
    assert seen == [] and inner.chunks
    result = writer.commit()
    assert writer.result is result and result.uid == 7
    assert seen == [os.path.realpath(tmp_path)]
    writer.commit()  # a second commit returns the result again, no second change
    assert len(seen) == 1
    assert writer.extra == "its own attribute"  # the store writer's attributes

    aborted = NotifyingWriter(StubWriter(), str(tmp_path), hub)
    aborted.write(b"Subject: y\r\n\r\n")
    aborted.abort()
    assert len(seen) == 1 and aborted.aborted
    with pytest.raises(AttributeError):
        aborted.no_such_attribute  # noqa: B018


def test_notifying_writer_as_context_manager(tmp_path: Path) -> None:
    seen: list[str] = []
    with subscribe(tmp_path, seen.append), NotifyingWriter(StubWriter(), str(tmp_path)) as w:
        w.write(b"Subject: z\r\n\r\n")
    assert len(seen) == 1
