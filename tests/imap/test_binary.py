"""BINARY decoding (mailagents/imap/_binary.py): the streaming decoders against the
standard library's, whatever the chunking; unknown encodings; BINARY[part] and
BINARY.SIZE through a part map. (The interop test compares BINARY[1], [2], [1.1] and
BINARY.SIZE of 40 messages with Dovecot's.)"""

from __future__ import annotations

import base64
import binascii
import quopri

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents.imap._binary import (
    Base64Decoder,
    BinaryDecoder,
    IdentityDecoder,
    QuotedPrintableDecoder,
    UnknownEncoding,
    binary_decoder,
    binary_size,
    iter_binary,
)
from mailagents.imap._mime import scan_message


def decode(decoder: BinaryDecoder, data: bytes, cuts: list[int]) -> bytes:
    out = bytearray()
    previous = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        out += decoder.feed(data[previous:cut])
        previous = cut
    out += decoder.feed(data[previous:])
    out += decoder.close()
    return bytes(out)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=500), st.lists(st.integers(min_value=0, max_value=1000), max_size=10))
def test_base64_any_chunking(payload: bytes, cuts: list[int]) -> None:
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    assert decode(Base64Decoder(), encoded, cuts) == payload


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=500), st.lists(st.integers(min_value=0, max_value=1000), max_size=10))
def test_quoted_printable_any_chunking(payload: bytes, cuts: list[int]) -> None:
    # Binary content: CR and LF are escaped, so the decoding must give them back.
    encoded = binascii.b2a_qp(payload, istext=False).replace(b"\n", b"\r\n")
    assert decode(QuotedPrintableDecoder(), encoded, cuts) == payload


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet="ab \t=\xe9\n", max_size=200),
    st.lists(st.integers(min_value=0, max_value=1000), max_size=10),
)
def test_quoted_printable_text_keeps_crlf(text: str, cuts: list[int]) -> None:
    payload = text.encode("utf-8").replace(b"\n", b"\r\n")
    encoded = quopri.encodestring(payload.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
    expected = quopri.decodestring(encoded.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
    assert decode(QuotedPrintableDecoder(), encoded, cuts) == expected


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        (b"a=3Db=\r\nc\r\n", b"a=bc\r\n"),  # soft line break
        (b"trailing  \t\r\nx", b"trailing\r\nx"),  # RFC 2045 §6.7 rule 3
        (b"bad =ZZ and =4", b"bad =ZZ and =4"),  # broken escapes kept
        (b"lf only=\nx\n", b"lf onlyx\r\n"),
        (b"=e9t=E9", b"\xe9t\xe9"),
    ],
)
def test_quoted_printable_rules(encoded: bytes, decoded: bytes) -> None:
    assert decode(QuotedPrintableDecoder(), encoded, []) == decoded


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        (b"aGk=\r\n", b"hi"),
        (b"aG\r\n k=", b"hi"),
        (b"aGk", b"hi"),  # unpadded last group
        (b"aGk=ignored", b"hi"),  # nothing after the padding
        (b"a*G!k=", b"hi"),  # non-alphabet characters skipped
        (b"", b""),
    ],
)
def test_base64_rules(encoded: bytes, decoded: bytes) -> None:
    assert decode(Base64Decoder(), encoded, []) == decoded


def test_quoted_printable_long_line_is_bounded() -> None:
    decoder = QuotedPrintableDecoder(max_line=1000)
    out = bytearray()
    for _ in range(100):
        out += decoder.feed(b"x=41" * 100)
        assert len(decoder._line) <= 1000 + 400
    out += decoder.close()
    assert bytes(out) == b"xA" * 10_000


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, IdentityDecoder),
        ("7bit", IdentityDecoder),
        ("8BIT", IdentityDecoder),
        ("Binary", IdentityDecoder),
        ("base64", Base64Decoder),
        ("BASE64 (comment)", Base64Decoder),
        (" Quoted-Printable", QuotedPrintableDecoder),
    ],
)
def test_decoder_choice(value: str | None, kind: type) -> None:
    assert isinstance(binary_decoder(value), kind)


