"""The streaming MIME scanner (mailagents/imap/_mime.py): offsets, sizes and line
counts per part (the figures are Dovecot 2.3's for the same messages, see
tests/interop/test_imap_structure_dovecot.py), chunking, limits, bounded memory,
serialisation, and trees made by the email package."""

from __future__ import annotations

import email.policy
import tracemalloc
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents._protocol import LocalProtocolError
from mailagents.imap._mime import (
    MimeLimits,
    MimeScanner,
    PartMap,
    PartMapError,
    merge_rfc2231,
    parse_content_type,
    scan_message,
    unfold,
)

CORPUS: dict[str, bytes] = {
    "simple": b"From: a@example.test\r\nSubject: hi\r\n\r\nline one\r\nline two\r\n",
    "bare_lf": b"From: a@example.test\nSubject: bare\n  folded\n\nline\n\nthree\n",
    "alternative": (
        b'Content-Type: multipart/alternative; boundary="XX"\r\n\r\npreamble\r\n--XX\r\n'
        b"Content-Type: text/plain\r\n\r\nh=C3=A9llo\r\n--XX\r\nContent-Type: text/html\r\n"
        b"\r\n<p>hi</p>\r\n\r\n--XX--\r\nepilogue\r\n"
    ),
    "nested": (
        b"Content-Type: multipart/mixed; boundary=outer\r\n\r\n--outer\r\n"
        b"Content-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\n"
        b"Content-Type: text/plain\r\n\r\nplain\r\n--inner--\r\n--outer\r\n"
        b"Content-Type: text/plain\r\n\r\nx\r\n--outer--\r\n"
    ),
    "inner_ends_at_outer": (
        b"Content-Type: multipart/mixed; boundary=outer\r\n\r\n--outer\r\n"
        b"Content-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\n"
        b"Content-Type: text/plain\r\n\r\nplain\r\n--outer\r\nContent-Type: text/plain\r\n"
        b"\r\nx\r\n--outer--\r\n"
    ),
    "rfc822": (
        b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain"
        b"\r\n\r\nsee below\r\n--zz\r\nContent-Type: message/rfc822\r\n\r\n"
        b"From: inner@example.test\r\nSubject: inner\r\n"
        b"Content-Type: multipart/alternative; boundary=yy\r\n\r\n--yy\r\n"
        b"Content-Type: text/plain\r\n\r\ninner text\r\n--yy--\r\n\r\n--zz--\r\n"
    ),
    "digest": (
        b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\n"
        b"From: one@example.test\r\n\r\nbody one\r\n--d\r\nContent-Type: text/plain\r\n\r\n"
        b"not a message\r\n--d--\r\n"
    ),
    "no_close": (
        b"Content-Type: multipart/mixed; boundary=nc\r\n\r\n--nc\r\nContent-Type: text/plain"
        b"\r\n\r\none\r\n--nc\r\n\r\ntwo\r\nmore"
    ),
    "ws_boundary": (
        b'Content-Type: multipart/mixed; boundary="w w"\r\n\r\n--w w  \r\n\r\na\r\n'
        b"--w w\t\r\n\r\nb\r\n--w w--  \r\nepi\r\n"
    ),
    "boundary_in_header": (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain"
        b"\r\nX-A: 1\r\n--b\r\n\r\ny\r\n--b--\r\n"
    ),
    "empty_parts": (
        b"Content-Type: multipart/mixed; boundary=e\r\n\r\n--e\r\n--e\r\n"
        b"Content-Type: text/plain\r\n\r\n--e\r\n\r\n\r\n--e--"
    ),
    "header_only": b"From: a@example.test\r\nSubject: no body",
    "no_final_newline": b"From: a@example.test\r\n\r\nlast line",
    "bare_lf_multipart": (
        b"Content-Type: multipart/mixed; boundary=q\n\n--q\nContent-Type: text/plain\n\n"
        b"a\nb\n--q\n\nc\n--q--\n"
    ),
    "dash_lines": (
        b"Content-Type: multipart/mixed; boundary=big\r\n\r\n--big\r\n\r\n--\r\n---\r\n"
        b"--bi\r\n-- big\r\n--bIg\r\n--big-ish\r\n\r\nsecond\r\n--big--\r\n"
    ),
}


