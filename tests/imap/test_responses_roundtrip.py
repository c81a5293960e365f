"""Properties: any response value written and parsed back is equal to itself (every
kind, ENVELOPE and BODYSTRUCTURE trees included); any bytes either parse or raise
ResponseSyntaxError, nothing else."""

from __future__ import annotations

import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents.imap._body_model import (
    Address,
    Body,
    Envelope,
    MultipartBody,
    SinglePartBody,
)
from mailagents.imap._fetch_data import BodySection, FetchData
from mailagents.imap._fetch_items import Section
from mailagents.imap._frame import Frame, Streamed
from mailagents.imap._response_codes import (
    AppendUidCode,
    BadCharsetCode,
    CapabilityCode,
    CopyUidCode,
    HighestModSeqCode,
    ModifiedCode,
    PermanentFlagsCode,
    ResponseCode,
    UidNextCode,
    UidValidityCode,
    UnseenCode,
)
from mailagents.imap._response_parser import (
    ResponseSyntaxError,
    _fast_fetch,
    _fetch,
    parse_response,
)
from mailagents.imap._response_tree import read_tree
from mailagents.imap._response_writer import write_response
from mailagents.imap._responses import (
    CapabilityData,
    Continuation,
    EnabledData,
    ESearchData,
    ExistsData,
    ExpungeData,
    FlagsData,
    IdData,
    ListData,
    Namespace,
    NamespaceData,
    RecentData,
    Response,
    SearchData,
    SortData,
    StatusData,
    StatusResponse,
    ThreadData,
    UntaggedData,
    VanishedData,
)
from mailagents.imap._seqset import SequenceSet

ATOM_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters='(){%*"\\]')
# an atom NIL (any case) reads back as NIL, so a capability or flag never is one
atoms = st.text(ATOM_CHARS, min_size=1, max_size=12).filter(lambda a: a.upper() != "NIL")
names = st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ-"), min_size=1, max_size=10).filter(
    lambda s: s != "NIL"
)
x_names = names.map(lambda s: "X" + s)
flags = st.one_of(atoms, atoms.map(lambda a: "\\" + a))
n32 = st.integers(0, 4294967295)
nz32 = st.integers(1, 4294967295)
n63 = st.integers(0, 2**63 - 1)
nz63 = st.integers(1, 2**63 - 1)
# text of strings: any characters but NUL (and lone surrogates, which are octets that
# are not UTF-8: they round-trip too, through surrogateescape, but only as \udc80-\udcff)
text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30
)
short_ascii = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
line_text = short_ascii.filter(lambda s: not s.startswith("[") and s.strip(" ") == s)
ntext = st.one_of(st.none(), text)
bounds = st.one_of(st.none(), nz32)
seqsets = st.lists(st.tuples(bounds, bounds), min_size=1, max_size=5).map(
    lambda r: SequenceSet(ranges=tuple(r))
)

codes = st.one_of(
    st.builds(
        ResponseCode,
        name=names,
        args=st.one_of(st.none(), short_ascii.filter(lambda s: s and "]" not in s and s[0] != " ")),
    ).filter(
        lambda c: (
            c.name
            not in {
                "UIDNEXT",
                "UIDVALIDITY",
                "UNSEEN",
                "PERMANENTFLAGS",
                "CAPABILITY",
                "APPENDUID",
                "COPYUID",
                "HIGHESTMODSEQ",
                "MODIFIED",
                "BADCHARSET",
            }
        )
    ),
    st.builds(UidNextCode, uidnext=nz32),
    st.builds(UidValidityCode, uidvalidity=nz32),
    st.builds(UnseenCode, number=nz32),
    st.builds(
        PermanentFlagsCode,
        flags=st.lists(st.one_of(flags, st.just("\\*")), max_size=5).map(tuple),
    ),
    st.builds(CapabilityCode, capabilities=st.lists(atoms, max_size=5).map(tuple)),
    st.builds(AppendUidCode, uidvalidity=nz32, uids=seqsets),
    st.builds(CopyUidCode, uidvalidity=nz32, source=seqsets, destination=seqsets),
    st.builds(HighestModSeqCode, modseq=nz63),
    st.builds(ModifiedCode, uids=seqsets),
    st.builds(BadCharsetCode, charsets=st.lists(atoms, max_size=3).map(tuple)),
)

tags = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters='(){%*"\\+'),
    min_size=1,
    max_size=8,
).filter(lambda t: t != "*")

statuses = st.one_of(
    st.builds(
        StatusResponse,
        status=st.sampled_from(["OK", "NO", "BAD", "PREAUTH", "BYE"]),
        code=st.one_of(st.none(), codes),
        text=line_text,
    ),
    st.builds(
        StatusResponse,
        status=st.sampled_from(["OK", "NO", "BAD"]),
        tag=tags,
        code=st.one_of(st.none(), codes),
        text=line_text,
    ),
)
continuations = st.one_of(
    st.builds(Continuation, code=st.one_of(st.none(), codes), text=line_text),
)

