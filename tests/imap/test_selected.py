"""The selected-mailbox view (mailagents/imap/_selected.py): the RFC 9051 §7.5.1 rules
table-driven, the numbering, and a hypothesis stateful test in which a client model
rebuilt from the emitted updates always matches the store at sync points."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mailagents._protocol import LocalProtocolError
from mailagents.imap._selected import (
    Exists,
    Expunge,
    FlagsUpdate,
    SelectedMailbox,
    Update,
    Vanished,
    may_expunge,
)
from mailagents.imap._seqset import SequenceSet


@pytest.mark.parametrize(
    ("command", "uid", "allowed"),
    [
        (None, False, False),  # §7.5.1: not while no command is in progress
        ("FETCH", False, False),
        ("STORE", False, False),
        ("SEARCH", False, False),
        ("SORT", False, False),
        ("THREAD", False, False),
        ("FETCH", True, True),  # "UID FETCH ... are different commands"
        ("STORE", True, True),
        ("SEARCH", True, True),
        ("NOOP", False, True),
        ("IDLE", False, True),
        ("CHECK", False, True),
        ("EXPUNGE", False, True),
        ("MOVE", False, True),  # RFC 6851 §3.3: MOVE reports its own expunges
        ("COPY", False, True),
        ("SELECT", False, True),
    ],
)
def test_when_expunge_may_be_sent(command: str | None, uid: bool, allowed: bool) -> None:
    assert may_expunge(command, uid=uid) is allowed
    view = SelectedMailbox([10, 20, 30])
    view.expunged([20])
    sent = view.updates(command, uid=uid)
    assert (sent == [Expunge(seq=2)]) is allowed
    assert view.exists == (2 if allowed else 3)


def test_exists_may_go_out_while_no_command_is_in_progress() -> None:
    view = SelectedMailbox([1, 2])
    view.appended([5, 6])
    view.expunged([1])
    assert view.updates(None) == [Exists(count=4)]  # RFC 9051 §5.3; the expunge waits
    assert [view.uid(s) for s in range(1, 5)] == [1, 2, 5, 6]
    assert view.updates("NOOP") == [Expunge(seq=1)]
    assert view.exists == 3 and view.seq(5) == 2


def test_expunges_ascending_then_exists() -> None:
    # RFC 9051 §6.4.3: each number as it stands once the earlier ones are gone; RFC
    # 2177's example: the expunges, then the EXISTS that counts the new message.
    view = SelectedMailbox([1, 2, 3, 4, 5])
    view.expunged([2, 4])
    view.appended([9])
    assert view.updates("NOOP") == [Expunge(seq=2), Expunge(seq=3), Exists(count=4)]
    assert [view.uid(s) for s in range(1, view.exists + 1)] == [1, 3, 5, 9]


def test_qresync_sends_vanished_and_uids_in_fetch() -> None:
    view = SelectedMailbox([1, 2, 3, 4, 5], qresync=True)
    view.expunged([2, 3, 5])
    view.flags_changed(4, ["\\Seen"], modseq=77)
    assert view.updates("FETCH") == [FlagsUpdate(seq=4, flags=("\\Seen",), uid=4, modseq=77)]
    assert view.updates("NOOP") == [Vanished(uids=SequenceSet.from_numbers([2, 3, 5]))]
    assert view.exists == 2


def test_rfc_9051_expunge_example() -> None:
    # RFC 9051 §6.4.3: messages 3, 4, 7 and 11 expunged.
    view = SelectedMailbox(range(1, 12))
    view.expunged([3, 4, 7, 11])
    assert view.updates("EXPUNGE") == [
        Expunge(seq=3),
        Expunge(seq=3),
        Expunge(seq=5),
        Expunge(seq=8),
    ]


def test_condstore_modseq_without_uid() -> None:
    view = SelectedMailbox([1, 2], condstore=True)
    view.flags_changed(2, ["\\Flagged"], modseq=5)
    assert view.updates(None) == [FlagsUpdate(seq=2, flags=("\\Flagged",), modseq=5)]
    plain = SelectedMailbox([1, 2])
    plain.flags_changed(2, ["\\Flagged"], modseq=5)
    assert plain.updates(None) == [FlagsUpdate(seq=2, flags=("\\Flagged",))]


def test_restate_flags_replaces_or_drops_a_stale_update() -> None:
    view = SelectedMailbox([1, 2, 3], condstore=True)
    view.flags_changed(1, ["\\Deleted"], modseq=5)
    view.flags_changed(2, ["\\Deleted"], modseq=5)
    view.restate_flags(1, ["\\Seen"], 6, told=False)  # a .SILENT STORE: the new flags
    view.restate_flags(2, ["\\Seen"], 6, told=True)  # the STORE's own FETCH told them
    view.restate_flags(3, ["\\Seen"], 6, told=False)  # nothing was waiting: nothing to say
    assert view.updates("STORE") == [FlagsUpdate(seq=1, flags=("\\Seen",), modseq=6)]


def test_flags_of_expunged_and_unknown_messages() -> None:
    view = SelectedMailbox([1, 2, 3])
    view.expunged([2])
    view.flags_changed(2, ["\\Seen"])
    assert view.updates("FETCH") == []
    view.appended([7])
    view.expunged([7])  # gone before the client heard of it: never told
    view.flags_changed(7, ["\\Seen"])
    assert view.updates("NOOP") == [Expunge(seq=2)]
    with pytest.raises(LocalProtocolError):
        view.flags_changed(8, [])


def test_uids_strictly_ascending() -> None:
    with pytest.raises(LocalProtocolError):
        SelectedMailbox([3, 2])
    with pytest.raises(LocalProtocolError):
        SelectedMailbox([0, 1])
    view = SelectedMailbox([5])
    with pytest.raises(LocalProtocolError):
        view.appended([5])
    view.appended([6])
    view.expunged([6])
    with pytest.raises(LocalProtocolError):
        view.appended([6])  # never reused (RFC 9051 §2.3.1.1)
    with pytest.raises(LocalProtocolError):
        view.uid(2)


def test_messages_by_sequence_and_uid() -> None:
    view = SelectedMailbox([3, 7, 9, 20])
    assert list(view.messages(SequenceSet.parse("2:*"))) == [(2, 7), (3, 9), (4, 20)]
    assert list(view.messages(SequenceSet.parse("4:1,2"))) == [(1, 3), (2, 7), (3, 9), (4, 20)]
    assert list(view.messages(SequenceSet.parse("9:100"), uid=True)) == [(3, 9), (4, 20)]
    assert list(view.messages(SequenceSet.parse("1:4294967295"), uid=True)) == [
        (1, 3),
        (2, 7),
        (3, 9),
        (4, 20),
    ]
    # "21:*" with largest UID 20 is 20:21 (RFC 9051 §6.4.8): the last message.
    assert list(view.messages(SequenceSet.parse("21:*"), uid=True)) == [(4, 20)]
    assert list(view.messages(SequenceSet.parse("5:6"))) == []
    assert list(SelectedMailbox([]).messages(SequenceSet.parse("1:*"))) == []


def test_a_million_messages_fit() -> None:
    view = SelectedMailbox(range(1, 1_000_001))
    assert view.exists == 1_000_000 and view.seq(999_999) == 999_999
    assert view._uids.itemsize * len(view._uids) <= 4_000_000
    view.expunged([2, 500_000])
    assert view.updates("NOOP") == [Expunge(seq=2), Expunge(seq=499_999)]
    assert view.uid(2) == 3


# --- the stateful test -----------------------------------------------------------------

COMMANDS = [
    (None, False),
    ("FETCH", False),
    ("STORE", False),
    ("SEARCH", False),
    ("FETCH", True),
    ("SEARCH", True),
    ("NOOP", False),
    ("IDLE", False),
    ("CHECK", False),
]


class ViewMachine(RuleBasedStateMachine):
    """The store (truth), the view under test, and a client that knows only what the
    emitted updates told it."""

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[int, tuple[str, ...]] = {u: () for u in (1, 2, 3, 5, 8)}
        self.next_uid = 9
        self.qresync = False
        self.view = SelectedMailbox(sorted(self.store))
        self.client: list[int] = sorted(self.store)  # UIDs by sequence number
        self.client_flags: dict[int, tuple[str, ...]] = dict(self.store)

    @rule(n=st.integers(1, 3))
    def append(self, n: int) -> None:
        uids = list(range(self.next_uid, self.next_uid + n))
        self.next_uid += n
        for u in uids:
            self.store[u] = ()
        self.view.appended(uids)

    @precondition(lambda self: self.store)
    @rule(data=st.data())
    def expunge(self, data: st.DataObject) -> None:
        uids = data.draw(st.sets(st.sampled_from(sorted(self.store)), min_size=1, max_size=3))
        for u in uids:
            del self.store[u]
        self.view.expunged(uids)

    @precondition(lambda self: self.store)
    @rule(data=st.data(), flags=st.sets(st.sampled_from(["\\Seen", "\\Flagged", "x"])))
    def change_flags(self, data: st.DataObject, flags: set[str]) -> None:
        uid = data.draw(st.sampled_from(sorted(self.store)))
        self.store[uid] = tuple(sorted(flags))
        self.view.flags_changed(uid, self.store[uid], modseq=uid)

    @rule(command=st.sampled_from(COMMANDS))
    def client_command(self, command: tuple[str | None, bool]) -> None:
        name, uid = command
        updates = self.view.updates(name, uid=uid)
        if not may_expunge(name, uid=uid):
            assert not any(isinstance(u, Expunge | Vanished) for u in updates)
        self.apply(updates)

    @rule()
    def sync(self) -> None:
        self.apply(self.view.updates("NOOP"))
        assert self.client == sorted(self.store)
        assert {u: self.client_flags[u] for u in self.client} == self.store
        assert not self.view.pending

    def apply(self, updates: list[Update]) -> None:
        for update in updates:
            if isinstance(update, Exists):
                assert update.count >= len(self.client)  # EXISTS never shrinks
                known = self.client[-1] if self.client else 0
                fresh = [u for u in sorted(self.store) if u > known]
                # The new messages the client now counts: as many as EXISTS says, each
                # fetched (flags and all) as a client would.
                self.client += fresh[: update.count - len(self.client)]
                assert len(self.client) == update.count
                for u in fresh:
                    self.client_flags[u] = self.store[u]
            elif isinstance(update, Expunge):
                assert 1 <= update.seq <= len(self.client)
                del self.client[update.seq - 1]
            elif isinstance(update, Vanished):
                gone = set(update.uids.iter_numbers(max(self.client, default=1)))
                assert gone <= set(self.client)
                self.client = [u for u in self.client if u not in gone]
            else:
                assert 1 <= update.seq <= len(self.client)
                self.client_flags[self.client[update.seq - 1]] = update.flags

    @invariant()
    def view_matches_client(self) -> None:
        assert self.view.exists == len(self.client)
        assert [self.view.uid(s) for s in range(1, self.view.exists + 1)] == self.client
        assert self.client == sorted(self.client)  # UIDs ascending


class QresyncMachine(ViewMachine):
    def __init__(self) -> None:
        super().__init__()
        self.view = SelectedMailbox(sorted(self.store), qresync=True)


TestView = ViewMachine.TestCase
TestView.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestQresync = QresyncMachine.TestCase
TestQresync.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
