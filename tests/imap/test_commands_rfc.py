"""The ``C:`` lines of the RFCs' own examples parse, to the values they mean.

RFC 9051 §6 (IMAP4rev2), RFC 3501 §6 (IMAP4rev1 leftovers), RFC 7162 §3 (CONDSTORE,
QRESYNC), RFC 5258 and RFC 5819 (LIST-EXTENDED, LIST-STATUS), RFC 4731 (ESEARCH),
RFC 5182 (SEARCHRES), RFC 5256 (SORT, THREAD), RFC 6851 (MOVE), RFC 4315 (UIDPLUS),
RFC 3516 (BINARY), RFC 2971 (ID), RFC 6154 (SPECIAL-USE), RFC 4959 (SASL-IR), RFC 4978
(COMPRESS). Every example is also written back and parsed again to the same value.
"""

from __future__ import annotations

import datetime

import pytest

from mailagents.imap._command_parser import parse_command
from mailagents.imap._command_writer import write_command
from mailagents.imap._commands import (
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
    Unselect,
    Unsubscribe,
)
from mailagents.imap._fetch_items import (
    FetchAttribute,
    FetchBinarySize,
    FetchBody,
    Section,
)
from mailagents.imap._frame import Frame
from mailagents.imap._search import (
    And,
    DateKey,
    FlagKey,
    HeaderKey,
    KeywordKey,
    ModSeqKey,
    Not,
    Or,
    SetKey,
    SizeKey,
    SortCriterion,
    TextKey,
)
from mailagents.imap._seqset import SequenceSet


def S(text: str) -> SequenceSet:
    return SequenceSet.parse(text)


def line(text: str | bytes) -> Frame:
    return Frame(lines=(text.encode() if isinstance(text, str) else text,))


FEB_1_1994 = datetime.date(1994, 2, 1)
NOT_SMITH = Not(key=TextKey(name="FROM", value="Smith"))
A = FetchAttribute

