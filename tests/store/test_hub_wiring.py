"""The stores tell the hub: every write through any handle (an append or delivery, a
flag change, an expunge, a copy or move into the folder) wakes whoever watches that
folder, whichever Store object made the change, and reading never does (a session's
refresh must not wake the others)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import mailagents.store.maildir as maildir_module
from mailagents.store import DELETED, SEEN, Folder, MaildirStore, MboxStore, Store
from mailagents.store._hub import HUB

MESSAGE = b"From: a@example.test\r\nSubject: hi\r\n\r\nbody\r\n"


def _open(kind: str, root: Path) -> Store:
    if kind == "maildir":
        if not hasattr(maildir_module, "notify"):
            pytest.skip("maildir.py does not call the hub yet (wiring pending)")
        return MaildirStore(str(root / "Maildir"))
    return MboxStore(str(root / "mail"))


@pytest.fixture(params=["maildir", "mbox"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0

    def __call__(self, key: str) -> None:
        with self.lock:
            self.calls += 1

    def take(self) -> int:
        with self.lock:
            n, self.calls = self.calls, 0
        return n


@pytest.fixture
def watched(kind: str, tmp_path: Path) -> Iterator[tuple[Store, Folder, Counter]]:
    store = _open(kind, tmp_path)
    folder = store.folder("INBOX")
    counter = Counter()
    with HUB.subscribe(folder.path, counter):
        yield store, folder, counter
    store.close()


def _append(folder: Folder, flags: tuple[str, ...] = ()) -> None:
    with folder.append(flags=flags) as w:
        w.write(MESSAGE)


def test_append_wakes(watched: tuple[Store, Folder, Counter]) -> None:
    _, folder, counter = watched
    _append(folder)
    assert counter.take() >= 1


def test_reading_does_not_wake(watched: tuple[Store, Folder, Counter]) -> None:
    _, folder, counter = watched
    _append(folder)
    folder.refresh()
    counter.take()
    folder.refresh()
    folder.messages()
    folder.status()
    (info,) = folder.messages()
    with folder.open_message(info.uid) as stream:
        stream.read()
    assert counter.take() == 0


def test_flags_and_expunge_wake(watched: tuple[Store, Folder, Counter]) -> None:
    _, folder, counter = watched
    _append(folder)
    folder.refresh()
    (info,) = folder.messages()
    counter.take()
    folder.set_flags([info.uid], [SEEN], "add")
    assert counter.take() >= 1
    folder.set_flags([info.uid], [DELETED], "add")
    counter.take()
    assert folder.expunge() == [info.uid]
    assert counter.take() >= 1


def test_a_change_through_another_store_object_wakes(
    kind: str, tmp_path: Path, watched: tuple[Store, Folder, Counter]
) -> None:
    _, folder, counter = watched
    other = _open(kind, tmp_path)
    try:
        _append(other.folder("INBOX"))
    finally:
        other.close()
    assert counter.take() >= 1


def test_copy_and_move_wake_the_target(watched: tuple[Store, Folder, Counter]) -> None:
    store, folder, counter = watched
    store.create_folder("Archive")
    archive = store.folder("Archive")
    target = Counter()
    _append(folder)
    _append(folder)
    folder.refresh()
    first, second = folder.messages()
    with HUB.subscribe(archive.path, target):
        folder.copy([first.uid], archive)
        assert target.take() >= 1
        counter.take()
        folder.move([second.uid], archive)
        assert target.take() >= 1
        assert counter.take() >= 1  # the source lost a message


def test_a_delivery_from_executor_threads_wakes(
    watched: tuple[Store, Folder, Counter],
) -> None:
    store, folder, counter = watched
    threads = [threading.Thread(target=_append, args=(folder,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.take() >= 1
    assert len(folder.refresh().added) == 4


def test_keys_meet_through_a_symbolic_link(kind: str, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    store = _open(kind, tmp_path / "link")
    folder = store.folder("INBOX")
    counter = Counter()
    with HUB.subscribe(os.path.realpath(folder.path), counter):
        _append(folder)
    assert counter.take() >= 1
    store.close()


def test_maildir_batch_delivery_wakes(tmp_path: Path) -> None:
    store = _open("maildir", tmp_path)
    folder = store.folder("INBOX")
    counter = Counter()
    with HUB.subscribe(folder.path, counter):
        delivery = store.folder("INBOX", deliver_only=True)
        results = delivery.append_batch([MESSAGE, MESSAGE])
        assert len(results) == 2
        assert counter.take() >= 1
    store.close()
