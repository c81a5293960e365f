"""The response parser on the RFCs' own example responses (RFC 9051 §6-§7, RFC 7162 §3,
RFC 4731, RFC 5256, RFC 2342, RFC 2971, RFC 4315, RFC 5530, RFC 3516, RFC 5258), each
also written back and read again; limits, streamed literals, bad input."""

from __future__ import annotations

import datetime

import pytest

from mailagents._protocol import LocalProtocolError
from mailagents.imap._body_model import Address, Envelope, MultipartBody, SinglePartBody
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
from mailagents.imap._response_parser import ResponseSyntaxError, parse_response
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
    SearchData,
    SortData,
    StatusData,
    StatusResponse,
    ThreadData,
    UntaggedData,
    VanishedData,
)
from mailagents.imap._seqset import SequenceSet


def one(line: bytes) -> Frame:
    return Frame(lines=(line,))


def seq(text: str) -> SequenceSet:
    return SequenceSet.parse(text)


GRAY = Address(name="Terry Gray", mailbox="gray", host="cac.washington.edu")
ENVELOPE = Envelope(
    date="Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
    subject="IMAP4rev2 WG mtg summary and minutes",
    from_=(GRAY,),
    sender=(GRAY,),
    reply_to=(GRAY,),
    to=(Address(mailbox="imap", host="cac.washington.edu"),),
    cc=(
        Address(mailbox="minutes", host="CNRI.Reston.VA.US"),
        Address(name="John Klensin", mailbox="KLENSIN", host="MIT.EDU"),
    ),
    message_id="<B27397-0100000@cac.washington.edu>",
)
ENVELOPE_WIRE = (
    b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev2 WG mtg summary and minutes" '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
    b'((NIL NIL "imap" "cac.washington.edu")) '
    b'((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) '
    b'NIL NIL "<B27397-0100000@cac.washington.edu>")'
)
PLAIN = SinglePartBody(
    type="TEXT",
    subtype="PLAIN",
    params=(("CHARSET", "US-ASCII"),),
    encoding="7BIT",
    size=3028,
    lines=92,
)
PDT = datetime.timezone(datetime.timedelta(hours=-7))

