"""The queue file format: round trip, and nothing but a whole file is ever read."""

from __future__ import annotations

import json
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents.queue import QueuedMessage, QueuedRecipient, QueueFileError
from mailagents.queue._records import decode, encode
from mailagents.smtp import Reply

text = st.text(st.characters(codec="utf-8"), max_size=30)
replies = st.one_of(
    st.none(),
    st.builds(
        lambda code, lines: Reply(code=code, enhanced=f"{code // 100}.1.1", lines=lines),
        st.sampled_from([250, 421, 451, 550, 554]),
        st.lists(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
                 min_size=1, max_size=3).map(tuple),
    ),
)
recipients = st.builds(
    QueuedRecipient,
    address=text,
    orcpt=st.one_of(st.none(), st.tuples(st.just("rfc822"), text)),
    notify=st.one_of(st.none(), st.just(frozenset({"NEVER"})),
                     st.sets(st.sampled_from(["SUCCESS", "FAILURE", "DELAY"])).map(frozenset)),
    state=st.sampled_from(["queued", "delivered", "transferred", "relayed", "failed"]),
    attempts=st.integers(0, 1000),
    next_attempt=st.floats(0, 2e9),
    last_attempt=st.one_of(st.none(), st.floats(0, 2e9)),
    reply=replies,
    remote_mta=st.one_of(st.none(), text),
    expired=st.booleans(),
    notified=st.sets(st.sampled_from(["failure", "delay", "success"])).map(frozenset),
)
messages = st.builds(
    QueuedMessage,
    id=st.text("0123456789ABCDEF", min_size=1, max_size=24),
    sender=text,
    recipients=st.lists(recipients, min_size=1, max_size=4).map(tuple),
    arrival=st.floats(0, 2e9),
    size=st.integers(0, 1 << 40),
    body=st.sampled_from([None, "7BIT", "8BITMIME", "BINARYMIME"]),
    smtputf8=st.booleans(),
    requiretls=st.booleans(),
    ret=st.sampled_from([None, "FULL", "HDRS"]),
    envid=st.one_of(st.none(), text),
    identity=st.one_of(st.none(), text),
    client=st.one_of(st.none(), text),
    notice=st.sampled_from([None, "dsn", "postmaster"]),
)


def sample() -> QueuedMessage:
    return QueuedMessage(
        id="0A1B2C", sender="alice@example.test", arrival=1000.5, size=42,
        recipients=(
            QueuedRecipient(address="bob@example.org", next_attempt=1000.5),
            QueuedRecipient(address="carol@example.net", state="failed", attempts=1,
                            reply=Reply(code=550, enhanced="5.1.1", lines=("No such user",)),
                            remote_mta="mx.example.net", notify=frozenset({"FAILURE"})),
        ),
    )


@given(messages)
def test_round_trip(message: QueuedMessage) -> None:
    data = encode(message)
    assert decode(data) == message
    assert data.isascii()
    assert data.count(b"\n") == len(message.recipients) + 3  # header, M, R..., END


def test_the_format_is_versioned_typed_records_ending_in_end() -> None:
    lines = encode(sample()).split(b"\n")
    assert lines[0] == b"MAILAGENTS-QUEUE 1"
    assert [line[:2] for line in lines[1:4]] == [b"M ", b"R ", b"R "]
    assert lines[4].startswith(b"END ") and lines[5] == b""


def test_every_cut_short_file_is_refused() -> None:
    data = encode(sample())
    for n in range(len(data)):
        with pytest.raises(QueueFileError):
            decode(data[:n])


def test_every_damaged_octet_is_refused() -> None:
    data = encode(sample())
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x01
        with pytest.raises(QueueFileError):
            decode(bytes(damaged))


def _with_crc(body: bytes) -> bytes:
    return body + b"END %08x\n" % zlib.crc32(body)


def _body() -> bytes:
    data = encode(sample())
    return data[: data.rindex(b"END ")]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.replace(b"QUEUE 1", b"QUEUE 2"), "version"),
        (lambda b: b.replace(b"QUEUE 1", b"QUEUE"), "version"),
        (lambda b: b.replace(b"MAILAGENTS", b"POSTFIX"), "not a mailagents"),
        (lambda b: b + b"X {}\n", "unknown record type"),
        (lambda b: b.replace(b'"size":42', b'"size":42,"colour":1'), "unknown fields"),
        (lambda b: b.replace(b'"size":42', b'"size":"42"'), "wrong type"),
        (lambda b: b.replace(b'"smtputf8":false', b'"smtputf8":0'), "wrong type"),
        (lambda b: b.replace(b'"attempts":0', b'"attempts":true'), "wrong type"),
        (lambda b: b.replace(b'"state":"queued"', b'"state":"lost"'), "state"),
        (lambda b: b.replace(b'"attempts":1', b'"attempts":-1'), "negative"),
        (lambda b: b.replace(b'"id":"0A1B2C"', b'"id":"../x"'), "queue id"),
        (lambda b: b.replace(b'["FAILURE"]', b'["FAILURE","ALWAYS"]'), "NOTIFY"),
        (lambda b: b.replace(b'"notified":[]', b'"notified":["bounce"]'), "notice kinds"),
        (lambda b: b.replace(b'[550,"5.1.1"', b'[250,"5.1.1"'), "malformed reply"),
        (lambda b: b.replace(b"M {", b"M [{").replace(b'null}\nR', b'null}]\nR', 1), "object"),
        (lambda b: b.split(b"\nR ")[0] + b"\n", "no recipient"),
        (lambda b: b.replace(b"\nM ", b"\nR {}\nM ", 1), "before the M"),
    ],
)
def test_a_field_or_record_not_known_is_refused(change: object, message: str) -> None:
    assert callable(change)
    with pytest.raises(QueueFileError, match=message):
        decode(_with_crc(change(_body())))


def test_octets_after_end_are_refused() -> None:
    for tail in (b"\n", b"R {}\n", b"x"):
        with pytest.raises(QueueFileError, match="no END record"):
            decode(encode(sample()) + tail)


def test_two_m_records_are_refused() -> None:
    body = _body()
    m_line = body.split(b"\n")[1] + b"\n"
    with pytest.raises(QueueFileError, match="two M"):
        decode(_with_crc(body + m_line))


def test_the_json_is_plain_ascii_even_for_utf8_addresses() -> None:
    message = sample().with_recipients((QueuedRecipient(address="jörg@bücher.example"),))
    data = encode(message)
    assert data.isascii()
    record = json.loads(data.split(b"\n")[2][2:])
    assert record["address"] == "jörg@bücher.example"
    assert decode(data) == message
