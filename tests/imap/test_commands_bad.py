"""Commands that break the grammar: each is a CommandSyntaxError carrying the tag when
it could be read (the server answers ``tag BAD``), ``None`` when not (``* BAD``); the
limits hold; and no input makes the parser raise anything else."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailagents.imap._command_parser import CommandLimits, CommandSyntaxError, parse_command
from mailagents.imap._commands import Fetch, Search, Status
from mailagents.imap._frame import Frame, Streamed
from mailagents.imap._search import search_depth


def line(text: str | bytes) -> Frame:
    return Frame(lines=(text.encode() if isinstance(text, str) else text,))


NO_TAG: list[tuple[bytes, str | None]] = [
    (b"", None),
    (b" A1 NOOP", None),
    (b"+ NOOP", None),
    (b"* NOOP", None),
    (b'"A1" NOOP', None),
    (b"\xff NOOP", None),
    # the tag is read, what follows is not a command: tag BAD
    (b"A{1 NOOP", "A"),
    (b"A1", "A1"),
    (b"A1  NOOP", "A1"),
]

BAD = [
    # spaces: exactly one SP, none trailing (RFC 9051 §9)
    "A1 NOOP ",
    "A1 NOOP extra",
    "A1 SELECT  INBOX",
    "A1 SELECT INBOX ",
    "A1 FETCH 1  FLAGS",
    "A1 FETCH 1 (FLAGS )",
    "A1 FETCH 1 ( FLAGS)",
    "A1 LOGIN user",
    "A1 LOGIN user pass more",
    "A1 (",
    # AUTHENTICATE
    "A1 AUTHENTICATE",
    "A1 AUTHENTICATE PLAIN ",
    "A1 AUTHENTICATE PLAIN not*base64",
    "A1 AUTHENTICATE PLAIN abc",
    "A1 AUTHENTICATE PLAIN ==",
    "A1 AUTHENTICATE PLAIN =x",
    # ENABLE, ID, COMPRESS
    "A1 ENABLE",
    "A1 ID",
    'A1 ID ("name")',
    "A1 ID (name value)",
    'A1 ID ("a" "b" "c")',
    "A1 COMPRESS",
    # mailboxes
    "A1 SELECT",
    "A1 SELECT &Jjo",
    "A1 SELECT &AGE-",
    "A1 SELECT INBOX ()",
    "A1 SELECT INBOX (FOO)",
    "A1 SELECT INBOX (QRESYNC (0 5))",
    "A1 SELECT INBOX (QRESYNC (1 0))",
    "A1 SELECT INBOX (QRESYNC (1 5 1:*))",
    "A1 SELECT INBOX (QRESYNC (1 5 (1:2)))",
    "A1 SELECT INBOX (QRESYNC (1 5) QRESYNC (1 5))",
    "A1 CREATE x (USE (Drafts))",
    "A1 CREATE x (FOO (\\Drafts))",
    "A1 RENAME a",
    "A1 STATUS INBOX ()",
    "A1 STATUS INBOX (MESSAGES BOGUS)",
    "A1 STATUS INBOX MESSAGES",
    "A1 LIST",
    'A1 LIST ""',
    'A1 LIST "" ()',
    'A1 LIST (RECURSIVEMATCH) "" *',
    'A1 LIST (REMOTE RECURSIVEMATCH) "" *',
    'A1 LIST (BOGUS) "" *',
    'A1 LIST "" * RETURN',
    'A1 LIST "" * RETURN (BOGUS)',
    'A1 LIST "" * RETURN (STATUS ())',
    'A1 LIST "" * (CHILDREN)',
    "A1 LSUB x",
    # APPEND
    "A1 APPEND INBOX",
    'A1 APPEND INBOX "abc"',
    "A1 APPEND INBOX (\\Seen)",
    'A1 APPEND INBOX "bad date" {0}',
    "A1 APPEND INBOX abc",
    'A1 LIST "" &Jjo',
    'A1 LIST "" )',
    "A1 LSUB x &AGE-",
    # selected state
    "A1 EXPUNGE 1",
    "A1 UID EXPUNGE",
    "A1 UID NOOP",
    "A1 UID",
    "A1 COPY 0 x",
    "A1 COPY 1:",
    "A1 MOVE 1 ",
    "A1 FETCH 1",
    "A1 FETCH 1 ()",
    "A1 FETCH 1 BOGUS",
    "A1 FETCH 1 BODY.PEEK",
    "A1 FETCH 1 (BODY[MIME])",
    "A1 FETCH 1 (BODY[0])",
    "A1 FETCH 1 (BODY[1.])",
    "A1 FETCH 1 (BODY[HEADER.FIELDS])",
    "A1 FETCH 1 (BODY[HEADER.FIELDS ()])",
    "A1 FETCH 1 (BODY[HEADER.FIELDS (a:b)])",
    "A1 FETCH 1 (BODY[BOGUS])",
    "A1 FETCH 1 (BODY[TEXT]<0>)",
    "A1 FETCH 1 (BODY[TEXT]<0.0>)",
    "A1 FETCH 1 (BODY[]<-1.5>)",
    "A1 FETCH 1 (BINARY[TEXT])",
    "A1 FETCH 1 (BINARY.SIZE)",
    "A1 FETCH 1 ALL[]",
    "A1 FETCH 1 (ALL)",
    "A1 FETCH 1 FLAGS (CHANGEDSINCE 0)",
    "A1 FETCH 1 FLAGS (CHANGEDSINCE 5 VANISHED)",
    "A1 UID FETCH 1 FLAGS (VANISHED)",
    "A1 FETCH 1 FLAGS ()",
    "A1 FETCH 1 FLAGS (BOGUS)",
    "A1 STORE 1 FLAGS",
    "A1 STORE 1 *FLAGS (\\Seen)",
    "A1 STORE 1 FLAGS.LOUD (\\Seen)",
    "A1 STORE 1 (CHANGEDSINCE 5) FLAGS (\\Seen)",
    "A1 STORE 1 +FLAGS (\\Seen",
    # SEARCH
    "A1 SEARCH",
    "A1 SEARCH ",
    "A1 SEARCH ()",
    "A1 SEARCH (ALL",
    "A1 SEARCH ALL)",
    "A1 SEARCH BOGUS",
    "A1 SEARCH NOT",
    "A1 SEARCH OR ALL",
    "A1 SEARCH FROM",
    "A1 SEARCH SINCE 31-Feb-2020",
    "A1 SEARCH SINCE 1-Foo-2020",
    "A1 SEARCH SINCE 1-Feb-20",
    "A1 SEARCH LARGER x",
    "A1 SEARCH LARGER 99999999999999999999",
    "A1 SEARCH KEYWORD \\Seen",
    "A1 SEARCH HEADER X-A",
    "A1 SEARCH UID",
    "A1 SEARCH 0",
    "A1 SEARCH MODSEQ",
    "A1 SEARCH MODSEQ -1",
    'A1 SEARCH MODSEQ "/flags/\\\\seen" private 5',
    'A1 SEARCH MODSEQ "/flags/\\\\seen" 5',
    "A1 SEARCH RETURN (BOGUS) ALL",
    "A1 SEARCH RETURN ALL",
    "A1 SEARCH CHARSET",
    "A1 SEARCH CHARSET UTF-8",
    "A1 SEARCH ALL  SEEN",
    # SORT, THREAD
    "A1 SORT",
    "A1 SORT () UTF-8 ALL",
    "A1 SORT (BOGUS) UTF-8 ALL",
    "A1 SORT (REVERSE) UTF-8 ALL",
    "A1 SORT (DATE) UTF-8",
    "A1 SORT DATE UTF-8 ALL",
    "A1 THREAD REFERENCES UTF-8",
    "A1 THREAD REFERENCES",
]


@pytest.mark.parametrize(("text", "tag"), NO_TAG)
def test_unreadable_tag(text: bytes, tag: str | None) -> None:
    with pytest.raises(CommandSyntaxError) as info:
        parse_command(line(text))
    assert info.value.tag == tag
    assert info.value.message


@pytest.mark.parametrize("text", BAD)
def test_bad_syntax(text: str) -> None:
    with pytest.raises(CommandSyntaxError) as info:
        parse_command(line(text))
    assert info.value.tag == "A1"
    assert info.value.message


def test_nul_in_a_quoted_string_or_literal() -> None:
    with pytest.raises(CommandSyntaxError):
        parse_command(line(b'A1 LOGIN "a\x00b" c'))
    with pytest.raises(CommandSyntaxError):
        parse_command(Frame(lines=(b"A1 LOGIN {3}", b" c"), literals=(b"a\x00b",)))


def test_literal_size_must_match() -> None:
    with pytest.raises(CommandSyntaxError) as info:
        parse_command(Frame(lines=(b"A1 LOGIN {4}", b" c"), literals=(b"abc",)))
    assert info.value.tag == "A1"


@pytest.mark.parametrize(
    "first",
    [b"A1 LOGIN {3}", b'A1 LIST "" {3}', b"A1 ID ({3}", b'A1 ID ("a" {3}', b"A1 SEARCH TEXT {3}"],
)
def test_streamed_literal_where_text_is_needed(first: bytes) -> None:
    rest = b")" if first.startswith(b"A1 ID") else b""
    frame = Frame(
        lines=(first, b" c" if first.startswith(b"A1 LOGIN") else rest),
        literals=(Streamed(size=3),),
    )
    with pytest.raises(CommandSyntaxError) as info:
        parse_command(frame)
    assert info.value.tag == "A1"


def test_limits_must_be_positive() -> None:
    from mailagents._protocol import LocalProtocolError

    with pytest.raises(LocalProtocolError):
        CommandLimits(max_items=0)


@pytest.mark.parametrize("opener", ["(", "NOT ", "OR ALL "])
def test_deep_nesting_is_a_clean_error(opener: str) -> None:
    deep = "A1 SEARCH " + opener * 10_000 + "ALL" + ")" * (10_000 if opener == "(" else 0)
    with pytest.raises(CommandSyntaxError) as info:
        parse_command(line(deep))
    assert "nested" in info.value.message


def test_nesting_limit_is_exact() -> None:
    limits = CommandLimits(max_depth=5)
    ok = parse_command(line("A1 SEARCH NOT NOT NOT NOT ALL"), limits=limits)
    assert isinstance(ok, Search) and search_depth(ok.criteria) == 5
    with pytest.raises(CommandSyntaxError):
        parse_command(line("A1 SEARCH NOT NOT NOT NOT NOT ALL"), limits=limits)
    ok = parse_command(line("A1 SEARCH ((((ALL))))"), limits=limits)
    assert isinstance(ok, Search) and search_depth(ok.criteria) == 5
    with pytest.raises(CommandSyntaxError):
        parse_command(line("A1 SEARCH (((((ALL)))))"), limits=limits)


def test_default_depth_100() -> None:
    parse_command(line("A1 SEARCH " + "NOT " * 99 + "ALL"))
    with pytest.raises(CommandSyntaxError):
        parse_command(line("A1 SEARCH " + "NOT " * 100 + "ALL"))


def test_item_and_range_limits() -> None:
    limits = CommandLimits(max_items=3, max_ranges=2)
    assert isinstance(parse_command(line("A1 FETCH 1 (UID FLAGS ENVELOPE)"), limits=limits), Fetch)
    with pytest.raises(CommandSyntaxError):
        parse_command(line("A1 FETCH 1 (UID FLAGS ENVELOPE BODY)"), limits=limits)
    with pytest.raises(CommandSyntaxError):
        parse_command(line("A1 SEARCH ALL ALL ALL ALL"), limits=limits)
    with pytest.raises(CommandSyntaxError):
        parse_command(line("A1 SEARCH (ALL ALL ALL ALL)"), limits=limits)
    with pytest.raises(CommandSyntaxError):
        parse_command(line("A1 STORE 1 FLAGS a b c d"), limits=limits)
    with pytest.raises(CommandSyntaxError):
        parse_command(line("A1 ENABLE A B C D"), limits=limits)
    assert isinstance(
        parse_command(line("A1 STATUS x (MESSAGES UIDNEXT SIZE)"), limits=limits), Status
    )
    parse_command(line("A1 FETCH 1,2 FLAGS"), limits=limits)
    with pytest.raises(CommandSyntaxError):
        parse_command(line("A1 FETCH 1,2,3 FLAGS"), limits=limits)
    with pytest.raises(CommandSyntaxError):
        parse_command(line("A1 SEARCH UID 1,2,3"), limits=limits)
    with pytest.raises(CommandSyntaxError):
        parse_command(line("A1 FETCH 1 BODY[HEADER.FIELDS (A B C D)]"), limits=limits)
    four = Frame(lines=(b"A1 APPEND x {0}", b" {0}", b" {0}", b" {0}", b""), literals=(b"",) * 4)
    with pytest.raises(CommandSyntaxError):
        parse_command(four, limits=limits)


TOKENS = st.sampled_from(
    [
        b"A1 ",
        b" ",
        b"(",
        b")",
        b"[",
        b"]",
        b"<",
        b">",
        b".",
        b'"',
        b"\\",
        b"{3}",
        b"~{3}",
        b"*",
        b"$",
        b"%",
        b"1",
        b"0",
        b":",
        b",",
        b"=",
        b"\x00",
        b"\xc3\xa9",
        b"&",
        b"-",
        b"NIL",
        b"UID",
        b"FETCH",
        b"SEARCH",
        b"NOT",
        b"OR",
        b"BODY",
        b"PEEK",
        b"HEADER.FIELDS",
        b"SELECT",
        b"QRESYNC",
        b"LIST",
        b"RETURN",
        b"STATUS",
        b"STORE",
        b"+FLAGS",
        b"APPEND",
        b"ID",
        b"AUTHENTICATE",
        b"SORT",
        b"MODSEQ",
        b"CHANGEDSINCE",
    ]
)


def _outcome(frame: Frame) -> None:
    try:
        parse_command(frame)
    except CommandSyntaxError as exc:
        assert isinstance(exc.message, str)
        assert exc.tag is None or isinstance(exc.tag, str)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_the_declared_error(data: bytes) -> None:
    _outcome(line(data))
    _outcome(line(b"A1 " + data))


@settings(max_examples=300, deadline=None)
@given(st.lists(TOKENS, max_size=40), st.lists(st.binary(max_size=5), max_size=3))
def test_grammar_shaped_noise(tokens: list[bytes], literals: list[bytes]) -> None:
    text = b"".join(tokens)
    _outcome(line(text))
    _outcome(line(b"A1 " + text))
    lines = [text + b"{%d}" % len(lit) for lit in literals] + [text]
    _outcome(Frame(lines=tuple(lines), literals=tuple(literals)))
