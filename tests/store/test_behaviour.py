"""The behavioural suite of the mailbox model, run against every store format.

Each test takes the ``store`` fixture (tests/store/conftest.py), which is parametrised
over Maildir and mbox: the two formats must behave the same through the model.

A folder handle sees a snapshot; tests call ``refresh()`` before looking at what a
handle lists, unless the point of the test is the snapshot itself.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import itertools
import os
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailagents.store import (
    ANSWERED,
    DELETED,
    DRAFT,
    FLAGGED,
    SEEN,
    AppendResult,
    Folder,
    FolderExistsError,
    FolderInfo,
    FolderNotFoundError,
    InvalidFolderNameError,
    MessageInfo,
    MessageNotFoundError,
    Store,
    StoreError,
)
from tests.store.conftest import (
    chunks,
    make_message,
    open_store,
    reopen,
    store_kind,
    store_root,
    to_lf,
)

UTC = datetime.UTC


# --- helpers -------------------------------------------------------------------------


def listing(folder: Folder) -> list[MessageInfo]:
    folder.refresh()
    return folder.messages()


def uids_of(folder: Folder) -> list[int]:
    return [m.uid for m in listing(folder)]


def add(folder: Folder, data: bytes, **kwargs: object) -> int:
    """Append, bring the handle's snapshot up to date, and return the UID."""
    result = folder.append_bytes(data, **kwargs)  # type: ignore[arg-type]
    assert result.uid is not None
    folder.refresh()
    return result.uid


def folder_map(store: Store) -> dict[str, FolderInfo]:
    return {info.name: info for info in store.folders()}


def message_files_state(store: Store) -> object:
    """What lies on disk that could be a message: Maildir's tmp/new/cur files, mbox
    files (files that start with ``From ``), each with its size."""
    root = store_root(store)
    state = {}
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if store_kind(store) == "maildir":
            if path.parent.name in ("tmp", "new", "cur"):
                state[str(path)] = path.stat().st_size
        else:
            with open(path, "rb") as fh:
                head = fh.read(5)
            if head == b"From " or path.stat().st_size == 0:
                state[str(path)] = path.stat().st_size
    return state


def all_files(store: Store) -> dict[str, int]:
    """Every file under the store's root, with its size."""
    root = store_root(store)
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def stray_tmp_files(store: Store) -> list[Path]:
    root = store_root(store)
    return [p for p in root.rglob("*") if p.is_file() and p.parent.name == "tmp"]


# --- INBOX and a fresh store ---------------------------------------------------------


def test_inbox_always_exists(store: Store) -> None:
    infos = store.folders()
    assert infos[0].name == "INBOX"
    assert [i.name for i in infos].count("INBOX") == 1
    for spelling in ("INBOX", "inbox", "Inbox", "iNbOx"):
        with store.folder(spelling) as f:
            assert f.name == "INBOX"
            assert f.messages() == []


def test_fresh_inbox_status(store: Store) -> None:
    with store.folder("INBOX") as f:
        st = f.status()
    assert st.messages == 0
    assert st.unseen == 0
    assert 0 < st.uidvalidity < 2**32
    assert 1 <= st.uidnext < 2**32
    assert st.highestmodseq >= 0


def test_create_inbox_in_any_case_exists(store: Store) -> None:
    for spelling in ("INBOX", "inbox", "InBox"):
        with pytest.raises(FolderExistsError):
            store.create_folder(spelling)


def test_unknown_folder(store: Store) -> None:
    with pytest.raises(FolderNotFoundError):
        store.folder("Nope")
    with pytest.raises(FolderNotFoundError):
        store.delete_folder("Nope")
    with pytest.raises(FolderNotFoundError):
        store.rename_folder("Nope", "Other")


def test_root_is_created(kind: str, tmp_path: Path) -> None:
    root = tmp_path / "deep" / "user"
    s = open_store(kind, root)
    try:
        assert root.exists()
        with s.folder("INBOX") as f:
            add(f, make_message())
    finally:
        s.close()


def test_create_false_on_missing_root_raises(kind: str, tmp_path: Path) -> None:
    root = tmp_path / "missing"
    with pytest.raises((OSError, StoreError)):
        s = open_store(kind, root, create=False)
        s.close()
    assert not root.exists()


def test_create_false_on_existing_store(kind: str, root: Path) -> None:
    s = open_store(kind, root)
    with s.folder("INBOX") as f:
        uid = add(f, make_message("kept"))
    s.close()
    s = open_store(kind, root, create=False)
    try:
        with s.folder("INBOX") as f:
            assert uids_of(f) == [uid]
    finally:
        s.close()


# --- append and read -----------------------------------------------------------------


def test_append_streamed_in_chunks_crlf(store: Store) -> None:
    data = make_message("chunks", size=5000)
    with store.folder("INBOX") as f:
        writer = f.append()
        # Pieces of awkward sizes, so that some CRLF pairs are split between writes.
        for piece in chunks(data, 1, 2, 7, 13, 100, 999):
            writer.write(piece)
        result = writer.commit()
        f.refresh()
        assert isinstance(result, AppendResult)
        assert result.uid is not None
        assert result.size == len(data)
        assert result.uidvalidity == f.status().uidvalidity
        assert f.read_message(result.uid) == data
        assert f.info(result.uid).size == len(data)


def test_append_split_exactly_between_cr_and_lf(store: Store) -> None:
    data = b"Subject: split\r\n\r\nline one\r\nline two\r\n"
    cut = data.index(b"\r\n") + 1
    with store.folder("INBOX") as f:
        w = f.append()
        w.write(data[:cut])
        w.write(data[cut:])
        uid = w.commit().uid
        f.refresh()
        assert uid is not None
        assert f.read_message(uid) == data


def test_append_one_byte_at_a_time(store: Store) -> None:
    data = make_message("bytes", b"short\r\n")
    with store.folder("INBOX") as f:
        w = f.append()
        for i in range(len(data)):
            w.write(data[i : i + 1])
        uid = w.commit().uid
        f.refresh()
        assert uid is not None
        assert f.read_message(uid) == data
        assert f.info(uid).size == len(data)


def test_append_empty_writes_are_harmless(store: Store) -> None:
    data = make_message("empty writes")
    with store.folder("INBOX") as f:
        w = f.append()
        w.write(b"")
        w.write(data[:10])
        w.write(b"")
        w.write(data[10:])
        w.write(b"")
        uid = w.commit().uid
        f.refresh()
        assert uid is not None
        assert f.read_message(uid) == data


def test_append_lf_reads_back_crlf(store: Store) -> None:
    data = make_message("lf", size=3000)
    lf = to_lf(data)
    assert b"\r" not in lf
    with store.folder("INBOX") as f:
        w = f.append()
        for piece in chunks(lf, 17, 250):
            w.write(piece)
        result = w.commit()
        f.refresh()
        assert result.uid is not None
        assert result.size == len(data)  # the CRLF size
        assert f.read_message(result.uid) == data
        assert f.info(result.uid).size == len(data)


def test_size_equals_crlf_length(store: Store) -> None:
    messages = [make_message(f"m{i}", size=600 + 37 * i) for i in range(5)]
    with store.folder("INBOX") as f:
        for m in messages:
            add(f, m)
        for info in listing(f):
            assert info.size == len(f.read_message(info.uid))
        assert sorted(i.size for i in listing(f)) == sorted(len(m) for m in messages)


def test_read_message_survives_reopen(store: Store) -> None:
    data = make_message("persist", size=2048)
    with store.folder("INBOX") as f:
        uid = add(f, data)
    store = reopen(store)
    with store.folder("INBOX") as f:
        assert f.read_message(uid) == data
        assert f.info(uid).size == len(data)


def test_open_message_read_in_small_pieces(store: Store) -> None:
    data = make_message("pieces", size=10_000)
    with store.folder("INBOX") as f:
        uid = add(f, data)
        for n in (1, 2, 3, 7, 64, 4096):
            parts = []
            with f.open_message(uid) as stream:
                while True:
                    piece = stream.read(n)
                    if not piece:
                        break
                    assert len(piece) <= n
                    parts.append(piece)
                assert stream.read(n) == b""
            assert b"".join(parts) == data == f.read_message(uid)


