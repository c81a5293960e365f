"""Folder change notification on the event loop (mailagents/aio/_watching.py): a write
through this process's hub wakes every watch of the folder from any thread; another
program's change (a plain rename into new/, an mbox written to) is found by the one
inotify descriptor or the one poll; a folder is watched once however many sessions
watch it; everything stops with the last watch."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from mailagents.aio._watching import FolderWatcher, folder_watcher
from mailagents.store import MaildirStore
from mailagents.store._hub import ChangeHub
from mailagents.store._watch_inotify import available

needs_inotify = pytest.mark.skipif(not available(), reason="inotify is Linux's")
MESSAGE = b"From: a@example.test\nSubject: hi\n\nbody\n"
WAIT = 10.0  # generous: the machine is loaded; the fast path is asserted otherwise


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (with a time bound)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 30))

    return wrapper


def _maildir(root: Path) -> str:
    store = MaildirStore(str(root))
    path = store.folder("INBOX").path
    store.close()
    return path


def _drop_in_new(folder: str, name: str) -> None:
    tmp = os.path.join(folder, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(MESSAGE)
    os.rename(tmp, os.path.join(folder, "new", name))


@run_async
async def test_hub_wakes_the_watch_from_another_thread(tmp_path: Path) -> None:
    folder = _maildir(tmp_path / "Maildir")
    hub = ChangeHub()
    # Polling once an hour: only the hub can wake it within the test.
    watcher = FolderWatcher(hub=hub, inotify=False, poll_interval=3600)
    woken: list[int] = []
    watch = watcher.watch(folder, lambda: woken.append(1))
    assert watcher.mode == "poll"
    thread = threading.Thread(target=hub.notify, args=(folder,))
    thread.start()
    await asyncio.wait_for(watch.wait(), WAIT)
    thread.join()
    assert woken == [1] and not watch.changed.is_set()
    watch.close()
    watch.close()
    assert watcher.mode is None and watcher.folders == 0


@run_async
async def test_a_burst_from_threads_is_one_hop_to_the_loop(tmp_path: Path) -> None:
    hub = ChangeHub()
    watcher = FolderWatcher(hub=hub, inotify=False, poll_interval=3600)
    woken: list[int] = []
    with watcher.watch(str(tmp_path), lambda: woken.append(1)) as watch:
        # Notified 100 times before the loop runs again: the loop hears once.
        for _ in range(100):
            hub.notify(tmp_path)
        await asyncio.wait_for(watch.wait(), WAIT)
        await asyncio.sleep(0)
        assert woken == [1]
    assert watch.closed


@pytest.mark.parametrize("inotify", [pytest.param(True, marks=needs_inotify), False])
@run_async
async def test_another_programs_rename_into_new_wakes_every_session(
    tmp_path: Path, inotify: bool
) -> None:
    folder = _maildir(tmp_path / "Maildir")
    hub = ChangeHub()
    watcher = FolderWatcher(hub=hub, inotify=inotify, poll_interval=0.05)
    watches = [watcher.watch(folder) for _ in range(20)]
    assert watcher.folders == 1  # one watch (one poll) for the 20 sessions
    assert watcher.mode == ("inotify" if inotify else "poll")
    await asyncio.sleep(0.1)
    for w in watches:
        w.changed.clear()
    _drop_in_new(folder, "1700000000.P1.other")
    await asyncio.wait_for(asyncio.gather(*(w.wait() for w in watches)), WAIT)
    for w in watches:
        w.close()
    assert watcher.mode is None


@needs_inotify
@run_async
async def test_inotify_bursts_are_coalesced(tmp_path: Path) -> None:
    folder = _maildir(tmp_path / "Maildir")
    hub = ChangeHub()
    watcher = FolderWatcher(hub=hub, inotify=True, coalesce=0.2)
    woken: list[int] = []
    watch = watcher.watch(folder, lambda: woken.append(1))
    for n in range(50):
        _drop_in_new(folder, f"m{n}")
    await asyncio.wait_for(watch.wait(), WAIT)
    await asyncio.sleep(0.3)
    assert 1 <= len(woken) <= 5
    watch.close()


@run_async
async def test_mbox_polling_sees_an_append(tmp_path: Path) -> None:
    mbox = tmp_path / "inbox"
    mbox.write_bytes(b"")
    watcher = FolderWatcher(hub=ChangeHub(), inotify=False, poll_interval=0.05)
    watch = watcher.watch(mbox)
    with open(mbox, "ab") as f:
        f.write(b"From a@b Mon Dec  7 12:00:00 2026\n" + MESSAGE)
    await asyncio.wait_for(watch.wait(), WAIT)
    watch.close()


@run_async
async def test_the_poll_task_stops_with_the_last_watch(tmp_path: Path) -> None:
    watcher = FolderWatcher(hub=ChangeHub(), inotify=False, poll_interval=0.01)
    a = watcher.watch(str(tmp_path / "a"))
    b = watcher.watch(str(tmp_path / "b"))
    poller = watcher._poller
    assert poller is not None and watcher.folders == 2
    a.close()
    assert watcher._poller is poller and watcher.folders == 1
    b.close()
    await asyncio.sleep(0)
    assert poller.cancelled() or poller.done()
    assert watcher._poller is None and watcher.mode is None


@run_async
async def test_a_watch_outliving_its_watcher_close(tmp_path: Path) -> None:
    hub = ChangeHub()
    watcher = FolderWatcher(hub=hub, inotify=False, poll_interval=3600)
    old = watcher.watch(str(tmp_path))
    watcher.close()
    new = watcher.watch(str(tmp_path))
    old.close()  # belongs to the closed core: the new watch keeps its folder
    assert watcher.folders == 1
    hub.notify(tmp_path)
    await asyncio.wait_for(new.wait(), WAIT)
    assert not old.changed.is_set()
    new.close()


@run_async
async def test_watcher_bound_and_arguments(tmp_path: Path) -> None:
    watcher = FolderWatcher(hub=ChangeHub(), inotify=False, max_folders=1)
    w = watcher.watch(str(tmp_path / "a"))
    with pytest.raises(OSError):
        watcher.watch(str(tmp_path / "b"))
    assert watcher.folders == 1
    w.close()
    with pytest.raises(ValueError):
        FolderWatcher(poll_interval=0)


@run_async
async def test_a_failing_callback_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub = ChangeHub()
    watcher = FolderWatcher(hub=hub, inotify=False, poll_interval=3600)

    def broken() -> None:
        raise RuntimeError("boom")

    watch = watcher.watch(str(tmp_path), broken)
    hub.notify(tmp_path)
    await asyncio.wait_for(watch.wait(), WAIT)
    assert "boom" in caplog.text
    watch.close()


@run_async
async def test_the_shared_watcher_per_loop() -> None:
    assert folder_watcher() is folder_watcher(asyncio.get_running_loop())


def test_the_shared_watcher_does_not_keep_a_finished_loop_alive(tmp_path: Path) -> None:
    import gc

    from mailagents.aio import _watching

    async def use() -> None:
        with folder_watcher().watch(str(tmp_path)):
            pass

    asyncio.run(use())
    gc.collect()
    before = len(_watching._shared)
    for _ in range(3):
        asyncio.run(use())
    gc.collect()
    assert len(_watching._shared) <= before


@needs_inotify
@run_async
async def test_a_failing_inotify_descriptor_falls_back_to_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _maildir(tmp_path / "Maildir")
    watcher = FolderWatcher(hub=ChangeHub(), inotify=True, poll_interval=0.05)
    watch = watcher.watch(folder)
    core = watcher._core
    assert core is not None and watcher.mode == "inotify"

    def broken(max_reads: int = 16) -> set[str]:
        raise OSError("EIO")

    monkeypatch.setattr(core, "read_changes", broken)
    _drop_in_new(folder, "first")  # makes the descriptor readable: the read fails
    for _ in range(200):
        if watcher.mode == "poll":
            break
        await asyncio.sleep(0.02)
    assert watcher.mode == "poll" and watcher._reading is None
    # The change the failed read could not report is reported all the same.
    await asyncio.wait_for(watch.wait(), WAIT)
    _drop_in_new(folder, "second")
    await asyncio.wait_for(watch.wait(), WAIT)
    watch.close()