EXAMPLES: list[tuple[str, Command]] = [
    # RFC 9051 §6.1 and §6.2
    ("abcd CAPABILITY", Capability(tag="abcd")),
    ("a002 NOOP", Noop(tag="a002")),
    ("A023 LOGOUT", Logout(tag="A023")),
    ("a002 STARTTLS", StartTLS(tag="a002")),
    ("A001 AUTHENTICATE GSSAPI", Authenticate(tag="A001", mechanism="GSSAPI")),
    ("a001 LOGIN SMITH SESAME", Login(tag="a001", user="SMITH", password="SESAME")),
    # RFC 4959 §3 (SASL-IR): base64 initial response, and "=" for an empty one
    (
        "a01 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=",
        Authenticate(tag="a01", mechanism="PLAIN", initial_response=b"test\x00test\x00test"),
    ),
    (
        "a02 AUTHENTICATE EXTERNAL =",
        Authenticate(tag="a02", mechanism="EXTERNAL", initial_response=b""),
    ),
    # RFC 9051 §6.3
    (
        "t2 ENABLE CONDSTORE X-GOOD-IDEA",
        Enable(tag="t2", capabilities=("CONDSTORE", "X-GOOD-IDEA")),
    ),
    ("a1 ENABLE UTF8=ACCEPT", Enable(tag="a1", capabilities=("UTF8=ACCEPT",))),
    ("A142 SELECT INBOX", Select(tag="A142", mailbox="INBOX")),
    ("A932 EXAMINE blurdybloop", Examine(tag="A932", mailbox="blurdybloop")),
    ("A003 CREATE owatagusiam/", Create(tag="A003", mailbox="owatagusiam/")),
    ("A004 CREATE owatagusiam/blurdybloop", Create(tag="A004", mailbox="owatagusiam/blurdybloop")),
    ("A683 DELETE blurdybloop", Delete(tag="A683", mailbox="blurdybloop")),
    ("A685 DELETE foo/bar", Delete(tag="A685", mailbox="foo/bar")),
    (
        "A683 RENAME blurdybloop sarasoop",
        Rename(tag="A683", mailbox="blurdybloop", new_name="sarasoop"),
    ),
    ("Z433 RENAME INBOX old-mail", Rename(tag="Z433", mailbox="INBOX", new_name="old-mail")),
    ("A002 SUBSCRIBE #news.comp.mail.mime", Subscribe(tag="A002", mailbox="#news.comp.mail.mime")),
    (
        "A002 UNSUBSCRIBE #news.comp.mail.mime",
        Unsubscribe(tag="A002", mailbox="#news.comp.mail.mime"),
    ),
    ('A682 LIST "" *', List(tag="A682", reference="", patterns=("*",))),
    ('A101 LIST "" ""', List(tag="A101", reference="", patterns=("",))),
    (
        'A102 LIST #news.comp.mail.misc ""',
        List(tag="A102", reference="#news.comp.mail.misc", patterns=("",)),
    ),
    (
        'A103 LIST /usr/staff/jones ""',
        List(tag="A103", reference="/usr/staff/jones", patterns=("",)),
    ),
    ("A202 LIST ~/Mail/ %", List(tag="A202", reference="~/Mail/", patterns=("%",))),
    # RFC 5258 §5 (LIST-EXTENDED), also in RFC 9051 §6.3.9
    (
        'A02 LIST (SUBSCRIBED) "" "*"',
        List(tag="A02", reference="", patterns=("*",), selection=("SUBSCRIBED",)),
    ),
    (
        'A03 LIST () "" "%" RETURN (CHILDREN)',
        List(tag="A03", reference="", patterns=("%",), return_options=("CHILDREN",)),
    ),
    (
        'A04 LIST (REMOTE) "" "%" RETURN (CHILDREN)',
        List(
            tag="A04",
            reference="",
            patterns=("%",),
            selection=("REMOTE",),
            return_options=("CHILDREN",),
        ),
    ),
    (
        'A05 LIST (REMOTE SUBSCRIBED) "" "*"',
        List(tag="A05", reference="", patterns=("*",), selection=("REMOTE", "SUBSCRIBED")),
    ),
    (
        'A07 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"',
        List(tag="A07", reference="", patterns=("%",), selection=("SUBSCRIBED", "RECURSIVEMATCH")),
    ),
    (
        'BBB LIST "" ("INBOX" "Drafts" "Sent/%")',
        List(tag="BBB", reference="", patterns=("INBOX", "Drafts", "Sent/%")),
    ),
    # RFC 5819 §5 (LIST-STATUS)
    (
        'A01 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))',
        List(tag="A01", reference="", patterns=("%",), status=("MESSAGES", "UNSEEN")),
    ),
    (
        'A02 LIST (SUBSCRIBED RECURSIVEMATCH) "" % RETURN (STATUS (MESSAGES))',
        List(
            tag="A02",
            reference="",
            patterns=("%",),
            selection=("SUBSCRIBED", "RECURSIVEMATCH"),
            status=("MESSAGES",),
        ),
    ),
    # RFC 6154 §5 (SPECIAL-USE)
    (
        't1 LIST (SPECIAL-USE) "" "*"',
        List(tag="t1", reference="", patterns=("*",), selection=("SPECIAL-USE",)),
    ),
    (
        't3 LIST "" "%" RETURN (SPECIAL-USE)',
        List(tag="t3", reference="", patterns=("%",), return_options=("SPECIAL-USE",)),
    ),
    (
        "t1 CREATE MySpecial (USE (\\Drafts \\Sent))",
        Create(tag="t1", mailbox="MySpecial", special_use=("\\Drafts", "\\Sent")),
    ),
    # RFC 3501 §6.3.9 (IMAP4rev1)
    (
        'A002 LSUB "#news." "comp.mail.*"',
        Lsub(tag="A002", reference="#news.", pattern="comp.mail.*"),
    ),
    ("A001 NAMESPACE", Namespace(tag="A001")),
    (
        "A042 STATUS blurdybloop (UIDNEXT MESSAGES)",
        Status(tag="A042", mailbox="blurdybloop", items=("UIDNEXT", "MESSAGES")),
    ),
    (
        "A042 STATUS blurdybloop (UIDNEXT MESSAGES SIZE DELETED RECENT APPENDLIMIT)",
        Status(
            tag="A042",
            mailbox="blurdybloop",
            items=("UIDNEXT", "MESSAGES", "SIZE", "DELETED", "RECENT", "APPENDLIMIT"),
        ),
    ),
    ("A002 IDLE", Idle(tag="A002")),
    # RFC 9051 §6.4
    ("FXXZ CHECK", Check(tag="FXXZ")),
    ("A341 CLOSE", Close(tag="A341")),
    ("A342 UNSELECT", Unselect(tag="A342")),
    ("A202 EXPUNGE", Expunge(tag="A202")),
    (
        'A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"',
        Search(
            tag="A282",
            criteria=(FlagKey(name="FLAGGED"), DateKey(name="SINCE", date=FEB_1_1994), NOT_SMITH),
        ),
    ),
    (
        'A283 SEARCH TEXT "string not in mailbox"',
        Search(tag="A283", criteria=(TextKey(name="TEXT", value="string not in mailbox"),)),
    ),
    # RFC 4731 §3.1 (ESEARCH), also in RFC 9051 §6.4.4
    (
        'A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"',
        Search(
            tag="A282",
            return_options=("MIN", "COUNT"),
            criteria=(FlagKey(name="FLAGGED"), DateKey(name="SINCE", date=FEB_1_1994), NOT_SMITH),
        ),
    ),
    (
        'A283 SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"',
        Search(
            tag="A283",
            return_options=(),
            criteria=(FlagKey(name="FLAGGED"), DateKey(name="SINCE", date=FEB_1_1994), NOT_SMITH),
        ),
    ),
    (
        "A284 SEARCH RETURN (MIN) UNSEEN",
        Search(tag="A284", return_options=("MIN",), criteria=(FlagKey(name="UNSEEN"),)),
    ),
    (
        "A285 UID SEARCH RETURN (MIN MAX) 1:5000",
        Search(
            tag="A285", uid=True, return_options=("MIN", "MAX"), criteria=(SetKey(set=S("1:5000")),)
        ),
    ),
    (
        "A286 SEARCH RETURN (ALL) 1:5000",
        Search(tag="A286", return_options=("ALL",), criteria=(SetKey(set=S("1:5000")),)),
    ),
    # RFC 5182 §2.4 (SEARCHRES)
    (
        'A300 SEARCH RETURN (SAVE) SINCE 1-Jan-2004 NOT FROM "Smith"',
        Search(
            tag="A300",
            return_options=("SAVE",),
            criteria=(DateKey(name="SINCE", date=datetime.date(2004, 1, 1)), NOT_SMITH),
        ),
    ),
    (
        "A301 UID SEARCH UID $ SMALLER 4096",
        Search(
            tag="A301",
            uid=True,
            criteria=(
                SetKey(set=SequenceSet(saved=True), uid=True),
                SizeKey(name="SMALLER", size=4096),
            ),
        ),
    ),
    (
        'A302 COPY $ "Other Messages"',
        Copy(tag="A302", sequence_set=SequenceSet(saved=True), mailbox="Other Messages"),
    ),
    (
        "A304 FETCH $ (UID INTERNALDATE FLAGS RFC822.SIZE)",
        Fetch(
            tag="A304",
            sequence_set=SequenceSet(saved=True),
            items=(A(name="UID"), A(name="INTERNALDATE"), A(name="FLAGS"), A(name="RFC822.SIZE")),
        ),
    ),
    # RFC 3501 §6.4.4 examples with IMAP4rev1 keys
    (
        'A284 SEARCH OR (FROM "a" SUBJECT "b") (TO c HEADER "X-Foo" "") NEW OLD RECENT',
        Search(
            tag="A284",
            criteria=(
                Or(
                    left=And(
                        keys=(TextKey(name="FROM", value="a"), TextKey(name="SUBJECT", value="b"))
                    ),
                    right=And(
                        keys=(TextKey(name="TO", value="c"), HeaderKey(field="X-Foo", value=""))
                    ),
                ),
                FlagKey(name="NEW"),
                FlagKey(name="OLD"),
                FlagKey(name="RECENT"),
            ),
        ),
    ),
    (
        'A303 SEARCH SENTSINCE "1-Feb-1994" LARGER 1000 KEYWORD $Forwarded UNKEYWORD Junk',
        Search(
            tag="A303",
            criteria=(
                DateKey(name="SENTSINCE", date=FEB_1_1994),
                SizeKey(name="LARGER", size=1000),
                KeywordKey(name="KEYWORD", keyword="$Forwarded"),
                KeywordKey(name="UNKEYWORD", keyword="Junk"),
            ),
        ),
    ),
    (
        "A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])",
        Fetch(
            tag="A654",
            sequence_set=S("2:4"),
            items=(
                A(name="FLAGS"),
                FetchBody(section=Section(text="HEADER.FIELDS", fields=("DATE", "FROM"))),
            ),
        ),
    ),
    ("A655 FETCH 1 ALL", Fetch(tag="A655", sequence_set=S("1"), items="ALL")),
    ("a1 fetch 1:* fast", Fetch(tag="a1", sequence_set=S("1:*"), items="FAST")),
    (
        "A003 STORE 2:4 +FLAGS (\\Deleted)",
        Store(tag="A003", sequence_set=S("2:4"), action="add", flags=("\\Deleted",)),
    ),
    ("A003 COPY 2:4 MEETING", Copy(tag="A003", sequence_set=S("2:4"), mailbox="MEETING")),
    ("A003 MOVE 2:4 MEETING", Move(tag="A003", sequence_set=S("2:4"), mailbox="MEETING")),
    (
        "A999 UID FETCH 4827313:4828442 FLAGS",
        Fetch(tag="A999", uid=True, sequence_set=S("4827313:4828442"), items=(A(name="FLAGS"),)),
    ),
    # RFC 6851 §4.5 (MOVE)
    ("a UID MOVE 42:69 foo", Move(tag="a", uid=True, sequence_set=S("42:69"), mailbox="foo")),
    # RFC 4315 §2.1 (UIDPLUS)
    ("A003 UID EXPUNGE 3000:3002", Expunge(tag="A003", uid=True, sequence_set=S("3000:3002"))),
    # RFC 7162 §3 (CONDSTORE, QRESYNC)
    ("a103 SELECT INBOX (CONDSTORE)", Select(tag="a103", mailbox="INBOX", condstore=True)),
    (
        "a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)",
        Store(
            tag="a103",
            uid=True,
            sequence_set=S("6,4,8"),
            action="add",
            silent=True,
            flags=("\\Deleted",),
            unchangedsince=12121230045,
        ),
    ),
    (
        "d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)",
        Store(
            tag="d105",
            sequence_set=S("7,5,9"),
            action="add",
            silent=True,
            flags=("\\Deleted",),
            unchangedsince=320162338,
        ),
    ),
    (
        "s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)",
        Fetch(
            tag="s100",
            uid=True,
            sequence_set=S("1:*"),
            items=(A(name="FLAGS"),),
            changedsince=12345,
        ),
    ),
    (
        "a FETCH 1:3 (MODSEQ)",
        Fetch(tag="a", sequence_set=S("1:3"), items=(A(name="MODSEQ"),)),
    ),
    (
        'a SEARCH MODSEQ "/flags/\\\\draft" all 620162338',
        Search(
            tag="a",
            criteria=(ModSeqKey(modseq=620162338, entry="/flags/\\draft", entry_type="all"),),
        ),
    ),
    (
        "A042 STATUS blurdybloop (UIDNEXT MESSAGES HIGHESTMODSEQ)",
        Status(tag="A042", mailbox="blurdybloop", items=("UIDNEXT", "MESSAGES", "HIGHESTMODSEQ")),
    ),
    (
        "A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
        Select(
            tag="A02",
            mailbox="INBOX",
            qresync=QResync(
                uidvalidity=67890007, modseq=20050715194045000, known_uids=S("41,43:211,214:541")
            ),
        ),
    ),
    (
        "B02 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 "
        "15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))",
        Select(
            tag="B02",
            mailbox="INBOX",
            qresync=QResync(
                uidvalidity=67890007,
                modseq=90060115194045000,
                known_uids=S("1:29997"),
                seq_match=(
                    S("5000,7500,9000,9990:9999"),
                    S(
                        "15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997"
                    ),
                ),
            ),
        ),
    ),
    (
        "C01 EXAMINE INBOX (QRESYNC (67890007 90060115194045000 (1:3 2,4,6)))",
        Examine(
            tag="C01",
            mailbox="INBOX",
            qresync=QResync(
                uidvalidity=67890007, modseq=90060115194045000, seq_match=(S("1:3"), S("2,4,6"))
            ),
        ),
    ),
    (
        "A03 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)",
        Fetch(
            tag="A03",
            uid=True,
            sequence_set=S("1:*"),
            items=(A(name="FLAGS"),),
            changedsince=12345,
            vanished=True,
        ),
    ),
    # RFC 5256 §3 (SORT, THREAD)
    (
        "A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994",
        Sort(
            tag="A282",
            criteria=(SortCriterion(key="SUBJECT"),),
            charset="UTF-8",
            search=(DateKey(name="SINCE", date=FEB_1_1994),),
        ),
    ),
    (
        "A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL",
        Sort(
            tag="A283",
            criteria=(SortCriterion(key="SUBJECT"), SortCriterion(key="DATE", reverse=True)),
            charset="UTF-8",
            search=(FlagKey(name="ALL"),),
        ),
    ),
    (
        'A284 SORT (SUBJECT) US-ASCII TEXT "not in mailbox"',
        Sort(
            tag="A284",
            criteria=(SortCriterion(key="SUBJECT"),),
            charset="US-ASCII",
            search=(TextKey(name="TEXT", value="not in mailbox"),),
        ),
    ),
    (
        "A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000",
        Thread(
            tag="A283",
            algorithm="ORDEREDSUBJECT",
            charset="UTF-8",
            search=(DateKey(name="SINCE", date=datetime.date(2000, 3, 5)),),
        ),
    ),
    (
        "A284 UID THREAD REFERENCES US-ASCII TEXT gewp",
        Thread(
            tag="A284",
            uid=True,
            algorithm="REFERENCES",
            charset="US-ASCII",
            search=(TextKey(name="TEXT", value="gewp"),),
        ),
    ),
    # RFC 3516 §4 (BINARY)
    (
        "A1 FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1.2]<0.100> BINARY[])",
        Fetch(
            tag="A1",
            sequence_set=S("1"),
            items=(
                FetchBinarySize(part=(1,)),
                FetchBody(section=Section(part=(1, 2)), partial=(0, 100), peek=True, binary=True),
                FetchBody(binary=True),
            ),
        ),
    ),
    # RFC 2971 §4 (ID)
    (
        'a023 ID ("name" "sodr" "version" "19.34" "vendor" "Pink Floyd Music Limited")',
        Id(
            tag="a023",
            parameters=(
                ("name", "sodr"),
                ("version", "19.34"),
                ("vendor", "Pink Floyd Music Limited"),
            ),
        ),
    ),
    ("a024 ID NIL", Id(tag="a024", parameters=None)),
    # RFC 4978 §3 (COMPRESS)
    ("a COMPRESS DEFLATE", Compress(tag="a", mechanism="DEFLATE")),
]