def test_open_message_of_several_messages_is_independent(store: Store) -> None:
    a, b = make_message("a", size=1000), make_message("b", size=1500)
    with store.folder("INBOX") as f:
        ua, ub = add(f, a), add(f, b)
        with f.open_message(ua) as sa, f.open_message(ub) as sb:
            out_a, out_b = [], []
            while True:
                pa, pb = sa.read(100), sb.read(100)
                if not pa and not pb:
                    break
                out_a.append(pa)
                out_b.append(pb)
        assert b"".join(out_a) == a
        assert b"".join(out_b) == b


def test_uids_strictly_ascending(store: Store) -> None:
    with store.folder("INBOX") as f:
        got = [add(f, make_message(f"n{i}")) for i in range(8)]
        assert got == sorted(got)
        assert len(set(got)) == len(got)
        listed = uids_of(f)
        assert listed == got
        assert f.status().uidnext > got[-1]
        assert f.status().messages == 8


def test_messages_and_info_agree(store: Store) -> None:
    with store.folder("INBOX") as f:
        for i in range(3):
            add(f, make_message(f"n{i}"), flags=[SEEN] if i else [])
        for m in listing(f):
            assert f.info(m.uid) == m
            assert m.internaldate.tzinfo is not None


def test_uid_never_reused_after_expunge_across_reopen(store: Store) -> None:
    with store.folder("INBOX") as f:
        u = [add(f, make_message(f"n{i}")) for i in range(3)]
        f.set_flags([u[2]], [DELETED], "add")
        assert sorted(f.expunge()) == [u[2]]
        st = f.status()
        assert st.uidnext > u[2]
    store = reopen(store)
    with store.folder("INBOX") as f:
        st2 = f.status()
        assert st2.uidvalidity == st.uidvalidity
        assert st2.uidnext == st.uidnext
        new = add(f, make_message("after"))
        assert new > u[2]
        assert uids_of(f) == [u[0], u[1], new]


def test_uid_never_reused_after_emptying_the_folder(store: Store) -> None:
    with store.folder("INBOX") as f:
        u = [add(f, make_message(f"n{i}")) for i in range(2)]
        f.set_flags(u, [DELETED], "add")
        assert sorted(f.expunge()) == u
        assert uids_of(f) == []
        uidvalidity = f.status().uidvalidity
    store = reopen(store)
    with store.folder("INBOX") as f:
        assert f.status().uidvalidity == uidvalidity
        assert f.status().uidnext > u[-1]
        assert add(f, make_message("again")) > u[-1]


def test_uidvalidity_and_uidnext_stable_across_reopen(store: Store) -> None:
    store.create_folder("Work")
    before = {}
    for name in ("INBOX", "Work"):
        with store.folder(name) as f:
            for i in range(3):
                add(f, make_message(f"{name}{i}"))
            f.refresh()
            before[name] = f.status()
    store = reopen(store)
    for name in ("INBOX", "Work"):
        with store.folder(name) as f:
            st = f.status()
            assert st.uidvalidity == before[name].uidvalidity
            assert st.uidnext == before[name].uidnext
            assert st.messages == 3
            assert st.highestmodseq >= before[name].highestmodseq


def test_assign_uid_false_then_refresh_assigns(store: Store) -> None:
    data = make_message("fast path", size=1200)
    with store.folder("INBOX") as f:
        first = add(f, make_message("first"))
        result = f.append_bytes(data, assign_uid=False, flags=[FLAGGED])
        assert result.uid is None
        assert result.size == len(data)
        assert result.uidvalidity == f.status().uidvalidity
        infos = listing(f)
        assert infos[0].uid == first
        assert len(infos) == 2
        new = infos[1]
        assert new.uid > first
        assert new.size == len(data)
        assert FLAGGED in new.flags
        assert f.read_message(new.uid) == data
        # Assigned for good: the same UID after a reopen, and the next one is higher.
    store = reopen(store)
    with store.folder("INBOX") as f:
        assert uids_of(f) == [first, new.uid]
        assert add(f, make_message("later")) > new.uid


def test_assign_uid_false_seen_by_another_handle(store: Store) -> None:
    with store.folder("INBOX") as writer, store.folder("INBOX") as reader:
        writer.append_bytes(make_message("x"), assign_uid=False)
        writer.append_bytes(make_message("y"), assign_uid=False)
        changes = reader.refresh()
        added = [m.uid for m in changes.added]
        assert len(added) == 2 and added[0] < added[1]
        assert uids_of(writer) == added


def test_unseen_count(store: Store) -> None:
    with store.folder("INBOX") as f:
        a = add(f, make_message("a"))
        add(f, make_message("b"), flags=[SEEN])
        add(f, make_message("c"))
        f.refresh()
        assert f.status().unseen == 2
        f.set_flags([a], [SEEN], "add")
        f.refresh()
        assert f.status().unseen == 1
        assert f.status().messages == 3


def test_folders_have_independent_uids(store: Store) -> None:
    store.create_folder("Other")
    with store.folder("INBOX") as inbox, store.folder("Other") as other:
        add(inbox, make_message("i1"))
        add(inbox, make_message("i2"))
        o1 = add(other, make_message("o1"))
        assert len(uids_of(other)) == 1
        assert other.read_message(o1) == make_message("o1")


# --- flags ---------------------------------------------------------------------------


def test_flags_at_append(store: Store) -> None:
    with store.folder("INBOX") as f:
        uid = add(f, make_message(), flags=[SEEN, ANSWERED, "$Forwarded", "Work"])
        assert f.info(uid).flags == {SEEN, ANSWERED, "$Forwarded", "Work"}
    store = reopen(store)
    with store.folder("INBOX") as f:
        assert f.info(uid).flags == {SEEN, ANSWERED, "$Forwarded", "Work"}


def test_system_flags_are_canonicalised(store: Store) -> None:
    with store.folder("INBOX") as f:
        uid = add(f, make_message(), flags=["\\seen", "\\FLAGGED"])
        assert f.info(uid).flags == {SEEN, FLAGGED}
        changed, _ = f.set_flags([uid], ["\\draft"], "add")
        assert changed[0].flags == {SEEN, FLAGGED, DRAFT}


def test_set_add_remove_flags(store: Store) -> None:
    with store.folder("INBOX") as f:
        a = add(f, make_message("a"))
        b = add(f, make_message("b"), flags=[SEEN])

        changed, skipped = f.set_flags([a, b], [FLAGGED, "Important"], "add")
        assert skipped == []
        assert {m.uid: m.flags for m in changed} == {
            a: {FLAGGED, "Important"},
            b: {SEEN, FLAGGED, "Important"},
        }
        changed, _ = f.set_flags([b], [SEEN, "Important"], "remove")
        assert [m.flags for m in changed] == [{FLAGGED}]
        changed, _ = f.set_flags([a], [DELETED, DRAFT, "$Junk"], "set")
        assert [m.flags for m in changed] == [{DELETED, DRAFT, "$Junk"}]
        changed, _ = f.set_flags([a], [], "set")
        assert [m.flags for m in changed] == [frozenset()]
        f.refresh()
        assert f.info(a).flags == frozenset()
        assert f.info(b).flags == {FLAGGED}


def test_all_system_flags_and_many_keywords_persist(store: Store) -> None:
    keywords = [f"kw{i:02d}" for i in range(30)] + ["$Forwarded", "$MDNSent", "CaseKept"]
    wanted = {SEEN, ANSWERED, FLAGGED, DELETED, DRAFT, *keywords}
    with store.folder("INBOX") as f:
        uid = add(f, make_message())
        f.set_flags([uid], sorted(wanted), "set")
        other = add(f, make_message("other"), flags=["kw05", "CaseKept"])
    store = reopen(store)
    with store.folder("INBOX") as f:
        assert f.info(uid).flags == wanted
        assert f.info(other).flags == {"kw05", "CaseKept"}
        changed, _ = f.set_flags([uid], ["kw00", DELETED], "remove")
        assert changed[0].flags == wanted - {"kw00", DELETED}
    store = reopen(store)
    with store.folder("INBOX") as f:
        assert f.info(uid).flags == wanted - {"kw00", DELETED}


