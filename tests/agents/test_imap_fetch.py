"""FETCH over a store folder (mailagents/agents/_imap_fetch.py), on Maildir and mbox.

Expected octets are written out by hand for the RFC 9051 §6.4.5 rules (sections,
partials in CRLF octets, a partial beyond the end, HEADER.FIELDS, MIME, nested
message/rfc822 parts), and, for every section of every message, compared with the
MIME core's answer over the whole message in memory (the fast paths that skip the
MIME scan must agree with it)."""

from __future__ import annotations

import base64
import datetime
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailagents.agents._imap_fetch import FetchCache, FetchPlan, message_part_map, plan_fetch
from mailagents.imap._binary import UnknownEncoding, iter_binary
from mailagents.imap._body_model import MultipartBody, SinglePartBody
from mailagents.imap._bodystructure import body_structure
from mailagents.imap._envelope import envelope_from_header
from mailagents.imap._fetch_data import FetchData
from mailagents.imap._fetch_items import (
    FetchAttribute,
    FetchBinarySize,
    FetchBody,
    FetchItem,
    Section,
)
from mailagents.imap._frame import Streamed
from mailagents.imap._mime import scan_message
from mailagents.imap._response_parser import parse_response
from mailagents.imap._response_writer import write_response
from mailagents.imap._sections import section_octets
from mailagents.store import Folder, MaildirStore, MboxStore, MessageInfo


def part(ctype: str, body: bytes, extra: bytes = b"") -> bytes:
    return b"Content-Type: " + ctype.encode() + b"\r\n" + extra + b"\r\n" + body


def mixed(boundary: bytes, *parts: bytes, header: bytes = b"", sub: bytes = b"mixed") -> bytes:
    out = header + b"Content-Type: multipart/" + sub + b"; boundary=" + boundary + b"\r\n\r\n"
    for p in parts:
        out += b"--" + boundary + b"\r\n" + p + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


PNG = bytes(range(256)) * 3
INNER = mixed(
    b"in",
    part("text/plain", b"inner one"),
    part("text/html", b"<p>inner two</p>"),
    header=b"From: Inner <inner@example.test>\r\nSubject: inside\r\nMIME-Version: 1.0\r\n",
    sub=b"alternative",
)
NESTED = mixed(
    b"top",
    part(
        "text/plain; charset=utf-8",
        b"caf=C3=A9 =\r\nsoft\r\nline two  \r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
    ),
    part(
        "image/png",
        base64.encodebytes(PNG).replace(b"\n", b"\r\n"),
        b"Content-Transfer-Encoding: base64\r\n",
    ),
    b"Content-Type: message/rfc822\r\n\r\n" + INNER,
    part("application/x-odd", b"begin 644 x\r\n", b"Content-Transfer-Encoding: x-uuencode\r\n"),
    header=(
        b"From: Alice <alice@example.test>\r\nTo: bob@example.test, carol@example.test\r\n"
        b"Subject: nested\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n"
        b"Message-ID: <n@example.test>\r\nMIME-Version: 1.0\r\n"
    ),
)
PLAIN = b"From: a@example.test\r\nSubject: plain\r\n\r\nline one\r\nline two\r\n"
BARE_LF = b"From: a@example.test\nSubject: bare\nX-Long: a\n b\n\nbody one\nbody two\n"
NO_BODY = b"From: a@example.test\r\nSubject: only a header\r\n"
MESSAGES = {"nested": NESTED, "plain": PLAIN, "bare": BARE_LF, "nobody": NO_BODY}


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


DATE = datetime.datetime(2026, 12, 7, 10, 0, tzinfo=datetime.UTC)


