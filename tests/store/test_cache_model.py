"""The message cache against a dict: random puts, drops, flushes, compactions,
reopenings, torn tails and damaged octets, with two handles on one file. What a
handle serves is always the model's entry (or a miss where damage or a bound allows
one); with no damage and no bound reached, a fresh handle serves exactly the model."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailagents.store._cache import FolderCache
from mailagents.store._cache_format import CachedMessage
from tests.store.test_cache import UIDVALIDITY, entry

UIDS = st.integers(1, 12)
VERSIONS = st.integers(0, 3)

ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 1), UIDS, VERSIONS),
        st.tuples(st.just("drop"), st.integers(0, 1), UIDS),
        st.tuples(st.just("flush"), st.integers(0, 1)),
        st.tuples(st.just("compact"), st.integers(0, 1)),
        st.tuples(st.just("reopen"), st.integers(0, 1)),
        st.tuples(st.just("tear"), st.integers(1, 40)),
        st.tuples(st.just("damage"), st.integers(0, 10_000), st.integers(0, 7)),
    ),
    max_size=40,
)

_ENTRIES: dict[tuple[int, int], CachedMessage] = {}


def versioned(uid: int, version: int) -> CachedMessage:
    """Entry ``uid`` computed from one of a few messages (what the model compares)."""
    key = (uid, version)
    if key not in _ENTRIES:
        _ENTRIES[key] = entry(uid, uid * 10 + version)
    return _ENTRIES[key]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_cache_against_a_dict(script: list[tuple[object, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cache"

        def open_handle() -> FolderCache:
            return FolderCache(path, UIDVALIDITY, background=False, max_size=1 << 22)

        handles = [open_handle(), open_handle()]
        # per UID, the versions a handle may serve: the latest put, or any put since
        # the last drop (a handle that indexed an older record may serve it: the
        # message under a UID never changes, so in the store they are all equal)
        model: dict[int, CachedMessage] = {}
        allowed: dict[int, set[int]] = {}
        ever_dropped: set[int] = set()
        damaged = False
        try:
            for op in script:
                kind = op[0]
                if kind == "put":
                    _, h, uid, version = op
                    assert isinstance(h, int) and isinstance(uid, int)
                    assert isinstance(version, int)
                    handles[h].put(versioned(uid, version))
                    model[uid] = versioned(uid, version)
                    allowed.setdefault(uid, set()).add(version)
                elif kind == "drop":
                    _, h, uid = op
                    assert isinstance(h, int) and isinstance(uid, int)
                    handles[h].drop([uid])
                    model.pop(uid, None)
                    ever_dropped.add(uid)
                elif kind in ("flush", "compact"):
                    h = op[1]
                    assert isinstance(h, int)
                    # the other handle's queue is flushed first: the model's order is
                    # the order of flushes only when one handle holds the newest puts
                    handles[1 - h].flush()
                    if kind == "flush":
                        handles[h].flush()
                    else:
                        handles[h].compact()
                elif kind == "reopen":
                    h = op[1]
                    assert isinstance(h, int)
                    handles[h].close()
                    handles[h] = open_handle()
                elif kind == "tear" and path.exists():
                    count = op[1]
                    assert isinstance(count, int)
                    size = path.stat().st_size
                    os.truncate(path, max(0, size - count))
                    damaged = True
                elif kind == "damage" and path.exists():
                    _, pos, bit = op
                    assert isinstance(pos, int) and isinstance(bit, int)
                    data = bytearray(path.read_bytes())
                    if data:
                        data[pos % len(data)] ^= 1 << bit
                        path.write_bytes(bytes(data))
                        damaged = True
                for handle in handles:
                    for uid in range(1, 13):
                        got = handle.get(uid)
                        if got is not None:
                            assert any(got == versioned(uid, v) for v in allowed[uid])
            for handle in handles:
                handle.flush()
            with open_handle() as fresh:
                for uid in range(1, 13):
                    got = fresh.get(uid)
                    if got is not None:
                        assert any(got == versioned(uid, v) for v in allowed[uid])
                    elif not damaged and uid not in ever_dropped:
                        assert uid not in model, f"UID {uid} lost"
        finally:
            for handle in handles:
                handle.close()
