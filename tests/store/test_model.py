"""The mailbox model's own helpers (mailagents/store/_model.py), without any format."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import io
import threading
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

import pytest

from mailagents import store as store_pkg
from mailagents.store import (
    ANSWERED,
    DELETED,
    DRAFT,
    FLAGGED,
    SEEN,
    SPECIAL_USE,
    SYSTEM_FLAGS,
    AppendResult,
    AppendWriter,
    Changes,
    FlagMode,
    Folder,
    FolderExistsError,
    FolderInfo,
    FolderNotFoundError,
    FolderStatus,
    InvalidFolderNameError,
    MessageInfo,
    MessageNotFoundError,
    Store,
    StoreError,
    check_keyword,
)

# --- check_keyword -----------------------------------------------------------------

VALID = [
    ("\\Seen", "\\Seen"),
    ("\\seen", "\\Seen"),
    ("\\SEEN", "\\Seen"),
    ("\\answered", "\\Answered"),
    ("\\FLAGGED", "\\Flagged"),
    ("\\deleted", "\\Deleted"),
    ("\\dRaFt", "\\Draft"),
    ("$Forwarded", "$Forwarded"),
    ("$MDNSent", "$MDNSent"),
    ("$Junk", "$Junk"),
    ("NonJunk", "NonJunk"),
    ("MixedCase", "MixedCase"),  # keywords keep their case
    ("a[b", "a[b"),  # "[" is not an atom-special, only "]" is
    ("x.y-z_1+2", "x.y-z_1+2"),
    ("k" * 255, "k" * 255),
]

INVALID = [
    "",
    "two words",
    "tab\there",
    "a(b",
    "a)b",
    "a{b",
    "a%b",
    "a*b",
    'a"b',
    "a]b",
    "\\Recent",  # session state, not a stored flag, and "\" is an atom-special
    "\\Custom",
    "\\",
    "nul\x00",
    "ctl\x01",
    "cr\r",
    "lf\n",
    "del\x7f",
    "k" * 256,
    "fl\u00fcgel",  # atoms are ASCII (RFC 9051 §9: ATOM-CHAR is a CHAR, %x01-7F)
]


@pytest.mark.parametrize(("flag", "expected"), VALID)
def test_check_keyword_accepts(flag: str, expected: str) -> None:
    assert check_keyword(flag) == expected


@pytest.mark.parametrize("flag", INVALID)
def test_check_keyword_rejects(flag: str) -> None:
    with pytest.raises(ValueError):
        check_keyword(flag)


def test_system_flags_are_exactly_the_five() -> None:
    assert frozenset({SEEN, ANSWERED, FLAGGED, DELETED, DRAFT}) == SYSTEM_FLAGS
    assert len(SYSTEM_FLAGS) == 5
    for flag in SYSTEM_FLAGS:
        assert check_keyword(flag) == flag


def test_special_use_attributes() -> None:
    assert {"\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive"} <= SPECIAL_USE


# --- errors --------------------------------------------------------------------------


def test_error_hierarchy() -> None:
    for cls in (FolderNotFoundError, FolderExistsError, InvalidFolderNameError,
                MessageNotFoundError):
        assert issubclass(cls, StoreError)
    assert issubclass(FolderNotFoundError, KeyError)
    assert issubclass(MessageNotFoundError, KeyError)
    assert issubclass(InvalidFolderNameError, ValueError)
    assert not issubclass(FolderExistsError, KeyError)


def test_public_names_exported() -> None:
    for name in store_pkg.__all__:
        assert hasattr(store_pkg, name), name
    assert "Store" in store_pkg.__all__ and "check_keyword" in store_pkg.__all__


# --- dataclasses ---------------------------------------------------------------------

NOW = datetime.datetime(2026, 3, 3, 10, 0, tzinfo=datetime.UTC)


def test_changes_empty() -> None:
    info = MessageInfo(uid=1, flags=frozenset(), internaldate=NOW, size=10, modseq=2)
    assert Changes(uidvalidity=1, highestmodseq=1).empty
    assert not Changes(uidvalidity=1, highestmodseq=2, added=(info,)).empty
    assert not Changes(uidvalidity=1, highestmodseq=2, changed=(info,)).empty
    assert not Changes(uidvalidity=1, highestmodseq=2, expunged=(7,)).empty
    c = Changes(uidvalidity=1, highestmodseq=1)
    assert c.added == () and c.changed == () and c.expunged == ()


def test_folder_info_defaults() -> None:
    info = FolderInfo(name="INBOX")
    assert info.attributes == frozenset()
    assert isinstance(info.attributes, frozenset)
    assert info.subscribed is False
    assert FolderInfo(name="INBOX") == info
    assert hash(FolderInfo(name="INBOX")) == hash(info)


@pytest.mark.parametrize(
    "obj",
    [
        FolderInfo(name="a"),
        Changes(uidvalidity=1, highestmodseq=1),
        AppendResult(uidvalidity=1, uid=None, size=0),
        FolderStatus(messages=0, uidvalidity=1, uidnext=1, highestmodseq=1, unseen=0),
        MessageInfo(uid=1, flags=frozenset(), internaldate=NOW, size=0, modseq=1),
    ],
)
def test_dataclasses_are_frozen_with_slots(obj: object) -> None:
    field = dataclasses.fields(obj)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, field, 99)
    assert not hasattr(obj, "__dict__")


def test_dataclasses_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        FolderInfo("INBOX")  # type: ignore[misc]
    with pytest.raises(TypeError):
        AppendResult(1, 2, 3)  # type: ignore[misc]


# --- AppendWriter --------------------------------------------------------------------


class FakeWriter(AppendWriter):
    def __init__(self, *, fail_commit: bool = False) -> None:
        self.chunks: list[bytes] = []
        self.calls: list[str] = []
        self.fail_commit = fail_commit

    def write(self, chunk: bytes) -> None:
        self.calls.append("write")
        self.chunks.append(chunk)

    def commit(self) -> AppendResult:
        self.calls.append("commit")
        if self.fail_commit:
            raise OSError(28, "No space left on device")
        if self.result is None:
            self.result = AppendResult(uidvalidity=1, uid=1, size=len(b"".join(self.chunks)))
        return self.result

    def abort(self) -> None:
        self.calls.append("abort")


def test_writer_context_commits_on_success() -> None:
    w = FakeWriter()
    with w as same:
        assert same is w
        w.write(b"a")
        w.write(b"b")
    assert w.calls == ["write", "write", "commit"]
    assert w.result == AppendResult(uidvalidity=1, uid=1, size=2)


def test_writer_context_aborts_on_exception_and_propagates() -> None:
    w = FakeWriter()
    with pytest.raises(RuntimeError, match="boom"), w:
        w.write(b"a")
        raise RuntimeError("boom")
    assert w.calls == ["write", "abort"]
    assert w.result is None


def test_writer_context_aborts_on_base_exception() -> None:
    w = FakeWriter()
    with pytest.raises(KeyboardInterrupt), w:
        raise KeyboardInterrupt
    assert w.calls == ["abort"]


def test_writer_context_no_abort_after_explicit_commit() -> None:
    w = FakeWriter()
    with pytest.raises(RuntimeError), w:
        w.write(b"a")
        w.commit()
        raise RuntimeError("after the commit")
    assert w.calls == ["write", "commit"]
    assert w.result is not None


def test_writer_context_explicit_commit_then_exit_commits_again_idempotently() -> None:
    w = FakeWriter()
    with w:
        first = w.commit()
    assert w.calls == ["commit", "commit"]
    assert w.result is first


def test_writer_context_failing_commit_propagates() -> None:
    w = FakeWriter(fail_commit=True)
    with pytest.raises(OSError), w:
        w.write(b"a")
    # The commit failed inside __exit__: its exception reaches the caller.
    assert w.calls == ["write", "commit"]


def test_writer_result_defaults_to_none() -> None:
    assert FakeWriter().result is None


# --- Folder defaults (read_message, append_bytes) --------------------------------------


class FakeFolder(Folder):
    name = "INBOX"

    def __init__(self, writer: FakeWriter, data: bytes = b"") -> None:
        self.writer = writer
        self.data = data
        self.append_args: dict[str, object] = {}
        self.closed = False
        self.streams: list[io.BytesIO] = []

    def status(self) -> FolderStatus:
        raise NotImplementedError

    def messages(self) -> list[MessageInfo]:
        raise NotImplementedError

    def info(self, uid: int) -> MessageInfo:
        raise NotImplementedError

    def open_message(self, uid: int) -> BinaryIO:
        stream = io.BytesIO(self.data)
        self.streams.append(stream)
        return stream

    def append(
        self,
        *,
        flags: Collection[str] = (),
        internaldate: datetime.datetime | None = None,
        assign_uid: bool = True,
    ) -> AppendWriter:
        self.append_args = {"flags": flags, "internaldate": internaldate,
                            "assign_uid": assign_uid}
        return self.writer

    def set_flags(
        self,
        uids: Collection[int],
        flags: Collection[str],
        mode: FlagMode = "set",
        *,
        unchanged_since: int | None = None,
    ) -> tuple[list[MessageInfo], list[int]]:
        raise NotImplementedError

    def copy(self, uids: Collection[int], target: Folder) -> dict[int, int]:
        raise NotImplementedError

    def move(self, uids: Collection[int], target: Folder) -> dict[int, int]:
        raise NotImplementedError

    def expunge(self, uids: Collection[int] | None = None) -> list[int]:
        raise NotImplementedError

    def refresh(self) -> Changes:
        raise NotImplementedError

    def changes_since(self, modseq: int) -> Changes:
        raise NotImplementedError

    def close(self) -> None:
        self.closed = True


def test_append_bytes_commits_and_passes_arguments() -> None:
    w = FakeWriter()
    f = FakeFolder(w)
    result = f.append_bytes(b"msg", flags=[SEEN], internaldate=NOW, assign_uid=False)
    assert result == AppendResult(uidvalidity=1, uid=1, size=3)
    assert w.chunks == [b"msg"]
    assert w.calls == ["write", "commit"]
    assert f.append_args == {"flags": [SEEN], "internaldate": NOW, "assign_uid": False}


def test_append_bytes_aborts_when_commit_fails() -> None:
    w = FakeWriter(fail_commit=True)
    f = FakeFolder(w)
    with pytest.raises(OSError):
        f.append_bytes(b"msg")
    assert w.calls == ["write", "commit", "abort"]


def test_read_message_reads_and_closes_the_stream() -> None:
    f = FakeFolder(FakeWriter(), data=b"Subject: x\r\n\r\nbody\r\n")
    assert f.read_message(1) == b"Subject: x\r\n\r\nbody\r\n"
    assert f.streams and f.streams[0].closed


def test_folder_context_manager_closes() -> None:
    f = FakeFolder(FakeWriter())
    with f as same:
        assert same is f
    assert f.closed


# --- Store executor ------------------------------------------------------------------


class FakeStore(Store):
    def folders(self) -> list[FolderInfo]:
        return [FolderInfo(name="INBOX")]

    def folder(self, name: str) -> Folder:
        raise FolderNotFoundError(name)

    def create_folder(self, name: str, *, special_use: str | None = None) -> None:
        raise NotImplementedError

    def rename_folder(self, old: str, new: str) -> None:
        raise NotImplementedError

    def delete_folder(self, name: str) -> None:
        raise NotImplementedError

    def subscribe(self, name: str) -> None:
        raise NotImplementedError

    def unsubscribe(self, name: str) -> None:
        raise NotImplementedError

    def subscriptions(self) -> list[str]:
        return []


def test_store_defaults() -> None:
    s = FakeStore()
    assert s.separator == "/"
    assert s._executor is None  # lazy: nothing until first use
    s.close()  # closing a store that never used its executor is fine
    assert s._executor is None


def test_executor_created_once_and_shared() -> None:
    s = FakeStore(max_workers=3)
    ex = s.executor
    assert isinstance(ex, ThreadPoolExecutor)
    assert s.executor is ex
    assert ex._max_workers == 3
    name = ex.submit(lambda: threading.current_thread().name).result()
    assert name.startswith("mailagents-store")
    s.close()


def test_executor_default_size_is_16() -> None:
    s = FakeStore()
    assert s.executor._max_workers == 16
    s.close()


def test_executor_creation_is_thread_safe() -> None:
    s = FakeStore()
    seen: list[ThreadPoolExecutor] = []
    barrier = threading.Barrier(16)

    def grab() -> None:
        barrier.wait()
        seen.append(s.executor)

    threads = [threading.Thread(target=grab) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(seen) == 16
    assert len({id(e) for e in seen}) == 1
    s.close()


def test_close_shuts_the_executor_down_and_waits() -> None:
    s = FakeStore()
    ex = s.executor
    started = threading.Event()
    done = threading.Event()

    def work() -> None:
        started.set()
        done.wait(0.2)
        done.set()

    ex.submit(work)
    started.wait(5)
    s.close()
    assert done.is_set()  # close() waited for the running work
    with pytest.raises(RuntimeError):
        ex.submit(lambda: None)
    s.close()  # twice is fine
    # After a close, a new use makes a new executor.
    ex2 = s.executor
    assert ex2 is not ex
    assert ex2.submit(lambda: 5).result() == 5
    s.close()


def test_store_context_manager_closes() -> None:
    with FakeStore() as s:
        ex = s.executor
    with pytest.raises(RuntimeError):
        ex.submit(lambda: None)


def test_run_uses_the_store_executor() -> None:
    s = FakeStore()

    def where(x: int, *, y: int) -> tuple[str, int]:
        return threading.current_thread().name, x + y

    async def main() -> tuple[str, int]:
        return await s.run(where, 1, y=2)

    name, total = asyncio.run(main())
    assert total == 3
    assert name.startswith("mailagents-store")
    s.close()


def test_run_propagates_exceptions() -> None:
    s = FakeStore()

    async def main() -> None:
        await s.run(s.folder, "nope")

    with pytest.raises(FolderNotFoundError):
        asyncio.run(main())
    s.close()
