"""Delivery status notifications (mailagents/agents/_bounce.py): the multipart/report
of RFC 3464 as Python's email package reads it, what is returned of the original and
how (byte for byte, by its chunks), the RFC 6533 global forms, the line rules, and
the refusal of any value that could start a header field of its own."""

from __future__ import annotations

import datetime
import email
import email.message
import email.policy
import email.utils
import re
import string
from collections.abc import Iterator
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents.agents._bounce import (
    RETURN_LIMIT,
    Bounce,
    DSNRecipient,
    _Scan,
    build_dsn,
)
from mailagents.delivery import Message, MessageSpool
from mailagents.smtp import Reply

NOW = 1_700_000_000.0
ARRIVAL = NOW - 3 * 86400
HEADER = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.net, carol@example.net\r\n"
    b"Subject: Lunch\r\n"
    b"Message-ID: <lunch.1@example.org>\r\n"
)
ORIGINAL = HEADER + b"\r\nShall we meet at noon?\r\n"

FAILED = DSNRecipient(
    final_recipient="bob@example.net",
    original_recipient=("rfc822", "Bob@Example.net"),
    action="failed",
    status="5.1.1",
    remote_mta="mx.example.net",
    diagnostic=Reply(code=550, enhanced="5.1.1", lines=("<bob@example.net>: User unknown",)),
    last_attempt=NOW - 60,
)
DELAYED = DSNRecipient(
    final_recipient="carol@example.net",
    action="delayed",
    status="4.4.1",
    remote_mta="mx2.example.net",
    diagnostic=Reply(code=451, enhanced="4.4.1", lines=("Try again later",)),
    last_attempt=NOW - 120,
    will_retry_until=NOW + 2 * 86400,
)
DELIVERED = DSNRecipient(final_recipient="dan@example.net", action="delivered",
                         status="2.0.0", remote_mta="mx.example.net",
                         diagnostic=Reply(code=250, enhanced="2.0.0", lines=("Ok",)))


def original(data: bytes = ORIGINAL) -> Message:
    return Message.from_bytes(data)


def build(**changes: object) -> Bounce:
    arguments: dict[str, object] = {
        "kind": "failure",
        "reporting_mta": "mta.example.org",
        "recipients": [FAILED, DELAYED],
        "original": original(),
        "to": "alice@example.org",
        "envid": "QQ314159",
        "arrival": ARRIVAL,
        "ret": None,
        "smtputf8": False,
        "now": NOW,
    }
    arguments.update(changes)
    return build_dsn(**arguments)  # type: ignore[arg-type]


def data_of(bounce: Bounce) -> bytes:
    return b"".join(bounce.message.chunks())


