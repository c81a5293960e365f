"""What an IMAP server needs of the stores, on both formats: HIGHESTMODSEQ that never
goes backwards under one UIDVALIDITY, and an expunge history that says when it is
incomplete (RFC 7162)."""

from __future__ import annotations

import collections
import datetime
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailagents.store import DELETED, SEEN, Folder, Store, _maildir_state, _mbox_index
from tests.store.conftest import make_message, reopen, store_kind, store_root


def state_file(store: Store) -> Path:
    """The side file that holds the MODSEQs of INBOX."""
    root = store_root(store)
    if store_kind(store) == "maildir":
        return root / "mailagents-modseq"
    return root / ".INBOX.mailagents-index"


def busy_inbox(store: Store) -> tuple[int, int]:
    """INBOX with some history (appends, flag changes, an expunge); returns its
    UIDVALIDITY and HIGHESTMODSEQ."""
    with store.folder("INBOX") as inbox:
        uids = [inbox.append_bytes(make_message(f"m{i}")).uid for i in range(5)]
        inbox.refresh()
        for _ in range(3):
            inbox.set_flags(uids, [SEEN], "add")
            inbox.set_flags(uids, [SEEN], "remove")
        inbox.set_flags(uids[:1], [DELETED], "add")
        inbox.expunge()
        inbox.refresh()
        status = inbox.status()
        return status.uidvalidity, status.highestmodseq


def assert_monotonic(inbox: Folder, uidvalidity: int, highest: int) -> None:
    status = inbox.status()
    if status.uidvalidity == uidvalidity:
        assert status.highestmodseq > highest
        # Every message is reported as changed to a client that knew the old state,
        # and the expunge history is said to be incomplete.
        changes = inbox.changes_since(highest)
        assert {m.uid for m in changes.added + changes.changed} == {m.uid for m in inbox.messages()}
        assert not changes.expunged_complete
    # A new UIDVALIDITY is the other correct answer (clients resync from scratch).
    uids = [m.uid for m in inbox.messages()]
    assert len(uids) == 4


@pytest.mark.parametrize("damage", ["lost", "bad-header", "garbage"])
def test_highestmodseq_never_goes_backwards(store: Store, damage: str) -> None:
    uidvalidity, highest = busy_inbox(store)
    path = state_file(store)
    if damage == "lost":
        path.unlink()
    elif damage == "bad-header":
        lines = path.read_bytes().split(b"\n")
        path.write_bytes(b"\n".join([b"something else entirely", *lines[1:]]))
    else:
        path.write_bytes(b"\x00\xff not a state file at all\n")
    store = reopen(store)
    peek = store.status("INBOX")  # STATUS before any SELECT: not behind either
    if peek.uidvalidity == uidvalidity:
        assert peek.highestmodseq > highest
    with store.folder("INBOX") as inbox:
        assert_monotonic(inbox, uidvalidity, highest)
        if peek.uidvalidity == inbox.status().uidvalidity:
            assert inbox.status().highestmodseq >= peek.highestmodseq
        # Later changes go on from there, and survive a reopen.
        before = inbox.status().highestmodseq
        (changed,), _ = inbox.set_flags([inbox.messages()[0].uid], [SEEN], "add")
        assert changed.modseq > before
    store = reopen(store)
    with store.folder("INBOX") as inbox:
        assert inbox.status().highestmodseq >= changed.modseq


def test_maildir_restart_above_the_records_of_a_bad_header(store: Store) -> None:
    if store_kind(store) != "maildir":
        pytest.skip("the Maildir journal")
    uidvalidity, highest = busy_inbox(store)
    path = state_file(store)
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join([b"mailagents-modseq 9", *lines[1:]]))
    real = _maildir_state.clock_floor
    try:
        _maildir_state.clock_floor = lambda: 0  # a clock far behind: the records count
        store = reopen(store)
        with store.folder("INBOX") as inbox:
            assert inbox.status().uidvalidity == uidvalidity
            assert inbox.status().highestmodseq > highest
    finally:
        _maildir_state.clock_floor = real


