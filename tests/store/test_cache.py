"""The per-folder message cache (mailagents/store/_cache.py): entries computed from
both store formats, read back by another handle, never served wrong from a damaged,
truncated, foreign or half-written file, bounded on disk, written in the background."""

from __future__ import annotations

import datetime
import os
import random
import time
from pathlib import Path

import pytest

from mailagents.imap._mime import scan_message
from mailagents.store._cache import FolderCache, build_entry
from mailagents.store._cache_format import (
    HEADER_SIZE,
    CachedMessage,
    CacheFormatError,
    decode_entry,
    encode_entry,
    encode_header,
    encode_record,
    record_at,
)
from mailagents.store._cache_subject import base_subject, sent_date
from tests.store.conftest import open_store

UIDVALIDITY = 1_700_000_000


def mime_message(index: int) -> bytes:
    """Message ``index``: a deterministic message of one of several MIME shapes."""
    rng = random.Random(index)
    head = (
        f"From: Sender {index} <s{index}@example.test>\r\nTo: r@example.test\r\n"
        f"Cc: c{index % 7}@example.test\r\nSubject: Re: [list] topic {index % 13} (fwd)\r\n"
        f"Date: Mon, 7 Dec 2026 12:{index % 60:02d}:00 +0100\r\n"
        f"Message-ID: <{index}@example.test>\r\nIn-Reply-To: <{index - 1}@example.test>\r\n"
        f"References: <{index - 2}@example.test>\r\n <{index - 1}@example.test>\r\n"
    ).encode()
    text = b"".join(b"line %d of %d\r\n" % (i, index) for i in range(rng.randrange(1, 40)))
    shape = index % 4
    if shape == 0:
        return head + b"\r\n" + text
    if shape == 1:
        return (
            head + b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            b"preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\n" + text + b"--b1\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
            b"\r\nAAAA\r\n--b1--\r\n"
        )
    if shape == 2:
        inner = b"From: inner@example.test\r\nSubject: inner\r\n\r\n" + text
        return (
            head + b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=x\r\n\r\n"
            b"--x\r\nContent-Type: text/plain\r\n\r\nplain\r\n--x\r\n"
            b"Content-Type: message/rfc822\r\n\r\n" + inner + b"--x--\r\n"
        )
    return head + b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>" + text + b"</p>\r\n"


def entry(uid: int, index: int | None = None) -> CachedMessage:
    """The cache entry of ``mime_message(index)`` (default ``uid``) under ``uid``."""
    return build_entry(uid, [mime_message(uid if index is None else index)])


def cache(path: Path, **kwargs: object) -> FolderCache:
    kwargs.setdefault("background", False)
    return FolderCache(path / "cache", UIDVALIDITY, **kwargs)  # type: ignore[arg-type]


# -- the entry ----------------------------------------------------------------------


def test_entry_fields() -> None:
    found = entry(5)
    assert found.part_map == scan_message(mime_message(5))
    assert found.size == len(mime_message(5))
    assert found.references == "<3@example.test> <4@example.test>"
    assert found.base_subject == "topic 5"
    assert found.header("Message-ID") == "<5@example.test>"
    assert found.header("cc") == "c5@example.test"
    assert found.header("References") == found.references
    assert found.sent_date == datetime.datetime(
        2026, 12, 7, 12, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
    )
    with pytest.raises(KeyError):
        found.header("X-Other")


def test_entry_fed_in_any_chunks_is_the_same() -> None:
    data = mime_message(6)
    whole = build_entry(6, [data])
    assert build_entry(6, [data[i : i + 1] for i in range(len(data))]) == whole
    assert build_entry(6, [data[:7], data[7:100], data[100:]]) == whole


def test_entry_without_header_fields() -> None:
    found = build_entry(1, [b"no header at all"])
    assert found.references is None and found.base_subject == "" and found.sent_date is None
    assert decode_entry(1, encode_entry(found)) == found


@pytest.mark.parametrize("index", range(8))
def test_entry_round_trip(index: int) -> None:
    found = entry(index + 1)
    assert decode_entry(index + 1, encode_entry(found)) == found


def test_entry_damage_is_an_error() -> None:
    payload = encode_entry(entry(3))
    for cut in range(len(payload)):
        with pytest.raises(CacheFormatError):  # the part map is read on first use
            decode_entry(3, payload[:cut]).part_map  # noqa: B018
    with pytest.raises(CacheFormatError):
        decode_entry(3, payload + b"\x00").part_map  # noqa: B018
    assert decode_entry(3, payload).part_map == entry(3).part_map


