"""Dovecot's ENVELOPE, BODYSTRUCTURE and BODY against ours, message by message.

A Maildir holds a corpus of messages of varied MIME structure (and broken ones);
Dovecot serves it over IMAP, imaplib fetches ``(ENVELOPE BODYSTRUCTURE BODY)`` and a
few body sections of each, and we compute the same from the octets with
``mailagents.imap._mime`` / ``_envelope`` / ``_bodystructure`` / ``_sections``.

Both sides are compared twice: as text (ours rendered by :func:`render_body` /
:func:`render_envelope` below, every string quoted; Dovecot's literals turned into
quoted strings, the only normalisation) and as objects (Dovecot's response read by our
responses parser, ``parse_response``, against our ``Envelope``/``Body`` values). The
differences we keep on purpose are in ``KEPT_DIFFERENCES``, each with its reason: the
test replaces Dovecot's text there by ours, so everything else must still match.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailagents.imap._binary import UnknownEncoding, binary_size, iter_binary
from mailagents.imap._body_model import Address, Body, Envelope, MultipartBody, Parameters
from mailagents.imap._bodystructure import body_structure
from mailagents.imap._envelope import envelope_from_fields
from mailagents.imap._fetch_data import FetchData
from mailagents.imap._fetch_items import Section
from mailagents.imap._frame import Frame
from mailagents.imap._mime import PartMap, scan_message
from mailagents.imap._response_parser import parse_response
from mailagents.imap._responses import Response
from mailagents.imap._sections import section_octets

from ..imap.mime_corpus import MESSAGES
from .peers import mail_tree, running_dovecot

pytestmark = pytest.mark.interop


KEPT_DIFFERENCES: dict[str, list[tuple[str, str, str]]] = {
    # name: [(what Dovecot writes, what we write, why)]
    "global": [
        (
            '("message" "global" NIL NIL NIL "7bit" 39 NIL NIL NIL NIL)',
            '("message" "global" NIL NIL NIL "7bit" 39 (NIL "é" '
            '((NIL NIL "é" "example.test")) ((NIL NIL "é" "example.test")) '
            '((NIL NIL "é" "example.test")) NIL NIL NIL NIL NIL) '
            '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 1 0 NIL NIL NIL NIL) 3 '
            "NIL NIL NIL NIL)",
            "RFC 9051 §7.5.2 gives message/global the envelope, body and lines of "
            "message/rfc822 (RFC 6532 §3.5); Dovecot 2.3 treats it as an opaque part",
        ),
        (
            '("message" "global" NIL NIL NIL "7bit" 39)',
            '("message" "global" NIL NIL NIL "7bit" 39 (NIL "é" '
            '((NIL NIL "é" "example.test")) ((NIL NIL "é" "example.test")) '
            '((NIL NIL "é" "example.test")) NIL NIL NIL NIL NIL) '
            '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 1 0) 3)',
            "the same, in BODY",
        ),
    ],
    "params_2231": [
        (
            '"c*2*" "\'\'x"',
            '"c*" "\'\'x"',
            "Dovecot 2.3.19 names a lone extended parameter after the index of the "
            "group before it when that group had a gap (c*=''x after b*0*, b*2); "
            "c*=''x is a complete RFC 2231 parameter and keeps its name",
        ),
    ],
}

KEPT_SECTION_DIFFERENCES: dict[tuple[str, str], tuple[str, str]] = {
    # (name, section): (what we send, why)
    ("global", "1.1"): (
        "x",
        "message/global is a message for us (see KEPT_DIFFERENCES): 1.1 is the body "
        "of the embedded message, where Dovecot has the opaque part itself",
    ),
    ("global", "BINARY 1.1"): ("1 b'x'", "the same, for BINARY"),
    ("nested", "BINARY 1"): (
        "265 b'--inner\\r\\nContent-Type: text/plain\\r\\n\\r\\nplain\\r\\n--inner\\r\\n"
        'Content-Type: multipart/related; boundary="in2"; type="text/html"\\r\\n\\r\\n'
        "--in2\\r\\nContent-Type: text/html\\r\\n\\r\\n<b>x</b>\\r\\n--in2\\r\\n"
        "Content-Type: image/png\\r\\nContent-Transfer-Encoding: base64\\r\\n\\r\\n"
        "iVBORw0K\\r\\n--in2--\\r\\n--inner--\\r\\n'",
        "BINARY of a multipart: we send it as it is (RFC 3516 §4.2 defines decoding for "
        "the part's own encoding only); Dovecot decodes the parts inside and rewrites "
        "their Content-Transfer-Encoding to binary",
    ),
    ("repeated_fields", "BINARY 1"): (
        "0 b''",
        "two Content-Transfer-Encoding fields (base64, then 8bit): we decode with the "
        "first, the one BODYSTRUCTURE shows (ours and Dovecot's); Dovecot's BINARY sends "
        "the body as it is",
    ),
    ("cte_only", "BINARY 1"): (
        "6 b'aGk=\\r\\n'",
        "a message without MIME-Version or Content-Type is not MIME (RFC 2045 §4), so "
        "its Content-Transfer-Encoding does not count: 7bit, as both our and Dovecot's "
        "BODYSTRUCTURE say; Dovecot's BINARY decodes it anyway",
    ),
}

SECTIONS = [
    "HEADER",
    "TEXT",
    "1",
    "1.MIME",
    "2",
    "2.MIME",
    "1.1",
    "2.HEADER",
    "2.TEXT",
    "HEADER.FIELDS (FROM SUBJECT)",
    "2.1.MIME",
]


def quote(text: str | None) -> str:
    if text is None:
        return "NIL"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_params(params: Parameters) -> str:
    if not params:
        return "NIL"
    return "(" + " ".join(f"{quote(k)} {quote(v)}" for k, v in params) + ")"


def render_addresses(addresses: tuple[Address, ...] | None) -> str:
    if not addresses:
        return "NIL"
    return (
        "("
        + "".join(
            f"({quote(a.name)} {quote(a.adl)} {quote(a.mailbox)} {quote(a.host)})"
            for a in addresses
        )
        + ")"
    )


def render_envelope(e: Envelope) -> str:
    fields = [quote(e.date), quote(e.subject)]
    fields += [render_addresses(x) for x in (e.from_, e.sender, e.reply_to, e.to, e.cc, e.bcc)]
    fields += [quote(e.in_reply_to), quote(e.message_id)]
    return "(" + " ".join(fields) + ")"


def _disposition(d: tuple[str, Parameters] | None) -> str:
    return "NIL" if d is None else f"({quote(d[0])} {render_params(d[1])})"


def _language(tags: tuple[str, ...] | None) -> str:
    return "NIL" if tags is None else "(" + " ".join(quote(t) for t in tags) + ")"


def render_body(body: Body) -> str:
    """The wire form of a body, every string quoted (the test corpus is shallow)."""
    if isinstance(body, MultipartBody):
        out = "(" + "".join(render_body(p) for p in body.parts) + " " + quote(body.subtype)
        if body.extended:
            out += f" {render_params(body.params)} {_disposition(body.disposition)}"
            out += f" {_language(body.language)} {quote(body.location)}"
        return out + ")"
    fields = [quote(body.type), quote(body.subtype), render_params(body.params)]
    fields += [quote(body.id), quote(body.description), quote(body.encoding), str(body.size)]
    if body.envelope is not None and body.body is not None:
        fields += [render_envelope(body.envelope), render_body(body.body), str(body.lines)]
    elif body.lines is not None:
        fields.append(str(body.lines))
    if body.extended:
        fields += [quote(body.md5), _disposition(body.disposition)]
        fields += [_language(body.language), quote(body.location)]
    return "(" + " ".join(fields) + ")"


def ours(data: bytes) -> str:
    pm = scan_message(data)
    envelope = render_envelope(envelope_from_fields(pm.root.envelope))
    structure = render_body(body_structure(pm, extended=True))
    body = render_body(body_structure(pm, extended=False))
    return f"ENVELOPE {envelope} BODYSTRUCTURE {structure} BODY {body}"


_LITERAL = re.compile(rb"\{(\d+)\}$")


def flatten(data: list[bytes | tuple[bytes, bytes]]) -> bytes:
    """imaplib's pieces of one FETCH response as one line, literals quoted."""
    out = bytearray()
    for piece in data:
        if isinstance(piece, tuple):
            head, literal = piece
            match = _LITERAL.search(head)
            assert match is not None and int(match.group(1)) == len(literal)
            out += head[: match.start()]
            out += b'"' + literal.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        else:
            out += piece
    return bytes(out)


