"""Round trip: any command value, written with any combination of the writer's options,
parses back to the same value (``parse_command(write_command(c)) == c``)."""

from __future__ import annotations

import datetime
import itertools
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailagents.imap._command_parser import parse_command
from mailagents.imap._command_writer import write_command
from mailagents.imap._commands import (
    LIST_RETURN_OPTIONS,
    SEARCH_RETURN_OPTIONS,
    STATUS_ITEMS,
    Append,
    AppendMessage,
    Authenticate,
    Capability,
    Check,
    Close,
    Command,
    Compress,
    Copy,
    Create,
    Delete,
    Enable,
    Examine,
    Expunge,
    Fetch,
    Id,
    Idle,
    List,
    Login,
    Logout,
    Lsub,
    Move,
    Namespace,
    Noop,
    QResync,
    Rename,
    Search,
    Select,
    Sort,
    StartTLS,
    Status,
    Store,
    Subscribe,
    Thread,
    UnknownCommand,
    Unselect,
    Unsubscribe,
)
from mailagents.imap._fetch_items import (
    ATTRIBUTE_NAMES,
    FetchAttribute,
    FetchBinarySize,
    FetchBody,
    FetchItem,
    Section,
)
from mailagents.imap._frame import Frame, Streamed
from mailagents.imap._search import (
    FLAG_KEYS,
    SORT_KEYS,
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
    SortCriterion,
    TextKey,
)
from mailagents.imap._seqset import SequenceSet

N64 = 2**63 - 1

# -- primitives ------------------------------------------------------------------------

TAG_CHARS = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in '(){ %*"\\+')
tags = st.text(TAG_CHARS, min_size=1, max_size=8)
ATOM_CHARS = string.ascii_letters + string.digits + "-_.$!#&'+,/:;<=>?@^`|~"
atoms = st.text(ATOM_CHARS, min_size=1, max_size=10)
upper_atoms = st.text(string.ascii_uppercase + string.digits + "-_.=", min_size=1, max_size=12)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


texts = st.one_of(
    st.text(string.printable, max_size=20),
    st.binary(max_size=30).filter(lambda b: b"\x00" not in b).map(_decode),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=15),
    st.just("NIL"),
    st.binary(min_size=1030, max_size=1100).filter(lambda b: b"\x00" not in b).map(_decode),
)
names = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=15
).filter(lambda n: n.upper() != "INBOX")
mailboxes = st.one_of(st.just("INBOX"), names, st.text(string.ascii_letters + "/.&-", max_size=12))
patterns = st.one_of(
    mailboxes,
    st.text(string.ascii_letters + "%*/&", max_size=12).filter(lambda n: n.upper() != "INBOX"),
)
system_flags = st.sampled_from(["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"])
flags = st.one_of(system_flags, atoms, atoms.map(lambda a: "\\" + a))
flag_tuples = st.lists(flags, max_size=4).map(tuple)

numbers = st.integers(1, 4294967295)
bounds = st.one_of(st.none(), numbers)


@st.composite
def seqsets(draw: st.DrawFn, *, star: bool = True, saved: bool = True) -> SequenceSet:
    if saved and draw(st.integers(0, 9)) == 0:
        return SequenceSet(saved=True)
    b = bounds if star else numbers
    ranges = draw(
        st.lists(
            st.one_of(b.map(lambda n: (n, n)), st.tuples(b, b)),
            min_size=1,
            max_size=5,
        )
    )
    return SequenceSet(ranges=tuple(ranges))


dates = st.dates(datetime.date(1000, 1, 1), datetime.date(9999, 12, 31))
zones = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda m: datetime.timezone(datetime.timedelta(minutes=m))
)
date_times = st.builds(
    lambda dt, tz: dt.replace(microsecond=0, tzinfo=tz),
    st.datetimes(datetime.datetime(1900, 1, 1), datetime.datetime(2100, 12, 31)),
    zones,
)

# -- search keys ---------------------------------------------------------------------------

leaf_keys: st.SearchStrategy[SearchKey] = st.one_of(
    st.sampled_from(sorted(FLAG_KEYS)).map(lambda n: FlagKey(name=n)),
    st.builds(
        TextKey,
        name=st.sampled_from(["BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"]),
        value=texts,
    ),
    st.builds(HeaderKey, field=texts, value=texts),
    st.builds(
        DateKey,
        name=st.sampled_from(["BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"]),
        date=dates,
    ),
    st.builds(SizeKey, name=st.sampled_from(["LARGER", "SMALLER"]), size=st.integers(0, N64)),
    st.builds(KeywordKey, name=st.sampled_from(["KEYWORD", "UNKEYWORD"]), keyword=atoms),
    st.builds(SetKey, set=seqsets(), uid=st.booleans()),
    st.builds(ModSeqKey, modseq=st.integers(0, N64)),
    st.builds(
        ModSeqKey,
        modseq=st.integers(0, N64),
        entry=texts,
        entry_type=st.sampled_from(["priv", "shared", "all"]),
    ),
)


