"""Body sections (mailagents/imap/_sections.py): RFC 9051 §6.4.5's own example of part
numbers, HEADER.FIELDS, partial ranges in CRLF octets, bare LF sent as CRLF, and reads
bounded to what is needed. (The interop test compares 11 sections of 40 messages with
Dovecot's.)"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents.imap._fetch_items import Section
from mailagents.imap._mime import MimeLimits, MimeScanner, PartMap, scan_message
from mailagents.imap._sections import (
    crlf_to_stored,
    iter_crlf,
    locate_part,
    locate_section,
    section_octets,
    section_size,
    stored_to_crlf,
)


def leaf(ctype: str, name: str) -> bytes:
    return b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + name.encode() + b"\r\n"


def multipart(subtype: str, boundary: str, *parts: bytes, header: bytes = b"") -> bytes:
    b = boundary.encode()
    body = b"".join(b"--" + b + b"\r\n" + p for p in parts) + b"--" + b + b"--\r\n"
    return (
        header
        + b"Content-Type: multipart/"
        + subtype.encode()
        + b"; boundary="
        + b
        + b"\r\n\r\n"
        + body
    )


def rfc822(inner: bytes) -> bytes:
    return b"Content-Type: message/rfc822\r\n\r\n" + inner


# RFC 9051 §6.4.5: the example's structure, each leaf's body naming its part.
INNER3 = multipart(
    "mixed",
    "c3",
    leaf("text/plain", "3.1"),
    leaf("application/octet-stream", "3.2"),
    header=b"Subject: three\r\n",
)
INNER42 = multipart(
    "mixed",
    "c42",
    leaf("text/plain", "4.2.1"),
    multipart(
        "alternative", "c422", leaf("text/plain", "4.2.2.1"), leaf("text/richtext", "4.2.2.2")
    ),
    header=b"Subject: four two\r\n",
)
MESSAGE = multipart(
    "mixed",
    "top",
    leaf("text/plain", "1"),
    leaf("application/octet-stream", "2"),
    rfc822(INNER3),
    multipart("mixed", "c4", leaf("image/gif", "4.1"), rfc822(INNER42)),
    header=b"From: a@example.test\r\nSubject: example\r\nTo: b@example.test\r\n",
)


def reader(data: bytes, log: list[tuple[int, int]] | None = None):  # type: ignore[no-untyped-def]
    def read(start: int, length: int) -> bytes:
        if log is not None:
            log.append((start, length))
        return data[start : start + length]

    return read


def get(
    section: Section, data: bytes = MESSAGE, partial: tuple[int, int] | None = None
) -> bytes | None:
    return section_octets(scan_message(data), section, reader(data), partial=partial)


@pytest.mark.parametrize(
    "part", [(1,), (2,), (3, 1), (3, 2), (4, 1), (4, 2, 1), (4, 2, 2, 1), (4, 2, 2, 2)]
)
def test_leaf_parts(part: tuple[int, ...]) -> None:
    name = ".".join(map(str, part))
    assert get(Section(part=part)) == name.encode()


def test_rfc9051_example_sections() -> None:
    header = MESSAGE[: MESSAGE.index(b"\r\n\r\n") + 4]
    assert get(Section(text="HEADER")) == header
    assert get(Section()) == MESSAGE
    assert get(Section(text="TEXT")) == MESSAGE[len(header) :]
    assert get(Section(part=(3,))) == INNER3  # the embedded message, whole
    assert (
        get(Section(part=(3,), text="HEADER"))
        == b"Subject: three\r\nContent-Type: multipart/mixed; boundary=c3\r\n\r\n"
    )
    assert get(Section(part=(3,), text="TEXT")) == INNER3[INNER3.index(b"\r\n\r\n") + 4 :]
    assert get(Section(part=(3,), text="MIME")) == b"Content-Type: message/rfc822\r\n\r\n"
    assert get(Section(part=(4, 1), text="MIME")) == b"Content-Type: image/gif\r\n\r\n"
    assert get(Section(part=(4, 2), text="HEADER")) == INNER42[: INNER42.index(b"\r\n\r\n") + 4]
    four = get(Section(part=(4,)))
    # Its close delimiter's line end is its own: the next line is a boundary line.
    assert four is not None and four.startswith(b"--c4\r\n") and four.endswith(b"--c4--\r\n")
    # HEADER and TEXT only go with the message or a message/rfc822 part.
    assert get(Section(part=(1,), text="HEADER")) is None
    assert get(Section(part=(4,), text="TEXT")) is None
    # No such parts.
    for part in [(5,), (3, 3), (4, 3), (4, 2, 2, 3), (2, 2)]:
        assert get(Section(part=part)) is None, part
        assert locate_part(scan_message(MESSAGE), part) is None


def test_leaf_is_its_own_part_one() -> None:
    assert get(Section(part=(1, 1))) == b"1"
    assert get(Section(part=(4, 1, 1))) == b"4.1"


def test_single_part_message() -> None:
    data = b"Subject: s\r\n\r\nbody\r\n"
    assert get(Section(part=(1,)), data) == b"body\r\n"
    assert get(Section(part=(1,), text="MIME"), data) == b"Subject: s\r\n\r\n"
    assert get(Section(part=(2,)), data) is None
    assert get(Section(part=(1, 1)), data) is None


def test_message_rfc822_at_top() -> None:
    data = b"Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\nhello\r\n"
    assert get(Section(part=(1,)), data) == b"Subject: in\r\n\r\nhello\r\n"
    assert get(Section(part=(1, 1)), data) == b"hello\r\n"
    assert get(Section(part=(1,), text="HEADER"), data) == b"Subject: in\r\n\r\n"


def test_childless_multipart_has_an_empty_part_one() -> None:
    data = b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nhi\r\n--x--\r\n"
    assert get(Section(part=(1,)), data) == b""
    assert get(Section(part=(1,), text="MIME"), data) == b""
    assert get(Section(part=(2,)), data) is None


HEADER = (
    b"From: a@example.test\r\nSubject: one\r\n two\r\nX-Other: x\r\nsubject: again\r\n"
    b"Received: r\r\n\tmore\r\n\r\nbody\r\n"
)


def test_header_fields() -> None:
    fields = Section(text="HEADER.FIELDS", fields=("SUBJECT", "Received"))
    assert (
        get(fields, HEADER)
        == b"Subject: one\r\n two\r\nsubject: again\r\nReceived: r\r\n\tmore\r\n\r\n"
    )
    other = Section(text="HEADER.FIELDS.NOT", fields=("subject", "received"))
    assert get(other, HEADER) == b"From: a@example.test\r\nX-Other: x\r\n\r\n"
    none = Section(text="HEADER.FIELDS", fields=("Cc",))
    assert get(none, HEADER) == b"\r\n"
    pm = scan_message(HEADER)
    assert section_size(pm, fields, reader(HEADER)) == len(get(fields, HEADER) or b"")


def test_header_fields_of_an_embedded_message() -> None:
    fields = Section(part=(4, 2), text="HEADER.FIELDS", fields=("subject",))
    assert get(fields) == b"Subject: four two\r\n\r\n"


def test_header_fields_long_lines_stream() -> None:
    long = b"X-Long: " + b"y" * 200_000 + b"\r\n"
    data = b"Subject: s\r\n" + long + b"To: t\r\n\r\nb"
    assert get(Section(text="HEADER.FIELDS", fields=("x-long",)), data) == long + b"\r\n"
    assert (
        get(Section(text="HEADER.FIELDS.NOT", fields=("x-long",)), data)
        == b"Subject: s\r\nTo: t\r\n\r\n"
    )


def lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


SECTIONS = [
    Section(),
    Section(text="HEADER"),
    Section(text="TEXT"),
    Section(part=(3,)),
    Section(part=(4, 2), text="TEXT"),
    Section(part=(4, 1), text="MIME"),
    Section(part=(4, 2, 2, 2)),
    Section(text="HEADER.FIELDS", fields=("to", "from")),
]


@pytest.mark.parametrize("section", SECTIONS, ids=str)
def test_bare_lf_is_sent_as_crlf(section: Section) -> None:
    assert get(section, lf(MESSAGE)) == get(section, MESSAGE)
    pm = scan_message(lf(MESSAGE))
    assert section_size(pm, section, reader(lf(MESSAGE))) == len(get(section, MESSAGE) or b"")


@settings(max_examples=200, deadline=None)
@given(
    section=st.sampled_from(SECTIONS),
    bare=st.booleans(),
    origin=st.integers(min_value=0, max_value=700),
    count=st.integers(min_value=1, max_value=700),
)
def test_partial_counts_crlf_octets(section: Section, bare: bool, origin: int, count: int) -> None:
    whole = get(section)
    assert whole is not None
    data = lf(MESSAGE) if bare else MESSAGE
    assert get(section, data, partial=(origin, count)) == whole[origin : origin + count]


def test_partial_reads_only_the_range() -> None:
    pm = scan_message(MESSAGE)
    log: list[tuple[int, int]] = []
    span = locate_section(pm, Section(part=(4,)))
    assert span is not None
    out = section_octets(pm, Section(part=(4,)), reader(MESSAGE, log), partial=(10, 20))
    assert out == MESSAGE[span.start + 10 : span.start + 30]
    assert log == [(span.start + 10, 20)]


def test_reads_are_chunked() -> None:
    big = b"Subject: big\r\n\r\n" + b"line\n" * 100_000
    pm = scan_message(big)
    log: list[tuple[int, int]] = []
    chunks = list(iter_crlf(reader(big, log), 0, len(big), chunk_size=4096))
    assert b"".join(chunks) == big.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert len(b"".join(chunks)) == pm.crlf_size
    assert max(length for _, length in log) <= 4096


def test_crlf_split_across_chunks_is_not_doubled() -> None:
    data = b"a\r\nb\nc\r\n"
    for size in range(1, 5):
        for start in range(len(data)):
            out = b"".join(iter_crlf(reader(data), start, len(data), chunk_size=size))
            expected = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            assert out == expected[len(expected) - len(out) :]
            assert out.count(b"\r\r") == 0


@settings(max_examples=200, deadline=None)
@given(
    body=st.binary(max_size=300),
    lf_only=st.booleans(),
    part=st.lists(st.integers(min_value=1, max_value=3), max_size=3),
    text=st.sampled_from([None, "HEADER", "TEXT", "MIME", "HEADER.FIELDS", "HEADER.FIELDS.NOT"]),
    partial=st.none() | st.tuples(st.integers(0, 400), st.integers(1, 400)),
)
def test_any_message_any_section(
    body: bytes,
    lf_only: bool,
    part: list[int],
    text: str | None,
    partial: tuple[int, int] | None,
) -> None:
    """Whatever the message, a section is octets or None, its size is its length,
    and a partial range is a slice of it."""
    data = b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n" + body
    if lf_only:
        data = data.replace(b"\r\n", b"\n")
    if text == "MIME" and not part:
        part = [1]
    fields = ("subject", "content-type") if text and text.startswith("HEADER.FIELDS") else ()
    section = Section(part=tuple(part), text=text, fields=fields)  # type: ignore[arg-type]
    pm = scan_message(data)
    whole = section_octets(pm, section, reader(data))
    if whole is None:
        assert section_size(pm, section, reader(data)) is None
        return
    assert b"\n" not in whole.replace(b"\r\n", b"")
    assert section_size(pm, section, reader(data)) == len(whole)
    if partial is not None:
        origin, count = partial
        assert get(section, data, partial) == whole[origin : origin + count]


def brute_crlf(data: bytes, stored: int) -> int:
    before = data[:stored]
    return stored + before.count(b"\n") - before.count(b"\r\n")


MIXED_ENDINGS = b"Subject: m\n\n" + b"".join(
    (b"line %d\r\n" if i % 3 else b"line %d\n") % i for i in range(300)
)


def test_checkpoints_translate_offsets() -> None:
    limits = MimeLimits(checkpoint_every=100)
    pm = scan_message(MIXED_ENDINGS, limits)
    assert len(pm.checkpoints) == len(MIXED_ENDINGS) // 100
    for stored, crlf in pm.checkpoints:
        assert crlf == brute_crlf(MIXED_ENDINGS, stored)
    read = reader(MIXED_ENDINGS)
    for stored in range(len(MIXED_ENDINGS) + 1):
        crlf = stored_to_crlf(pm, read, stored)
        assert crlf == brute_crlf(MIXED_ENDINGS, stored)
        assert crlf_to_stored(pm, read, crlf) == stored
    # The CR added to a bare LF maps to that LF.
    first_lf = MIXED_ENDINGS.index(b"\n")
    assert crlf_to_stored(pm, read, first_lf + 1) == first_lf
    assert PartMap.from_bytes(pm.to_bytes()) == pm
    # Chunking does not move them.
    scanner = MimeScanner(limits)
    for i in range(0, len(MIXED_ENDINGS), 37):
        scanner.feed(MIXED_ENDINGS[i : i + 37])
    assert scanner.close() == pm


def test_no_checkpoints_without_bare_lf() -> None:
    data = MIXED_ENDINGS.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    pm = scan_message(data, MimeLimits(checkpoint_every=100))
    assert pm.checkpoints == ()
    assert stored_to_crlf(pm, reader(data), 500) == 500
    assert crlf_to_stored(pm, reader(data), 500) == 500


def test_partial_of_a_bare_lf_message_starts_at_a_checkpoint() -> None:
    pm = scan_message(MIXED_ENDINGS, MimeLimits(checkpoint_every=100))
    log: list[tuple[int, int]] = []
    whole = MIXED_ENDINGS.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    out = section_octets(pm, Section(), reader(MIXED_ENDINGS, log), partial=(2000, 40))
    assert out == whole[2000:2040]
    assert min(start for start, _ in log) >= crlf_to_stored(pm, reader(MIXED_ENDINGS), 2000) - 101