def as_frame(data: list[bytes | tuple[bytes, bytes]]) -> Frame:
    """imaplib's pieces of one FETCH response as the Frame our parser reads."""
    lines: list[bytes] = []
    literals: list[bytes] = []
    for piece in data:
        if isinstance(piece, tuple):
            lines.append(piece[0])
            literals.append(piece[1])
        else:
            lines.append(piece)
    if len(lines) == len(literals):
        lines.append(b"")
    # imaplib hands on "n (...)": the response was "* n FETCH (...)".
    lines[0] = b"* " + lines[0].replace(b" ", b" FETCH ", 1)
    return Frame(lines=tuple(lines), literals=tuple(literals))


PARSED: dict[str, Response] = {}
"""Dovecot's ``(ENVELOPE BODYSTRUCTURE BODY)`` of each message, read by our responses
parser (filled by the ``served`` fixture)."""


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, str]]:
    """Dovecot's ``(ENVELOPE BODYSTRUCTURE BODY)`` of each message of the corpus."""
    tree = mail_tree()
    maildir = tree / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    names = list(MESSAGES)
    for i, name in enumerate(names):
        Path(maildir / "cur" / f"{1000 + i}.M{i}P1.test:2,S").write_bytes(MESSAGES[name])
    results: dict[str, str] = {}
    parsed = PARSED
    with running_dovecot(maildir) as dovecot:
        client = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
        client.login(dovecot.user, dovecot.password)
        client.select("INBOX")
        for i, name in enumerate(names, 1):
            typ, data = client.fetch(str(i), "(ENVELOPE BODYSTRUCTURE BODY)")
            assert typ == "OK"
            line = flatten(data).decode("utf-8", "surrogateescape")
            prefix = f"{i} ("
            assert line.startswith(prefix) and line.endswith(")")
            results[name] = line[len(prefix) : -1]
            if name not in KEPT_DIFFERENCES:
                # Dovecot writes message/global as a basic part, which RFC 9051 §9's
                # body-type-msg (and so our parser) does not allow.
                parsed[name] = parse_response(as_frame(data))
            for spec in SECTIONS:
                typ, data = client.fetch(str(i), f"(BODY.PEEK[{spec}])")
                assert typ == "OK"
                pieces = [p for p in data if isinstance(p, tuple)]
                if pieces:
                    results[f"{name} {spec}"] = pieces[0][1].decode("latin-1")
                else:
                    raw = flatten(data).decode("latin-1")
                    assert raw.endswith(' ""') or raw.endswith(' "")'), raw
                    results[f"{name} {spec}"] = ""
            for spec, (origin, count) in PARTIALS:
                typ, data = client.fetch(str(i), f"(BODY.PEEK[{spec}]<{origin}.{count}>)")
                assert typ == "OK"
                pieces = [p for p in data if isinstance(p, tuple)]
                text = pieces[0][1].decode("latin-1") if pieces else ""
                results[f"{name} {spec}<{origin}.{count}>"] = text
            for spec in BINARY_PARTS:
                typ, data = client.fetch(str(i), f"(BINARY.PEEK[{spec}] BINARY.SIZE[{spec}])")
                if typ != "OK":
                    text = b" ".join(p for p in data if isinstance(p, bytes))
                    assert b"UNKNOWN-CTE" in text, text
                    results[f"{name} BINARY {spec}"] = "UNKNOWN-CTE"
                    continue
                pieces = [p for p in data if isinstance(p, tuple)]
                content = pieces[0][1] if pieces else b""
                size = re.search(rb"BINARY\.SIZE\[[0-9.]*\] (\d+)", flatten(data))
                assert size is not None, data
                results[f"{name} BINARY {spec}"] = f"{int(size.group(1))} {content!r}"
        client.logout()
    yield results