def test_unknown_encoding() -> None:
    assert binary_decoder("x-uuencode") == UnknownEncoding(encoding="x-uuencode")


MESSAGE = (
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(bytes(range(256))).replace(b"\n", b"\r\n")
    + b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"caf=C3=A9 =\r\nau lait\r\n"
    b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\nplain\nwith bare LF\n"
    b"--b--\r\n"
)


def read(start: int, length: int) -> bytes:
    return MESSAGE[start : start + length]


def binary(
    part: tuple[int, ...], partial: tuple[int, int] | None = None
) -> bytes | UnknownEncoding | None:
    chunks = iter_binary(scan_message(MESSAGE), part, read, partial=partial, chunk_size=7)
    if chunks is None or isinstance(chunks, UnknownEncoding):
        return chunks
    return b"".join(chunks)


def test_binary_parts() -> None:
    pm = scan_message(MESSAGE)
    assert binary((1,)) == bytes(range(256))
    assert binary((2,)) == "café au lait".encode()
    assert binary((3,)) == UnknownEncoding(encoding="x-uuencode")
    assert binary((4,)) == b"plain\r\nwith bare LF"
    assert binary((5,)) is None
    assert binary(()) == MESSAGE.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    for part in [(1,), (2,), (4,), ()]:
        expected = binary(part)
        assert isinstance(expected, bytes)
        assert binary_size(pm, part, read) == len(expected)
    assert binary_size(pm, (3,), read) == UnknownEncoding(encoding="x-uuencode")
    assert binary_size(pm, (9,), read) is None


@settings(max_examples=100, deadline=None)
@given(
    origin=st.integers(min_value=0, max_value=300), count=st.integers(min_value=1, max_value=300)
)
def test_binary_partial_counts_decoded_octets(origin: int, count: int) -> None:
    assert binary((1,), (origin, count)) == bytes(range(256))[origin : origin + count]


def test_composite_parts_are_sent_as_they_are() -> None:
    data = (
        b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n"
        b"Content-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n\r\nx\r\n--i--\r\n"
        b"--o\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"Subject: s\r\n\r\nb\r\n--o--\r\n"
    )
    pm = scan_message(data)

    def get(start: int, length: int) -> bytes:
        return data[start : start + length]

    chunks = iter_binary(pm, (1,), get)
    assert not isinstance(chunks, UnknownEncoding) and chunks is not None
    assert b"".join(chunks) == b"--i\r\n\r\nx\r\n--i--\r\n"
    assert iter_binary(pm, (2,), get) == UnknownEncoding(encoding="base64")


def test_not_binascii_errors() -> None:
    # Whatever the input, decoding ends without an exception.
    for junk in (b"====", b"A", b"AB=C", b"\x00\xff", b"A===B"):
        try:
            decode(Base64Decoder(), junk, [1])
        except binascii.Error:  # pragma: no cover - the assertion below reports it
            pytest.fail(f"binascii.Error on {junk!r}")


@settings(max_examples=200, deadline=None)
@given(
    body=st.binary(max_size=300),
    encoding=st.sampled_from(["base64", "quoted-printable", "7bit", "x-unknown"]),
    part=st.lists(st.integers(min_value=1, max_value=3), max_size=3),
)
def test_any_message_any_part(body: bytes, encoding: str, part: list[int]) -> None:
    """Whatever the message, BINARY is octets, UnknownEncoding or None, and
    BINARY.SIZE agrees with it."""
    data = (
        b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n"
        b"Content-Transfer-Encoding: " + encoding.encode() + b"\r\n\r\n" + body
    )
    pm = scan_message(data)

    def get(start: int, length: int) -> bytes:
        return data[start : start + length]

    chunks = iter_binary(pm, tuple(part), get)
    size = binary_size(pm, tuple(part), get)
    if chunks is None or isinstance(chunks, UnknownEncoding):
        assert size == chunks
        return
    assert size == len(b"".join(chunks))
