"""SEARCH evaluation against a naive reference: random small messages held in memory
(their plain text known), random search trees (NOT/OR/AND nesting, sets with ``*``
and ``$``, every key shape), and a recursive evaluator written straight from RFC 9051
§6.4.4 over the model; the two must agree. Also: whatever bytes a message holds,
searching it never raises."""

from __future__ import annotations

import base64
import datetime
import io
import quopri
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailagents.agents._imap_search import SearchView, search
from mailagents.imap import SequenceSet
from mailagents.imap._search import (
    And,
    DateKey,
    FlagKey,
    HeaderKey,
    KeywordKey,
    ModSeqKey,
    Not,
    Or,
    SearchKey,
    SetKey,
    SizeKey,
    TextKey,
)
from mailagents.store import MessageInfo

WORDS = ["apple", "Berry", "cherry", "grüße", "STRASSE", "straße", "fox", "a", "Ünïcode"]
DAYS = [datetime.date(2026, 12, d) for d in (6, 7, 8)]
SYSTEM = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"]
KEYWORDS = ["$Work", "todo", "Later"]


@dataclass
class Model:
    """One message as the reference sees it."""

    uid: int
    flags: frozenset[str]
    internaldate: datetime.datetime
    sent: datetime.date | None
    date_field: str | None
    subject: str
    from_: str
    body: str
    modseq: int
    data: bytes = b""
    fields: tuple[tuple[str, str], ...] = ()


class MemoryFolder:
    """The part of ``Folder`` a search uses, over messages held in memory."""

    def __init__(self, messages: dict[int, bytes]) -> None:
        self.data = messages

    def open_message(self, uid: int, start: int = 0, length: int | None = None) -> io.BytesIO:
        data = self.data[uid]
        end = len(data) if length is None else start + length
        return io.BytesIO(data[start:end])


def encode_word(text: str) -> str:
    if text.isascii():
        return text
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