CORPUS = [
    # RFC 9051 §7.1 status responses
    (b"* OK IMAP4rev2 server ready", StatusResponse(status="OK", text="IMAP4rev2 server ready")),
    (
        b"* OK [ALERT] System shutdown in 10 minutes",
        StatusResponse(
            status="OK", code=ResponseCode(name="ALERT"), text="System shutdown in 10 minutes"
        ),
    ),
    (b"A001 OK LOGIN completed", StatusResponse(status="OK", tag="A001", text="LOGIN completed")),
    (
        b"* NO Disk is 98% full, please delete unnecessary data",
        StatusResponse(status="NO", text="Disk is 98% full, please delete unnecessary data"),
    ),
    (b"* BAD Empty command line", StatusResponse(status="BAD", text="Empty command line")),
    (
        b"* PREAUTH IMAP4rev2 server logged in as Smith",
        StatusResponse(status="PREAUTH", text="IMAP4rev2 server logged in as Smith"),
    ),
    (
        b"* BYE Autologout; idle for too long",
        StatusResponse(status="BYE", text="Autologout; idle for too long"),
    ),
    (b"a1 ok done", StatusResponse(status="OK", tag="a1", text="done")),
    (b"A2 OK", StatusResponse(status="OK", tag="A2")),
    (
        b"* OK [UNSEEN 12] Message 12 is first unseen",
        StatusResponse(status="OK", code=UnseenCode(number=12), text="Message 12 is first unseen"),
    ),
    (
        b"* OK [UIDVALIDITY 3857529045] UIDs valid",
        StatusResponse(
            status="OK", code=UidValidityCode(uidvalidity=3857529045), text="UIDs valid"
        ),
    ),
    (
        b"* OK [UIDNEXT 4392] Predicted next UID",
        StatusResponse(status="OK", code=UidNextCode(uidnext=4392), text="Predicted next UID"),
    ),
    (
        b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited",
        StatusResponse(
            status="OK",
            code=PermanentFlagsCode(flags=("\\Deleted", "\\Seen", "\\*")),
            text="Limited",
        ),
    ),
    (
        b"A142 OK [READ-WRITE] SELECT completed",
        StatusResponse(
            status="OK", tag="A142", code=ResponseCode(name="READ-WRITE"), text="SELECT completed"
        ),
    ),
    (
        b"* OK [CAPABILITY IMAP4rev2 AUTH=PLAIN SASL-IR] Ready",
        StatusResponse(
            status="OK",
            code=CapabilityCode(capabilities=("IMAP4rev2", "AUTH=PLAIN", "SASL-IR")),
            text="Ready",
        ),
    ),
    (
        b"A1 NO [BADCHARSET (UTF-8 US-ASCII)] not supported",
        StatusResponse(
            status="NO",
            tag="A1",
            code=BadCharsetCode(charsets=("UTF-8", "US-ASCII")),
            text="not supported",
        ),
    ),
    (
        b"A1 NO [BADCHARSET] nope",
        StatusResponse(status="NO", tag="A1", code=BadCharsetCode(), text="nope"),
    ),
    (
        b"A1 NO [TRYCREATE] no such mailbox",
        StatusResponse(
            status="NO", tag="A1", code=ResponseCode(name="TRYCREATE"), text="no such mailbox"
        ),
    ),
    (
        b"* OK [ALERT]",
        StatusResponse(status="OK", code=ResponseCode(name="ALERT")),
    ),
    (
        b"A3 NO [BADURL imap://x/y] bad",
        StatusResponse(
            status="NO", tag="A3", code=ResponseCode(name="BADURL", args="imap://x/y"), text="bad"
        ),
    ),
    # RFC 5530
    (
        b"a NO [OVERQUOTA] Sorry",
        StatusResponse(status="NO", tag="a", code=ResponseCode(name="OVERQUOTA"), text="Sorry"),
    ),
    (
        b"c BAD [CLIENTBUG] Done",
        StatusResponse(status="BAD", tag="c", code=ResponseCode(name="CLIENTBUG"), text="Done"),
    ),
    # RFC 4315 UIDPLUS
    (
        b"A003 OK [APPENDUID 38505 3955] APPEND completed",
        StatusResponse(
            status="OK",
            tag="A003",
            code=AppendUidCode(uidvalidity=38505, uids=seq("3955")),
            text="APPEND completed",
        ),
    ),
    (
        b"A004 OK [COPYUID 38505 304,319:320 3956:3958] Done",
        StatusResponse(
            status="OK",
            tag="A004",
            code=CopyUidCode(
                uidvalidity=38505, source=seq("304,319:320"), destination=seq("3956:3958")
            ),
            text="Done",
        ),
    ),
    # RFC 7162 CONDSTORE/QRESYNC
    (
        b"* OK [HIGHESTMODSEQ 715194045007] Highest",
        StatusResponse(status="OK", code=HighestModSeqCode(modseq=715194045007), text="Highest"),
    ),
    (
        b"* OK [NOMODSEQ] Sorry, this mailbox format doesn't support modsequences",
        StatusResponse(
            status="OK",
            code=ResponseCode(name="NOMODSEQ"),
            text="Sorry, this mailbox format doesn't support modsequences",
        ),
    ),
    (
        b"d105 OK [MODIFIED 7,9] Conditional STORE failed",
        StatusResponse(
            status="OK",
            tag="d105",
            code=ModifiedCode(uids=seq("7,9")),
            text="Conditional STORE failed",
        ),
    ),
    (
        b"* OK [CLOSED] Previous mailbox closed.",
        StatusResponse(
            status="OK", code=ResponseCode(name="CLOSED"), text="Previous mailbox closed."
        ),
    ),
    (
        b"* 1 FETCH (UID 4 MODSEQ (65402) FLAGS (\\Seen))",
        FetchData(number=1, uid=4, modseq=65402, flags=("\\Seen",)),
    ),
    (
        b"* VANISHED (EARLIER) 41,43:116,118,120:211,214:540",
        VanishedData(uids=seq("41,43:116,118,120:211,214:540"), earlier=True),
    ),
    (b"* VANISHED 405,407,410,425", VanishedData(uids=seq("405,407,410,425"))),
    (
        b"* SEARCH 2 5 6 7 11 12 18 19 20 23 (MODSEQ 917162500)",
        SearchData(numbers=(2, 5, 6, 7, 11, 12, 18, 19, 20, 23), modseq=917162500),
    ),
    (
        b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292 HIGHESTMODSEQ 7011231777)",
        StatusData(
            mailbox="blurdybloop",
            items=(("MESSAGES", 231), ("UIDNEXT", 44292), ("HIGHESTMODSEQ", 7011231777)),
        ),
    ),
    # RFC 9051 §7.2-§7.4 data
    (b"* ENABLED CONDSTORE QRESYNC", EnabledData(capabilities=("CONDSTORE", "QRESYNC"))),
    (b"* ENABLED", EnabledData()),
    (
        b"* CAPABILITY IMAP4rev2 STARTTLS AUTH=GSSAPI XPIG-LATIN",
        CapabilityData(capabilities=("IMAP4rev2", "STARTTLS", "AUTH=GSSAPI", "XPIG-LATIN")),
    ),
    (
        b'* LIST (\\Noselect) "/" ~/Mail/foo',
        ListData(flags=("\\Noselect",), delimiter="/", mailbox="~/Mail/foo"),
    ),
    (b'* LIST () NIL ""', ListData(flags=(), delimiter=None, mailbox="")),
    (b'* LIST (\\Marked) "." inbox', ListData(flags=("\\Marked",), delimiter=".", mailbox="INBOX")),
    (
        b'* LIST (\\HasNoChildren) "/" "~peter/mail/&U,BTFw-/&ZeVnLIqe-"',
        ListData(flags=("\\HasNoChildren",), delimiter="/", mailbox="~peter/mail/台北/日本語"),
    ),
    (
        b'* LIST () "/" "Tofu" ("CHILDINFO" ("SUBSCRIBED"))',
        ListData(flags=(), delimiter="/", mailbox="Tofu", child_info=("SUBSCRIBED",)),
    ),
    (
        b'* LIST () "/" "NewMailbox" ("OLDNAME" ("OldMailbox"))',
        ListData(flags=(), delimiter="/", mailbox="NewMailbox", old_name="OldMailbox"),
    ),
    (
        b'* LIST (\\Subscribed \\NonExistent) "/" "Fruit/Peach"',
        ListData(flags=("\\Subscribed", "\\NonExistent"), delimiter="/", mailbox="Fruit/Peach"),
    ),
    (
        b'* LIST (\\HasNoChildren \\Sent) "/" Sent ("MYEXT" (1 "a"))',
        ListData(
            flags=("\\HasNoChildren", "\\Sent"),
            delimiter="/",
            mailbox="Sent",
            extended=(("MYEXT", (1, "a")),),
        ),
    ),
    (
        b'* LSUB () "." #news.comp.mail.misc',
        ListData(flags=(), delimiter=".", mailbox="#news.comp.mail.misc", lsub=True),
    ),
    (
        b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)",
        StatusData(mailbox="blurdybloop", items=(("MESSAGES", 231), ("UIDNEXT", 44292))),
    ),
    (
        b"* STATUS INBOX (APPENDLIMIT NIL SIZE 12345678901 DELETED 3)",
        StatusData(
            mailbox="INBOX",
            items=(("APPENDLIMIT", None), ("SIZE", 12345678901), ("DELETED", 3)),
        ),
    ),
    (b"* SEARCH 2 3 6", SearchData(numbers=(2, 3, 6))),
    (b"* SEARCH", SearchData()),
    (
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
        FlagsData(flags=("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")),
    ),
    (b"* 23 EXISTS", ExistsData(count=23)),
    (b"* 0 EXISTS", ExistsData(count=0)),
    (b"* 5 RECENT", RecentData(count=5)),
    (b"* 44 EXPUNGE", ExpungeData(number=44)),
    # RFC 4731 / RFC 9051 ESEARCH
    (b'* ESEARCH (TAG "A282") MIN 2 COUNT 3', ESearchData(tag="A282", min=2, count=3)),
    (b'* ESEARCH (TAG "A283") ALL 2,10:11', ESearchData(tag="A283", all=seq("2,10:11"))),
    (b'* ESEARCH (TAG "A284") MIN 4', ESearchData(tag="A284", min=4)),
    (
        b'* ESEARCH (TAG "A285") UID MIN 7 MAX 3800',
        ESearchData(tag="A285", uid=True, min=7, max=3800),
    ),
    (b'* ESEARCH (TAG "A286") COUNT 15', ESearchData(tag="A286", count=15)),
    (b"* ESEARCH UID ALL 5", ESearchData(uid=True, all=seq("5"))),
    (
        b'* ESEARCH (TAG "a") UID ALL 1:3 MODSEQ 1236 PARTIAL (1:10 1,3)',
        ESearchData(
            tag="a",
            uid=True,
            all=seq("1:3"),
            modseq=1236,
            extensions=(("PARTIAL", ("1:10", "1,3")),),
        ),
    ),
    (b"* ESEARCH", ESearchData()),
    # RFC 5256 SORT and THREAD
    (b"* SORT 2 3 6", SortData(numbers=(2, 3, 6))),
    (
        b"* THREAD (2)(3 6 (4 23)(44 7 96))",
        ThreadData(threads=((2,), (3, 6, (4, 23), (44, 7, 96)))),
    ),
    (b"* THREAD ((3)(5))", ThreadData(threads=(((3,), (5,)),))),
    (b"* THREAD", ThreadData()),
    # RFC 2342 NAMESPACE
    (
        b'* NAMESPACE (("" "/")) (("~" "/")) (("#shared/" "/")("#public/" "/")'
        b'("#ftp/" "/")("#news." "."))',
        NamespaceData(
            personal=(Namespace(prefix="", delimiter="/"),),
            other=(Namespace(prefix="~", delimiter="/"),),
            shared=(
                Namespace(prefix="#shared/", delimiter="/"),
                Namespace(prefix="#public/", delimiter="/"),
                Namespace(prefix="#ftp/", delimiter="/"),
                Namespace(prefix="#news.", delimiter="."),
            ),
        ),
    ),
    (
        b'* NAMESPACE NIL NIL (("" "."))',
        NamespaceData(shared=(Namespace(prefix="", delimiter="."),)),
    ),
    (
        b'* NAMESPACE (("" "/" "X-PARAM" ("FLAG1" "FLAG2"))) NIL NIL',
        NamespaceData(
            personal=(
                Namespace(prefix="", delimiter="/", extensions=(("X-PARAM", ("FLAG1", "FLAG2")),)),
            )
        ),
    ),
    # RFC 2971 ID
    (
        b'* ID ("name" "Cyrus" "version" "1.5" "os" "sunos" "os-version" "5.5" '
        b'"support-url" "mailto:cyrus-bugs+@andrew.cmu.edu")',
        IdData(
            params=(
                ("name", "Cyrus"),
                ("version", "1.5"),
                ("os", "sunos"),
                ("os-version", "5.5"),
                ("support-url", "mailto:cyrus-bugs+@andrew.cmu.edu"),
            )
        ),
    ),
    (b"* ID NIL", IdData()),
    (b'* ID ("name" NIL)', IdData(params=(("name", None),))),
    # continuation requests (RFC 9051 §7.6)
    (
        b"+ Ready for additional command text",
        Continuation(text="Ready for additional command text"),
    ),
    (b"+", Continuation()),
    (b"+ idling", Continuation(text="idling")),
    (b"+ [ALERT] hi", Continuation(code=ResponseCode(name="ALERT"), text="hi")),
    # FETCH (RFC 9051 §7.5.2)
    (b"* 14 FETCH (FLAGS (\\Seen \\Deleted))", FetchData(number=14, flags=("\\Seen", "\\Deleted"))),
    (
        b'* 12 FETCH (FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" '
        b"RFC822.SIZE 4286 ENVELOPE " + ENVELOPE_WIRE + b' BODY ("TEXT" "PLAIN" '
        b'("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92))',
        FetchData(
            number=12,
            flags=("\\Seen",),
            internaldate=datetime.datetime(1996, 7, 17, 2, 44, 25, tzinfo=PDT),
            rfc822_size=4286,
            envelope=ENVELOPE,
            body=PLAIN,
        ),
    ),
    (
        b'* 3 FETCH (BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" '
        b'1152 23)("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
        b'"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) '
        b'"MIXED"))',
        FetchData(
            number=3,
            bodystructure=MultipartBody(
                parts=(
                    SinglePartBody(
                        type="TEXT",
                        subtype="PLAIN",
                        params=(("CHARSET", "US-ASCII"),),
                        encoding="7BIT",
                        size=1152,
                        lines=23,
                    ),
                    SinglePartBody(
                        type="TEXT",
                        subtype="PLAIN",
                        params=(("CHARSET", "US-ASCII"), ("NAME", "cc.diff")),
                        id="<960723163407.20117h@cac.washington.edu>",
                        description="Compiler diff",
                        encoding="BASE64",
                        size=4554,
                        lines=73,
                    ),
                ),
                subtype="MIXED",
            ),
        ),
    ),
    (
        b'* 4 FETCH (BODYSTRUCTURE ("APPLICATION" "PDF" ("NAME" "a.pdf") NIL NIL "BASE64" '
        b'4096 "md5sum" ("ATTACHMENT" ("FILENAME" "a.pdf")) ("en" "de") "http://x" 7 '
        b'("x" (1 NIL))))',
        FetchData(
            number=4,
            bodystructure=SinglePartBody(
                type="APPLICATION",
                subtype="PDF",
                params=(("NAME", "a.pdf"),),
                encoding="BASE64",
                size=4096,
                extended=True,
                md5="md5sum",
                disposition=("ATTACHMENT", (("FILENAME", "a.pdf"),)),
                language=("en", "de"),
                location="http://x",
                extensions=(7, ("x", (1, None))),
            ),
        ),
    ),
    (
        b'* 5 FETCH (BODYSTRUCTURE ("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 500 '
        + ENVELOPE_WIRE
        + b' ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92) 20 NIL) '
        b'BINARY.SIZE[1] 400 PREVIEW "Hello")',
        FetchData(
            number=5,
            bodystructure=SinglePartBody(
                type="MESSAGE",
                subtype="RFC822",
                encoding="7BIT",
                size=500,
                envelope=ENVELOPE,
                body=PLAIN,
                lines=20,
                extended=True,
            ),
            binary_sizes=(((1,), 400),),
            preview="Hello",
        ),
    ),
    (
        b'* 6 FETCH (BODY ("TEXT" "PLAIN" NIL NIL NIL "8BIT" 10 1) '
        b'BODY[1.2.MIME] "x" BODY[TEXT]<100> NIL RFC822.HEADER "h" EMAILID (M6d99ac3275bb4e))',
        FetchData(
            number=6,
            body=SinglePartBody(type="TEXT", subtype="PLAIN", encoding="8BIT", size=10, lines=1),
            sections=(
                BodySection(section=Section(part=(1, 2), text="MIME"), data=b"x"),
                BodySection(section=Section(text="TEXT"), origin=100),
                BodySection(name="RFC822.HEADER", data=b"h"),
            ),
            extensions=(("EMAILID", ("M6d99ac3275bb4e",)),),
        ),
    ),
    (
        b'* 7 FETCH (UID 9 BODY[HEADER.FIELDS (From "X-a]b")]<0> "From: a")',
        FetchData(
            number=7,
            uid=9,
            sections=(
                BodySection(
                    section=Section(text="HEADER.FIELDS", fields=("From", "X-a]b")),
                    origin=0,
                    data=b"From: a",
                ),
            ),
        ),
    ),
    (b"* 8 FETCH (BINARY.SIZE[2] 2665)", FetchData(number=8, binary_sizes=(((2,), 2665),))),
    (b"* 9 FETCH ()", FetchData(number=9)),
    # kept, not refused (RFC 9051 §7: extensions)
    (b"* XFOO bar (1 2) NIL", UntaggedData(name="XFOO", items=("bar", (1, 2), None))),
    (b"* 3 XBAR", UntaggedData(name="XBAR", number=3)),
    (b"* 3 XBAR x", UntaggedData(name="XBAR", number=3, items=("x",))),
]