ext_leaf = st.one_of(
    st.none(),
    n63,
    short_ascii,  # a literal reads back as octets, so text here is what goes quoted
    st.binary(max_size=20),
)
ext_values = st.recursive(
    ext_leaf, lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=6
)

mailboxes = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20
).map(lambda m: "INBOX" if m.upper() == "INBOX" else m)
delimiters = st.one_of(st.none(), st.characters(min_codepoint=0x20, max_codepoint=0x7E))

lists = st.builds(
    ListData,
    flags=st.lists(flags, max_size=4).map(tuple),
    delimiter=delimiters,
    mailbox=mailboxes,
    child_info=st.one_of(st.none(), st.lists(atoms, max_size=3).map(tuple)),
    old_name=st.one_of(st.none(), mailboxes),
    extended=st.lists(st.tuples(x_names, ext_values), max_size=2).map(tuple),
    lsub=st.booleans(),
)

status_items = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "RECENT"]),
            n32,
        ),
        st.tuples(st.sampled_from(["SIZE", "HIGHESTMODSEQ"]), n63),
        st.tuples(st.just("APPENDLIMIT"), st.one_of(st.none(), n32)),
        st.tuples(x_names, ext_values),
    ),
    max_size=5,
).map(tuple)

threads = st.recursive(
    st.lists(nz32, min_size=1, max_size=3).map(tuple),
    lambda inner: st.tuples(
        st.lists(nz32, max_size=2).map(tuple), st.lists(inner, min_size=2, max_size=3)
    ).map(lambda t: t[0] + tuple(t[1])),
    max_leaves=8,
)

namespaces = st.one_of(
    st.none(),
    st.lists(
        st.builds(
            Namespace,
            prefix=text,
            delimiter=delimiters,
            extensions=st.lists(
                st.tuples(text, st.lists(text, max_size=2).map(tuple)), max_size=2
            ).map(tuple),
        ),
        min_size=1,
        max_size=3,
    ).map(tuple),
)

addresses = st.builds(Address, name=ntext, adl=ntext, mailbox=ntext, host=ntext)
address_lists = st.one_of(st.none(), st.lists(addresses, min_size=1, max_size=3).map(tuple))
envelopes = st.builds(
    Envelope,
    date=ntext,
    subject=ntext,
    from_=address_lists,
    sender=address_lists,
    reply_to=address_lists,
    to=address_lists,
    cc=address_lists,
    bcc=address_lists,
    in_reply_to=ntext,
    message_id=ntext,
)
params = st.lists(st.tuples(text, text), max_size=2).map(tuple)
dispositions = st.one_of(st.none(), st.tuples(text, params))
languages = st.one_of(st.none(), st.lists(text, min_size=1, max_size=2).map(tuple))
body_ext = st.recursive(
    st.one_of(st.none(), n32, text),
    lambda inner: st.lists(inner, max_size=2).map(tuple),
    max_leaves=4,
)


def single_parts(inner: st.SearchStrategy[Body] | None) -> st.SearchStrategy[Body]:
    common = {
        "params": params,
        "id": ntext,
        "description": ntext,
        "encoding": text,
        "size": n32,
    }

    def with_ext(extended: bool) -> dict[str, st.SearchStrategy[object]]:
        if not extended:
            return {}
        return {
            "extended": st.just(True),
            "md5": ntext,
            "disposition": dispositions,
            "language": languages,
            "location": ntext,
            "extensions": st.lists(body_ext, max_size=2).map(tuple),
        }

    kinds: list[st.SearchStrategy[Body]] = []
    for extended in (False, True):
        kinds.append(
            st.builds(
                SinglePartBody,
                type=st.sampled_from(["APPLICATION", "IMAGE", "audio"]),
                subtype=text,
                **common,
                **with_ext(extended),
            )
        )
        kinds.append(
            st.builds(
                SinglePartBody,
                type=st.sampled_from(["TEXT", "text"]),
                subtype=text,
                lines=n63,
                **common,
                **with_ext(extended),
            )
        )
        if inner is not None:
            kinds.append(
                st.builds(
                    SinglePartBody,
                    type=st.just("MESSAGE"),
                    subtype=st.sampled_from(["RFC822", "global"]),
                    lines=n63,
                    envelope=envelopes,
                    body=inner,
                    **common,
                    **with_ext(extended),
                )
            )
    return st.one_of(kinds)


