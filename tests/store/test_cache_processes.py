"""The message cache shared by processes: two writers at once, a reader beside a
writer that compacts, and writers killed with SIGKILL at random moments (during
appends and compactions): nothing flushed is lost, nothing is ever served wrong, and
the next writer carries on."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

from mailagents.store._cache import FolderCache
from tests.store.test_cache import UIDVALIDITY, entry

TIME_BUDGET = 15.0  # seconds for the kill loop, whatever the machine
MIN_KILLS = 10  # crashes required within it (a loaded machine does fewer in all)
KILLS = 120


def open_cache(path: str, **kwargs: object) -> FolderCache:
    return FolderCache(Path(path) / "cache", UIDVALIDITY, background=False, **kwargs)  # type: ignore[arg-type]


def writer(path: str, uids: list[int], seed: int) -> None:
    """Child: put entries of ``uids`` (each twice, in a random order), flushing in small
    batches; exits 0 when done."""
    rng = random.Random(seed)
    order = uids + uids
    rng.shuffle(order)
    with open_cache(path, max_size=1 << 24, dead_fraction=0.3) as cache:
        for i, uid in enumerate(order):
            cache.put(entry(uid))
            if i % rng.randrange(1, 8) == 0:
                cache.flush()


def reader(path: str, uids: list[int], seconds: float) -> None:
    """Child: read entries for a while with one handle and with fresh ones; exits 1 on
    any wrong entry."""
    deadline = time.monotonic() + seconds
    with open_cache(path) as cache:
        while time.monotonic() < deadline:
            for uid in uids:
                got = cache.get(uid)
                if got is not None and got != entry(uid):
                    os._exit(1)
            with open_cache(path) as fresh:
                got = fresh.get(random.choice(uids))
                if got is not None and got != entry(got.uid):
                    os._exit(1)


def test_two_writers_and_a_reader(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    first = list(range(1, 121))
    second = list(range(80, 201))  # 80..120 written by both
    procs = [
        ctx.Process(target=writer, args=(str(tmp_path), first, 1)),
        ctx.Process(target=writer, args=(str(tmp_path), second, 2)),
        ctx.Process(target=reader, args=(str(tmp_path), list(range(1, 201)), 3.0)),
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    with open_cache(str(tmp_path)) as cache:
        for uid in range(1, 201):
            assert cache.get(uid) == entry(uid), uid


def write_forever(path: str, seed: int, fd: int) -> None:
    """Child: put, flush and now and then compact, reporting each UID once its flush
    has returned."""
    rng = random.Random(seed)
    with open_cache(path, max_size=1 << 24, dead_fraction=0.2) as cache:
        while True:
            batch = [rng.randrange(1, 400) for _ in range(rng.randrange(1, 12))]
            for uid in batch:
                cache.put(entry(uid))
            if rng.random() < 0.1:
                cache.compact()
            else:
                cache.flush()
            os.write(fd, b"".join(b"%d\n" % uid for uid in batch))


def test_sigkill_during_cache_writes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(99)
    flushed: set[int] = set()
    kills = 0
    deadline = time.monotonic() + TIME_BUDGET
    while kills < KILLS and time.monotonic() < deadline:
        read_fd, write_fd = os.pipe()
        child = ctx.Process(target=write_forever, args=(str(tmp_path), kills, write_fd))
        child.start()
        os.close(write_fd)
        time.sleep(rng.uniform(0.005, 0.08))
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        kills += 1
        with os.fdopen(read_fd, "rb") as pipe:
            flushed.update(int(line) for line in pipe.read().split(b"\n") if line)
        with open_cache(str(tmp_path)) as cache:
            served = cache.cached_uids()
            missing = flushed - served
            assert not missing, f"flushed entries lost: {sorted(missing)[:10]}"
            for uid in served:
                assert cache.get(uid) == entry(uid), f"UID {uid} served wrong"
    print(f"cache: {kills} kills, {len(flushed)} flushed UIDs verified")
    assert kills >= MIN_KILLS, f"only {kills} kills within the time budget"
    assert flushed, "no child ever flushed"
    # the next writer carries on over whatever the last one left
    with open_cache(str(tmp_path)) as cache:
        cache.put(entry(1000))
        cache.flush()
    with open_cache(str(tmp_path)) as cache:
        assert cache.get(1000) == entry(1000)
        assert flushed <= cache.cached_uids()


def hold_lock(path: str, locked_fd: int, release_fd: int) -> None:
    """Child: hold the writers' lock of the cache at ``path`` until told to let go."""
    import fcntl

    fd = os.open(os.path.join(path, "cache.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(locked_fd, b"locked\n")
    os.read(release_fd, 1)
    os.close(fd)


def test_puts_and_gets_never_wait_for_another_writer(tmp_path: Path) -> None:
    """While another process holds the writers' lock, put and get return at once (the
    background writer waits, not them); the entry reaches the file once it is free."""
    ctx = multiprocessing.get_context("fork")
    locked_r, locked_w = os.pipe()
    release_r, release_w = os.pipe()
    child = ctx.Process(target=hold_lock, args=(str(tmp_path), locked_w, release_r))
    child.start()
    try:
        assert os.read(locked_r, 7) == b"locked\n"
        with FolderCache(tmp_path / "cache", UIDVALIDITY) as cache:
            cache.put(entry(1))
            assert cache.get(1) == entry(1)
            assert cache.get(2) is None
            time.sleep(0.2)  # the background writer has tried by now, and waits
            with open_cache(str(tmp_path)) as fresh:
                assert fresh.get(1) is None  # not on disk while the lock is held
            assert child.is_alive()
            os.write(release_w, b"x")
            child.join(10)
            deadline = time.monotonic() + 30
            while True:
                with open_cache(str(tmp_path)) as fresh:
                    if fresh.get(1) == entry(1):
                        break
                assert time.monotonic() < deadline, "never written once the lock was free"
                time.sleep(0.02)
    finally:
        if child.is_alive():
            os.write(release_w, b"x")
        child.join(10)
        for fd in (locked_r, locked_w, release_r, release_w):
            os.close(fd)