@pytest.mark.parametrize(("line", "expected"), CORPUS)
def test_corpus(line: bytes, expected: object) -> None:
    assert parse_response(one(line)) == expected


@pytest.mark.parametrize(("line", "expected"), CORPUS)
def test_corpus_written_back(line: bytes, expected: object) -> None:
    frame = write_response(expected)  # type: ignore[arg-type]
    assert parse_response(frame) == expected


def test_written_forms() -> None:
    assert write_response(StatusResponse(status="OK", tag="A1", text="done")).to_bytes() == (
        b"A1 OK done\r\n"
    )
    assert write_response(ExistsData(count=3)).to_bytes() == b"* 3 EXISTS\r\n"
    frame = write_response(FetchData(number=1, uid=5, sections=(BodySection(data=b"a\r\nb"),)))
    assert frame.to_bytes() == b"* 1 FETCH (UID 5 BODY[] {4}\r\na\r\nb)\r\n"
    frame = write_response(
        FetchData(number=1, sections=(BodySection(name="BINARY", data=b"a\x00"),))
    )
    assert frame.to_bytes() == b"* 1 FETCH (BINARY[] ~{2}\r\na\x00)\r\n"
    assert write_response(Continuation(data=b"\x00\x01")).to_bytes() == b"+ AAE=\r\n"
    assert write_response(Continuation()).to_bytes() == b"+\r\n"


