"""FileLock (in-process lock + flock) and DotLock (NAME.lock files)."""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mailagents.store import _locking
from mailagents.store._locking import DotLock, FileLock, LockTimeout, break_stale_dotlock


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


# --- judging and breaking a stale dotlock -------------------------------------------


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _lock_file(path: Path, content: str, age: float = 0.0) -> None:
    path.write_text(content)
    if age:
        when = time.time() - age
        os.utime(path, (when, when))


@pytest.mark.parametrize(
    ("content", "age", "bare_pid", "broken"),
    [
        ("{live}:{host}\n", 0, False, False),  # a live process of this host holds it
        ("{live}:{host}\n", 99_999, False, False),  # however old
        ("{dead}:{host}\n", 0, False, True),  # its process is gone: broken at once
        ("{dead}\n", 0, True, True),  # a bare PID (mutt, liblockfile) on this host
        ("{dead}\n", 0, False, False),  # ... unless bare PIDs are not ours to judge
        ("{dead}\n", 99_999, False, True),  # then by age
        ("{live}:elsewhere.test\n", 0, False, False),  # another host's: by age only
        ("{live}:elsewhere.test\n", 99_999, False, True),
        ("garbage\n", 0, True, False),
        ("garbage\n", 99_999, True, True),
    ],
)
def test_break_stale_dotlock_judges_like_mail_tools(
    tmp_path: Path, content: str, age: float, bare_pid: bool, broken: bool
) -> None:
    lock = tmp_path / "INBOX.lock"
    text = content.format(live=os.getpid(), dead=_dead_pid(), host=socket.gethostname())
    _lock_file(lock, text, age)
    assert break_stale_dotlock(str(lock), 3600, bare_pid=bare_pid) is broken
    assert lock.exists() is not broken


def test_break_stale_dotlock_on_a_vanished_lock_says_try_again(tmp_path: Path) -> None:
    assert break_stale_dotlock(str(tmp_path / "gone.lock"), 60) is True


def test_a_fresh_lock_taken_while_judging_is_never_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another program breaks the same stale lock and takes its own between our look and
    # our unlink: its lock must survive (the old code removed whatever was there).
    lock = tmp_path / "INBOX.lock"
    _lock_file(lock, f"{_dead_pid()}:{socket.gethostname()}\n")

    def judged_dead_then_replaced(pid: int) -> bool:
        fresh = tmp_path / "fresh"
        fresh.write_text(f"{os.getpid()}:{socket.gethostname()}\n")
        os.replace(fresh, lock)
        return False

    monkeypatch.setattr(_locking, "pid_alive", judged_dead_then_replaced)
    assert break_stale_dotlock(str(lock), 3600) is False
    assert lock.read_text() == f"{os.getpid()}:{socket.gethostname()}\n"
