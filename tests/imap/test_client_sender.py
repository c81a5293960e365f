"""Tests of the IMAP client's sender: frames onto the wire, synchronising literals held
until the server's ``+`` (RFC 9051 §4.3, §7.5; RFC 7888 LITERAL+)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents._protocol import LocalProtocolError
from mailagents.imap._client_sender import LiteralWanted, Sender
from mailagents.imap._frame import Frame, Streamed


def sender() -> tuple[Sender, bytearray]:
    out = bytearray()
    return Sender(out), out


def take(out: bytearray) -> bytes:
    data = bytes(out)
    out.clear()
    return data


def test_a_frame_without_literals_goes_at_once() -> None:
    s, out = sender()
    s.add("A1", Frame(lines=(b"A1 NOOP",)))
    assert take(out) == b"A1 NOOP\r\n"
    assert s.idle and s.waiting is None and s.wanted is None


def test_a_synchronising_literal_waits_for_the_continuation() -> None:
    s, out = sender()
    frame = Frame(lines=(b"A1 LOGIN {5}", b" {3}", b""), literals=(b"alice", b"p\rw"))
    s.add("A1", frame)
    assert take(out) == b"A1 LOGIN {5}\r\n"
    assert s.waiting == "A1" and not s.idle
    s.go_ahead()
    assert take(out) == b"alice {3}\r\n"
    assert s.waiting == "A1"
    s.go_ahead()
    assert take(out) == b"p\rw\r\n"
    assert s.idle and s.waiting is None


def test_later_commands_wait_behind_a_held_literal() -> None:
    s, out = sender()
    s.add("A1", Frame(lines=(b"A1 SELECT {3}", b""), literals=(b"a b",)))
    s.add("A2", Frame(lines=(b"A2 NOOP",)))
    assert take(out) == b"A1 SELECT {3}\r\n"
    assert s.pending("A2")
    s.go_ahead()
    assert take(out) == b"a b\r\nA2 NOOP\r\n"
    assert s.idle


def test_non_synchronising_literals_go_at_once() -> None:
    s, out = sender()
    frame = Frame(lines=(b"A1 LOGIN {5+}", b" ~{2+}", b""), literals=(b"alice", b"\x00x"))
    s.add("A1", frame)
    assert take(out) == b"A1 LOGIN {5+}\r\nalice ~{2+}\r\n\x00x\r\n"
    assert s.idle


def test_a_tagged_answer_instead_of_the_continuation_drops_the_rest() -> None:
    s, out = sender()
    s.add("A1", Frame(lines=(b"A1 APPEND INBOX {99}", b""), literals=(b"x" * 99,)))
    s.add("A2", Frame(lines=(b"A2 NOOP",)))
    assert take(out) == b"A1 APPEND INBOX {99}\r\n"
    assert s.finished("A1") is True
    assert take(out) == b"A2 NOOP\r\n"
    assert s.finished("A2") is False  # wholly sent: nothing dropped
    assert s.finished("Z9") is False


def test_go_ahead_without_a_held_literal_is_misuse() -> None:
    s, _ = sender()
    with pytest.raises(LocalProtocolError):
        s.go_ahead()
    s.add("A1", Frame(lines=(b"A1 NOOP",)))
    with pytest.raises(LocalProtocolError):
        s.go_ahead()


def test_a_line_without_an_announcement_is_refused() -> None:
    s, _ = sender()
    with pytest.raises(LocalProtocolError):
        s.add("A1", Frame(lines=(b"A1 LOGIN x", b""), literals=(b"y",)))


def test_a_streamed_literal_is_asked_of_the_caller() -> None:
    s, out = sender()
    frame = Frame(lines=(b"A1 APPEND INBOX {10}", b""), literals=(Streamed(size=10),))
    s.add("A1", frame)
    s.add("A2", Frame(lines=(b"A2 NOOP",)))
    assert take(out) == b"A1 APPEND INBOX {10}\r\n"
    assert s.wanted is None
    s.go_ahead()
    assert s.wanted == LiteralWanted(tag="A1", remaining=10)
    assert s.waiting is None
    s.literal_data(b"12345")
    assert s.wanted == LiteralWanted(tag="A1", remaining=5)
    with pytest.raises(LocalProtocolError):
        s.literal_data(b"123456")
    s.literal_data(b"67890")
    assert take(out) == b"1234567890\r\nA2 NOOP\r\n"
    assert s.wanted is None and s.idle
    with pytest.raises(LocalProtocolError):
        s.literal_data(b"x")


def test_an_empty_streamed_literal_needs_no_data() -> None:
    s, out = sender()
    s.add("A1", Frame(lines=(b"A1 APPEND INBOX {0+}", b""), literals=(Streamed(size=0),)))
    assert take(out) == b"A1 APPEND INBOX {0+}\r\n\r\n"
    assert s.idle


def test_an_answer_during_a_streamed_literal_still_takes_its_octets() -> None:
    s, out = sender()
    frame = Frame(lines=(b"A1 APPEND INBOX {4+}", b" {1}", b""), literals=(Streamed(size=4), b"x"))
    s.add("A1", frame)
    s.add("A2", Frame(lines=(b"A2 NOOP",)))
    assert take(out) == b"A1 APPEND INBOX {4+}\r\n"
    assert s.finished("A1") is True
    assert s.wanted == LiteralWanted(tag="A1", remaining=4)
    s.literal_data(b"abcd")
    assert take(out) == b"abcd\r\nA2 NOOP\r\n"
    assert s.idle


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.binary(max_size=12), st.booleans()),
        max_size=4,
    )
)
def test_whatever_the_literals_the_wire_is_the_frame(parts: list[tuple[bytes, bool]]) -> None:
    lines = [b"A1 X"]
    literals: list[bytes | Streamed] = []
    for data, plus in parts:
        lines[-1] += b"{%d%s}" % (len(data), b"+" if plus else b"")
        literals.append(data)
        lines.append(b" y")
    frame = Frame(lines=tuple(lines), literals=tuple(literals))
    s, out = sender()
    s.add("A1", frame)
    while not s.idle:
        assert s.waiting == "A1"
        s.go_ahead()
    assert bytes(out) == frame.to_bytes()