def test_literals() -> None:
    header = b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\nFrom: Terry Gray\r\n\r\n"
    frame = Frame(
        lines=(b"* 12 FETCH (BODY[HEADER] {%d}" % len(header), b" UID 7)"), literals=(header,)
    )
    assert parse_response(frame) == FetchData(
        number=12, uid=7, sections=(BodySection(section=Section(text="HEADER"), data=header),)
    )
    # a literal in an ENVELOPE, a mailbox name and a LIST delimiter
    frame = Frame(
        lines=(b"* 1 FETCH (ENVELOPE (NIL {5}", b' NIL NIL NIL NIL NIL NIL NIL "<x>"))'),
        literals=(b"a\r\nb\xff",),
    )
    value = parse_response(frame)
    assert isinstance(value, FetchData) and value.envelope is not None
    assert value.envelope.subject == "a\r\nb\udcff"
    frame = Frame(lines=(b'* LIST () "/" {3}', b""), literals=(b"a b",))
    assert parse_response(frame) == ListData(flags=(), delimiter="/", mailbox="a b")


def test_streamed_body() -> None:
    big = Streamed(size=50_000_000, index=0)
    frame = Frame(lines=(b"* 2 FETCH (UID 3 BODY[] {50000000}", b")"), literals=(big,))
    assert parse_response(frame) == FetchData(number=2, uid=3, sections=(BodySection(data=big),))
    assert parse_response(write_response(parse_response(frame))) == parse_response(frame)