@pytest.mark.parametrize("name", list(MESSAGES))
def test_structure_matches_dovecot(served: dict[str, str], name: str) -> None:
    theirs = served[name]
    for dovecot_text, our_text, _why in KEPT_DIFFERENCES.get(name, []):
        assert dovecot_text in theirs, f"kept difference no longer seen: {dovecot_text}"
        theirs = theirs.replace(dovecot_text, our_text)
    assert ours(MESSAGES[name]) == theirs


@pytest.mark.parametrize("name", [n for n in MESSAGES if n not in KEPT_DIFFERENCES])
def test_parsed_structure_equals_ours(served: dict[str, str], name: str) -> None:
    """The same comparison as objects: Dovecot's response read by parse_response
    equals the Envelope and Body objects we compute (the messages with kept
    differences are compared as text above)."""
    fetch = PARSED[name]
    assert isinstance(fetch, FetchData)
    pm = scan_message(MESSAGES[name])
    assert fetch.envelope == envelope_from_fields(pm.root.envelope)
    assert fetch.bodystructure == body_structure(pm, extended=True)
    assert fetch.body == body_structure(pm, extended=False)


@pytest.mark.parametrize("name", list(MESSAGES))
def test_sections_match_dovecot(served: dict[str, str], name: str) -> None:
    data = MESSAGES[name]
    pm: PartMap = scan_message(data)

    def read(start: int, length: int) -> bytes:
        return data[start : start + length]

    for spec in SECTIONS:
        theirs = served[f"{name} {spec}"]
        if (name, spec) in KEPT_SECTION_DIFFERENCES:
            theirs = KEPT_SECTION_DIFFERENCES[name, spec][0]
        section = parse_section(spec)
        octets = section_octets(pm, section, read)
        # A section that does not exist: Dovecot sends an empty string.
        mine = "" if octets is None else octets.decode("latin-1")
        assert mine == theirs, spec