def test_flags_changes_do_not_change_the_bytes(store: Store) -> None:
    data = make_message("flags and bytes", size=2000)
    with store.folder("INBOX") as f:
        uid = add(f, data)
        size = f.info(uid).size
        for flags in ([SEEN], [SEEN, ANSWERED, "$Label1"], []):
            f.set_flags([uid], flags, "set")
            f.refresh()
            assert f.read_message(uid) == data
            assert f.info(uid).size == size == len(data)


@pytest.mark.parametrize("bad", ["two words", "a(b", "a]b", "\\Custom", "", "a\x00"])
def test_bad_keywords_are_rejected(store: Store, bad: str) -> None:
    with store.folder("INBOX") as f:
        uid = add(f, make_message())
        with pytest.raises(ValueError):
            f.set_flags([uid], [bad], "add")
        assert f.info(uid).flags == frozenset()
        with pytest.raises(ValueError):
            f.append_bytes(make_message("bad flags"), flags=[bad])
        assert uids_of(f) == [uid]


def test_set_flags_ignores_unknown_uids(store: Store) -> None:
    with store.folder("INBOX") as f:
        uid = add(f, make_message())
        changed, skipped = f.set_flags([uid + 100], [SEEN], "add")
        assert changed == [] and skipped == []
        changed, skipped = f.set_flags([uid, uid + 100], [SEEN], "add")
        assert [m.uid for m in changed] == [uid] and skipped == []


def test_flag_changes_through_stale_handles_are_not_lost(store: Store) -> None:
    # Two sessions, each with a snapshot that does not know the other's last change:
    # "add" and "remove" apply to the message as it is now, not as the snapshot says.
    with store.folder("INBOX") as f1, store.folder("INBOX") as f2:
        uid = add(f1, make_message())
        f2.refresh()
        f1.set_flags([uid], ["A"], "add")
        changed, _ = f2.set_flags([uid], ["B"], "add")
        assert changed[0].flags == {"A", "B"}
        f1.set_flags([uid], ["C"], "add")
        changed, _ = f2.set_flags([uid], ["A"], "remove")
        assert changed[0].flags == {"B", "C"}
        f1.refresh()
        assert f1.info(uid).flags == {"B", "C"}


def test_write_after_commit_is_refused(store: Store) -> None:
    data = make_message("done")
    with store.folder("INBOX") as f:
        w = f.append()
        w.write(data)
        uid = w.commit().uid
        with pytest.raises((StoreError, ValueError, RuntimeError)):
            w.write(b"more\r\n")
        f.refresh()
        assert uid is not None
        assert f.read_message(uid) == data


# --- MODSEQ (RFC 7162) ---------------------------------------------------------------


def test_modseq_increases_on_every_change(store: Store) -> None:
    with store.folder("INBOX") as f:
        start = f.status().highestmodseq
        a = add(f, make_message("a"))
        f.refresh()
        ma = f.info(a).modseq
        assert ma > start
        assert f.status().highestmodseq == ma
        b = add(f, make_message("b"))
        f.refresh()
        mb = f.info(b).modseq
        assert mb > ma
        assert f.status().highestmodseq == mb

        changed, _ = f.set_flags([a], [SEEN], "add")
        ma2 = changed[0].modseq
        assert ma2 > mb
        f.refresh()
        assert f.info(a).modseq == ma2
        assert f.info(b).modseq == mb  # untouched
        assert f.status().highestmodseq == ma2

        changed, _ = f.set_flags([a, b], ["Tag"], "add")
        mods = {m.uid: m.modseq for m in changed}
        assert mods[a] > ma2 and mods[b] > ma2
        f.refresh()
        assert f.status().highestmodseq == max(m.modseq for m in f.messages())

        f.set_flags([b], [DELETED], "add")
        f.refresh()
        before_expunge = f.status().highestmodseq
        f.expunge()
        f.refresh()
        assert f.status().highestmodseq >= before_expunge
        assert f.status().highestmodseq >= max(m.modseq for m in f.messages())


def test_modseq_survives_reopen(store: Store) -> None:
    with store.folder("INBOX") as f:
        a = add(f, make_message("a"))
        add(f, make_message("b"))
        f.set_flags([a], [FLAGGED], "add")
        f.refresh()
        before = {m.uid: m.modseq for m in f.messages()}
        highest = f.status().highestmodseq
    store = reopen(store)
    with store.folder("INBOX") as f:
        after = {m.uid: m.modseq for m in listing(f)}
        assert f.status().highestmodseq >= highest
        assert all(after[u] >= before[u] for u in before)
        # Nothing changed, so nothing is reported as changed since the old point.
        assert f.changes_since(highest).empty
        # And the next change is above everything seen before.
        changed, _ = f.set_flags([a], [SEEN], "add")
        assert changed[0].modseq > highest


def test_unchanged_since_refuses_modified_messages(store: Store) -> None:
    with store.folder("INBOX") as f:
        a = add(f, make_message("a"))
        b = add(f, make_message("b"))
        f.refresh()
        point = f.status().highestmodseq
        f.set_flags([a], [FLAGGED], "add")  # a is now modified after `point`

        changed, refused = f.set_flags([a, b], [SEEN], "add", unchanged_since=point)
        assert list(refused) == [a]
        assert [m.uid for m in changed] == [b]
        assert SEEN in changed[0].flags
        f.refresh()
        assert f.info(a).flags == {FLAGGED}
        assert f.info(b).flags == {SEEN}

        # With the current MODSEQ both qualify.
        now = f.status().highestmodseq
        changed, refused = f.set_flags([a, b], ["Done"], "add", unchanged_since=now)
        assert list(refused) == []
        assert sorted(m.uid for m in changed) == [a, b]


def test_unchanged_since_seen_through_another_handle(store: Store) -> None:
    with store.folder("INBOX") as f1, store.folder("INBOX") as f2:
        a = add(f1, make_message("a"))
        f2.refresh()
        point = f2.info(a).modseq
        f1.set_flags([a], [ANSWERED], "add")
        # f2's snapshot is stale, but the conditional store must use the truth.
        changed, refused = f2.set_flags([a], [SEEN], "add", unchanged_since=point)
        assert list(changed) == [] and list(refused) == [a]
        f1.refresh()
        assert f1.info(a).flags == {ANSWERED}


def test_changes_since(store: Store) -> None:
    with store.folder("INBOX") as f:
        a = add(f, make_message("a"))
        b = add(f, make_message("b"))
        untouched = add(f, make_message("u"))
        f.refresh()
        point = f.status().highestmodseq
        uidvalidity = f.status().uidvalidity

        c = add(f, make_message("c"))
        f.set_flags([a], [SEEN], "add")
        f.set_flags([b], [DELETED], "add")
        assert sorted(f.expunge()) == [b]
        f.refresh()

        ch = f.changes_since(point)
        assert ch.uidvalidity == uidvalidity
        assert ch.highestmodseq == f.status().highestmodseq
        assert [m.uid for m in ch.added] == [c]
        assert [m.uid for m in ch.changed] == [a]
        assert SEEN in ch.changed[0].flags
        assert b in ch.expunged
        assert untouched not in ch.expunged
        assert f.changes_since(f.status().highestmodseq).empty
        # From the very beginning everything is new.
        everything = f.changes_since(0)
        assert sorted(m.uid for m in everything.added + everything.changed) == [a, untouched, c]