def test_utf8_mailboxes() -> None:
    line = '* LIST () "/" "Entwürfe"'.encode()
    assert parse_response(one(line), utf8=True) == ListData(
        flags=(), delimiter="/", mailbox="Entwürfe"
    )
    # with UTF8=ACCEPT, '&' is a character like any other
    assert parse_response(one(b'* LIST () "/" "a&b"'), utf8=True) == ListData(
        flags=(), delimiter="/", mailbox="a&b"
    )
    with pytest.raises(ResponseSyntaxError):
        parse_response(one(b'* LIST () "/" "a&b"'))
    with pytest.raises(ResponseSyntaxError):
        parse_response(one(b'* LIST () "/" "\xff"'), utf8=True)
    written = write_response(ListData(flags=(), delimiter="/", mailbox="Entwürfe"), utf8=True)
    assert written.to_bytes() == '* LIST () "/" "Entwürfe"\r\n'.encode()


def test_challenge() -> None:
    assert parse_response(one(b"+ YWJj"), challenge=True) == Continuation(data=b"abc")
    assert parse_response(one(b"+ "), challenge=True) == Continuation(data=b"")
    assert parse_response(one(b"+"), challenge=True) == Continuation(data=b"")
    with pytest.raises(ResponseSyntaxError):
        parse_response(one(b"+ not base64!"), challenge=True)