def summary(pm: PartMap) -> list[tuple[int, int, int, int, int]]:
    """(depth, header size, header lines, body size, body lines) per part."""
    return [(p.depth, p.header_size, p.header_lines, p.body_size, p.body_lines) for p in pm.parts]


# Sizes and lines as Dovecot 2.3.19 reports them (header and body sizes checked with
# BODY[HEADER]/BODY[TEXT]/BODY[n]/BODY[n.MIME] against a running Dovecot).
EXPECTED = {
    "simple": [(0, 37, 3, 20, 2)],
    "bare_lf": [(0, 49, 4, 15, 3)],
    "alternative": [(0, 54, 2, 120, 12), (1, 28, 2, 10, 0), (1, 27, 2, 11, 1)],
    "nested": [(0, 49, 2, 170, 13), (1, 55, 2, 55, 5), (2, 28, 2, 5, 0), (1, 28, 2, 1, 0)],
    "inner_ends_at_outer": [
        (0, 49, 2, 159, 12),
        (1, 55, 2, 42, 3),
        (2, 28, 2, 5, 0),
        (1, 28, 2, 1, 0),
    ],
    "rfc822": [
        (0, 46, 2, 241, 18),
        (1, 28, 2, 9, 0),
        (1, 32, 2, 148, 9),
        (2, 94, 4, 54, 5),
        (3, 28, 2, 10, 0),
    ],
    "digest": [(0, 46, 2, 98, 10), (1, 2, 1, 34, 2), (2, 26, 2, 8, 0), (1, 28, 2, 13, 0)],
    "no_close": [(0, 46, 2, 56, 7), (1, 28, 2, 3, 0), (1, 2, 1, 9, 1)],
    "ws_boundary": [(0, 49, 2, 43, 8), (1, 2, 1, 1, 0), (1, 2, 1, 1, 0)],
    "boundary_in_header": [(0, 45, 2, 56, 7), (1, 32, 1, 0, 0), (1, 2, 1, 1, 0)],
    "empty_parts": [(0, 45, 2, 52, 7), (1, 0, 0, 0, 0), (1, 26, 1, 0, 0), (1, 2, 1, 0, 0)],
    "header_only": [(0, 38, 1, 0, 0)],
    "no_final_newline": [(0, 24, 2, 9, 0)],
    "bare_lf_multipart": [(0, 45, 2, 56, 9), (1, 28, 2, 4, 1), (1, 2, 1, 1, 0)],
}


def scan_bytewise(data: bytes, limits: MimeLimits | None = None) -> PartMap:
    scanner = MimeScanner(limits)
    for i in range(len(data)):
        scanner.feed(data[i : i + 1])
    return scanner.close()


@pytest.mark.parametrize("name", list(EXPECTED))
def test_sizes_and_lines(name: str) -> None:
    data = CORPUS[name]
    pm = scan_message(data)
    assert summary(pm) == EXPECTED[name]
    assert scan_bytewise(data) == pm


@pytest.mark.parametrize("name", list(CORPUS))
def test_offsets_are_consistent(name: str) -> None:
    data = CORPUS[name]
    pm = scan_message(data)
    crlf = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert pm.size == len(data) and pm.crlf_size == len(crlf)
    assert pm.has_bare_lf == (b"\n" in data.replace(b"\r\n", b""))
    for index, part in pm.walk():
        assert part.header_start <= part.body_start <= part.end <= pm.size
        # CRLF offsets are the stored ones with each bare LF before them counted twice.
        for stored, sent in (
            (part.header_start, part.header_start_crlf),
            (part.body_start, part.body_start_crlf),
            (part.end, part.end_crlf),
        ):
            before = data[:stored]
            assert sent == stored + before.count(b"\n") - before.count(b"\r\n")
        assert part.body_lines == data[part.body_start : part.end].count(b"\n")
        for child in part.children:
            assert pm.parts[child].parent == index
    # The same message stored with CRLF has the same CRLF figures.
    assert summary(scan_message(crlf)) == summary(pm)


def test_bare_lf_offsets() -> None:
    pm = scan_message(CORPUS["bare_lf"])
    root = pm.root
    assert (root.header_start, root.body_start, root.end) == (0, 45, 57)
    assert (root.header_start_crlf, root.body_start_crlf, root.end_crlf) == (0, 49, 64)


