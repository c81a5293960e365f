"""The group-commit helpers: results reach their callers, a failure fails exactly its
group, an interrupted leader leaves nobody hanging, batches stay bounded."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable

import pytest

from mailagents.store import _fileio
from mailagents.store._groupcommit import (
    AsyncGroupCommit,
    GroupCommit,
    LeaderInterrupted,
)

JOIN = 10.0  # generous: a hang shows as a thread still alive, not as a slow test


def _run_threads(targets: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert not any(t.is_alive() for t in threads), "a submit hung"


class _Gate:
    """A commit function that blocks its first run until released, so that the test
    can make callers pile up behind a running group."""

    def __init__(self, fail_on: set[int] | None = None) -> None:
        self.groups: list[list[int]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on or set()

    def __call__(self, items: list[int]) -> list[int]:
        self.groups.append(list(items))
        if len(self.groups) == 1:
            self.started.set()
            assert self.release.wait(JOIN)
        if self.fail_on & set(items):
            raise OSError(f"group {items} failed")
        return [i * 10 for i in items]


def _pile_up(
    group: GroupCommit[int, int],
    gate: _Gate,
    n: int,
    commit: Callable[[list[int]], list[int]] | None = None,
) -> dict[int, object]:
    """Item 0 leads and blocks in ``gate``; items 1..n-1 arrive meanwhile; then release.
    ``commit`` (default: the gate itself) is what every caller submits with."""
    outcomes: dict[int, object] = {}
    run_group = commit or gate

    def caller(i: int) -> Callable[[], None]:
        def run() -> None:
            try:
                outcomes[i] = group.submit(i, run_group)
            except BaseException as exc:
                outcomes[i] = exc

        return run

    first = threading.Thread(target=caller(0), daemon=True)
    first.start()
    assert gate.started.wait(JOIN)
    others = [threading.Thread(target=caller(i), daemon=True) for i in range(1, n)]
    for t in others:
        t.start()
    # Wait until every other caller is queued behind the running group.
    for _ in range(1000):
        with group._mutex:
            if len(group._waiting) == n - 1:
                break
        threading.Event().wait(0.01)
    gate.release.set()
    for t in [first, *others]:
        t.join(JOIN)
        assert not t.is_alive(), "a submit hung"
    return outcomes


def test_each_caller_gets_its_own_result_and_waiters_share_one_run() -> None:
    group: GroupCommit[int, int] = GroupCommit()
    gate = _Gate()
    outcomes = _pile_up(group, gate, 6)
    assert outcomes == {i: i * 10 for i in range(6)}
    # The first run held item 0 only; the five that waited shared the second.
    assert gate.groups == [[0], [1, 2, 3, 4, 5]]
    assert not group._leading and not group._waiting


def test_a_failing_commit_fails_exactly_its_group() -> None:
    group: GroupCommit[int, int] = GroupCommit()
    gate = _Gate(fail_on={2})
    outcomes = _pile_up(group, gate, 4)
    assert outcomes[0] == 0  # its run did not fail
    for i in (1, 2, 3):
        assert isinstance(outcomes[i], OSError)
    # Later callers are not affected.
    assert group.submit(7, gate) == 70


def test_max_batch_bounds_every_group() -> None:
    group: GroupCommit[int, int] = GroupCommit(max_batch=2)
    gate = _Gate()
    outcomes = _pile_up(group, gate, 6)
    assert outcomes == {i: i * 10 for i in range(6)}
    assert all(len(g) <= 2 for g in gate.groups)
    assert sorted(i for g in gate.groups for i in g) == list(range(6))


def test_a_wrong_number_of_results_is_an_error_for_the_group() -> None:
    group: GroupCommit[int, int] = GroupCommit()
    with pytest.raises(RuntimeError, match="one result per item"):
        group.submit(1, lambda items: [])
    assert group.submit(2, lambda items: [i + 1 for i in items]) == 3


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError):
        GroupCommit(max_batch=0)


def test_an_interrupted_leader_fails_its_followers_and_nothing_hangs() -> None:
    group: GroupCommit[int, int] = GroupCommit()
    gate = _Gate()
    calls = {"n": 0}

    def interrupted(items: list[int]) -> list[int]:
        calls["n"] += 1
        if calls["n"] == 2:  # the second group: the one with followers
            raise KeyboardInterrupt
        return gate(items)

    outcomes = _pile_up(group, gate, 4, interrupted)
    assert outcomes[0] == 0
    kinds = sorted(type(outcomes[i]).__name__ for i in (1, 2, 3))
    # The thread that led the interrupted group got its KeyboardInterrupt; the others
    # an ordinary error saying nothing of theirs was kept.
    assert kinds == ["KeyboardInterrupt", "LeaderInterrupted", "LeaderInterrupted"]
    assert not group._leading and not group._waiting
    # And the group still works.
    results: list[int] = []
    _run_threads([lambda: results.append(group.submit(5, lambda xs: xs))])
    assert results == [5]
    assert issubclass(LeaderInterrupted, RuntimeError)


def test_fsync_dir_survives_an_interrupted_fsync(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a non-OSError escaping the directory fsync left the per-directory
    syncer marked busy, and every later fsync_dir of that directory hung."""
    real = os.fsync
    state = {"raised": False}

    def flaky(fd: int) -> None:
        if not state["raised"]:
            state["raised"] = True
            raise KeyboardInterrupt
        real(fd)

    monkeypatch.setattr(os, "fsync", flaky)
    path = str(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _fileio.fsync_dir(path)
    errors: list[BaseException] = []

    def again() -> None:
        try:
            _fileio.fsync_dir(path)
        except BaseException as exc:
            errors.append(exc)

    _run_threads([again, again])
    assert errors == []


def test_fsync_dir_keeps_a_bounded_number_of_groups(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An MDA fsyncs the directories of every user it serves: the groups it keeps are
    # bounded, idle ones dropped first; a group in use is kept.
    monkeypatch.setattr(_fileio, "_syncers", {})
    monkeypatch.setattr(_fileio, "MAX_SYNCERS", 8)
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    base = str(tmp_path)
    busy: GroupCommit[None, None] = GroupCommit()
    busy._leading = True  # as if a commit were running in it
    _fileio._syncers["busy"] = (busy, lambda items: [None] * len(items))
    for n in range(50):
        path = os.path.join(base, f"d{n}")
        os.mkdir(path)
        _fileio.fsync_dir(path)
        assert len(_fileio._syncers) <= 8
    assert _fileio._syncers["busy"][0] is busy
    assert os.path.join(base, "d49") in _fileio._syncers


# -- asyncio ----------------------------------------------------------------------


def test_async_batches_and_results() -> None:
    batches: list[list[int]] = []

    async def commit(items: list[int]) -> list[int | Exception]:
        batches.append(list(items))
        await asyncio.sleep(0)
        return [ValueError(i) if i == 3 else i * 2 for i in items]

    async def main() -> list[object]:
        group: AsyncGroupCommit[int, int] = AsyncGroupCommit(commit, max_batch=4)
        return await asyncio.gather(*(group.submit(i) for i in range(10)), return_exceptions=True)

    outcomes = asyncio.run(main())
    assert [o for i, o in enumerate(outcomes) if i != 3] == [i * 2 for i in range(10) if i != 3]
    assert isinstance(outcomes[3], ValueError)
    assert all(len(b) <= 4 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(10))


def test_async_a_raising_commit_fails_its_batch_only() -> None:
    calls = {"n": 0}

    async def commit(items: list[int]) -> list[int | Exception]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk gone")
        return list(items)

    async def main() -> tuple[object, object]:
        group: AsyncGroupCommit[int, int] = AsyncGroupCommit(commit)
        first = await asyncio.gather(group.submit(1), return_exceptions=True)
        second = await group.submit(2)
        return first[0], second

    first, second = asyncio.run(main())
    assert isinstance(first, OSError)
    assert second == 2


def test_async_cancelled_waiter_is_left_out_of_its_batch() -> None:
    batches: list[list[int]] = []
    release = asyncio.Event

    async def main() -> list[object]:
        gate = release()

        async def commit(items: list[int]) -> list[int | Exception]:
            batches.append(list(items))
            if len(batches) == 1:
                await gate.wait()
            return list(items)

        group: AsyncGroupCommit[int, int] = AsyncGroupCommit(commit)
        first = asyncio.ensure_future(group.submit(0))
        await asyncio.sleep(0.01)  # batch [0] is running
        waiting = [asyncio.ensure_future(group.submit(i)) for i in (1, 2, 3)]
        await asyncio.sleep(0)
        assert group.waiting == 3
        waiting[1].cancel()
        gate.set()
        return await asyncio.gather(first, *waiting, return_exceptions=True)

    outcomes = asyncio.run(main())
    assert outcomes[0] == 0 and outcomes[1] == 1 and outcomes[3] == 3
    assert isinstance(outcomes[2], asyncio.CancelledError)
    assert batches == [[0], [1, 3]]


def test_async_limits_must_be_positive() -> None:
    async def commit(items: list[int]) -> list[int | Exception]:
        return list(items)

    with pytest.raises(ValueError):
        AsyncGroupCommit(commit, max_batch=0)
    with pytest.raises(ValueError):
        AsyncGroupCommit(commit, max_batches=0)