@pytest.mark.parametrize(("text", "expected"), EXAMPLES, ids=[t for t, _ in EXAMPLES])
def test_rfc_example(text: str, expected: Command) -> None:
    assert parse_command(line(text)) == expected
    assert parse_command(write_command(expected)) == expected


def test_rfc9051_append_with_literal() -> None:
    # RFC 9051 §6.3.12: C: A003 APPEND saved-messages (\Seen) {326}, the message follows.
    message = (
        b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nSubject: afternoon meeting\r\n\r\nHello\r\n"
    )
    frame = Frame(
        lines=(b"A003 APPEND saved-messages (\\Seen) {%d}" % len(message), b""),
        literals=(message,),
    )
    expected = Append(
        tag="A003",
        mailbox="saved-messages",
        messages=(AppendMessage(flags=("\\Seen",), data=message),),
    )
    assert parse_command(frame) == expected
    assert write_command(expected) == frame


def test_multiappend_with_date_and_literal8() -> None:
    # RFC 3502 §6.3.11 (MULTIAPPEND) and RFC 3516 §4.4 (literal8 in APPEND).
    frame = Frame(
        lines=(
            b'A1 APPEND INBOX (\\Seen) " 7-Feb-1994 21:52:25 -0800" {3+}',
            b" ~{4}",
            b"",
        ),
        literals=(b"abc", b"a\x00bc"),
    )
    date = datetime.datetime(
        1994, 2, 7, 21, 52, 25, tzinfo=datetime.timezone(datetime.timedelta(hours=-8))
    )
    assert parse_command(frame) == Append(
        tag="A1",
        mailbox="INBOX",
        messages=(
            AppendMessage(flags=("\\Seen",), internal_date=date, data=b"abc"),
            AppendMessage(data=b"a\x00bc", binary=True),
        ),
    )


