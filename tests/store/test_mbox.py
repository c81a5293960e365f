"""mbox-specific tests: the formats read (mboxo, mboxrd, mboxcl2) and written (mboxrd),
interop with Python's mailbox module, flags in mutt's headers, the side index, atomic
appends, locks, rewrites and folder names. The behaviour shared with Maildir is in
test_behaviour.py."""

from __future__ import annotations

import datetime
import errno
import mailbox
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents.store import (
    ANSWERED,
    DELETED,
    DRAFT,
    FLAGGED,
    SEEN,
    FolderExistsError,
    FolderNotFoundError,
    InvalidFolderNameError,
    _mbox_append,
    _mbox_rewrite,
)
from mailagents.store._locking import LockTimeout
from mailagents.store._mbox_lock import MboxLock
from mailagents.store.mbox import MboxFolder, MboxStore
from tests.store.conftest import make_message, to_lf

UTC = datetime.UTC


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "mail"


@pytest.fixture
def store(root: Path) -> Iterator[MboxStore]:
    s = MboxStore(root, fsync=False)
    yield s
    s.close()


def write_mbox(store: MboxStore, name: str, data: bytes) -> Path:
    """Put a hand-made mbox file in place of a folder (before it is first opened)."""
    path = Path(store.root) / name
    path.write_bytes(data)
    return path


def contents(folder: MboxFolder) -> list[bytes]:
    folder.refresh()
    return [folder.read_message(m.uid) for m in folder.messages()]


def mboxrd_quote(data: bytes) -> bytes:
    """Our on-disk form of an LF message body: one more '>' on ^>*From lines."""
    return re.sub(rb"(?m)^(>*From )", rb">\1", data)


# --- reading the formats -------------------------------------------------------------

MBOXO = (
    b"From alice@example.test Thu Jan  1 00:00:00 2026\n"
    b"Subject: one\n"
    b"\n"
    b"Hello\n"
    b">From the quoted line\n"
    b"From here: not after an empty line, so not a separator\n"
    b"\n"
    b"From bob@example.test Fri Jan  2 10:20:30 2026\n"
    b"Subject: two\n"
    b"\n"
    b"Bye\n"
    b"\n"
)


def test_read_mboxo(store: MboxStore) -> None:
    write_mbox(store, "INBOX", MBOXO)
    with store.folder("INBOX") as f:
        assert contents(f) == [
            b"Subject: one\r\n\r\nHello\r\nFrom the quoted line\r\n"
            b"From here: not after an empty line, so not a separator\r\n",
            b"Subject: two\r\n\r\nBye\r\n",
        ]
        infos = f.messages()
        assert [m.uid for m in infos] == [1, 2]
        assert infos[0].internaldate == datetime.datetime(2026, 1, 1, tzinfo=UTC)
        assert infos[1].internaldate == datetime.datetime(2026, 1, 2, 10, 20, 30, tzinfo=UTC)
        assert [m.size for m in infos] == [len(c) for c in contents(f)]


def test_read_mboxrd_unquotes_one_level(store: MboxStore) -> None:
    write_mbox(
        store, "INBOX",
        b"From a@example.test Thu Jan  1 00:00:00 2026\n"
        b"Subject: rd\n\n"
        b">From one\n>>From two\n>>>From three\n> From not quoted\n>Fromage\n"
        b"\n"
        b"From b@example.test Thu Jan  1 00:00:01 2026\n"
        b"\n",
    )
    with store.folder("INBOX") as f:
        first, second = contents(f)
    assert first == (
        b"Subject: rd\r\n\r\nFrom one\r\n>From two\r\n>>From three\r\n"
        b"> From not quoted\r\n>Fromage\r\n"
    )
    assert second == b""


def test_read_mboxcl2_content_length(store: MboxStore) -> None:
    body = b"line\n\nFrom inside: Content-Length says it is body\n>From stays quoted\n"
    data = (
        b"From a@example.test Thu Jan  1 00:00:00 2026\n"
        b"Subject: cl2\n"
        b"Content-Length: " + str(len(body)).encode() + b"\n\n" + body + b"\n"
        b"From b@example.test Thu Jan  1 00:00:01 2026\n"
        b"Subject: next\n\nx\n"
    )
    write_mbox(store, "INBOX", data)
    with store.folder("INBOX") as f:
        first, second = contents(f)
    assert first == (
        b"Subject: cl2\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        + body.replace(b"\n", b"\r\n")
    )
    assert second == b"Subject: next\r\n\r\nx\r\n"