def _extend(children: st.SearchStrategy[SearchKey]) -> st.SearchStrategy[SearchKey]:
    return st.one_of(
        st.builds(Not, key=children),
        st.builds(Or, left=children, right=children),
        st.lists(children, min_size=1, max_size=4).map(lambda ks: And(keys=tuple(ks))),
    )


search_keys = st.recursive(leaf_keys, _extend, max_leaves=12)
criteria = st.lists(search_keys, min_size=1, max_size=4).map(tuple)

# -- FETCH items -----------------------------------------------------------------------------

parts = st.lists(numbers, max_size=3).map(tuple)
field_names = st.text(
    "".join(c for c in map(chr, range(0x21, 0x7F)) if c != ":"), min_size=1, max_size=10
)


@st.composite
def sections(draw: st.DrawFn) -> Section:
    part = draw(parts)
    choices: list[str | None] = [None, "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"]
    if part:
        choices.append("MIME")
    text = draw(st.sampled_from(choices))
    fields: tuple[str, ...] = ()
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        fields = tuple(draw(st.lists(field_names, min_size=1, max_size=3)))
    return Section(part=part, text=text, fields=fields)  # type: ignore[arg-type]


partials = st.one_of(st.none(), st.tuples(st.integers(0, N64), st.integers(1, N64)))
fetch_items: st.SearchStrategy[FetchItem] = st.one_of(
    st.sampled_from(sorted(ATTRIBUTE_NAMES)).map(lambda n: FetchAttribute(name=n)),
    st.builds(FetchBody, section=sections(), partial=partials, peek=st.booleans()),
    st.builds(
        FetchBody,
        section=parts.map(lambda p: Section(part=p)),
        partial=partials,
        peek=st.booleans(),
        binary=st.just(True),
    ),
    st.builds(FetchBinarySize, part=parts),
)

# -- commands ------------------------------------------------------------------------------

KNOWN = {
    "CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "AUTHENTICATE", "LOGIN", "ENABLE", "SELECT",
    "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "LIST", "LSUB",
    "NAMESPACE", "STATUS", "APPEND", "IDLE", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE",
    "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "SORT", "THREAD", "ID", "COMPRESS", "UID",
}  # fmt: skip

qresyncs = st.builds(
    QResync,
    uidvalidity=numbers,
    modseq=st.integers(1, N64),
    known_uids=st.one_of(st.none(), seqsets(star=False, saved=False)),
    seq_match=st.one_of(
        st.none(), st.tuples(seqsets(star=False, saved=False), seqsets(star=False, saved=False))
    ),
)


@st.composite
def list_commands(draw: st.DrawFn, tag: str) -> List:
    selection = draw(
        st.lists(st.sampled_from(["SUBSCRIBED", "REMOTE", "SPECIAL-USE"]), max_size=3, unique=True)
    )
    if selection and set(selection) & {"SUBSCRIBED", "SPECIAL-USE"} and draw(st.booleans()):
        selection.insert(draw(st.integers(0, len(selection))), "RECURSIVEMATCH")
    return List(
        tag=tag,
        reference=draw(mailboxes),
        patterns=tuple(draw(st.lists(patterns, min_size=1, max_size=3))),
        selection=tuple(selection),
        return_options=tuple(
            draw(st.lists(st.sampled_from(sorted(LIST_RETURN_OPTIONS)), max_size=3))
        ),
        status=draw(
            st.one_of(
                st.none(),
                st.lists(st.sampled_from(sorted(STATUS_ITEMS)), min_size=1, max_size=4).map(tuple),
            )
        ),
    )


@st.composite
def append_messages(draw: st.DrawFn) -> AppendMessage:
    binary = draw(st.booleans())
    data: bytes | Streamed
    if draw(st.integers(0, 4)) == 0:
        data = Streamed(
            size=draw(st.integers(0, 10**9)), binary=binary, index=draw(st.integers(0, 3))
        )
    elif binary:
        data = draw(st.binary(max_size=50))
    else:
        data = draw(st.binary(max_size=5000).filter(lambda b: b"\x00" not in b))
    return AppendMessage(
        flags=draw(flag_tuples),
        internal_date=draw(st.one_of(st.none(), date_times)),
        data=data,
        binary=binary,
    )