def test_changes_since_reports_a_new_and_flagged_message_as_added(store: Store) -> None:
    with store.folder("INBOX") as f:
        add(f, make_message("old"))
        point = f.status().highestmodseq
        new = add(f, make_message("new"))
        f.set_flags([new], [SEEN], "add")
        f.refresh()
        ch = f.changes_since(point)
        assert [m.uid for m in ch.added] == [new]
        assert SEEN in ch.added[0].flags
        assert not ch.changed


# --- refresh through other handles -----------------------------------------------------


def _check_refresh_between(f1: Folder, f2: Folder) -> None:
    assert f2.refresh().empty
    u1 = add(f1, make_message("one"))
    u2 = add(f1, make_message("two"))
    # f2 keeps its snapshot until it refreshes.
    assert f2.messages() == []
    assert f2.status().messages == 0
    ch = f2.refresh()
    assert [m.uid for m in ch.added] == [u1, u2]
    assert not ch.changed and not ch.expunged
    assert [m.uid for m in f2.messages()] == [u1, u2]
    assert f2.read_message(u2) == make_message("two")
    assert f2.refresh().empty

    f1.set_flags([u1], [SEEN, "Label"], "add")
    ch = f2.refresh()
    assert [(m.uid, m.flags) for m in ch.changed] == [(u1, {SEEN, "Label"})]
    assert not ch.added and not ch.expunged
    assert f2.info(u1).flags == {SEEN, "Label"}

    f1.set_flags([u2], [DELETED], "add")
    f1.expunge()
    ch = f2.refresh()
    assert list(ch.expunged) == [u2]
    assert not ch.added
    assert [m.uid for m in f2.messages()] == [u1]
    with pytest.raises(MessageNotFoundError):
        f2.info(u2)
    assert f2.refresh().empty


def test_refresh_sees_changes_of_another_handle(store: Store) -> None:
    with store.folder("INBOX") as f1, store.folder("INBOX") as f2:
        _check_refresh_between(f1, f2)


def test_refresh_sees_changes_of_another_store_object(kind: str, root: Path) -> None:
    # Another store object on the same files stands for another process.
    s1 = open_store(kind, root)
    s2 = open_store(kind, root)
    try:
        s1.create_folder("Shared")
        with s1.folder("Shared") as f1, s2.folder("Shared") as f2:
            _check_refresh_between(f1, f2)
    finally:
        s1.close()
        s2.close()


def test_other_store_sees_new_folders(kind: str, root: Path) -> None:
    s1 = open_store(kind, root)
    s2 = open_store(kind, root)
    try:
        s1.create_folder("Fresh")
        assert "Fresh" in folder_map(s2)
        with s2.folder("Fresh") as f:
            add(f, make_message())
        with s1.folder("Fresh") as f:
            assert len(uids_of(f)) == 1
    finally:
        s1.close()
        s2.close()


def test_stream_survives_changes_by_another_handle(store: Store) -> None:
    # mbox rewrites the file when flags change or messages are expunged, moving every
    # message after the change: a stream opened before must still give its message.
    datas = [make_message(f"s{i}", size=30_000 + i) for i in range(3)]
    with store.folder("INBOX") as reader, store.folder("INBOX") as writer:
        u = [add(writer, d) for d in datas]
        reader.refresh()
        with reader.open_message(u[2]) as stream:
            first = stream.read(1000)
            writer.set_flags([u[0]], [SEEN, ANSWERED, "$Forwarded", "SomeKeyword"], "add")
            middle = stream.read(10_000)
            writer.set_flags([u[1]], [DELETED], "add")
            writer.expunge()
            rest = stream.read()
        assert first + middle + rest == datas[2]


def test_stale_snapshot_still_reads_the_right_bytes(store: Store) -> None:
    datas = [make_message(f"s{i}", size=3000 + 100 * i) for i in range(4)]
    with store.folder("INBOX") as stale, store.folder("INBOX") as writer:
        u = [add(writer, d) for d in datas]
        stale.refresh()
        writer.set_flags([u[0]], [SEEN, FLAGGED, "Longer-Keyword-Here"], "add")
        writer.set_flags([u[1]], [DELETED], "add")
        writer.expunge([u[1]])
        # `stale` has not refreshed: what it can still read must be the right message.
        for i in (0, 2, 3):
            assert stale.read_message(u[i]) == datas[i]
        stale.refresh()
        assert [m.uid for m in stale.messages()] == [u[0], u[2], u[3]]
        for i in (0, 2, 3):
            assert stale.read_message(u[i]) == datas[i]


# --- copy and move (UIDPLUS) -----------------------------------------------------------

WHEN = datetime.datetime(2024, 2, 29, 23, 59, 58, tzinfo=datetime.timezone(
    datetime.timedelta(hours=2)))


def _fill_source(f: Folder) -> dict[int, tuple[bytes, frozenset[str]]]:
    contents = {}
    for i, flags in enumerate([[SEEN], [FLAGGED, "Keep"], [], [ANSWERED, DRAFT, "$X"]]):
        data = make_message(f"src{i}", size=900 + i)
        when = WHEN - datetime.timedelta(days=i)
        uid = add(f, data, flags=flags, internaldate=when)
        contents[uid] = (data, frozenset(flags))
    return contents


def test_copy_keeps_flags_and_internaldate(store: Store) -> None:
    store.create_folder("Target")
    with store.folder("INBOX") as src, store.folder("Target") as dst:
        pre = add(dst, make_message("already there"))
        contents = _fill_source(src)
        src.refresh()
        src_infos = {m.uid: m for m in src.messages()}
        chosen = sorted(contents)[1:]
        mapping = src.copy(chosen, dst)
        assert sorted(mapping) == chosen
        new_uids = [mapping[u] for u in chosen]
        assert new_uids == sorted(new_uids)  # ascending in source order
        assert min(new_uids) > pre
        dst_infos = {m.uid: m for m in listing(dst)}
        assert sorted(dst_infos) == [pre, *new_uids]
        for old, new in mapping.items():
            data, flags = contents[old]
            assert dst.read_message(new) == data
            assert dst_infos[new].flags == flags
            assert dst_infos[new].size == len(data)
            assert _same_second(dst_infos[new].internaldate, src_infos[old].internaldate)
        # The source is untouched.
        assert uids_of(src) == sorted(contents)
        assert {m.uid: m.flags for m in listing(src)} == {u: c[1] for u, c in contents.items()}
        assert dst.status().uidnext > max(new_uids)


def test_copy_ignores_unknown_uids(store: Store) -> None:
    store.create_folder("T")
    with store.folder("INBOX") as src, store.folder("T") as dst:
        u = add(src, make_message())
        mapping = src.copy([u, u + 50], dst)
        assert list(mapping) == [u]
        assert len(uids_of(dst)) == 1


def test_move_removes_from_source(store: Store) -> None:
    store.create_folder("Archive")
    with store.folder("INBOX") as src, store.folder("Archive") as dst, \
            store.folder("INBOX") as watcher:
        contents = _fill_source(src)
        watcher.refresh()
        src.refresh()
        src_infos = {m.uid: m for m in src.messages()}
        moved = sorted(contents)[:2]
        mapping = src.move(moved, dst)
        assert sorted(mapping) == moved
        assert uids_of(src) == sorted(contents)[2:]
        dst_infos = {m.uid: m for m in listing(dst)}
        assert sorted(dst_infos) == sorted(mapping.values())
        for old, new in mapping.items():
            assert dst.read_message(new) == contents[old][0]
            assert dst_infos[new].flags == contents[old][1]
            assert _same_second(dst_infos[new].internaldate, src_infos[old].internaldate)
        # Another session on the source is told that they are gone.
        assert sorted(watcher.refresh().expunged) == moved
        for old in moved:
            with pytest.raises(MessageNotFoundError):
                src.info(old)


