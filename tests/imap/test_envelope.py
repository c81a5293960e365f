"""ENVELOPE from a header (mailagents/imap/_envelope.py). The expected values are what
Dovecot 2.3.19 answers for the same header fields (the interop test
tests/interop/test_imap_structure_dovecot.py compares the two on whole messages)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents.imap._body_model import Address, Envelope
from mailagents.imap._envelope import envelope_from_fields, envelope_from_header, parse_address_list

M, D = "MISSING_MAILBOX", "MISSING_DOMAIN"


def a(name: str | None, mailbox: str | None, host: str | None, adl: str | None = None) -> Address:
    return Address(name=name, adl=adl, mailbox=mailbox, host=host)


START = a
END = Address()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bob@example.test", (a(None, "bob", "example.test"),)),
        ("Alice Example <alice@example.test>", (a("Alice Example", "alice", "example.test"),)),
        ('"Carol, C." <carol@example.test>', (a("Carol, C.", "carol", "example.test"),)),
        (
            '"Joe Q. Public" <john.q.public@example.com>',
            (a("Joe Q. Public", "john.q.public", "example.com"),),
        ),
        ("Who? <one@y.test>", (a("Who?", "one", "y.test"),)),
        ('"Giant; \\"Big\\" Box" <s@example.net>', (a('Giant; "Big" Box', "s", "example.net"),)),
        # RFC 2047 words stay as written.
        (
            "=?UTF-8?B?w6l0w6k=?= <e@example.test>",
            (a("=?UTF-8?B?w6l0w6k=?=", "e", "example.test"),),
        ),
        # Blank runs in a display name become one space.
        ("  Name  With   Spaces  <x@y>", (a("Name With Spaces", "x", "y"),)),
        ('"a   b" <q@x.test>', (a("a b", "q", "x.test"),)),
        # Comments: dropped inside the address, the name without a display name.
        (
            "Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
            (a("Pete", "pete", "silly.test"),),
        ),
        ("a@b (Real Name)", (a("Real Name", "a", "b"),)),
        ("(comment only)", None),
        # Source route.
        (
            "<@route1,@route2:user@example.test>",
            (a(None, "user", "example.test", "@route1,@route2"),),
        ),
        # Groups.
        ("undisclosed-recipients:;", (START(None, "undisclosed-recipients", None), END)),
        (
            'Team: a@example.test, "B" <b@example.test>;, c@example.test',
            (
                START(None, "Team", None),
                a(None, "a", "example.test"),
                a("B", "b", "example.test"),
                END,
                a(None, "c", "example.test"),
            ),
        ),
        (
            "A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;",
            (
                START(None, "A Group", None),
                a("Ed Jones", "c", "a.test"),
                a(None, "joe", "where.test"),
                a("John", "jdoe", "one.test"),
                END,
            ),
        ),
        # Broken ones.
        ("not an address", (a("not an address", M, D),)),
        ("user", (a(None, "user", D),)),
        ("@x", (a(None, M, "x"),)),
        ("@", (a(None, M, D),)),
        ("<>", (a(None, M, D),)),
        (",,a@b,,", (a(None, M, D), a(None, M, D), a(None, "a", "b"), a(None, M, D))),
        ("a@b@c, user", (a(None, "a", "b"),)),
        ('"joe  smith"@x.test', (a(None, "joe  smith", "x.test"),)),
        ("\xe9 <c@d>", (a("\xe9", "c", "d"),)),
        ("", None),
    ],
)
def test_address_lists(value: str, expected: tuple[Address, ...] | None) -> None:
    assert parse_address_list(value) == expected


def test_none_is_none() -> None:
    assert parse_address_list(None) is None


def test_envelope_fields_and_defaults() -> None:
    header = (
        b"Date:  Mon,\r\n 7 Dec 2026  \r\nSubject: a\r\n\tb   c \r\n"
        b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\n"
        b"In-Reply-To:\r\n <a@b>\r\nMessage-ID:   <m@x>  \r\n\r\n"
    )
    alice = (a("Alice", "alice", "example.test"),)
    assert envelope_from_header(header) == Envelope(
        date="Mon, 7 Dec 2026  ",
        subject="a b c",
        from_=alice,
        sender=alice,
        reply_to=alice,
        to=(a(None, "bob", "example.test"),),
        cc=None,
        bcc=None,
        in_reply_to=" <a@b>",
        message_id="<m@x>  ",
    )


def test_last_field_wins_and_empty_values() -> None:
    header = b"Subject: first\r\nSubject: second\r\nFrom:\r\nReply-To: @x\r\nDate:\r\n\r\n"
    envelope = envelope_from_header(header)
    assert envelope.subject == "second"
    assert envelope.from_ is None and envelope.sender is None
    assert envelope.reply_to == (a(None, M, "x"),)
    assert envelope.date == ""


def test_repeated_address_fields_add_up() -> None:
    envelope = envelope_from_header(
        b"From: a@b\r\nFrom: c@d\r\nMessage-ID: <1>\r\nMessage-ID: <2>\r\n\r\n"
    )
    assert envelope.from_ == (a(None, "a", "b"), a(None, "c", "d"))
    assert envelope.sender == envelope.from_ and envelope.message_id == "<2>"
    assert parse_address_list("a@b c@d\ne@f") == (a(None, "a", "b"), a(None, "e", "f"))


def test_unterminated_quote_ends_the_list() -> None:
    assert parse_address_list('"unterminated <x@y>, z@w') == (a(None, M, D),)
    assert parse_address_list('a@b, "open') == (a(None, "a", "b"), a(None, M, D))


def test_encoded_words_stay() -> None:
    envelope = envelope_from_header(b'Subject: =?ISO-8859-1?Q?caf=E9?= and "quotes"\r\n\r\n')
    assert envelope.subject == '=?ISO-8859-1?Q?caf=E9?= and "quotes"'


def test_eight_bit_round_trips() -> None:
    envelope = envelope_from_header(b"Subject: caf\xc3\xa9 \xff\r\n\r\n")
    assert envelope.subject is not None
    assert envelope.subject.encode("utf-8", "surrogateescape") == b"caf\xc3\xa9 \xff"


def test_no_header() -> None:
    assert envelope_from_header(b"\r\n") == Envelope()


def test_fields_length_checked() -> None:
    with pytest.raises(ValueError):
        envelope_from_fields(())


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='ab@<>,;:"() \\.[]\t=?\xe9', max_size=40))
def test_any_address_list_parses(value: str) -> None:
    result = parse_address_list(value)
    if result is None:
        return
    depth = 0
    for address in result:
        if address.is_group_start:
            depth += 1
        elif address.is_group_end:
            depth -= 1
        else:
            assert address.mailbox and address.host
    assert depth == 0
