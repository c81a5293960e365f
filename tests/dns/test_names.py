"""mailagents.dns names: IDNA 2008 A-labels (RFC 5891 with the UTS #46 mapping) and
address literals (RFC 5321 §4.1.3)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents.dns import BadName, parse_literal, to_ascii, to_unicode


@pytest.mark.parametrize(
    ("domain", "ascii"),
    [
        ("example.test", "example.test"),
        ("Example.TEST.", "example.test"),  # case folded, the trailing dot dropped
        ("bücher.example", "xn--bcher-kva.example"),
        ("Bücher.Example", "xn--bcher-kva.example"),  # UTS #46 maps case first
        ("ß.de", "xn--zca.de"),  # non-transitional: ß stays ß (IDNA 2008), not "ss"
        ("\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com", "example.com"),  # full-width forms
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),  # an A-label as it is
        ("münchen.xn--p1ai", "xn--mnchen-3ya.xn--p1ai"),
        ("a-b.c0", "a-b.c0"),
        ("localhost", "localhost"),  # one label: asked as it is, nothing appended
    ],
)
def test_a_domain_becomes_its_a_labels(domain: str, ascii: str) -> None:
    assert to_ascii(domain) == ascii


@pytest.mark.parametrize(
    "domain",
    [
        "",
        ".",
        "a..b",  # an empty label
        "☃.example",  # a symbol: allowed by IDNA 2003, not by IDNA 2008
        "xn--zz.example",  # not valid punycode
        "exa_mple.com",  # outside letters, digits, hyphens (RFC 5321 §4.1.2)
        "-a.com",
        "a-.com",
        "foo bar.com",
        "a\\.b.com",
        "x" * 64 + ".com",  # a label over 63 octets
        ".".join(["abcdefghi"] * 26),  # a name over 255 octets
    ],
)
def test_a_name_that_cannot_be_a_domain_is_refused(domain: str) -> None:
    with pytest.raises(BadName):
        to_ascii(domain)


def test_a_labels_decode_for_display() -> None:
    assert to_unicode("xn--bcher-kva.example.") == "bücher.example"
    assert to_unicode("xn--zz.example") == "xn--zz.example"  # kept when it does not decode
    assert to_unicode("plain.example") == "plain.example"


@pytest.mark.parametrize(
    ("literal", "address"),
    [
        ("[192.0.2.1]", "192.0.2.1"),
        ("[IPv6:2001:db8::1]", "2001:db8::1"),
        ("[ipv6:2001:DB8::1]", "2001:db8::1"),  # the tag is case-insensitive
        ("[IPv6:::ffff:192.0.2.1]", "::ffff:192.0.2.1"),
    ],
)
def test_an_address_literal_gives_its_address(literal: str, address: str) -> None:
    assert parse_literal(literal) == ipaddress.ip_address(address)


@pytest.mark.parametrize(
    "literal",
    [
        "192.0.2.1",
        "[]",
        "[192.0.2.256]",
        "[192.0.2.01]",  # a leading zero, read as octal by some stacks
        "[2001:db8::1]",  # IPv6 needs its tag
        "[IPv6:2001:db8::1%eth0]",  # no zone index in the grammar
        "[IPv6:192.0.2.1]",
        "[x400:something]",  # a general address literal: not routable over IP
    ],
)
def test_a_malformed_or_general_literal_is_refused(literal: str) -> None:
    with pytest.raises(BadName):
        parse_literal(literal)


@given(st.text(max_size=300))
def test_any_text_gives_a_domain_or_bad_name(text: str) -> None:
    try:
        ascii = to_ascii(text)
    except BadName:
        return
    assert ascii.isascii() and ascii == ascii.lower() and not ascii.endswith(".")
    assert to_ascii(ascii) == ascii  # idempotent