def test_fields_and_flags() -> None:
    pm = scan_message(CORPUS["rfc822"])
    root, text, message, embedded, inner = pm.parts
    assert root.is_multipart and root.is_mime
    assert root.field("Content-Type") == "multipart/mixed; boundary=zz"
    assert message.is_message and message.children == (3,)
    assert embedded.envelope[1] == "inner" and embedded.is_multipart
    assert text.envelope == () and inner.field("content-type") == "text/plain"
    # Digest: a part without Content-Type is a message.
    digest = scan_message(CORPUS["digest"])
    assert digest.parts[1].is_message and not digest.parts[3].is_message


def test_not_mime_ignores_content_fields() -> None:
    pm = scan_message(b"Content-Transfer-Encoding: base64\r\n\r\naGk=\r\n")
    assert not pm.root.is_mime and pm.root.field("content-transfer-encoding") is None
    pm = scan_message(b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n")
    assert pm.root.field("content-transfer-encoding") == "base64"


def test_longest_boundary_prefix_wins() -> None:
    data = (
        b"Content-Type: multipart/mixed; boundary=ab\r\n\r\n--ab\r\n"
        b"Content-Type: multipart/mixed; boundary=abc\r\n\r\n--abc\r\n\r\nx\r\n--abcd\r\n"
        b"\r\ny\r\n--ab--\r\n"
    )
    pm = scan_message(data)
    assert [p.depth for p in pm.parts] == [0, 1, 2, 2]


def test_dash_lines_are_content_unless_they_start_with_a_boundary() -> None:
    pm = scan_message(CORPUS["dash_lines"])
    first, second = (pm.parts[i] for i in pm.root.children)
    data = CORPUS["dash_lines"]
    assert data[first.body_start : first.end] == b"--\r\n---\r\n--bi\r\n-- big\r\n--bIg"
    assert data[second.body_start : second.end] == b"second"


def test_same_boundary_nested_innermost_first() -> None:
    data = (
        b"Content-Type: multipart/mixed; boundary=s\r\n\r\n--s\r\n"
        b"Content-Type: multipart/mixed; boundary=s\r\n\r\n--s\r\n\r\nx\r\n--s--\r\n"
        b"--s\r\n\r\ny\r\n--s--\r\n"
    )
    pm = scan_message(data)
    assert [p.depth for p in pm.parts] == [0, 1, 2, 1]


def test_header_limit_counts_but_does_not_keep() -> None:
    big = b"X-Big: " + b"y" * 5000 + b"\r\n"
    data = (
        b"Subject: s\r\n" + big * 3 + b"Content-Type: text/html\r\nMIME-Version: 1.0\r\n\r\nb\r\n"
    )
    limits = MimeLimits(max_header=1024)
    pm = scan_message(data, limits)
    assert pm.root.header_truncated
    assert pm.root.header_size == data.index(b"\r\n\r\n") + 4
    assert pm.root.envelope[1] == "s"
    assert scan_bytewise(data, limits) == pm
    assert not scan_message(data).root.header_truncated


def nested_message(depth: int) -> bytes:
    """Multiparts nested ``depth`` deep (boundaries ``=_i_=``, none a prefix of another)."""
    head = b"".join(
        b'--=_%d_=\r\nContent-Type: multipart/mixed; boundary="=_%d_="\r\n\r\n' % (i, i + 1)
        for i in range(depth)
    )
    tail = b"".join(b"\r\n--=_%d_=--" % i for i in range(depth, -1, -1))
    top = b'Content-Type: multipart/mixed; boundary="=_0_="\r\n\r\n'
    return top + head + b"--=_%d_=\r\n\r\nx" % depth + tail + b"\r\n"


def test_deep_nesting_is_bounded_without_recursion() -> None:
    data = nested_message(10_000)
    pm = scan_message(data)
    assert max(p.depth for p in pm.parts) == 99
    assert len(pm.parts) == 100
    deepest = pm.parts[-1]
    assert deepest.is_multipart and deepest.children == ()
    # Raised limit: 10,000 levels, still no recursion anywhere.
    deep = scan_message(data, MimeLimits(max_depth=20_000, max_parts=20_000))
    assert max(p.depth for p in deep.parts) == 10_001
    assert PartMap.from_bytes(deep.to_bytes()) == deep


def test_part_limit_leaves_the_rest_to_the_last_part() -> None:
    parts = b"".join(b"--p\r\n\r\npart %d\r\n" % i for i in range(12_000))
    data = b"Content-Type: multipart/mixed; boundary=p\r\n\r\n" + parts + b"--p--\r\n"
    pm = scan_message(data)
    assert len(pm.parts) == 10_000
    last = pm.parts[-1]
    assert last.end == len(data)
    assert data[last.body_start :].startswith(b"part 9998\r\n--p\r\n")
    ten_thousand = b"".join(b"--p\r\n\r\n%d\r\n" % i for i in range(9_999))
    exact = scan_message(b"Content-Type: multipart/mixed; boundary=p\r\n\r\n" + ten_thousand)
    assert len(exact.parts) == 10_000 and len(exact.root.children) == 9_999


def test_fifty_megabytes_in_bounded_memory() -> None:
    line = b"The quick brown fox jumps over the lazy dog, 0123456789 ------\r\n"
    block = line * 1024  # 64 KiB
    head = (
        b"Content-Type: multipart/mixed; boundary=big\r\n\r\n--big\r\n"
        b"Content-Type: text/plain\r\n\r\n"
    )
    scanner = MimeScanner()
    tracemalloc.start()
    try:
        scanner.feed(head)
        for _ in range(800):  # 50 MiB
            scanner.feed(block)
        scanner.feed(b"\r\n--big\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n--big--\r\n")
        pm = scanner.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    assert len(pm.parts) == 3
    assert pm.parts[1].body_size == 800 * len(block) + 2 - 2
    assert pm.parts[1].body_lines == 800 * 1024


def test_misuse() -> None:
    scanner = MimeScanner()
    scanner.close()
    with pytest.raises(LocalProtocolError):
        scanner.feed(b"x")
    with pytest.raises(LocalProtocolError):
        scanner.close()
    with pytest.raises(LocalProtocolError):
        MimeLimits(max_depth=0)


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(sorted(CORPUS)),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
def test_chunking_does_not_matter(name: str, cuts: list[int]) -> None:
    data = CORPUS[name]
    scanner = MimeScanner()
    previous = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        scanner.feed(data[previous:cut])
        previous = cut
    scanner.feed(data[previous:])
    assert scanner.close() == scan_message(data)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=1, max_value=50))