class Counting:
    """Counts the octets read through ``folder.open_message`` (patched on the
    instance, put back by ``close``)."""

    def __init__(self, folder: Folder) -> None:
        self.folder = folder
        self.read = 0
        self.opens = 0
        inner = folder.open_message
        self._inner = inner
        outer = self

        class Wrapped(io.RawIOBase):
            def __init__(self, stream: BinaryIO) -> None:
                self.stream = stream

            def readable(self) -> bool:
                return True

            def readinto(self, buffer: Any) -> int:
                data = self.stream.read(len(buffer))
                buffer[: len(data)] = data
                outer.read += len(data)
                return len(data)

            def close(self) -> None:
                self.stream.close()
                super().close()

        def open_message(uid: int, start: int = 0, length: int | None = None) -> BinaryIO:
            outer.opens += 1
            return Wrapped(inner(uid, start, length))  # type: ignore[return-value]

        folder.open_message = open_message  # type: ignore[method-assign]

    def close(self) -> None:
        self.folder.open_message = self._inner  # type: ignore[method-assign]


def make_folder(tmp_path: Path, kind: str) -> Folder:
    store = (
        MaildirStore(tmp_path / "md", fsync=False)
        if kind == "maildir"
        else MboxStore(tmp_path / "mb")
    )
    return store.folder("INBOX")


@pytest.fixture(params=["maildir", "mbox"])
def box(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Folder, dict[str, MessageInfo]]:
    folder = make_folder(tmp_path, request.param)
    uids = {}
    for name, data in MESSAGES.items():
        flags = ("\\Seen", "$Label") if name == "plain" else ()
        uids[name] = folder.append_bytes(data, flags=flags, internaldate=DATE).uid
    folder.refresh()
    infos = {name: folder.info(uid) for name, uid in uids.items() if uid is not None}
    return folder, infos


def fetch(folder: Folder, message: MessageInfo, *items: FetchItem | str, **kw: Any) -> FetchPlan:
    parsed: list[FetchItem] = [FetchAttribute(name=i) if isinstance(i, str) else i for i in items]
    kw.setdefault("uid_requested", False)
    kw.setdefault("modseq", False)
    kw.setdefault("utf8", False)
    return plan_fetch(tuple(parsed), message, 1, folder, **kw)


def octets(plan: FetchPlan, index: int = 0) -> bytes:
    """The octets of body item ``index``, streamed ones produced."""
    data = plan.data.sections[index].data
    if isinstance(data, Streamed):
        chunks = list(plan.literals[data.index]())
        assert all(len(c) <= 65536 for c in chunks)
        out = b"".join(chunks)
        assert len(out) == data.size
        return out
    assert isinstance(data, bytes)
    return data


def body(section: str = "", partial: tuple[int, int] | None = None, **kw: Any) -> FetchBody:
    return FetchBody(section=sec(section), partial=partial, peek=True, **kw)


def sec(text: str) -> Section:
    if not text:
        return Section()
    nums: list[int] = []
    rest = text.split(".")
    while rest and rest[0].isdigit():
        nums.append(int(rest.pop(0)))
    t = ".".join(rest) or None
    fields: tuple[str, ...] = ()
    if t and " " in t:
        t, _, names = t.partition(" ")
        fields = tuple(names.strip("()").split())
    return Section(part=tuple(nums), text=t, fields=fields)  # type: ignore[arg-type]


# -- the plain attributes -----------------------------------------------------------


