"""The watcher's core (mailagents/store/_watch*.py): the inotify binding, the stat
snapshots and their coarse-timestamp rule, and one Watcher that finds changes made by
another program (a plain rename into new/, an mbox written to) with inotify or by
polling, each folder watched once however many users it has."""

from __future__ import annotations

import os
import select
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents.store import MaildirStore, MboxStore
from mailagents.store._hub import folder_key
from mailagents.store._watch import Watcher
from mailagents.store._watch_inotify import (
    IN_CREATE,
    IN_MOVED_TO,
    IN_Q_OVERFLOW,
    Inotify,
    available,
    parse_events,
)
from mailagents.store._watch_poll import RACY_NS, FolderProbe, folder_files, signature

needs_inotify = pytest.mark.skipif(not available(), reason="inotify is Linux's")
MODES = [pytest.param(True, marks=needs_inotify, id="inotify"), pytest.param(False, id="poll")]
MESSAGE = b"From: a@example.test\nSubject: hi\n\nbody\n"


def _maildir(root: Path) -> str:
    store = MaildirStore(str(root))
    path = store.folder("INBOX").path
    store.close()
    return path


def _drop_in_new(folder: str, name: str = "1700000000.P1.host") -> None:
    """What another program does: write in tmp/, rename into new/."""
    tmp = os.path.join(folder, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(MESSAGE)
    os.rename(tmp, os.path.join(folder, "new", name))


def _changes(watcher: Watcher, timeout: float = 5.0) -> set[str]:
    """What the watcher finds within ``timeout`` (waiting for its descriptor)."""
    fd = watcher.fileno()
    if fd is None:
        return watcher.poll_changes()
    found: set[str] = set()
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return found
        found |= watcher.read_changes()
        if found:
            return found


@pytest.fixture
def watcher(request: pytest.FixtureRequest) -> Iterator[Watcher]:
    # A clock far after every file time: no snapshot is racy (that rule has its own
    # tests), so that a slow machine cannot turn "no change" into "maybe".
    w = Watcher(inotify=request.param, clock=lambda: 1 << 62)
    yield w
    w.close()


# --- the inotify records ------------------------------------------------------------


def _record(wd: int, mask: int, name: bytes, cookie: int = 0) -> bytes:
    padded = name + b"\0" * (-len(name) % 16 or (16 if name else 0))
    return struct.pack("iIII", wd, mask, cookie, len(padded)) + padded


def test_parse_events_reads_records_and_drops_a_truncated_one() -> None:
    data = _record(1, IN_CREATE, b"new") + _record(2, IN_MOVED_TO, b"x" * 20, 7)
    data += _record(-1, IN_Q_OVERFLOW, b"")
    events = parse_events(data)
    assert [(e.wd, e.mask, e.name, e.cookie) for e in events] == [
        (1, IN_CREATE, "new", 0),
        (2, IN_MOVED_TO, "x" * 20, 7),
        (-1, IN_Q_OVERFLOW, "", 0),
    ]
    assert parse_events(data[:-1])[-1].name == "x" * 20
    assert parse_events(data[:10]) == []
    whole = _record(3, IN_CREATE, b"abc")
    assert parse_events(whole[:-4]) == []  # name cut short


def test_parse_events_keeps_undecodable_names() -> None:
    (event,) = parse_events(_record(1, IN_CREATE, b"\xff\xfe"))
    assert os.fsencode(event.name) == b"\xff\xfe"


@needs_inotify
def test_inotify_descriptor(tmp_path: Path) -> None:
    with Inotify() as ino:
        assert ino.read() == []  # never blocks
        wd = ino.add(str(tmp_path), IN_CREATE)
        assert ino.add(str(tmp_path), IN_CREATE) == wd
        (tmp_path / "f").write_bytes(b"")
        select.select([ino.fileno()], [], [], 5)
        (event,) = ino.read()
        assert (event.wd, event.name) == (wd, "f") and event.mask & IN_CREATE
        with pytest.raises(FileNotFoundError):
            ino.add(str(tmp_path / "missing"), IN_CREATE)
        ino.remove(wd)
    assert ino.closed and ino.fileno() == -1
    ino.close()


# --- stat snapshots ---------------------------------------------------------------


def test_folder_files(tmp_path: Path) -> None:
    folder = _maildir(tmp_path / "Maildir")
    assert folder_files(folder) == (
        os.path.join(folder, "new"),
        os.path.join(folder, "cur"),
        os.path.join(folder, "dovecot-uidlist"),
    )
    assert folder_files(str(tmp_path / "mbox")) == (
        str(tmp_path / "mbox"),
        str(tmp_path / ".mbox.mailagents-index"),
    )
    assert signature(str(tmp_path / "missing")) is None


def test_probe_sees_a_rename_into_new_and_nothing_else(tmp_path: Path) -> None:
    folder = _maildir(tmp_path / "Maildir")
    now = [0]
    probe = FolderProbe(folder, clock=lambda: now[0])
    now[0] = 10 * RACY_NS + os.stat(folder).st_mtime_ns  # long after: not racy
    probe.take()
    assert probe.check() is False
    _drop_in_new(folder)
    assert probe.check() is True
    assert probe.check() is False


def test_probe_racy_snapshot_reports_once_after_the_window(tmp_path: Path) -> None:
    mbox = tmp_path / "mbox"
    mbox.write_bytes(b"")
    changed = os.stat(mbox).st_mtime_ns
    now = [changed + 1000]  # taken within the same tick as the last change
    probe = FolderProbe(str(mbox), clock=lambda: now[0])
    assert probe.check() is False  # still inside the window: nothing to say yet
    assert probe.check(hint=True) is True  # an event within the window is believed
    now[0] = changed + RACY_NS + 1
    assert probe.check() is True  # "maybe", once, after the window
    assert probe.check() is False
    assert probe.check(hint=True) is False  # no longer racy: a hint alone is not news


def test_mbox_probe_takes_no_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = MboxStore(str(tmp_path / "mail"))
    folder = store.folder("INBOX")
    probe = FolderProbe(folder.path, clock=lambda: 1 << 62)
    import fcntl

    def forbidden(*args: object) -> None:
        raise AssertionError("the probe took a lock")

    with monkeypatch.context() as m:
        for name in ("flock", "lockf", "fcntl"):
            m.setattr(fcntl, name, forbidden)
        assert probe.check() is False
    with folder.append() as w:
        w.write(MESSAGE)
    with monkeypatch.context() as m:
        for name in ("flock", "lockf", "fcntl"):
            m.setattr(fcntl, name, forbidden)
        assert probe.check() is True
        assert probe.check() is False
    store.close()


# --- the watcher ------------------------------------------------------------------


@pytest.mark.parametrize("watcher", MODES, indirect=True)
def test_watcher_sees_a_hand_rename_into_new(watcher: Watcher, tmp_path: Path) -> None:
    folder = _maildir(tmp_path / "Maildir")
    key = watcher.add(folder)
    assert key == folder_key(folder)
    assert _changes(watcher, 0.05) == set()
    _drop_in_new(folder)
    assert _changes(watcher) == {key}
    assert _changes(watcher, 0.05) == set()  # a burst is one change


@pytest.mark.parametrize("watcher", MODES, indirect=True)
def test_watcher_sees_a_flag_rename_in_cur_and_an_unlink(watcher: Watcher, tmp_path: Path) -> None:
    folder = _maildir(tmp_path / "Maildir")
    cur = os.path.join(folder, "cur")
    with open(os.path.join(cur, "m1:2,"), "wb") as f:
        f.write(MESSAGE)
    key = watcher.add(folder)
    os.rename(os.path.join(cur, "m1:2,"), os.path.join(cur, "m1:2,S"))
    assert _changes(watcher) == {key}
    os.unlink(os.path.join(cur, "m1:2,S"))
    assert _changes(watcher) == {key}


@pytest.mark.parametrize("watcher", MODES, indirect=True)
def test_watcher_mbox_append_and_replacement(watcher: Watcher, tmp_path: Path) -> None:
    mbox = tmp_path / "inbox"
    mbox.write_bytes(b"From a@b Mon Dec  7 12:00:00 2026\n" + MESSAGE)
    key = watcher.add(str(mbox))
    with open(mbox, "ab") as f:
        f.write(b"\nFrom c@d Mon Dec  7 12:00:01 2026\n" + MESSAGE)
    assert _changes(watcher) == {key}
    # Replaced by a rename (as a rewrite does): seen, and the new file is watched.
    new = tmp_path / "inbox.new"
    new.write_bytes(b"")
    os.rename(new, mbox)
    assert _changes(watcher) == {key}
    _changes(watcher, 0.05)
    with open(mbox, "ab") as f:
        f.write(b"From e@f Mon Dec  7 12:00:02 2026\n" + MESSAGE)
    assert _changes(watcher) == {key}


@pytest.mark.parametrize("watcher", MODES, indirect=True)
def test_watcher_sees_a_flag_change_of_another_mbox_handle(
    watcher: Watcher, tmp_path: Path
) -> None:
    # Another process of ours changes flags: only the side index is written.
    store = MboxStore(str(tmp_path / "mail"))
    folder = store.folder("INBOX")
    with folder.append() as w:
        w.write(MESSAGE)
    folder.refresh()
    key = watcher.add(folder.path)
    size = os.path.getsize(folder.path)
    (info,) = folder.messages()
    folder.set_flags([info.uid], ["\\Seen"], "add")
    assert os.path.getsize(folder.path) == size  # the mbox itself is untouched
    assert _changes(watcher) == {key}
    store.close()


@needs_inotify
def test_mbox_event_without_a_change_is_not_news(tmp_path: Path) -> None:
    mbox = tmp_path / "inbox"
    mbox.write_bytes(MESSAGE)
    st = os.stat(mbox)
    w = Watcher(inotify=True, clock=lambda: st.st_mtime_ns + 10 * RACY_NS)
    key = w.add(str(mbox))
    # A dotlock beside it and an open for writing that writes nothing.
    (tmp_path / "inbox.lock").write_bytes(b"")
    os.unlink(tmp_path / "inbox.lock")
    os.close(os.open(mbox, os.O_WRONLY))  # IN_CLOSE_WRITE, same signature
    assert key not in _changes(w, 0.2)
    w.close()


@pytest.mark.parametrize("watcher", MODES, indirect=True)
def test_one_watch_per_folder_counted_by_users(watcher: Watcher, tmp_path: Path) -> None:
    folder = _maildir(tmp_path / "Maildir")
    key = watcher.add(folder)
    assert watcher.add(os.path.join(folder, ".", "")) == key
    assert len(watcher) == 1 and watcher.users(key) == 2
    watcher.remove(key)
    _drop_in_new(folder, "a")
    assert _changes(watcher) == {key}
    watcher.remove(key)
    watcher.remove(key)  # not watched any more: ignored
    assert len(watcher) == 0 and watcher.users(key) == 0
    _drop_in_new(folder, "b")
    assert _changes(watcher, 0.1) == set()


@needs_inotify
def test_watches_go_with_the_last_user(tmp_path: Path) -> None:
    w = Watcher(inotify=True)
    folder = _maildir(tmp_path / "Maildir")
    other = _maildir(tmp_path / "Other")
    a = w.add(folder)
    b = w.add(other)
    assert w.polled == frozenset()
    w.remove(a)
    assert all(folder not in p for p in w._paths)
    _drop_in_new(other)
    assert _changes(w) == {b}
    w.remove(b)
    assert w._paths == {} and w._by_wd == {}
    w.close()


def test_unwatchable_folder_is_polled(tmp_path: Path) -> None:
    w = Watcher(inotify=available())
    missing = str(tmp_path / "later")
    key = w.add(missing)
    if w.mode == "inotify":
        assert w.polled == {key}
    (tmp_path / "later").write_bytes(MESSAGE)
    assert w.poll_changes() == {key}
    w.close()


def test_watcher_is_bounded(tmp_path: Path) -> None:
    w = Watcher(inotify=False, max_folders=2)
    w.add(str(tmp_path / "a"))
    w.add(str(tmp_path / "b"))
    w.add(str(tmp_path / "a"))  # a known folder is no new one
    with pytest.raises(OSError):
        w.add(str(tmp_path / "c"))
    with pytest.raises(ValueError):
        Watcher(max_folders=0)
    assert w.mode == "poll" and w.fileno() is None and w.read_changes() == set()
    w.close()


@needs_inotify
def test_queue_overflow_reports_every_folder(tmp_path: Path) -> None:
    w = Watcher(inotify=True)
    a = w.add(_maildir(tmp_path / "A"))
    b = w.add(_maildir(tmp_path / "B"))
    assert w._inotify is not None

    class Overflowing:
        def read(self, max_reads: int = 16) -> list[object]:
            return parse_events(_record(-1, IN_Q_OVERFLOW, b""))  # type: ignore[return-value]

    real = w._inotify
    w._inotify = Overflowing()  # type: ignore[assignment]
    try:
        assert w.read_changes() == {a, b}
    finally:
        w._inotify = real
    w.close()


@needs_inotify
def test_maildir_new_replaced_is_watched_again(tmp_path: Path) -> None:
    folder = _maildir(tmp_path / "Maildir")
    w = Watcher(inotify=True)
    key = w.add(folder)
    new = os.path.join(folder, "new")
    os.rmdir(new)
    os.mkdir(new)
    assert key in _changes(w)
    _changes(w, 0.05)
    _drop_in_new(folder)
    assert _changes(w) == {key}
    w.close()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 2)), max_size=30))
def test_watches_follow_their_users(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[bool, int]]
) -> None:
    root = tmp_path_factory.mktemp("users")
    folders = [_maildir(root / f"F{n}") for n in range(2)] + [str(root / "mbox")]
    (root / "mbox").write_bytes(b"")
    w = Watcher(inotify=available())
    model = [0, 0, 0]
    keys = [folder_key(f) for f in folders]
    for adding, n in ops:
        if adding:
            assert w.add(folders[n]) == keys[n]
            model[n] += 1
        else:
            w.remove(keys[n])
            model[n] = max(0, model[n] - 1)
        assert [w.users(k) for k in keys] == model
        assert len(w) == sum(1 for m in model if m)
    for n, k in enumerate(keys):
        for _ in range(model[n]):
            w.remove(k)
    assert len(w) == 0 and w._paths == {} and w._by_wd == {}
    w.close()
