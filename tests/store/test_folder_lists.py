"""The folder lists' rules (store/_folder_lists.py) on in-memory files, and each
store's files for them (the behavioural suite checks the rules through both stores)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailagents.store._folder_lists import FolderLists
from mailagents.store._maildir_tree import MaildirListFiles
from mailagents.store._mbox_tree import MboxListFiles
from mailagents.store.maildir import MaildirStore
from mailagents.store.mbox import MboxStore


class MemoryFiles:
    """A ListFiles in memory that records which lock was held for each write."""

    def __init__(self) -> None:
        self.subs: list[str] = []
        self.special: dict[str, str] = {}
        self.held: str | None = None
        self.writes: list[tuple[str, str | None]] = []

    @contextlib.contextmanager
    def _hold(self, name: str) -> Iterator[None]:
        self.held = name
        try:
            yield
        finally:
            self.held = None

    def subscriptions_lock(self) -> contextlib.AbstractContextManager[None]:
        return self._hold("subscriptions")

    def special_use_lock(self) -> contextlib.AbstractContextManager[None]:
        return self._hold("special-use")

    def read_subscriptions(self) -> list[str]:
        return list(self.subs)

    def write_subscriptions(self, names: list[str]) -> None:
        self.writes.append(("subscriptions", self.held))
        self.subs = list(names)

    def read_special_use(self) -> dict[str, str]:
        return dict(self.special)

    def write_special_use(self, mapping: dict[str, str]) -> None:
        self.writes.append(("special-use", self.held))
        self.special = dict(mapping)


def lists(defaults: dict[str, str] | None = None) -> tuple[FolderLists, MemoryFiles]:
    files = MemoryFiles()
    return FolderLists(files, defaults=defaults), files


def test_every_write_holds_the_lock_of_its_file() -> None:
    folder_lists, files = lists()
    folder_lists.subscribe("A")
    folder_lists.subscribe("A/b")
    folder_lists.unsubscribe("A/b")
    folder_lists.set_special_use("A", "\\Sent")
    folder_lists.renamed("A", "B", "/")
    folder_lists.deleted("B")
    assert files.writes == [
        ("subscriptions", "subscriptions"),
        ("subscriptions", "subscriptions"),
        ("subscriptions", "subscriptions"),
        ("special-use", "special-use"),
        ("subscriptions", "subscriptions"),
        ("special-use", "special-use"),
        ("special-use", "special-use"),
    ]


def test_changes_that_change_nothing_write_nothing() -> None:
    folder_lists, files = lists()
    folder_lists.subscribe("A")
    folder_lists.subscribe("A")
    folder_lists.unsubscribe("Z")
    folder_lists.renamed("Z", "Y", "/")
    folder_lists.deleted("A")
    assert files.writes == [("subscriptions", "subscriptions")]
    assert folder_lists.subscriptions() == ["A"]


@pytest.mark.parametrize(
    ("before", "old", "new", "after"),
    [
        (["A"], "A", "B", ["B"]),
        (["A/x", "A/x/y"], "A", "B/C", ["B/C/x", "B/C/x/y"]),
        (["Ab", "A.b", "A"], "A", "B", ["Ab", "A.b", "B"]),  # siblings by prefix stay
        (["INBOX", "A"], "A", "INBOX/A", ["INBOX", "INBOX/A"]),
    ],
)
def test_renamed_carries_a_folder_and_its_children(
    before: list[str], old: str, new: str, after: list[str]
) -> None:
    folder_lists, files = lists()
    files.subs = list(before)
    files.special = {"\\Sent": before[-1]}
    folder_lists.renamed(old, new, "/")
    assert files.subs == after
    assert files.special == {"\\Sent": after[-1]}


def test_renamed_uses_the_separator_given() -> None:
    folder_lists, files = lists()
    files.subs = ["A.x", "A/x"]
    folder_lists.renamed("A", "B", ".")
    assert files.subs == ["B.x", "A/x"]


def test_one_folder_per_attribute_and_one_attribute_per_folder() -> None:
    folder_lists, _ = lists()
    folder_lists.set_special_use("Sent", "\\Sent")
    folder_lists.set_special_use("Sent", "\\Archive")  # the folder's attribute changes
    folder_lists.set_special_use("Trash", "\\Trash")
    folder_lists.set_special_use("Bin", "\\Trash")  # the attribute moves
    assert folder_lists.special_use() == {"Sent": "\\Archive", "Bin": "\\Trash"}


def test_defaults_give_way_to_an_explicit_attribute() -> None:
    defaults = {"Sent": "\\Sent", "Trash": "\\Trash"}
    folder_lists, _ = lists(defaults)
    assert folder_lists.special_use() == defaults
    folder_lists.set_special_use("Gesendet", "\\Sent")
    folder_lists.set_special_use("Trash", "\\Archive")
    assert folder_lists.special_use() == {"Gesendet": "\\Sent", "Trash": "\\Archive"}
    folder_lists.deleted("Gesendet")
    assert folder_lists.special_use() == {"Sent": "\\Sent", "Trash": "\\Archive"}


def test_maildir_files_are_dovecots(tmp_path: Path) -> None:
    files = MaildirListFiles(str(tmp_path), fsync=False)
    files.write_subscriptions(["INBOX", "Entwürfe", "A/b"])
    raw = (tmp_path / "subscriptions").read_bytes()
    assert raw == b"V\t2\n\nINBOX\nEntw&APw-rfe\nA\tb\n"
    assert files.read_subscriptions() == ["INBOX", "Entwürfe", "A/b"]
    (tmp_path / "subscriptions").write_bytes(b"INBOX\nA.b\n")  # version 1
    assert files.read_subscriptions() == ["INBOX", "A/b"]
    files.write_special_use({"\\Sent": "Gesendet"})
    assert (tmp_path / "mailagents-special-use").read_text() == "\\Sent\tGesendet\n"


def test_mbox_files_keep_their_format(tmp_path: Path) -> None:
    files = MboxListFiles(str(tmp_path), fsync=False, lock_timeout=5.0)
    files.write_subscriptions(["INBOX", "A/b c"])
    assert (tmp_path / ".mailagents-subscriptions").read_text() == "INBOX\nA/b c\n"
    files.write_special_use({"\\Trash": "Bin", "\\Sent": "A sent"})
    assert (tmp_path / ".mailagents-special-use").read_text() == "\\Sent A sent\n\\Trash Bin\n"
    assert files.read_special_use() == {"\\Sent": "A sent", "\\Trash": "Bin"}


def test_an_mbox_store_written_before_reads_its_lists(tmp_path: Path) -> None:
    # The side files as earlier versions wrote them (an attribute on two folders,
    # which no longer happens: the later line wins).
    store = MboxStore(tmp_path)
    store.create_folder("Sent")
    store.create_folder("Old")
    (tmp_path / ".mailagents-subscriptions").write_text("Sent\nINBOX\n")
    (tmp_path / ".mailagents-special-use").write_text("\\Sent Old\n\\Sent Sent\n\\Bogus Old\n")
    by = {f.name: f for f in store.folders()}
    assert "\\Sent" in by["Sent"].attributes and "\\Sent" not in by["Old"].attributes
    assert by["Sent"].subscribed and by["INBOX"].subscribed
    store.close()


@pytest.mark.parametrize("kind", ["maildir", "mbox"])
def test_concurrent_subscribes_lose_none(tmp_path: Path, kind: str) -> None:
    store = MaildirStore(tmp_path, fsync=False) if kind == "maildir" else MboxStore(
        tmp_path, fsync=False
    )
    names = [f"F{n}" for n in range(24)]
    threads = [threading.Thread(target=store.subscribe, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(store.subscriptions()) == sorted(names)
    store.close()