def test_structure_recomputes_a_part_map_that_does_not_read(tmp_path: Path) -> None:
    good = entry(3)
    bad = CachedMessage(
        uid=3,
        size=good.size,
        fields=good.fields,
        references=good.references,
        base_subject=good.base_subject,
        sent_date=good.sent_date,
        part_map_bytes=good.part_map_bytes[:-1],
    )
    with cache(tmp_path) as one:
        one.put(bad)
        one.flush()
    with cache(tmp_path) as two:
        got = two.structure(3, lambda: open_bytes(mime_message(3)), good.size)
        assert got == good and got.part_map == good.part_map


def test_record_framing() -> None:
    record = encode_record(1, 9, UIDVALIDITY, b"payload")
    assert record_at(record, 0) == (1, 9, UIDVALIDITY, 16, len(record))
    for cut in range(len(record)):
        assert record_at(record[:cut], 0) is None
    for pos in range(len(record)):
        damaged = bytearray(record)
        damaged[pos] ^= 0x40
        try:  # a damaged length reads as a record not whole yet
            assert record_at(bytes(damaged), 0) is None
        except CacheFormatError:
            pass


# RFC 5256 §2.1: the base subject.
BASE_SUBJECTS = [
    ("Hello", "Hello"),
    ("Re: Hello", "Hello"),
    ("RE: re: Fwd: Hello", "Hello"),
    ("Re[2]: Hello", "Hello"),
    ("Fw: Hello", "Hello"),
    ("Re: [list] Hello", "Hello"),
    ("[list] Re: Hello", "Hello"),
    ("[list]", "[list]"),
    ("Hello (fwd)", "Hello"),
    ("Hello (fwd) (FWD)  ", "Hello"),
    ("[fwd: Hello]", "Hello"),
    ("[Fwd: Re: Hello (fwd)]", "Hello"),
    ("  Hello   world  ", "Hello world"),
    ("=?utf-8?q?Gr=C3=BC=C3=9Fe?=", "Grüße"),
    ("Re: =?iso-8859-1?q?caf=E9?=", "café"),
    ("Re:", ""),
    ("", ""),
    ("Rex: Hello", "Rex: Hello"),
]


@pytest.mark.parametrize(("subject", "base"), BASE_SUBJECTS)
def test_base_subject(subject: str, base: str) -> None:
    assert base_subject(subject) == base


def test_base_subject_absent() -> None:
    assert base_subject(None) == ""


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("Mon, 7 Dec 2026 12:00:00 +0000", datetime.datetime(2026, 12, 7, 12, tzinfo=datetime.UTC)),
        ("7 Dec 2026 12:00:00 -0000", datetime.datetime(2026, 12, 7, 12, tzinfo=datetime.UTC)),
        ("not a date", None),
        ("", None),
        (None, None),
    ],
)
def test_sent_date(date: str | None, expected: datetime.datetime | None) -> None:
    assert sent_date(date) == expected


# -- through the stores -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["maildir", "mbox"])
def test_structure_from_each_store_format(kind: str, tmp_path: Path) -> None:
    with open_store(kind, tmp_path / "store") as store, store.folder("INBOX") as folder:
        uids = [folder.append_bytes(mime_message(i)).uid for i in range(1, 9)]
        folder.refresh()
        infos = {m.uid: m for m in folder.messages()}
        with cache(tmp_path) as first:
            for uid in uids:
                assert uid is not None
                got = first.structure(uid, lambda u=uid: folder.open_message(u), infos[uid].size)
                assert got.part_map == scan_message(folder.read_message(uid))
                assert got.size == infos[uid].size
        with cache(tmp_path) as second:
            for index, uid in enumerate(uids, 1):
                assert uid is not None
                got = second.get(uid, infos[uid].size)
                assert got is not None and got == entry(uid, index)

                def fail() -> None:
                    raise AssertionError("a hit must not read the message")

                assert second.structure(uid, fail, infos[uid].size) == got  # type: ignore[arg-type]
                assert second.get(uid, infos[uid].size + 1) is None