def test_attributes(box: tuple[Folder, dict[str, MessageInfo]]) -> None:
    folder, infos = box
    info = infos["plain"]
    plan = fetch(folder, info, "FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "MODSEQ")
    d = plan.data
    assert d.flags == ("\\Seen", "$Label")
    assert d.uid == info.uid and d.modseq == info.modseq
    assert d.internaldate == DATE
    assert d.rfc822_size == len(PLAIN)
    assert not plan.sets_seen and plan.literals == [] and plan.error is None


def test_bare_lf_size_is_crlf(box: tuple[Folder, dict[str, MessageInfo]]) -> None:
    folder, infos = box
    plan = fetch(folder, infos["bare"], "RFC822.SIZE", body(), body("TEXT"))
    assert plan.data.rfc822_size == len(crlf(BARE_LF))
    assert octets(plan, 0) == crlf(BARE_LF)
    assert octets(plan, 1) == b"body one\r\nbody two\r\n"


def test_uid_and_modseq_implied(box: tuple[Folder, dict[str, MessageInfo]]) -> None:
    folder, infos = box
    info = infos["plain"]
    d = fetch(folder, info, "FLAGS", uid_requested=True, modseq=True).data
    assert d.uid == info.uid and d.modseq == info.modseq
    d = fetch(folder, info, "FLAGS").data
    assert d.uid is None and d.modseq is None


@pytest.mark.parametrize(
    ("macro", "present"),
    [
        ("FAST", {"flags", "internaldate", "rfc822_size"}),
        ("ALL", {"flags", "internaldate", "rfc822_size", "envelope"}),
        ("FULL", {"flags", "internaldate", "rfc822_size", "envelope", "body"}),
    ],
)
def test_macros(box: tuple[Folder, dict[str, MessageInfo]], macro: Any, present: set[str]) -> None:
    folder, infos = box
    d = plan_fetch(
        macro, infos["nested"], 3, folder, uid_requested=False, modseq=False, utf8=False
    ).data
    assert d.number == 3
    for name in ("flags", "internaldate", "rfc822_size", "envelope", "body", "bodystructure"):
        assert (getattr(d, name) is not None) == (name in present), name


def test_envelope(box: tuple[Folder, dict[str, MessageInfo]]) -> None:
    folder, infos = box
    env = fetch(folder, infos["nested"], "ENVELOPE").data.envelope
    assert env is not None
    assert env.subject == "nested" and env.message_id == "<n@example.test>"
    assert env.from_ is not None and env.from_[0].name == "Alice"
    assert env.sender == env.from_ and env.reply_to == env.from_
    assert env.to is not None and [a.mailbox for a in env.to] == ["bob", "carol"]
    assert env == envelope_from_header(NESTED[: NESTED.index(b"\r\n\r\n") + 4])
    # The same from a given part map.
    pm = scan_message(NESTED)
    assert fetch(folder, infos["nested"], "ENVELOPE", part_map=pm).data.envelope == env


def test_body_and_bodystructure(box: tuple[Folder, dict[str, MessageInfo]]) -> None:
    folder, infos = box
    d = fetch(folder, infos["nested"], "BODY", "BODYSTRUCTURE").data
    pm = scan_message(NESTED)
    assert d.body == body_structure(pm, extended=False)
    assert d.bodystructure == body_structure(pm, extended=True)
    assert isinstance(d.bodystructure, MultipartBody)
    assert [p.subtype if isinstance(p, SinglePartBody) else "" for p in d.bodystructure.parts] == [
        "plain",
        "png",
        "rfc822",
        "x-odd",
    ]


# -- body sections ------------------------------------------------------------------

HEAD = NESTED[: NESTED.index(b"\r\n\r\n") + 4]

CASES: list[tuple[str, str, bytes]] = [
    ("plain", "", PLAIN),
    ("plain", "HEADER", b"From: a@example.test\r\nSubject: plain\r\n\r\n"),
    ("plain", "TEXT", b"line one\r\nline two\r\n"),
    ("plain", "1", b"line one\r\nline two\r\n"),
    ("plain", "1.MIME", b"From: a@example.test\r\nSubject: plain\r\n\r\n"),
    ("plain", "2", b""),
    ("plain", "HEADER.FIELDS (SUBJECT)", b"Subject: plain\r\n\r\n"),
    ("plain", "HEADER.FIELDS.NOT (subject)", b"From: a@example.test\r\n\r\n"),
    ("plain", "HEADER.FIELDS (X-None)", b"\r\n"),
    ("bare", "HEADER.FIELDS (x-long)", b"X-Long: a\r\n b\r\n\r\n"),
    ("bare", "HEADER", b"From: a@example.test\r\nSubject: bare\r\nX-Long: a\r\n b\r\n\r\n"),
    ("nobody", "HEADER", NO_BODY),
    ("nobody", "TEXT", b""),
    ("nested", "HEADER", HEAD),
    ("nested", "1", b"caf=C3=A9 =\r\nsoft\r\nline two  \r\n"),
    (
        "nested",
        "1.MIME",
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
    ),
    ("nested", "3", INNER),
    ("nested", "3.HEADER", INNER[: INNER.index(b"\r\n\r\n") + 4]),
    ("nested", "3.HEADER.FIELDS (Subject)", b"Subject: inside\r\n\r\n"),
    ("nested", "3.TEXT", INNER[INNER.index(b"\r\n\r\n") + 4 :]),
    ("nested", "3.1", b"inner one"),
    ("nested", "3.2", b"<p>inner two</p>"),
    ("nested", "3.2.MIME", b"Content-Type: text/html\r\n\r\n"),
    ("nested", "3.3", b""),
    ("nested", "1.TEXT", b""),
    ("nested", "9", b""),
]


@pytest.mark.parametrize(("name", "section", "expected"), CASES)
def test_sections(
    box: tuple[Folder, dict[str, MessageInfo]], name: str, section: str, expected: bytes
) -> None:
    folder, infos = box
    plan = fetch(folder, infos[name], body(section))
    assert octets(plan) == expected
    assert plan.data.sections[0].section == sec(section)
    assert plan.data.sections[0].origin is None
    # The same answer through a given part map, and through the MIME core in memory.
    pm = message_part_map(folder, infos[name].uid)
    assert octets(fetch(folder, infos[name], body(section), part_map=pm)) == expected
    whole = crlf(MESSAGES[name])
    ref = section_octets(scan_message(whole), sec(section), lambda s, n: whole[s : s + n])
    assert (ref or b"") == expected


@pytest.mark.parametrize("name", list(MESSAGES))
@pytest.mark.parametrize("section", ["", "HEADER", "TEXT", "1", "3.TEXT", "HEADER.FIELDS (To)"])
@pytest.mark.parametrize("partial", [(0, 1), (0, 10_000), (5, 7), (20, 3), (10_000, 5)])
def test_partials(
    box: tuple[Folder, dict[str, MessageInfo]],
    name: str,
    section: str,
    partial: tuple[int, int],
) -> None:
    folder, infos = box
    whole = crlf(MESSAGES[name])
    full = section_octets(scan_message(whole), sec(section), lambda s, n: whole[s : s + n]) or b""
    plan = fetch(folder, infos[name], body(section, partial))
    origin, count = partial
    assert octets(plan) == full[origin : origin + count]
    assert plan.data.sections[0].origin == origin


def test_partial_beyond_the_end_is_empty_and_echoes_origin(
    box: tuple[Folder, dict[str, MessageInfo]],
) -> None:
    folder, infos = box
    plan = fetch(folder, infos["plain"], body("", (len(PLAIN), 10)))
    assert octets(plan) == b""
    wire = write_response(plan.data).to_bytes()
    assert wire == b"* 1 FETCH (BODY[]<%d> {0}\r\n)\r\n" % len(PLAIN)


def test_duplicate_items_sent_once(box: tuple[Folder, dict[str, MessageInfo]]) -> None:
    folder, infos = box
    plan = fetch(folder, infos["plain"], body("TEXT"), body("TEXT"), body("TEXT", (0, 4)))
    assert len(plan.data.sections) == 2


def test_rfc822_forms(box: tuple[Folder, dict[str, MessageInfo]]) -> None:
    folder, infos = box
    info = infos["nested"]
    plan = fetch(folder, info, "RFC822", "RFC822.HEADER", "RFC822.TEXT")
    names = [s.name for s in plan.data.sections]
    assert names == ["RFC822", "RFC822.HEADER", "RFC822.TEXT"]
    assert octets(plan, 0) == NESTED
    assert octets(plan, 1) == HEAD
    assert octets(plan, 2) == NESTED[len(HEAD) :]
    assert plan.sets_seen
    assert fetch(folder, info, "RFC822.HEADER").sets_seen is False
    assert fetch(folder, info, "RFC822.TEXT").sets_seen is True


# -- \Seen ----------------------------------------------------------------------------


def test_sets_seen(box: tuple[Folder, dict[str, MessageInfo]]) -> None:
    folder, infos = box
    info = infos["nested"]
    plan = fetch(folder, info, FetchBody(section=sec("1")))
    assert plan.sets_seen and plan.data.flags == ("\\Seen",)
    plan = fetch(folder, info, FetchBody(section=sec("1"), binary=True))
    assert plan.sets_seen
    # PEEK, EXAMINE and a message already seen set nothing.
    assert not fetch(folder, info, body("1")).sets_seen
    assert fetch(folder, info, body("1")).data.flags is None
    assert not fetch(folder, info, FetchBody(section=sec("1")), read_only=True).sets_seen
    assert not fetch(folder, infos["plain"], FetchBody(section=sec("1"))).sets_seen


def test_recent(box: tuple[Folder, dict[str, MessageInfo]]) -> None:
    folder, infos = box
    d = fetch(folder, infos["nested"], "FLAGS", FetchBody(), recent=True).data
    assert d.flags == ("\\Recent", "\\Seen")
    assert fetch(folder, infos["plain"], "FLAGS", recent=True).data.flags == (
        "\\Recent",
        "\\Seen",
        "$Label",
    )


# -- BINARY -------------------------------------------------------------------------


def test_binary_quoted_printable(box: tuple[Folder, dict[str, MessageInfo]]) -> None:
    folder, infos = box
    plan = fetch(folder, infos["nested"], body("1", binary=True), FetchBinarySize(part=(1,)))
    expected = "café soft\r\nline two\r\n".encode()
    assert octets(plan) == expected
    assert plan.data.binary_sizes == (((1,), len(expected)),)
    assert plan.data.sections[0].name == "BINARY"


def test_binary_base64_with_nul_is_literal8(box: tuple[Folder, dict[str, MessageInfo]]) -> None:
    folder, infos = box
    plan = fetch(folder, infos["nested"], body("2", binary=True), FetchBinarySize(part=(2,)))
    assert octets(plan) == PNG
    assert plan.data.binary_sizes == (((2,), len(PNG)),)
    wire = write_response(plan.data).to_bytes()
    assert b"BINARY[2] ~{%d}\r\n" % len(PNG) in wire
    # Partial ranges count decoded octets; streamed, the literal is a literal8.
    plan = fetch(folder, infos["nested"], body("2", (10, 20), binary=True))
    assert octets(plan) == PNG[10:30]
    plan = fetch(folder, infos["nested"], body("2", binary=True), inline_max=100)
    placeholder = plan.data.sections[0].data
    assert isinstance(placeholder, Streamed) and placeholder.binary
    assert octets(plan) == PNG


def test_binary_of_the_whole_and_of_identity_parts(
    box: tuple[Folder, dict[str, MessageInfo]],
) -> None:
    folder, infos = box
    plan = fetch(folder, infos["bare"], body("", binary=True), FetchBinarySize())
    assert octets(plan) == crlf(BARE_LF)
    assert plan.data.binary_sizes == (((), len(crlf(BARE_LF))),)
    plan = fetch(folder, infos["nested"], body("3.1", binary=True), FetchBinarySize(part=(3, 1)))
    assert octets(plan) == b"inner one" and plan.data.binary_sizes == (((3, 1), 9),)
    plan = fetch(folder, infos["nested"], body("7", binary=True), FetchBinarySize(part=(7,)))
    assert octets(plan) == b"" and plan.data.binary_sizes == (((7,), 0),)


@pytest.mark.parametrize("item", [body("4", binary=True), FetchBinarySize(part=(4,))])
def test_binary_unknown_encoding(
    box: tuple[Folder, dict[str, MessageInfo]], item: FetchItem
) -> None:
    folder, infos = box
    plan = fetch(folder, infos["nested"], "UID", item, body("1"))
    assert plan.error == UnknownEncoding(encoding="x-uuencode")
    assert plan.literals == [] and not plan.sets_seen


# -- streaming ----------------------------------------------------------------------


def test_inline_max_streams_in_order(box: tuple[Folder, dict[str, MessageInfo]]) -> None:
    folder, infos = box
    info = infos["nested"]
    plan = fetch(folder, info, body(""), body("1"), body("3"), inline_max=40)
    kinds = [type(s.data) for s in plan.data.sections]
    assert kinds == [Streamed, bytes, Streamed]
    first, last = plan.data.sections[0].data, plan.data.sections[2].data
    assert isinstance(first, Streamed) and isinstance(last, Streamed)
    assert (first.index, last.index) == (0, 1) and not first.binary
    assert len(plan.literals) == 2
    assert octets(plan, 0) == NESTED and octets(plan, 2) == INNER
    # The response frame carries the placeholders where the literals go.
    frame = write_response(plan.data)
    assert [lit for lit in frame.literals if isinstance(lit, Streamed)] == [first, last]


def test_written_and_parsed_back(box: tuple[Folder, dict[str, MessageInfo]]) -> None:
    folder, infos = box
    items = ("FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "MODSEQ")
    plan = fetch(folder, infos["nested"], *items, body("1", (2, 5)), body("2", binary=True))
    back = parse_response(write_response(plan.data))
    assert isinstance(back, FetchData)
    assert back == plan.data


def test_message_gone_raises(box: tuple[Folder, dict[str, MessageInfo]]) -> None:
    from mailagents.store import MessageNotFoundError

    folder, infos = box
    info = infos["plain"]
    folder.set_flags([info.uid], ["\\Deleted"], "add")
    assert folder.expunge([info.uid]) == [info.uid]
    with pytest.raises(MessageNotFoundError):
        fetch(folder, info, body("TEXT"))


# -- caching ------------------------------------------------------------------------


def test_cache_avoids_a_second_scan(box: tuple[Folder, dict[str, MessageInfo]]) -> None:
    folder, infos = box
    counting = Counting(folder)
    cache = FetchCache(4)
    info = infos["nested"]
    first = fetch(folder, info, "BODYSTRUCTURE", "ENVELOPE", cache=cache, uidvalidity=7)
    opened = counting.opens
    assert opened >= 1
    again = fetch(folder, info, "BODYSTRUCTURE", "ENVELOPE", "BODY", cache=cache, uidvalidity=7)
    assert counting.opens == opened
    assert again.data.bodystructure == first.data.bodystructure
    assert cache.part_map(folder.name, 7, info.uid) is not None
    # Another UIDVALIDITY is another message.
    fetch(folder, info, "BODYSTRUCTURE", cache=cache, uidvalidity=8)
    assert counting.opens > opened
    assert len(cache) == 2
    # FLAGS alone keeps nothing, and pushes nothing out.
    for uid in range(100, 110):
        fetch(folder, info, "FLAGS", cache=cache, uidvalidity=uid)
    assert len(cache) == 2
    for uid in range(100, 110):
        fetch(folder, info, "ENVELOPE", cache=cache, uidvalidity=uid)
    assert len(cache) == 4
    assert cache.part_map(folder.name, 7, info.uid) is None  # the oldest went first
    cache.clear()
    assert len(cache) == 0
    with pytest.raises(ValueError):
        FetchCache(0)


def test_whole_message_needs_no_scan(box: tuple[Folder, dict[str, MessageInfo]]) -> None:
    folder, infos = box
    counting = Counting(folder)
    info = infos["nested"]
    plan = fetch(folder, info, body("", (0, 16)))
    assert octets(plan) == NESTED[:16]
    assert counting.read <= 16
    plan = fetch(folder, info, body("HEADER"), "ENVELOPE")
    assert counting.read <= 16 + 2 * 8192


# -- a big message ------------------------------------------------------------------


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Folder, MessageInfo, int]]:
    line = b"x" * 98 + b"\r\n"
    body_size = 50 * 1024 * 1024
    data = b"From: big@example.test\r\nSubject: big\r\n\r\n" + line * (body_size // len(line))
    out = []
    for kind in ("maildir", "mbox"):
        folder = make_folder(tmp_path_factory.mktemp(kind), kind)
        uid = folder.append_bytes(data).uid
        folder.refresh()
        assert uid is not None
        out.append((folder, folder.info(uid), len(data)))
    del data
    yield out  # type: ignore[misc]


def test_big_partial_reads_a_bounded_amount(big: Any) -> None:
    import tracemalloc

    for folder, info, size in big:
        counting = Counting(folder)
        plan = fetch(folder, info, body("", (0, 1024)))
        assert octets(plan)[:22] == b"From: big@example.test"
        assert len(octets(plan)) == 1024
        assert counting.read <= 1024
        plan = fetch(folder, info, body("TEXT", (0, 1024)), "ENVELOPE", body("HEADER"))
        assert counting.read <= 1024 * 3 + 3 * 8192
        assert plan.data.envelope is not None and plan.data.envelope.subject == "big"
        # BODY[] streams in chunks with bounded memory.
        plan = fetch(folder, info, FetchBody())
        placeholder = plan.data.sections[0].data
        assert isinstance(placeholder, Streamed) and placeholder.size == size
        assert plan.sets_seen
        tracemalloc.start()
        total = 0
        for chunk in plan.literals[0]():
            assert len(chunk) <= 65536
            total += len(chunk)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert total == size
        assert peak < 4 * 1024 * 1024
        counting.close()


# -- any message, any section -------------------------------------------------------

_TEXTS = st.sampled_from([None, "HEADER", "TEXT", "MIME", "HEADER.FIELDS", "HEADER.FIELDS.NOT"])


@st.composite
def sections(draw: st.DrawFn) -> Section:
    nums = tuple(draw(st.lists(st.integers(1, 4), max_size=3)))
    text = draw(_TEXTS)
    if text == "MIME" and not nums:
        text = None
    fields: tuple[str, ...] = ()
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        fields = tuple(draw(st.lists(st.sampled_from(["Subject", "from", "X-Long"]), min_size=1)))
    return Section(part=nums, text=text, fields=fields)  # type: ignore[arg-type]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(list(MESSAGES)),
    section=sections(),
    partial=st.none() | st.tuples(st.integers(0, 700), st.integers(1, 700)),
    inline_max=st.sampled_from([0, 50, 65536]),
    binary=st.booleans(),
)
def test_any_section_equals_the_core_in_memory(
    box: tuple[Folder, dict[str, MessageInfo]],
    name: str,
    section: Section,
    partial: tuple[int, int] | None,
    inline_max: int,
    binary: bool,
) -> None:
    folder, infos = box
    whole = crlf(MESSAGES[name])
    pm = scan_message(whole)

    def read(s: int, n: int) -> bytes:
        return whole[s : s + n]

    if binary:
        section = Section(part=section.part)
        chunks = iter_binary(pm, section.part, read, partial=partial)
        plan = fetch(
            folder,
            infos[name],
            FetchBody(section=section, partial=partial, binary=True, peek=True),
            inline_max=inline_max,
        )
        if isinstance(chunks, UnknownEncoding):
            assert plan.error == chunks
            return
        expected = b"".join(chunks or ())
    else:
        expected = section_octets(pm, section, read, partial=partial) or b""
        item = FetchBody(section=section, partial=partial, peek=True)
        plan = fetch(folder, infos[name], item, inline_max=inline_max)
        assert plan.data.sections[0].section == section
    assert octets(plan) == expected