def test_copy_and_move_between_non_inbox_folders_survive_reopen(store: Store) -> None:
    store.create_folder("A")
    store.create_folder("B/C")
    with store.folder("A") as a, store.folder("B/C") as bc:
        contents = _fill_source(a)
        moved = a.move(sorted(contents)[:1], bc)
        copied = a.copy(sorted(contents)[1:], bc)
    store = reopen(store)
    with store.folder("B/C") as bc:
        got = {m.uid: m for m in listing(bc)}
        for old, new in {**moved, **copied}.items():
            assert bc.read_message(new) == contents[old][0]
            assert got[new].flags == contents[old][1]
    with store.folder("A") as a:
        assert uids_of(a) == sorted(contents)[1:]


# --- expunge -------------------------------------------------------------------------


def test_expunge_only_deleted(store: Store) -> None:
    with store.folder("INBOX") as f:
        u = [add(f, make_message(f"e{i}")) for i in range(5)]
        f.set_flags([u[1], u[3]], [DELETED], "add")
        f.set_flags([u[0]], [SEEN, FLAGGED], "add")
        assert sorted(f.expunge()) == [u[1], u[3]]
        assert uids_of(f) == [u[0], u[2], u[4]]
        assert list(f.expunge()) == []
        for uid in (u[0], u[2], u[4]):
            assert f.read_message(uid) == make_message(f"e{u.index(uid)}")


def test_uid_expunge_only_the_given_uids(store: Store) -> None:
    with store.folder("INBOX") as f:
        u = [add(f, make_message(f"e{i}")) for i in range(4)]
        f.set_flags([u[0], u[1], u[2]], [DELETED], "add")
        # u[3] is given but not \Deleted; u[2] is \Deleted but not given.
        assert sorted(f.expunge([u[1], u[3]])) == [u[1]]
        assert uids_of(f) == [u[0], u[2], u[3]]
        assert sorted(f.expunge([])) == []
        assert uids_of(f) == [u[0], u[2], u[3]]
        assert sorted(f.expunge()) == [u[0], u[2]]
        assert uids_of(f) == [u[3]]


def test_expunged_message_not_found(store: Store) -> None:
    with store.folder("INBOX") as f:
        uid = add(f, make_message())
        f.set_flags([uid], [DELETED], "add")
        f.expunge()
        f.refresh()
        with pytest.raises(MessageNotFoundError):
            f.info(uid)
        with pytest.raises(MessageNotFoundError):
            f.read_message(uid)
        with pytest.raises(MessageNotFoundError):
            f.open_message(uid)


def test_message_not_found(store: Store) -> None:
    with store.folder("INBOX") as f:
        for call in (f.info, f.open_message, f.read_message):
            with pytest.raises(MessageNotFoundError):
                call(1)
            with pytest.raises(KeyError):  # MessageNotFoundError is a KeyError too
                call(12345)


def test_expunge_keeps_remaining_bytes_intact(store: Store) -> None:
    # mbox rewrites the file on expunge: everything else must survive byte for byte.
    datas = [make_message(f"k{i}", size=700 + 111 * i) for i in range(6)]
    with store.folder("INBOX") as f:
        u = [add(f, d, flags=["K"] if i % 2 else []) for i, d in enumerate(datas)]
        f.set_flags(u[::2], [DELETED], "add")
        f.expunge()
    store = reopen(store)
    with store.folder("INBOX") as f:
        assert uids_of(f) == u[1::2]
        for uid in u[1::2]:
            assert f.read_message(uid) == datas[u.index(uid)]
            assert f.info(uid).flags == {"K"}


# --- folders -------------------------------------------------------------------------


def test_folders_listing_and_attributes(store: Store) -> None:
    store.create_folder("Work")
    store.create_folder("Work/Projects")
    store.create_folder("Alpha")
    infos = store.folders()
    names = [i.name for i in infos]
    assert names[0] == "INBOX"
    assert names[1:] == sorted(names[1:])
    assert set(names) == {"INBOX", "Work", "Work/Projects", "Alpha"}
    by = folder_map(store)
    assert "\\HasChildren" in by["Work"].attributes
    assert "\\HasNoChildren" not in by["Work"].attributes
    assert "\\HasNoChildren" in by["Work/Projects"].attributes
    assert "\\HasNoChildren" in by["Alpha"].attributes
    assert "\\HasNoChildren" in by["INBOX"].attributes
    for info in infos:
        assert "\\Noselect" not in info.attributes
    store = reopen(store)
    assert set(folder_map(store)) == {"INBOX", "Work", "Work/Projects", "Alpha"}


def test_create_folder_with_missing_parents(store: Store) -> None:
    store.create_folder("a/b/c")
    by = folder_map(store)
    assert {"a", "a/b", "a/b/c"} <= set(by)
    assert "\\HasChildren" in by["a"].attributes
    assert "\\HasChildren" in by["a/b"].attributes
    assert "\\HasNoChildren" in by["a/b/c"].attributes
    with store.folder("a/b/c") as f:
        add(f, make_message())


def test_create_existing_folder(store: Store) -> None:
    store.create_folder("Dup")
    with pytest.raises(FolderExistsError):
        store.create_folder("Dup")


def test_create_inbox_child(store: Store) -> None:
    store.create_folder("INBOX/Lists")
    by = folder_map(store)
    assert "INBOX/Lists" in by
    assert "\\HasChildren" in by["INBOX"].attributes
    with store.folder("INBOX/Lists") as f:
        uid = add(f, make_message("list"))
    with store.folder("INBOX") as f:
        assert uids_of(f) == []
    store = reopen(store)
    with store.folder("INBOX/Lists") as f:
        assert uids_of(f) == [uid]


@pytest.mark.parametrize(
    "name", ["Entwürfe", "日本語", "a&b", "&-", "My Folder", "Mail+Box", "~tilde", "a,b"]
)
def test_unusual_folder_names_round_trip(store: Store, name: str) -> None:
    store.create_folder(name)
    assert name in folder_map(store)
    store.subscribe(name)
    with store.folder(name) as f:
        assert f.name == name
        uid = add(f, make_message(name))
    store = reopen(store)
    assert name in folder_map(store)
    assert folder_map(store)[name].subscribed
    assert name in store.subscriptions()
    with store.folder(name) as f:
        assert f.read_message(uid) == make_message(name)


def test_dot_in_name_is_not_a_level(store: Store) -> None:
    # Maildir++ uses "." on disk as its separator: "a.b" must never become "a/b". A
    # store may refuse the name instead (Maildir does, as Dovecot's layout cannot hold it).
    store.create_folder("a/b")
    try:
        store.create_folder("a.b")
    except InvalidFolderNameError:
        assert "a.b" not in folder_map(store)
        with store.folder("a/b") as f:
            assert uids_of(f) == []
        return
    by = folder_map(store)
    assert {"a.b", "a/b", "a"} <= set(by)
    with store.folder("a.b") as f:
        add(f, make_message("dotted"))
    with store.folder("a/b") as f:
        assert uids_of(f) == []
    store = reopen(store)
    with store.folder("a.b") as f:
        assert len(uids_of(f)) == 1
    with store.folder("a/b") as f:
        assert uids_of(f) == []


def test_delete_folder(store: Store) -> None:
    store.create_folder("Trashy")
    with store.folder("Trashy") as f:
        add(f, make_message())
    store.delete_folder("Trashy")
    assert "Trashy" not in folder_map(store)
    with pytest.raises(FolderNotFoundError):
        store.folder("Trashy")
    with pytest.raises(FolderNotFoundError):
        store.delete_folder("Trashy")
    store = reopen(store)
    assert "Trashy" not in folder_map(store)


def test_delete_then_recreate_never_reuses_uids(store: Store) -> None:
    store.create_folder("X")
    with store.folder("X") as f:
        old = [add(f, make_message(f"x{i}")) for i in range(3)]
        old_validity = f.status().uidvalidity
    store.delete_folder("X")
    store.create_folder("X")
    with store.folder("X") as f:
        assert uids_of(f) == []
        new = add(f, make_message("new x"))
        validity = f.status().uidvalidity
    # RFC 9051 §2.3.1.1: the same name with new contents needs a new UIDVALIDITY
    # (or UIDs above every old one).
    assert validity != old_validity or new > max(old)