def test_put_flush_get_drop(tmp_path: Path) -> None:
    with cache(tmp_path) as one, cache(tmp_path) as two:
        assert one.get(1) is None
        one.put(entry(1))
        assert one.get(1) == entry(1)  # served from the queue
        assert two.get(1) is None
        one.flush()
        assert two.get(1) == entry(1)
        one.drop([1])
        assert one.get(1) is None
        assert two.get(1) == entry(1)
        one.flush()
        # ``two`` read the entry before the drop; a UID's message never changes, so
        # it is still right. A handle that scans the file now sees the drop.
        assert two.get(1) == entry(1)
        with cache(tmp_path) as three:
            assert three.get(1) is None
            assert three.cached_uids() == frozenset()


def test_latest_record_wins(tmp_path: Path) -> None:
    with cache(tmp_path) as one:
        one.put(entry(1, 1))
        one.flush()
        one.put(entry(1, 2))
        one.flush()
    with cache(tmp_path) as two:
        assert two.get(1) == entry(1, 2)


def test_uidvalidity_change_drops_the_cache(tmp_path: Path) -> None:
    with cache(tmp_path) as one:
        one.put(entry(1))
    with FolderCache(tmp_path / "cache", UIDVALIDITY + 1, background=False) as other:
        assert other.get(1) is None
        other.put(entry(2))
        other.flush()
        assert other.get(2) == entry(2)
    with cache(tmp_path) as again:
        assert again.get(1) is None and again.get(2) is None


def test_foreign_records_are_not_served(tmp_path: Path) -> None:
    """A record carrying another UIDVALIDITY (or the wrong UID) is a miss."""
    path = tmp_path / "cache"
    path.write_bytes(
        encode_header(UIDVALIDITY) + encode_record(1, 1, UIDVALIDITY + 1, encode_entry(entry(1)))
    )
    with cache(tmp_path) as one:
        assert one.get(1) is None


def test_lost_cache_is_rebuilt(tmp_path: Path) -> None:
    filled(tmp_path, 1)
    os.unlink(tmp_path / "cache")
    with cache(tmp_path) as one:
        assert one.get(1) is None
        assert one.structure(1, lambda: open_bytes(mime_message(1))) == entry(1)
        one.flush()
    with cache(tmp_path) as two:
        assert two.get(1) == entry(1)


def open_bytes(data: bytes):  # type: ignore[no-untyped-def]
    import io

    return io.BytesIO(data)


def filled(tmp_path: Path, count: int = 6) -> bytes:
    with cache(tmp_path) as one:
        for uid in range(1, count + 1):
            one.put(entry(uid))
        one.flush()
    return (tmp_path / "cache").read_bytes()


def assert_never_wrong(tmp_path: Path, count: int) -> int:
    """Every entry a fresh handle serves is the right one; returns how many it served."""
    served = 0
    with cache(tmp_path) as reader:
        for uid in range(1, count + 2):
            got = reader.get(uid)
            if got is not None:
                assert got == entry(uid)
                served += 1
    return served


