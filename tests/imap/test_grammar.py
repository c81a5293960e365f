"""The grammar primitives: Reader on tables of wire forms, Writer's choice of form, and
Writer -> Reader round trips for every primitive."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents._protocol import LocalProtocolError
from mailagents.imap._frame import Frame, Streamed
from mailagents.imap._grammar import GrammarError, Reader, Writer, WriterError
from mailagents.imap._seqset import SequenceSet


def frame(*parts: bytes) -> Frame:
    """lines and literals alternating: line, literal, line, ..."""
    return Frame(lines=parts[0::2], literals=parts[1::2])


def read(method: str, *parts: bytes, utf8: bool = False) -> Any:
    r = Reader(frame(*parts), utf8=utf8)
    value = getattr(r, method)()
    r.end()
    return value


UTC = datetime.UTC

GOOD = [
    ("atom", (b"FETCH",), "FETCH"),
    ("atom", (b"x-y.z~",), "x-y.z~"),
    ("tag", (b"A001",), "A001"),
    ("tag", (b"a]b",), "a]b"),
    ("number", (b"0",), 0),
    ("number", (b"4294967295",), 4294967295),
    ("number", (b"007",), 7),
    ("nz_number", (b"1",), 1),
    ("number64", (b"9223372036854775807",), 2**63 - 1),
    ("astring", (b"alice",), "alice"),
    ("astring", (b"a]b",), "a]b"),
    ("astring", (b'"a b"',), "a b"),
    ("astring", (b'"q\\"uo\\\\te"',), 'q"uo\\te'),
    ("astring", (b"{5}", b"al ce", b""), "al ce"),
    ("astring", (b"{5+}", b"al ce", b""), "al ce"),
    ("astring", (b'"caf\xc3\xa9"',), "café"),
    ("astring", (b'"\xff"',), "\udcff"),
    ("string", (b'""',), b""),
    ("string", (b"{0}", b"", b""), b""),
    ("string", (b"{2}", b"\r\n", b""), b"\r\n"),
    ("string", (b"~{3}", b"a\x00b", b""), b"a\x00b"),
    ("string", (b"~{3+}", b"a\x00b", b""), b"a\x00b"),
    ("nstring", (b"NIL",), None),
    ("nstring", (b"nil",), None),
    ("nstring", (b'"NIL"',), b"NIL"),
    ("text_nstring", (b'"=?utf-8?q?x?="',), "=?utf-8?q?x?="),
    ("text_nstring", (b"NIL",), None),
    ("mailbox", (b"inbox",), "INBOX"),
    ("mailbox", (b'"InBoX"',), "INBOX"),
    ("mailbox", (b"{5}", b"Inbox", b""), "INBOX"),
    ("mailbox", (b"INBOX.Sent",), "INBOX.Sent"),
    ("mailbox", (b"~peter/mail/&U,BTFw-/&ZeVnLIqe-",), "~peter/mail/台北/日本語"),
    ("mailbox", (b'"Entw&APw-rfe &- Co"',), "Entwürfe & Co"),
    ("flag", (b"\\Seen",), "\\Seen"),
    ("flag", (b"$Forwarded",), "$Forwarded"),
    ("flag_list", (b"()",), ()),
    ("flag_list", (b"(\\Seen \\Deleted foo)",), ("\\Seen", "\\Deleted", "foo")),
    ("sequence_set", (b"1:4,7,*",), SequenceSet(ranges=((1, 4), (7, 7), (None, None)))),
    ("sequence_set", (b"$",), SequenceSet(saved=True)),
    (
        "date_time",
        (b'"17-Jul-1996 02:44:25 -0700"',),
        datetime.datetime(
            1996, 7, 17, 2, 44, 25, tzinfo=datetime.timezone(datetime.timedelta(hours=-7))
        ),
    ),
    ("date_time", (b'" 1-Jan-2000 00:00:00 +0000"',), datetime.datetime(2000, 1, 1, tzinfo=UTC)),
    ("date_time", (b'"01-jan-2000 00:00:00 +0000"',), datetime.datetime(2000, 1, 1, tzinfo=UTC)),
    ("date", (b"1-Feb-1994",), datetime.date(1994, 2, 1)),
    ("date", (b'"01-FEB-1994"',), datetime.date(1994, 2, 1)),
    ("text", (b"",), ""),
    ("text", (b"done [x] caf\xc3\xa9",), "done [x] café"),
]


@pytest.mark.parametrize(("method", "parts", "value"), GOOD)
def test_reader_good(method: str, parts: tuple[bytes, ...], value: object) -> None:
    assert read(method, *parts) == value


def test_utf8_mailbox() -> None:
    assert read("mailbox", b'"caf\xc3\xa9"', utf8=True) == "café"
    # with UTF8=ACCEPT, "&" is just a character
    assert read("mailbox", b"a&b", utf8=True) == "a&b"
    # 8-bit names without UTF8=ACCEPT are read as UTF-8 (servers do send them)
    assert read("mailbox", b'"caf\xc3\xa9"') == "café"


BAD = [
    ("atom", (b"",)),
    ("atom", (b"(",)),
    ("atom", (b"caf\xc3\xa9",)),
    ("tag", (b"+",)),
    ("tag", (b"*",)),
    ("number", (b"4294967296",)),
    ("number", (b"99999999999999999999999999",)),
    ("number", (b"x",)),
    ("number", (b"-1",)),
    ("nz_number", (b"0",)),
    ("number64", (b"9223372036854775808",)),
    ("string", (b'"abc',)),
    ("string", (b'"a\\b"',)),
    ("string", (b'"a\x00b"',)),
    ("string", (b"abc",)),
    ("string", (b"{99999999999999999999}", b"", b"")),
    ("string", (b"{" + b"9" * 5000 + b"}", b"", b"")),
    ("string", (b"{3}",)),
    ("string", (b"{3}", b"ab", b"")),
    ("string", (b"{3}", b"abcd", b"")),
    ("string", (b"{3}", b"a\x00b", b"")),
    ("string", (b"{3} ", b"abc", b"")),
    ("nstring", (b"NILL",)),
    ("astring", (b"",)),
    ("astring", (b"{3}", b"a\x00b", b"")),
    ("text_nstring", (b"{3}", Streamed(size=3), b"")),
    ("mailbox", (b"&AGE-",)),
    ("mailbox", (b"&Jjo",)),
    ("mailbox", (b'"\xff"',)),
    ("flag", (b"\\",)),
    ("flag", (b"\\*",)),
    ("flag_list", (b"(\\Seen",)),
    ("flag_list", (b"(\\Seen )",)),
    ("flag_list", (b"\\Seen",)),
    ("sequence_set", (b"0",)),
    ("sequence_set", (b"1:4294967296",)),
    ("sequence_set", (b"x",)),
    ("date_time", (b'"31-Feb-1996 02:44:25 -0700"',)),
    ("date_time", (b'"17-Jux-1996 02:44:25 -0700"',)),
    ("date_time", (b'"17-Jul-1996 25:44:25 -0700"',)),
    ("date_time", (b'"17-Jul-1996 02:44:25 -0760"',)),
    ("date_time", (b"17-Jul-1996 02:44:25 -0700",)),
    ("date", (b"30-Feb-1994",)),
    ("date", (b'"1-Feb-1994',)),
    ("text", (b"a\x00b",)),
    ("text", (b"a {1}", b"x", b"")),
]


@pytest.mark.parametrize(("method", "parts"), BAD)
def test_reader_bad(method: str, parts: tuple[bytes, ...]) -> None:
    with pytest.raises(GrammarError) as info:
        read(method, *parts)
    assert info.value.message


def test_streamed_literal() -> None:
    placeholder = Streamed(size=10_000_000, index=0)
    r = Reader(frame(b"* 1 FETCH (BODY[] {10000000}", placeholder, b")"))
    r.expect(b"* 1 FETCH (BODY[] ")
    assert r.string() is placeholder
    r.expect(b")")
    r.end()
    with pytest.raises(GrammarError):
        read("string", b"{9}", Streamed(size=10), b"")


def test_cursor_across_literals() -> None:
    r = Reader(frame(b"A1 LOGIN {5}", b"alice", b" {6+}", b"secret", b""))
    assert r.tag() == "A1"
    r.sp()
    r.expect(b"login")
    r.sp()
    assert not r.at_end()
    assert r.astring() == "alice"
    assert r.peek() == ord(" ")
    r.sp()
    assert r.astring() == "secret"
    assert r.at_end()
    assert r.peek() is None
    r.end()


def test_literal8_flag_and_accept() -> None:
    r = Reader(frame(b"~{2}", b"\x00\x01", b" {1}", b"x", b""))
    assert r.string() == b"\x00\x01"
    assert r.last_literal8
    r.sp()
    assert r.string() == b"x"
    assert not r.last_literal8
    assert not r.accept(b"X")
    with pytest.raises(GrammarError):
        r.sp()
    with pytest.raises(GrammarError):
        Reader(frame(b"a")).end()


def test_parenthesized() -> None:
    r = Reader(frame(b"(1 2 3)"))
    assert r.parenthesized(r.number) == (1, 2, 3)
    with pytest.raises(GrammarError):
        r2 = Reader(frame(b"()"))
        r2.parenthesized(r2.number)
    r3 = Reader(frame(b"()"))
    assert r3.parenthesized(r3.number, allow_empty=True) == ()


def test_flag_perm() -> None:
    r = Reader(frame(b"(\\Seen \\*)"))
    assert r.flag_list(perm=True) == ("\\Seen", "\\*")


# -- Writer: the form of each value ------------------------------------------------


def written(call: Callable[[Writer], None], **options: bool) -> Frame:
    w = Writer(**options)
    call(w)
    return w.frame()


FORMS: list[tuple[Callable[[Writer], None], dict[str, bool], Frame]] = [
    (lambda w: w.astring("alice"), {}, frame(b"alice")),
    (lambda w: w.astring("NIL"), {}, frame(b'"NIL"')),
    (lambda w: w.astring(""), {}, frame(b'""')),
    (lambda w: w.astring("a b"), {}, frame(b'"a b"')),
    (lambda w: w.astring('q"\\'), {}, frame(b'"q\\"\\\\"')),
    (lambda w: w.astring("café"), {}, frame(b"{5}", "café".encode(), b"")),
    (lambda w: w.astring("café"), {"utf8": True}, frame('"café"'.encode())),
    (lambda w: w.astring("a\r\nb"), {}, frame(b"{4}", b"a\r\nb", b"")),
    (lambda w: w.astring("a\r\nb"), {"utf8": True}, frame(b"{4}", b"a\r\nb", b"")),
    (lambda w: w.astring("a\nb"), {"literal_plus": True}, frame(b"{3+}", b"a\nb", b"")),
    (lambda w: w.string(b"x" * 5000), {"literal_minus": True}, frame(b"{5000}", b"x" * 5000, b"")),
    (lambda w: w.string(b"x\n"), {"literal_minus": True}, frame(b"{2+}", b"x\n", b"")),
    (lambda w: w.string(b"a\x00"), {"binary": True}, frame(b"~{2}", b"a\x00", b"")),
    (lambda w: w.literal(b"ab", binary=True), {}, frame(b"~{2}", b"ab", b"")),
    (lambda w: w.string("atom"), {}, frame(b'"atom"')),
    (lambda w: w.nstring(None), {}, frame(b"NIL")),
    (lambda w: w.nstring("NIL"), {}, frame(b'"NIL"')),
    (lambda w: w.mailbox("inbox"), {}, frame(b"INBOX")),
    (lambda w: w.mailbox("Entwürfe"), {}, frame(b"Entw&APw-rfe")),
    (lambda w: w.mailbox("Entwürfe"), {"utf8": True}, frame(b'"Entw\xc3\xbcrfe"')),
    (lambda w: w.mailbox("a b"), {}, frame(b'"a b"')),
    (lambda w: w.flag_list(["\\Seen", "$Junk"]), {}, frame(b"(\\Seen $Junk)")),
    (lambda w: w.flag_list([]), {}, frame(b"()")),
    (lambda w: w.number(2**63 - 1), {}, frame(b"9223372036854775807")),
    (
        lambda w: w.sequence_set(SequenceSet(ranges=((1, None), (3, 3)))),
        {},
        frame(b"1:*,3"),
    ),
    (
        lambda w: w.date_time(
            datetime.datetime(
                1996, 7, 7, 2, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=-7))
            )
        ),
        {},
        frame(b'" 7-Jul-1996 02:04:05 -0700"'),
    ),
    (lambda w: w.date(datetime.date(1994, 2, 1)), {}, frame(b"1-Feb-1994")),
]


@pytest.mark.parametrize(("call", "options", "expected"), FORMS)
def test_writer_forms(
    call: Callable[[Writer], None], options: dict[str, bool], expected: Frame
) -> None:
    assert written(call, **options) == expected


WRITER_BAD: list[Callable[[Writer], None]] = [
    lambda w: w.atom("a b"),
    lambda w: w.atom(""),
    lambda w: w.atom("café"),
    lambda w: w.number(-1),
    lambda w: w.number(2**63),
    lambda w: w.string(b"a\x00b"),
    lambda w: w.flag("a b"),
    lambda w: w.raw(b"a\r\nb"),
    lambda w: w.mailbox("\udcff"),
    lambda w: w.date_time(datetime.datetime(2000, 1, 1)),
    lambda w: w.date_time(
        datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(seconds=30)))
    ),
]


@pytest.mark.parametrize("call", WRITER_BAD)
def test_writer_refuses(call: Callable[[Writer], None]) -> None:
    with pytest.raises(WriterError) as info:
        call(Writer())
    assert isinstance(info.value, GrammarError)
    assert isinstance(info.value, LocalProtocolError)


def test_writer_frame_bytes() -> None:
    w = Writer()
    w.atom("A1")
    w.sp()
    w.atom("LOGIN")
    w.sp()
    w.astring("a\nb")
    w.sp()
    w.astring("pw")
    assert w.frame().to_bytes() == b"A1 LOGIN {3}\r\na\nb pw\r\n"


# -- round trips -------------------------------------------------------------------

octets = st.binary(max_size=200)
texts = st.text(max_size=60)
options = st.fixed_dictionaries(
    {
        "literal_plus": st.booleans(),
        "literal_minus": st.booleans(),
        "utf8": st.booleans(),
    }
)


def round_trip(
    write: Callable[[Writer], None], read_: Callable[[Reader], Any], opts: dict[str, bool]
) -> Any:
    w = Writer(**opts)
    w.atom("X")
    w.sp()
    write(w)
    w.sp()
    w.atom("Y")
    f = w.frame()
    for line in f.lines[:-1]:
        assert line.endswith((b"}", b"+}"))
    for line in f.lines:
        assert b"\r" not in line and b"\n" not in line
    r = Reader(f, utf8=opts.get("utf8", False))
    r.expect(b"X ")
    value = read_(r)
    r.expect(b" Y")
    r.end()
    return value


@settings(max_examples=200, deadline=None)
@given(octets.filter(lambda b: b"\x00" not in b), options)
def test_string_round_trip(data: bytes, opts: dict[str, bool]) -> None:
    assert round_trip(lambda w: w.string(data), Reader.string, opts) == data
    assert round_trip(lambda w: w.astring(data), Reader.astring_bytes, opts) == data
    assert round_trip(lambda w: w.nstring(data), Reader.nstring, opts) == data


@settings(max_examples=200, deadline=None)
@given(octets)
def test_literal8_round_trip(data: bytes) -> None:
    opts = {"literal_plus": False}
    value = round_trip(lambda w: w.literal(data, binary=True), Reader.string, opts)
    assert value == data
    w = Writer(binary=True)
    w.string(data)
    assert Reader(w.frame()).string() == data


@settings(max_examples=200, deadline=None)
@given(texts, options)
def test_text_round_trip(text: str, opts: dict[str, bool]) -> None:
    expected = text.encode("utf-8", "surrogatepass")
    if b"\x00" in expected or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return
    assert round_trip(lambda w: w.astring(text), Reader.astring, opts) == text
    assert round_trip(lambda w: w.nstring(text), Reader.text_nstring, opts) == text


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40), options)
def test_mailbox_round_trip(name: str, opts: dict[str, bool]) -> None:
    if opts["utf8"] and "\x00" in name:
        with pytest.raises(WriterError):
            Writer(utf8=True).mailbox(name)
        return
    expected = "INBOX" if name.upper() == "INBOX" else name
    assert round_trip(lambda w: w.mailbox(name), Reader.mailbox, opts) == expected


atoms = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters='(){%*"\\]'),
    min_size=1,
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(atoms, st.integers(0, 4294967295), st.integers(0, 2**63 - 1))
def test_atom_number_round_trip(atom: str, n: int, n64: int) -> None:
    assert round_trip(lambda w: w.atom(atom), Reader.atom, {}) == atom
    assert round_trip(lambda w: w.number(n), Reader.number, {}) == n
    assert round_trip(lambda w: w.number(n64), Reader.number64, {}) == n64


flags = st.one_of(atoms, atoms.map(lambda a: "\\" + a))


@settings(max_examples=200, deadline=None)
@given(st.lists(flags, max_size=8))
def test_flag_list_round_trip(values: list[str]) -> None:
    assert round_trip(lambda w: w.flag_list(values), Reader.flag_list, {}) == tuple(values)


bounds = st.one_of(st.none(), st.integers(1, 4294967295))
seqsets = st.one_of(
    st.just(SequenceSet(saved=True)),
    st.lists(st.tuples(bounds, bounds), min_size=1, max_size=6).map(
        lambda r: SequenceSet(ranges=tuple(r))
    ),
)


@settings(max_examples=200, deadline=None)
@given(seqsets)
def test_sequence_set_round_trip(s: SequenceSet) -> None:
    assert round_trip(lambda w: w.sequence_set(s), Reader.sequence_set, {}) == s


zones = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda m: datetime.timezone(datetime.timedelta(minutes=m))
)


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(
        min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31)
    ).map(lambda d: d.replace(microsecond=0)),
    zones,
)
def test_date_time_round_trip(dt: datetime.datetime, tz: datetime.timezone) -> None:
    aware = dt.replace(tzinfo=tz)
    value = round_trip(lambda w: w.date_time(aware), Reader.date_time, {})
    assert value == aware
    assert value.utcoffset() == aware.utcoffset()
    d = dt.date()
    assert round_trip(lambda w: w.date(d), Reader.date, {}) == d


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(max_size=30), min_size=1, max_size=3),
    st.sampled_from(
        [
            "atom",
            "tag",
            "number",
            "nz_number",
            "number64",
            "astring",
            "string",
            "nstring",
            "text_nstring",
            "mailbox",
            "flag",
            "flag_list",
            "sequence_set",
            "date_time",
            "date",
            "text",
        ]
    ),
)
def test_reader_raises_only_grammar_error(lines: list[bytes], method: str) -> None:
    lines = [line.replace(b"\r", b"").replace(b"\n", b"") for line in lines]
    literals = tuple(b"x" * (i + 1) for i in range(len(lines) - 1))
    r = Reader(Frame(lines=tuple(lines), literals=literals))
    try:
        getattr(r, method)()
        r.end()
    except GrammarError:
        pass


def test_writer_names_backslash_star_only_as_a_permanent_flag() -> None:
    # RFC 9051 §9: "\*" is flag-perm (PERMANENTFLAGS), never a flag to STORE or APPEND;
    # the writer refused nothing, so a STORE of \* went out and could not be read back.
    w = Writer()
    with pytest.raises(WriterError):
        w.flag_list(["\\Seen", "\\*"])
    w = Writer()
    w.flag_list(["\\Seen", "\\*"], perm=True)
    assert w.frame().lines == (b"(\\Seen \\*)",)