def test_maildir_restart_above_what_this_process_saw(store: Store) -> None:
    """The journal deleted under an open store: the process's own memory counts too,
    whatever the clock says."""
    if store_kind(store) != "maildir":
        pytest.skip("the Maildir journal")
    uidvalidity, highest = busy_inbox(store)
    real = _maildir_state.clock_floor
    try:
        _maildir_state.clock_floor = lambda: 0
        state_file(store).unlink()
        with store.folder("INBOX") as inbox:
            assert inbox.status().uidvalidity == uidvalidity
            assert inbox.status().highestmodseq > highest
    finally:
        _maildir_state.clock_floor = real


def test_new_folders_count_from_one(store: Store) -> None:
    """Only a folder whose state we make from nothing starts low (no clock floor)."""
    store.create_folder("Fresh")
    with store.folder("Fresh") as fresh:
        fresh.append_bytes(make_message())
        fresh.refresh()
        assert fresh.status().highestmodseq < 100


def test_delivery_then_reader_counts_from_one(store: Store) -> None:
    if store_kind(store) != "maildir":
        pytest.skip("the Maildir delivery handle")
    store.create_folder("Fresh")
    with store.folder("Fresh", deliver_only=True) as fresh:  # type: ignore[call-arg]
        fresh.append_bytes(make_message(), assign_uid=False)
    with store.folder("Fresh") as fresh:
        assert fresh.status().highestmodseq < 100


# --- the expunge history --------------------------------------------------------------