def test_store_folder_cache(box: tuple[Folder, dict[str, MessageInfo]], tmp_path: Path) -> None:
    from mailagents.store._cache import FolderCache

    folder, infos = box
    info = infos["nested"]
    path = tmp_path / "fetch.cache"
    with FolderCache(path, 5, background=False) as store_cache:
        first = fetch(folder, info, "BODYSTRUCTURE", body("3.1"), folder_cache=store_cache)
        store_cache.flush()
    assert octets(first) == b"inner one"
    counting = Counting(folder)
    try:
        with FolderCache(path, 5, background=False) as store_cache:
            plan = fetch(folder, info, "BODYSTRUCTURE", "ENVELOPE", folder_cache=store_cache)
            assert counting.opens == 0
            assert plan.data.bodystructure == first.data.bodystructure
            assert plan.data.envelope == fetch(folder, info, "ENVELOPE").data.envelope
            counting.read = 0
            plan = fetch(folder, info, body("3.1"), folder_cache=store_cache)
            assert octets(plan) == b"inner one"
            assert counting.read == len(b"inner one")
            # ENVELOPE alone from the cached header fields.
            counting.read = 0
            fetch(folder, info, "ENVELOPE", folder_cache=store_cache)
            assert counting.read == 0
    finally:
        counting.close()