def render(m: Model, encoding: str) -> bytes:
    """The message's octets; sets ``m.fields`` to its header fields as decoded."""
    head = [
        f"From: {encode_word(m.from_)} <x@example.org>",
        f"Subject: {encode_word(m.subject)}",
    ]
    if m.date_field is not None:
        head.append(f"Date: {m.date_field}")
    body = m.body.encode()
    if encoding == "base64":
        head += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8"]
        head.append("Content-Transfer-Encoding: base64")
        body = base64.encodebytes(body).replace(b"\n", b"\r\n")
    elif encoding == "quoted-printable":
        head += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8"]
        head.append("Content-Transfer-Encoding: quoted-printable")
        body = quopri.encodestring(body).replace(b"\n", b"\r\n")
    elif encoding == "multipart":
        head += ["MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="zz"']
        body = (
            b"--zz\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            + body
            + b"\r\n--zz\r\nContent-Type: application/octet-stream\r\n\r\n"
            + b"apple fox Berry\r\n--zz--\r\n"
        )
    plain = [f"From: {m.from_} <x@example.org>", f"Subject: {m.subject}", *head[2:]]
    m.fields = tuple(
        (name.lower(), value.lstrip(" ")) for name, _, value in (f.partition(":") for f in plain)
    )
    return "\r\n".join(head).encode() + b"\r\n\r\n" + body


text = st.lists(st.sampled_from(WORDS), max_size=4).map(" ".join)


@st.composite
def models(draw: st.DrawFn) -> list[Model]:
    count = draw(st.integers(0, 6))
    uid = 0
    out = []
    for _ in range(count):
        uid += draw(st.integers(1, 3))
        sent = draw(st.sampled_from([*DAYS, None]))
        date_field = None if sent is None else f"{sent.day} Dec 2026 12:00:00 +0000"
        if sent is None and draw(st.booleans()):
            date_field = "garbage"
        day = draw(st.sampled_from(DAYS))
        flags = draw(st.frozensets(st.sampled_from(SYSTEM + KEYWORDS)))
        m = Model(
            uid=uid,
            flags=flags,
            internaldate=datetime.datetime(day.year, day.month, day.day, 12, tzinfo=datetime.UTC),
            sent=sent,
            date_field=date_field,
            subject=draw(text),
            from_=draw(text),
            body=draw(text),
            modseq=draw(st.integers(1, 5)),
        )
        m.data = render(
            m, draw(st.sampled_from(["7bit", "base64", "quoted-printable", "multipart"]))
        )
        out.append(m)
    return out


bounds = st.one_of(st.none(), st.integers(1, 20))
sets = st.one_of(
    st.just(SequenceSet(saved=True)),
    st.lists(st.tuples(bounds, bounds), min_size=1, max_size=3).map(
        lambda r: SequenceSet(ranges=tuple(r))
    ),
)
needle = st.one_of(st.sampled_from(WORDS), st.sampled_from(WORDS).map(lambda w: w[1:3].upper()))
leaves: st.SearchStrategy[SearchKey] = st.one_of(
    st.sampled_from(
        [
            "ALL",
            "ANSWERED",
            "DELETED",
            "DRAFT",
            "FLAGGED",
            "SEEN",
            "UNANSWERED",
            "UNDELETED",
            "UNDRAFT",
            "UNFLAGGED",
            "UNSEEN",
            "NEW",
            "OLD",
            "RECENT",
        ]
    ).map(lambda n: FlagKey(name=n)),
    st.builds(
        KeywordKey,
        name=st.sampled_from(["KEYWORD", "UNKEYWORD"]),
        keyword=st.sampled_from([*KEYWORDS, "$WORK", "TODO", "none"]),
    ),
    st.builds(SetKey, set=sets, uid=st.booleans()),
    st.builds(SizeKey, name=st.sampled_from(["LARGER", "SMALLER"]), size=st.integers(0, 400)),
    st.builds(
        DateKey,
        name=st.sampled_from(["BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"]),
        date=st.sampled_from(DAYS),
    ),
    st.builds(
        TextKey,
        name=st.sampled_from(["BODY", "TEXT", "FROM", "SUBJECT", "TO"]),
        value=st.one_of(needle, st.just("")),
    ),
    st.builds(
        HeaderKey,
        field=st.sampled_from(["Subject", "FROM", "date", "X-None"]),
        value=st.one_of(needle, st.just("")),
    ),
    st.builds(ModSeqKey, modseq=st.integers(0, 6)),
)
trees = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(Not, key=inner),
        st.builds(Or, left=inner, right=inner),
        st.lists(inner, min_size=1, max_size=3).map(lambda k: And(keys=tuple(k))),
    ),
    max_leaves=8,
)


def in_set(s: SequenceSet, n: int, largest: int) -> bool:
    for first, last in s.ranges:
        a = largest if first is None else first
        b = largest if last is None else last
        if min(a, b) <= n <= max(a, b):
            return True
    return False


def has(hay: str, value: str) -> bool:
    return value.casefold() in hay.casefold()