BINARY_PARTS = ["1", "2", "1.1"]
PARTIALS = [("", (10, 50)), ("TEXT", (3, 20)), ("1", (0, 5)), ("HEADER", (30, 1000))]


@pytest.mark.parametrize("name", list(MESSAGES))
def test_partial_matches_dovecot(served: dict[str, str], name: str) -> None:
    data = MESSAGES[name]
    pm = scan_message(data)

    def read(start: int, length: int) -> bytes:
        return data[start : start + length]

    for spec, partial in PARTIALS:
        theirs = served[f"{name} {spec}<{partial[0]}.{partial[1]}>"]
        octets = section_octets(pm, parse_section(spec), read, partial=partial)
        mine = "" if octets is None else octets.decode("latin-1")
        if (name, f"{spec}<{partial[0]}.{partial[1]}>") in KEPT_SECTION_DIFFERENCES:
            theirs = KEPT_SECTION_DIFFERENCES[name, f"{spec}<{partial[0]}.{partial[1]}>"][0]
        assert mine == theirs, (spec, partial)


@pytest.mark.parametrize("name", list(MESSAGES))
def test_binary_matches_dovecot(served: dict[str, str], name: str) -> None:
    data = MESSAGES[name]
    pm = scan_message(data)

    def read(start: int, length: int) -> bytes:
        return data[start : start + length]

    for spec in BINARY_PARTS:
        theirs = served[f"{name} BINARY {spec}"]
        numbers = tuple(int(n) for n in spec.split("."))
        chunks = iter_binary(pm, numbers, read)
        if isinstance(chunks, UnknownEncoding):
            mine = "UNKNOWN-CTE"
        else:
            content = b"" if chunks is None else b"".join(chunks)
            size = binary_size(pm, numbers, read)
            assert not isinstance(size, UnknownEncoding)
            mine = f"{size or 0} {content!r}"
        if (name, f"BINARY {spec}") in KEPT_SECTION_DIFFERENCES:
            theirs = KEPT_SECTION_DIFFERENCES[name, f"BINARY {spec}"][0]
        assert mine == theirs, spec


def parse_section(spec: str) -> Section:
    """``1.2.HEADER.FIELDS (A B)`` as a Section (enough for SECTIONS)."""
    fields: tuple[str, ...] = ()
    if " (" in spec:
        spec, names = spec.split(" (")
        fields = tuple(names.rstrip(")").split())
    numbers: list[int] = []
    rest = spec.split(".")
    while rest and rest[0].isdigit():
        numbers.append(int(rest.pop(0)))
    text = ".".join(rest) or None
    return Section(part=tuple(numbers), text=text, fields=fields)  # type: ignore[arg-type]