def parse(bounce: Bounce) -> email.message.EmailMessage:
    message = email.message_from_bytes(data_of(bounce), policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def raw_parts(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (header, body) of each top-level part, as octets, split at the boundary."""
    top = email.message_from_bytes(data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n",
                                   policy=email.policy.default)
    boundary = top.get_param("boundary")
    assert isinstance(boundary, str)
    delimiter = b"\r\n--" + boundary.encode()
    pieces = data.split(delimiter)
    assert pieces[-1] == b"--\r\n", "the closing delimiter ends the notice"
    parts = []
    for piece in pieces[1:-1]:
        assert piece.startswith(b"\r\n")
        head, _, body = piece[2:].partition(b"\r\n\r\n")
        parts.append((head + b"\r\n", body))
    return parts


def timestamp(value: str) -> float:
    return email.utils.parsedate_to_datetime(value).timestamp()


def date(when: float) -> str:
    return email.utils.format_datetime(datetime.datetime.fromtimestamp(when, datetime.UTC))


def unfold(value: str) -> str:
    return value.replace("\r\n", "")


def status_blocks(body: bytes) -> list[dict[str, str]]:
    """A (global) delivery-status body read by hand: blocks of unfolded fields."""
    text = body.decode("utf-8")
    assert text.endswith("\r\n")
    blocks = []
    for block in text[:-2].split("\r\n\r\n"):
        fields: dict[str, str] = {}
        for line in re.sub(r"\r\n(?=[ \t])", "", block).split("\r\n"):
            name, _, value = line.partition(":")
            assert name not in fields, f"{name} twice in a block"
            fields[name] = value.strip()
        blocks.append(fields)
    return blocks


def human_text(bounce: Bounce) -> str:
    text = next(parse(bounce).iter_parts())
    assert text.get_content_type() == "text/plain"
    content = text.get_content()
    assert isinstance(content, str)
    return " ".join(content.split())


def check_lines(data: bytes) -> None:
    """CRLF line ends only, and no line over 998 octets."""
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert max(map(len, data.split(b"\r\n"))) <= 998


# ----------------------------------------------------------------------- structure


def test_a_multipart_report_of_three_parts() -> None:
    bounce = build()
    message = parse(bounce)
    assert not message.defects
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "message/rfc822"]
    assert all(not p.defects for p in parts)
    assert bounce.returned == "full"
    assert not bounce.eight_bit and not bounce.smtputf8


def test_the_header_of_the_notice() -> None:
    message = parse(build())
    assert message["From"].addresses[0].addr_spec == "MAILER-DAEMON@mta.example.org"
    assert message["From"].addresses[0].display_name == "Mail Delivery System"
    assert message["To"].addresses[0].addr_spec == "alice@example.org"
    assert message["Subject"] == "Undelivered Mail Returned to Sender"
    assert message["Date"].datetime.timestamp() == NOW
    assert message["Message-ID"].endswith("@mta.example.org>")
    assert message["MIME-Version"] == "1.0"
    assert message["Auto-Submitted"] == "auto-replied"


@pytest.mark.parametrize(
    ("kind", "recipients", "subject"),
    [
        ("failure", [FAILED], "Undelivered Mail Returned to Sender"),
        ("delay", [DELAYED], "Delayed Mail (still being retried)"),
        ("success", [DELIVERED], "Successful Mail Delivery Report"),
    ],
)
def test_the_subject_says_which_kind(kind: str, recipients: list[DSNRecipient],
                                     subject: str) -> None:
    assert parse(build(kind=kind, recipients=recipients))["Subject"] == subject


def test_the_message_id_domain_and_the_from_address_can_be_chosen() -> None:
    message = parse(build(message_id_domain="ids.example.org",
                          from_address="postmaster@example.org"))
    assert message["Message-ID"].endswith("@ids.example.org>")
    assert message["From"].addresses[0].addr_spec == "postmaster@example.org"


def test_each_notice_has_its_own_long_random_boundary() -> None:
    first, second = parse(build()).get_boundary(), parse(build()).get_boundary()
    assert first and second and first != second
    assert len(first) >= 40


# -------------------------------------------------------------- the delivery status


def test_python_reads_the_status_as_blocks_of_fields() -> None:
    status = list(parse(build()).iter_parts())[1]
    blocks = status.get_payload()
    assert isinstance(blocks, list) and len(blocks) == 3
    per_message, bob, carol = (dict(b.raw_items()) for b in blocks)
    assert per_message["Original-Envelope-Id"] == "QQ314159"
    assert per_message["Reporting-MTA"] == "dns; mta.example.org"
    assert timestamp(per_message["Arrival-Date"]) == ARRIVAL
    assert set(per_message) == {"Original-Envelope-Id", "Reporting-MTA", "Arrival-Date"}
    dates = ("Last-Attempt-Date", "Will-Retry-Until")
    assert {k: unfold(v) for k, v in bob.items() if k not in dates} == {
        "Original-Recipient": "rfc822; Bob@Example.net",
        "Final-Recipient": "rfc822; bob@example.net",
        "Action": "failed",
        "Status": "5.1.1",
        "Remote-MTA": "dns; mx.example.net",
        "Diagnostic-Code": "smtp; 550 5.1.1 <bob@example.net>: User unknown",
    }
    assert {k: unfold(v) for k, v in carol.items() if k not in dates} == {
        "Final-Recipient": "rfc822; carol@example.net",
        "Action": "delayed",
        "Status": "4.4.1",
        "Remote-MTA": "dns; mx2.example.net",
        "Diagnostic-Code": "smtp; 451 4.4.1 Try again later",
    }
    assert "Will-Retry-Until" not in bob
    assert timestamp(bob["Last-Attempt-Date"]) == NOW - 60
    assert timestamp(carol["Last-Attempt-Date"]) == NOW - 120
    assert timestamp(carol["Will-Retry-Until"]) == NOW + 2 * 86400
    # RFC 3464 §2.3.7: numeric time zones.
    assert carol["Will-Retry-Until"].endswith("+0000")


def test_the_fields_come_in_the_order_of_rfc_3464() -> None:
    status = list(parse(build()).iter_parts())[1].get_payload()
    assert isinstance(status, list)
    assert [k for k, _ in status[1].raw_items()] == [
        "Original-Recipient", "Final-Recipient", "Action", "Status", "Remote-MTA",
        "Diagnostic-Code", "Last-Attempt-Date"]
    assert [k for k, _ in status[0].raw_items()] == [
        "Original-Envelope-Id", "Reporting-MTA", "Arrival-Date"]


@pytest.mark.parametrize(
    ("recipient", "absent"),
    [
        (replace(FAILED, original_recipient=None), "Original-Recipient"),
        (replace(FAILED, remote_mta=None), "Remote-MTA"),
        (replace(FAILED, diagnostic=None), "Diagnostic-Code"),
        (replace(FAILED, last_attempt=None), "Last-Attempt-Date"),
        (FAILED, "Will-Retry-Until"),
    ],
)
def test_optional_fields_only_when_known(recipient: DSNRecipient, absent: str) -> None:
    _, fields = status_blocks(raw_parts(data_of(build(recipients=[recipient])))[1][1])
    assert absent not in fields
    assert {"Final-Recipient", "Action", "Status"} <= set(fields)


def test_no_original_envelope_id_without_envid() -> None:
    per_message, _, _ = status_blocks(raw_parts(data_of(build(envid=None)))[1][1])
    assert "Original-Envelope-Id" not in per_message


def test_a_multi_line_reply_is_one_diagnostic_with_the_code_once() -> None:
    reply = Reply(code=550, enhanced="5.7.1", lines=("Message refused:", "see policy", "bye"))
    recipient = replace(FAILED, status="5.7.1", diagnostic=reply)
    _, fields = status_blocks(raw_parts(data_of(build(recipients=[recipient])))[1][1])
    assert fields["Diagnostic-Code"] == "smtp; 550 5.7.1 Message refused: see policy bye"


def test_a_reply_without_enhanced_code() -> None:
    recipient = replace(FAILED, diagnostic=Reply(code=550, lines=("No such user",)))
    _, fields = status_blocks(raw_parts(data_of(build(recipients=[recipient])))[1][1])
    assert fields["Diagnostic-Code"] == "smtp; 550 No such user"


def test_a_long_diagnostic_is_folded_and_unfolds_to_itself() -> None:
    text = " ".join(f"word{i}" for i in range(300))
    recipient = replace(FAILED, diagnostic=Reply(code=550, enhanced="5.1.1", lines=(text,)))
    bounce = build(recipients=[recipient])
    body = raw_parts(data_of(bounce))[1][1]
    assert all(len(line) <= 78 for line in body.split(b"\r\n"))
    _, fields = status_blocks(body)
    assert fields["Diagnostic-Code"] == f"smtp; 550 5.1.1 {text}"
    check_lines(data_of(bounce))


def test_a_word_longer_than_a_line_is_cut_under_998_octets() -> None:
    word = "x" * 3000
    recipient = replace(FAILED, diagnostic=Reply(code=550, enhanced="5.1.1", lines=(word,)))
    bounce = build(recipients=[recipient])
    check_lines(data_of(bounce))
    _, fields = status_blocks(raw_parts(data_of(bounce))[1][1])
    assert fields["Diagnostic-Code"].replace(" ", "") == "smtp;5505.1.1" + word
    assert word in human_text(bounce)  # the text part is quoted-printable: uncut


def test_will_retry_until_is_for_a_delayed_recipient_only() -> None:
    with pytest.raises(ValueError, match="delayed"):
        replace(FAILED, will_retry_until=NOW)


# ------------------------------------------------------------- what is returned


@pytest.mark.parametrize(
    ("kind", "recipients", "ret", "limit", "returned", "ctype"),
    [
        ("failure", [FAILED], None, RETURN_LIMIT, "full", "message/rfc822"),
        ("failure", [FAILED], "FULL", RETURN_LIMIT, "full", "message/rfc822"),
        ("failure", [FAILED], "HDRS", RETURN_LIMIT, "headers", "text/rfc822-headers"),
        ("failure", [FAILED], None, 10, "headers", "text/rfc822-headers"),
        ("failure", [FAILED], "FULL", 10, "headers", "text/rfc822-headers"),
        ("failure", [FAILED], None, len(ORIGINAL), "full", "message/rfc822"),
        ("failure", [FAILED], None, len(ORIGINAL) - 1, "headers", "text/rfc822-headers"),
        ("delay", [DELAYED], None, RETURN_LIMIT, "headers", "text/rfc822-headers"),
        ("delay", [DELAYED], "FULL", RETURN_LIMIT, "headers", "text/rfc822-headers"),
        ("success", [DELIVERED], None, RETURN_LIMIT, "headers", "text/rfc822-headers"),
        ("success", [DELIVERED], "FULL", RETURN_LIMIT, "headers", "text/rfc822-headers"),
    ],
)
def test_what_is_returned(kind: str, recipients: list[DSNRecipient], ret: str | None,
                          limit: int, returned: str, ctype: str) -> None:
    bounce = build(kind=kind, recipients=recipients, ret=ret, return_limit=limit)
    assert bounce.returned == returned
    assert list(parse(bounce).iter_parts())[2].get_content_type() == ctype


def test_ret_hdrs_returns_exactly_the_header_section() -> None:
    bounce = build(ret="HDRS")
    part = list(parse(bounce).iter_parts())[2]
    assert part.get_content_type() == "text/rfc822-headers"
    assert part.get_payload(decode=True) == HEADER
    head, body = raw_parts(data_of(bounce))[2]
    assert body == HEADER
    assert b"Content-Transfer-Encoding: 7bit" in head
    assert "Shall we meet" not in data_of(bounce).decode()


@pytest.mark.parametrize(
    "content",
    [
        ORIGINAL,
        ORIGINAL + b"no line end at the end",
        HEADER + b"\r\n",
        b"\r\nno header at all\r\n",
        HEADER + b"Content-Type: multipart/mixed; boundary=inner\r\n\r\n--inner\r\n"
        b"Content-Type: text/plain\r\n\r\npart one\r\n--inner--\r\n",
        HEADER + b"\r\n" + b"-- \r\n--=_\r\n.\r\n..\r\nFrom me\r\n",
    ],
)
def test_ret_full_returns_the_original_byte_for_byte(content: bytes) -> None:
    bounce = build(ret="FULL", original=original(content))
    head, body = raw_parts(data_of(bounce))[2]
    assert body == content
    assert head.startswith(b"Content-Type: message/rfc822\r\n")
    assert not parse(bounce).defects


def test_over_the_limit_the_text_says_why_only_headers_came_back() -> None:
    bounce = build(ret="FULL", return_limit=50)
    assert bounce.returned == "headers"
    text = human_text(bounce)
    assert f"{len(ORIGINAL)} octets" in text and "more than the 50" in text
    assert "header section" in text


@pytest.mark.parametrize(
    "content",
    [
        HEADER + b"\r\nA NUL \x00 in the body\r\n",
        HEADER + b"\r\na bare\nline feed\r\n",
        HEADER + b"\r\na bare\rcarriage return\r\n",
        HEADER + b"\r\nends with a carriage return\r",
        HEADER + b"\r\n" + b"y" * 999 + b"\r\n",
    ],
)
def test_content_no_8bit_body_can_carry_returns_the_header_section(content: bytes) -> None:
    bounce = build(original=original(content))
    assert bounce.returned == "headers"
    assert raw_parts(data_of(bounce))[2][1] == HEADER
    assert "cannot be returned as it is" in human_text(bounce)
    check_lines(data_of(bounce))


def test_a_line_of_998_octets_is_still_returned() -> None:
    content = HEADER + b"\r\n" + b"y" * 998 + b"\r\n"
    bounce = build(original=original(content))
    assert bounce.returned == "full"
    assert raw_parts(data_of(bounce))[2][1] == content


def test_a_header_section_no_body_can_carry_is_not_returned() -> None:
    bounce = build(original=original(b"Subject: a\x00b\r\n\r\nbody\r\n"))
    assert bounce.returned == "none"
    assert len(raw_parts(data_of(bounce))) == 2
    assert "not attached" in human_text(bounce)


def test_an_unfinished_header_section_is_returned_up_to_its_last_whole_line() -> None:
    spool = MessageSpool(header_limit=64)
    spool.write(b"Subject: " + b"s" * 40 + b"\r\nX-Long: " + b"l" * 100 + b"\r\n\r\nbody\r\n")
    message = spool.finish()
    assert not message.header_complete
    bounce = build(original=message, ret="HDRS")
    assert raw_parts(data_of(bounce))[2][1] == b"Subject: " + b"s" * 40 + b"\r\n"


# ------------------------------------------------------------------- 8-bit, UTF-8


def test_an_8bit_original_makes_an_8bit_notice() -> None:
    content = HEADER + b"\r\nCaf\xc3\xa9 at noon?\r\n"
    bounce = build(original=original(content))
    assert bounce.eight_bit and not bounce.smtputf8
    assert raw_parts(data_of(bounce))[2] == (
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n"
        b"Content-Description: Undelivered message\r\n", content)
    assert parse(bounce)["Content-Transfer-Encoding"] == "8bit"


def test_8bit_octets_not_returned_leave_the_notice_7bit() -> None:
    content = HEADER + b"\r\nCaf\xc3\xa9 at noon?\r\n"
    bounce = build(original=original(content), ret="HDRS")
    assert not bounce.eight_bit
    assert data_of(bounce).isascii()


def test_8bit_octets_in_the_returned_header_section() -> None:
    content = b"Subject: Caf\xc3\xa9\r\n\r\nbody\r\n"
    bounce = build(original=original(content), ret="HDRS")
    assert bounce.eight_bit
    head, body = raw_parts(data_of(bounce))[2]
    assert body == b"Subject: Caf\xc3\xa9\r\n"
    assert b"Content-Transfer-Encoding: 8bit" in head


def test_a_7bit_notice_is_ascii_throughout() -> None:
    bounce = build()
    assert not bounce.eight_bit
    assert data_of(bounce).isascii()
    assert parse(bounce)["Content-Transfer-Encoding"] == "7bit"


UTF8_FAILED = replace(FAILED, final_recipient="jürgen@exämple.net",
                      original_recipient=("utf-8", "Jürgen@exämple.net"),
                      diagnostic=Reply(code=550, enhanced="5.1.1", lines=("Unbekannt: Jürgen",)))


@pytest.mark.parametrize(
    ("changes", "smtputf8"),
    [
        ({"smtputf8": True}, False),
        ({"smtputf8": True, "ret": "HDRS"}, False),
        ({"recipients": [UTF8_FAILED]}, False),
        ({"to": "älice@example.org"}, True),
        ({"smtputf8": True, "to": "älice@example.org"}, True),
    ],
)
def test_smtputf8_uses_the_global_types(changes: dict[str, object], smtputf8: bool) -> None:
    bounce = build(**changes)
    message = parse(bounce)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "global-delivery-status"
    types = [p.get_content_type() for p in message.iter_parts()]
    third = "message/global-headers" if changes.get("ret") == "HDRS" else "message/global"
    assert types == ["text/plain", "message/global-delivery-status", third]
    assert bounce.smtputf8 is smtputf8
    check_lines(data_of(bounce))


def test_a_global_delivery_status_holds_utf8() -> None:
    bounce = build(recipients=[UTF8_FAILED, DELAYED])
    head, body = raw_parts(data_of(bounce))[1]
    assert head.startswith(b"Content-Type: message/global-delivery-status\r\n")
    assert b"Content-Transfer-Encoding: 8bit" in head
    assert bounce.eight_bit
    per_message, jurgen, carol = status_blocks(body)
    assert per_message["Reporting-MTA"] == "dns; mta.example.org"
    assert jurgen["Final-Recipient"] == "utf-8; jürgen@exämple.net"
    assert jurgen["Original-Recipient"] == "utf-8; Jürgen@exämple.net"
    assert jurgen["Diagnostic-Code"] == "smtp; 550 5.1.1 Unbekannt: Jürgen"
    assert carol["Final-Recipient"] == "rfc822; carol@example.net"
    # The returned message/global is the original, untouched.
    assert raw_parts(data_of(bounce))[2][1] == ORIGINAL


def test_a_utf8_orcpt_fits_a_7bit_status_as_utf8_addr_xtext() -> None:
    # RFC 6533 §3: with the utf-8 type a non-ASCII original recipient is written in
    # 7 bits, so it needs no global part.
    recipient = replace(FAILED, original_recipient=("utf-8", "jürgen+x=y@example.net"))
    bounce = build(recipients=[recipient])
    assert list(parse(bounce).iter_parts())[1].get_content_type() == "message/delivery-status"
    _, fields = status_blocks(raw_parts(data_of(bounce))[1][1])
    assert fields["Original-Recipient"] == r"utf-8; j\x{FC}rgen\x{2B}x\x{3D}y@example.net"
    assert data_of(bounce).isascii()


def test_a_utf8_orcpt_in_a_global_status_keeps_its_non_ascii() -> None:
    recipient = replace(FAILED, original_recipient=("utf-8", "jürgen+x@example.net"))
    _, fields = status_blocks(raw_parts(data_of(build(recipients=[recipient],
                                                      smtputf8=True)))[1][1])
    assert fields["Original-Recipient"] == r"utf-8; jürgen\x{2B}x@example.net"


def test_non_ascii_reply_text_in_a_7bit_status_is_replaced() -> None:
    recipient = replace(FAILED, diagnostic=Reply(code=550, enhanced="5.1.1",
                                                 lines=("Utilisateur inconnu: é",)))
    bounce = build(recipients=[recipient])
    _, fields = status_blocks(raw_parts(data_of(bounce))[1][1])
    assert fields["Diagnostic-Code"] == "smtp; 550 5.1.1 Utilisateur inconnu: ?"
    # The text part keeps it, in quoted-printable UTF-8: the notice stays 7-bit.
    assert "Utilisateur inconnu: é" in human_text(bounce)
    assert data_of(bounce).isascii() and not bounce.eight_bit
    text_head = raw_parts(data_of(bounce))[0][0]
    assert b"charset=utf-8" in text_head and b"quoted-printable" in text_head


# ------------------------------------------------------------- the human-readable text


def test_the_text_says_what_happened_to_whom_and_why() -> None:
    text = human_text(build())
    assert "mta.example.org" in text
    assert "<bob@example.net> (sent to Bob@Example.net): delivery failed permanently" in text
    assert "mx.example.net answered: 550 5.1.1 <bob@example.net>: User unknown" in text
    assert ("<carol@example.net>: not delivered yet; the mail system will keep trying "
            f"until {date(NOW + 2 * 86400)}") in text
    assert "451 4.4.1 Try again later" in text
    assert "Your message is attached" in text


def test_the_text_shows_a_multi_line_reply_as_it_was_sent() -> None:
    reply = Reply(code=550, enhanced="5.7.1", lines=("first", "second"))
    bounce = build(recipients=[replace(FAILED, status="5.7.1", diagnostic=reply)])
    content = next(parse(bounce).iter_parts()).get_content()
    assert "550-5.7.1 first\r\n" in content or "550-5.7.1 first\n" in content
    assert "550 5.7.1 second" in content


@pytest.mark.parametrize(
    ("recipient", "phrase"),
    [
        (replace(FAILED, status="4.4.7"), "gave up retrying"),
        (replace(FAILED, remote_mta=None), "The reason given by mta.example.org"),
        (DELIVERED, "<dan@example.net>: delivered"),
        (replace(DELIVERED, action="relayed"), "sends no delivery reports"),
        (replace(DELIVERED, action="expanded"), "forwarded on to further recipients"),
    ],
)
def test_the_text_for_each_fate(recipient: DSNRecipient, phrase: str) -> None:
    kind = "failure" if recipient.action == "failed" else "success"
    assert phrase in human_text(build(kind=kind, recipients=[recipient]))


def test_a_very_long_reply_line_stays_under_the_line_limit() -> None:
    reply = Reply(code=550, enhanced="5.1.1", lines=("z" * 5000,))
    bounce = build(recipients=[replace(FAILED, diagnostic=reply)])
    check_lines(data_of(bounce))
    assert "z" * 5000 in human_text(bounce)


# ------------------------------------------------------------------ streaming


def test_a_large_original_is_streamed_without_read(monkeypatch: pytest.MonkeyPatch) -> None:
    body = b"".join(b"line %07d of a long message\r\n" % i for i in range(60_000))
    spool = MessageSpool()
    spool.write(HEADER + b"\r\n")
    for start in range(0, len(body), 100_000):
        spool.write(body[start:start + 100_000])
    big = spool.finish()
    assert big.size > 1 << 20 and not big.in_memory

    def no_read(self: Message) -> bytes:
        raise AssertionError("the original must be copied by its chunks")

    monkeypatch.setattr(Message, "read", no_read)
    bounce = build(original=big)
    assert bounce.returned == "full"
    assert not bounce.message.in_memory  # spooled to a file, like the original
    assert raw_parts(data_of(bounce))[2][1] == HEADER + b"\r\n" + body
    headers_only = build(original=big, ret="HDRS")
    assert raw_parts(data_of(headers_only))[2][1] == HEADER
    assert headers_only.message.in_memory
    over = build(original=big, return_limit=1 << 20)
    assert over.returned == "headers"


@pytest.mark.parametrize(
    ("content", "binary", "eight_bit"),
    [
        (b"a\r\nb\r\n", False, False),
        (b"a\r\nb", False, False),
        (b"caf\xc3\xa9\r\n", False, True),
        (b"a\nb\r\n", True, False),
        (b"a\rb\r\n", True, False),
        (b"a\r\r\n", True, False),
        (b"a\r\nb\r", True, False),
        (b"a\x00b\r\n", True, False),
        (b"x" * 998 + b"\r\n" + b"y" * 998, False, False),
        (b"x" * 999 + b"\r\n", True, False),
        (b"ok\r\n" + b"y" * 999, True, False),
    ],
)
def test_the_scan_gives_the_same_answer_at_every_chunk_split(
    content: bytes, binary: bool, eight_bit: bool
) -> None:
    for cut in range(len(content) + 1):
        for second in (cut, min(cut + 1, len(content)), len(content)):
            scan = _Scan()
            for chunk in (content[:cut], content[cut:second], content[second:]):
                scan.feed(chunk)
            scan.finish()
            assert (scan.binary, scan.eight_bit) == (binary, eight_bit), (cut, second)


def test_a_crlf_split_between_chunks_of_the_original(monkeypatch: pytest.MonkeyPatch) -> None:
    content = HEADER + b"\r\n" + b"a" * 70 + b"\r\n" + b"b" * 70 + b"\r\n"
    chunked = Message.chunks

    def tiny_chunks(self: Message, size: int = 1 << 16) -> Iterator[bytes]:
        return chunked(self, 7)

    monkeypatch.setattr(Message, "chunks", tiny_chunks)
    bounce = build(original=original(content))
    assert bounce.returned == "full"
    assert raw_parts(data_of(bounce))[2][1] == content


# ------------------------------------------------------------------ refusals


INJECTIONS = ["a@b.example\r\nBcc: victim@example.net", "a@b.example\nX: y",
              "a@b.example\r", "a\x00@b.example"]


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize(
    "make",
    [
        lambda v: replace(FAILED, final_recipient=v),
        lambda v: replace(FAILED, original_recipient=("rfc822", v)),
        lambda v: replace(FAILED, original_recipient=(v, "a@b.example")),
        lambda v: replace(FAILED, remote_mta=v),
        lambda v: replace(FAILED, status="5.1.1" + v[-2:]),
        lambda v: build(to=v),
        lambda v: build(reporting_mta=v),
        lambda v: build(envid=v),
        lambda v: build(message_id_domain=v),
        lambda v: build(from_address=v),
    ],
)
def test_line_ends_in_any_value_are_refused(make: object, value: str) -> None:
    with pytest.raises(ValueError):
        make(value)  # type: ignore[operator]


def test_a_reply_that_smuggles_a_line_end_cannot_add_a_field() -> None:
    reply = Reply(code=550, enhanced="5.1.1", lines=("ok",))
    object.__setattr__(reply, "lines", ("bad\r\nBcc: victim@example.net", "\x1b[31mred\x0b"))
    bounce = build(recipients=[replace(FAILED, diagnostic=reply)])
    data = data_of(bounce)
    check_lines(data)
    assert b"\r\nBcc:" not in data
    _, fields = status_blocks(raw_parts(data)[1][1])
    assert fields["Diagnostic-Code"] == "smtp; 550 5.1.1 bad??Bcc: victim@example.net ?[31mred?"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: replace(FAILED, status="5.01.1"), "malformed status"),
        (lambda: replace(FAILED, status="3.1.1"), "malformed status"),
        (lambda: replace(FAILED, status="2.0.0"), "cannot carry"),
        (lambda: replace(DELAYED, status="5.1.1"), "cannot carry"),
        (lambda: replace(DELIVERED, status="4.1.1"), "cannot carry"),
        (lambda: replace(FAILED, action="bounced"), "unknown action"),
        (lambda: replace(FAILED, final_recipient=""), "empty"),
        (lambda: replace(FAILED, final_recipient=" a@b.example"), "white space"),
        (lambda: replace(FAILED, final_recipient="a" * 901), "longer"),
        (lambda: replace(FAILED, original_recipient=("rfc 822", "a@b.example")), "type"),
        (lambda: replace(FAILED, remote_mta="mx example"), "DNS name"),
        (lambda: replace(FAILED, remote_mta="mx.exämple"), "DNS name"),
        (lambda: replace(FAILED, last_attempt=float("nan")), "not a time"),
        (lambda: replace(FAILED, last_attempt=1e20), "out of range"),
        (lambda: build(recipients=[]), "at least one"),
        (lambda: build(kind="success"), "should be 'failure'"),
        (lambda: build(kind="failure", recipients=[DELAYED]), "should be 'delay'"),
        (lambda: build(kind="delay", recipients=[DELIVERED]), "should be 'success'"),
        (lambda: build(kind="bounce"), "unknown notice kind"),
        (lambda: build(ret="ALL"), "RET"),
        (lambda: build(return_limit=-1), "negative"),
        (lambda: build(to="postmaster"), "@"),
        (lambda: build(envid="x" * 101), "envelope identifier"),
        (lambda: build(envid="é"), "envelope identifier"),
        (lambda: build(now=float("inf")), "not a time"),
    ],
)
def test_malformed_arguments_are_refused(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_a_failed_recipient_may_carry_a_temporary_status() -> None:
    # RFC 3464 §2.3.3: a "4" status with "failed", once the MTA gave up.
    recipient = replace(FAILED, status="4.4.7")
    _, fields = status_blocks(raw_parts(data_of(build(recipients=[recipient])))[1][1])
    assert (fields["Action"], fields["Status"]) == ("failed", "4.4.7")


# ------------------------------------------------------------------ the property

ADDRESS_CHARS = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"),
                              blacklist_characters="\x85")
ADDRESSES = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.text(ADDRESS_CHARS, min_size=1, max_size=64).map(str.strip).filter(bool),
    st.text(string.ascii_lowercase + string.digits + ".-", min_size=1, max_size=60),
)
# ORCPT is at most 500 characters encoded (RFC 3461 §4.2): shorter local parts.
ORCPT_ADDRESSES = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.text(ADDRESS_CHARS, min_size=1, max_size=30).map(str.strip).filter(bool),
    st.text(string.ascii_lowercase + string.digits + ".-", min_size=1, max_size=60),
)
# Words short enough for a line (a longer one is cut, and gains a space).
REPLY_TEXT = st.text(st.characters(blacklist_categories=("Cs",),
                                   blacklist_characters="\r\n\x00"), max_size=200)
FATES = st.sampled_from([
    ("failed", "5.1.1", 550), ("failed", "4.4.7", 451), ("delayed", "4.2.2", 452),
    ("delivered", "2.0.0", 250), ("relayed", "2.1.5", 250), ("expanded", "2.0.0", 250),
])


@st.composite
def recipients(draw: st.DrawFn) -> DSNRecipient:
    action, status, code = draw(FATES)
    lines = tuple(draw(st.lists(REPLY_TEXT, min_size=1, max_size=3)))
    orcpt = draw(st.none() | st.tuples(st.sampled_from(["rfc822", "utf-8"]), ORCPT_ADDRESSES))
    return DSNRecipient(
        final_recipient=draw(ADDRESSES),
        original_recipient=orcpt,
        action=action,  # type: ignore[arg-type]
        status=status,
        remote_mta=draw(st.none() | st.just("mx.example.net")),
        diagnostic=draw(st.none() | st.just(Reply(code=code, enhanced=status, lines=lines))),
        last_attempt=draw(st.none() | st.floats(0, 4e9)),
        will_retry_until=draw(st.floats(0, 4e9)) if action == "delayed" else None,
    )


def kind_for(rs: list[DSNRecipient]) -> str:
    actions = {r.action for r in rs}
    return "failure" if "failed" in actions else "delay" if "delayed" in actions else "success"


@given(st.lists(recipients(), min_size=1, max_size=4), st.booleans(),
       st.sampled_from([None, "FULL", "HDRS"]))
def test_any_notice_parses_and_keeps_its_status_fields(
    rs: list[DSNRecipient], smtputf8: bool, ret: str | None
) -> None:
    bounce = build(kind=kind_for(rs), recipients=rs, smtputf8=smtputf8, ret=ret)
    data = data_of(bounce)
    check_lines(data)
    message = parse(bounce)
    assert message.get_content_type() == "multipart/report"
    assert not message.defects
    global_ = message.get_param("report-type") == "global-delivery-status"
    assert global_ or message.get_param("report-type") == "delivery-status"
    assert len(list(message.iter_parts())) == 3
    _, *blocks = status_blocks(raw_parts(data)[1][1])
    assert len(blocks) == len(rs)
    for r, fields in zip(rs, blocks, strict=True):
        kind = "rfc822" if r.final_recipient.isascii() else "utf-8"
        assert fields["Final-Recipient"] == f"{kind}; {r.final_recipient}"
        assert fields["Action"] == r.action
        assert fields["Status"] == r.status
        assert ("Remote-MTA" in fields) is (r.remote_mta is not None)
        if r.diagnostic is not None:
            words = [str(r.diagnostic.code), r.status]
            for line in r.diagnostic.lines:
                cleaned = re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", "?", line.replace("\t", " "))
                if not global_:
                    cleaned = "".join(c if c.isascii() else "?" for c in cleaned)
                words += cleaned.split()
            assert fields["Diagnostic-Code"] == "smtp; " + " ".join(words)
        if r.original_recipient is not None and r.original_recipient[0] == "rfc822":
            assert fields["Original-Recipient"] == f"rfc822; {r.original_recipient[1]}"
    if not global_:
        assert data.isascii() or bounce.eight_bit
        status = list(message.iter_parts())[1].get_payload()
        assert isinstance(status, list) and len(status) == len(rs) + 1