def test_rfc9051_search_charset_with_literal() -> None:
    # RFC 9051 §6.4.4: C: A284 SEARCH CHARSET UTF-8 TEXT {12}, then the octets.
    text = "КАТЯ".encode()
    frame = Frame(lines=(b"A284 SEARCH CHARSET UTF-8 TEXT {%d}" % len(text), b""), literals=(text,))
    assert parse_command(frame) == Search(
        tag="A284", charset="UTF-8", criteria=(TextKey(name="TEXT", value="КАТЯ"),)
    )


def test_login_with_literal_password() -> None:
    frame = Frame(lines=(b"a001 LOGIN {5}", b" {7}", b""), literals=(b"FRED ", b"fat\r\nca"))
    assert parse_command(frame) == Login(tag="a001", user="FRED ", password="fat\r\nca")


def test_mailbox_names_modified_utf7_and_utf8() -> None:
    # RFC 9051 §5.1.3: "~peter/mail/&U,BTFw-/&ZeVnLIqe-" is ~peter/mail/台北/日本語.
    encoded = "A1 SELECT ~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    assert parse_command(line(encoded)) == Select(tag="A1", mailbox="~peter/mail/台北/日本語")
    raw = 'A1 SELECT "~peter/mail/台北/日本語"'.encode()
    assert parse_command(line(raw), utf8=True) == Select(
        tag="A1", mailbox="~peter/mail/台北/日本語"
    )
    # with UTF8=ACCEPT the & is not an escape any more
    assert parse_command(line("A1 DELETE a&b"), utf8=True) == Delete(tag="A1", mailbox="a&b")
    written = write_command(Select(tag="A1", mailbox="台北"), utf8=True)
    assert written.lines == ('A1 SELECT "台北"'.encode(),)
    assert write_command(Select(tag="A1", mailbox="台北")).lines == (b"A1 SELECT &U,BTFw-",)