def reference(
    key: SearchKey,
    m: Model,
    seq: int,
    ms: list[Model],
    recent: set[int],
    saved: set[int] | None,
) -> bool:
    def rec(k: SearchKey) -> bool:
        return reference(k, m, seq, ms, recent, saved)

    lower = {f.lower() for f in m.flags}
    if isinstance(key, Not):
        return not rec(key.key)
    if isinstance(key, Or):
        return rec(key.left) or rec(key.right)
    if isinstance(key, And):
        return all(rec(k) for k in key.keys)
    if isinstance(key, FlagKey):
        name = key.name
        if name == "ALL":
            return True
        if name == "RECENT":
            return m.uid in recent
        if name == "NEW":
            return m.uid in recent and "\\seen" not in lower
        if name == "OLD":
            return m.uid not in recent
        if name.startswith("UN"):
            return "\\" + name[2:].lower() not in lower
        return "\\" + name.lower() in lower
    if isinstance(key, KeywordKey):
        return (key.keyword.lower() in lower) == (key.name == "KEYWORD")
    if isinstance(key, SetKey):
        if key.set.saved:
            return saved is not None and m.uid in saved
        if key.uid:
            return in_set(key.set, m.uid, ms[-1].uid)
        return in_set(key.set, seq, len(ms))
    if isinstance(key, SizeKey):
        return len(m.data) > key.size if key.name == "LARGER" else len(m.data) < key.size
    if isinstance(key, DateKey):
        if key.name.startswith("SENT"):
            if m.sent is None:
                return False
            got = m.sent
        else:
            got = m.internaldate.date()
        op = key.name.removeprefix("SENT")
        return {"BEFORE": got < key.date, "ON": got == key.date, "SINCE": got >= key.date}[op]
    if isinstance(key, ModSeqKey):
        return m.modseq >= key.modseq
    fields = dict(m.fields)
    if isinstance(key, HeaderKey):
        got_field = fields.get(key.field.lower())
        return got_field is not None and has(got_field, key.value)
    assert isinstance(key, TextKey)
    if key.name == "BODY":
        return has(m.body, key.value)
    if key.name == "TEXT":
        return has(m.body, key.value) or any(has(f"{k}: {v}", key.value) for k, v in m.fields)
    got_field = fields.get(key.name.lower())
    return got_field is not None and has(got_field, key.value)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ms=models(),
    keys=st.lists(trees, min_size=1, max_size=3),
    recent_bits=st.lists(st.booleans(), min_size=6, max_size=6),
    saved=st.one_of(st.none(), st.frozensets(st.integers(1, 20))),
)
def test_search_equals_reference(
    ms: list[Model], keys: list[SearchKey], recent_bits: list[bool], saved: frozenset[int] | None
) -> None:
    recent = {m.uid for m, bit in zip(ms, recent_bits, strict=False) if bit}
    infos = [
        MessageInfo(
            uid=m.uid,
            flags=m.flags,
            internaldate=m.internaldate,
            size=len(m.data),
            modseq=m.modseq,
        )
        for m in ms
    ]
    view = SearchView(
        messages=infos,
        folder=MemoryFolder({m.uid: m.data for m in ms}),  # type: ignore[arg-type]
        saved=SequenceSet.from_numbers(saved) if saved else None,
        recent=recent,
    )
    saved_set = set(saved) if saved else None
    expected = [
        m.uid
        for seq, m in enumerate(ms, 1)
        if all(reference(k, m, seq, ms, recent, saved_set) for k in keys)
    ]
    assert search(tuple(keys), view) == expected


@settings(max_examples=150, deadline=None)
@given(
    data=st.lists(
        st.one_of(
            st.binary(max_size=300),
            st.sampled_from(
                [
                    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n",
                    b"Content-Transfer-Encoding: base64\r\n",
                    b"Content-Type: text/plain; charset=nonexistent-cs\r\n",
                    b"Content-Type: text/plain; charset=utf-16\r\n",
                    b"Content-Type: text/plain; charset=base64\r\n",
                    b"Subject: =?utf-16?b?AAA=?= =?rot13?q?abc?= =?base64?q?x?=\r\n",
                    b"Subject: =?utf-8?b?###?= =?x?q?=ZZ?=\r\n",
                    b"Date: Mon, 99 Foo 99999 99:99:99 +9999\r\n",
                    b"\r\n",
                    b"=\r\n=Z",
                ]
            ),
        ),
        max_size=8,
    ).map(b"".join)
)
def test_any_message_searches_without_error(data: bytes) -> None:
    info = MessageInfo(
        uid=1,
        flags=frozenset(),
        internaldate=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        size=len(data),
        modseq=1,
    )
    view = SearchView(messages=[info], folder=MemoryFolder({1: data}))  # type: ignore[arg-type]
    keys: tuple[SearchKey, ...] = (
        Or(
            left=Or(left=TextKey(name="TEXT", value="zz"), right=HeaderKey(field="X", value="")),
            right=Or(
                left=DateKey(name="SENTON", date=DAYS[0]),
                right=TextKey(name="BODY", value="ß"),
            ),
        ),
    )
    assert search(keys, view) in ([], [1])