@pytest.mark.parametrize("length", [5, 10_000, 40])
def test_lying_content_length_falls_back_to_separators(store: MboxStore, length: int) -> None:
    data = (
        b"From a@example.test Thu Jan  1 00:00:00 2026\n"
        b"Subject: liar\n"
        b"Content-Length: " + str(length).encode() + b"\n\n"
        b"line one\n\nFrom x@example.test Thu Jan  1 00:00:05 2026\nSubject: split\n\nz\n"
    )
    write_mbox(store, "INBOX", data)
    with store.folder("INBOX") as f:
        got = contents(f)
    assert got == [
        b"Subject: liar\r\nContent-Length: " + str(length).encode() + b"\r\n\r\nline one\r\n",
        b"Subject: split\r\n\r\nz\r\n",
    ]


def test_truncated_and_malformed_files_are_listed(store: MboxStore) -> None:
    write_mbox(
        store, "INBOX",
        b"garbage before any From line\n\n"
        b"From a@example.test Thu Jan  1 00:00:00 2026\nSubject: cut"
    )
    with store.folder("INBOX") as f:
        got = contents(f)
        assert got == [b"garbage before any From line\r\n", b"Subject: cut"]
        # Appending after a file without its final newlines keeps both intact.
        uid = f.append_bytes(b"Subject: after\r\n\r\nok\r\n").uid
        assert uid is not None
        assert contents(f) == [*got, b"Subject: after\r\n\r\nok\r\n"]
        f.set_flags([1], [DELETED], "add")
        f.expunge()
        assert contents(f) == [b"Subject: cut", b"Subject: after\r\n\r\nok\r\n"]


# --- writing mboxrd ------------------------------------------------------------------

# A CR just before a line end would make CR CR LF, which LF storage cannot tell from
# CR LF: the store's contract covers messages with CRLF or LF line ends.
_piece = st.binary(max_size=12).filter(lambda b: b"\n" not in b and not b.endswith(b"\r"))
_line = st.one_of(
    st.builds(lambda n, rest: b">" * n + b"From " + rest, st.integers(0, 6), _piece),
    st.sampled_from([b"", b"From", b">", b">From", b" From x", b"Status: RO", b"\t"]),
    _piece,
)


@given(lines=st.lists(_line, max_size=12), crlf=st.booleans())
def test_quoting_round_trip(lines: list[bytes], crlf: bool) -> None:
    body = b"".join(line + b"\r\n" for line in lines)
    data = b"Subject: quoting\r\n\r\n" + body
    tmp = tempfile.mkdtemp(prefix="mailagents-mbox-")
    try:
        s = MboxStore(tmp, fsync=False)
        with s.folder("INBOX") as f:
            first = f.append_bytes(data if crlf else to_lf(data)).uid
            assert first is not None
            second = f.append_bytes(b"Subject: after\r\n\r\nx\r\n").uid
            assert f.read_message(first) == data
            assert f.info(first).size == len(data)
        raw = (Path(tmp) / "INBOX").read_bytes()
        stored = raw.split(b"\n", 1)[1]
        assert stored.startswith(b"Subject: quoting\n\n" + mboxrd_quote(to_lf(body)))
        # Without the index, the file alone gives the same bytes.
        os.unlink(Path(tmp) / ".INBOX.mailagents-index")
        s = MboxStore(tmp, fsync=False)
        with s.folder("INBOX") as f:
            assert contents(f) == [data, b"Subject: after\r\n\r\nx\r\n"]
            assert second is not None
    finally:
        shutil.rmtree(tmp)


def test_from_line_and_separator(store: MboxStore, root: Path) -> None:
    when = datetime.datetime(2026, 3, 3, 10, 0, 7, tzinfo=datetime.timezone(
        datetime.timedelta(hours=1)))
    with store.folder("INBOX") as f:
        f.append_bytes(make_message("with return path"), internaldate=when)
        f.append_bytes(b"Subject: none\r\n\r\nno return path", internaldate=when)
    raw = (root / "INBOX").read_bytes()
    lines = raw.split(b"\n")
    assert lines[0] == b"From alice@example.test Tue Mar  3 09:00:07 2026"
    assert b"\n\nFrom MAILER-DAEMON Tue Mar  3 09:00:07 2026\n" in raw
    assert raw.endswith(b"no return path\n\n")


# --- Python's mailbox ------------------------------------------------------------------