def test_delete_inbox_is_refused(store: Store) -> None:
    with store.folder("INBOX") as f:
        uid = add(f, make_message())
    for spelling in ("INBOX", "inbox"):
        with pytest.raises(StoreError):
            store.delete_folder(spelling)
    with store.folder("INBOX") as f:
        assert uids_of(f) == [uid]


def test_delete_folder_with_children_becomes_noselect(store: Store) -> None:
    store.create_folder("P")
    store.create_folder("P/C")
    with store.folder("P") as p:
        add(p, make_message("parent"))
    with store.folder("P/C") as c:
        child_uid = add(c, make_message("child"))
    store.delete_folder("P")
    by = folder_map(store)
    assert "P" in by
    assert "\\Noselect" in by["P"].attributes
    assert "\\HasChildren" in by["P"].attributes
    assert "P/C" in by
    with store.folder("P/C") as c:
        assert uids_of(c) == [child_uid]
        assert c.read_message(child_uid) == make_message("child")
    store = reopen(store)
    by = folder_map(store)
    assert "\\Noselect" in by["P"].attributes
    assert "P/C" in by


def test_rename_folder_with_children(store: Store) -> None:
    store.create_folder("Old")
    store.create_folder("Old/Sub")
    with store.folder("Old") as f:
        top = add(f, make_message("top"), flags=[SEEN])
    with store.folder("Old/Sub") as f:
        sub = add(f, make_message("sub"), flags=["Kw"])
    store.rename_folder("Old", "New")
    by = folder_map(store)
    assert "Old" not in by and "Old/Sub" not in by
    assert {"New", "New/Sub"} <= set(by)
    with pytest.raises(FolderNotFoundError):
        store.folder("Old")
    with pytest.raises(FolderNotFoundError):
        store.folder("Old/Sub")
    with store.folder("New") as f:
        assert uids_of(f) == [top]
        assert f.read_message(top) == make_message("top")
        assert f.info(top).flags == {SEEN}
    with store.folder("New/Sub") as f:
        assert uids_of(f) == [sub]
        assert f.info(sub).flags == {"Kw"}
    store = reopen(store)
    assert {"New", "New/Sub"} <= set(folder_map(store))
    assert "Old" not in folder_map(store)


def test_rename_into_another_hierarchy(store: Store) -> None:
    store.create_folder("A")
    store.create_folder("B")
    with store.folder("A") as f:
        uid = add(f, make_message("a"))
    store.rename_folder("A", "B/A")
    by = folder_map(store)
    assert "A" not in by and "B/A" in by
    assert "\\HasChildren" in by["B"].attributes
    with store.folder("B/A") as f:
        assert f.read_message(uid) == make_message("a")


def test_rename_errors(store: Store) -> None:
    store.create_folder("One")
    store.create_folder("Two")
    with pytest.raises(FolderExistsError):
        store.rename_folder("One", "Two")
    with pytest.raises(FolderExistsError):
        store.rename_folder("One", "INBOX")
    with pytest.raises(FolderExistsError):
        store.rename_folder("One", "inbox")
    with pytest.raises(FolderNotFoundError):
        store.rename_folder("Three", "Four")
    assert {"One", "Two"} <= set(folder_map(store))


def test_rename_inbox_moves_messages_and_leaves_it_empty(store: Store) -> None:
    with store.folder("INBOX") as f:
        u = [add(f, make_message(f"in{i}"), flags=[SEEN] if i else []) for i in range(3)]
        old_validity = f.status().uidvalidity
    store.rename_folder("INBOX", "Saved")
    by = folder_map(store)
    assert "INBOX" in by and "Saved" in by
    with store.folder("Saved") as f:
        assert uids_of(f) == u
        for i, uid in enumerate(u):
            assert f.read_message(uid) == make_message(f"in{i}")
            assert f.info(uid).flags == ({SEEN} if i else frozenset())
    with store.folder("INBOX") as f:
        assert uids_of(f) == []
        new = add(f, make_message("fresh"))
        assert f.status().uidvalidity != old_validity or new > max(u)
    store = reopen(store)
    with store.folder("INBOX") as f:
        assert uids_of(f) == [new]
    with store.folder("Saved") as f:
        assert uids_of(f) == u


def test_rename_inbox_leaves_its_children(store: Store) -> None:
    # RFC 9051 §6.3.6: renaming INBOX does not rename its inferior names.
    store.create_folder("INBOX/Kid")
    with store.folder("INBOX/Kid") as f:
        kid = add(f, make_message("kid"))
    with store.folder("INBOX") as f:
        top = add(f, make_message("top"))
    store.rename_folder("INBOX", "Moved")
    by = folder_map(store)
    assert "INBOX/Kid" in by
    assert "Moved/Kid" not in by
    with store.folder("INBOX/Kid") as f:
        assert uids_of(f) == [kid]
    with store.folder("Moved") as f:
        assert uids_of(f) == [top]
    with store.folder("INBOX") as f:
        assert uids_of(f) == []


def test_rename_under_itself_is_refused(store: Store) -> None:
    store.create_folder("Loop")
    with store.folder("Loop") as f:
        uid = add(f, make_message("loop"))
    with pytest.raises(StoreError):
        store.rename_folder("Loop", "Loop/Inner")
    with store.folder("Loop") as f:
        assert uids_of(f) == [uid]
    assert "Loop/Inner" not in folder_map(store)


def test_noselect_parent_delete_and_recreate(store: Store) -> None:
    store.create_folder("P")
    store.create_folder("P/C")
    with store.folder("P") as f:
        add(f, make_message("gone with P"))
    store.delete_folder("P")
    assert "\\Noselect" in folder_map(store)["P"].attributes
    # RFC 9051 §6.3.5: deleting a \Noselect name that has children is an error.
    with pytest.raises(StoreError):
        store.delete_folder("P")
    assert "P/C" in folder_map(store)
    # Creating it again makes an empty, selectable folder: the old messages are gone.
    store.create_folder("P")
    by = folder_map(store)
    assert "\\Noselect" not in by["P"].attributes
    assert "\\HasChildren" in by["P"].attributes
    with store.folder("P") as f:
        assert uids_of(f) == []


def test_parent_has_no_children_after_child_deleted(store: Store) -> None:
    store.create_folder("Q")
    store.create_folder("Q/R")
    assert "\\HasChildren" in folder_map(store)["Q"].attributes
    store.delete_folder("Q/R")
    by = folder_map(store)
    assert "Q/R" not in by
    assert "\\HasNoChildren" in by["Q"].attributes
    assert "\\HasChildren" not in by["Q"].attributes


def test_special_use(store: Store) -> None:
    for name, use in [("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"),
                      ("Junk", "\\Junk"), ("Archive", "\\Archive")]:
        store.create_folder(name, special_use=use)
    store.create_folder("Plain")
    by = folder_map(store)
    assert "\\Sent" in by["Sent"].attributes
    assert "\\Drafts" in by["Drafts"].attributes
    assert "\\Trash" in by["Trash"].attributes
    assert "\\Junk" in by["Junk"].attributes
    assert "\\Archive" in by["Archive"].attributes
    specials = {"\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive"}
    assert not (by["Plain"].attributes & specials)
    assert not (by["INBOX"].attributes & specials)
    store = reopen(store)
    by = folder_map(store)
    assert "\\Sent" in by["Sent"].attributes
    assert "\\Archive" in by["Archive"].attributes


def test_subscriptions_persist(store: Store) -> None:
    store.create_folder("Lists")
    store.create_folder("News")
    assert store.subscriptions() == [] or set(store.subscriptions()) <= {"INBOX"}
    store.subscribe("Lists")
    store.subscribe("INBOX")
    assert {"Lists", "INBOX"} <= set(store.subscriptions())
    assert "News" not in store.subscriptions()
    by = folder_map(store)
    assert by["Lists"].subscribed and by["INBOX"].subscribed
    assert not by["News"].subscribed
    store = reopen(store)
    assert {"Lists", "INBOX"} <= set(store.subscriptions())
    store.unsubscribe("Lists")
    assert "Lists" not in store.subscriptions()
    store = reopen(store)
    assert "Lists" not in store.subscriptions()
    assert "INBOX" in store.subscriptions()
    assert not folder_map(store)["Lists"].subscribed


