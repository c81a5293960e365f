"""BODY and BODYSTRUCTURE from a part map (mailagents/imap/_bodystructure.py).

The expected texts are Dovecot 2.3.19's answers for the same messages (rendered here
with every string quoted; the interop test tests/interop/test_imap_structure_dovecot.py
checks them against a running Dovecot), except ``params_2231``, where Dovecot names
``c*=''x`` ``c*2*`` (a bug we do not copy, see KEPT_DIFFERENCES there).
"""

from __future__ import annotations

import pytest

from mailagents.imap._body_model import (
    Address,
    Body,
    Envelope,
    MultipartBody,
    Parameters,
    SinglePartBody,
)
from mailagents.imap._bodystructure import (
    body_structure,
    empty_text_part,
    parse_disposition,
    parse_language,
)
from mailagents.imap._envelope import envelope_from_fields
from mailagents.imap._fetch_data import FetchData
from mailagents.imap._mime import MimeLimits, scan_message
from mailagents.imap._response_parser import parse_response
from mailagents.imap._response_writer import write_response

from .mime_corpus import MESSAGES


def quote(text: str | None) -> str:
    if text is None:
        return "NIL"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def params(p: Parameters) -> str:
    return "(" + " ".join(f"{quote(k)} {quote(v)}" for k, v in p) + ")" if p else "NIL"


def addresses(items: tuple[Address, ...] | None) -> str:
    if not items:
        return "NIL"
    return (
        "("
        + "".join(
            f"({quote(x.name)} {quote(x.adl)} {quote(x.mailbox)} {quote(x.host)})" for x in items
        )
        + ")"
    )


def envelope(e: Envelope) -> str:
    parts = [quote(e.date), quote(e.subject)]
    parts += [addresses(x) for x in (e.from_, e.sender, e.reply_to, e.to, e.cc, e.bcc)]
    return "(" + " ".join([*parts, quote(e.in_reply_to), quote(e.message_id)]) + ")"


def extension(body: SinglePartBody | MultipartBody) -> str:
    d = body.disposition
    disposition = "NIL" if d is None else f"({quote(d[0])} {params(d[1])})"
    language = "NIL" if body.language is None else "(" + " ".join(map(quote, body.language)) + ")"
    return f"{disposition} {language} {quote(body.location)}"


def render(body: Body) -> str:
    if isinstance(body, MultipartBody):
        out = "(" + "".join(render(p) for p in body.parts) + " " + quote(body.subtype)
        if body.extended:
            out += f" {params(body.params)} {extension(body)}"
        return out + ")"
    fields = [quote(body.type), quote(body.subtype), params(body.params), quote(body.id)]
    fields += [quote(body.description), quote(body.encoding), str(body.size)]
    if body.envelope is not None and body.body is not None:
        fields += [envelope(body.envelope), render(body.body), str(body.lines)]
    elif body.lines is not None:
        fields.append(str(body.lines))
    if body.extended:
        fields += [quote(body.md5), extension(body)]
    return "(" + " ".join(fields) + ")"