def test_python_mailbox_reads_what_we_write(store: MboxStore, root: Path) -> None:
    datas = [make_message(f"py{i}", size=700 + 50 * i) for i in range(3)]
    datas.append(b"Subject: no final newline\r\n\r\nFrom the end")
    with store.folder("INBOX") as f:
        for d in datas:
            f.append_bytes(d)
    box = mailbox.mbox(str(root / "INBOX"), create=False)
    try:
        keys = sorted(box.keys())
        assert len(keys) == len(datas)
        for key, data in zip(keys, datas, strict=True):
            raw = box.get_bytes(key)
            # mailbox.mbox does not unquote: it shows our mboxrd quoting as stored.
            expected = mboxrd_quote(to_lf(data))
            assert raw == expected if expected.endswith(b"\n") else raw == expected + b"\n"
            assert box.get_message(key)["Subject"] == re.search(
                rb"Subject: ([^\r\n]*)", data).group(1).decode()  # type: ignore[union-attr]
    finally:
        box.close()


def test_we_read_what_python_mailbox_writes(store: MboxStore, root: Path) -> None:
    with store.folder("INBOX") as f:
        ours = f.append_bytes(make_message("ours")).uid
    box = mailbox.mbox(str(root / "INBOX"))
    box.lock()
    try:
        msg = mailbox.mboxMessage(b"Subject: flagged\n\nFrom the start\nbody\n")
        msg.set_flags("RAF")
        msg.set_from("py@example.test", time.gmtime(1767225600))  # 2026-01-01
        box.add(msg)
        box.add(b"Subject: raw\n\nline\nFrom x\n")
        box.flush()
    finally:
        box.unlock()
        box.close()
    with store.folder("INBOX") as f:
        got = f.messages()
        assert got[0].uid == ours
        assert len(got) == 3 and got[1].uid > ours and got[2].uid > got[1].uid
        assert f.read_message(ours) == make_message("ours")
        # Status/X-Status are flags, not message bytes; Python's ">From" is unquoted.
        assert f.read_message(got[1].uid) == b"Subject: flagged\r\n\r\nFrom the start\r\nbody\r\n"
        assert got[1].flags == {SEEN, ANSWERED, FLAGGED}
        assert got[1].internaldate == datetime.datetime(2026, 1, 1, tzinfo=UTC)
        assert f.read_message(got[2].uid) == b"Subject: raw\r\n\r\nline\r\nFrom x\r\n"
        assert got[2].flags == frozenset()


def test_external_rewrite_keeps_uids_where_it_can(store: MboxStore, root: Path) -> None:
    with store.folder("INBOX") as f:
        uids = [f.append_bytes(make_message(f"x{i}")).uid for i in range(3)]
        validity = f.status().uidvalidity
    box = mailbox.mbox(str(root / "INBOX"))
    box.lock()
    try:
        box.remove(sorted(box.keys())[1])  # the middle one: the third moves up
        box.flush()
    finally:
        box.unlock()
        box.close()
    with store.folder("INBOX") as f:
        got = [m.uid for m in f.messages()]
        assert f.status().uidvalidity == validity
        assert got[0] == uids[0]
        assert got[1] not in uids and got[1] > max(uids)  # moved: a new UID, never reused
        assert f.read_message(got[1]) == make_message("x2")
        changes = f.changes_since(0)
        assert uids[1] in changes.expunged and uids[2] in changes.expunged


# --- flags in headers ------------------------------------------------------------------

MUTT = (
    b"From a@example.test Thu Jan  1 00:00:00 2026\n"
    b"Subject: read\n"
    b"Status: RO\n"
    b"X-Status: AFT\n"
    b"X-Keywords: $Label1 work\n"
    b"\n"
    b"body\n"
    b"\n"
    b"From b@example.test Thu Jan  1 00:00:01 2026\n"
    b"Subject: new\n"
    b"\n"
    b"body two\n"
    b"\n"
    b"From c@example.test Thu Jan  1 00:00:02 2026\n"
    b"Subject: old unread\n"
    b"Status: O\n"
    b"\n"
    b"body three\n"
    b"\n"
)