@pytest.mark.parametrize("kind", ["maildir", "mbox"])
def test_headers_of_any_length(tmp_path: Path, kind: str) -> None:
    from mailagents.agents._imap_fetch_read import read_header

    folder = make_folder(tmp_path, kind)
    lengths = [0, 1, 2040, 2043, 2044, 2045, 2046, 6140, 6141, 6142, 300_000]
    for n in lengths:
        head = b"Subject: s\r\nX-Pad: " + b"p" * n + b"\r\n\r\n"
        folder.append_bytes(head + b"body\r\n")
    folder.append_bytes(b"\r\nno header\r\n")
    folder.refresh()
    for info in folder.messages():
        whole = folder.read_message(info.uid)
        end = whole.index(b"\r\n\r\n") + 4 if not whole.startswith(b"\r\n") else 2
        assert read_header(folder, info.uid) == (whole[:end] if end < 256 * 1024 else None)
        plan = fetch(folder, info, body("HEADER"), body("TEXT"), "ENVELOPE")
        assert octets(plan, 0) == whole[:end]
        assert octets(plan, 1) == whole[end:]
        assert plan.data.envelope is not None
        assert plan.data.envelope.subject == (None if end == 2 else "s")
    assert read_header(folder, folder.messages()[0].uid, limit=10) is None