def test_subscribe_twice_lists_once(store: Store) -> None:
    store.create_folder("Lists")
    store.subscribe("Lists")
    store.subscribe("Lists")
    assert store.subscriptions().count("Lists") == 1


# --- the folder lists, kept by the same code for every store (store/_folder_lists.py) --


def test_subscriptions_follow_a_renamed_folder_and_its_children(store: Store) -> None:
    store.create_folder("Lists/ietf")
    for name in ("Lists", "Lists/ietf", "Listserv", "INBOX"):
        store.subscribe(name)
    store.rename_folder("Lists", "Archive/Lists")
    # "Listserv" only shares a prefix with "Lists": it is not a child and stays.
    assert store.subscriptions() == ["Archive/Lists", "Archive/Lists/ietf", "Listserv", "INBOX"]
    by = folder_map(store)
    assert by["Archive/Lists"].subscribed and by["Archive/Lists/ietf"].subscribed


def test_a_deleted_folder_stays_subscribed_and_loses_its_attribute(store: Store) -> None:
    # RFC 9051 §6.3.7: the server should not remove a name from the subscriptions.
    store.create_folder("Sent", special_use="\\Sent")
    store.create_folder("Outbox", special_use="\\Sent")  # moves the attribute here
    store.subscribe("Outbox")
    store.delete_folder("Outbox")
    assert store.subscriptions() == ["Outbox"]
    store.create_folder("Outbox")
    assert "\\Sent" not in folder_map(store)["Outbox"].attributes


def test_a_special_use_attribute_marks_one_folder(store: Store) -> None:
    store.create_folder("Old Sent", special_use="\\Sent")
    store.create_folder("Sent Mail", special_use="\\Sent")
    by = folder_map(reopen(store))
    assert "\\Sent" in by["Sent Mail"].attributes
    assert "\\Sent" not in by["Old Sent"].attributes


def test_a_special_use_attribute_follows_a_rename(store: Store) -> None:
    store.create_folder("Papers/2026", special_use="\\Archive")
    store.rename_folder("Papers", "Old papers")
    by = folder_map(store)
    assert "\\Archive" in by["Old papers/2026"].attributes
    store.create_folder("Papers/2026")
    assert "\\Archive" not in folder_map(store)["Papers/2026"].attributes


INVALID_NAMES = ["..", "a/../b", "../escape", "a/..", "/abs", "/", "a//b", "a\x00b", "",
                 "a\nb", "a\rb"]


@pytest.mark.parametrize("bad", INVALID_NAMES)
def test_invalid_folder_names(store: Store, bad: str, tmp_path: Path) -> None:
    store.create_folder("Good")
    with pytest.raises(InvalidFolderNameError):
        store.create_folder(bad)
    with pytest.raises(InvalidFolderNameError):
        store.rename_folder("Good", bad)
    with pytest.raises((InvalidFolderNameError, FolderNotFoundError)):
        store.folder(bad)
    with pytest.raises((InvalidFolderNameError, FolderNotFoundError)):
        store.delete_folder(bad)
    with pytest.raises((InvalidFolderNameError, FolderNotFoundError)):
        store.rename_folder(bad, "Other")
    assert "Good" in folder_map(store)
    assert "Other" not in folder_map(store)
    # Nothing was made outside the store's root.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


@pytest.mark.parametrize("odd", [".", "a/./b", "./a", "...", ".hidden", "a/.b"])
def test_dot_names_stay_inside_the_root(store: Store, odd: str, tmp_path: Path) -> None:
    try:
        store.create_folder(odd)
    except InvalidFolderNameError:
        pass
    else:
        assert odd in folder_map(store)
        with store.folder(odd) as f:
            add(f, make_message(odd))
        store = reopen(store)
        assert odd in folder_map(store)
        with store.folder("INBOX") as f:
            assert uids_of(f) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


# --- abort and the writer as a context manager ----------------------------------------


def test_abort_leaves_nothing(store: Store) -> None:
    with store.folder("INBOX") as f:
        keep = add(f, make_message("keep"))
        before = message_files_state(store)
        files = all_files(store)
        status = f.status()
        w = f.append(flags=[SEEN])
        w.write(make_message("doomed", size=20_000)[:15_000])
        w.abort()
        w.abort()  # twice is safe
        assert w.result is None
        assert uids_of(f) == [keep]
        assert message_files_state(store) == before
        assert all_files(store) == files
        assert stray_tmp_files(store) == []
        assert f.status().messages == status.messages
    store = reopen(store)
    with store.folder("INBOX") as f:
        assert uids_of(f) == [keep]
        assert f.read_message(keep) == make_message("keep")
        assert add(f, make_message("next")) > keep


def test_abort_without_writing(store: Store) -> None:
    with store.folder("INBOX") as f:
        before = message_files_state(store)
        f.append().abort()
        assert uids_of(f) == []
        assert message_files_state(store) == before


def test_abort_after_commit_does_nothing_and_commit_is_idempotent(store: Store) -> None:
    data = make_message("once")
    with store.folder("INBOX") as f:
        w = f.append()
        w.write(data)
        r1 = w.commit()
        r2 = w.commit()
        f.refresh()
        assert r1 == r2 == w.result
        w.abort()
        assert uids_of(f) == [r1.uid]
        assert f.read_message(r1.uid) == data  # type: ignore[arg-type]


def test_writer_context_manager_commits(store: Store) -> None:
    data = make_message("ctx")
    with store.folder("INBOX") as f:
        with f.append(flags=[FLAGGED]) as w:
            w.write(data[:30])
            w.write(data[30:])
        f.refresh()
        assert w.result is not None and w.result.uid is not None
        assert f.read_message(w.result.uid) == data
        assert f.info(w.result.uid).flags == {FLAGGED}


def test_writer_context_manager_aborts_on_exception(store: Store) -> None:
    with store.folder("INBOX") as f:
        before = message_files_state(store)
        f.refresh()
        files = all_files(store)
        with pytest.raises(ConnectionResetError), f.append() as w:
            w.write(make_message("interrupted")[:100])
            raise ConnectionResetError("client went away")
        assert w.result is None
        assert uids_of(f) == []
        assert all_files(store) == files
        assert message_files_state(store) == before
        assert stray_tmp_files(store) == []


def test_uncommitted_writer_is_invisible(store: Store) -> None:
    data = make_message("pending", size=4000)
    with store.folder("INBOX") as f, store.folder("INBOX") as other:
        w = f.append()
        w.write(data[:2000])
        assert uids_of(other) == []
        assert uids_of(f) == []
        w.write(data[2000:])
        uid = w.commit().uid
        assert uid is not None
        assert [m.uid for m in other.refresh().added] == [uid]


def test_interleaved_writers(store: Store) -> None:
    a, b = make_message("A", size=3000), make_message("B", size=2500)
    with store.folder("INBOX") as f:
        wa, wb = f.append(), f.append()
        for pa, pb in itertools.zip_longest(chunks(a, 500), chunks(b, 500), fillvalue=b""):
            wa.write(pa)
            wb.write(pb)
        rb = wb.commit()
        ra = wa.commit()
        f.refresh()
        assert ra.uid is not None and rb.uid is not None
        assert rb.uid < ra.uid  # committed first, lower UID
        assert f.read_message(ra.uid) == a
        assert f.read_message(rb.uid) == b


# --- malformed input -------------------------------------------------------------------