def test_any_octets_scan(data: bytes, step: int) -> None:
    prefix = b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n"
    message = prefix + data
    scanner = MimeScanner()
    for i in range(0, len(message), step):
        scanner.feed(message[i : i + step])
    pm = scanner.close()
    assert pm == scan_message(message)
    assert PartMap.from_bytes(pm.to_bytes()) == pm


# --- serialisation


@pytest.mark.parametrize("name", list(CORPUS))
def test_serialisation_round_trip(name: str) -> None:
    pm = scan_message(CORPUS[name])
    raw = pm.to_bytes()
    assert raw[3] == PartMap.VERSION
    assert PartMap.from_bytes(raw) == pm


def test_serialised_form_is_validated() -> None:
    raw = scan_message(CORPUS["rfc822"]).to_bytes()
    for cut in range(len(raw)):
        with pytest.raises(PartMapError):
            PartMap.from_bytes(raw[:cut])
    with pytest.raises(PartMapError):
        PartMap.from_bytes(raw[:3] + bytes([99]) + raw[4:])
    with pytest.raises(PartMapError):
        PartMap.from_bytes(raw + b"\x00")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=10_000))
def test_corrupt_serialised_form_is_refused(noise: bytes, where: int) -> None:
    raw = bytearray(scan_message(CORPUS["nested"]).to_bytes())
    where %= len(raw)
    raw[where : where + len(noise)] = noise
    try:
        pm = PartMap.from_bytes(bytes(raw))
    except PartMapError:
        return
    for part in pm.parts:
        assert part.header_start <= part.body_start <= part.end <= pm.size


# --- header values


