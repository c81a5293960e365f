"""SessionLock: the POP3 maildrop lock (exclusive, non-blocking flock, separate from
the delivery locks, dropped by the kernel when its holder dies)."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from mailagents.store import (
    MailboxInUseError,
    MaildirStore,
    MboxStore,
    SessionLock,
    Store,
)

MESSAGE = b"From: a@example.test\r\nSubject: x\r\n\r\nbody\r\n"


def hold(path: str, ready: object, release: object) -> None:
    lock = SessionLock(path)
    lock.acquire()
    ready.set()  # type: ignore[attr-defined]
    release.wait(10)  # type: ignore[attr-defined]


def hold_and_die(path: str, ready: object) -> None:
    SessionLock(path).acquire()
    ready.set()  # type: ignore[attr-defined]
    os.kill(os.getpid(), signal.SIGKILL)


def test_two_locks_in_one_process_conflict(tmp_path: Path) -> None:
    first = SessionLock(tmp_path / "lock")
    second = SessionLock(tmp_path / "lock")
    first.acquire()
    assert first.held
    with pytest.raises(MailboxInUseError):
        second.acquire()
    assert not second.held
    first.release()
    assert not first.held
    second.acquire()  # free again
    second.release()
    second.release()  # twice is harmless
    assert (tmp_path / "lock").exists()  # never removed


def test_acquire_twice_on_one_object_is_misuse(tmp_path: Path) -> None:
    with SessionLock(tmp_path / "lock") as lock, pytest.raises(RuntimeError):
        lock.acquire()
    assert not lock.held


def test_other_process_holds_it(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    path = str(tmp_path / "lock")
    child = ctx.Process(target=hold, args=(path, ready, release))
    child.start()
    try:
        assert ready.wait(10)
        with pytest.raises(MailboxInUseError):
            SessionLock(path).acquire()
    finally:
        release.set()
        child.join(10)
    with SessionLock(path):
        pass


def test_a_crashed_holder_leaves_it_free(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    path = str(tmp_path / "lock")
    child = ctx.Process(target=hold_and_die, args=(path, ready))
    child.start()
    assert ready.wait(10)
    child.join(10)
    assert child.exitcode == -signal.SIGKILL
    with SessionLock(path):  # the kernel dropped the flock with the process
        pass


def test_a_replaced_lock_file_is_not_a_second_lock(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    first = SessionLock(path)
    first.acquire()
    path.unlink()  # someone removes the file: the next session makes a new one
    second = SessionLock(path)
    second.acquire()
    third = SessionLock(path)
    with pytest.raises(MailboxInUseError):
        third.acquire()
    first.release()
    second.release()


@pytest.mark.parametrize("kind", ["maildir", "mbox"])
def test_for_store_is_invisible_and_independent_of_delivery(tmp_path: Path, kind: str) -> None:
    store: Store
    if kind == "maildir":
        store = MaildirStore(tmp_path / "Maildir", fsync=False)
        expected = tmp_path / "Maildir" / "mailagents-pop3.lock"
    else:
        store = MboxStore(tmp_path / "mbox", fsync=False)
        expected = tmp_path / "mbox" / ".mailagents-pop3.lock"
    with store:
        lock = SessionLock.for_store(store)
        assert lock.path == str(expected)
        with lock:
            with pytest.raises(MailboxInUseError):
                SessionLock.for_store(store).acquire()
            # Delivery and reading go on while a session holds the maildrop.
            with store.folder("INBOX") as inbox:
                result = inbox.append_bytes(MESSAGE)
                inbox.refresh()
                assert [m.uid for m in inbox.messages()] == [result.uid]
                assert inbox.read_message(result.uid or 0) == MESSAGE
            assert [f.name for f in store.folders()] == ["INBOX"]
        assert expected.exists()
        assert [f.name for f in store.folders()] == ["INBOX"]


def test_for_store_needs_a_root() -> None:
    class Rootless(MaildirStore):
        def __init__(self) -> None:
            pass

    with pytest.raises(TypeError):
        SessionLock.for_store(Rootless())