MALFORMED = {
    "no-headers": b"just a body line\r\nand another\r\n",
    "no-final-newline": b"Subject: cut\r\n\r\nthe last line has no end",
    "nul-bytes": b"Subject: nul\r\n\r\nbefore\x00after\r\n\x00\x00\r\n",
    "long-line": b"Subject: long\r\n\r\n" + b"x" * 10_000 + b"\r\n",
    "long-line-no-eol": b"Subject: long\r\n\r\n" + b"y" * 10_000,
    "empty": b"",
    "only-crlf": b"\r\n",
    "headers-only": b"Subject: no body\r\nFrom: a@example.test\r\n",
    "starts-with-From": b"From alice@example.test Tue Mar  3 10:00:00 2026\r\nSubject: x\r\n"
    b"\r\nbody\r\n",
    "starts-with-quoted-From": b">From x\r\n\r\n>>From y\r\nFrom z\r\n",
    "blank-lines-then-From": b"Subject: s\r\n\r\n\r\n\r\nFrom here\r\n\r\n",
    "binary": bytes(range(256)).replace(b"\r", b"").replace(b"\n", b"") + b"\r\n",
    "eight-bit": "Subject: Grüße\r\n\r\nÄÖÜ ß € 日本\r\n".encode(),
    "lone-cr": b"Subject: cr\r\n\r\na\rb\r\nends with a lone CR\r",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_message_stored_as_given(store: Store, name: str) -> None:
    data = MALFORMED[name]
    after = make_message("after the odd one")
    with store.folder("INBOX") as f:
        before = add(f, make_message("before"))
        uid = add(f, data)
        nxt = add(f, after)
        assert uids_of(f) == [before, uid, nxt]
        assert f.info(uid).size == len(data)
        assert f.read_message(uid) == data
        assert f.read_message(nxt) == after
    store = reopen(store)
    with store.folder("INBOX") as f:
        infos = listing(f)
        assert [i.uid for i in infos] == [before, uid, nxt]
        assert infos[1].size == len(data)
        assert f.read_message(uid) == data
        assert f.read_message(before) == make_message("before")
        assert f.read_message(nxt) == after
        # Still intact after a rewrite of the folder (mbox rewrites on flag changes).
        f.set_flags([uid, nxt], [SEEN], "add")
        f.set_flags([before], [DELETED], "add")
        f.expunge()
        assert f.read_message(uid) == data
        assert f.read_message(nxt) == after
        assert f.info(uid).size == len(data)


def test_malformed_lf_variants(store: Store) -> None:
    with store.folder("INBOX") as f:
        for data in (MALFORMED["no-final-newline"], MALFORMED["starts-with-From"],
                     MALFORMED["nul-bytes"]):
            uid = add(f, to_lf(data))
            assert f.read_message(uid) == data
            assert f.info(uid).size == len(data)


def test_mixed_line_ends_read_back_as_crlf(store: Store) -> None:
    sent = b"Subject: mixed\r\nX-Other: lf\n\nline one\r\nline two\nFrom three\n"
    crlf = b"Subject: mixed\r\nX-Other: lf\r\n\r\nline one\r\nline two\r\nFrom three\r\n"
    with store.folder("INBOX") as f:
        result = f.append_bytes(sent)
        assert result.size == len(crlf)
        f.refresh()
        assert result.uid is not None
        assert f.read_message(result.uid) == crlf
        assert f.info(result.uid).size == len(crlf)


# --- INTERNALDATE --------------------------------------------------------------------


def _same_second(a: datetime.datetime, b: datetime.datetime) -> bool:
    return int(a.timestamp()) == int(b.timestamp())


def test_internaldate_given_is_kept(store: Store) -> None:
    given = [
        datetime.datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC),
        datetime.datetime(2025, 12, 31, 23, 59, 59, 999_000, tzinfo=datetime.timezone(
            datetime.timedelta(hours=-7, minutes=-30))),
        WHEN,
    ]
    with store.folder("INBOX") as f:
        uids = [add(f, make_message(f"d{i}"), internaldate=d) for i, d in enumerate(given)]
        for uid, d in zip(uids, given, strict=True):
            got = f.info(uid).internaldate
            assert got.tzinfo is not None
            assert _same_second(got, d), (got, d)
    store = reopen(store)
    with store.folder("INBOX") as f:
        f.refresh()
        for uid, d in zip(uids, given, strict=True):
            assert _same_second(f.info(uid).internaldate, d)
        # A flag change does not move the INTERNALDATE.
        f.set_flags(uids, [SEEN], "add")
        f.refresh()
        for uid, d in zip(uids, given, strict=True):
            assert _same_second(f.info(uid).internaldate, d)


def test_internaldate_defaults_to_now(store: Store) -> None:
    start = time.time()
    with store.folder("INBOX") as f:
        uid = add(f, make_message())
        got = f.info(uid).internaldate
    assert got.tzinfo is not None
    assert start - 2 <= got.timestamp() <= time.time() + 2


# --- big messages and memory -------------------------------------------------------------

CHUNK = 64 * 1024
BIG = 5 * 1024 * 1024


def _big_chunks() -> Iterator[bytes]:
    """About 5 MB of message in 64 KiB pieces, generated (never whole in memory)."""
    head = make_message("big", b"")
    yield head
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-From x\r\n"
    piece = line * (CHUNK // len(line))
    sent = len(head)
    while sent < BIG:
        yield piece
        sent += len(piece)


def test_big_message_streams_without_loading_it_whole(store: Store) -> None:
    digest = hashlib.sha256()
    total = 0
    with store.folder("INBOX") as f:
        w = f.append()
        tracemalloc.start()
        try:
            for piece in _big_chunks():
                digest.update(piece)
                total += len(piece)
                w.write(piece)
            result = w.commit()
            _, write_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert result.uid is not None
        assert result.size == total
        assert total > BIG
        f.refresh()
        assert f.info(result.uid).size == total

        got = hashlib.sha256()
        read = 0
        tracemalloc.start()
        try:
            with f.open_message(result.uid) as stream:
                while piece := stream.read(CHUNK):
                    assert len(piece) <= CHUNK
                    got.update(piece)
                    read += len(piece)
            _, read_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert read == total
    assert got.hexdigest() == digest.hexdigest()
    assert read_peak < 1024 * 1024, f"reading peaked at {read_peak} bytes"
    assert write_peak < 2 * 1024 * 1024, f"writing peaked at {write_peak} bytes"


# --- asyncio and the executor --------------------------------------------------------------


def test_run_from_asyncio(store: Store) -> None:
    def deliver(i: int) -> int | None:
        with store.folder("INBOX") as f:
            return f.append_bytes(make_message(f"async{i}")).uid

    async def main() -> tuple[list[int | None], list[MessageInfo]]:
        uids = await asyncio.gather(*(store.run(deliver, i) for i in range(20)))
        f = await store.run(store.folder, "INBOX")
        try:
            await store.run(f.refresh)
            listed = await store.run(f.messages)
        finally:
            await store.run(f.close)
        return list(uids), listed

    uids, listed = asyncio.run(main())
    assert None not in uids
    assert len(set(uids)) == 20
    assert sorted(uids) == [m.uid for m in listed]  # type: ignore[type-var]


def test_executor_is_shared_and_closed_by_close(kind: str, root: Path) -> None:
    s = open_store(kind, root, max_workers=4)
    ex = s.executor
    assert s.executor is ex
    assert ex._max_workers == 4
    names = set()

    async def main() -> None:
        for _ in range(8):
            names.add(await s.run(lambda: threading.current_thread().name))

    asyncio.run(main())
    assert all(n.startswith("mailagents-store") for n in names)
    s.close()
    with pytest.raises(RuntimeError):
        ex.submit(lambda: None)


def test_store_context_manager(kind: str, root: Path) -> None:
    with open_store(kind, root) as s:
        ex = s.executor
        with s.folder("INBOX") as f:
            add(f, make_message())
    with pytest.raises(RuntimeError):
        ex.submit(lambda: None)


def test_store_files_stay_under_root(store: Store, tmp_path: Path) -> None:
    store.create_folder("A")
    store.create_folder("A/B")
    with store.folder("A/B") as f:
        add(f, make_message())
    store.rename_folder("A", "C")
    store.delete_folder("C/B")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    assert os.path.isdir(store_root(store))