def test_exactly_cuts_and_refuses_short_streams() -> None:
    from mailagents.agents._imap_fetch_read import exactly

    assert list(exactly(iter([b"abc", b"def", b"ghi"]), 5)) == [b"abc", b"de"]
    big_chunk = b"x" * (3 * 65536 + 1)
    assert [len(c) for c in exactly(iter([big_chunk]), len(big_chunk))] == [65536] * 3 + [1]
    with pytest.raises(OSError):
        list(exactly(iter([b"abc"]), 4))


def test_message_reader_reopens_only_on_a_jump(
    box: tuple[Folder, dict[str, MessageInfo]],
) -> None:
    from mailagents.agents._imap_fetch_read import MessageReader, window

    folder, infos = box
    uid = infos["nested"].uid
    counting = Counting(folder)
    try:
        with MessageReader(folder, uid, end=40) as read:
            assert read(0, 10) + read(10, 10) == NESTED[:20]
            assert counting.opens == 1
            assert read(30, 20) == NESTED[30:50]  # past ``end``: the window grows
            assert read(5, 0) == b""
            assert counting.opens == 2
        assert list(window(folder, uid, 3, 0)) == []
        assert b"".join(window(folder, uid, len(NESTED) - 4, 100)) == NESTED[-4:]
    finally:
        counting.close()
