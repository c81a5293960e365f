"""Hypothesis stateful tests: random sequences of append, flag, copy, move, expunge,
rename and reopen, checked after every step against a simple in-memory model, for each
store format.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from mailagents.store import (
    ANSWERED,
    DELETED,
    DRAFT,
    FLAGGED,
    SEEN,
    Folder,
    Store,
)
from tests.store.conftest import FORMATS, open_store, reopen, store_class

FLAG_POOL = [SEEN, ANSWERED, FLAGGED, DELETED, DRAFT, "$Forwarded", "Work", "todo", "$Junk"]
SECOND_NAMES = ["Second", "Renamed", "Deep/Child", "Ünï & Co"]
KEYS = ["inbox", "second"]

# Lines that mbox formats must quote, plus ordinary text.
TRICKY_LINES = [b"From x", b"From ", b">From y", b">>From z", b".", b"..", b"", b"-- ",
                b"\tfolded", b"X"]
line_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40
).map(str.encode)
bodies = st.lists(st.one_of(st.sampled_from(TRICKY_LINES), line_text), max_size=8)
flag_sets = st.frozensets(st.sampled_from(FLAG_POOL), max_size=4)


@dataclass
class FolderModel:
    messages: dict[int, tuple[bytes, frozenset[str]]] = field(default_factory=dict)
    ever: set[int] = field(default_factory=set)
    uidvalidity: int | None = None
    modseqs: dict[int, int] = field(default_factory=dict)

    @property
    def max_ever(self) -> int:
        return max(self.ever, default=0)

    def give(self, uid: int) -> None:
        assert uid not in self.ever, f"UID {uid} handed out twice"
        assert uid > self.max_ever, f"UID {uid} not above {self.max_ever}"
        self.ever.add(uid)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.tmp = tempfile.mkdtemp(prefix="mailagents-sm-")
        self.root = os.path.join(self.tmp, "store")
        self.store: Store = open_store(kind, self.root, fsync=False)
        self.second = SECOND_NAMES[0]
        self.store.create_folder(self.second)
        self.model = {key: FolderModel() for key in KEYS}
        self.handles: dict[str, Folder] = {}
        self.counter = 0
        self._open_handles()

    # --- plumbing ----------------------------------------------------------------------

    def name(self, key: str) -> str:
        return "INBOX" if key == "inbox" else self.second

    def _open_handles(self) -> None:
        for key in KEYS:
            self.handles[key] = self.store.folder(self.name(key))
        for key in KEYS:
            validity = self.handles[key].status().uidvalidity
            model = self.model[key]
            if model.uidvalidity is None:
                model.uidvalidity = validity
            assert validity == model.uidvalidity, f"UIDVALIDITY of {key} changed"

    def _close_handles(self) -> None:
        for handle in self.handles.values():
            handle.close()
        self.handles.clear()

    def teardown(self) -> None:
        try:
            self._close_handles()
            self.store.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _highest(self, key: str) -> int:
        handle = self.handles[key]
        handle.refresh()
        return handle.status().highestmodseq

    # --- rules -------------------------------------------------------------------------

    @rule(
        key=st.sampled_from(KEYS),
        lines=bodies,
        final_newline=st.booleans(),
        lf=st.booleans(),
        flags=flag_sets,
        assign=st.booleans(),
        piece=st.integers(1, 64),
    )
    def append(
        self,
        key: str,
        lines: list[bytes],
        final_newline: bool,
        lf: bool,
        flags: frozenset[str],
        assign: bool,
        piece: int,
    ) -> None:
        self.counter += 1
        head = b"Subject: m%d\r\nFrom: a@example.test\r\n\r\n" % self.counter
        data = head + b"\r\n".join(lines)
        if final_newline or not lines:
            data += b"\r\n"
        sent = data.replace(b"\r\n", b"\n") if lf else data
        handle = self.handles[key]
        before = self._highest(key)
        writer = handle.append(flags=flags, assign_uid=assign)
        for i in range(0, len(sent), piece):
            writer.write(sent[i : i + piece])
        result = writer.commit()
        assert result.size == len(data)
        assert result.uidvalidity == self.model[key].uidvalidity
        model = self.model[key]
        if assign:
            assert result.uid is not None
            uid = result.uid
        else:
            assert result.uid is None
            handle.refresh()
            new = [m.uid for m in handle.messages() if m.uid not in model.messages]
            assert len(new) == 1, new
            uid = new[0]
        model.give(uid)
        model.messages[uid] = (data, flags)
        handle.refresh()
        assert handle.info(uid).modseq > before

    @rule(
        key=st.sampled_from(KEYS),
        data=st.data(),
        flags=flag_sets,
        mode=st.sampled_from(["set", "add", "remove"]),
    )
    def set_flags(self, key: str, data: st.DataObject, flags: frozenset[str], mode: str) -> None:
        model = self.model[key]
        existing = sorted(model.messages)
        chosen = data.draw(st.lists(st.sampled_from(existing), unique=True), "uids") \
            if existing else []
        before = self._highest(key)
        changed, refused = self.handles[key].set_flags(chosen, flags, mode)  # type: ignore[arg-type]
        assert list(refused) == []
        really_changed = set()
        for uid in chosen:
            body, old = model.messages[uid]
            new = (flags if mode == "set" else old | flags if mode == "add" else old - flags)
            model.messages[uid] = (body, frozenset(new))
            if new != old:
                really_changed.add(uid)
        returned = {m.uid: m for m in changed}
        assert set(returned) <= set(chosen)
        assert really_changed <= set(returned)
        for uid, info in returned.items():
            assert info.flags == model.messages[uid][1]
            if uid in really_changed:
                # A message whose flags change gets a new MODSEQ (RFC 7162 §3.1).
                assert info.modseq > before
        self.handles[key].refresh()
        for uid in chosen:
            if uid not in returned:
                # Only a message whose flags did not change may be left out.
                assert self.handles[key].info(uid).flags == model.messages[uid][1]

    def _transfer(self, key: str, data: st.DataObject, move: bool) -> None:
        src, dst = self.model[key], self.model["inbox" if key == "second" else "second"]
        dst_key = "inbox" if key == "second" else "second"
        existing = sorted(src.messages)
        chosen = data.draw(st.lists(st.sampled_from(existing), unique=True, min_size=1),
                           "uids")
        op = self.handles[key].move if move else self.handles[key].copy
        mapping = op(chosen, self.handles[dst_key])
        assert sorted(mapping) == sorted(chosen)
        new_uids = [mapping[u] for u in sorted(chosen)]
        assert new_uids == sorted(new_uids)
        for old in sorted(chosen):
            dst.give(mapping[old])
            dst.messages[mapping[old]] = src.messages[old]
            if move:
                del src.messages[old]

    @precondition(lambda self: any(self.model[k].messages for k in KEYS))
    @rule(key=st.sampled_from(KEYS), data=st.data())
    def copy(self, key: str, data: st.DataObject) -> None:
        if not self.model[key].messages:
            key = "inbox" if key == "second" else "second"
        self._transfer(key, data, move=False)

    @precondition(lambda self: any(self.model[k].messages for k in KEYS))
    @rule(key=st.sampled_from(KEYS), data=st.data())
    def move(self, key: str, data: st.DataObject) -> None:
        if not self.model[key].messages:
            key = "inbox" if key == "second" else "second"
        self._transfer(key, data, move=True)

    @rule(key=st.sampled_from(KEYS), data=st.data(), given=st.booleans())
    def expunge(self, key: str, data: st.DataObject, given: bool) -> None:
        model = self.model[key]
        existing = sorted(model.messages)
        deleted = {u for u, (_, flags) in model.messages.items() if DELETED in flags}
        if given:
            chosen = data.draw(st.lists(st.sampled_from(existing), unique=True), "uids") \
                if existing else []
            removed = self.handles[key].expunge(chosen)
            expected = deleted & set(chosen)
        else:
            removed = self.handles[key].expunge()
            expected = deleted
        assert sorted(removed) == sorted(expected)
        for uid in expected:
            del model.messages[uid]

    @rule(new=st.sampled_from(SECOND_NAMES))
    def rename_second(self, new: str) -> None:
        if new == self.second:
            return
        self._close_handles()
        self.store.rename_folder(self.second, new)
        self.second = new
        names = {info.name for info in self.store.folders()}
        assert new in names
        self._open_handles()

    @rule()
    def reopen(self) -> None:
        self._close_handles()
        self.store = reopen(self.store)
        self._open_handles()

    # --- invariants --------------------------------------------------------------------

    @invariant()
    def matches_the_model(self) -> None:
        for key in KEYS:
            handle, model = self.handles[key], self.model[key]
            handle.refresh()
            listed = handle.messages()
            uids = [m.uid for m in listed]
            assert uids == sorted(set(uids)), f"{key}: UIDs not strictly ascending: {uids}"
            assert uids == sorted(model.messages), (key, uids, sorted(model.messages))
            status = handle.status()
            assert status.messages == len(listed)
            assert status.uidvalidity == model.uidvalidity
            assert status.uidnext > model.max_ever
            assert status.unseen == sum(SEEN not in m.flags for m in listed)
            if listed:
                assert status.highestmodseq >= max(m.modseq for m in listed)
            for info in listed:
                body, flags = model.messages[info.uid]
                assert info.flags == flags, (key, info.uid, info.flags, flags)
                assert info.size == len(body)
                assert handle.read_message(info.uid) == body
                # A message's MODSEQ never goes down.
                assert info.modseq >= model.modseqs.get(info.uid, 0)
                model.modseqs[info.uid] = info.modseq
            for gone in set(model.modseqs) - set(model.messages):
                del model.modseqs[gone]


SETTINGS = settings(
    max_examples=min(settings.default.max_examples, 25),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize("kind", FORMATS)
def test_store_state_machine(kind: str) -> None:
    store_class(kind)  # skips while the format is not importable
    run_state_machine_as_test(lambda: StoreMachine(kind), settings=SETTINGS)
