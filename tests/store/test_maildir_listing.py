"""The inotify-kept listings of cur/ and new/ (mailagents/store/_maildir_listing.py)
and the sync that skips the scan after our own changes (_maildir_sync._Core._unchanged):
what another program does between two syncs is always seen, even when the directory
times say nothing changed (two changes within one tick of the file-time clock), and a
sync after only our own renames does not list the directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailagents.store import DELETED, FLAGGED, SEEN, _maildir_listing, _maildir_sync
from mailagents.store._watch_inotify import available
from mailagents.store.maildir import MaildirFolder, MaildirStore

MESSAGE = b"From: a@example.test\r\nSubject: hello\r\n\r\nbody\r\n"

pytestmark = pytest.mark.skipif(
    not available(), reason="no inotify here"
)


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[tuple[MaildirStore, MaildirFolder]]:
    store = MaildirStore(tmp_path / "Maildir", fsync=False)
    folder = store.folder("INBOX")
    for _ in range(5):
        writer = folder.append()
        writer.write(MESSAGE)
        writer.commit()
    folder.refresh()
    yield store, folder
    folder.close()
    store.close()


def _cur(store: MaildirStore) -> Path:
    return Path(store.root) / "cur"


def _freeze(path: Path, st: os.stat_result) -> None:
    """Give the directory back its old times: what a change within the same clock tick
    as the last one looks like."""
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _name_of(store: MaildirStore, uid: int) -> str:
    records = (Path(store.root) / "dovecot-uidlist").read_text().splitlines()[1:]
    base = next(r.split()[-1].lstrip(":") for r in records if r.split()[0] == str(uid))
    return next(n for n in os.listdir(_cur(store)) if n.partition(":")[0] == base)


class _Listdirs:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        real = os.listdir

        def counted(path: str) -> list[str]:
            self.calls.append(str(path))
            return real(path)

        monkeypatch.setattr(_maildir_listing.os, "listdir", counted)


def test_a_rename_by_another_program_in_the_same_tick_is_seen(
    inbox: tuple[MaildirStore, MaildirFolder],
) -> None:
    store, folder = inbox
    cur = _cur(store)
    before = os.stat(cur)
    name = _name_of(store, 2)
    os.rename(cur / name, cur / (name.partition(":")[0] + ":2,F"))
    _freeze(cur, before)
    changes = folder.refresh()
    assert [i.uid for i in changes.changed] == [2]
    assert FLAGGED in folder.info(2).flags


def test_an_unlink_and_a_new_file_in_the_same_tick_are_seen(
    inbox: tuple[MaildirStore, MaildirFolder],
) -> None:
    store, folder = inbox
    cur = _cur(store)
    before = os.stat(cur)
    os.unlink(cur / _name_of(store, 3))
    (cur / "1700000000.M1P1.elsewhere:2,S").write_bytes(MESSAGE.replace(b"\r\n", b"\n"))
    _freeze(cur, before)
    changes = folder.refresh()
    assert changes.expunged == (3,)
    assert [i.uid for i in changes.added] == [6]
    assert SEEN in folder.info(6).flags


def test_a_change_right_after_our_own_store_is_seen(
    inbox: tuple[MaildirStore, MaildirFolder],
) -> None:
    store, folder = inbox
    cur = _cur(store)
    folder.set_flags([1], frozenset({SEEN}), "add")
    before = os.stat(cur)
    name = _name_of(store, 4)
    os.rename(cur / name, cur / (name.partition(":")[0] + ":2,FS"))
    _freeze(cur, before)
    changes = folder.refresh()
    assert [i.uid for i in changes.changed] == [4]
    assert folder.info(4).flags >= {FLAGGED, SEEN}


def test_a_sync_after_only_our_own_changes_lists_nothing(
    inbox: tuple[MaildirStore, MaildirFolder], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, folder = inbox
    folder.set_flags([5], frozenset({DELETED}), "add")
    folder.refresh()
    listdirs = _Listdirs(monkeypatch)
    folder.set_flags([1, 2], frozenset({FLAGGED}), "add")
    folder.expunge([5])
    changes = folder.refresh()
    assert listdirs.calls == []
    assert changes.expunged == () and changes.changed == ()  # we knew them already
    assert [i.uid for i in folder.messages()] == [1, 2, 3, 4]
    assert FLAGGED in folder.info(2).flags


def test_a_delivery_into_new_is_moved_and_numbered(
    inbox: tuple[MaildirStore, MaildirFolder],
) -> None:
    store, folder = inbox
    new = Path(store.root) / "new"
    before = os.stat(new)
    (new / "1700000001.M2P2.elsewhere").write_bytes(MESSAGE)
    _freeze(new, before)
    changes = folder.refresh()
    assert [i.uid for i in changes.added] == [6]
    assert os.listdir(new) == []


def test_without_inotify_the_folder_is_listed_and_still_right(
    inbox: tuple[MaildirStore, MaildirFolder], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, folder = inbox
    monkeypatch.setattr(_maildir_listing._HUB, "_broken", True)
    listing = _maildir_listing.DirListing(str(_cur(store)))
    assert listing.current() is None and listing.changes() is None
    cur = _cur(store)
    name = _name_of(store, 2)
    os.rename(cur / name, cur / (name.partition(":")[0] + ":2,F"))
    assert [i.uid for i in folder.refresh().changed] == [2]


def test_listing_follows_events_and_relists_after_an_overflow(tmp_path: Path) -> None:
    d = tmp_path / "cur"
    d.mkdir()
    (d / "a:2,").write_bytes(b"")
    listing = _maildir_listing.DirListing(str(d))
    assert listing.current() == ({"a": "a:2,"}, False)
    os.rename(d / "a:2,", d / "a:2,S")
    (d / "b").write_bytes(b"")
    (d / ".hidden").write_bytes(b"")
    found = listing.changes()
    assert found == ({"a": "a:2,S", "b": "b"}, 2)
    os.unlink(d / "b")
    assert listing.changes() == ({"b": None}, 1)
    with _maildir_listing._HUB.lock:
        _maildir_listing._HUB._lose_all()
    assert listing.changes() is None  # not valid until listed again
    assert listing.current() == ({"a": "a:2,S"}, False)
    assert listing.changes() == ({}, 1)


def test_a_second_file_for_one_base_makes_the_listing_list_again(tmp_path: Path) -> None:
    d = tmp_path / "cur"
    d.mkdir()
    (d / "a:2,").write_bytes(b"")
    listing = _maildir_listing.DirListing(str(d))
    listing.current()
    (d / "a:2,S").write_bytes(b"")
    assert listing.changes() is None
    files, duplicate = listing.current() or ({}, False)
    assert duplicate and set(files) == {"a"}


def test_after_fork_the_listings_start_over(tmp_path: Path) -> None:
    d = tmp_path / "cur"
    d.mkdir()
    listing = _maildir_listing.DirListing(str(d))
    listing.current()
    hub = _maildir_listing._HUB
    saved = (hub.lock, hub._inotify, hub._by_wd, hub._dead)
    try:
        hub._inotify = None  # keep the real descriptor for the rest of the session
        hub.after_fork()
        assert listing.changes() is None
        (d / "x").write_bytes(b"")
        assert listing.current() == ({"x": "x"}, False)
        os.unlink(d / "x")
        assert listing.changes() == ({"x": None}, 0)
    finally:
        if hub._inotify is not None:
            hub._inotify.close()
        hub.lock, hub._inotify, hub._by_wd, hub._dead = saved
        listing._lose()


def test_the_unchanged_check_needs_the_state_files_as_they_were(
    inbox: tuple[MaildirStore, MaildirFolder],
) -> None:
    store, folder = inbox
    core = folder._core
    folder.refresh()
    stamp = core._stamp_now()[0]
    assert core._unchanged(stamp)
    # Another process appended to the uidlist: the files key differs.
    with open(os.path.join(store.root, "dovecot-uidlist"), "a") as f:
        f.write("")
    uidlist = Path(store.root) / "dovecot-uidlist"
    os.utime(uidlist, ns=(1, 1))
    assert not core._unchanged(core._stamp_now()[0])
    assert _maildir_sync._files_key(stamp) != _maildir_sync._files_key(core._stamp_now()[0])