def test_unfold() -> None:
    assert unfold(b"  a\r\n\tb  \r\n") == "a\tb  "
    assert unfold(b"\r\n <a@b>") == " <a@b>"
    assert unfold(b" \xe9") == "\udce9"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text/plain", ("text", "plain", [])),
        ('Text/HTML ; Charset="x\\"y"', ("Text", "HTML", [("Charset", 'x"y')])),
        ('text/plain (c); a=1; (c) b = "2"', ("text", "plain", [("a", "1"), ("b", "2")])),
        ("text", ("text", "", [])),
        ("text/", ("", "", [])),
        ("foo bar; x=", ("", "", [])),
        ("", ("", "", [])),
        ("text/plain; charset", ("text", "plain", [])),
        ("a/b; e=", ("a", "b", [("e", "")])),
    ],
)
def test_parse_content_type(value: str, expected: tuple[str, str, list[Any]]) -> None:
    assert parse_content_type(value) == expected


def test_parse_content_type_none() -> None:
    assert parse_content_type(None) is None


@pytest.mark.parametrize(
    ("params", "merged"),
    [
        # RFC 2231 §4.1's example: joined, kept encoded, the plain segment appended.
        (
            [("title*0*", "us-ascii'en'This%20is"), ("title*1*", "%2A"), ("title*2", "it!")],
            [("title*", "us-ascii'en'This%20is%2Ait!")],
        ),
        ([("a*1", "one"), ("a*0", "zero")], [("a", "zeroone")]),
        ([("b*0*", "x"), ("b*2", "y")], [("b*0*", "x"), ("b*2", "y")]),
        ([("n*", "utf-8''%41"), ("CHARSET", "x")], [("CHARSET", "x"), ("n*", "utf-8''%41")]),
        ([("t*0", "50%"), ("t*1*", "%41")], [("t*", "''50%25%41")]),
        ([("x*y", "1")], [("x*y", "1")]),
    ],
)
def test_merge_rfc2231(params: list[tuple[str, str]], merged: list[tuple[str, str]]) -> None:
    assert merge_rfc2231(params) == merged


# --- trees made by the email package


@st.composite
def mime_trees(draw: st.DrawFn, depth: int = 0) -> EmailMessage:
    message = EmailMessage(policy=email.policy.SMTP)
    kind = draw(
        st.sampled_from(["text", "bytes", "multipart", "rfc822"] if depth < 3 else ["text"])
    )
    if kind == "text":
        text = draw(st.text(alphabet="abc xyz\n-", max_size=40))
        message.set_content(text, subtype=draw(st.sampled_from(["plain", "html"])))
    elif kind == "bytes":
        message.set_content(draw(st.binary(max_size=60)), "application", "octet-stream")
    elif kind == "rfc822":
        inner = draw(mime_trees(depth + 1))
        inner["Subject"] = "inner"
        message.set_content(inner)
    else:
        subtype = draw(st.sampled_from(["mixed", "alternative", "related"]))
        count = draw(st.integers(min_value=1, max_value=3))
        message["Content-Type"] = f"multipart/{subtype}"
        for _ in range(count):
            message.attach(draw(mime_trees(depth + 1)))
    return message


def shape(message: EmailMessage) -> list[tuple[int, str]]:
    """(depth, content type) in pre-order, message/rfc822 holding its message."""
    out: list[tuple[int, str]] = []
    stack: list[tuple[int, Any]] = [(0, message)]
    while stack:
        depth, part = stack.pop()
        out.append((depth, part.get_content_type()))
        if part.is_multipart():
            payload = part.get_payload()
            if part.get_content_type() == "message/rfc822":
                stack.append((depth + 1, payload[0]))
                continue
            for child in reversed(payload):
                stack.append((depth + 1, child))
    return out


@settings(max_examples=100, deadline=None)
@given(mime_trees())
def test_email_package_trees(message: EmailMessage) -> None:
    data = message.as_bytes()
    pm = scan_message(data)
    ours = []
    for part in pm.parts:
        parsed = parse_content_type(part.field("content-type"))
        if parsed is None:
            kind = "message/rfc822" if part.is_message else "text/plain"
        else:
            kind = f"{parsed[0]}/{parsed[1]}".lower()
        ours.append((part.depth, kind))
    assert ours == shape(message)
    # Each leaf's body is what the email package wrote for it.
    leaves = [p for p in pm.parts if not p.children and not p.is_multipart]
    written = [m for m in message.walk() if not m.is_multipart()]
    for part, original in zip(leaves, written, strict=True):
        body = data[part.body_start : part.end]
        payload = original.get_payload(decode=False)
        assert (
            body.replace(b"\r\n", b"\n").strip()
            == payload.encode("ascii").replace(b"\r\n", b"\n").strip()
        )