def test_flags_read_from_mutt_headers_and_written_on_rewrite(store: MboxStore) -> None:
    path = write_mbox(store, "Lists", MUTT)
    with store.folder("Lists") as f:
        a, b, c = f.messages()
        assert a.flags == {SEEN, ANSWERED, FLAGGED, DRAFT, "$Label1", "work"}
        assert b.flags == frozenset() and c.flags == frozenset()
        assert f.read_message(a.uid) == b"Subject: read\r\n\r\nbody\r\n"
        assert a.size == len(b"Subject: read\r\n\r\nbody\r\n")

        f.set_flags([b.uid], [FLAGGED, "todo"], "add")
        f.set_flags([c.uid], [SEEN], "add")
        assert path.read_bytes() == MUTT  # flag changes alone do not rewrite the file
        f.sync()
        raw = path.read_bytes()
        assert raw.startswith(MUTT.split(b"From b@")[0])  # unchanged: byte for byte
        assert b"Subject: new\nX-Status: F\nX-Keywords: todo\n\nbody two\n" in raw
        assert b"Subject: old unread\nStatus: RO\n\nbody three\n" in raw
        f.refresh()
        assert [f.read_message(m.uid) for m in f.messages()][1] == (
            b"Subject: new\r\n\r\nbody two\r\n"
        )
    box = mailbox.mbox(str(path), create=False)
    try:
        flags = [box.get_message(k).get_flags() for k in sorted(box.keys())]
    finally:
        box.close()
    assert [set(x) for x in flags] == [set("ROAFT"), set("F"), set("RO")]
    # Reading back the rewritten file without our index gives the same flags.
    os.unlink(Path(store.root) / ".Lists.mailagents-index")
    with store.folder("Lists") as f:
        assert [m.flags for m in f.messages()] == [
            {SEEN, ANSWERED, FLAGGED, DRAFT, "$Label1", "work"}, {FLAGGED, "todo"}, {SEEN},
        ]


def test_appended_flag_headers_are_stripped(store: MboxStore, root: Path) -> None:
    with store.folder("INBOX") as f:
        uid = f.append_bytes(
            b"Subject: s\r\nStatus: RO\r\nX-Keywords: a\r\n b\r\nX-UID: 7\r\n\r\nStatus: body\r\n"
        ).uid
        assert uid is not None
        assert f.read_message(uid) == b"Subject: s\r\n\r\nStatus: body\r\n"
        assert f.info(uid).flags == frozenset()
    assert b"X-Keywords" not in (root / "INBOX").read_bytes()


def test_expunge_rewrite_keeps_other_messages_byte_identical(store: MboxStore, root: Path) -> None:
    with store.folder("INBOX") as f:
        uids = [f.append_bytes(make_message(f"k{i}", size=600 + i)).uid for i in range(5)]
        before = (root / "INBOX").read_bytes()
        regions = {
            uid: before[e.offset : e.offset + e.length] for uid, e in f._state.msgs.items()
        }
        f.set_flags([uids[1]], [DELETED], "add")
        f.set_flags([uids[3]], [SEEN], "add")
        assert f.expunge() == [uids[1]]
        after = (root / "INBOX").read_bytes()
        assert after.startswith(regions[uids[0]] + regions[uids[2]])
        assert after.endswith(regions[uids[4]])
        flagged = after[len(regions[uids[0]] + regions[uids[2]]) : -len(regions[uids[4]])]
        assert flagged == regions[uids[3]].replace(
            b"Content-Type: text/plain; charset=utf-8\n\n",
            b"Content-Type: text/plain; charset=utf-8\nStatus: RO\n\n", 1,
        )
        for i in (0, 2, 3, 4):
            assert f.read_message(uids[i]) == make_message(f"k{i}", size=600 + i)  # type: ignore[arg-type]
    assert not [p for p in os.listdir(root) if "tmp" in p or p.endswith(".new")]


# --- the side index ----------------------------------------------------------------------


def test_uids_survive_reopen_and_plain_external_appends(root: Path) -> None:
    s = MboxStore(root, fsync=False)
    with s.folder("INBOX") as f:
        first = [f.append_bytes(make_message(f"u{i}")).uid for i in range(2)]
        validity = f.status().uidvalidity
    s.close()
    with open(root / "INBOX", "ab") as fh:  # another program, no locks
        fh.write(b"From other@example.test Sat Jan  3 00:00:00 2026\n"
                 b"Subject: foreign\nStatus: RO\n\nhello\n\n")
    s = MboxStore(root, fsync=False)
    with s.folder("INBOX") as f:
        infos = f.messages()
        assert [m.uid for m in infos][:2] == first
        assert f.status().uidvalidity == validity
        assert infos[2].uid > max(first)  # type: ignore[type-var]
        assert infos[2].flags == {SEEN}
        assert f.read_message(infos[2].uid) == b"Subject: foreign\r\n\r\nhello\r\n"
        later = f.append_bytes(make_message("later")).uid
        assert later is not None and later > infos[2].uid
    s.close()


