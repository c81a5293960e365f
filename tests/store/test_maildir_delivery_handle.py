"""``MaildirStore.folder(name, deliver_only=True)``: a delivery agent's handle, which
never reads the folder, so that ``new/`` stays as the readers left it (opening a folder
to read it moves ``new/`` to ``cur/``; mail clients show ``new/`` as new mail)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mailagents.store import MaildirFolder, MaildirStore, StoreError

MESSAGE = b"Subject: hi\r\n\r\nbody\r\n"


def listing(root: Path, sub: str) -> list[str]:
    return sorted(os.listdir(root / sub))


def test_a_delivery_handle_leaves_new_alone(tmp_path: Path) -> None:
    with MaildirStore(tmp_path) as store:
        first = store.folder("INBOX", deliver_only=True)
        first.append_batch([MESSAGE])
        first.close()
    # A second delivery agent (or the same after a restart) opens the folder again.
    with MaildirStore(tmp_path) as store:
        second = store.folder("INBOX", deliver_only=True)
        second.append_batch([MESSAGE])
        with second.append(assign_uid=False) as writer:
            writer.write(MESSAGE)
            writer.commit()
        second.close()
    assert len(listing(tmp_path, "new")) == 3
    assert listing(tmp_path, "cur") == []


def test_a_reader_still_moves_new_to_cur_and_numbers_the_deliveries(tmp_path: Path) -> None:
    with MaildirStore(tmp_path) as store:
        delivery = store.folder("INBOX", deliver_only=True)
        results = delivery.append_batch([MESSAGE, MESSAGE])
    assert not isinstance(results[0], Exception)
    with MaildirStore(tmp_path) as store, store.folder("INBOX") as inbox:
        status = inbox.status()
        assert [m.uid for m in inbox.messages()] == [1, 2]
    # The UIDVALIDITY reported at delivery is the one the reader sees (the delivery
    # wrote an empty uidlist; the reader's sync numbered the files).
    assert results[0].uidvalidity == status.uidvalidity  # type: ignore[union-attr]
    assert listing(tmp_path, "new") == []
    assert len(listing(tmp_path, "cur")) == 2


def test_delivery_into_a_folder_with_a_uidlist_keeps_its_uidvalidity(tmp_path: Path) -> None:
    with MaildirStore(tmp_path) as store, store.folder("INBOX") as inbox:
        uidvalidity = inbox.status().uidvalidity
        inbox.append_bytes(MESSAGE)
    with MaildirStore(tmp_path) as store:
        delivery = store.folder("INBOX", deliver_only=True)
        (result,) = delivery.append_batch([MESSAGE])
    assert not isinstance(result, Exception)
    assert result.uidvalidity == uidvalidity
    with MaildirStore(tmp_path) as store, store.folder("INBOX") as inbox:
        assert [m.uid for m in inbox.messages()] == [1, 2]


@pytest.mark.parametrize(
    "call",
    [
        lambda f: f.status(),
        lambda f: f.messages(),
        lambda f: f.info(1),
        lambda f: f.open_message(1),
        lambda f: f.refresh(),
        lambda f: f.expunge(),
        lambda f: f.set_flags([1], ["\\Seen"]),
        lambda f: f.append(assign_uid=True),
    ],
)
def test_a_delivery_handle_refuses_everything_but_appends(
    tmp_path: Path, call: Callable[[MaildirFolder], object]
) -> None:
    with MaildirStore(tmp_path) as store:
        folder = store.folder("INBOX", deliver_only=True)
        assert folder.deliver_only
        with pytest.raises(StoreError):
            call(folder)
        assert listing(tmp_path, "new") == []


def test_a_reading_handle_is_not_delivery_only(tmp_path: Path) -> None:
    with MaildirStore(tmp_path) as store, store.folder("INBOX") as inbox:
        assert not inbox.deliver_only


def test_a_reader_removes_tmp_debris_older_than_36_hours(tmp_path: Path) -> None:
    from mailagents.store import maildir

    with MaildirStore(tmp_path) as store, store.folder("INBOX"):
        pass
    old, young = tmp_path / "tmp" / "crashed.1", tmp_path / "tmp" / "writing.2"
    old.write_bytes(b"half a message")
    young.write_bytes(b"being written")
    long_ago = os.stat(old).st_mtime - maildir.TMP_MAX_AGE - 60
    os.utime(old, (long_ago, long_ago))
    with MaildirStore(tmp_path) as store, store.folder("INBOX"):
        pass
    assert listing(tmp_path, "tmp") == ["writing.2"]


def test_a_delivery_handle_never_cleans_tmp(tmp_path: Path) -> None:
    from mailagents.store import maildir

    with MaildirStore(tmp_path) as store, store.folder("INBOX"):
        pass
    debris = tmp_path / "tmp" / "crashed.1"
    debris.write_bytes(b"x")
    long_ago = os.stat(debris).st_mtime - maildir.TMP_MAX_AGE - 60
    os.utime(debris, (long_ago, long_ago))
    with MaildirStore(tmp_path) as store:
        store.folder("INBOX", deliver_only=True).append_batch([MESSAGE])
    assert listing(tmp_path, "tmp") == ["crashed.1"]