def multiparts(inner: st.SearchStrategy[Body]) -> st.SearchStrategy[Body]:
    return st.one_of(
        st.builds(
            MultipartBody, parts=st.lists(inner, min_size=1, max_size=3).map(tuple), subtype=text
        ),
        st.builds(
            MultipartBody,
            parts=st.lists(inner, min_size=1, max_size=3).map(tuple),
            subtype=text,
            extended=st.just(True),
            params=params,
            disposition=dispositions,
            language=languages,
            location=ntext,
            extensions=st.lists(body_ext, max_size=2).map(tuple),
        ),
    )


bodies = st.recursive(
    single_parts(None),
    lambda inner: st.one_of(multiparts(inner), single_parts(inner)),
    max_leaves=6,
)

zones = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda m: datetime.timezone(datetime.timedelta(minutes=m))
)
date_times = st.builds(
    lambda d, tz: d.replace(microsecond=0, tzinfo=tz),
    st.datetimes(min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31)),
    zones,
)
sections = st.one_of(
    st.builds(Section, part=st.lists(nz32, max_size=3).map(tuple)),
    st.builds(
        Section,
        part=st.lists(nz32, max_size=2).map(tuple),
        text=st.sampled_from(["HEADER", "TEXT"]),
    ),
    st.builds(
        Section,
        part=st.lists(nz32, min_size=1, max_size=2).map(tuple),
        text=st.just("MIME"),
    ),
    st.builds(
        Section,
        text=st.sampled_from(["HEADER.FIELDS", "HEADER.FIELDS.NOT"]),
        fields=st.lists(
            st.text(
                st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters=":"),
                min_size=1,
                max_size=10,
            ),
            min_size=1,
            max_size=3,
        ).map(tuple),
    ),
)
octets = st.one_of(
    st.none(),
    st.binary(max_size=40),
    st.builds(Streamed, size=st.integers(0, 10**9)),
)
body_sections = st.one_of(
    st.builds(BodySection, section=sections, origin=st.one_of(st.none(), n63), data=octets),
    st.builds(
        BodySection,
        name=st.just("BINARY"),
        section=st.builds(Section, part=st.lists(nz32, max_size=3).map(tuple)),
        origin=st.one_of(st.none(), n63),
        data=octets,
    ),
    st.builds(
        BodySection, name=st.sampled_from(["RFC822", "RFC822.HEADER", "RFC822.TEXT"]), data=octets
    ),
)


fetches = st.builds(
    FetchData,
    number=nz32,
    flags=st.one_of(st.none(), st.lists(flags, max_size=4).map(tuple)),
    uid=st.one_of(st.none(), n32),
    internaldate=st.one_of(st.none(), date_times),
    rfc822_size=st.one_of(st.none(), n63),
    envelope=st.one_of(st.none(), envelopes),
    body=st.one_of(st.none(), bodies),
    bodystructure=st.one_of(st.none(), bodies),
    sections=st.lists(body_sections, max_size=3).map(tuple),
    binary_sizes=st.lists(st.tuples(st.lists(nz32, max_size=3).map(tuple), n63), max_size=2).map(
        tuple
    ),
    modseq=st.one_of(st.none(), n63),
    preview=st.one_of(st.none(), text),
    extensions=st.lists(st.tuples(x_names, ext_values), max_size=2).map(tuple),
)

responses: st.SearchStrategy[Response] = st.one_of(
    statuses,
    continuations,
    st.builds(CapabilityData, capabilities=st.lists(atoms, max_size=5).map(tuple)),
    st.builds(EnabledData, capabilities=st.lists(atoms, max_size=5).map(tuple)),
    st.builds(FlagsData, flags=st.lists(flags, max_size=5).map(tuple)),
    lists,
    st.builds(StatusData, mailbox=mailboxes, items=status_items),
    st.builds(
        SearchData,
        numbers=st.lists(nz32, max_size=6).map(tuple),
        modseq=st.one_of(st.none(), n63),
    ),
    st.builds(
        SortData, numbers=st.lists(nz32, max_size=6).map(tuple), modseq=st.one_of(st.none(), n63)
    ),
    st.builds(
        ESearchData,
        tag=st.one_of(st.none(), text),
        uid=st.booleans(),
        min=st.one_of(st.none(), n32),
        max=st.one_of(st.none(), n32),
        count=st.one_of(st.none(), n32),
        all=st.one_of(st.none(), seqsets),
        modseq=st.one_of(st.none(), n63),
        extensions=st.lists(
            st.tuples(x_names, ext_values),
            max_size=2,
        ).map(tuple),
    ),
    st.builds(ThreadData, threads=st.lists(threads, max_size=3).map(tuple)),
    st.builds(ExistsData, count=n32),
    st.builds(RecentData, count=n32),
    st.builds(ExpungeData, number=nz32),
    st.builds(VanishedData, uids=seqsets, earlier=st.booleans()),
    st.builds(NamespaceData, personal=namespaces, other=namespaces, shared=namespaces),
    st.builds(
        IdData,
        params=st.one_of(st.none(), st.lists(st.tuples(text, ntext), max_size=3).map(tuple)),
    ),
    st.builds(
        UntaggedData,
        name=x_names,
        number=st.one_of(st.none(), n32),
        items=st.lists(ext_values, max_size=3).map(tuple),
    ),
    fetches,
)