def test_index_format(store: MboxStore, root: Path) -> None:
    with store.folder("INBOX") as f:
        f.append_bytes(make_message("a"), flags=[SEEN, "Kw"])
        f.set_flags([1], [FLAGGED], "add")
    text = (root / ".INBOX.mailagents-index").read_text()
    lines = text.splitlines()
    assert lines[0] == "mailagents-mbox-index 1"
    assert lines[1].startswith("V ")
    tags = [line.split(" ")[0] for line in lines[2:]]
    assert "P" in tags and "A" in tags and "C" in tags and "F" in tags
    assert tags.index("P") < tags.index("A") < tags.index("C")
    assert lines[-1].startswith("F 1 ") and lines[-1].endswith(" Kw \\Flagged \\Seen")


def test_corrupt_index_is_rebuilt_with_a_new_uidvalidity(store: MboxStore, root: Path) -> None:
    with store.folder("INBOX") as f:
        f.append_bytes(make_message("a"))
        validity = f.status().uidvalidity
    (root / ".INBOX.mailagents-index").write_bytes(b"\x00garbage\n")
    with store.folder("INBOX") as f:
        assert f.status().uidvalidity > validity
        assert contents(f) == [make_message("a")]


def test_pending_append_of_a_killed_writer_is_truncated(root: Path) -> None:
    s = MboxStore(root, fsync=False)
    with s.folder("INBOX") as f:
        uids = [f.append_bytes(make_message(f"p{i}")).uid for i in range(2)]
    s.close()
    size = (root / "INBOX").stat().st_size
    # A writer killed mid-append: its pending record is in the index, half a message in
    # the mbox.
    with open(root / ".INBOX.mailagents-index", "a") as fh:
        fh.write(f"P {size}\n")
    with open(root / "INBOX", "ab") as fh:
        fh.write(b"From MAILER-DAEMON Thu Jan  1 00:00:00 2026\nSubject: half\n\npartial bo")
    s = MboxStore(root, fsync=False)
    with s.folder("INBOX") as f:
        assert (root / "INBOX").stat().st_size == size
        assert [m.uid for m in f.messages()] == uids
        assert contents(f) == [make_message("p0"), make_message("p1")]
        nxt = f.append_bytes(make_message("next")).uid
        assert nxt is not None and nxt > max(uids)  # type: ignore[type-var]
    s.close()


