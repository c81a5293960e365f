"""Several processes and many threads on one store at once.

Among mailagents processes no session may see a half-written message, lose a flag
change, or get a UID handed out twice. The processes are started with the "spawn"
context (no state inherited from the test process) and are bounded in time.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import re
import time
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import pytest

from mailagents.store import DELETED, SEEN, Store
from tests.store.conftest import FORMATS, make_message, open_store, store_class

pytestmark = pytest.mark.slow

PROCESS_TIMEOUT = 60.0
PER_PROCESS = 100


def _subject(data: bytes) -> str:
    match = re.search(rb"^Subject: (.*?)\r?$", data, re.M)
    assert match is not None, data[:200]
    return match.group(1).decode()


def _body(index: int, i: int) -> bytes:
    return make_message(f"p{index}-m{i}", f"Message {i} from process {index}.\r\n",
                        size=700 + 13 * (i % 50))


def _appender(kind: str, root: str, index: int, count: int, barrier: Any,
              results: Any) -> None:
    """Child: append ``count`` messages, flag each with its own keyword (and every
    tenth \\Seen), then, once both children are done, add a sweep keyword to every
    message in the folder, all at the same time as the other child."""
    try:
        store = open_store(kind, root)
        with store.folder("INBOX") as f:
            uids = []
            barrier.wait(PROCESS_TIMEOUT)  # start together
            for i in range(count):
                uid = f.append_bytes(_body(index, i), assign_uid=True).uid
                assert uid is not None
                uids.append(uid)
                f.refresh()
                flags = [f"own{index}", SEEN] if i % 10 == 0 else [f"own{index}"]
                changed, refused = f.set_flags([uid], flags, "add")
                assert [m.uid for m in changed] == [uid] and not refused
            barrier.wait(PROCESS_TIMEOUT)
            f.refresh()
            every = [m.uid for m in f.messages()]
            f.set_flags(every, [f"sweep{index}"], "add")
            # And a few single-message changes racing with the other sweep.
            for uid in every[index::7]:
                f.set_flags([uid], [f"late{index}"], "add")
            barrier.wait(PROCESS_TIMEOUT)
        store.close()
        results.put((index, "ok", uids))
    except BaseException as exc:  # report, so that the parent fails with the cause
        results.put((index, "error", repr(exc)))
        raise


def _run_children(targets: list[tuple[Any, tuple[Any, ...]]], results: Any,
                  ctx: Any) -> dict[int, Any]:
    procs = [ctx.Process(target=t, args=a, daemon=True) for t, a in targets]
    for p in procs:
        p.start()
    out: dict[int, Any] = {}
    deadline = time.monotonic() + PROCESS_TIMEOUT
    try:
        while len(out) < len(procs):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"children did not finish within {PROCESS_TIMEOUT} s: {out}")
            try:
                index, status, payload = results.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead and results.empty():
                    time.sleep(0.5)
                    if results.empty():
                        pytest.fail(f"a child died: exit codes {[p.exitcode for p in procs]}")
                continue
            if status != "ok":
                pytest.fail(f"child {index} failed: {payload}")
            out[index] = payload
    finally:
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()) + 1)
            if p.is_alive():
                p.kill()
                p.join(5)
    return out


@pytest.mark.parametrize("kind", FORMATS)
def test_two_processes_append_and_flag(kind: str, tmp_path: Path) -> None:
    store_class(kind)
    root = os.fspath(tmp_path / "store")
    open_store(kind, root).close()  # make the store before the race
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    got = _run_children(
        [(_appender, (kind, root, i, PER_PROCESS, barrier, results)) for i in (0, 1)],
        results, ctx,
    )

    s = open_store(kind, root)
    try:
        with s.folder("INBOX") as f:
            f.refresh()
            infos = f.messages()
            listed = [m.uid for m in infos]
            assert len(listed) == 2 * PER_PROCESS
            assert listed == sorted(set(listed)), "UIDs not unique and ascending"
            for index in (0, 1):
                assert got[index] == sorted(got[index])
            assert sorted(got[0] + got[1]) == listed
            assert not set(got[0]) & set(got[1])
            assert f.status().uidnext > listed[-1]
            owner = {uid: 0 for uid in got[0]} | {uid: 1 for uid in got[1]}
            for info in infos:
                index = owner[info.uid]
                i = got[index].index(info.uid)
                data = f.read_message(info.uid)
                assert data == _body(index, i)
                assert info.size == len(data)
                expected = {f"own{index}", "sweep0", "sweep1"}
                if i % 10 == 0:
                    expected.add(SEEN)
                for late in (0, 1):
                    if info.uid in listed[late::7]:
                        expected.add(f"late{late}")
                assert info.flags == expected, (info.uid, info.flags, expected)
    finally:
        s.close()


def _expunger(kind: str, root: str, index: int, count: int, barrier: Any,
              results: Any) -> None:
    """Child: append ``count`` messages; every other one is junk, flagged \\Deleted and
    expunged at once (an mbox rewrite racing with the other child's appends)."""
    try:
        store = open_store(kind, root)
        kept = []
        with store.folder("INBOX") as f:
            barrier.wait(PROCESS_TIMEOUT)
            for i in range(count):
                uid = f.append_bytes(_body(index, i), flags=[f"own{index}"]).uid
                assert uid is not None
                if i % 2:
                    f.refresh()
                    f.set_flags([uid], [DELETED], "add")
                    assert list(f.expunge([uid])) == [uid]
                else:
                    kept.append(uid)
        store.close()
        results.put((index, "ok", kept))
    except BaseException as exc:
        results.put((index, "error", repr(exc)))
        raise


@pytest.mark.parametrize("kind", FORMATS)
def test_appends_race_with_expunges_in_another_process(kind: str, tmp_path: Path) -> None:
    store_class(kind)
    root = os.fspath(tmp_path / "store")
    open_store(kind, root).close()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    got = _run_children(
        [(_appender_plain, (kind, root, 0, PER_PROCESS, barrier, results)),
         (_expunger, (kind, root, 1, PER_PROCESS, barrier, results))],
        results, ctx,
    )
    s = open_store(kind, root)
    try:
        with s.folder("INBOX") as f:
            f.refresh()
            infos = f.messages()
            listed = [m.uid for m in infos]
            assert listed == sorted(set(listed))
            assert sorted(got[0] + got[1]) == listed
            assert len(listed) == PER_PROCESS + PER_PROCESS // 2
            for info in infos:
                index = 0 if info.uid in got[0] else 1
                i = got[index].index(info.uid) * (1 if index == 0 else 2)
                assert f.read_message(info.uid) == _body(index, i)
                assert info.flags == {f"own{index}"}
            assert f.status().uidnext > max(listed)
    finally:
        s.close()


def _appender_plain(kind: str, root: str, index: int, count: int, barrier: Any,
                    results: Any) -> None:
    """Child: append ``count`` messages with a keyword, flagging each once more."""
    try:
        store = open_store(kind, root)
        uids = []
        with store.folder("INBOX") as f:
            barrier.wait(PROCESS_TIMEOUT)
            for i in range(count):
                uid = f.append_bytes(_body(index, i)).uid
                assert uid is not None
                uids.append(uid)
                f.refresh()
                f.set_flags([uid], [f"own{index}"], "add")
        store.close()
        results.put((index, "ok", uids))
    except BaseException as exc:
        results.put((index, "error", repr(exc)))
        raise


def _fast_deliverer(kind: str, root: str, index: int, count: int, barrier: Any,
                    results: Any) -> None:
    """Child: an MDA appending without assigning UIDs (the fast path)."""
    try:
        store = open_store(kind, root)
        barrier.wait(PROCESS_TIMEOUT)
        with store.folder("INBOX") as f:
            for i in range(count):
                result = f.append_bytes(_body(index, i), assign_uid=False)
                assert result.uid is None
        store.close()
        results.put((index, "ok", None))
    except BaseException as exc:
        results.put((index, "error", repr(exc)))
        raise


def _reader(kind: str, root: str, index: int, count: int, barrier: Any,
            results: Any) -> None:
    """Child: an IMAP session refreshing while mail arrives; records which message
    each UID it was told about is. Refreshing assigns the pending UIDs."""
    try:
        store = open_store(kind, root)
        barrier.wait(PROCESS_TIMEOUT)
        seen: dict[int, str] = {}
        deadline = time.monotonic() + PROCESS_TIMEOUT / 2
        with store.folder("INBOX") as f:
            first = True
            while len(seen) < count and time.monotonic() < deadline:
                if first:  # what was there when the folder was opened
                    added: Any = f.messages()
                    first = False
                else:
                    changes = f.refresh()
                    assert not changes.expunged
                    added = changes.added
                last = max(seen, default=0)
                for info in added:
                    assert info.uid > last, "UIDs not ascending across refreshes"
                    last = info.uid
                    data = f.read_message(info.uid)
                    assert info.size == len(data), "a half-written message was visible"
                    seen[info.uid] = _subject(data)
                time.sleep(0.002)
        store.close()
        results.put((index, "ok", seen))
    except BaseException as exc:
        results.put((index, "error", repr(exc)))
        raise


@pytest.mark.parametrize("kind", FORMATS)
def test_uids_assigned_by_concurrent_readers_agree(kind: str, tmp_path: Path) -> None:
    store_class(kind)
    root = os.fspath(tmp_path / "store")
    open_store(kind, root).close()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    results = ctx.Queue()
    count = PER_PROCESS
    got = _run_children(
        [
            (_fast_deliverer, (kind, root, 0, count, barrier, results)),
            (_reader, (kind, root, 1, count, barrier, results)),
            (_reader, (kind, root, 2, count, barrier, results)),
        ],
        results, ctx,
    )
    s = open_store(kind, root)
    try:
        with s.folder("INBOX") as f:
            f.refresh()
            final = {m.uid: _subject(f.read_message(m.uid)) for m in f.messages()}
    finally:
        s.close()
    assert sorted(final.values()) == sorted(f"p0-m{i}" for i in range(count))
    assert list(final) == sorted(final)
    # The delivery order is kept: UIDs ascend with the order of the appends.
    assert list(final.values()) == [f"p0-m{i}" for i in range(count)]
    for reader in (1, 2):
        assert len(got[reader]) == count, f"reader {reader} saw {len(got[reader])}"
        for uid, subject in got[reader].items():
            assert final.get(uid) == subject, (reader, uid, subject, final.get(uid))


@pytest.mark.parametrize("assign", [True, False])
def test_threads_append_through_the_store_executor(store: Store, assign: bool) -> None:
    threads, per_thread = 16, 20

    def deliver(t: int) -> list[int | None]:
        out = []
        with store.folder("INBOX") as f:
            for i in range(per_thread):
                result = f.append_bytes(_body(t, i), assign_uid=assign,
                                        flags=[f"t{t}"])
                out.append(result.uid)
        return out

    futures = [store.executor.submit(deliver, t) for t in range(threads)]
    done, pending = wait(futures, timeout=PROCESS_TIMEOUT)
    assert not pending, "threads did not finish in time"
    per = [fut.result() for fut in futures]

    with store.folder("INBOX") as f:
        f.refresh()
        infos = f.messages()
        listed = [m.uid for m in infos]
        assert len(listed) == threads * per_thread
        assert listed == sorted(set(listed))
        if assign:
            returned = [u for uids in per for u in uids]
            assert None not in returned
            assert sorted(returned) == listed  # type: ignore[type-var]
            for uids in per:
                assert uids == sorted(uids)  # type: ignore[type-var]
        for info in infos:
            data = f.read_message(info.uid)
            match = re.fullmatch(r"p(\d+)-m(\d+)", _subject(data))
            assert match is not None
            t, i = int(match.group(1)), int(match.group(2))
            assert data == _body(t, i)
            assert info.flags == {f"t{t}"}
            assert info.size == len(data)


def test_threads_flag_the_same_messages(store: Store) -> None:
    with store.folder("INBOX") as f:
        uids = [f.append_bytes(_body(0, i)).uid for i in range(20)]

    def flagger(t: int) -> None:
        with store.folder("INBOX") as f:
            for uid in uids:
                f.set_flags([uid], [f"k{t}"], "add")  # type: ignore[list-item]

    futures = [store.executor.submit(flagger, t) for t in range(16)]
    done, pending = wait(futures, timeout=PROCESS_TIMEOUT)
    assert not pending
    for fut in futures:
        fut.result()
    with store.folder("INBOX") as f:
        f.refresh()
        for info in f.messages():
            assert info.flags == {f"k{t}" for t in range(16)}, info.uid
