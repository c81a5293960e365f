"""RFC 4978's DEFLATE codec (mailagents/aio/_codec.py): raw DEFLATE both ways, each
write sync-flushed (decodable at once), bounded decoding (a small input that inflates
to a lot comes out a bounded piece at a time), and any input either decodes or raises
CodecError."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents.aio._codec import Codec, CodecError, DeflateCodec


def client_pair() -> tuple[zlib._Compress, zlib._Decompress]:
    """What a client uses (RFC 4978: raw DEFLATE, windowBits -15)."""
    return zlib.compressobj(6, zlib.DEFLATED, -15), zlib.decompressobj(-15)


def drain(codec: DeflateCodec, size: int = 1 << 16) -> bytes:
    out = []
    while chunk := codec.read(size):
        out.append(chunk)
    return b"".join(out)


def test_is_a_codec() -> None:
    codec: Codec = DeflateCodec()
    assert codec.read(10) == b""


def test_every_write_is_decodable_at_once() -> None:
    server = DeflateCodec()
    _, inflate = client_pair()
    for line in (b"* OK [CAPABILITY IMAP4rev2] ready\r\n", b"a1 OK done\r\n", b"x" * 100_000):
        wire = server.encode(line)
        # A sync flush ends with the empty stored block.
        assert wire.endswith(b"\x00\x00\xff\xff")
        assert inflate.decompress(wire) == line  # nothing held back


def test_raw_deflate_without_zlib_header() -> None:
    wire = DeflateCodec().encode(b"* OK ready\r\n")
    with pytest.raises(zlib.error):
        zlib.decompressobj(15).decompress(wire)  # not the zlib format (RFC 1950)


def test_client_input_decoded_whole_and_byte_by_byte() -> None:
    deflate, _ = client_pair()
    commands = [b"a1 NOOP\r\n", b"a2 SELECT INBOX\r\n", b"a3 IDLE\r\n", b"DONE\r\n"]
    wire = b"".join(deflate.compress(c) + deflate.flush(zlib.Z_SYNC_FLUSH) for c in commands)
    whole = DeflateCodec()
    whole.feed(wire)
    assert drain(whole) == b"".join(commands)
    one = DeflateCodec()
    out = b""
    for n in range(len(wire)):
        one.feed(wire[n : n + 1])
        out += drain(one)
    assert out == b"".join(commands)
    assert one.pending == 0


def test_partial_flush_from_the_client_is_returned_at_once() -> None:
    # Some clients flush with Z_PARTIAL_FLUSH (RFC 4978 allows it): still decoded.
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    codec = DeflateCodec()
    codec.feed(deflate.compress(b"a1 NOOP\r\n") + deflate.flush(zlib.Z_PARTIAL_FLUSH))
    assert drain(codec) == b"a1 NOOP\r\n"


def test_a_zip_bomb_comes_out_a_bounded_piece_at_a_time() -> None:
    deflate, _ = client_pair()
    bomb = deflate.compress(b"\0" * (64 << 20)) + deflate.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < 100_000
    codec = DeflateCodec()
    codec.feed(bomb)
    total = 0
    for _ in range(10):
        piece = codec.read(4096)
        assert 0 < len(piece) <= 4096
        total += len(piece)
    assert total == 40960
    assert codec.pending > 0  # the rest is still compressed, not inflated


def test_held_input_is_bounded() -> None:
    codec = DeflateCodec(max_input=10)
    codec.feed(b"x" * 10)
    with pytest.raises(CodecError):
        codec.feed(b"y")


def test_corrupt_input_raises_codec_error() -> None:
    codec = DeflateCodec()
    codec.feed(b"\xff\xff\xff\xff garbage")
    with pytest.raises(CodecError):
        drain(codec)


def test_data_after_the_end_of_the_stream() -> None:
    deflate, _ = client_pair()
    ended = deflate.compress(b"a1 LOGOUT\r\n") + deflate.flush(zlib.Z_FINISH)
    codec = DeflateCodec()
    codec.feed(ended)
    assert drain(codec) == b"a1 LOGOUT\r\n"
    assert codec.read(10) == b""  # the end itself is fine
    codec.feed(b"more")
    with pytest.raises(CodecError):
        codec.read(10)


def test_arguments() -> None:
    with pytest.raises(ValueError):
        DeflateCodec(level=10)
    with pytest.raises(ValueError):
        DeflateCodec(max_input=0)
    with pytest.raises(ValueError):
        DeflateCodec().read(0)
    DeflateCodec().feed(b"")  # nothing to hold


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=2000), max_size=8), st.integers(1, 5000))
def test_roundtrip_any_split(pieces: list[bytes], size: int) -> None:
    sender, receiver = DeflateCodec(level=1), DeflateCodec()
    wire = b"".join(sender.encode(p) for p in pieces if p)
    out = b""
    for n in range(0, len(wire), 7):
        receiver.feed(wire[n : n + 7])
        out += drain(receiver, size)
    assert out == b"".join(pieces)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 64))
def test_any_input_decodes_or_raises_codec_error(data: bytes, size: int) -> None:
    codec = DeflateCodec()
    try:
        codec.feed(data)
        while codec.read(size):
            pass
    except CodecError:
        pass