def test_failed_append_truncates_back(store: MboxStore, root: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with store.folder("INBOX") as f:
        f.append_bytes(make_message("kept"))
        size = (root / "INBOX").stat().st_size
        real = _mbox_append.pwrite_all
        calls = []

        def failing(fd: int, data: bytes, pos: int) -> int:
            calls.append(pos)
            if len(calls) == 2:  # the message body, after the From line
                real(fd, data[: len(data) // 2], pos)
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(fd, data, pos)

        monkeypatch.setattr(_mbox_append, "pwrite_all", failing)
        with pytest.raises(OSError) as info:
            f.append_bytes(make_message("doomed", size=3000))
        assert info.value.errno == errno.ENOSPC
        monkeypatch.undo()
        assert (root / "INBOX").stat().st_size == size
        assert contents(f) == [make_message("kept")]
        fine = f.append_bytes(make_message("fine")).uid
        assert fine is not None and fine > 1
        assert contents(f) == [make_message("kept"), make_message("fine")]


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"fd{fd}"


def test_system_call_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "mail"
    s = MboxStore(root, fsync=True)
    folder = s.folder("INBOX")
    folder.append_bytes(make_message("first"))
    log: list[tuple[str, str]] = []

    def wrap(name: str, kind: str) -> None:
        real = getattr(os, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            target = _fd_path(args[0]) if kind == "fd" else str(args[1])
            if ".lock" not in target:  # the dotlock's own file
                log.append((name, os.path.basename(target)))
            return real(*args, **kwargs)

        monkeypatch.setattr(os, name, wrapper)

    for name in ("write", "pwrite", "fsync", "ftruncate"):
        wrap(name, "fd")
    for name in ("rename", "replace"):
        wrap(name, "path")

    def compact(entries: list[tuple[str, str]]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for e in entries:
            if not out or out[-1] != e:
                out.append(e)
        return out

    folder.append_bytes(make_message("second"))
    assert compact(log) == [
        ("write", ".INBOX.mailagents-index"), ("fsync", ".INBOX.mailagents-index"),
        ("pwrite", "INBOX"), ("fsync", "INBOX"),
        ("write", ".INBOX.mailagents-index"), ("fsync", ".INBOX.mailagents-index"),
    ]
    log.clear()
    folder.set_flags([1], [DELETED], "add")
    assert compact(log) == [
        ("write", ".INBOX.mailagents-index"), ("fsync", ".INBOX.mailagents-index"),
    ]
    log.clear()
    folder.expunge()
    seq = compact(log)
    tmp_writes = [i for i, (call, name) in enumerate(seq) if call == "pwrite"]
    assert seq[tmp_writes[0]][1].startswith(".INBOX.mailagents-tmp-")
    i = seq.index(("rename", "INBOX"))
    assert seq[i - 3 : i + 1] == [
        ("fsync", seq[tmp_writes[0]][1]),
        ("write", ".INBOX.mailagents-index.new"), ("fsync", ".INBOX.mailagents-index.new"),
        ("rename", "INBOX"),
    ]
    assert seq[i + 1] == ("replace", ".INBOX.mailagents-index")
    assert seq[i + 2][0] == "fsync"  # the directory
    folder.close()
    s.close()


def test_crash_between_rewrite_renames_is_recovered(store: MboxStore, root: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with store.folder("INBOX") as f:
        uids = [f.append_bytes(make_message(f"r{i}")).uid for i in range(3)]
        f.set_flags([uids[0]], [DELETED], "add")
        real_replace = os.replace

        def crash(src: Any, dst: Any) -> None:
            if str(src).endswith(".mailagents-index.new"):
                raise KeyboardInterrupt("killed between the renames")
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", crash)
        with pytest.raises(KeyboardInterrupt):
            f.expunge()
        monkeypatch.undo()
    # The new mbox is in place, the new index still .new: adopted on the next open.
    with store.folder("INBOX") as f:
        assert [m.uid for m in f.messages()] == uids[1:]
        assert contents(f) == [make_message("r1"), make_message("r2")]


# --- locks -------------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_dotlock_is_broken(store: MboxStore, root: Path) -> None:
    with store.folder("INBOX") as f:
        lock = root / "INBOX.lock"
        lock.write_text(f"{_dead_pid()}:{socket.gethostname()}\n")
        old = time.time() - 600
        os.utime(lock, (old, old))
        assert f.append_bytes(make_message("through")).uid is not None
        assert not lock.exists()
        # No owner named, but old: broken too.
        lock.write_bytes(b"")
        os.utime(lock, (old, old))
        assert f.append_bytes(make_message("again")).uid is not None
        assert not lock.exists()


@pytest.mark.parametrize("content", ["{pid}:{host}\n", "{pid}\n", ""])
def test_live_dotlock_is_respected(root: Path, content: str) -> None:
    s = MboxStore(root, fsync=False, lock_timeout=0.3)
    with s.folder("INBOX") as f:
        before = (root / "INBOX").read_bytes()
        lock = root / "INBOX.lock"
        lock.write_text(content.format(pid=os.getpid(), host=socket.gethostname()))
        start = time.monotonic()
        with pytest.raises(LockTimeout):
            f.append_bytes(make_message("blocked"))
        assert time.monotonic() - start >= 0.25
        assert lock.exists()
        assert (root / "INBOX").read_bytes() == before
        lock.unlink()
        assert f.append_bytes(make_message("now")).uid is not None
    s.close()


def test_fcntl_lock_of_another_process_is_respected(root: Path) -> None:
    s = MboxStore(root, fsync=False, lock_timeout=0.3)
    with s.folder("INBOX") as f:
        holder = subprocess.Popen(
            [sys.executable, "-c",
             "import fcntl, sys, time\n"
             "f = open(sys.argv[1], 'r+b')\n"
             "fcntl.lockf(f, fcntl.LOCK_EX)\n"
             "print('locked', flush=True)\n"
             "time.sleep(30)\n",
             str(root / "INBOX")],
            stdout=subprocess.PIPE,
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == b"locked\n"
            with pytest.raises(LockTimeout):
                f.append_bytes(make_message("blocked"))
        finally:
            holder.kill()
            holder.wait()
        assert f.append_bytes(make_message("now")).uid is not None
    s.close()


def test_python_mailbox_lock_and_ours_exclude_each_other(store: MboxStore, root: Path) -> None:
    with store.folder("INBOX"):
        pass
    ours = MboxLock(str(root / "INBOX"), timeout=1)
    ours.acquire()
    box = mailbox.mbox(str(root / "INBOX"))
    try:
        with pytest.raises(mailbox.ExternalClashError):
            box.lock()
    finally:
        ours.release()
    box.lock()
    try:
        blocked = MboxStore(root, fsync=False, lock_timeout=0.2)
        with blocked.folder("INBOX") as f, pytest.raises(LockTimeout):
            f.append_bytes(make_message("x"))
    except LockTimeout:
        pass  # opening the folder itself waited for the lock
    finally:
        box.unlock()
        box.close()


def test_file_replaced_while_waiting_is_reopened(store: MboxStore, root: Path) -> None:
    with store.folder("INBOX") as f:
        f.append_bytes(make_message("a"))
        lock = MboxLock(str(root / "INBOX"), timeout=1)
        fd = lock.acquire()
        before = os.fstat(fd).st_ino
        lock.release()
        f.set_flags([1], [DELETED], "add")
        f.expunge()  # renames a new file over the mbox
        fd = lock.acquire()
        try:
            assert os.fstat(fd).st_ino != before
            assert os.path.samestat(os.fstat(fd), os.stat(root / "INBOX"))
        finally:
            lock.release()


def _hammer(root: str, tag: int, count: int) -> None:
    s = MboxStore(root, fsync=False)
    with s.folder("INBOX") as f:
        for i in range(count):
            uid = f.append_bytes(b"Subject: p%d-%d\r\n\r\nbody\r\n" % (tag, i)).uid
            assert uid is not None
            f.set_flags([uid], [f"P{tag}"], "add")
    s.close()


def test_two_processes_append_and_flag_at_once(root: Path) -> None:
    import multiprocessing

    MboxStore(root, fsync=False).close()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_hammer, args=(str(root), tag, 150)) for tag in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    s = MboxStore(root, fsync=False)
    with s.folder("INBOX") as f:
        infos = f.messages()
        uids = [m.uid for m in infos]
        assert uids == sorted(set(uids)) and len(uids) == 300
        for m in infos:
            data = f.read_message(m.uid)
            tag = int(data[10:11])
            assert m.flags == {f"P{tag}"}
    # And the file alone agrees (the index rebuilt from it).
    os.unlink(root / ".INBOX.mailagents-index")
    with s.folder("INBOX") as f:
        assert len(f.messages()) == 300
    s.close()


# --- folders and names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", [".hidden", "a/.b", "x.sbd", "a/b.sbd", "x.lock", "a\tb", "a/../b", "..", "/a",
            "a//b", "x" * 201, "\udcff"],
)
def test_invalid_names(store: MboxStore, bad: str) -> None:
    with pytest.raises(InvalidFolderNameError):
        store.create_folder(bad)
    with pytest.raises((InvalidFolderNameError, FolderNotFoundError)):
        store.folder(bad)


def test_layout_and_side_files_are_not_folders(store: MboxStore, root: Path) -> None:
    store.create_folder("Archive/2026")
    store.create_folder("Entwürfe")
    store.subscribe("Archive")
    store.create_folder("Sent", special_use="\\Sent")
    for name in ("INBOX", "Archive/2026"):
        with store.folder(name) as f:
            f.append_bytes(make_message(name))
    (root / "notes.txt").write_text("not an mbox\n")
    assert (root / "Archive").is_file()
    assert (root / "Archive.sbd" / "2026").is_file()
    assert (root / "Entwürfe").is_file()
    assert (root / "Archive.sbd" / ".2026.mailagents-index").is_file()
    names = [i.name for i in store.folders()]
    assert names == ["INBOX", "Archive", "Archive/2026", "Entwürfe", "Sent"]
    for side in (".INBOX.mailagents-index", ".mailagents-subscriptions", "INBOX.lock"):
        with pytest.raises((InvalidFolderNameError, FolderNotFoundError)):
            store.folder(side)


def test_spool_inbox(tmp_path: Path) -> None:
    spool = tmp_path / "var-mail" / "user"
    spool.parent.mkdir()
    spool.write_bytes(MBOXO)
    s = MboxStore(tmp_path / "mail", inbox=spool, fsync=False)
    try:
        with s.folder("INBOX") as f:
            assert len(f.messages()) == 2
            f.append_bytes(make_message("delivered"))
        assert spool.read_bytes().startswith(MBOXO)
        assert (tmp_path / "mail" / ".INBOX.mailagents-index").is_file()
        assert not (tmp_path / "mail" / "INBOX").exists()
        s.create_folder("INBOX/Lists")
        assert (tmp_path / "mail" / "INBOX.sbd" / "Lists").is_file()
        s.rename_folder("INBOX", "Old")
        assert spool.read_bytes() == b""
        with s.folder("Old") as f:
            assert [m.uid for m in f.messages()] == [1, 2, 3]
    finally:
        s.close()


def test_unreadable_store_errors_surface_as_oserror(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores permissions")
    root = tmp_path / "mail"
    s = MboxStore(root, fsync=False)
    with s.folder("INBOX") as f:
        f.append_bytes(make_message("a"))
        os.chmod(root / "INBOX", 0o400)
        try:
            with pytest.raises(OSError):
                f.append_bytes(make_message("b"))
        finally:
            os.chmod(root / "INBOX", 0o600)
        assert contents(f) == [make_message("a")]
    s.close()



def test_journal_appended_behind_our_back_is_reread_whole(tmp_path: Path) -> None:
    # Regression: a writer whose read position lagged behind the index file (another
    # process had appended records since its last load) advanced the position by its
    # own records only, and the next load started in the middle of a record: the index
    # was declared corrupt and rebuilt with new UIDs (seen as a flaky concurrency test).
    from mailagents.store._mbox_index import IndexState, append_records, load

    s = MboxStore(tmp_path, fsync=False)
    with s.folder("INBOX") as f:
        f.append_bytes(b"Subject: one\r\n\r\nx\r\n")
    index = str(tmp_path / ".INBOX.mailagents-index")
    ours, theirs = IndexState(), IndexState()
    assert load(ours, index) and load(theirs, index)
    append_records(theirs, index, ["S 11 22 33 44\n"], False)  # the other process
    append_records(ours, index, ["S 5 6 7 8\n"], False)  # we had not seen it
    again = IndexState()
    assert load(again, index)
    assert load(ours, index)  # no IndexCorrupt: it starts from a record boundary
    assert ours.mbox_stat == again.mbox_stat == (5, 6, 7, 8)
    assert sorted(ours.msgs) == sorted(again.msgs)


@pytest.mark.parametrize("links", [True, False])
def test_renaming_inbox_never_replaces_a_folder_created_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, links: bool
) -> None:
    # Another process creates the target folder while INBOX is being copied: the copy
    # must fail with FolderExistsError and leave that folder as it is (it was replaced
    # by a rename after an exists() check).
    store = MboxStore(tmp_path)
    with store.folder("INBOX") as inbox:
        inbox.append_bytes(b"Subject: one\r\n\r\nbody\r\n")
    target = tmp_path / "Saved"
    real_write_full = _mbox_rewrite.write_full

    def write_full_then_race(*args: Any, **kwargs: Any) -> Any:
        result = real_write_full(*args, **kwargs)
        target.write_bytes(b"theirs")
        return result

    monkeypatch.setattr(_mbox_rewrite, "write_full", write_full_then_race)
    if not links:
        def no_links(src: Any, dst: Any) -> None:
            raise OSError(errno.EPERM, "no hard links here")

        monkeypatch.setattr(_mbox_rewrite.os, "link", no_links)
    with pytest.raises(FolderExistsError):
        store.rename_folder("INBOX", "Saved")
    assert target.read_bytes() == b"theirs"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".Saved")]  # no copy left
    monkeypatch.undo()
    with store.folder("INBOX") as inbox:
        assert len(inbox.messages()) == 1  # INBOX kept its message
    store.close()


def test_renaming_inbox_loses_no_race_at_the_last_instant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The target appears right when the copy is given its name (after any check): the
    # hard link fails rather than replace it, as a rename would have.
    store = MboxStore(tmp_path)
    with store.folder("INBOX") as inbox:
        inbox.append_bytes(b"Subject: one\r\n\r\nbody\r\n")
    target = tmp_path / "Saved"

    def racing(real: Any) -> Any:
        def call(src: Any, dst: Any) -> Any:
            if os.fspath(dst) == os.fspath(target) and not target.exists():
                target.write_bytes(b"theirs")
            return real(src, dst)

        return call

    monkeypatch.setattr(_mbox_rewrite.os, "link", racing(os.link))
    monkeypatch.setattr(_mbox_rewrite.os, "rename", racing(os.rename))
    with pytest.raises(FolderExistsError):
        store.rename_folder("INBOX", "Saved")
    monkeypatch.undo()
    assert target.read_bytes() == b"theirs"
    with store.folder("INBOX") as inbox:
        assert len(inbox.messages()) == 1
    store.close()
