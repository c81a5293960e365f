"""Tests of mailagents.smtp._params: ESMTP MAIL and RCPT parameters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents._protocol import LocalProtocolError
from mailagents.smtp._params import (
    MailParameters,
    ParameterError,
    RcptParameters,
    format_mail_parameters,
    format_rcpt_parameters,
    parse_mail_parameters,
    parse_parameters,
    parse_rcpt_parameters,
    xtext_decode,
    xtext_encode,
)

ALL = frozenset({"SIZE", "8BITMIME", "SMTPUTF8", "AUTH", "DSN", "REQUIRETLS", "BINARYMIME"})

# --- generic grammar (RFC 5321 §4.1.2) ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("   ", []),
        ("SIZE=10", [("SIZE", "10")]),
        ("size=10 body=8bitmime", [("SIZE", "10"), ("BODY", "8bitmime")]),
        ("SMTPUTF8", [("SMTPUTF8", None)]),
        ("X-FOO=a<b>c  Y", [("X-FOO", "a<b>c"), ("Y", None)]),
        ("1A=!~", [("1A", "!~")]),
    ],
)
def test_parse_parameters(text: str, expected: list[tuple[str, str | None]]) -> None:
    assert parse_parameters(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "-X=1",  # keyword must start with ALPHA / DIGIT
        "X_Y=1",
        "SIZE=",  # esmtp-value is 1*...
        "A=B=C",  # "=" is not in esmtp-value
        "=1",
        "SIZE=1\tBODY=7BIT",
        "X=a\x00b",
        "X=\x7f",
        "X=é",  # non-ASCII only with utf8
        "SIZE=1 SIZE=2",  # duplicate
        "size=1 SIZE=2",
    ],
)
def test_parse_parameters_invalid(text: str) -> None:
    with pytest.raises(ParameterError) as info:
        parse_parameters(text)
    assert (info.value.code, info.value.enhanced) == (501, "5.5.4")


def test_parse_parameters_utf8() -> None:
    assert parse_parameters("X=é", utf8=True) == [("X", "é")]
    with pytest.raises(ParameterError):
        parse_parameters("X=\u0085", utf8=True)  # C1 control is not UTF8-non-ascii


def test_parameter_error_attributes() -> None:
    error = ParameterError(555, "5.5.4", "X parameter not recognised")
    assert isinstance(error, ValueError)
    assert (error.code, error.enhanced, error.text) == (555, "5.5.4", "X parameter not recognised")
    assert str(error) == "X parameter not recognised"
    assert "555" in repr(error)


# --- xtext (RFC 3461 §4) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("decoded", "encoded"),
    [
        ("", ""),
        ("a@b.example", "a@b.example"),
        ("a+b=c", "a+2Bb+3Dc"),
        ("a b", "a+20b"),
        ("\x7f", "+7F"),
        ("é", "+C3+A9"),
        ("<>", "<>"),
    ],
)
def test_xtext(decoded: str, encoded: str) -> None:
    assert xtext_encode(decoded) == encoded
    assert xtext_decode(encoded) == decoded


@pytest.mark.parametrize("bad", ["a+", "a+2", "+2b", "+GG", "a=b", "a b", "é", "+FF", "+C3"])
def test_xtext_decode_invalid(bad: str) -> None:
    with pytest.raises(ParameterError) as info:
        xtext_decode(bad)
    assert info.value.code == 501


def test_xtext_encode_surrogate() -> None:
    with pytest.raises(LocalProtocolError):
        xtext_encode("\ud800")


@given(st.text())
def test_xtext_round_trip(text: str) -> None:
    try:
        encoded = xtext_encode(text)
    except LocalProtocolError:
        assert any("\ud800" <= c <= "\udfff" for c in text)
        return
    assert all(0x21 <= ord(c) <= 0x7E and c != "=" for c in encoded)
    assert xtext_decode(encoded) == text


# --- MAIL parameters ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", MailParameters()),
        ("SIZE=0", MailParameters(size=0)),
        ("SIZE=12345", MailParameters(size=12345)),
        ("size=99999999999999999999", MailParameters(size=99999999999999999999)),
        ("BODY=7bit", MailParameters(body="7BIT")),
        ("BODY=8BITMIME", MailParameters(body="8BITMIME")),
        ("BODY=BinaryMIME", MailParameters(body="BINARYMIME")),
        ("SMTPUTF8", MailParameters(smtputf8=True)),
        ("AUTH=<>", MailParameters(auth="<>")),
        ("AUTH=user+2Btag@example.com", MailParameters(auth="user+tag@example.com")),
        ("RET=hdrs", MailParameters(ret="HDRS")),
        ("RET=FULL ENVID=QQ314159", MailParameters(ret="FULL", envid="QQ314159")),
        ("ENVID=a+20b", MailParameters(envid="a b")),
        ("ENVID=" + "x" * 100, MailParameters(envid="x" * 100)),
        ("REQUIRETLS", MailParameters(requiretls=True)),
        (
            "SIZE=10 BODY=8BITMIME SMTPUTF8 AUTH=<> RET=FULL ENVID=x REQUIRETLS",
            MailParameters(
                size=10,
                body="8BITMIME",
                smtputf8=True,
                auth="<>",
                ret="FULL",
                envid="x",
                requiretls=True,
            ),
        ),
        ("SMTPUTF8 AUTH=+C3+A9@example.com", MailParameters(smtputf8=True, auth="é@example.com")),
    ],
)
def test_mail_parameters_valid(text: str, expected: MailParameters) -> None:
    assert parse_mail_parameters(text, extensions=ALL, max_size=10**30) == expected


@pytest.mark.parametrize(
    ("text", "extensions", "code", "enhanced"),
    [
        # not recognised / extension not offered: 555 (RFC 5321 §4.1.1.11)
        ("FOO=1", ALL, 555, "5.5.4"),
        ("SIZE=10", ALL - {"SIZE"}, 555, "5.5.4"),
        ("BODY=8BITMIME", ALL - {"8BITMIME", "BINARYMIME"}, 555, "5.5.4"),
        ("SMTPUTF8", ALL - {"SMTPUTF8"}, 555, "5.5.4"),
        ("AUTH=<>", ALL - {"AUTH"}, 555, "5.5.4"),
        ("RET=FULL", ALL - {"DSN"}, 555, "5.5.4"),
        ("ENVID=x", ALL - {"DSN"}, 555, "5.5.4"),
        ("REQUIRETLS", ALL - {"REQUIRETLS"}, 555, "5.5.4"),
        ("NOTIFY=NEVER", ALL, 555, "5.5.4"),  # a RCPT parameter
        # bad values: 501
        ("SIZE", ALL, 501, "5.5.4"),
        ("SIZE=-1", ALL, 501, "5.5.4"),
        ("SIZE=1k", ALL, 501, "5.5.4"),
        ("SIZE=123456789012345678901", ALL, 501, "5.5.4"),  # 21 digits
        ("BODY", ALL, 501, "5.5.4"),
        ("BODY=9BIT", ALL, 501, "5.5.4"),
        ("BODY=BINARYMIME", ALL - {"BINARYMIME"}, 501, "5.5.4"),
        ("BODY=8BITMIME", ALL - {"8BITMIME"}, 501, "5.5.4"),
        ("SMTPUTF8=yes", ALL, 501, "5.5.4"),
        ("AUTH", ALL, 501, "5.5.4"),
        ("AUTH=a+2", ALL, 501, "5.5.4"),
        ("AUTH=a+0D+0Ab", ALL, 501, "5.5.4"),
        ("RET=NONE", ALL, 501, "5.5.4"),
        ("RET", ALL, 501, "5.5.4"),
        ("ENVID", ALL, 501, "5.5.4"),
        ("ENVID=" + "x" * 101, ALL, 501, "5.5.4"),
        ("ENVID=a+00", ALL, 501, "5.5.4"),
        ("ENVID=+C3+A9", ALL, 501, "5.5.4"),
        ("REQUIRETLS=1", ALL, 501, "5.5.4"),
        ("SIZE=1 SIZE=1", ALL, 501, "5.5.4"),
        ("X=é", ALL, 501, "5.5.4"),  # non-ASCII without SMTPUTF8
        ("SMTPUTF8 X=é", ALL - {"SMTPUTF8"}, 555, "5.5.4"),
        ("SIZE=1 junk=", ALL, 501, "5.5.4"),
    ],
)
def test_mail_parameters_invalid(
    text: str, extensions: frozenset[str], code: int, enhanced: str
) -> None:
    with pytest.raises(ParameterError) as info:
        parse_mail_parameters(text, extensions=extensions)
    assert (info.value.code, info.value.enhanced) == (code, enhanced)
    assert "\r" not in info.value.text and "\n" not in info.value.text


def test_mail_size_limit() -> None:
    assert parse_mail_parameters("SIZE=1000", extensions=ALL, max_size=1000).size == 1000
    with pytest.raises(ParameterError) as info:
        parse_mail_parameters("SIZE=1001", extensions=ALL, max_size=1000)
    assert (info.value.code, info.value.enhanced) == (552, "5.3.4")
    assert info.value.text == "Message size exceeds fixed maximum message size"
    # None and 0 mean no fixed maximum (RFC 1870 §4)
    assert parse_mail_parameters("SIZE=10000", extensions=ALL, max_size=0).size == 10000
    assert parse_mail_parameters("SIZE=10000", extensions=ALL).size == 10000


def test_mail_extensions_case_insensitive_and_accept_unknown() -> None:
    p = parse_mail_parameters(
        "size=5 X-Foo=bar X-FLAG", extensions=["size"], accept_unknown=["x-foo", "X-FLAG"]
    )
    assert p == MailParameters(size=5, extra=(("X-FOO", "bar"), ("X-FLAG", None)))


def test_mail_non_ascii_with_smtputf8() -> None:
    p = parse_mail_parameters("SMTPUTF8 X=é", extensions=ALL, accept_unknown={"X"})
    assert p.extra == (("X", "é"),)


# --- RCPT parameters ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", RcptParameters()),
        ("NOTIFY=NEVER", RcptParameters(notify=frozenset({"NEVER"}))),
        ("NOTIFY=never", RcptParameters(notify=frozenset({"NEVER"}))),
        ("NOTIFY=SUCCESS", RcptParameters(notify=frozenset({"SUCCESS"}))),
        (
            "NOTIFY=success,Failure,DELAY",
            RcptParameters(notify=frozenset({"SUCCESS", "FAILURE", "DELAY"})),
        ),
        ("ORCPT=rfc822;a@b.example", RcptParameters(orcpt=("rfc822", "a@b.example"))),
        ("ORCPT=RFC822;a+2Bb@b.example", RcptParameters(orcpt=("RFC822", "a+b@b.example"))),
        (
            "ORCPT=utf-8;j\\x{E9}@example.com",
            RcptParameters(orcpt=("utf-8", "jé@example.com")),
        ),
        (
            "NOTIFY=FAILURE ORCPT=rfc822;x@y",
            RcptParameters(notify=frozenset({"FAILURE"}), orcpt=("rfc822", "x@y")),
        ),
    ],
)
def test_rcpt_parameters_valid(text: str, expected: RcptParameters) -> None:
    assert parse_rcpt_parameters(text, extensions=ALL) == expected


@pytest.mark.parametrize(
    ("text", "extensions", "code"),
    [
        ("NOTIFY=NEVER", ALL - {"DSN"}, 555),
        ("ORCPT=rfc822;a@b", ALL - {"DSN"}, 555),
        ("SIZE=10", ALL, 555),  # a MAIL parameter
        ("FOO", ALL, 555),
        ("NOTIFY", ALL, 501),
        ("NOTIFY=NEVER,SUCCESS", ALL, 501),
        ("NOTIFY=SUCCESS,SUCCESS", ALL, 501),
        ("NOTIFY=SUCCESS,", ALL, 501),
        ("NOTIFY=SOMETIMES", ALL, 501),
        ("ORCPT", ALL, 501),
        ("ORCPT=rfc822", ALL, 501),
        ("ORCPT=rfc 822;a@b", ALL, 501),
        ("ORCPT=rfc(822);a@b", ALL, 501),
        ("ORCPT=;a@b", ALL, 501),
        ("ORCPT=rfc822;", ALL, 501),
        ("ORCPT=rfc822;a+2", ALL, 501),
        ("ORCPT=rfc822;a+0D+0Ab", ALL, 501),
        ("ORCPT=rfc822;" + "a" * 494, ALL, 501),  # 501 characters
        ("ORCPT=utf-8;a+2Bb", ALL, 501),  # "+" is not a QCHAR
        ("ORCPT=utf-8;a\\x{D800}", ALL, 501),
        ("ORCPT=utf-8;a\\x{110000}", ALL, 501),
        ("ORCPT=utf-8;jé@example.com", ALL, 501),  # unitext only with SMTPUTF8
        ("NOTIFY=NEVER NOTIFY=NEVER", ALL, 501),
    ],
)
def test_rcpt_parameters_invalid(text: str, extensions: frozenset[str], code: int) -> None:
    with pytest.raises(ParameterError) as info:
        parse_rcpt_parameters(text, extensions=extensions)
    assert (info.value.code, info.value.enhanced) == (code, "5.5.4")


def test_rcpt_utf8() -> None:
    p = parse_rcpt_parameters("ORCPT=utf-8;jé@example.com", extensions=ALL, utf8=True)
    assert p.orcpt == ("utf-8", "jé@example.com")
    p = parse_rcpt_parameters("X=é", extensions=ALL, utf8=True, accept_unknown=["X"])
    assert p.extra == (("X", "é"),)
    assert parse_rcpt_parameters("ORCPT=rfc822;a@b", extensions=ALL, utf8=True).orcpt == (
        "rfc822",
        "a@b",
    )


def test_orcpt_max_length() -> None:
    value = "rfc822;" + "a" * 493  # 500 characters
    assert parse_rcpt_parameters("ORCPT=" + value, extensions=ALL).orcpt == ("rfc822", "a" * 493)


# --- formatting (client side) -------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "text"),
    [
        (MailParameters(), ""),
        (MailParameters(size=123), "SIZE=123"),
        (
            MailParameters(size=1, body="8bitmime", smtputf8=True, requiretls=True),
            "SIZE=1 BODY=8BITMIME SMTPUTF8 REQUIRETLS",
        ),
        (MailParameters(auth="<>"), "AUTH=<>"),
        (MailParameters(auth="a+b=c@example.com"), "AUTH=a+2Bb+3Dc@example.com"),
        (MailParameters(ret="hdrs", envid="id 1"), "RET=HDRS ENVID=id+201"),
        (MailParameters(extra=(("x-foo", "bar"), ("X-FLAG", None))), "X-FOO=bar X-FLAG"),
        (MailParameters(smtputf8=True, extra=(("X", "é"),)), "SMTPUTF8 X=é"),
    ],
)
def test_format_mail_parameters(params: MailParameters, text: str) -> None:
    assert format_mail_parameters(params) == text
    extensions = ALL | {"X-FOO", "X-FLAG", "X"}
    parsed = parse_mail_parameters(
        text, extensions=extensions, accept_unknown=["X-FOO", "X-FLAG", "X"]
    )
    assert format_mail_parameters(parsed) == text


@pytest.mark.parametrize(
    "params",
    [
        MailParameters(size=-1),
        MailParameters(size=True),
        MailParameters(size=10**20),
        MailParameters(body="9BIT"),
        MailParameters(auth="a\r\nRSET"),
        MailParameters(auth="a\x00"),
        MailParameters(auth=""),
        MailParameters(auth="\ud800"),
        MailParameters(ret="NONE"),
        MailParameters(envid="x" * 101),
        MailParameters(envid=""),
        MailParameters(envid="a\nb"),
        MailParameters(envid="é"),
        MailParameters(extra=(("BAD KEY", None),)),
        MailParameters(extra=(("X", "a b"),)),
        MailParameters(extra=(("X", "a\r\nb"),)),
        MailParameters(extra=(("X", "é"),)),  # non-ASCII without SMTPUTF8
        MailParameters(extra=(("X", "a=b"),)),
        MailParameters(size=1, extra=(("SIZE", "2"),)),  # duplicate
    ],
)
def test_format_mail_parameters_invalid(params: MailParameters) -> None:
    with pytest.raises(LocalProtocolError):
        format_mail_parameters(params)


@pytest.mark.parametrize(
    ("params", "text"),
    [
        (RcptParameters(), ""),
        (RcptParameters(notify=frozenset({"NEVER"})), "NOTIFY=NEVER"),
        (
            RcptParameters(notify=frozenset({"delay", "SUCCESS", "FAILURE"})),
            "NOTIFY=SUCCESS,FAILURE,DELAY",
        ),
        (RcptParameters(orcpt=("rfc822", "a+b@example.com")), "ORCPT=rfc822;a+2Bb@example.com"),
        (
            RcptParameters(orcpt=("utf-8", "jé+x@example.com")),
            "ORCPT=utf-8;j\\x{E9}\\x{2B}x@example.com",
        ),
        (RcptParameters(extra=(("X", "1"),)), "X=1"),
    ],
)
def test_format_rcpt_parameters(params: RcptParameters, text: str) -> None:
    assert format_rcpt_parameters(params) == text
    parsed = parse_rcpt_parameters(text, extensions=ALL, accept_unknown=["X"])
    assert parsed == RcptParameters(
        notify=None if params.notify is None else frozenset(n.upper() for n in params.notify),
        orcpt=params.orcpt,
        extra=params.extra,
    )


@pytest.mark.parametrize(
    "params",
    [
        RcptParameters(notify=frozenset()),
        RcptParameters(notify=frozenset({"NEVER", "SUCCESS"})),
        RcptParameters(notify=frozenset({"SOMETIMES"})),
        RcptParameters(orcpt=("rfc 822", "a@b")),
        RcptParameters(orcpt=("rfc822", "")),
        RcptParameters(orcpt=("rfc822", "a\r\nb")),
        RcptParameters(orcpt=("utf-8", "a\ud800")),
        RcptParameters(orcpt=("rfc822", "a" * 494)),
        RcptParameters(extra=(("X", "é"),)),
    ],
)
def test_format_rcpt_parameters_invalid(params: RcptParameters) -> None:
    with pytest.raises(LocalProtocolError):
        format_rcpt_parameters(params)


def test_format_rcpt_utf8_extra() -> None:
    assert format_rcpt_parameters(RcptParameters(extra=(("X", "é"),)), utf8=True) == "X=é"


# --- properties ---------------------------------------------------------------------

printable_ascii = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E))
addresses = st.text(
    alphabet=st.characters(min_codepoint=0x20, blacklist_categories=("Cs", "Cc")),
    min_size=1,
    max_size=40,
)


@given(
    size=st.none() | st.integers(min_value=0, max_value=10**19),
    body=st.none() | st.sampled_from(["7BIT", "8BITMIME", "BINARYMIME"]),
    smtputf8=st.booleans(),
    auth=st.none() | st.just("<>") | addresses,
    ret=st.none() | st.sampled_from(["FULL", "HDRS"]),
    envid=st.none() | printable_ascii.filter(lambda s: 1 <= len(s) <= 100),
    requiretls=st.booleans(),
)
def test_mail_parameters_round_trip(
    size: int | None,
    body: str | None,
    smtputf8: bool,
    auth: str | None,
    ret: str | None,
    envid: str | None,
    requiretls: bool,
) -> None:
    params = MailParameters(
        size=size,
        body=body,
        smtputf8=smtputf8,
        auth=auth,
        ret=ret,
        envid=envid,
        requiretls=requiretls,
    )
    text = format_mail_parameters(params)
    assert text.isascii()
    assert parse_mail_parameters(text, extensions=ALL) == params


@given(
    notify=st.none()
    | st.just(frozenset({"NEVER"}))
    | st.frozensets(st.sampled_from(["SUCCESS", "FAILURE", "DELAY"]), min_size=1),
    addr_type=st.sampled_from(["rfc822", "utf-8", "X-Foo"]),
    address=addresses,
)
def test_rcpt_parameters_round_trip(
    notify: frozenset[str] | None, addr_type: str, address: str
) -> None:
    params = RcptParameters(notify=notify, orcpt=(addr_type, address))
    text = format_rcpt_parameters(params)
    assert text.isascii()
    assert parse_rcpt_parameters(text, extensions=ALL) == params


@given(st.text(max_size=100), st.booleans())
def test_arbitrary_text_raises_only_parameter_error(text: str, utf8: bool) -> None:
    for call in (
        lambda: parse_parameters(text, utf8=utf8),
        lambda: parse_mail_parameters(text, extensions=ALL, max_size=1000),
        lambda: parse_mail_parameters(text, extensions=(), accept_unknown=["X"]),
        lambda: parse_rcpt_parameters(text, extensions=ALL, utf8=utf8),
        lambda: xtext_decode(text),
    ):
        try:
            call()
        except ParameterError as error:
            assert error.code in (501, 552, 555)
            assert "\r" not in error.text and "\n" not in error.text


keyword_values = st.from_regex(
    r"(SIZE|BODY|SMTPUTF8|AUTH|RET|ENVID|REQUIRETLS|NOTIFY|ORCPT)(=[\x21-\x3c\x3e-\x7e]{1,12})?",
    fullmatch=True,
)


@given(st.lists(keyword_values, max_size=5))
def test_known_keywords_with_arbitrary_values(tokens: list[str]) -> None:
    text = " ".join(tokens)
    for call in (
        lambda: parse_mail_parameters(text, extensions=ALL, max_size=1000),
        lambda: parse_rcpt_parameters(text, extensions=ALL),
    ):
        try:
            call()
        except ParameterError as error:
            assert error.code in (501, 552, 555)