def test_odd_code_arguments_kept_as_plain_code() -> None:
    assert parse_response(one(b"* OK [UIDNEXT x] hm")) == StatusResponse(
        status="OK", code=ResponseCode(name="UIDNEXT", args="x"), text="hm"
    )
    # '[' without a code is text
    assert parse_response(one(b"* OK [unterminated")) == StatusResponse(
        status="OK", text="[unterminated"
    )


def test_nesting_limit() -> None:
    deep = b"* 1 FETCH (BODYSTRUCTURE " + b"(" * 10_000 + b")" * 10_000 + b")"
    with pytest.raises(ResponseSyntaxError) as info:
        parse_response(one(deep))
    assert "nested" in info.value.message
    # a real nested multipart within the limit parses
    part = b'("TEXT" "PLAIN" NIL NIL NIL "7BIT" 1 1)'
    body = part
    for _ in range(40):
        body = b"(" + body + b' "MIXED")'
    value = parse_response(one(b"* 1 FETCH (BODYSTRUCTURE " + body + b")"))
    assert isinstance(value, FetchData) and isinstance(value.bodystructure, MultipartBody)
    with pytest.raises(ResponseSyntaxError):
        parse_response(one(b"* 1 FETCH (BODYSTRUCTURE " + body + b")"), max_depth=20)


