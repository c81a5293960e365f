"""The shared delivery interface: messages spooled as they arrive, spliced headers, and
per-recipient results (mailagents.delivery)."""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents.delivery import (
    HEADER_LIMIT,
    Message,
    MessageSpool,
    RecipientResult,
    all_delivered,
)
from mailagents.smtp import Mailbox, Path, Recipient, Reply


def header_end(message: bytes) -> int:
    """The reference: the offset of the empty line, 0 if first, the end if none."""
    if message.startswith(b"\r\n"):
        return 0
    end = message.find(b"\r\n\r\n")
    return len(message) if end < 0 else end + 2


def spooled(message: bytes, cuts: list[int], memory_limit: int = 1 << 20) -> Message:
    spool = MessageSpool(memory_limit=memory_limit)
    last = 0
    for cut in sorted(c % (len(message) + 1) for c in cuts):
        spool.write(message[last:cut])
        last = max(last, cut)
    spool.write(message[last:])
    return spool.finish()


MESSAGES = [
    b"",
    b"\r\nbody only\r\n",
    b"Subject: x\r\n\r\nbody\r\n",
    b"Subject: x\r\nFrom: a@b\r\n\r\n\r\nbody\r\n\r\n",
    b"Subject: no body\r\n",
    b"Subject: unterminated",
    b"A: 1\r\n\r\n",
]


@pytest.mark.parametrize("message", MESSAGES)
@pytest.mark.parametrize("memory_limit", [0, 5, 1 << 20])
def test_header_end_and_content(message: bytes, memory_limit: int) -> None:
    with spooled(message, [], memory_limit) as m:
        assert m.read() == message
        assert m.size == len(message)
        assert m.header_end == header_end(message)
        assert m.header == message[: m.header_end]
        assert m.in_memory == (len(message) <= memory_limit)


@given(st.lists(st.sampled_from([b"Subject: x", b"\r\n", b"\r", b"\n", b"body", b":"]),
                max_size=30),
       st.lists(st.integers(min_value=0, max_value=400), max_size=10),
       st.sampled_from([0, 7, 1 << 20]))
def test_any_fragmentation(parts: list[bytes], cuts: list[int], memory_limit: int) -> None:
    message = b"".join(parts)
    with spooled(message, cuts, memory_limit) as m:
        assert m.read() == message
        assert b"".join(m.chunks(3)) == message
        assert m.header_end == header_end(message)
        assert m.header == message[: m.header_end]


@given(st.lists(st.sampled_from([b"Subject: x", b"\r\n", b"body"]), max_size=20),
       st.lists(st.integers(min_value=0, max_value=200), max_size=6),
       st.sampled_from([0, 1 << 20]),
       st.binary(max_size=20), st.binary(max_size=20))
def test_splicing_is_the_bytes_operation(
    parts: list[bytes], cuts: list[int], memory_limit: int, front: bytes, inside: bytes
) -> None:
    message = b"".join(parts)
    end = header_end(message)
    expected_inside = inside
    if inside and end == len(message) and message and not message.endswith(b"\r\n"):
        expected_inside = b"\r\n" + inside
    expected = front + message[:end] + expected_inside + message[end:]
    with spooled(message, cuts, memory_limit) as m:
        out = m.insert_at_header_end(inside).prepend(front)
        assert out.read() == expected
        assert out.size == len(expected)
        assert out.header_end == len(front) + end + len(expected_inside)
        assert out.header == expected[: out.header_end]
        # the original is unchanged and shares the storage
        assert m.read() == message


def test_header_past_the_limit_is_incomplete() -> None:
    message = b"X: " + b"y" * (HEADER_LIMIT + 10) + b"\r\n\r\nbody"
    with spooled(message, [100, HEADER_LIMIT]) as m:
        assert m.header_end == -1
        assert not m.header_complete
        assert m.header == message[:HEADER_LIMIT]
        with pytest.raises(ValueError):
            m.insert_at_header_end(b"A: b\r\n")
        assert m.prepend(b"R: 1\r\n").read() == b"R: 1\r\n" + message


def test_large_message_goes_to_a_file_and_close_ends_it(tmp_path: object) -> None:
    spool = MessageSpool(memory_limit=10, directory=str(tmp_path))
    spool.write(b"Subject: big\r\n\r\n" + b"x" * 100)
    m = spool.finish()
    assert not m.in_memory
    derived = m.prepend(b"Return-Path: <>\r\n")
    assert derived.read().startswith(b"Return-Path: <>\r\nSubject: big\r\n\r\nxxx")
    m.close()
    with pytest.raises(ValueError):
        derived.read()


def test_discard() -> None:
    spool = MessageSpool(memory_limit=1)
    spool.write(b"abc")
    spool.discard()
    assert spool.size == 0


def test_negative_limits_refused() -> None:
    with pytest.raises(ValueError):
        MessageSpool(memory_limit=-1)


RCPT = Recipient(path=Path(mailbox=Mailbox("a", "example.test")))
OTHER = Recipient(path=Path(mailbox=Mailbox("b", "example.test")))


def test_results_check_the_reply_class() -> None:
    assert RecipientResult.ok(RCPT).delivered
    assert RecipientResult.ok(RCPT).reply.code == 250
    temp = RecipientResult.failed(RCPT, Reply(code=452, enhanced="4.2.2", lines=("full",)))
    assert temp.status == "temporary" and not temp.delivered
    perm = RecipientResult.failed(RCPT, Reply(code=550, enhanced="5.1.1", lines=("no",)))
    assert perm.status == "permanent"
    with pytest.raises(ValueError):
        RecipientResult(recipient=RCPT, status="delivered", reply=Reply(code=451))
    with pytest.raises(ValueError):
        RecipientResult(recipient=RCPT, status="temporary", reply=Reply(code=550))
    with pytest.raises(ValueError):
        RecipientResult(recipient=RCPT, status="bounced", reply=Reply(code=550))  # type: ignore[arg-type]


def test_all_delivered() -> None:
    ok_a, ok_b = RecipientResult.ok(RCPT), RecipientResult.ok(OTHER)
    assert all_delivered([ok_a, ok_b], [RCPT, OTHER])
    assert not all_delivered([ok_a], [RCPT, OTHER])
    assert not all_delivered([ok_b, ok_a], [RCPT, OTHER])
    assert not all_delivered(
        [ok_a, RecipientResult.failed(OTHER, Reply(code=451))], [RCPT, OTHER]
    )


# --- Message.open: a message file read in place ---------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"Subject: x\r\n\r\nbody\r\n", b"\r\nno header\r\n", b"Subject: all header",
     b"A: " + b"x" * 300 + b"\r\n\r\nbody"],
)
def test_open_finds_the_header_like_the_spool(tmp_path: pathlib.Path, data: bytes) -> None:
    path = tmp_path / "m"
    path.write_bytes(data)
    spool = MessageSpool(header_limit=100)
    spool.write(data)
    expected = spool.finish()
    with Message.open(path, header_limit=100) as opened:
        assert (opened.header, opened.header_end, opened.size) == (
            expected.header, expected.header_end, expected.size)
        assert opened.read() == data and not opened.in_memory


def test_open_of_a_missing_file_raises(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError):
        Message.open(tmp_path / "nothing")
