"""The message cache wired into both store formats: ``Folder.cached`` and
``message_cache`` (lazily opened, never on a delivery handle, a new one for a new
UIDVALIDITY), entries dropped on expunge and compacted away when other programs
expunged, closed with the handle, the cache files moved and removed with mbox folders,
and never listed as folders; the STATUS numbers kept behind ``Store.status`` (and a
STATUS without SIZE that reads no message file)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from mailagents.store import Folder, MessageNotFoundError, Store, _cache_status, _maildir_status
from mailagents.store import maildir as maildir_module
from mailagents.store import mbox as mbox_module
from mailagents.store._cache import FolderCache, build_entry
from mailagents.store._cache_slot import CacheSlot
from mailagents.store.maildir import MaildirStore
from mailagents.store.mbox import MboxStore
from tests.store.conftest import make_message, store_kind, store_root


def _entry_of(folder: Folder, uid: int) -> object:
    data = folder.read_message(uid)
    return build_entry(uid, [data[i : i + 997] for i in range(0, len(data), 997)])


def _fill(store: Store, name: str = "INBOX", count: int = 3) -> list[int]:
    if name != "INBOX":
        store.create_folder(name)
    with store.folder(name) as folder:
        uids = []
        for i in range(count):
            result = folder.append_bytes(make_message(f"message {i}", size=600 + 50 * i))
            assert result.uid is not None
            uids.append(result.uid)
        return uids


def _cache_path(store: Store, name: str) -> Path:
    root = store_root(store)
    if store_kind(store) == "maildir":
        base = root if name == "INBOX" else root / ("." + name.replace("/", "."))
        return base / "mailagents-cache"
    directory, _, leaf = name.rpartition("/")
    where = root / (directory.replace("/", ".sbd/") + ".sbd") if directory else root
    return where / f".{leaf}.mailagents-cache"


def _refuse(uid: int, start: int = 0, length: int | None = None) -> BinaryIO:
    raise AssertionError("the message was read although its entry is cached")


def test_cached_matches_build_entry_and_is_kept(store: Store) -> None:
    uids = _fill(store)
    with store.folder("INBOX") as folder:
        cache = folder.message_cache()
        assert isinstance(cache, FolderCache)
        assert folder.message_cache() is cache  # lazily opened once
        assert cache.path == os.path.abspath(_cache_path(store, "INBOX"))
        for uid in uids:
            assert folder.cached(uid) == _entry_of(folder, uid)
            assert folder.cached(uid).size == folder.info(uid).size
        with pytest.raises(MessageNotFoundError):
            folder.cached(max(uids) + 10)
    # close() wrote the queue: a new handle serves every entry without reading one
    assert _cache_path(store, "INBOX").stat().st_size > 0
    with store.folder("INBOX") as folder:
        expected = {uid: _entry_of(folder, uid) for uid in uids}
        folder.open_message = _refuse  # type: ignore[method-assign]
        for uid in uids:
            assert folder.cached(uid) == expected[uid]


def test_without_cache_the_entry_is_computed(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    uids = _fill(store)
    with store.folder("INBOX") as folder:
        monkeypatch.setattr(folder, "message_cache", lambda: None)
        assert folder.cached(uids[1]) == _entry_of(folder, uids[1])
    assert not _cache_path(store, "INBOX").exists()


def test_no_cache_on_a_delivery_handle(store: Store) -> None:
    _fill(store)
    with store.folder("INBOX", deliver_only=True) as folder:
        assert folder.message_cache() is None
        folder.append_bytes(make_message("delivered"), assign_uid=False)
    assert not _cache_path(store, "INBOX").exists()


def test_expunge_drops_entries(store: Store) -> None:
    uids = _fill(store, count=4)
    with store.folder("INBOX") as folder:
        cache = folder.message_cache()
        assert cache is not None
        for uid in uids:
            folder.cached(uid)
        folder.set_flags([uids[0], uids[2]], ["\\Deleted"], "add")
        assert sorted(folder.expunge()) == [uids[0], uids[2]]
        assert cache.cached_uids() == {uids[1], uids[3]}
        store.create_folder("Other")
        with store.folder("Other") as other:
            folder.move([uids[1]], other)
        assert cache.cached_uids() == {uids[3]}


def test_refresh_drops_what_another_handle_expunged(store: Store) -> None:
    uids = _fill(store)
    with store.folder("INBOX") as reader, store.folder("INBOX") as writer:
        cache = reader.message_cache()
        assert cache is not None
        for uid in uids:
            reader.cached(uid)
        writer.set_flags([uids[1]], ["\\Deleted"], "add")
        writer.expunge()
        assert uids[1] in cache.cached_uids()
        assert uids[1] in reader.refresh().expunged
        assert cache.cached_uids() == {uids[0], uids[2]}


def test_entries_of_foreign_expunges_are_compacted(store: Store) -> None:
    uids = _fill(store, count=5)
    with store.folder("INBOX") as folder:
        for uid in uids:
            folder.cached(uid)
    with store.folder("INBOX") as other:  # no cache opened: drops nothing
        other.set_flags(uids[:3], ["\\Deleted"], "add")
        other.expunge()
    with store.folder("INBOX") as folder:
        cache = folder.message_cache()
        assert cache is not None
        assert cache.cached_uids() == set(uids)
        before = cache.file_size()
        folder.refresh()
        assert cache.cached_uids() == set(uids[3:])
        assert cache.file_size() < before


def test_cache_files_are_not_folders(store: Store) -> None:
    _fill(store)
    _fill(store, "Archive", 2)
    store.create_folder("Archive/2026")
    before = [info.name for info in store.folders()]
    for name in ("INBOX", "Archive"):
        with store.folder(name) as folder:
            for info in folder.messages():
                folder.cached(info.uid)
            cache = folder.message_cache()
            assert cache is not None
            cache.compact()  # leaves a .lock file behind, as writers do
        assert _cache_path(store, name).exists()
    assert [info.name for info in store.folders()] == before
    assert store.status("Archive").messages == 2


def test_folder_rename_and_delete_carry_the_cache(store: Store) -> None:
    uids = _fill(store, "Work", 2)
    with store.folder("Work") as folder:
        expected = {uid: folder.cached(uid) for uid in uids}
    store.rename_folder("Work", "Done")
    assert not _cache_path(store, "Work").exists()
    assert _cache_path(store, "Done").exists()
    with store.folder("Done") as folder:
        folder.open_message = _refuse  # type: ignore[method-assign]
        assert {uid: folder.cached(uid) for uid in uids} == expected
    store.delete_folder("Done")
    leftovers = [p for p in store_root(store).rglob("*") if "Done" in p.name]
    assert leftovers == []
    store.create_folder("Done")
    with store.folder("Done") as folder:
        assert folder.messages() == []
        cache = folder.message_cache()
        assert cache is not None
        assert cache.cached_uids() == frozenset()


def test_slot_opens_a_new_cache_for_a_new_uidvalidity(tmp_path: Path) -> None:
    slot = CacheSlot(str(tmp_path / "cache"))
    assert slot.get(0) is None
    first = slot.get(7)
    assert first is not None and slot.get(7) is first
    second = slot.get(8)
    assert second is not None and second is not first and second.uidvalidity == 8
    with pytest.raises(ValueError):
        first.put(build_entry(1, [b"Subject: x\r\n\r\nbody\r\n"]))  # closed
    slot.close()
    assert slot.get(8) is None
    assert CacheSlot(str(tmp_path / "other"), enabled=False).get(3) is None


# -- the STATUS cache behind Store.status -------------------------------------------


class _Later:
    """``time`` for ``_cache_status`` as if every source had settled long ago."""

    @staticmethod
    def time_ns() -> int:
        return time.time_ns() + 3_600 * 10**9


def _status_file(store: Store, name: str) -> Path:
    cache = _cache_path(store, name)
    return cache.with_name(cache.name.replace("mailagents-cache", "mailagents-status"))


def _settled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cache_status, "time", _Later)


def test_status_is_kept_and_follows_changes(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _fill(store, "Box", 3)
    _settled(monkeypatch)
    first = store.status("Box")
    assert first.messages == 3 and first.size > 0
    assert _status_file(store, "Box").exists()
    module = maildir_module if store_kind(store) == "maildir" else mbox_module

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("STATUS computed again although nothing changed")

    with monkeypatch.context() as patched:
        patched.setattr(module, "peek_status", refuse)
        assert store.status("Box") == first
        assert store.status("Box", ["MESSAGES"]) == first
    with store.folder("Box") as folder:
        folder.append_bytes(make_message("one more"))
        uid = folder.messages()[0].uid
        folder.set_flags([uid], ["\\Seen"], "add")
    second = store.status("Box")
    assert second.messages == 4 and second.unseen == first.unseen  # 1 new, 1 seen
    assert second.size > first.size
    with store.folder("Box") as folder:
        folder.set_flags([uid], ["\\Deleted"], "add")
        folder.expunge()
        expected = folder.status()
    third = store.status("Box")
    assert (third.messages, third.unseen, third.size) == (
        expected.messages,
        expected.unseen,
        expected.size,
    )


def test_status_without_size_never_answers_size(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(store, "Box", 2)
    _settled(monkeypatch)
    full = store.status("Box")
    _status_file(store, "Box").unlink()
    partial = store.status("Box", ["MESSAGES", "unseen"])
    assert partial.messages == full.messages and partial.unseen == full.unseen
    assert store.status("Box", ["messages"]).messages == full.messages
    assert store.status("Box", ["MESSAGES", "SIZE"]).size == full.size
    assert store.status("Box").size == full.size
    assert store.status("Box", ["MESSAGES"]).messages == full.messages


def test_maildir_status_without_size_reads_no_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MaildirStore(tmp_path / "md", fsync=False)
    try:
        store.create_folder("Box")
        new = tmp_path / "md" / ".Box" / "new"
        for i in range(3):  # delivered by another program: no W= in the names
            (new / f"1700000000.M{i}P1.other").write_bytes(b"Subject: x\n\nbody\n")

        def refuse(path: str) -> int:
            raise AssertionError(f"read {path}")

        monkeypatch.setattr(_maildir_status, "crlf_size_of", refuse)
        status = store.status("Box", ["MESSAGES", "UNSEEN", "RECENT"])
        assert (status.messages, status.unseen, status.recent) == (3, 3, 3)
        with pytest.raises(AssertionError):
            store.status("Box", ["SIZE"])
        monkeypatch.undo()
        assert store.status("Box", ["SIZE"]).size == 3 * len(b"Subject: x\r\n\r\nbody\r\n")
    finally:
        store.close()


def test_status_files_go_with_mbox_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = MboxStore(tmp_path / "mb", fsync=False)
    try:
        _settled(monkeypatch)
        store.create_folder("Work")
        with store.folder("Work") as folder:
            folder.append_bytes(make_message("kept"))
        assert store.status("Work").messages == 1
        assert (tmp_path / "mb" / ".Work.mailagents-status").exists()
        store.rename_folder("Work", "Done")
        assert not (tmp_path / "mb" / ".Work.mailagents-status").exists()
        assert store.status("Done").messages == 1
        store.delete_folder("Done")
        assert not list((tmp_path / "mb").glob(".Done.*"))
        store.create_folder("Done")
        assert store.status("Done").messages == 0
    finally:
        store.close()


def test_cache_names_are_exported() -> None:
    import mailagents.store as store_package

    for name in (
        "FolderCache",
        "CachedMessage",
        "CacheFormatError",
        "StatusCache",
        "build_entry",
        "base_subject",
        "sent_date",
    ):
        assert name in store_package.__all__
        assert getattr(store_package, name).__doc__
    assert store_package.FolderCache is FolderCache