def test_items_limit() -> None:
    line = b"* SEARCH" + b" 1" * 500
    assert isinstance(parse_response(one(line)), SearchData)
    with pytest.raises(ResponseSyntaxError):
        parse_response(one(line), max_items=100)


BAD = [
    b"",
    b"*",
    b"* ",
    b"A1",
    b"A1 MAYBE done",
    b"+x",
    b"* 1 FETCH",
    b"* 1 FETCH (UID)",
    b"* 1 FETCH (UID x)",
    b"* 1 FETCH (UID 4294967296)",
    b"* 1 FETCH (FLAGS \\Seen)",
    b"* 1 FETCH (ENVELOPE (1 2))",
    b'* 1 FETCH (INTERNALDATE "32-Jul-1996 02:44:25 -0700")',
    b'* 1 FETCH (INTERNALDATE "17-Jul-1996 02:44:25 -0799")',
    b"* 1 FETCH (BODY[HEADER.FIELDS (From) <0> x)",
    b"* 1 FETCH (BODY[WRONG] x)",
    b"* 1 FETCH (BODY[1.MIME]<x> x)",
    b'* 1 FETCH (BODYSTRUCTURE ("TEXT" "PLAIN" NIL NIL NIL "7BIT" 1))',
    b'* 1 FETCH (BODYSTRUCTURE (("TEXT" "PLAIN" NIL NIL NIL "7BIT" 1 1)))',
    b"* 1 FETCH (BODYSTRUCTURE ())",
    b"* 0 FETCH (UID 1)",
    b"* 1 FETCH (UID 1",
    b"* 1 FETCH (UID 1))",
    b'* 1 FETCH (X "unterminated)',
    b'* 1 FETCH (X "bad \\escape")',
    b"* 1 EXISTS extra",
    b"* 0 EXPUNGE",
    b"* SEARCH 0",
    b"* SEARCH x",
    b"* LIST ()",
    b'* LIST () "//" x',
    b'* LIST () "/" &AGE-',
    b"* STATUS x (MESSAGES)",
    b"* STATUS x (MESSAGES y)",
    b"* THREAD (1 (2) 3)",
    b"* THREAD ()",
    b"* VANISHED (LATER) 1",
    b"* VANISHED x",
    b"* NAMESPACE NIL NIL",
    b"* NAMESPACE () NIL NIL",
    b'* ID ("a")',
    b"* FLAGS",
    b"* OK a\x00b",
    b"* 1 FETCH (X a\x00)",
]


@pytest.mark.parametrize("line", BAD)
def test_refused(line: bytes) -> None:
    with pytest.raises(ResponseSyntaxError) as info:
        parse_response(one(line))
    assert info.value.message


def test_refused_frames() -> None:
    for frame in [
        Frame(lines=(b"* 1 FETCH (BODY[] {3}", b")"), literals=(b"ab",)),
        Frame(lines=(b"* 1 FETCH (BODY[] {3}", b")"), literals=(b"a\x00b",)),
        Frame(lines=(b"* 1 FETCH (BODY[] {99999999999999999999}", b")"), literals=(b"",)),
        Frame(lines=(b"* 1 FETCH (BODY[] x", b")"), literals=(b"x",)),
        Frame(lines=(b"* 1 FETCH (BODY[] {3}", b")"), literals=(Streamed(size=4),)),
        Frame(lines=(b"* 1 FETCH (ENVELOPE (NIL {3}", b"))"), literals=(Streamed(size=3),)),
        Frame(lines=(b"A1 OK {3}", b""), literals=(b"abc",)),
        Frame(lines=(b"+ {3}", b""), literals=(b"abc",)),
    ]:
        with pytest.raises(ResponseSyntaxError):
            parse_response(frame)


def test_literal8_in_binary() -> None:
    frame = Frame(lines=(b"* 1 FETCH (BINARY[1] ~{3}", b")"), literals=(b"a\x00b",))
    assert parse_response(frame) == FetchData(
        number=1,
        sections=(BodySection(name="BINARY", section=Section(part=(1,)), data=b"a\x00b"),),
    )