def test_inbox_in_any_case() -> None:
    assert parse_command(line("a SELECT inBox")) == Select(tag="a", mailbox="INBOX")


def test_case_insensitive_names_and_keywords() -> None:
    assert parse_command(
        line("a uid fetch 1 (flags body.peek[header]<0.10>) (changedsince 4)")
    ) == Fetch(
        tag="a",
        uid=True,
        sequence_set=S("1"),
        items=(
            A(name="FLAGS"),
            FetchBody(section=Section(text="HEADER"), partial=(0, 10), peek=True),
        ),
        changedsince=4,
    )
    assert parse_command(line("a search or seen not deleted")) == Search(
        tag="a", criteria=(Or(left=FlagKey(name="SEEN"), right=Not(key=FlagKey(name="DELETED"))),)
    )


def test_store_forms() -> None:
    base = {"tag": "a", "sequence_set": S("1")}
    assert parse_command(line("a STORE 1 FLAGS ()")) == Store(**base)  # type: ignore[arg-type]
    assert parse_command(line("a STORE 1 -FLAGS \\Seen $Junk")) == Store(
        **base,
        action="remove",
        flags=("\\Seen", "$Junk"),  # type: ignore[arg-type]
    )
    assert parse_command(line("a STORE 1 FLAGS.SILENT (\\Seen)")) == Store(
        **base,
        silent=True,
        flags=("\\Seen",),  # type: ignore[arg-type]
    )


