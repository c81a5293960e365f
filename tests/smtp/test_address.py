"""Tests of mailagents.smtp._address: the RFC 5321 §4.1.2 / §4.1.3 path grammar."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents.smtp._address import (
    AddressError,
    Mailbox,
    Path,
    parse_forward_path,
    parse_mailbox,
    parse_path,
    parse_reverse_path,
    split_path_and_parameters,
)

# --- valid paths: (text, local_part, domain) ----------------------------------------

VALID_PATHS = [
    ("<user@example.com>", "user", "example.com"),
    ("<User.Name+tag@Example.COM>", "User.Name+tag", "Example.COM"),
    ("<a@b>", "a", "b"),
    ("<!#$%&'*+-/=?^_`{|}~@example.com>", "!#$%&'*+-/=?^_`{|}~", "example.com"),
    ("<1@123.example>", "1", "123.example"),
    ("<a@a-b.c-d.example>", "a", "a-b.c-d.example"),
    # Quoted strings: spaces, ">", "@", escapes (RFC 5321 §4.1.2 quoted-pairSMTP)
    ('<"a b"@example.com>', "a b", "example.com"),
    ('<"a> b"@x>', "a> b", "x"),
    ('<"a@b"@example.com>', "a@b", "example.com"),
    ('<"a\\"b"@example.com>', 'a"b', "example.com"),
    ('<"a\\\\b"@example.com>', "a\\b", "example.com"),
    ('<"\\a\\b"@example.com>', "ab", "example.com"),
    ('<"plain"@example.com>', "plain", "example.com"),
    ('<".dot"@example.com>', ".dot", "example.com"),
    ('<""@example.com>', "", "example.com"),
    # Source routes are accepted and dropped (RFC 5321 §4.1.1.3, Appendix C)
    ("<@a.example,@b.example:u@c.example>", "u", "c.example"),
    ("<@a.example:u@c.example>", "u", "c.example"),
    # Address literals (RFC 5321 §4.1.3)
    ("<u@[192.0.2.1]>", "u", "[192.0.2.1]"),
    ("<u@[255.255.255.255]>", "u", "[255.255.255.255]"),
    ("<u@[IPv6:2001:db8::1]>", "u", "[IPv6:2001:db8::1]"),
    ("<u@[ipv6:::1]>", "u", "[ipv6:::1]"),
    ("<u@[IPv6:::ffff:192.0.2.1]>", "u", "[IPv6:::ffff:192.0.2.1]"),
    ("<u@[x-tag:some>content]>", "u", "[x-tag:some>content]"),
]

INVALID_PATHS = [
    "user@example.com",  # brackets missing
    "<user@example.com",
    "user@example.com>",
    "<>",  # null not allowed for a plain path
    "<user>",  # no domain
    "<user@>",
    "<@example.com>",
    "< user@example.com>",
    "<user@example.com >",
    "<us er@example.com>",
    "<user@exa mple.com>",
    "<a@b> junk",
    "<.user@example.com>",
    "<user.@example.com>",
    "<us..er@example.com>",
    "<user@example..com>",
    "<user@.example.com>",
    "<user@example.com.>",
    "<user@-example.com>",
    "<user@example-.com>",
    "<user@exa_mple.com>",
    "<a@b@c>",
    "<a(b)@example.com>",
    '<"unterminated@example.com>',
    '<"a"b@example.com>',
    '<"a\\\x01"@example.com>',
    "<u\x00@example.com>",
    "<u\r\n@example.com>",
    "<u@exam\tple.com>",
    '<"a\x7f"@example.com>',
    "<u@[300.1.1.1]>",
    "<u@[1.2.3]>",
    "<u@[1.2.3.4.5]>",
    "<u@[01.2.3.4]>",
    "<u@[IPv6:2001:db8::g]>",
    "<u@[IPv6:fe80::1%eth0]>",
    "<u@[IPv6:1.2.3.4]>",
    "<u@[]>",
    "<u@[192.0.2.1>",
    "<u@[tag:]>",
    "<u@[tag:a[b]>",
    "<@a.example u@c.example>",  # source route without ":"
    "<@a.example;@b.example:u@c.example>",
    "<a.example:u@c.example>",
    "<@[192.0.2.1]:u@c.example>",  # At-domain is a Domain, not a literal
    "<@:u@c.example>",
    "<postmaster>",  # only allowed for RCPT
    "<<a@b>>",
]


@pytest.mark.parametrize(("text", "local", "domain"), VALID_PATHS)
def test_valid_paths(text: str, local: str, domain: str) -> None:
    path = parse_path(text)
    assert path.mailbox == Mailbox(local, domain)
    assert path.mailbox is not None
    assert path.mailbox.local_part == local
    assert path.mailbox.domain == domain
    assert not path.is_null
    # The canonical form parses back to the same mailbox.
    assert parse_path(str(path)) == path


@pytest.mark.parametrize("text", INVALID_PATHS)
def test_invalid_paths(text: str) -> None:
    with pytest.raises(AddressError):
        parse_path(text)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ('<"plain"@example.com>', "<plain@example.com>"),
        ('<"\\a"@example.com>', "<a@example.com>"),
        ('<"a b"@example.com>', '<"a b"@example.com>'),
        ('<"a\\"b"@example.com>', '<"a\\"b"@example.com>'),
        ('<".dot"@example.com>', '<".dot"@example.com>'),
        ('<""@example.com>', '<""@example.com>'),
        ("<@a.example:u@c.example>", "<u@c.example>"),
        ("<u@Example.COM>", "<u@Example.COM>"),
    ],
)
def test_canonical_form(text: str, canonical: str) -> None:
    assert str(parse_path(text)) == canonical


def test_reverse_path_null() -> None:
    path = parse_reverse_path("<>")
    assert path.is_null
    assert path.mailbox is None
    assert str(path) == "<>"
    assert parse_reverse_path("<a@b.example>").mailbox == Mailbox("a", "b.example")
    with pytest.raises(AddressError):
        parse_forward_path("<>")
    with pytest.raises(AddressError):
        parse_reverse_path("<postmaster>")


@pytest.mark.parametrize("text", ["<postmaster>", "<Postmaster>", "<POSTMASTER>"])
def test_forward_path_postmaster(text: str) -> None:
    path = parse_forward_path(text)
    assert path.mailbox == Mailbox("postmaster", "")
    assert str(path) == "<postmaster>"
    assert path.mailbox is not None and str(path.mailbox) == "postmaster"


def test_postmaster_with_domain_is_an_ordinary_mailbox() -> None:
    path = parse_forward_path("<Postmaster@Example.com>")
    assert path.mailbox == Mailbox("Postmaster", "example.com")
    with pytest.raises(AddressError):
        parse_forward_path("<@a.example:postmaster>")


def test_mailbox_properties() -> None:
    assert Mailbox("a", "[192.0.2.1]").is_address_literal
    assert not Mailbox("a", "example.com").is_address_literal
    assert not Mailbox("a", "example.com").is_utf8
    assert Mailbox("ü", "example.com").is_utf8
    assert Mailbox("a", "bücher.example").is_utf8


def test_domain_compares_case_insensitively_local_part_does_not() -> None:
    assert Mailbox("a", "Example.COM") == Mailbox("a", "example.com")
    assert hash(Mailbox("a", "Example.COM")) == hash(Mailbox("a", "example.com"))
    assert Mailbox("A", "example.com") != Mailbox("a", "example.com")
    assert Mailbox("a", "Example.COM").domain == "Example.COM"
    assert Mailbox("a", "b") != "a@b"


@pytest.mark.parametrize(
    ("local", "domain"),
    [
        ("a\r\nRCPT TO:<x@y>", "example.com"),
        ("a\x00", "example.com"),
        ("a", "exa\r\nmple.com"),
        ("a", "example.com."),
        ("a", "[300.0.0.1]"),
        ("a", ""),  # only postmaster may lack a domain
        ("x" * 65, "example.com"),
        ("a", "a" * 64 + ".example"),
        ("\ud800", "example.com"),
        ("a", "bad_domain"),
    ],
)
def test_mailbox_construction_is_validated(local: str, domain: str) -> None:
    with pytest.raises(AddressError):
        Mailbox(local, domain)


def test_mailbox_construction_rejects_non_strings() -> None:
    with pytest.raises(AddressError):
        Mailbox(1, "example.com")  # type: ignore[arg-type]


# --- lengths (RFC 5321 §4.5.3.1), counted in octets ---------------------------------


def test_local_part_limit() -> None:
    assert parse_mailbox("x" * 64 + "@example.com").local_part == "x" * 64
    with pytest.raises(AddressError):
        parse_mailbox("x" * 65 + "@example.com")
    # 32 two-octet characters = 64 octets; 33 = 66 octets
    assert parse_mailbox("é" * 32 + "@example.com", utf8=True)
    with pytest.raises(AddressError):
        parse_mailbox("é" * 33 + "@example.com", utf8=True)
    # The written (quoted) form counts: 63 characters plus two quotes.
    with pytest.raises(AddressError):
        parse_mailbox('"' + "x" * 63 + '"@example.com')


def test_domain_limit() -> None:
    label = "a" * 63
    domain = ".".join([label] * 3 + ["a" * 61])  # 63*3 + 61 + 3 = 253
    assert parse_mailbox("u@" + domain).domain == domain
    with pytest.raises(AddressError):
        parse_mailbox("u@" + ".".join([label] * 4 + ["b"]))  # 257 octets
    with pytest.raises(AddressError):
        parse_mailbox("u@" + "a" * 64 + ".example")  # label > 63


def test_path_limit() -> None:
    domain = ".".join(["a" * 60] * 3)  # 182 octets
    local = "x" * 64
    path = f"<{local}@{domain}>"  # 2 + 64 + 1 + 182 = 249
    assert parse_path(path)
    longer = f"<{local}@{domain}.{'b' * 10}>"  # 260
    with pytest.raises(AddressError):
        parse_path(longer)
    routed = "<@" + "r" * 10 + ":" + path[1:]
    with pytest.raises(AddressError):
        parse_path(routed)


# --- SMTPUTF8 (RFC 6531 §3.3) -------------------------------------------------------

UTF8_PATHS = [
    ("<用户@例子.广告>", "用户", "例子.广告"),
    ("<josé@example.com>", "josé", "example.com"),
    ("<user@bücher.example>", "user", "bücher.example"),
    ('<"j o sé"@example.com>', "j o sé", "example.com"),
    ("<@bücher.example:u@c.example>", "u", "c.example"),
    ("<user@Bücher.example>", "user", "Bücher.example"),  # UTS #46 maps the case
]


@pytest.mark.parametrize(("text", "local", "domain"), UTF8_PATHS)
def test_utf8_paths(text: str, local: str, domain: str) -> None:
    with pytest.raises(AddressError, match="SMTPUTF8"):
        parse_path(text)
    path = parse_path(text, utf8=True)
    assert path.mailbox == Mailbox(local, domain)
    assert parse_path(str(path), utf8=True) == path


@pytest.mark.parametrize(
    "text",
    [
        "<a\u0085b@example.com>",  # C1 control
        "<a@exa\u3002mple.com>",  # ideographic full stop is not a U-label character
        "<a@-bü.example>",
        "<a@\u00e9\u00e9\u00e9" + "\u00e9" * 60 + ".example>",  # A-label too long
        "<a\ud800@example.com>",
        '<"a\\é"@example.com>',  # quoted-pairSMTP is not widened
        "<a@[IPv6:2001:db8::é]>",
        # IDNA 2008 (RFC 5891 §4.2.3, RFC 5893), no longer approximated:
        "<a@\u0301bc.example>",  # a label must not begin with a combining mark
        "<a@a\u05d0.example>",  # the Bidi rule: left-to-right and Hebrew in one label
        "<a@a\u200db.example>",  # ZERO WIDTH JOINER outside its context (CONTEXTJ)
        "<a@\u2603.example>",  # a symbol: IDNA 2003 had it, IDNA 2008 does not
    ],
)
def test_utf8_invalid(text: str) -> None:
    with pytest.raises(AddressError):
        parse_path(text, utf8=True)


# --- split_path_and_parameters ------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "path", "params"),
    [
        ("<a@b>", "<a@b>", ""),
        ("<>", "<>", ""),
        ("<a@b> SIZE=10 BODY=8BITMIME", "<a@b>", "SIZE=10 BODY=8BITMIME"),
        ("<a@b>  SIZE=10 ", "<a@b>", "SIZE=10"),
        (" <a@b>", "<a@b>", ""),
        ('<"a> b"@x> SIZE=1', '<"a> b"@x>', "SIZE=1"),
        ('<"a\\"> b"@x>', '<"a\\"> b"@x>', ""),
        ("<u@[x-tag:a>b]> X=1", "<u@[x-tag:a>b]>", "X=1"),
        ("<@a,@b:u@c> NOTIFY=NEVER", "<@a,@b:u@c>", "NOTIFY=NEVER"),
        ("<a@b> junk", "<a@b>", "junk"),
    ],
)
def test_split(argument: str, path: str, params: str) -> None:
    assert split_path_and_parameters(argument) == (path, params)


@pytest.mark.parametrize(
    "argument",
    [
        "a@b",  # a bare address (aiosmtpd accepts it; RFC 5321 does not)
        "a@b SIZE=10",
        "",
        "<a@b",
        '<"a>@b',
        "<a@b>SIZE=10",
        "<u@[1.2.3.4>",
    ],
)
def test_split_invalid(argument: str) -> None:
    with pytest.raises(AddressError):
        split_path_and_parameters(argument)


# --- properties ---------------------------------------------------------------------

ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
atoms = st.text(alphabet=ATEXT, min_size=1, max_size=10)
dot_strings = st.lists(atoms, min_size=1, max_size=4).map(".".join).filter(lambda s: len(s) <= 64)
printable_local = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
labels = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?", fullmatch=True)
domains = st.lists(labels, min_size=1, max_size=4).map(".".join)
ipv4 = st.ip_addresses(v=4).map(lambda a: f"[{a}]")
ipv6 = st.ip_addresses(v=6).map(lambda a: f"[IPv6:{a}]")
any_domain = st.one_of(domains, ipv4, ipv6)
utf8_local = st.text(
    alphabet=st.characters(
        min_codepoint=32, blacklist_categories=("Cs", "Cc"), blacklist_characters='\\"'
    ),
    max_size=15,
).filter(lambda s: len(s.encode()) <= 62)


@given(local=st.one_of(dot_strings, printable_local), domain=any_domain)
def test_mailbox_round_trip(local: str, domain: str) -> None:
    mailbox = Mailbox(local, domain)
    text = str(mailbox)
    assert parse_mailbox(text) == mailbox
    path = Path(mailbox)
    assert parse_path(str(path)) == path
    assert parse_forward_path(str(path)) == path
    assert split_path_and_parameters(f"{path} SIZE=1") == (str(path), "SIZE=1")


@given(local=utf8_local, domain=any_domain)
def test_mailbox_round_trip_utf8(local: str, domain: str) -> None:
    mailbox = Mailbox(local, domain)
    assert parse_mailbox(str(mailbox), utf8=True) == mailbox
    if mailbox.is_utf8:
        with pytest.raises(AddressError):
            parse_mailbox(str(mailbox))


@given(st.text(max_size=80))
def test_arbitrary_text_raises_only_address_error(text: str) -> None:
    for utf8 in (False, True):
        for func in (parse_mailbox, parse_path, parse_reverse_path, parse_forward_path):
            with contextlib.suppress(AddressError):
                func(text, utf8=utf8)
        for candidate in (f"<{text}>", f"<{text}@example.com>", f"<a@{text}>"):
            with contextlib.suppress(AddressError):
                parse_path(candidate, utf8=utf8)
    with contextlib.suppress(AddressError):
        split_path_and_parameters(text)


@given(st.from_regex(r"<[\x20-\x7e]{0,40}>", fullmatch=True))
def test_bracketed_ascii_raises_only_address_error(text: str) -> None:
    try:
        path = parse_path(text, allow_null=True, allow_postmaster=True)
    except AddressError:
        return
    # Whatever parses has a canonical form that parses to the same thing.
    assert parse_path(str(path), allow_null=True, allow_postmaster=True) == path