def test_writer_refuses() -> None:
    for response in [
        StatusResponse(status="OK", tag="a b"),
        StatusResponse(status="OK", text="[looks like a code"),
        FetchData(number=1, bodystructure=SinglePartBody(type="TEXT", subtype="PLAIN")),
        FetchData(number=1, envelope=Envelope(subject="a\x00")),
        NamespaceData(personal=()),
        CapabilityData(capabilities=("a b",)),
    ]:
        with pytest.raises(LocalProtocolError):
            write_response(response)
    with pytest.raises(LocalProtocolError):
        write_response("* OK")  # type: ignore[arg-type]


def test_model_validates() -> None:
    with pytest.raises(LocalProtocolError):
        StatusResponse(status="MAYBE")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        StatusResponse(status="BYE", tag="A1")
    with pytest.raises(LocalProtocolError):
        StatusResponse(status="OK", text="a\r\nb")
    with pytest.raises(LocalProtocolError):
        Continuation(text="x", data=b"")
    with pytest.raises(LocalProtocolError):
        FetchData(number=0)
    with pytest.raises(LocalProtocolError):
        ListData(flags=(), delimiter="//", mailbox="x")
    with pytest.raises(LocalProtocolError):
        ResponseCode(name="alert")
    with pytest.raises(LocalProtocolError):
        ResponseCode(name="X", args="a]b")
    with pytest.raises(LocalProtocolError):
        UidNextCode(uidnext=0)
    with pytest.raises(LocalProtocolError):
        BodySection(name="RFC822", origin=3)
    with pytest.raises(LocalProtocolError):
        BodySection(name="BINARY", section=Section(text="TEXT"))


def test_status_data_accessors() -> None:
    value = parse_response(
        one(
            b"* STATUS x (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 3 UNSEEN 4 DELETED 5 SIZE 6 "
            b"RECENT 7 HIGHESTMODSEQ 8 APPENDLIMIT 9 MAILBOXID (F1))"
        )
    )
    assert isinstance(value, StatusData)
    assert (value.messages, value.uidnext, value.uidvalidity, value.unseen) == (1, 2, 3, 4)
    assert (value.deleted, value.size, value.recent, value.highestmodseq) == (5, 6, 7, 8)
    assert value.appendlimit == 9
    assert value.get("mailboxid") == ("F1",)
    assert value.get("nothing") is None


def test_fetch_section_lookup() -> None:
    value = parse_response(one(b'* 1 FETCH (BODY[TEXT] "t" BODY[] "all" RFC822 NIL)'))
    assert isinstance(value, FetchData)
    assert value.section() == b"all"
    assert value.section(Section(text="TEXT")) == b"t"
    assert value.section(name="RFC822") is None
    assert value.section(Section(part=(9,))) is None


def test_message_global_as_dovecot_describes_it() -> None:
    # Dovecot 2.3 writes MESSAGE/GLOBAL as a basic part (no envelope, body, lines): a
    # client must read a real server's answer (regression: it was refused).
    line = b'* 1 FETCH (BODYSTRUCTURE ("message" "global" NIL NIL NIL "8bit" 120 NIL NIL NIL NIL))'
    value = parse_response(one(line))
    assert isinstance(value, FetchData)
    body = value.bodystructure
    assert isinstance(body, SinglePartBody)
    assert (body.type, body.subtype, body.size, body.envelope, body.lines) == (
        "message", "global", 120, None, None,
    )  # fmt: skip
    assert body.extended
    # The RFC 9051 form still reads as a message.
    full = (
        b'* 1 FETCH (BODYSTRUCTURE ("message" "global" NIL NIL NIL "8bit" 120 '
        b'(NIL "s" NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" NIL NIL NIL "8bit" 3 1) 4))'
    )
    inner = parse_response(one(full))
    assert isinstance(inner, FetchData)
    assert isinstance(inner.bodystructure, SinglePartBody)
    assert inner.bodystructure.envelope is not None
    assert inner.bodystructure.lines == 4


def test_oldname_keeps_the_spelling_the_client_used() -> None:
    # RFC 9051 §8: after RENAME of "inbox" spelled so, the server's LIST says
    # ("OLDNAME" ("inbox")); folding it to INBOX (as a mailbox name is) lost it.
    line = b'* LIST () "/" "INBOX" ("OLDNAME" ("inbox"))'
    value = parse_response(one(line))
    assert isinstance(value, ListData)
    assert (value.mailbox, value.old_name) == ("INBOX", "inbox")
    assert write_response(value).lines == (b'* LIST () "/" INBOX (OLDNAME (inbox))',)