def test_fetch_sections() -> None:
    got = parse_command(
        line(
            "a FETCH 1 (BODY[] BODY[1.2.MIME] BODY[3.TEXT] "
            'BODY[4.HEADER.FIELDS.NOT (X-A "B]")] BODY BODYSTRUCTURE ENVELOPE '
            "RFC822 RFC822.HEADER RFC822.TEXT)"
        )
    )
    assert isinstance(got, Fetch)
    assert got.items == (
        FetchBody(),
        FetchBody(section=Section(part=(1, 2), text="MIME")),
        FetchBody(section=Section(part=(3,), text="TEXT")),
        FetchBody(section=Section(part=(4,), text="HEADER.FIELDS.NOT", fields=("X-A", "B]"))),
        A(name="BODY"),
        A(name="BODYSTRUCTURE"),
        A(name="ENVELOPE"),
        A(name="RFC822"),
        A(name="RFC822.HEADER"),
        A(name="RFC822.TEXT"),
    )


def test_unknown_command_is_not_an_error() -> None:
    from mailagents.imap._commands import UnknownCommand

    assert parse_command(line("a7 XYZZY (anything goes) {")) == UnknownCommand(
        tag="a7", name="XYZZY"
    )
    assert parse_command(line("a8 getquotaroot INBOX")) == UnknownCommand(
        tag="a8", name="GETQUOTAROOT"
    )
