"""SEARCH evaluation (mailagents/agents/_imap_search*.py) over real folders of both
store formats: RFC 9051 §6.4.4's keys one by one, table-driven, on a small corpus
built to tell each rule apart (encoded headers, base64 and quoted-printable text,
attachments that are not text, unparsable dates, nested messages)."""

from __future__ import annotations

import base64
import datetime
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailagents.agents._imap_search import (
    SearchResult,
    SearchView,
    has_modseq_key,
    search,
    search_result,
)
from mailagents.agents._imap_search_text import (
    HEADER_MAX,
    NeedleScanner,
    TextDecoder,
    decode_words,
    read_header,
)
from mailagents.imap import Frame, SequenceSet, parse_command
from mailagents.imap._mime import scan_message
from mailagents.imap._search import And, FlagKey, ModSeqKey, Not, Or, SearchKey
from mailagents.imap.commands import Search
from mailagents.store import Folder, MaildirStore, MboxStore, MessageInfo, Store
from mailagents.store._cache import FolderCache

UTC = datetime.UTC
EST = datetime.timezone(datetime.timedelta(hours=-5))

M1 = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: Hello world\r\n"
    b"Date: Mon, 7 Dec 2026 23:30:00 -0500\r\n"
    b"Message-ID: <1@example.org>\r\n"
    b"\r\n"
    b"The quick brown fox jumps over the lazy dog.\r\n"
)

_PNG = base64.b64encode(b"\x89PNG SECRETWORD \x00\x01").decode()
M2 = (
    b"From: =?iso-8859-1?q?J=FCrgen?= <j@example.de>\r\n"
    b"To: =?utf-8?b?w4lsb2RpZQ==?= <elodie@example.fr>, dave@example.com\r\n"
    b"Subject: =?utf-8?q?Caf=C3=A9_cr=C3=A8me?= =?utf-8?q?_br=C3=BBl=C3=A9e?=\r\n"
    b"Date: Tue, 8 Dec 2026 08:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"preamble is not text\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    + base64.encodebytes("Grüße aus München, Straße".encode()).replace(b"\n", b"\r\n")
    + b"--b1\r\n"
    b"Content-Type: text/html; charset=us-ascii\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"<p>soft=\r\nbreak and equals=3Dsign</p>\r\n"
    b"--b1\r\n"
    b"Content-Type: image/png\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n" + _PNG.encode() + b"\r\n"
    b"--b1--\r\n"
)

M3 = (
    b"From: carol@example.com\r\n"
    b"Cc: Carol Two <carol2@example.com>\r\n"
    b"Subject: folded\r\n"
    b"  subject line\r\n"
    b"X-Custom: one\r\n"
    b"\ttwo\r\n"
    b"X-Custom: three\r\n"
    b"Subject: second subject\r\n"
    b"Date: not a date at all\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"un caf\xe9 noir\r\n"
)

M4 = (
    b"From: Eve <eve@example.net>\r\n"
    b"Bcc: hidden@example.net\r\n"
    b"Subject: fwd\r\n"
    b"Date: Wed, 9 Dec 2026 12:00:00 +0900\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: inner@example.org\r\n"
    b"Subject: inner subject\r\n"
    b"\r\n"
    b"nested needle here\r\n"
)

CORPUS: list[tuple[bytes, frozenset[str], datetime.datetime]] = [
    (M1, frozenset({"\\Seen"}), datetime.datetime(2026, 12, 7, 9, 0, tzinfo=UTC)),
    (
        M2,
        frozenset({"\\Flagged", "$Work"}),
        datetime.datetime(2026, 12, 8, 0, 30, tzinfo=UTC),
    ),
    (
        M3,
        frozenset({"\\Deleted", "\\Answered", "\\Draft", "\\Seen"}),
        datetime.datetime(2026, 12, 9, 23, 30, tzinfo=EST),
    ),
    (M4, frozenset(), datetime.datetime(2026, 12, 10, 12, 0, tzinfo=UTC)),
]


def make_store(kind: str, path: Path) -> Store:
    if kind == "maildir":
        return MaildirStore(path / "Maildir", fsync=False)
    return MboxStore(path / "mail", fsync=False)


@pytest.fixture(params=["maildir", "mbox"])
def folder(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Folder]:
    store = make_store(request.param, tmp_path)
    store.create_folder("Work")
    with store, store.folder("Work") as work:
        for data, flags, when in CORPUS:
            work.append_bytes(data, flags=flags, internaldate=when)
        work.refresh()
        yield work


