"""The STATUS numbers cache (mailagents/store/_cache_status.py) over a real Maildir:
after every kind of change (delivery, a file dropped by another program, flag changes,
expunge, a \\Recent claim) the cached answer equals a fresh STATUS; a damaged file is a
miss; numbers of sources that changed just now are not stored."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from mailagents.store import DELETED, SEEN, FolderStatus
from mailagents.store._cache_status import StatusCache
from mailagents.store.maildir import MaildirStore


def sources(folder_dir: Path) -> list[Path]:
    return [
        folder_dir / "new",
        folder_dir / "cur",
        folder_dir / "dovecot-uidlist",
        folder_dir / "mailagents-modseq",
        folder_dir / "dovecot-keywords",
    ]


def make(tmp_path: Path, settle: float = 0.0) -> tuple[MaildirStore, StatusCache]:
    store = MaildirStore(tmp_path / "Maildir", fsync=False)
    store.create_folder("Work")
    folder_dir = tmp_path / "Maildir" / ".Work"
    return store, StatusCache(folder_dir / "mailagents-status", sources(folder_dir), settle=settle)


def msg(i: int) -> bytes:
    return b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i)


def test_cached_status_follows_every_change(tmp_path: Path) -> None:
    store, cache = make(tmp_path)
    rng = random.Random(5)
    calls = 0

    def compute() -> FolderStatus:
        nonlocal calls
        calls += 1
        return store.status("Work")

    with store, store.folder("Work") as work:
        for step in range(150):
            op = rng.randrange(6)
            if op == 0:
                work.append_bytes(msg(step), assign_uid=rng.random() < 0.5)
            elif op == 1:  # another program delivers
                name = f"{1_700_000_000 + step}.M{step}P1.other"
                (tmp_path / "Maildir" / ".Work" / "new" / name).write_bytes(b"Subject: x\n\nx\n")
            elif op == 2 and work.messages():
                uid = rng.choice(work.messages()).uid
                work.set_flags([uid], [rng.choice([SEEN, DELETED, "$Label"])], "add")
            elif op == 3:
                work.expunge()
            elif op == 4:
                work.claim_recent()
            else:
                work.refresh()
            before = calls
            got = cache.cached(compute)
            assert got == store.status("Work"), step
            after = calls
            assert after <= before + 1  # computed after a change, else served
            assert cache.cached(compute) == got
            assert calls == after  # served
    assert 50 < calls < 150  # both paths were taken
    assert cache.get() is not None


def test_not_stored_while_sources_are_fresh(tmp_path: Path) -> None:
    store, cache = make(tmp_path, settle=3600.0)
    with store:
        store.folder("Work").append_bytes(msg(1))
        assert cache.cached(lambda: store.status("Work")) == store.status("Work")
        assert cache.get() is None


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty", "key"])
def test_damaged_file_is_a_miss(tmp_path: Path, damage: str) -> None:
    store, cache = make(tmp_path)
    with store:
        store.folder("Work").append_bytes(msg(1))
        status = cache.cached(lambda: store.status("Work"))
        assert cache.get() == status
        path = Path(cache.path)
        data = path.read_bytes()
        if damage == "truncate":
            path.write_bytes(data[: len(data) // 2])
        elif damage == "flip":
            path.write_bytes(data[:-3] + (b"9" if data[-3:-2] != b"9" else b"8") + data[-2:])
        elif damage == "garbage":
            path.write_bytes(os.urandom(200))
        elif damage == "empty":
            path.write_bytes(b"")
        else:  # the numbers of another state of the sources
            os.utime(Path(cache.sources[0]), ns=(1, 1))
        assert cache.get() is None
        assert cache.cached(lambda: store.status("Work")) == store.status("Work")


def test_clear_and_bad_settle(tmp_path: Path) -> None:
    store, cache = make(tmp_path)
    with store:
        cache.cached(lambda: store.status("Work"))
        cache.clear()
        cache.clear()
        assert cache.get() is None
    with pytest.raises(ValueError):
        StatusCache(tmp_path / "s", [], settle=-1)


def test_mbox_sources(tmp_path: Path) -> None:
    """The same over mbox: the mbox file and its side index are the sources."""
    from mailagents.store.mbox import MboxStore

    root = tmp_path / "mail"
    store = MboxStore(root)
    store.create_folder("Work")
    cache = StatusCache(
        root / ".Work.mailagents-status", [root / "Work", root / ".Work.mailagents-index"]
    )
    rng = random.Random(8)
    with store, store.folder("Work") as work:
        for step in range(60):
            op = rng.randrange(4)
            if op == 0:
                work.append_bytes(msg(step))
            elif op == 1 and work.messages():
                uid = rng.choice(work.messages()).uid
                work.set_flags([uid], [rng.choice([SEEN, DELETED])], "add")
            elif op == 2:
                work.expunge()
            else:
                work.claim_recent()
            assert cache.cached(lambda: store.status("Work")) == store.status("Work"), step