def test_truncated_anywhere(tmp_path: Path) -> None:
    data = filled(tmp_path)
    step = max(1, len(data) // 300)
    for cut in range(0, len(data), step):
        (tmp_path / "cache").write_bytes(data[:cut])
        assert_never_wrong(tmp_path, 6)
    # and a writer after a cut carries on: the torn tail is cut off
    (tmp_path / "cache").write_bytes(data[: len(data) - 5])
    with cache(tmp_path) as writer:
        writer.put(entry(9))
        writer.flush()
    with cache(tmp_path) as reader:
        assert reader.get(9) == entry(9)
        assert reader.get(5) == entry(5) and reader.get(6) is None


def test_damaged_anywhere(tmp_path: Path) -> None:
    data = filled(tmp_path)
    rng = random.Random(7)
    for _ in range(200):
        damaged = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        (tmp_path / "cache").write_bytes(bytes(damaged))
        assert_never_wrong(tmp_path, 6)
        with cache(tmp_path) as writer:  # the writer repairs: the file is usable again
            writer.put(entry(7))
            writer.flush()
        with cache(tmp_path) as reader:
            assert reader.get(7) == entry(7)
        assert_never_wrong(tmp_path, 7)


def test_garbage_file(tmp_path: Path) -> None:
    (tmp_path / "cache").write_bytes(os.urandom(5000))
    assert assert_never_wrong(tmp_path, 3) == 0
    with cache(tmp_path) as writer:
        writer.put(entry(1))
        writer.flush()
    assert assert_never_wrong(tmp_path, 3) == 1


def test_half_written_tail_is_waited_for(tmp_path: Path) -> None:
    """A record still being written (part of it on disk) is not served, and is read
    once the rest arrives."""
    filled(tmp_path, 2)
    record = encode_record(1, 3, UIDVALIDITY, encode_entry(entry(3)))
    with cache(tmp_path) as reader, open(tmp_path / "cache", "ab") as raw:
        raw.write(record[: len(record) // 2])
        raw.flush()
        assert reader.get(3) is None
        assert reader.get(2) == entry(2)
        raw.write(record[len(record) // 2 :])
        raw.flush()
        assert reader.get(3) == entry(3)


def test_compaction_drops_dead_records(tmp_path: Path) -> None:
    with cache(tmp_path, max_size=1 << 20) as one:
        for round_ in range(60):
            for uid in range(1, 11):
                one.put(entry(uid, uid + round_))
            one.flush()
        size = one.file_size()
        live = sum(len(encode_entry(entry(u))) + 20 for u in range(1, 11))
        assert size < 3 * live + (64 << 10)
    with cache(tmp_path) as two:
        for uid in range(1, 11):
            assert two.get(uid) == entry(uid, uid + 59)


def test_compact_keeps_only_the_folders_uids(tmp_path: Path) -> None:
    filled(tmp_path, 6)
    with cache(tmp_path) as one:
        before = one.file_size()
        one.compact(keep={2, 4, 99})
        assert one.cached_uids() == {2, 4}
        assert one.file_size() < before
    with cache(tmp_path) as two:
        assert two.get(2) == entry(2) and two.get(1) is None


def test_size_bound(tmp_path: Path) -> None:
    bound = 40_000
    with cache(tmp_path, max_size=bound) as one:
        for uid in range(1, 301):
            one.put(entry(uid))
            if uid % 7 == 0:
                one.flush()
            assert one.file_size() <= bound
        one.flush()
        assert one.file_size() <= bound
        kept = one.cached_uids()
    assert 300 in kept and 1 not in kept  # the oldest went first
    assert assert_never_wrong(tmp_path, 300) == len(kept)


def test_pending_bound(tmp_path: Path) -> None:
    with cache(tmp_path, max_pending=3) as one:
        for uid in range(1, 6):
            one.put(entry(uid))
        assert [one.get(uid) is not None for uid in range(1, 6)] == [True] * 3 + [False] * 2
        one.drop([1])  # a drop is always queued
        assert one.get(1) is None


def test_background_writer(tmp_path: Path) -> None:
    with FolderCache(tmp_path / "cache", UIDVALIDITY) as one, cache(tmp_path) as two:
        one.put(entry(1))
        deadline = time.monotonic() + 30
        while two.get(1) is None:
            assert time.monotonic() < deadline, "the background writer never wrote"
            time.sleep(0.01)
        assert two.get(1) == entry(1)


def test_closed_refuses_puts(tmp_path: Path) -> None:
    one = cache(tmp_path)
    one.close()
    one.close()
    with pytest.raises(ValueError):
        one.put(entry(1))


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        FolderCache(tmp_path / "c", 1, max_size=10)
    with pytest.raises(ValueError):
        FolderCache(tmp_path / "c", 1, dead_fraction=1.5)


def test_header_only_file(tmp_path: Path) -> None:
    (tmp_path / "cache").write_bytes(encode_header(UIDVALIDITY))
    assert (tmp_path / "cache").stat().st_size == HEADER_SIZE
    assert assert_never_wrong(tmp_path, 2) == 0


def test_threads_share_one_handle(tmp_path: Path) -> None:
    """Executor threads computing, reading and dropping at once, with the background
    writer flushing meanwhile: every entry served is right, and all are on disk after."""
    from concurrent.futures import ThreadPoolExecutor

    with FolderCache(tmp_path / "cache", UIDVALIDITY, max_size=1 << 20) as shared:

        def work(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(60):
                uid = rng.randrange(1, 40)
                got = shared.structure(uid, lambda u=uid: open_bytes(mime_message(u)))
                assert got == entry(uid)
                if rng.random() < 0.05:
                    shared.drop([rng.randrange(40, 50)])
                if rng.random() < 0.05:
                    shared.compact()

        with ThreadPoolExecutor(8) as pool:
            for future in [pool.submit(work, seed) for seed in range(8)]:
                future.result()
        shared.flush()
        uids = shared.cached_uids()
    with cache(tmp_path) as reader:
        assert reader.cached_uids() == uids
        for uid in uids:
            assert reader.get(uid) == entry(uid)