CASES: dict[str, tuple[bytes, str]] = {
    "simple": (
        MESSAGES["simple"],
        ('("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 20 2 NIL NIL NIL NIL)'),
    ),
    "alt": (
        MESSAGES["alt"],
        (
            '(("text" "plain" ("charset" "UTF-8") NIL NIL "quoted-printable" 10 0 NIL NIL NI'
            'L NIL)("text" "html" ("charset" "utf-8") NIL NIL "7bit" 11 1 NIL NIL NIL NIL) "'
            'alternative" ("boundary" "XX") NIL NIL NIL)'
        ),
    ),
    "mixed": (
        MESSAGES["mixed"],
        (
            '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 14 0 NIL NIL NIL NIL)("a'
            'pplication" "octet-stream" ("name" "f.bin") "<c1@x>" "a file" "base64" 4 "Q2hlY'
            '2sgSW50ZWdyaXR5IQ==" ("attachment" ("filename" "f.bin" "size" "3")) ("en" "de")'
            ' "http://example.test/f") "Mixed" ("Boundary" "b1") NIL NIL NIL)'
        ),
    ),
    "nested": (
        MESSAGES["nested"],
        (
            '((("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0 NIL NIL NIL NIL)(("'
            'text" "html" ("charset" "us-ascii") NIL NIL "7bit" 8 0 NIL NIL NIL NIL)("image"'
            ' "png" NIL NIL NIL "base64" 8 NIL NIL NIL NIL) "related" ("boundary" "in2" "typ'
            'e" "text/html") NIL NIL NIL) "alternative" ("boundary" "inner") NIL NIL NIL)("t'
            'ext" "plain" ("charset" "iso-8859-1") NIL NIL "8bit" 3 0 NIL NIL NIL NIL) "mixe'
            'd" ("boundary" "outer") NIL NIL NIL)'
        ),
    ),
    "rfc822": (
        MESSAGES["rfc822"],
        (
            '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 9 0 NIL NIL NIL NIL)("me'
            'ssage" "rfc822" NIL NIL NIL "7bit" 253 ("Tue, 1 Dec 2026 00:00:00 +0100" "inner'
            '" ((NIL NIL "inner" "example.test")) ((NIL NIL "inner" "example.test")) ((NIL N'
            'IL "inner" "example.test")) ((NIL NIL "x" "example.test")) NIL NIL NIL NIL) (("'
            'text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 0 NIL NIL NIL NIL)("text'
            '" "html" ("charset" "us-ascii") NIL NIL "7bit" 12 0 NIL NIL NIL NIL) "alternati'
            've" ("boundary" "yy") NIL NIL NIL) 15 NIL NIL NIL NIL) "mixed" ("boundary" "zz"'
            ") NIL NIL NIL)"
        ),
    ),
    "digest": (
        MESSAGES["digest"],
        (
            '(("message" "rfc822" NIL NIL NIL "7bit" 48 (NIL "one" ((NIL NIL "one" "example.'
            'test")) ((NIL NIL "one" "example.test")) ((NIL NIL "one" "example.test")) NIL N'
            'IL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 8 0 NIL N'
            'IL NIL NIL) 3 NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "7'
            'bit" 13 0 NIL NIL NIL NIL)("message" "rfc822" NIL NIL NIL "7bit" 34 (NIL NIL (('
            'NIL NIL "two" "example.test")) ((NIL NIL "two" "example.test")) ((NIL NIL "two"'
            ' "example.test")) NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") N'
            'IL NIL "7bit" 8 0 NIL NIL NIL NIL) 2 NIL NIL NIL NIL) "digest" ("boundary" "d")'
            " NIL NIL NIL)"
        ),
    ),
    "rfc2231": (
        MESSAGES["rfc2231"],
        (
            '(("application" "x-stuff" ("title*" "us-ascii\'en\'This%20is%20even%20more%20%2'
            'A%2A%2Afun%2A%2A%2A%20isn\'t it!") NIL NIL "7bit" 4 NIL ("attachment" ("filenam'
            'e*" "UTF-8\'\'%C3%A9t%C3%A9.txt")) NIL NIL)("text" "plain" ("CHARSET" "US-ASCII'
            '" "name*" "iso-8859-1\'\'%E9t%E9") NIL NIL "7bit" 1 0 NIL NIL NIL NIL) "mixed" '
            '("boundary" "q") NIL NIL NIL)'
        ),
    ),
    "no_close": (
        MESSAGES["no_close"],
        (
            '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0 NIL NIL NIL NIL)("te'
            'xt" "plain" ("charset" "us-ascii") NIL NIL "7bit" 9 1 NIL NIL NIL NIL) "mixed" '
            '("boundary" "nc") NIL NIL NIL)'
        ),
    ),
    "bad_ct": (
        MESSAGES["bad_ct"],
        ('("text" "" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL)'),
    ),
    "bad_ct2": (
        MESSAGES["bad_ct2"],
        ('("" "" NIL NIL NIL "X-Weird" 6 NIL NIL NIL NIL)'),
    ),
    "top_rfc822": (
        MESSAGES["top_rfc822"],
        (
            '("message" "rfc822" NIL NIL NIL "7bit" 50 (NIL "embedded" ((NIL NIL "b" "exampl'
            'e.test")) ((NIL NIL "b" "example.test")) ((NIL NIL "b" "example.test")) NIL NIL'
            ' NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 7 1 NIL NIL'
            " NIL NIL) 4 NIL NIL NIL NIL)"
        ),
    ),
    "params_case": (
        MESSAGES["params_case"],
        (
            '("TEXT" "Plain" ("CharSet" "ISO-8859-1" "Format" "Flowed") NIL NIL "QUOTED-PRIN'
            'TABLE" 7 2 NIL ("INLINE" NIL) NIL NIL)'
        ),
    ),
    "mp_noboundary": (
        MESSAGES["mp_noboundary"],
        (
            '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mi'
            'xed" NIL NIL NIL NIL)'
        ),
    ),
    "cte_only": (
        MESSAGES["cte_only"],
        ('("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL)'),
    ),
    "ct_comment": (
        MESSAGES["ct_comment"],
        (
            '("text" "plain" ("charset" "x\\"y" "name" "a b" "e" "") NIL NIL "7bit" 6 1 NIL '
            '("Attachment" NIL) ("EN") " http://x/  y")'
        ),
    ),
    "md5_lang": (
        MESSAGES["md5_lang"],
        (
            '("text" "plain" ("charset" "us-ascii") "<x> " "é desc" "7bit" 3 1 "abc " NIL ("'
            'en-US" "fr") NIL)'
        ),
    ),
    "params_2231": (
        MESSAGES["params_2231"],
        (
            '("application" "x" ("Name" "N" "a" "zeroone" "b*0*" "utf-8\'\'%41" "b*2" "x" "c'
            '*" "\'\'x") NIL NIL "7bit" 3 NIL NIL NIL NIL)'
        ),
    ),
    "empty_ct": (
        MESSAGES["empty_ct"],
        ('("" "" NIL NIL NIL "7bit" 3 NIL NIL NIL NIL)'),
    ),
    "text_no_charset": (
        MESSAGES["text_no_charset"],
        (
            '("text" "plain" ("format" "flowed" "delsp" "yes" "charset" "us-ascii") NIL NIL '
            '"base64" 6 1 NIL NIL NIL NIL)'
        ),
    ),
    "disp_params": (
        MESSAGES["disp_params"],
        (
            '("image" "gif" NIL NIL NIL "7bit" 5 NIL ("inline" ("filename" "a.gif" "creation'
            '-date" "Wed, 12 Feb 1997 16:29:51 -0500")) ("en") NIL)'
        ),
    ),
    "bare_lf": (
        MESSAGES["bare_lf"],
        ('("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 15 3 NIL NIL NIL NIL)'),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bodystructure(name: str) -> None:
    data, expected = CASES[name]
    assert render(body_structure(scan_message(data), extended=True)) == expected


@pytest.mark.parametrize("name", ["simple", "alt", "nested", "rfc822", "bad_ct2"])
def test_body_leaves_out_the_extension_data(name: str) -> None:
    data, _ = CASES[name]
    pm = scan_message(data)
    body = body_structure(pm, extended=False)
    stack: list[Body] = [body]
    while stack:
        node = stack.pop()
        assert not node.extended
        if isinstance(node, MultipartBody):
            assert node.params == () and node.disposition is None
            stack.extend(node.parts)
        else:
            assert node.md5 is None and node.disposition is None and node.location is None
            if node.body is not None:
                stack.append(node.body)


def test_fields_of_one_part() -> None:
    data, _ = CASES["mixed"]
    body = body_structure(scan_message(data), extended=True)
    assert isinstance(body, MultipartBody) and body.subtype == "Mixed"
    attachment = body.parts[1]
    assert attachment == SinglePartBody(
        type="application",
        subtype="octet-stream",
        params=(("name", "f.bin"),),
        id="<c1@x>",
        description="a file",
        encoding="base64",
        size=4,
        extended=True,
        md5="Q2hlY2sgSW50ZWdyaXR5IQ==",
        disposition=("attachment", (("filename", "f.bin"), ("size", "3"))),
        language=("en", "de"),
        location="http://example.test/f",
    )


def test_embedded_message_of_part() -> None:
    data, _ = CASES["rfc822"]
    pm = scan_message(data)
    embedded = pm.parts[2].children[0]
    inner = body_structure(pm, extended=False, index=embedded)
    assert isinstance(inner, MultipartBody) and inner.subtype == "alternative"
    with pytest.raises(IndexError):
        body_structure(pm, extended=False, index=len(pm.parts))


def test_childless_multipart_shows_an_empty_part() -> None:
    data, _ = CASES["mp_noboundary"]
    body = body_structure(scan_message(data), extended=False)
    assert isinstance(body, MultipartBody)
    assert body.parts == (empty_text_part(extended=False),)


def test_deep_nesting_without_recursion() -> None:
    depth = 3_000
    head = b"".join(
        b'--=_%d_=\r\nContent-Type: multipart/mixed; boundary="=_%d_="\r\n\r\n' % (i, i + 1)
        for i in range(depth)
    )
    data = b'Content-Type: multipart/mixed; boundary="=_0_="\r\n\r\n' + head + b"x"
    pm = scan_message(data, MimeLimits(max_depth=depth + 10, max_parts=depth + 10))
    body = body_structure(pm, extended=True)
    levels = 0
    node: Body = body
    while isinstance(node, MultipartBody):
        levels += 1
        node = node.parts[0]
    assert levels == depth + 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("INLINE", ("INLINE", ())),
        (
            'attachment; filename="a b"; size=3',
            ("attachment", (("filename", "a b"), ("size", "3"))),
        ),
        ("", None),
        ("attachment; filename*=UTF-8''%C3%A9", ("attachment", (("filename*", "UTF-8''%C3%A9"),))),
    ],
)
def test_parse_disposition(value: str | None, expected: object) -> None:
    assert parse_disposition(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("en", ("en",)),
        ("en-US , fr", ("en-US", "fr")),
        ("(c) en", ("en",)),
        ("", None),
    ],
)
def test_parse_language(value: str | None, expected: object) -> None:
    assert parse_language(value) == expected


@pytest.mark.parametrize("name", list(CASES))
def test_written_and_read_back_by_the_responses_code(name: str) -> None:
    """Our values go through the FETCH response writer and parser unchanged."""
    pm = scan_message(CASES[name][0])
    fetch = FetchData(
        number=1,
        envelope=envelope_from_fields(pm.root.envelope),
        body=body_structure(pm, extended=False),
        bodystructure=body_structure(pm, extended=True),
    )
    assert parse_response(write_response(fetch)) == fetch
