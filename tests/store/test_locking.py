"""FileLock (in-process lock + flock) and DotLock (NAME.lock files)."""

from __future__ import annotations

import multiprocessing
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from mailagents.store._locking import DotLock, FileLock, LockTimeout


def hold_flock(path: str, ready: object, release: object) -> None:
    with FileLock(path):
        ready.set()  # type: ignore[attr-defined]
        release.wait(10)  # type: ignore[attr-defined]


def test_filelock_excludes_threads(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    inside = 0
    peak = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, peak
        for _ in range(20):
            with FileLock(path):
                with guard:
                    inside += 1
                    peak = max(peak, inside)
                time.sleep(0.0005)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 1


def test_filelock_excludes_processes_and_times_out(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    path = str(tmp_path / "lock")
    child = ctx.Process(target=hold_flock, args=(path, ready, release))
    child.start()
    try:
        assert ready.wait(10)
        with pytest.raises(LockTimeout):
            FileLock(path, timeout=0.2).acquire()
    finally:
        release.set()
        child.join(10)
    with FileLock(path, timeout=2) as lock:
        assert lock.held and lock.fd >= 0
    assert not lock.held
    with pytest.raises(RuntimeError):
        _ = lock.fd


def test_filelock_notices_a_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    lock = FileLock(path)
    lock.acquire()
    first = os.fstat(lock.fd).st_ino
    lock.release()
    os.rename(path, tmp_path / "old")
    path.write_bytes(b"")
    with FileLock(path) as again:
        assert os.fstat(again.fd).st_ino != first
        with pytest.raises(RuntimeError):
            again.acquire()


def test_dotlock_exclusive_and_released(tmp_path: Path) -> None:
    path = tmp_path / "box.lock"
    with DotLock(path) as lock:
        assert path.exists() and lock.held
        owner = path.read_text()
        assert owner.startswith(f"{os.getpid()}:")
        other = DotLock(path, timeout=0.1)
        with pytest.raises(LockTimeout):
            other.acquire()
        lock.touch()
    assert not path.exists()


def test_dotlock_of_a_dead_process_is_broken_at_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=lambda: None)
    child.start()
    child.join()
    path = tmp_path / "box.lock"
    path.write_text(f"{child.pid}:{socket.gethostname()}\n")
    with DotLock(path, timeout=1, stale_after=3600):
        assert path.read_text().startswith(f"{os.getpid()}:")


def test_foreign_dotlock_is_broken_only_when_old(tmp_path: Path) -> None:
    path = tmp_path / "box.lock"
    path.write_text("")  # another program's lock: no owner we can check
    with pytest.raises(LockTimeout):
        DotLock(path, timeout=0.2, stale_after=60).acquire()
    old = time.time() - 600
    os.utime(path, (old, old))
    with DotLock(path, timeout=1, stale_after=60):
        pass