@st.composite
def fetches(draw: st.DrawFn, tag: str) -> Fetch:
    uid = draw(st.booleans())
    changedsince = draw(st.one_of(st.none(), st.integers(1, N64)))
    return Fetch(
        tag=tag,
        uid=uid,
        sequence_set=draw(seqsets()),
        items=draw(
            st.one_of(
                st.sampled_from(["ALL", "FAST", "FULL"]),
                st.lists(fetch_items, min_size=1, max_size=4).map(tuple),
            )
        ),
        changedsince=changedsince,
        vanished=uid and changedsince is not None and draw(st.booleans()),
    )


def commands_for(tag: str) -> list[st.SearchStrategy[Command]]:
    """One strategy per command kind (the simple ones share the first)."""
    simple = [Capability, Noop, Logout, StartTLS, Namespace, Idle, Check, Close, Unselect]
    return [
        st.sampled_from(simple).map(lambda cls: cls(tag=tag)),
        st.builds(
            Authenticate,
            tag=st.just(tag),
            mechanism=upper_atoms,
            initial_response=st.one_of(st.none(), st.binary(max_size=40)),
        ),
        st.builds(Login, tag=st.just(tag), user=texts, password=texts),
        st.builds(
            Enable,
            tag=st.just(tag),
            capabilities=st.lists(upper_atoms, min_size=1, max_size=3).map(tuple),
        ),
        st.builds(
            Id,
            tag=st.just(tag),
            parameters=st.one_of(
                st.none(),
                st.lists(st.tuples(texts, st.one_of(st.none(), texts)), max_size=4).map(tuple),
            ),
        ),
        st.builds(Compress, tag=st.just(tag), mechanism=upper_atoms),
        st.builds(
            Select,
            tag=st.just(tag),
            mailbox=mailboxes,
            condstore=st.booleans(),
            qresync=st.one_of(st.none(), qresyncs),
        ),
        st.builds(
            Examine,
            tag=st.just(tag),
            mailbox=mailboxes,
            condstore=st.booleans(),
            qresync=st.one_of(st.none(), qresyncs),
        ),
        st.builds(
            Create,
            tag=st.just(tag),
            mailbox=mailboxes,
            special_use=st.lists(atoms.map(lambda a: "\\" + a), max_size=3).map(tuple),
        ),
        st.builds(Delete, tag=st.just(tag), mailbox=mailboxes),
        st.builds(Rename, tag=st.just(tag), mailbox=mailboxes, new_name=mailboxes),
        st.builds(Subscribe, tag=st.just(tag), mailbox=mailboxes),
        st.builds(Unsubscribe, tag=st.just(tag), mailbox=mailboxes),
        list_commands(tag),
        st.builds(Lsub, tag=st.just(tag), reference=mailboxes, pattern=patterns),
        st.builds(
            Status,
            tag=st.just(tag),
            mailbox=mailboxes,
            items=st.lists(st.sampled_from(sorted(STATUS_ITEMS)), min_size=1, max_size=5).map(
                tuple
            ),
        ),
        st.builds(
            Append,
            tag=st.just(tag),
            mailbox=mailboxes,
            messages=st.lists(append_messages(), min_size=1, max_size=3).map(tuple),
        ),
        st.just(Expunge(tag=tag)),
        st.builds(Expunge, tag=st.just(tag), uid=st.just(True), sequence_set=seqsets()),
        st.builds(
            Search,
            tag=st.just(tag),
            uid=st.booleans(),
            return_options=st.one_of(
                st.none(),
                st.lists(st.sampled_from(sorted(SEARCH_RETURN_OPTIONS)), max_size=3).map(tuple),
            ),
            charset=st.one_of(st.none(), texts.filter(bool)),
            criteria=criteria,
        ),
        fetches(tag),
        st.builds(
            Store,
            tag=st.just(tag),
            uid=st.booleans(),
            sequence_set=seqsets(),
            action=st.sampled_from(["replace", "add", "remove"]),
            silent=st.booleans(),
            flags=flag_tuples,
            unchangedsince=st.one_of(st.none(), st.integers(0, N64)),
        ),
        st.builds(
            Copy, tag=st.just(tag), uid=st.booleans(), sequence_set=seqsets(), mailbox=mailboxes
        ),
        st.builds(
            Move, tag=st.just(tag), uid=st.booleans(), sequence_set=seqsets(), mailbox=mailboxes
        ),
        st.builds(
            Sort,
            tag=st.just(tag),
            uid=st.booleans(),
            criteria=st.lists(
                st.builds(
                    SortCriterion, key=st.sampled_from(sorted(SORT_KEYS)), reverse=st.booleans()
                ),
                min_size=1,
                max_size=3,
            ).map(tuple),
            charset=texts.filter(bool),
            search=criteria,
        ),
        st.builds(
            Thread,
            tag=st.just(tag),
            uid=st.booleans(),
            algorithm=upper_atoms,
            charset=texts.filter(bool),
            search=criteria,
        ),
        st.builds(
            UnknownCommand,
            tag=st.just(tag),
            name=upper_atoms.filter(lambda n: n not in KNOWN),
        ),
    ]