@pytest.fixture
def small_log(monkeypatch: pytest.MonkeyPatch) -> int:
    """A short expunge log (the real one keeps 10,000)."""
    monkeypatch.setattr(_maildir_state, "EXPUNGE_LOG", 5)
    size = 5
    # The mbox deque's bound is taken when an index state is made.
    original = _mbox_index.IndexState.__init__

    def init(self: _mbox_index.IndexState, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        self.expunged = collections.deque(self.expunged, maxlen=size)

    monkeypatch.setattr(_mbox_index.IndexState, "__init__", init)
    return size


def expunge_one_by_one(inbox: Folder, count: int) -> list[tuple[int, int]]:
    """Append and expunge ``count`` messages one at a time; (UID, MODSEQ before its
    expunge) of each."""
    out = []
    for i in range(count):
        uid = inbox.append_bytes(make_message(f"gone {i}")).uid
        assert uid is not None
        inbox.refresh()
        inbox.set_flags([uid], [DELETED], "add")
        inbox.refresh()
        before = inbox.status().highestmodseq
        assert inbox.expunge() == [uid]
        out.append((uid, before))
    inbox.refresh()
    return out


def test_expunge_history_says_when_it_is_incomplete(store: Store, small_log: int) -> None:
    with store.folder("INBOX") as inbox:
        keep = inbox.append_bytes(make_message("keep")).uid
        start = inbox.refresh().highestmodseq
        history = expunge_one_by_one(inbox, 3 * small_log)
        if store_kind(store) == "maildir":
            # The journal forgets old expunges when it is compacted (it grows by several
            # times the live records first): compact it now.
            core = inbox._core  # type: ignore[attr-defined]
            with core.uidlist.lock(), core.mutex:
                core.state.compact()
        # Recent points: exact, as before.
        uid, before = history[-1]
        recent = inbox.changes_since(before)
        assert recent.expunged_complete
        assert recent.expunged == (uid,)
        # A point the log no longer reaches: said so, and a superset is given.
        old = inbox.changes_since(start)
        assert not old.expunged_complete
        assert set(old.expunged) >= {u for u, _ in history}
        assert keep not in old.expunged
    # The watermark is durable: a new handle of a new store says the same.
    store = reopen(store)
    with store.folder("INBOX") as inbox:
        assert not inbox.changes_since(start).expunged_complete
        assert inbox.changes_since(history[-1][1]).expunged_complete
        assert inbox.changes_since(history[-1][1]).expunged == (history[-1][0],)


def test_expunge_history_complete_when_short(store: Store) -> None:
    with store.folder("INBOX") as inbox:
        start = inbox.refresh().highestmodseq
        history = expunge_one_by_one(inbox, 3)
        changes = inbox.changes_since(start)
        assert changes.expunged_complete
        assert changes.expunged == tuple(u for u, _ in history)


def test_mbox_index_without_watermark_field_reads(tmp_path: Path) -> None:
    """An index written before the field existed: ``V`` with three numbers."""
    state = _mbox_index.IndexState()
    state.apply("V 7 3 9")
    assert (state.uidvalidity, state.uidnext, state.highestmodseq, state.forgotten) == (7, 3, 9, 0)
    state.apply("V 7 3 9 4")
    assert state.forgotten == 4
    assert b"V 7 3 9 4 1\n" in state.full_text()
    state.apply("V 7 3 9 4 12")
    assert state.first_recent == 12


# --- STATUS without opening -----------------------------------------------------------


def folder_files(store: Store) -> dict[str, bytes]:
    """Every file under the store's root, with its content (what a reader must not
    change)."""
    root = store_root(store)
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def test_status_by_name_matches_the_open_folder(store: Store) -> None:
    with store.folder("INBOX") as inbox:
        uids = [inbox.append_bytes(make_message(f"s{i}", size=900 + i)).uid for i in range(6)]
        inbox.refresh()
        inbox.set_flags(uids[:2], [SEEN], "add")
        inbox.set_flags(uids[1:4], [DELETED], "add")
        inbox.refresh()
        opened = inbox.status()
    assert (opened.messages, opened.unseen, opened.deleted) == (6, 4, 3)
    assert opened.size == sum(900 + i for i in range(6))
    assert opened.recent == 6
    assert store.status("INBOX") == opened
    assert store.status("inbox") == opened


def test_status_by_name_changes_nothing(store: Store) -> None:
    store.create_folder("Lists")
    with store.folder("Lists") as lists:
        lists.append_bytes(make_message("one"))
        lists.refresh()
    with store.folder("Lists") as lists:
        lists.append_bytes(make_message("two"), assign_uid=False)
    before = folder_files(store)
    status = store.status("Lists")
    assert folder_files(store) == before
    assert (status.messages, status.unseen, status.recent) == (2, 2, 2)
    with store.folder("Lists") as lists:
        opened = lists.status()
    assert opened.messages == status.messages
    assert opened.uidvalidity == status.uidvalidity
    assert opened.uidnext >= status.uidnext
    assert opened.highestmodseq >= status.highestmodseq


def test_status_by_name_of_a_missing_folder(store: Store) -> None:
    from mailagents.store import FolderNotFoundError

    with pytest.raises(FolderNotFoundError):
        store.status("Nowhere")


def test_maildir_status_leaves_new_alone(store: Store) -> None:
    if store_kind(store) != "maildir":
        pytest.skip("Maildir's new/")
    root = store_root(store)
    with store.folder("INBOX", deliver_only=True) as inbox:  # type: ignore[call-arg]
        inbox.append_bytes(make_message("fresh", size=1234), assign_uid=False)
    status = store.status("INBOX")
    assert len(list((root / "new").iterdir())) == 1
    assert (status.messages, status.unseen, status.recent, status.size) == (1, 1, 1, 1234)
    # Another program marks a numbered message seen behind our back: counted at once.
    with store.folder("INBOX") as inbox:
        assert len(inbox.messages()) == 1
    (path,) = (root / "cur").iterdir()
    path.rename(path.with_name(path.name + "S"))
    assert store.status("INBOX").unseen == 0


def test_mbox_status_when_another_program_appended(store: Store) -> None:
    if store_kind(store) != "mbox":
        pytest.skip("the mbox file")
    with store.folder("INBOX") as inbox:
        inbox.append_bytes(make_message("ours"))
    path = store_root(store) / "INBOX"
    with open(path, "ab") as f:
        f.write(b"From someone@example.test Tue Mar  3 10:00:00 2026\nSubject: theirs\n\nhi\n\n")
    status = store.status("INBOX")
    assert status.messages == 2


# --- \Recent --------------------------------------------------------------------------


def test_exactly_one_session_sees_recent(store: Store) -> None:
    with store.folder("INBOX") as a:
        first = [a.append_bytes(make_message(f"r{i}")).uid for i in range(3)]
        a.refresh()
    with store.folder("INBOX") as a, store.folder("INBOX") as b:
        assert a.status().recent == 3
        assert a.claim_recent() == first
        assert b.claim_recent() == []
        assert a.claim_recent() == []  # claimed already, by us
        assert b.status().recent == 0
        late = b.append_bytes(make_message("late")).uid
        b.refresh()
        assert store.status("INBOX").recent == 1
        a.refresh()
        assert b.claim_recent() == [late]
        assert a.claim_recent() == []
    store = reopen(store)
    assert store.status("INBOX").recent == 0
    with store.folder("INBOX") as c:
        assert c.claim_recent() == []
        assert c.status().recent == 0


def test_a_reader_that_does_not_claim_leaves_recent(store: Store) -> None:
    """A POP3 session or EXAMINE reads (Maildir: moves new/ to cur/) without claiming."""
    with store.folder("INBOX") as inbox:
        uid = inbox.append_bytes(make_message()).uid
    with store.folder("INBOX") as pop3:
        pop3.read_message(pop3.messages()[0].uid)
    with store.folder("INBOX") as imap:
        assert imap.claim_recent() == [uid]


def test_recent_survives_compaction(store: Store) -> None:
    with store.folder("INBOX") as inbox:
        uids = [inbox.append_bytes(make_message(f"c{i}")).uid for i in range(4)]
        inbox.refresh()
        assert inbox.claim_recent() == uids
        inbox.set_flags(uids[:1], [DELETED], "add")
        inbox.expunge()  # mbox: rewrites the index whole
        if store_kind(store) == "maildir":
            core = inbox._core  # type: ignore[attr-defined]
            with core.uidlist.lock(), core.mutex:
                core.state.compact()
    store = reopen(store)
    with store.folder("INBOX") as inbox:
        assert inbox.claim_recent() == []
        assert store.status("INBOX").recent == 0


# --- keywords -------------------------------------------------------------------------


def test_keywords_in_use(store: Store) -> None:
    with store.folder("INBOX") as inbox:
        assert inbox.keywords() == frozenset()
        uid = inbox.append_bytes(make_message(), flags=[SEEN, "$Forwarded", "Work"]).uid
        assert uid is not None
        inbox.refresh()
        assert inbox.keywords() == {"$Forwarded", "Work"}
        inbox.set_flags([uid], ["Home"], "add")
        assert inbox.keywords() >= {"$Forwarded", "Work", "Home"}
        assert inbox.can_create_keywords()


def test_keyword_limit_is_reported(store: Store) -> None:
    names = [f"k{i}" for i in range(30)]
    with store.folder("INBOX") as inbox:
        uid = inbox.append_bytes(make_message()).uid
        assert uid is not None
        inbox.refresh()
        inbox.set_flags([uid], names[:25], "add")
        assert inbox.can_create_keywords()
        inbox.set_flags([uid], names[25:], "add")
        assert inbox.keywords() == set(names)  # all kept, past the 26 letters too
        if store_kind(store) == "maildir":
            assert not inbox.can_create_keywords()  # Dovecot's 26 letters are used up
        else:
            assert inbox.can_create_keywords()  # X-Keywords: no limit
    store = reopen(store)
    with store.folder("INBOX") as inbox:
        assert inbox.keywords() == set(names)
        assert inbox.info(uid).flags == set(names)


# --- COPY/MOVE and COPYUID ------------------------------------------------------------


@pytest.mark.parametrize("op", ["copy", "move"])
def test_copy_and_move_return_the_targets_uidvalidity(store: Store, op: str) -> None:
    from mailagents.store import CopyResult

    store.create_folder("Target")
    with store.folder("INBOX") as inbox, store.folder("Target") as target:
        uids = [inbox.append_bytes(make_message(f"c{i}")).uid for i in range(3)]
        inbox.refresh()
        result = getattr(inbox, op)([*uids[:2], 999], target)
        assert isinstance(result, CopyResult)
        target.refresh()
        assert result.uidvalidity == target.status().uidvalidity
        assert result.uidvalidity != 0
        assert set(result) == set(uids[:2])  # 999 does not exist
        assert sorted(result.values()) == [m.uid for m in target.messages()]
        assert result == dict(result)  # still the plain mapping older callers used
        assert "uidvalidity=" in repr(result)
        empty = getattr(inbox, op)([999], target)
        assert empty == {} and empty.uidvalidity == result.uidvalidity
        inbox.refresh()
        left = [m.uid for m in inbox.messages()]
        assert left == (uids if op == "copy" else uids[2:])


def test_copy_across_formats_gives_the_targets_uidvalidity(tmp_path: Path) -> None:
    from mailagents.store import MaildirStore, MboxStore

    with (
        MaildirStore(tmp_path / "md", fsync=False) as md,
        MboxStore(tmp_path / "mb", fsync=False) as mb,
        md.folder("INBOX") as a,
        mb.folder("INBOX") as b,
    ):
        uid = a.append_bytes(make_message()).uid
        a.refresh()
        there = a.copy([uid], b)
        b.refresh()
        assert there.uidvalidity == b.status().uidvalidity
        back = b.move(list(there.values()), a)
        a.refresh()
        assert back.uidvalidity == a.status().uidvalidity
        assert len(back) == 1


# --- ranged reads ---------------------------------------------------------------------


def _rchar() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar")


@given(
    start=st.integers(min_value=0, max_value=3000),
    length=st.one_of(st.none(), st.integers(min_value=0, max_value=3000)),
)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_open_message_window_is_the_slice(store: Store, start: int, length: int | None) -> None:
    with store.folder("INBOX") as inbox:
        if not inbox.messages():
            body = b"".join(b"line %d\r\n" % i for i in range(150)) + b"From me\r\n>From you\r\n"
            inbox.append_bytes(make_message(body=body), flags=[SEEN, "Work"])
            inbox.refresh()
        uid = inbox.messages()[0].uid
        whole = inbox.read_message(uid)
        with inbox.open_message(uid, start, length) as stream:
            part = stream.read()
        end = None if length is None else start + length
        assert part == whole[start:end]
        with inbox.open_message(uid, start, length) as stream:  # small reads too
            pieces = []
            while piece := stream.read(7):
                pieces.append(piece)
        assert b"".join(pieces) == whole[start:end]


def test_open_message_refuses_a_negative_range(store: Store) -> None:
    with store.folder("INBOX") as inbox:
        uid = inbox.append_bytes(make_message()).uid
        assert uid is not None
        with pytest.raises(ValueError):
            inbox.open_message(uid, -1)
        with pytest.raises(ValueError):
            inbox.open_message(uid, 0, -5)


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs /proc/self/io")
def test_a_small_window_of_a_big_message_reads_little(store: Store) -> None:
    size = 20_000_000
    with store.folder("INBOX") as inbox:
        uid = inbox.append_bytes(make_message(size=size)).uid
        assert uid is not None
        inbox.refresh()
        before = _rchar()
        with inbox.open_message(uid, 0, 1024) as stream:
            head = stream.read()
        used = _rchar() - before
    assert len(head) == 1024
    assert used < 1_000_000, f"{used} bytes read for a 1 KB window of {size}"


# --- special use and LIST ---------------------------------------------------------------


def attributes(store: Store) -> dict[str, frozenset[str]]:
    return {info.name: info.attributes for info in store.list_folders(nonexistent=True)}


def test_special_use_set_and_cleared_on_an_existing_folder(store: Store) -> None:
    from mailagents.store import FolderNotFoundError

    store.create_folder("Papers")
    store.create_folder("Old")
    store.set_special_use("Papers", "\\Archive")
    assert "\\Archive" in attributes(store)["Papers"]
    store.set_special_use("Old", "\\Archive")  # one folder at a time
    assert "\\Archive" not in attributes(store)["Papers"]
    assert "\\Archive" in attributes(store)["Old"]
    store.set_special_use("Old", None)
    assert not {"\\Archive"} & (attributes(store)["Old"] | attributes(store)["Papers"])
    store = reopen(store)
    assert "\\Archive" not in attributes(store)["Old"]
    with pytest.raises(FolderNotFoundError):
        store.set_special_use("Nowhere", "\\Trash")
    with pytest.raises(ValueError):
        store.set_special_use("Papers", "\\Important-ish")


def test_a_default_special_use_can_be_cleared(store: Store) -> None:
    store.create_folder("Sent")
    store.set_special_use("Sent", "\\Sent")
    assert "\\Sent" in attributes(store)["Sent"]
    store.set_special_use("Sent", None)
    assert "\\Sent" not in attributes(store)["Sent"]
    store.create_folder("Outbox")
    store.set_special_use("Outbox", "\\Sent")
    assert "\\Sent" in attributes(store)["Outbox"]
    assert "\\Sent" not in attributes(store)["Sent"]


def test_list_attributes_subscribed_nonexistent_children(store: Store) -> None:
    store.create_folder("Work/2026")
    store.create_folder("Gone")
    store.subscribe("Work")
    store.subscribe("Gone")
    store.subscribe("INBOX")
    store.delete_folder("Gone")
    store.subscribe("Never/Was")
    attrs = attributes(store)
    assert {"\\Subscribed", "\\HasChildren"} <= attrs["Work"]
    assert "\\HasNoChildren" in attrs["Work/2026"]
    assert "\\Subscribed" not in attrs["Work/2026"]
    assert "\\Subscribed" in attrs["INBOX"]
    assert attrs["Gone"] == {"\\NonExistent", "\\Subscribed"}
    assert attrs["Never/Was"] == {"\\NonExistent", "\\Subscribed"}
    plain = {info.name for info in store.list_folders()}
    assert "Gone" not in plain and "Work" in plain


# --- INTERNALDATE keeps the APPEND time zone --------------------------------------------

ZONES = [
    datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
    datetime.timezone(datetime.timedelta(hours=-8)),
    datetime.UTC,
]


def check_dates(folder: Folder, expected: dict[int, datetime.datetime]) -> None:
    for uid, date in expected.items():
        got = folder.info(uid).internaldate
        assert got == date and got.utcoffset() == date.utcoffset(), (uid, got, date)


def test_internaldate_keeps_the_append_time_zone(store: Store) -> None:
    store.create_folder("Other")
    dated = {}
    with store.folder("INBOX") as inbox:
        for i, zone in enumerate(ZONES):
            date = datetime.datetime(2026, 3, 3, 10, i, 0, tzinfo=zone)
            uid = inbox.append_bytes(make_message(f"z{i}"), internaldate=date).uid
            assert uid is not None
            dated[uid] = date
        inbox.refresh()
        check_dates(inbox, dated)
        inbox.set_flags(list(dated), [SEEN, "Work"], "add")
        check_dates(inbox, dated)
        inbox.refresh()
        check_dates(inbox, dated)
        with store.folder("Other") as other:
            copied = inbox.copy(list(dated), other)
            other.refresh()
            check_dates(other, {copied[uid]: date for uid, date in dated.items()})
    store = reopen(store)
    with store.folder("INBOX") as inbox:
        check_dates(inbox, dated)
        first = min(dated)
        inbox.set_flags([first], [DELETED], "add")
        inbox.expunge()
        del dated[first]
        check_dates(inbox, dated)


def test_maildir_time_zones_survive_the_snapshot_and_compaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from mailagents.store import MaildirStore, _maildir_sync

    monkeypatch.setattr(_maildir_sync, "_RECENT_WINDOW_NS", 50_000_000)
    monkeypatch.setattr(_maildir_sync, "SNAPSHOT_MIN", 5)
    root = tmp_path / "md"
    zone = ZONES[0]
    dated = {}
    with MaildirStore(root, fsync=False) as store, store.folder("INBOX") as inbox:
        for i in range(8):
            date = datetime.datetime(2026, 1, 1, 12, i, tzinfo=zone)
            uid = inbox.append_bytes(make_message(f"s{i}"), internaldate=date).uid
            assert uid is not None
            dated[uid] = date
        core = inbox._core  # type: ignore[attr-defined]
        with core.uidlist.lock(), core.mutex:
            core.state.compact()
    with MaildirStore(root, fsync=False) as store, store.folder("INBOX") as inbox:
        check_dates(inbox, dated)  # new/ moved to cur/
    time.sleep(0.1)
    with MaildirStore(root, fsync=False) as store, store.folder("INBOX") as inbox:
        check_dates(inbox, dated)  # parsed; writes the snapshot
    time.sleep(0.1)
    assert (root / "mailagents-snapshot").exists()
    with MaildirStore(root, fsync=False) as store, store.folder("INBOX") as inbox:
        assert inbox._core.state.lazy_rows() is not None  # type: ignore[attr-defined]
        check_dates(inbox, dated)  # from the snapshot


# --- the two stores agree ---------------------------------------------------------------

# (flags before, mode, flags given, flags after); the same on every format.
FLAG_CASES = [
    ({"\\Seen"}, "add", ["\\SEEN"], {"\\Seen"}),
    ({"\\Seen"}, "remove", ["\\seen"], set()),
    (set(), "add", ["\\fLaGgEd", "\\deleted"], {"\\Flagged", "\\Deleted"}),
    ({"Work"}, "add", ["work"], {"Work"}),
    ({"Work"}, "add", ["WORK", "Home"], {"Work", "Home"}),
    ({"Work", "Home"}, "remove", ["wOrK"], {"Home"}),
    ({"Work"}, "set", ["work", "\\Seen"], {"Work", "\\Seen"}),
    ({"$Forwarded"}, "remove", ["$forwarded"], set()),
    ({"\\Answered", "Work"}, "set", [], set()),
    ({"\\Draft"}, "set", ["\\draft"], {"\\Draft"}),
]


@pytest.mark.parametrize(("before", "mode", "given", "after"), FLAG_CASES)
def test_flag_rules_are_the_same_on_both_formats(
    store: Store, before: set[str], mode: str, given: list[str], after: set[str]
) -> None:
    with store.folder("INBOX") as inbox:
        uid = inbox.append_bytes(make_message(), flags=before).uid
        other = inbox.append_bytes(make_message("other"), flags=before).uid
        assert uid is not None and other is not None
        inbox.refresh()
        highest = inbox.status().highestmodseq
        changed, refused = inbox.set_flags([uid], given, mode)  # type: ignore[arg-type]
        assert refused == []
        assert inbox.info(uid).flags == after
        assert inbox.info(other).flags == before
        if {f.lower() for f in after} == {f.lower() for f in before}:
            assert changed == []  # only messages that changed are returned
            assert inbox.info(uid).modseq <= highest
        else:
            assert [m.uid for m in changed] == [uid]
            assert changed[0].flags == after
            assert changed[0].modseq > highest
    store = reopen(store)
    with store.folder("INBOX") as inbox:
        assert inbox.info(uid).flags == after


def test_set_flags_returns_only_the_changed_messages(store: Store) -> None:
    with store.folder("INBOX") as inbox:
        seen = inbox.append_bytes(make_message("a"), flags=[SEEN]).uid
        unseen = inbox.append_bytes(make_message("b")).uid
        inbox.refresh()
        changed, _ = inbox.set_flags([seen, unseen, 12345], [SEEN], "add")
        assert [m.uid for m in changed] == [unseen]
        changed, _ = inbox.set_flags([seen, unseen], [SEEN], "add")
        assert changed == []


def test_renaming_a_folder_moves_its_subscriptions(store: Store) -> None:
    store.create_folder("Projects/Alpha")
    store.subscribe("Projects")
    store.subscribe("Projects/Alpha")
    store.subscribe("Elsewhere")
    store.rename_folder("Projects", "Done")
    assert sorted(store.subscriptions()) == ["Done", "Done/Alpha", "Elsewhere"]
    store = reopen(store)
    assert sorted(store.subscriptions()) == ["Done", "Done/Alpha", "Elsewhere"]


# --- quota, APPENDLIMIT, deliver_only -------------------------------------------------


def test_appendlimit_per_user_and_per_folder(store: Store) -> None:
    from mailagents.store import Limits, MessageTooBigError

    store.create_folder("Small")
    store.set_limits(Limits(append_limit=5000))
    store.set_limits(Limits(append_limit=2000), folder="Small")
    assert store.append_limit("INBOX") == 5000
    assert store.append_limit("Small") == 2000
    with store.folder("INBOX") as inbox, store.folder("Small") as small:
        assert inbox.append_bytes(make_message(size=5000)).size == 5000
        with pytest.raises(MessageTooBigError) as caught:
            inbox.append_bytes(make_message(size=5001))
        assert caught.value.limit == 5000
        with pytest.raises(MessageTooBigError):
            small.append_bytes(make_message(size=2001))
        writer = small.append()  # streamed: refused as soon as the limit is passed
        writer.write(make_message(size=1990)[:-2])
        with pytest.raises(MessageTooBigError):
            writer.write(b"\n" * 20)  # LF counts as CRLF
        inbox.refresh()
        small.refresh()
        assert len(inbox.messages()) == 1 and small.messages() == []
    store.set_limits(None)
    store.set_limits(None, folder="Small")
    with store.folder("Small") as small:
        small.append_bytes(make_message(size=9000))


def test_quota_storage_and_messages(store: Store) -> None:
    from mailagents.store import Limits, QuotaExceededError

    store.create_folder("Archive")
    store.set_limits(Limits(storage=10_000, messages=3))
    with store.folder("INBOX") as inbox, store.folder("Archive") as archive:
        inbox.append_bytes(make_message(size=4000))
        archive.append_bytes(make_message(size=4000))
        assert store.usage() == (8000, 2)
        with pytest.raises(QuotaExceededError) as caught:
            inbox.append_bytes(make_message(size=2001))
        assert (caught.value.resource, caught.value.scope) == ("STORAGE", "")
        inbox.append_bytes(make_message(size=1000))
        with pytest.raises(QuotaExceededError) as caught:
            inbox.append_bytes(make_message(size=800))
        assert caught.value.resource == "MESSAGE"
        inbox.refresh()
        with pytest.raises(QuotaExceededError):  # COPY too
            inbox.copy([inbox.messages()[0].uid], archive)
        archive.refresh()
        assert len(archive.messages()) == 1
    store.set_limits(Limits(messages=1), folder="Archive")
    store.set_limits(None)
    with store.folder("INBOX") as inbox, store.folder("Archive") as archive:
        inbox.refresh()
        with pytest.raises(QuotaExceededError) as caught:
            inbox.copy([inbox.messages()[0].uid], archive)
        assert caught.value.scope == "Archive"
        inbox.append_bytes(make_message())  # INBOX has no limit of its own


def test_deliver_only_is_part_of_the_interface(store: Store) -> None:
    from mailagents.store import Limits, MessageTooBigError

    with store.folder("INBOX", deliver_only=True) as inbox:
        assert inbox.deliver_only == (store_kind(store) == "maildir")
        inbox.append_bytes(make_message("delivered"), assign_uid=False)
    assert store.status("INBOX").messages == 1
    if store_kind(store) == "maildir":
        store.set_limits(Limits(append_limit=3000))
        with store.folder("INBOX", deliver_only=True) as inbox:
            results = inbox.append_batch(  # type: ignore[attr-defined]
                [make_message(size=2000), make_message(size=4000)]
            )
        assert not isinstance(results[0], Exception)
        assert isinstance(results[1], MessageTooBigError)
        assert store.status("INBOX").messages == 2


@given(garbage=st.binary(max_size=300), keep=st.integers(min_value=0, max_value=400))
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_damage_to_the_side_file_keeps_highestmodseq_monotonic(
    tmp_path_factory: pytest.TempPathFactory, kind: str, garbage: bytes, keep: int
) -> None:
    """Whatever the side file becomes when its first line is damaged (cut short
    anywhere in it, then any bytes), opening works, every message is still there, and
    under the same UIDVALIDITY the HIGHESTMODSEQ is not behind. (A Maildir journal cut
    short after an intact first line is not detected: see the module docs of
    ``mailagents.store._maildir_state``.)"""
    from tests.store.conftest import close_all, open_store

    root = tmp_path_factory.mktemp("damage") / "store"
    store = open_store(kind, root, fsync=False)
    try:
        uidvalidity, highest = busy_inbox(store)
        path = state_file(store)
        data = path.read_bytes()
        keep = min(keep, data.find(b"\n") - 1)
        path.write_bytes(data[:keep] + garbage)
        store = reopen(store)
        with store.folder("INBOX") as inbox:
            status = inbox.status()
            assert len(inbox.messages()) == 4
            if status.uidvalidity == uidvalidity:
                assert status.highestmodseq >= highest
                changes = inbox.changes_since(highest)
                if status.highestmodseq > highest:
                    # a restart: all reported changed, history said incomplete
                    assert not changes.expunged_complete or changes.changed or changes.added
    finally:
        close_all(root)


def test_maildir_journal_of_the_previous_format_reads(store: Store) -> None:
    """A first line without ``C`` and ``R`` (what earlier versions wrote) is taken as it
    is: no restart, the same HIGHESTMODSEQ."""
    if store_kind(store) != "maildir":
        pytest.skip("the Maildir journal")
    uidvalidity, highest = busy_inbox(store)
    path = state_file(store)
    first, _, rest = path.read_bytes().partition(b"\n")
    fields = [f for f in first.split(b" ") if not f.startswith((b"C", b"R"))]
    assert fields[:2] == [b"mailagents-modseq", b"1"] and len(fields) == 5
    path.write_bytes(b" ".join(fields) + b"\n" + rest)
    store = reopen(store)
    with store.folder("INBOX") as inbox:
        assert (inbox.status().uidvalidity, inbox.status().highestmodseq) == (uidvalidity, highest)