def keys_of(text: str) -> tuple[SearchKey, ...]:
    command = parse_command(Frame(lines=(b"A1 SEARCH " + text.encode(),)), utf8=True)
    assert isinstance(command, Search)
    return command.criteria


def view_of(folder: Folder, **kw: object) -> SearchView:
    return SearchView(messages=folder.messages(), folder=folder, **kw)  # type: ignore[arg-type]


def seqs(folder: Folder, text: str, **kw: object) -> list[int]:
    view = view_of(folder, **kw)
    return list(search_result(search(keys_of(text), view), view, uid=False).numbers)


CASES: list[tuple[str, list[int]]] = [
    # RFC 9051 §6.4.4's own examples
    ('FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"', [2]),
    ('TEXT "string not in mailbox"', []),
    ('DELETED FROM "SMITH" SINCE 1-Oct-2013', []),
    ("UNDELETED 1:100", [1, 2, 4]),
    # RFC 9051 §6.4.4, key by key
    ("ALL", [1, 2, 3, 4]),
    ("1:2", [1, 2]),
    ("2:1", [1, 2]),
    ("*", [4]),
    ("3:*", [3, 4]),
    ("9:*", [4]),
    ("1,3", [1, 3]),
    ("ANSWERED", [3]),
    ("UNANSWERED", [1, 2, 4]),
    ("DELETED", [3]),
    ("UNDELETED", [1, 2, 4]),
    ("DRAFT", [3]),
    ("UNDRAFT", [1, 2, 4]),
    ("FLAGGED", [2]),
    ("UNFLAGGED", [1, 3, 4]),
    ("SEEN", [1, 3]),
    ("UNSEEN", [2, 4]),
    ("KEYWORD $Work", [2]),
    ("KEYWORD $work", [2]),
    ("UNKEYWORD $WORK", [1, 3, 4]),
    ("KEYWORD other", []),
    ("BEFORE 8-Dec-2026", [1]),
    ("ON 8-Dec-2026", [2]),
    ("ON 9-Dec-2026", [3]),  # 23:30 -0500 stays on the 9th (time zone disregarded)
    ("SINCE 9-Dec-2026", [3, 4]),
    ("SENTBEFORE 8-Dec-2026", [1]),
    ("SENTON 7-Dec-2026", [1]),  # 23:30 -0500: the 7th as written
    ("SENTON 9-Dec-2026", [4]),
    ("SENTSINCE 8-Dec-2026", [2, 4]),  # M3's Date: does not parse
    ("NOT SENTSINCE 8-Dec-2026", [1, 3]),
    ("FROM alice", [1]),
    ("FROM ALICE@EXAMPLE", [1]),
    ('FROM "Jürgen"', [2]),  # RFC 2047 Q in ISO-8859-1
    ('TO "élodie"', [2]),  # RFC 2047 B in UTF-8
    ("TO DAVE", [2]),
    ("CC carol2", [3]),
    ("CC carol", [3]),
    ("BCC hidden", [4]),
    ('SUBJECT "crème brûlée"', [2]),  # adjacent encoded-words joined
    ('SUBJECT "second subject"', [3]),  # of two Subject fields, the last counts
    ("SUBJECT folded", []),
    ("HEADER X-Custom three", [3]),  # of another repeated field, every one
    ("SUBJECT inner", []),  # the nested message's header is not the message's
    ("HEADER X-Custom one", [3]),
    ('HEADER X-Custom "one  two"', []),  # the folding whitespace is kept
    ('HEADER x-custom "one\ttwo"', [3]),
    ('HEADER Message-ID ""', [1]),  # empty string: the field is present
    ('HEADER X-Absent ""', []),
    ("BODY fox", [1]),
    ("BODY FOX", [1]),
    ('BODY "münchen"', [2]),  # base64, UTF-8
    ("BODY STRASSE", [2]),  # casefolded: ß is ss
    ("BODY softbreak", [2]),  # quoted-printable soft line break
    ('BODY "equals=sign"', [2]),
    ("BODY SECRETWORD", []),  # an image is not text
    ("BODY preamble", []),
    ('BODY "café"', [3]),  # ISO-8859-1 decoded
    ("BODY nested", [4]),  # the text of an embedded message
    ("BODY Alice", []),  # BODY is not the header
    ("TEXT Alice", [1]),
    ("TEXT fox", [1]),
    ("TEXT x-custom", [3]),
    ('TEXT ""', [1, 2, 3, 4]),
    ('BODY ""', [1, 2, 3, 4]),
    ("OR SEEN FLAGGED", [1, 2, 3]),
    ("NOT SEEN", [2, 4]),
    ("NOT NOT SEEN", [1, 3]),
    ("(SEEN DELETED)", [3]),
    ("SEEN NOT DELETED", [1]),
    ('OR (SEEN BODY fox) (FLAGGED BODY "münchen")', [1, 2]),
    ("NOT OR BODY fox BODY nested", [2, 3]),
    ("UID 1:*", [1, 2, 3, 4]),
    ("UID *", [4]),
    ("UID 1000:*", [4]),  # RFC 9051 §6.4.8: n:* holds the last message
    ("UID 2,4", [2, 4]),
    ("MODSEQ 1", [1, 2, 3, 4]),
    ('MODSEQ "/flags/\\\\Seen" all 1', [1, 2, 3, 4]),
    ("MODSEQ 9223372036854775807", []),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_rfc9051_keys(folder: Folder, text: str, expected: list[int]) -> None:
    assert seqs(folder, text) == expected


@pytest.fixture(params=["cold", "warm"])
def cache(request: pytest.FixtureRequest, folder: Folder, tmp_path: Path) -> Iterator[FolderCache]:
    """A folder cache, empty ("cold": every lookup a miss) or holding every message."""
    with FolderCache(tmp_path / "cache", folder.status().uidvalidity, background=False) as c:
        if request.param == "warm":
            for m in folder.messages():
                c.structure(m.uid, lambda uid=m.uid: folder.open_message(uid), m.size)
            c.flush()
            assert c.cached_uids() == {m.uid for m in folder.messages()}
        yield c


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_rfc9051_keys_with_cache(
    folder: Folder, cache: FolderCache, text: str, expected: list[int]
) -> None:
    assert seqs(folder, text, cache=cache) == expected


def test_cached_fields_answer_without_reading(folder: Folder, tmp_path: Path) -> None:
    messages = folder.messages()
    with FolderCache(tmp_path / "c", folder.status().uidvalidity, background=False) as cache:
        for m in messages:
            cache.structure(m.uid, lambda uid=m.uid: folder.open_message(uid), m.size)
        cache.flush()
        opened: list[int] = []

        class Spy:
            def open_message(self, uid: int, start: int = 0, length: int | None = None) -> object:
                opened.append(uid)
                return folder.open_message(uid, start, length)

        view = SearchView(messages=messages, folder=Spy(), cache=cache)  # type: ignore[arg-type]
        got = search(keys_of("OR FROM alice OR TO dave OR SENTON 9-Dec-2026 BCC hidden"), view)
        assert got == [messages[0].uid, messages[1].uid, messages[3].uid]
        assert opened == []
        # HEADER of a field the cache does not keep reads the header.
        assert search(keys_of("HEADER X-Custom two"), view) == [messages[2].uid]
        assert set(opened) == {m.uid for m in messages}


def test_size_keys(folder: Folder) -> None:
    sizes = [m.size for m in folder.messages()]
    assert seqs(folder, f"LARGER {sizes[0]}") == [n for n, s in enumerate(sizes, 1) if s > sizes[0]]
    assert seqs(folder, f"SMALLER {sizes[0]}") == [
        n for n, s in enumerate(sizes, 1) if s < sizes[0]
    ]
    assert seqs(folder, f"LARGER {sizes[0] - 1} SMALLER {sizes[0] + 1}") == [1]
    assert seqs(folder, "LARGER 0") == [1, 2, 3, 4]
    assert seqs(folder, "SMALLER 0") == []


def test_modseq_key_and_result(folder: Folder) -> None:
    folder.set_flags([folder.messages()[1].uid], {"\\Seen"}, "add")
    folder.refresh()
    view = view_of(folder)
    top = view.messages[1].modseq
    assert top == max(m.modseq for m in view.messages)
    uids = search(keys_of(f"MODSEQ {top}"), view)
    assert uids == [view.messages[1].uid]
    result = search_result(uids, view, uid=False)
    assert result.modseq == top
    assert has_modseq_key(keys_of(f"NOT (SEEN OR ALL MODSEQ {top})"))
    assert not has_modseq_key(keys_of("OR SEEN (NOT ALL)"))


def test_recent_new_old(folder: Folder) -> None:
    uids = [m.uid for m in folder.messages()]
    recent = {uids[0], uids[1]}
    assert seqs(folder, "RECENT", recent=recent) == [1, 2]
    assert seqs(folder, "NEW", recent=recent) == [2]  # recent and not seen
    assert seqs(folder, "OLD", recent=recent) == [3, 4]
    assert seqs(folder, "RECENT") == []


def test_saved_result(folder: Folder) -> None:
    uids = [m.uid for m in folder.messages()]
    saved = SequenceSet.from_numbers([uids[1], uids[3]])
    assert seqs(folder, "$", saved=saved) == [2, 4]
    assert seqs(folder, "UID $", saved=saved) == [2, 4]
    assert seqs(folder, "$ SEEN", saved=saved) == []
    assert seqs(folder, "NOT $", saved=saved) == [1, 3]
    assert seqs(folder, "$") == []  # nothing saved: $ is empty (RFC 5182 §2.1)
    # An expunged UID in the saved result matches nothing.
    folder.set_flags([uids[1]], {"\\Deleted"}, "add")
    assert folder.expunge([uids[1]]) == [uids[1]]
    folder.refresh()
    assert seqs(folder, "$", saved=saved) == [3]


def test_uid_search_numbers_and_esearch(folder: Folder) -> None:
    view = view_of(folder)
    uids = search(keys_of("OR SEEN FLAGGED"), view)
    all_uids = [m.uid for m in view.messages]
    assert uids == all_uids[:3]
    by_uid = search_result(uids, view, uid=True)
    assert by_uid.numbers == tuple(all_uids[:3])
    by_seq = search_result(uids, view, uid=False)
    assert (by_seq.min, by_seq.max, by_seq.count) == (1, 3, 3)
    assert str(by_seq.all) == "1:3"
    assert by_seq.uids == tuple(all_uids[:3])
    empty = search_result([], view, uid=False)
    assert (empty.min, empty.max, empty.count, empty.all, empty.modseq) == (
        None,
        None,
        0,
        None,
        None,
    )
    assert empty.saved() is None


def test_esearch_all_compressed() -> None:
    r = SearchResult(numbers=(1, 2, 3, 5, 7, 8), uids=(10, 20, 30, 50, 70, 80), uid=False, modseq=9)
    assert str(r.all) == "1:3,5,7:8"
    # RFC 5182 §2.1: SAVE with MIN and/or MAX alone keeps those; with ALL or COUNT, all.
    assert str(r.saved(min=True)) == "10"
    assert str(r.saved(max=True)) == "80"
    assert str(r.saved(min=True, max=True)) == "10,80"
    assert str(r.saved(min=True, count=True)) == "10,20,30,50,70,80"
    assert str(r.saved()) == "10,20,30,50,70,80"


def test_empty_mailbox(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path / "m", fsync=False)
    with store, store.folder("INBOX") as inbox:
        assert search(keys_of("*"), view_of(inbox)) == []


def test_header_and_part_map_accessors_are_used(folder: Folder) -> None:
    calls: list[str] = []

    def header(uid: int) -> bytes:
        calls.append("header")
        return read_header(lambda s, n: folder.open_message(uid, s, n))

    def part_map(uid: int) -> object:
        calls.append("part_map")
        return scan_message(folder.read_message(uid))

    view = view_of(folder, header=header, part_map=part_map)
    result = search(keys_of("FROM alice BODY fox"), view)
    assert result == [view.messages[0].uid]
    # The header of every message is read once; the body of message 1 only.
    assert calls.count("header") == 4
    assert calls.count("part_map") == 1


def test_cheap_keys_first_body_read_only_when_possible(folder: Folder) -> None:
    opened: list[int] = []

    class Spy:
        def __getattr__(self, name: str) -> object:
            return getattr(folder, name)

        def open_message(self, uid: int, start: int = 0, length: int | None = None) -> object:
            opened.append(uid)
            return folder.open_message(uid, start, length)

    messages = folder.messages()
    view = SearchView(messages=messages, folder=Spy())  # type: ignore[arg-type]
    assert search(keys_of("BODY fox FLAGGED"), view) == []
    assert set(opened) == {messages[1].uid}  # only the flagged message is read
    opened.clear()
    assert search(keys_of("OR SEEN BODY fox"), view) == [messages[0].uid, messages[2].uid]
    assert set(opened) == {messages[1].uid, messages[3].uid}  # the unseen ones only


def test_decode_words() -> None:
    assert decode_words("=?utf-8?q?a_b?= =?utf-8?q?c?=") == "a bc"
    assert decode_words("x =?utf-8?b?w6k=?= y") == "x é y"
    assert decode_words("=?unknown-cs?q?abc?=") == "=?unknown-cs?q?abc?="
    assert decode_words("=?utf-8?b?###?=") == "=?utf-8?b?###?="
    assert decode_words("=?utf-8*fr?q?caf=C3=A9?=") == "café"


def test_needle_scanner_across_chunks() -> None:
    scanner = NeedleScanner(["needle", "x", ""])
    assert "" in scanner.found
    assert not scanner.feed("a nee")
    assert not scanner.feed("dle")
    assert "needle" in scanner.found
    assert scanner.feed("X")
    # One character per chunk.
    s2 = NeedleScanner(["abc"])
    for ch in "zzabzabc":
        done = s2.feed(ch)
    assert done and s2.found == {"abc"}


def test_deep_nesting_without_recursion(folder: Folder) -> None:
    """A tree far deeper than the interpreter's recursion limit evaluates (the parser
    bounds nesting; the evaluator does not rely on it)."""
    key: SearchKey = FlagKey(name="SEEN")
    for i in range(20_000):
        key = Not(key=key) if i % 2 else Or(left=key, right=FlagKey(name="DRAFT"))
    view = view_of(folder)
    expected = []
    for m in view.messages:
        value = "\\Seen" in m.flags
        for i in range(20_000):
            value = (not value) if i % 2 else (value or "\\Draft" in m.flags)
        if value:
            expected.append(m.uid)
    # NOT (x OR DRAFT) twice is x AND NOT DRAFT: message 1 only.
    assert search((key,), view) == expected == [view.messages[0].uid]
    assert has_modseq_key((And(keys=(key, ModSeqKey(modseq=1))),))
    assert not has_modseq_key((key,))


def test_text_decoder_falls_back_to_utf8() -> None:
    decoder = TextDecoder("text/plain; charset=utf-16")
    assert decoder.decode(b"\x00\x00ab") == "\x00\x00ab"  # no BOM: UTF-8 from here on
    assert TextDecoder("text/plain; charset=base64").decode(b"caf\xc3\xa9") == "café"
    assert TextDecoder("text/plain; charset=no-such").decode(b"\xff", final=True) == "\ufffd"
    assert TextDecoder("text/plain; charset=iso-8859-1").decode(b"\xe9") == "é"


class MemoryFolder:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def open_message(self, uid: int, start: int = 0, length: int | None = None) -> io.BytesIO:
        end = len(self.data) if length is None else start + length
        return io.BytesIO(self.data[start:end])


def one(data: bytes, text: str, **kw: object) -> bool:
    info = MessageInfo(
        uid=7, flags=frozenset(), internaldate=CORPUS[0][2], size=len(data), modseq=1
    )
    view = SearchView(messages=[info], folder=MemoryFolder(data), **kw)  # type: ignore[arg-type]
    return search(keys_of(text), view) == [7]


def test_edge_messages() -> None:
    # No header at all: the body starts at once.
    assert one(b"\r\nFrom: not a header\r\n", "TEXT header")
    assert not one(b"\r\nFrom: not a header\r\n", "FROM header")
    # A header without an end, and one longer than the bound.
    assert one(b"Subject: open ended", "SUBJECT ended")
    long = b"X-Pad: " + b"x" * (HEADER_MAX + 10) + b"\r\nSubject: late\r\n\r\nbody\r\n"
    assert not one(long, "SUBJECT late")
    # A transfer encoding nobody knows: the part is not searched.
    uu = b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nsecret\r\n"
    assert not one(uu, "BODY secret")
    assert one(uu, "TEXT uuencode")
    # A needle across a chunk boundary, and parts never joined by a match.
    big = b"Subject: s\r\n\r\n" + b"a" * (65_536 - 20) + b" needle-across-the-chunk\r\n"
    assert one(big, "BODY needle-across-the-chunk")
    two = (
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\n\r\nfirst half\r\n--b\r\n\r\nsecond\r\n--b--\r\n"
    )
    assert one(two, "BODY second") and one(two, "BODY half")
    # The CRLF before a boundary belongs to the boundary: the parts' texts are
    # "first half" and "second", and no match runs from one into the other.
    assert not one(two, "BODY halfsecond")


def test_empty_criteria_and_single_list() -> None:
    data = b"Subject: x\r\n\r\n"
    info = MessageInfo(uid=3, flags=frozenset(), internaldate=CORPUS[0][2], size=14, modseq=1)
    view = SearchView(messages=[info], folder=MemoryFolder(data))  # type: ignore[arg-type]
    assert search((), view) == [3]
    assert search((And(keys=(FlagKey(name="ALL"),)),), view) == [3]