@settings(max_examples=300, deadline=None)
@given(responses, st.booleans())
def test_write_parse_round_trip(response: Response, utf8: bool) -> None:
    frame = write_response(response, utf8=utf8)
    for line in frame.lines:
        assert b"\r" not in line and b"\n" not in line
    assert parse_response(frame, utf8=utf8) == response
    if not any(isinstance(literal, Streamed) for literal in frame.literals):
        frame.to_bytes()


@settings(max_examples=150, deadline=None)
@given(fetches)
def test_fetch_round_trip(response: FetchData) -> None:
    assert parse_response(write_response(response)) == response


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=60), min_size=1, max_size=3), st.booleans())
def test_any_bytes_parse_or_raise_syntax_error(lines: list[bytes], utf8: bool) -> None:
    lines = [line.replace(b"\r", b"").replace(b"\n", b"") for line in lines]
    literals = tuple(b"x" * i for i in range(len(lines) - 1))
    frame = Frame(lines=tuple(lines), literals=literals)
    try:
        parse_response(frame, utf8=utf8)
    except ResponseSyntaxError:
        pass


structural = st.lists(
    st.sampled_from(
        [
            b"(",
            b")",
            b" ",
            b"NIL",
            b'"x"',
            b"1",
            b"BODY[",
            b"]",
            b"<1>",
            b"UID",
            b"FETCH",
            b"ENVELOPE",
            b"BODYSTRUCTURE",
            b"FLAGS",
            b"\\Seen",
            b'"TEXT"',
            b'"MESSAGE"',
            b'"RFC822"',
            b"HEADER.FIELDS",
            b"{1}",
        ]
    ),
    max_size=40,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(structural)
def test_fetch_like_garbage_parses_or_raises(rest: bytes) -> None:
    for head in (b"* 1 FETCH (", b"* 1 FETCH ", b"* LIST ", b"* OK [", b"* ESEARCH "):
        try:
            parse_response(Frame(lines=(head + rest,)))
        except ResponseSyntaxError:
            pass


def _reference(frame: Frame) -> FetchData | str:
    """FETCH through the token loop only (the reference the fast path must equal)."""
    first = frame.lines[0].decode("utf-8", "surrogateescape")
    head, _, rest = first.partition(" FETCH ")
    try:
        tree = read_tree(frame, rest)
        if len(tree) != 1 or not isinstance(tree[0], list):
            return "error"
        return _fetch(int(head[2:]), tree[0])
    except Exception:
        return "error"


def _fast(frame: Frame) -> FetchData | None:
    first = frame.lines[0].decode("utf-8", "surrogateescape")
    head, _, rest = first.partition(" FETCH ")
    return _fast_fetch(int(head[2:]), frame, rest, 100, 100_000)


@settings(max_examples=300, deadline=None)
@given(fetches)
def test_fast_path_equals_reference(response: FetchData) -> None:
    frame = write_response(response)
    fast = _fast(frame)
    if fast is not None:
        assert fast == _reference(frame) == response


@settings(max_examples=300, deadline=None)
@given(structural, st.lists(st.binary(max_size=5), max_size=2))
def test_fast_path_equals_reference_on_garbage(rest: bytes, literals: list[bytes]) -> None:
    lines = [b"* 1 FETCH (" + rest]
    for i, literal in enumerate(literals):
        lines[-1] += b" {%d}" % len(literal)
        lines.append(b" x%d" % i)
    lines[-1] += b")"
    frame = Frame(lines=tuple(lines), literals=tuple(literals))
    fast = _fast(frame)
    if fast is not None:
        assert fast == _reference(frame)
    try:
        parse_response(frame)
    except ResponseSyntaxError:
        pass


def test_fast_path_is_taken_for_plain_fetch() -> None:
    frame = Frame(
        lines=(
            b'* 3 FETCH (UID 7 FLAGS (\\Seen) ENVELOPE (NIL "s" NIL NIL NIL NIL NIL NIL '
            b"NIL NIL) BODY[HEADER] {2}",
            b")",
        ),
        literals=(b"h\n",),
    )
    assert _fast(frame) is not None
    assert _fast(frame) == _reference(frame) == parse_response(frame)
    # a case variant of NIL, an extension item: the reference path
    assert _fast(Frame(lines=(b"* 3 FETCH (UID 7 X nil)",))) is None
    assert _fast(Frame(lines=(b"* 3 FETCH (UID 7 XEXT 5)",))) is None