commands = tags.flatmap(lambda t: st.one_of(commands_for(t)))
KINDS = len(commands_for("a"))
options_st = st.fixed_dictionaries(
    {k: st.booleans() for k in ("literal_plus", "literal_minus", "utf8", "binary")}
)

OPTIONS = [
    dict(zip(("literal_plus", "literal_minus", "utf8", "binary"), combo, strict=True))
    for combo in itertools.product((False, True), repeat=4)
]


@pytest.mark.parametrize(
    "options", OPTIONS, ids=lambda o: ",".join(k for k, v in o.items() if v) or "plain"
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command=commands)
def test_round_trip(options: dict[str, bool], command: Command) -> None:
    check_round_trip(command, options)


@pytest.mark.parametrize("kind", range(KINDS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_per_kind(kind: int, data: st.DataObject) -> None:
    command = data.draw(tags.flatmap(lambda t: commands_for(t)[kind]))
    check_round_trip(command, data.draw(options_st))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tag=tags, keys=criteria, options=options_st)
def test_search_tree_round_trip(
    tag: str, keys: tuple[SearchKey, ...], options: dict[str, bool]
) -> None:
    check_round_trip(Search(tag=tag, criteria=keys), options)


def check_round_trip(command: Command, options: dict[str, bool]) -> None:
    frame = write_command(command, **options)
    assert parse_command(frame, utf8=options["utf8"]) == command
    # The writer's promises: no line holds CR, LF or NUL; literals are announced as asked.
    for i, written in enumerate(frame.lines):
        assert b"\r" not in written and b"\n" not in written and b"\x00" not in written
        if i < len(frame.literals):
            literal = frame.literals[i]
            size = literal.size if isinstance(literal, Streamed) else len(literal)
            plus = written.endswith(b"+}")
            if options["literal_plus"]:
                assert plus
            elif options["literal_minus"]:
                assert plus == (size <= 4096)
            else:
                assert not plus
    if not options["utf8"]:
        assert all(b < 0x80 for written in frame.lines for b in written)


def test_the_writer_knows_every_command() -> None:
    from mailagents.imap._command_writer import _WRITERS

    assert set(_WRITERS) | {UnknownCommand} == set(Command.__args__)  # type: ignore[attr-defined]


def test_deep_tree_is_written_without_recursion() -> None:
    key: SearchKey = FlagKey(name="ALL")
    for _ in range(5000):
        key = Not(key=key)
    frame = write_command(Search(tag="a", criteria=(key,)))
    assert frame.lines[0] == b"a SEARCH " + b"NOT " * 5000 + b"ALL"


def test_text_with_crlf_always_goes_as_a_literal() -> None:
    # The command-injection class: a value can never end the line.
    frame = write_command(Login(tag="a", user="x\r\nb LOGOUT", password="p"), literal_plus=True)
    assert frame.lines[0] == b"a LOGIN {11+}"
    assert frame.literals == (b"x\r\nb LOGOUT",)
    frame = write_command(Search(tag="a", criteria=(TextKey(name="TEXT", value="\n"),)))
    assert frame == Frame(lines=(b"a SEARCH TEXT {1}", b""), literals=(b"\n",))


def test_literal_minus_only_for_small_literals() -> None:
    small = write_command(Login(tag="a", user="é", password="x " * 2500), literal_minus=True)
    assert small.lines[0] == b"a LOGIN {2+}"
    assert small.lines[1] == b" {5000}"


def test_writer_refuses_what_cannot_be_written() -> None:
    from mailagents._protocol import LocalProtocolError

    with pytest.raises(LocalProtocolError):
        write_command(Noop(tag="a b"))
    with pytest.raises(LocalProtocolError):
        write_command(Noop(tag="a+"))
    with pytest.raises(LocalProtocolError):
        write_command(Search(tag="a", criteria=(KeywordKey(name="KEYWORD", keyword="a b"),)))
