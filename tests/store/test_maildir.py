"""Maildir-specific behaviour of mailagents/store/maildir.py: what lies on disk and how
other software (Dovecot's files, Python's mailbox, mutt-style renames) shares it. The
format-independent behaviour is in test_behaviour.py."""

from __future__ import annotations

import datetime
import errno
import mailbox
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailagents.store import (
    ANSWERED,
    DELETED,
    DRAFT,
    FLAGGED,
    SEEN,
    FolderExistsError,
    FolderNotFoundError,
    InvalidFolderNameError,
    _maildir_io,
    _maildir_names,
    _maildir_snapshot,
    _maildir_state,
    _maildir_sync,
    _maildir_uidlist,
)
from mailagents.store import maildir as maildir_module
from mailagents.store.maildir import MaildirFolder, MaildirStore

MESSAGE = b"From: a@example.test\r\nSubject: hello\r\n\r\nline one\r\nline two\r\n"
LF_MESSAGE = MESSAGE.replace(b"\r\n", b"\n")

NAME = re.compile(
    r"^(?P<secs>\d+)\.M(?P<usecs>\d+)P(?P<pid>\d+)Q\d+R[0-9a-f]+\.(?P<host>[^,/:]+)"
    r",S=(?P<S>\d+),W=(?P<W>\d+)(?::2,(?P<flags>[A-Za-z]*))?$"
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "Maildir"


@pytest.fixture
def store(root: Path) -> Iterator[MaildirStore]:
    s = MaildirStore(root)
    yield s
    s.close()


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def only_file(directory: Path) -> str:
    names = files(directory)
    assert len(names) == 1, names
    return names[0]


# --- file names and bytes ---------------------------------------------------------------


def test_new_message_name_sizes_and_lf_bytes(store: MaildirStore, root: Path) -> None:
    with store.folder("INBOX") as inbox:
        result = inbox.append_bytes(MESSAGE, assign_uid=False)
    name = only_file(root / "new")
    match = NAME.match(name)
    assert match, name
    assert match["flags"] is None
    assert int(match["pid"]) == os.getpid()
    assert int(match["S"]) == len(LF_MESSAGE)
    assert int(match["W"]) == len(MESSAGE) == result.size
    assert (root / "new" / name).read_bytes() == LF_MESSAGE
    assert files(root / "tmp") == []
    assert result.uid is None


def test_flags_at_append_go_to_cur_in_ascii_order(store: MaildirStore, root: Path) -> None:
    with store.folder("INBOX") as inbox:
        inbox.append_bytes(MESSAGE, flags=[SEEN, DELETED, DRAFT, "$Forwarded", ANSWERED, FLAGGED])
    assert files(root / "new") == []
    match = NAME.match(only_file(root / "cur"))
    # $Forwarded is a keyword (letter a), as Dovecot stores it; P is not used.
    assert match and match["flags"] == "DFRSTa"


def test_keywords_are_letters_listed_in_dovecot_keywords(store: MaildirStore, root: Path) -> None:
    with store.folder("INBOX") as inbox:
        uid = inbox.append_bytes(MESSAGE, flags=["Work", SEEN]).uid
        assert uid is not None
        inbox.set_flags([uid], ["Private"], "add")
        inbox.refresh()
        assert inbox.info(uid).flags == {"Work", "Private", SEEN}
    assert (root / "dovecot-keywords").read_text() == "0 Work\n1 Private\n"
    match = NAME.match(only_file(root / "cur"))
    assert match and match["flags"] == "Sab"


def test_keywords_of_dovecot_keywords_file_are_read(store: MaildirStore, root: Path) -> None:
    (root / "dovecot-keywords").write_text("0 $Junk\n2 Later\n")
    (root / "cur" / "1700000000.M1P1.host:2,Sac").write_bytes(LF_MESSAGE)
    with store.folder("INBOX") as inbox:
        (info,) = inbox.messages()
        assert info.flags == {SEEN, "$Junk", "Later"}


def test_unknown_letters_are_kept_when_renaming(store: MaildirStore, root: Path) -> None:
    (root / "cur" / "1700000000.M1P1.host:2,SXz").write_bytes(LF_MESSAGE)
    with store.folder("INBOX") as inbox:
        (info,) = inbox.messages()
        assert info.flags == {SEEN}
        inbox.set_flags([info.uid], [FLAGGED], "add")
        inbox.set_flags([info.uid], [SEEN], "remove")
    assert only_file(root / "cur") == "1700000000.M1P1.host:2,FXz"


def test_flag_change_is_a_rename_keeping_the_base_and_sizes(
    store: MaildirStore, root: Path
) -> None:
    with store.folder("INBOX") as inbox:
        uid = inbox.append_bytes(MESSAGE).uid
        assert uid is not None
        inbox.refresh()
        before = only_file(root / "cur")
        assert before.endswith(":2,")
        inode = (root / "cur" / before).stat().st_ino
        inbox.set_flags([uid], [SEEN, ANSWERED])
    after = only_file(root / "cur")
    assert after == before + "RS"
    assert (root / "cur" / after).stat().st_ino == inode


def test_new_is_moved_to_cur_on_refresh(store: MaildirStore, root: Path) -> None:
    with store.folder("INBOX") as inbox:
        inbox.append_bytes(MESSAGE, assign_uid=False)
        name = only_file(root / "new")
        inbox.refresh()
    assert files(root / "new") == []
    assert only_file(root / "cur") == name + ":2,"


def test_crlf_split_across_chunks_and_bare_cr(store: MaildirStore, root: Path) -> None:
    with store.folder("INBOX") as inbox:
        writer = inbox.append()
        for chunk in (b"Subject: x\r", b"\n\r\nab\r", b"c\r\r\n", b"end\r"):
            writer.write(chunk)
        result = writer.commit()
        assert result.uid is not None
        disk = b"Subject: x\n\nab\rc\r\nend\r"
        assert (root / "new" / only_file(root / "new")).read_bytes() == disk
        inbox.refresh()
        expected = b"Subject: x\r\n\r\nab\rc\r\r\nend\r"
        assert inbox.read_message(result.uid) == expected
        assert inbox.info(result.uid).size == result.size == len(expected)


def test_open_message_streams_with_read_n(store: MaildirStore) -> None:
    body = b"".join(b"line %05d\n" % i for i in range(20000))
    with store.folder("INBOX") as inbox:
        uid = inbox.append_bytes(body).uid
        assert uid is not None
        inbox.refresh()
        with inbox.open_message(uid) as stream:
            assert stream.read(7) == b"line 00"
            assert stream.read(5) == b"000\r\n"
            rest = stream.read()
    assert b"line 00000\r\n" + rest == body.replace(b"\n", b"\r\n")


def test_internaldate_is_the_mtime(store: MaildirStore, root: Path) -> None:
    when = datetime.datetime(2020, 2, 29, 12, 30, 15, tzinfo=datetime.UTC)
    with store.folder("INBOX") as inbox:
        uid = inbox.append_bytes(MESSAGE, internaldate=when).uid
        assert uid is not None
        inbox.refresh()
        assert inbox.info(uid).internaldate == when
    assert (root / "cur" / only_file(root / "cur")).stat().st_mtime == when.timestamp()


def test_abort_and_failed_write_leave_nothing(
    store: MaildirStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with store.folder("INBOX") as inbox:
        writer = inbox.append()
        writer.write(b"partial")
        writer.abort()
        writer.abort()
        real_write = os.write

        def full_disk(fd: int, data: Any) -> int:
            if len(data) > 1000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", full_disk)
        writer = inbox.append()
        writer.write(b"small")
        with pytest.raises(OSError) as info:
            writer.write(b"x" * 5000)
        assert info.value.errno == errno.ENOSPC
        writer.abort()
    assert files(root / "tmp") == files(root / "new") == files(root / "cur") == []


def test_stray_files_are_tolerated_and_left_alone(store: MaildirStore, root: Path) -> None:
    strays = {
        root / "dovecot.index": b"index",
        root / "dovecot.index.log": b"log",
        root / ".customflags": b"0 x\n",
        root / "cur" / ".hidden": b"not a message",
        root / "maildirfolder": b"",
    }
    for path, data in strays.items():
        path.write_bytes(data)
    (root / ".notes.txt").mkdir()  # a dot directory that is no folder of ours
    with store.folder("INBOX") as inbox:
        inbox.append_bytes(MESSAGE)
        inbox.refresh()
        assert len(inbox.messages()) == 1
        inbox.set_flags([inbox.messages()[0].uid], [DELETED])
        inbox.expunge()
    for path, data in strays.items():
        assert path.read_bytes() == data
    assert [f.name for f in store.folders()] == ["INBOX", "notes/txt"] or [
        f.name for f in store.folders()
    ] == ["INBOX", "notes", "notes/txt"]


# --- the system-call order and group commit ---------------------------------------------


class Recorder:
    """Wraps os.open/write/fsync/rename/link, recording (call, path) in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay_dir_fsync: float = 0.0) -> None:
        self.calls: list[tuple[str, str]] = []
        self.paths: dict[int, str] = {}
        self.lock = threading.Lock()
        real_open, real_write, real_fsync = os.open, os.write, os.fsync
        real_rename, real_link = os.rename, os.link

        def rec(call: str, path: str) -> None:
            with self.lock:
                self.calls.append((call, path))

        def fake_open(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
            fd = real_open(path, flags, mode, **kw)
            with self.lock:
                self.paths[fd] = os.fspath(path)
            rec("open", os.fspath(path))
            return fd

        def fake_write(fd: int, data: Any) -> int:
            rec("write", self.paths.get(fd, "?"))
            return real_write(fd, data)

        def fake_fsync(fd: Any) -> None:
            fd = fd if isinstance(fd, int) else fd.fileno()
            path = self.paths.get(fd, "?")
            if delay_dir_fsync and os.path.isdir(path):
                time.sleep(delay_dir_fsync)
            rec("fsync", path)
            real_fsync(fd)

        def fake_rename(src: Any, dst: Any, **kw: Any) -> None:
            rec("rename", os.fspath(dst))
            real_rename(src, dst, **kw)

        def fake_link(src: Any, dst: Any, **kw: Any) -> None:
            rec("link", os.fspath(dst))
            real_link(src, dst, **kw)

        monkeypatch.setattr(os, "open", fake_open)
        monkeypatch.setattr(os, "write", fake_write)
        monkeypatch.setattr(os, "fsync", fake_fsync)
        monkeypatch.setattr(os, "rename", fake_rename)
        monkeypatch.setattr(os, "link", fake_link)


def test_system_call_order_of_a_delivery(
    store: MaildirStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = store.folder("INBOX")
    rec = Recorder(monkeypatch)
    inbox.append_bytes(MESSAGE, assign_uid=False)
    calls = rec.calls
    tmp = str(root / "tmp")
    new = str(root / "new")
    write = next(i for i, (c, p) in enumerate(calls) if c == "write" and p.startswith(tmp))
    fsync_file = next(i for i, (c, p) in enumerate(calls) if c == "fsync" and p.startswith(tmp))
    into_new = next(
        i for i, (c, p) in enumerate(calls) if c in ("rename", "link") and p.startswith(new)
    )
    fsync_dir = next(i for i, (c, p) in enumerate(calls) if c == "fsync" and p == new)
    assert write < fsync_file < into_new < fsync_dir
    assert all(not (c == "write" and p.startswith(tmp)) for c, p in calls[fsync_file:])


def test_system_call_order_of_a_batch(
    store: MaildirStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # append_batch: each message's data reaches the disk (fsync of its file in tmp/)
    # before its name can appear in new/ (rename), and new/ is fsynced after the last
    # rename, before the results are returned (the 250). The fsyncs of all the files
    # come before the first rename, which keeps each file's own order (write, fsync,
    # rename, directory fsync) and so the same durability argument as a single
    # delivery; it only saves ext4 without a journal from rewriting tmp/ with every
    # fsync (a file newly created there makes its fsync write the parent directory).
    inbox = store.folder("INBOX")
    rec = Recorder(monkeypatch)
    messages = [MESSAGE, b"two\r\n", b"three\r\n" * 1000]
    outcomes = inbox.append_batch(messages)
    assert [getattr(o, "size", None) for o in outcomes] == [len(m) for m in messages]
    calls = rec.calls
    tmp, new = str(root / "tmp"), str(root / "new")
    dir_fsync = max(i for i, (c, p) in enumerate(calls) if c == "fsync" and p == new)
    renames = [i for i, (c, p) in enumerate(calls) if c == "rename"]
    assert len(renames) == 3 and max(renames) < dir_fsync
    for i in renames:
        unique = os.path.basename(calls[i][1]).split(",")[0]
        path = os.path.join(tmp, unique)
        writes = [j for j, (c, p) in enumerate(calls) if c == "write" and p == path]
        fsync = [j for j, (c, p) in enumerate(calls) if c == "fsync" and p == path]
        assert writes and len(fsync) == 1
        assert max(writes) < fsync[0] < min(renames)
    assert sorted(os.listdir(new)) == sorted(os.path.basename(calls[i][1]) for i in renames)
    assert os.listdir(tmp) == []
    inbox.refresh()
    assert sorted(inbox.read_message(m.uid) for m in inbox.messages()) == sorted(messages)


def test_batch_failures_stay_in_their_place_and_leave_nothing_in_tmp(
    store: MaildirStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = store.folder("INBOX")
    real_open, real_write, real_fsync = os.open, os.write, os.fsync
    opened: list[int] = []

    def fake_open(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        if os.fspath(path).startswith(str(root / "tmp")):
            opened.append(0)
            if len(opened) == 2:
                raise OSError(errno.EMFILE, "no more files")
        return real_open(path, flags, mode, **kw)

    def fake_write(fd: int, data: Any) -> int:
        if bytes(data).startswith(b"three"):
            raise OSError(errno.ENOSPC, "disk full")
        return real_write(fd, data)

    def fake_fsync(fd: int) -> None:
        if os.fstat(fd).st_size == len(b"four\n"):
            raise OSError(errno.EIO, "fsync failed")
        real_fsync(fd)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "write", fake_write)
    monkeypatch.setattr(os, "fsync", fake_fsync)
    outcomes = inbox.append_batch([b"one\r\n", b"two\r\n", b"three\r\n", b"four\r\n", b"5\r\n"])
    assert [type(o).__name__ for o in outcomes] == [
        "AppendResult",
        "OSError",
        "OSError",
        "OSError",
        "AppendResult",
    ]
    assert [getattr(o, "errno", None) for o in outcomes[1:4]] == [
        errno.EMFILE,
        errno.ENOSPC,
        errno.EIO,
    ]
    monkeypatch.undo()
    assert os.listdir(root / "tmp") == []
    assert sorted((root / "new" / n).read_bytes() for n in os.listdir(root / "new")) == [
        b"5\n",
        b"one\n",
    ]


def test_system_call_order_with_flags_and_uid(
    store: MaildirStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = store.folder("INBOX")
    rec = Recorder(monkeypatch)
    inbox.append_bytes(MESSAGE, flags=[SEEN], assign_uid=True)
    calls = rec.calls
    cur = str(root / "cur")
    fsync_file = next(
        i for i, (c, p) in enumerate(calls) if c == "fsync" and p.startswith(str(root / "tmp"))
    )
    into_cur = next(i for i, (c, p) in enumerate(calls) if c == "rename" and p.startswith(cur))
    fsync_dir = next(i for i, (c, p) in enumerate(calls) if c == "fsync" and p == cur)
    uidlist = next(
        i
        for i, (c, p) in enumerate(calls)
        if c == "fsync" and p.startswith(str(root / "dovecot-uidlist"))
    )
    assert fsync_file < into_cur < fsync_dir < uidlist


def test_group_commit_shares_directory_fsyncs(
    store: MaildirStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = store.folder("INBOX")
    rec = Recorder(monkeypatch, delay_dir_fsync=0.01)
    threads, per_thread = 16, 4
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            for _ in range(per_thread):
                writer = inbox.append(assign_uid=False)
                writer.write(MESSAGE * 100)
                barrier.wait() if _ == 0 else None
                writer.commit()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=deliver) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    commits = threads * per_thread
    assert len(files(root / "new")) == commits
    dir_fsyncs = sum(1 for c, p in rec.calls if c == "fsync" and p == str(root / "new"))
    file_fsyncs = sum(1 for c, p in rec.calls if c == "fsync" and p.startswith(str(root / "tmp")))
    assert file_fsyncs == commits
    assert 1 <= dir_fsyncs < commits / 2


def test_dir_syncer_waits_for_an_fsync_started_after_its_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A caller arriving while an fsync runs must not take that fsync as its own.
    started = threading.Event()
    release = threading.Event()
    real_fsync = os.fsync
    count = 0

    def slow_fsync(fd: int) -> None:
        nonlocal count
        count += 1
        if count == 1:
            started.set()
            release.wait(5)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    first = threading.Thread(target=_maildir_io.fsync_dir, args=(str(tmp_path),))
    first.start()
    assert started.wait(5)
    second_done = threading.Event()
    second = threading.Thread(
        target=lambda: (_maildir_io.fsync_dir(str(tmp_path)), second_done.set())
    )
    second.start()
    time.sleep(0.05)
    assert not second_done.is_set()
    release.set()
    first.join()
    second.join()
    assert count == 2


# --- renames by other programs ------------------------------------------------------------


def test_rename_enoent_rescans_and_retries(
    store: MaildirStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with store.folder("INBOX") as inbox:
        uid = inbox.append_bytes(MESSAGE).uid
        assert uid is not None
        inbox.refresh()
        real_rename = os.rename
        interfered = []

        def mutt_first(src: Any, dst: Any, **kw: Any) -> None:
            src_s = os.fspath(src)
            if not interfered and os.path.dirname(src_s) == str(root / "cur"):
                # Another program marks the message seen, without any lock.
                interfered.append(src_s)
                real_rename(src_s, src_s + "S")
            real_rename(src, dst, **kw)

        monkeypatch.setattr(os, "rename", mutt_first)
        changed, _ = inbox.set_flags([uid], [FLAGGED], "add")
        assert interfered
        assert changed[0].flags == {FLAGGED, SEEN}
    assert only_file(root / "cur").endswith(":2,FS")


def test_rename_by_another_program_is_a_change_with_a_new_modseq(
    store: MaildirStore, root: Path
) -> None:
    with store.folder("INBOX") as inbox:
        uid = inbox.append_bytes(MESSAGE).uid
        assert uid is not None
        inbox.refresh()
        before = inbox.info(uid).modseq
        name = only_file(root / "cur")
        os.rename(root / "cur" / name, root / "cur" / (name + "RS"))
        changes = inbox.refresh()
        assert [m.uid for m in changes.changed] == [uid]
        assert changes.changed[0].flags == {SEEN, ANSWERED}
        assert changes.changed[0].modseq > before
        assert inbox.status().highestmodseq >= changes.changed[0].modseq


def test_file_deleted_by_another_program_is_expunged(store: MaildirStore, root: Path) -> None:
    with store.folder("INBOX") as inbox:
        uids = [inbox.append_bytes(MESSAGE).uid for _ in range(3)]
        inbox.refresh()
        modseq = inbox.status().highestmodseq
        # The file of uids[1], found through the uidlist: the names' string order is
        # not their UIDs' (``M<usecs>`` is not zero-padded, so M100001 sorts before
        # M99999), which made this test pick another message now and then.
        base = dict(read_uidlist(root)[1])[uids[1]]
        (victim,) = [n for n in files(root / "cur") if n.partition(":")[0] == base]
        os.unlink(root / "cur" / victim)
        changes = inbox.refresh()
        assert changes.expunged == (uids[1],)
        assert inbox.changes_since(modseq).expunged == (uids[1],)


# --- dovecot-uidlist ------------------------------------------------------------------------

HEADER = re.compile(r"^3 V(?P<V>\d+) N(?P<N>\d+) G(?P<G>[0-9a-f]{32})(?P<ext>( \S+)*)$")


def read_uidlist(root: Path) -> tuple[re.Match[str], list[tuple[int, str]]]:
    text = (root / "dovecot-uidlist").read_text()
    assert text.endswith("\n")
    lines = text.splitlines()
    header = HEADER.match(lines[0])
    assert header, lines[0]
    records = []
    for line in lines[1:]:
        head, _, base = line.partition(" :")
        records.append((int(head.split()[0]), base))
    return header, records


def test_uidlist_v3_written(store: MaildirStore, root: Path) -> None:
    with store.folder("INBOX") as inbox:
        r1 = inbox.append_bytes(MESSAGE)  # recorded at once
        inbox.append_bytes(MESSAGE, assign_uid=False)  # recorded at the refresh
        inbox.refresh()
        status = inbox.status()
    header, records = read_uidlist(root)
    assert int(header["V"]) == status.uidvalidity == r1.uidvalidity
    assert [uid for uid, _ in records] == [1, 2]
    # Compared as sets, and the order checked in Dovecot's (numeric) time order: the
    # names' string order is not their time order (``M<usecs>`` is not zero-padded).
    assert sorted(base + ":2," for _, base in records) == files(root / "cur")
    bases = [base for _, base in records]
    assert bases == sorted(bases, key=_maildir_names.sort_key)
    assert all(":" not in base for _, base in records)


def test_uidlist_written_by_dovecot_is_read(store: MaildirStore, root: Path) -> None:
    a = "1275660208.M1P2.host,S=10,W=12"
    b = "1275660209.M5P2.host,S=20,W=22"
    (root / "cur" / (a + ":2,S")).write_bytes(b"x\n" * 5)
    (root / "cur" / (b + ":2,")).write_bytes(b"y\n" * 10)
    (root / "new" / "1275660300.M7P3.host").write_bytes(b"z\n")
    (root / "dovecot-uidlist").write_text(
        "3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1 Xfuture\n"
        f"7 W12 S10 :{a}\n"
        f"25000 :{b}\n"
    )
    with store.folder("INBOX") as inbox:
        status = inbox.status()
        assert status.uidvalidity == 1275660208
        assert [m.uid for m in inbox.messages()] == [7, 25000, 25022]
        assert status.uidnext == 25023
        assert inbox.info(7).flags == {SEEN}
        assert inbox.info(7).size == 12
    header, records = read_uidlist(root)
    assert header["G"] == "3085f01b7f11094c501100008c4a11c1"
    assert [uid for uid, _ in records] == [7, 25000, 25022]
    # Unknown header fields and record extensions are kept.
    assert "Xfuture" in header["ext"] or int(header["N"]) == 25022
    assert f"7 W12 S10 :{a}\n" in (root / "dovecot-uidlist").read_text()


def test_appended_records_are_read_incrementally(store: MaildirStore, root: Path) -> None:
    with store.folder("INBOX") as inbox:
        inbox.append_bytes(MESSAGE)
        inbox.refresh()
        ino = (root / "dovecot-uidlist").stat().st_ino
        other = MaildirStore(root)
        with other.folder("INBOX") as f2:
            r = f2.append_bytes(MESSAGE)
        assert (root / "dovecot-uidlist").stat().st_ino == ino  # appended, not rewritten
        changes = inbox.refresh()
        assert [m.uid for m in changes.added] == [r.uid] == [2]


def test_torn_last_line_is_ignored(store: MaildirStore, root: Path) -> None:
    with store.folder("INBOX") as inbox:
        inbox.append_bytes(MESSAGE)
    torn_base = "1700000000.M1P1.host,S=2,W=3"
    (root / "cur" / (torn_base + ":2,")).write_bytes(b"t\n")
    with open(root / "dovecot-uidlist", "a") as f:
        f.write(f"2 :{torn_base[:10]}")  # a writer died mid-line
    other = MaildirStore(root)
    with other.folder("INBOX") as inbox:
        uids = {m.uid for m in inbox.messages()}
        assert uids == {1, 2}
    header, records = read_uidlist(root)  # every line complete again
    assert dict(records)[2] == torn_base


def test_missing_uidlist_numbers_files_in_time_order(store: MaildirStore, root: Path) -> None:
    names = ["1700000002.M5P1.h", "1700000001.M9P1.h", "1700000001.M10P1.h"]
    for n in names:
        (root / "cur" / (n + ":2,")).write_bytes(n.encode() + b"\n")
    before = int(time.time())
    with store.folder("INBOX") as inbox:
        by_uid = {m.uid: inbox.read_message(m.uid) for m in inbox.messages()}
        uidvalidity = inbox.status().uidvalidity
    assert [by_uid[u] for u in (1, 2, 3)] == [
        b"1700000001.M9P1.h\r\n",
        b"1700000001.M10P1.h\r\n",
        b"1700000002.M5P1.h\r\n",
    ]
    assert uidvalidity >= before - 1


def test_uidvalidity_values_come_from_dovecots_allocator(store: MaildirStore, root: Path) -> None:
    values = []
    for name in ("A", "B", "C"):
        store.create_folder(name)
        with store.folder(name) as f:
            values.append(f.status().uidvalidity)
    assert len(set(values)) == 3
    assert (root / "dovecot-uidvalidity").read_text() == f"{max(values):08x}"
    assert (root / f"dovecot-uidvalidity.{max(values):08x}").exists()


def test_uids_survive_reopening_and_are_never_reused(root: Path) -> None:
    store = MaildirStore(root)
    with store.folder("INBOX") as inbox:
        uids = [inbox.append_bytes(MESSAGE).uid for _ in range(3)]
        inbox.refresh()
        status = inbox.status()
        inbox.set_flags([uids[2]], [DELETED])
        assert inbox.expunge() == [uids[2]]
    store.close()
    store = MaildirStore(root)
    with store.folder("INBOX") as inbox:
        again = inbox.status()
        assert again.uidvalidity == status.uidvalidity
        assert again.uidnext == status.uidnext == 4
        assert [m.uid for m in inbox.messages()] == uids[:2]
        assert inbox.append_bytes(MESSAGE).uid == 4
    # A compaction of the uidlist keeps N even when the last record goes.
    store.close()
    store = MaildirStore(root)
    with store.folder("INBOX") as inbox:
        inbox.set_flags([m.uid for m in inbox.messages()], [DELETED])
        assert inbox.expunge() == [1, 2, 4]
        inbox._core.uidlist.rewrite(drop=set(inbox._core.uidlist.by_uid))
    assert read_uidlist(root)[1] == []
    store.close()
    with MaildirStore(root).folder("INBOX") as inbox:
        assert inbox.status().uidnext == 5
        assert inbox.append_bytes(MESSAGE).uid == 5


def test_a_file_back_after_its_expunge_gets_a_new_uid(store: MaildirStore, root: Path) -> None:
    with store.folder("INBOX") as inbox:
        uid = inbox.append_bytes(MESSAGE).uid
        inbox.refresh()
        name = only_file(root / "cur")
        os.rename(root / "cur" / name, root / name)
        assert inbox.refresh().expunged == (uid,)
        os.rename(root / name, root / "cur" / name)
        (added,) = inbox.refresh().added
        assert added.uid != uid


def test_modseq_state_file(store: MaildirStore, root: Path) -> None:
    with store.folder("INBOX") as inbox:
        uid = inbox.append_bytes(MESSAGE).uid
        inbox.refresh()
        (changed,), _ = inbox.set_flags([uid], [SEEN])
        inbox.refresh()
        highest = inbox.status().highestmodseq
        assert highest == changed.modseq
    lines = (root / "mailagents-modseq").read_text().splitlines()
    assert lines[0].startswith("mailagents-modseq 1 C")
    assert lines[-1].startswith(f"m {uid} ")
    with MaildirStore(root).folder("INBOX") as inbox:
        assert inbox.status().highestmodseq == highest
        assert inbox.info(uid).modseq == highest


def test_more_than_26_keywords(store: MaildirStore, root: Path) -> None:
    keywords = [f"k{i}" for i in range(30)]
    with store.folder("INBOX") as inbox:
        uid = inbox.append_bytes(MESSAGE, flags=keywords[:28]).uid
        assert uid is not None
        inbox.refresh()
        assert inbox.info(uid).flags == set(keywords[:28])
        inbox.set_flags([uid], keywords[28:], "add")
    with MaildirStore(root).folder("INBOX") as inbox:
        assert inbox.info(uid).flags == set(keywords)
    assert len((root / "dovecot-keywords").read_text().splitlines()) == 26


# --- Python's mailbox module ----------------------------------------------------------------


def test_python_mailbox_reads_what_we_write(store: MaildirStore, root: Path) -> None:
    store.create_folder("Sent")
    with store.folder("INBOX") as inbox:
        inbox.append_bytes(MESSAGE, flags=[SEEN, FLAGGED])
        inbox.append_bytes(MESSAGE.replace(b"hello", b"second"), assign_uid=False)
    with store.folder("Sent") as sent:
        sent.append_bytes(MESSAGE.replace(b"hello", b"sent"), flags=[ANSWERED])
    md = mailbox.Maildir(str(root), factory=None, create=False)
    got = sorted((m["subject"], m.get_flags(), m.get_subdir()) for m in md)
    assert got == [("hello", "FS", "cur"), ("second", "", "new")]
    for key in md.iterkeys():
        assert md.get_bytes(key) in (LF_MESSAGE, LF_MESSAGE.replace(b"hello", b"second"))
    assert md.list_folders() == ["Sent"]
    (msg,) = list(md.get_folder("Sent"))
    assert (msg["subject"], msg.get_flags()) == ("sent", "R")


def test_we_read_what_python_mailbox_writes(root: Path) -> None:
    md = mailbox.Maildir(str(root), create=True)
    m1 = mailbox.MaildirMessage(LF_MESSAGE)
    m1.set_flags("RS")
    m1.set_subdir("cur")
    k1 = md.add(m1)
    md.add(mailbox.MaildirMessage(LF_MESSAGE.replace(b"hello", b"two")))
    folder = md.add_folder("Archive")
    folder.add(mailbox.MaildirMessage(LF_MESSAGE))
    store = MaildirStore(root, create=False)
    assert [f.name for f in store.folders()] == ["INBOX", "Archive"]
    with store.folder("INBOX") as inbox:
        msgs = inbox.messages()
        assert len(msgs) == 2
        by_flags = {frozenset(m.flags): m for m in msgs}
        first = by_flags[frozenset({SEEN, ANSWERED})]
        assert inbox.read_message(first.uid) == MESSAGE
        assert first.size == len(MESSAGE)
        inbox.set_flags([first.uid], [FLAGGED], "add")
    assert md.get_message(k1).get_flags() == "FRS"
    with store.folder("Archive") as archive:
        assert [archive.read_message(m.uid) for m in archive.messages()] == [MESSAGE]


# --- folders -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    ["", "..", "a/../b", "/abs", "/", "a//b", "a/", "a\x00b", "a\nb", "a.b", ".hidden", "../x"],
)
def test_invalid_folder_names(store: MaildirStore, root: Path, bad: str) -> None:
    before = sorted(os.listdir(root.parent))
    with pytest.raises(InvalidFolderNameError):
        store.create_folder(bad)
    with pytest.raises(InvalidFolderNameError):
        store.folder(bad)
    with pytest.raises(InvalidFolderNameError):
        store.rename_folder("INBOX", bad)
    assert sorted(os.listdir(root.parent)) == before


def test_folder_names_on_disk_are_maildirpp_and_mutf7(store: MaildirStore, root: Path) -> None:
    store.create_folder("Entwürfe")
    store.create_folder("Archive/2026")
    store.create_folder("A&B")
    dirs = sorted(p.name for p in root.iterdir() if p.name.startswith("."))
    assert dirs == [".A&-B", ".Archive", ".Archive.2026", ".Entw&APw-rfe"]
    for d in dirs:
        assert (root / d / "maildirfolder").read_bytes() == b""
        assert {"tmp", "new", "cur"} <= set(os.listdir(root / d))
    names = {f.name: f.attributes for f in store.folders()}
    assert set(names) == {"INBOX", "A&B", "Archive", "Archive/2026", "Entwürfe"}
    assert "\\HasChildren" in names["Archive"]


def test_folders_made_by_dovecot_are_listed(store: MaildirStore, root: Path) -> None:
    for d in (".Entw&APw-rfe", ".Lists.python", ".Gel&APY-scht"):
        for sub in ("tmp", "new", "cur"):
            (root / d / sub).mkdir(parents=True)
    (root / ".Bad&AGE-").mkdir()  # not canonical modified UTF-7: not ours to guess
    folders = {f.name: f.attributes for f in store.folders()}
    assert set(folders) == {"INBOX", "Entwürfe", "Lists", "Lists/python", "Gelöscht"}
    assert "\\Noselect" in folders["Lists"]
    with pytest.raises(FolderNotFoundError):
        store.folder("Lists")
    with pytest.raises(FolderExistsError):
        store.create_folder("Entwürfe")


def test_special_use_defaults_and_file(store: MaildirStore, root: Path) -> None:
    for name in ("Sent", "Trash", "Outbox"):
        store.create_folder(name)
    store.create_folder("Gesendet", special_use="\\Sent")
    attrs = {f.name: f.attributes for f in store.folders()}
    assert "\\Sent" in attrs["Gesendet"] and "\\Sent" not in attrs["Sent"]
    assert "\\Trash" in attrs["Trash"]
    assert (root / "mailagents-special-use").read_text() == "\\Sent\tGesendet\n"


def test_subscriptions_file_is_dovecots_v2(store: MaildirStore, root: Path) -> None:
    store.subscribe("Entwürfe")
    store.subscribe("Archive/2026")
    store.subscribe("inbox")
    assert (root / "subscriptions").read_bytes() == (
        b"V\t2\n\nEntw&APw-rfe\nArchive\t2026\nINBOX\n"
    )
    store.unsubscribe("Archive/2026")
    assert store.subscriptions() == ["Entwürfe", "INBOX"]


def test_subscriptions_v1_is_read(store: MaildirStore, root: Path) -> None:
    (root / "subscriptions").write_bytes(b"INBOX\nEntw&APw-rfe\nLists.python\n")
    assert store.subscriptions() == ["INBOX", "Entwürfe", "Lists/python"]


def test_rename_and_delete_move_directories(store: MaildirStore, root: Path) -> None:
    store.create_folder("Old/child")
    with store.folder("Old") as old:
        old.append_bytes(MESSAGE)
    store.subscribe("Old/child")
    store.rename_folder("Old", "New")
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == [
        ".New",
        ".New.child",
    ]
    assert store.subscriptions() == ["New/child"]
    with store.folder("New") as new:
        assert len(new.messages()) == 1
    store.delete_folder("New")
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == [".New.child"]
    assert "\\Noselect" in {f.name: f.attributes for f in store.folders()}["New"]


def test_renaming_inbox_moves_its_messages(store: MaildirStore, root: Path) -> None:
    with store.folder("INBOX") as inbox:
        inbox.append_bytes(MESSAGE, flags=["Work"])
        inbox.append_bytes(MESSAGE, assign_uid=False)
    store.rename_folder("INBOX", "Old mail")
    with store.folder("INBOX") as inbox:
        assert inbox.messages() == []
    with store.folder("Old mail") as old:
        assert sorted(tuple(sorted(m.flags)) for m in old.messages()) == [(), ("Work",)]


def test_copy_uses_hard_links_and_keeps_flags(store: MaildirStore, root: Path) -> None:
    store.create_folder("Copy")
    with store.folder("INBOX") as inbox, store.folder("Copy") as target:
        uid = inbox.append_bytes(MESSAGE, flags=[SEEN, "Work"]).uid
        inbox.refresh()
        assert isinstance(target, MaildirFolder)
        mapping = inbox.copy([uid], target)
        target.refresh()
        new_uid = mapping[uid]
        assert target.info(new_uid).flags == {SEEN, "Work"}
        src = root / "cur" / only_file(root / "cur")
        dst = root / ".Copy" / "cur" / only_file(root / ".Copy" / "cur")
        assert src.stat().st_ino == dst.stat().st_ino
        assert NAME.match(dst.name)


# --- several processes -----------------------------------------------------------------


def _child_append(root: str, count: int, queue: Any) -> None:
    store = MaildirStore(root)
    with store.folder("INBOX") as inbox:
        uids = []
        for i in range(count):
            uids.append(inbox.append_bytes(MESSAGE).uid)
            if i % 5 == 0:
                inbox.refresh()
                inbox.set_flags([uids[-1]], [SEEN], "add")
    queue.put(uids)


def test_two_processes_never_share_a_uid(root: Path) -> None:
    import multiprocessing

    MaildirStore(root).close()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_child_append, args=(str(root), 30, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    everything = results[0] + results[1]
    assert len(set(everything)) == 60
    for uids in results:
        assert uids == sorted(uids)
    with MaildirStore(root).folder("INBOX") as inbox:
        assert sorted(m.uid for m in inbox.messages()) == sorted(everything)
        seen = [m for m in inbox.messages() if SEEN in m.flags]
        assert len(seen) == 12


def test_open_of_missing_store_without_create(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        MaildirStore(tmp_path / "nothing", create=False)


def test_passed_letter_is_no_flag_and_is_kept(store: MaildirStore, root: Path) -> None:
    # mutt writes P (passed); Dovecot maps it to no IMAP flag, so neither do we.
    with store.folder("INBOX") as inbox:
        inbox.append_bytes(MESSAGE)
        inbox.refresh()
        name = only_file(root / "cur")
        os.rename(root / "cur" / name, root / "cur" / (name.split(":")[0] + ":2,PS"))
        inbox.refresh()
        (info,) = inbox.messages()
        assert info.flags == frozenset({SEEN})
        inbox.set_flags([info.uid], [FLAGGED], "add")
    assert only_file(root / "cur").endswith(":2,FPS")


def test_state_journal_mixes_fast_and_general_records(store: MaildirStore, root: Path) -> None:
    # Plain records take the parser's fast path; records with keywords beyond the 26
    # letters or escaped fields take the general one. Both must give the same view.
    many = [f"kw{i}" for i in range(30)]
    with store.folder("INBOX") as inbox:
        plain = inbox.append_bytes(MESSAGE).uid
        busy = inbox.append_bytes(MESSAGE, flags=[*many, SEEN]).uid
        odd = inbox.append_bytes(MESSAGE, flags=[*many, "a,b", "x~y"]).uid
        last = inbox.append_bytes(MESSAGE, flags=[FLAGGED]).uid
        inbox.refresh()
        before = {m.uid: m for m in inbox.messages()}
    with MaildirStore(root) as again, again.folder("INBOX") as inbox:
        after = {m.uid: m for m in inbox.messages()}
        assert after == before
        assert after[busy].flags == frozenset([*many, SEEN])
        assert after[odd].flags == frozenset([*many, "a,b", "x~y"])
        assert after[last].flags == frozenset({FLAGGED}) and plain in after
        assert inbox.status().highestmodseq == max(m.modseq for m in after.values())


# --- the snapshot (mailagents-snapshot) ----------------------------------------------------
#
# A snapshot is written only when nothing the open read changed within
# _maildir_sync._RECENT_WINDOW_NS; the tests shorten that window to 50 ms and wait it out, which
# keeps the guarantee the window gives (a later change gets another timestamp) while the
# tests stay fast.

WINDOW = 0.05
SNAPSHOT = "mailagents-snapshot"


@pytest.fixture
def snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_maildir_sync, "_RECENT_WINDOW_NS", int(WINDOW * 1e9))
    monkeypatch.setattr(_maildir_sync, "SNAPSHOT_MIN", 20)


def quiet() -> None:
    time.sleep(WINDOW * 1.5)


def make_folder(root: Path, count: int = 40) -> None:
    """A folder with everything a snapshot keeps: flags, keywords with and without a
    letter, an expunged message still in the uidlist, a uidlist extension field."""
    with MaildirStore(root, fsync=False) as store, store.folder("INBOX") as inbox:
        uids = [inbox.append_bytes(MESSAGE + b"%d\r\n" % i).uid for i in range(count)]
        inbox.refresh()
        inbox.set_flags(uids[::3], [SEEN], "add")
        inbox.set_flags(uids[1::7], [FLAGGED, "$Label1", "Work"], "add")
        inbox.set_flags(uids[2:5], [f"k{i}" for i in range(30)], "add")  # 26+ keywords
        inbox.set_flags(uids[5:7], [DELETED], "add")
        inbox.expunge()
    uidlist = root / "dovecot-uidlist"
    text = uidlist.read_text()
    last = text.splitlines()[-1]
    uid, _, base = last.partition(" ")
    uidlist.write_text(text.replace(last + "\n", f"{uid} W999 {base}\n"))  # Dovecot's W field


def core_state(folder: MaildirFolder) -> dict[str, Any]:
    """Everything a sync leaves in memory (the lazy parts built)."""
    core = folder._core
    ul, st, kw = core.uidlist, core.state, core.keywords
    return {
        "messages": folder.messages(),
        "status": folder.status(),
        "changes": folder.changes_since(0),
        "files": dict(core.files),
        "infos": dict(core.infos),
        "uidnext": core.uidnext,
        "uidvalidity": core.uidvalidity,
        "records": sorted((r.uid, r.base, r.ext) for r in ul.by_uid.values()),
        "by_base": sorted((b, r.uid) for b, r in ul.by_base.items()),
        "uidlist": (ul.version, ul.uidvalidity, ul.next_uid, ul.hdr_next_uid, ul.guid,
                    ul.hdr_ext, ul.file_ident, ul.torn),
        "entries": dict(st.entries),
        "expunged": dict(st.expunged),
        "state": (st.uidvalidity, st.highest, st.forgotten, st.file_ident),
        "keywords": (list(kw.names), kw.loaded_stamp),
    }


def open_state(root: Path) -> dict[str, Any]:
    with MaildirStore(root) as store, store.folder("INBOX") as inbox:
        return core_state(inbox)


def fresh_state(root: Path) -> dict[str, Any]:
    """What an open without any snapshot finds (and writes no snapshot)."""
    (root / SNAPSHOT).unlink(missing_ok=True)
    with MaildirStore(root) as store:
        core = store._core(str(root))
        core.sync()  # not a reader: neither loads nor writes a snapshot
        with MaildirFolder(store, str(root), "INBOX") as inbox:
            state = core_state(inbox)
    assert not (root / SNAPSHOT).exists()
    return state


def no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every way of reading the folder fail: what works then came from the snapshot."""

    def fail(*args: object, **kwargs: object) -> Any:
        raise AssertionError("the folder was read, not the snapshot")

    monkeypatch.setattr(_maildir_uidlist.UidList, "_parse_records", fail)
    monkeypatch.setattr(_maildir_state.ModseqState, "_parse", fail)
    monkeypatch.setattr(maildir_module._Core, "_scan", fail)
    monkeypatch.setattr(maildir_module._Core, "_plan", fail)


@pytest.mark.usefixtures("snapshots")
def test_snapshot_is_written_by_an_open_and_used_by_the_next(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_folder(root)
    quiet()
    expected = fresh_state(root)
    first = open_state(root)  # parses, then writes the snapshot
    assert (root / SNAPSHOT).exists()
    assert first == expected
    with monkeypatch.context() as m:
        no_parsing(m)
        with MaildirStore(root) as store, store.folder("INBOX") as inbox:
            loaded = inbox.messages()
            assert loaded == expected["messages"]
            assert inbox.status() == expected["status"]
            assert not inbox._core.uidlist.pristine
    # The lazily restored records and entries are exactly what a parse gives.
    assert open_state(root) == expected
    assert sum(1 for m in expected["messages"] if m.flags >= {"k0", "k29"}) == 3


@pytest.mark.usefixtures("snapshots")
def test_folder_loaded_from_a_snapshot_works_like_a_parsed_one(root: Path, tmp_path: Path) -> None:
    import shutil

    make_folder(root)
    quiet()
    open_state(root)  # writes the snapshot
    twin = tmp_path / "twin"
    shutil.copytree(root, twin)  # other inodes: its snapshot is stale, it parses

    def work(path: Path) -> tuple[Any, ...]:
        with MaildirStore(path, fsync=False) as store, store.folder("INBOX") as inbox:
            uids = [m.uid for m in inbox.messages()]
            flagged = inbox.set_flags(uids[:10], [ANSWERED, "k3", "New"], "add")
            inbox.set_flags(uids[-3:], [DELETED], "add")
            gone = inbox.expunge()
            changes = inbox.changes_since(2)
            other = next(p for p in path.joinpath("cur").iterdir() if ":2," in p.name)
            os.rename(other, str(other) + "D")  # another program adds \Draft
            refreshed = inbox.refresh()
            return flagged, gone, changes, refreshed, core_state(inbox)

    ours, theirs = work(root), work(twin)
    assert ours[:4] == theirs[:4]
    a, b = ours[4], theirs[4]
    for key in ("files", "records", "by_base"):  # the twin's file names are the same
        assert a[key] == b[key], key
    for key in ("messages", "status", "changes", "infos", "entries", "expunged", "uidnext"):
        assert a[key] == b[key], key
    assert (root / "mailagents-modseq").read_bytes() == (twin / "mailagents-modseq").read_bytes()
    assert (root / "dovecot-uidlist").read_bytes() == (twin / "dovecot-uidlist").read_bytes()


def _rename_adding_seen(root: Path) -> None:
    name = next(p for p in sorted((root / "cur").iterdir()) if "S" not in p.name.split(":")[1])
    os.rename(name, str(name) + "S")  # the letters stay in ASCII order: none after S here


def _drop_into_new(root: Path) -> None:
    (root / "tmp" / "dropped").write_bytes(LF_MESSAGE)
    os.rename(root / "tmp" / "dropped", root / "new" / "1700000000.M1P1.dropped")


def _unlink_one(root: Path) -> None:
    os.unlink(sorted((root / "cur").iterdir())[0])


def _other_handle_sets_flags(root: Path) -> None:
    with MaildirStore(root) as store, store.folder("INBOX") as inbox:
        inbox.set_flags([inbox.messages()[0].uid], [FLAGGED], "add")


def _other_handle_delivers(root: Path) -> None:
    with MaildirStore(root) as store, store.folder("INBOX") as inbox:
        inbox.append_bytes(MESSAGE, assign_uid=False)


def _child_sets_keyword(root: str) -> None:
    with MaildirStore(root) as store, store.folder("INBOX") as inbox:
        inbox.set_flags([inbox.messages()[-1].uid], ["FromChild"], "add")


def _other_process_sets_keyword(root: Path) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_child_sets_keyword, args=(str(root),))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 0


def _keywords_file_rewritten(root: Path) -> None:
    path = root / "dovecot-keywords"
    path.write_text(path.read_text().replace("Work", "Play"))


def _uidlist_appended(root: Path) -> None:
    first = (root / "dovecot-uidlist").read_text().splitlines()[1]
    with (root / "dovecot-uidlist").open("a") as f:
        f.write(f"99999 {first.partition(' ')[2]}\n")  # a new UID for a file: the last wins


@pytest.mark.usefixtures("snapshots")
@pytest.mark.parametrize(
    "change",
    [
        _rename_adding_seen,
        _drop_into_new,
        _unlink_one,
        _other_handle_sets_flags,
        _other_handle_delivers,
        _other_process_sets_keyword,
        _keywords_file_rewritten,
        _uidlist_appended,
    ],
)
@pytest.mark.parametrize("wait", [True, False], ids=["quiet-again", "at-once"])
def test_a_stale_snapshot_is_ignored(root: Path, change: Any, wait: bool) -> None:
    make_folder(root)
    quiet()
    before = open_state(root)
    assert (root / SNAPSHOT).exists()
    change(root)
    if wait:
        quiet()  # the folder is quiet again: only the stamp tells the snapshot is stale
    after = open_state(root)
    assert after["messages"] != before["messages"]
    assert after == fresh_state(root)
    quiet()
    open_state(root)  # a new snapshot is written...
    assert open_state(root) == after  # ...and used
    assert (root / SNAPSHOT).exists()


def _corrupt(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x40]) + data[middle + 1 :]


def _other_version(data: bytes) -> bytes:
    at = len(_maildir_snapshot.MAGIC)
    version = int.from_bytes(data[at : at + 4], "big")
    return data[:at] + (version + 1).to_bytes(4, "big") + data[at + 4 :]


@pytest.mark.usefixtures("snapshots")
@pytest.mark.parametrize(
    "damage",
    [
        _corrupt,
        lambda data: data[: len(data) - 7],  # truncated
        lambda data: data[:30],
        lambda data: b"",
        lambda data: data + b"x",
        _other_version,
        lambda data: b"garbage" * 100,
    ],
    ids=["corrupt", "truncated", "header-only", "empty", "longer", "other-version", "garbage"],
)
def test_a_damaged_snapshot_is_ignored_and_replaced(root: Path, damage: Any) -> None:
    make_folder(root)
    quiet()
    expected = fresh_state(root)
    open_state(root)
    path = root / SNAPSHOT
    path.write_bytes(damage(path.read_bytes()))  # not in the stamp: the folder stays quiet
    assert open_state(root) == expected
    assert _maildir_snapshot.load(str(root), _stamp(root)) is not None  # written anew


def _stamp(root: Path) -> Any:
    with MaildirStore(root) as store:
        return store._core(str(root))._stamp_now()[0]


@pytest.mark.usefixtures("snapshots")
@pytest.mark.parametrize("part", range(5))
def test_a_snapshot_with_wrong_values_is_ignored(
    root: Path, part: int, caplog: pytest.LogCaptureFixture
) -> None:
    make_folder(root)
    quiet()
    expected = fresh_state(root)
    open_state(root)
    stamp = _stamp(root)
    body = list(_maildir_snapshot.load(str(root), stamp))
    value = body[part]
    body[part] = (*value[:-1], "bad") if isinstance(value, tuple) else value[:-1]
    assert _maildir_snapshot.write(str(root), stamp, tuple(body))  # a valid file, bad values
    assert open_state(root) == expected
    assert "snapshot not usable" in caplog.text


@pytest.mark.usefixtures("snapshots")
def test_snapshot_only_for_big_quiet_folders_and_only_by_readers(root: Path) -> None:
    make_folder(root, count=_maildir_sync.SNAPSHOT_MIN - 1 + 2)  # 2 get expunged
    quiet()
    open_state(root)
    assert not (root / SNAPSHOT).exists()  # too small
    _other_handle_delivers(root)
    _other_handle_delivers(root)
    open_state(root)  # big enough now, but it just changed
    assert not (root / SNAPSHOT).exists()
    quiet()
    with MaildirStore(root) as store:
        core = store._core(str(root))
        core.sync()  # not a reader (a delivery's ensure_uidvalidity)
        assert not (root / SNAPSHOT).exists()
        assert core.ensure_uidvalidity()
    open_state(root)
    assert (root / SNAPSHOT).exists()


@pytest.mark.usefixtures("snapshots")
def test_deliveries_never_write_the_snapshot(root: Path) -> None:
    make_folder(root)
    quiet()
    with MaildirStore(root) as store, store.folder("INBOX") as inbox:
        assert (root / SNAPSHOT).exists()  # the open wrote it
        (root / SNAPSHOT).unlink()
        quiet()
        inbox.append_bytes(MESSAGE, assign_uid=False)
        inbox.append_bytes(MESSAGE)
        inbox.append_bytes(MESSAGE, flags=[SEEN, "Work", *(f"x{i}" for i in range(30))])
        quiet()
        with MaildirStore(root) as other:  # a new store delivering, never opening a folder
            for _ in range(3):
                folder = MaildirFolder.__new__(MaildirFolder)
                folder._core = other._core(str(root))
                folder.name = "INBOX"
                folder._closed = False
                folder.append(assign_uid=False).commit()
        quiet()
        inbox.append_bytes(MESSAGE)
        assert not (root / SNAPSHOT).exists()
        inbox.refresh()  # a reader, but not a first sync: still none
    assert not (root / SNAPSHOT).exists()
    assert not [p for p in os.listdir(root) if p.startswith(SNAPSHOT)]


@pytest.mark.usefixtures("snapshots")
def test_two_handles_of_one_store_share_the_loaded_snapshot(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_folder(root)
    quiet()
    expected = fresh_state(root)
    open_state(root)
    with MaildirStore(root) as store:
        first = store.folder("INBOX")
        second = store.folder("INBOX")
        assert first.messages() == second.messages() == expected["messages"]
        uid = first.messages()[0].uid
        (done,), _ = second.set_flags([uid], [ANSWERED], "add")
        first.refresh()
        assert first.info(uid) == done
    assert open_state(root)["messages"] == [
        done if m.uid == uid else m for m in expected["messages"]
    ]
