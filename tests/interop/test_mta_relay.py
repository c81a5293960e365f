"""The MTA (mailagents/agents/mta.py) relaying on loopback between real programs:
smtplib submits to it, it queues, finds the next hop by MX lookup in Knot DNS, and
delivers over SMTP to

* a second instance of our MTA on 127.0.0.2 (domain ``b.test``), delivering into a
  Maildir through the MDA;
* Postfix on 127.0.0.3 (domain ``example.test``), delivering into a Maildir with
  ``local_header_rewrite_clients =`` (it rewrites nothing);
* a scripted SMTP peer of ours on 127.0.0.4 (domain ``s.test``, behind a dead first
  MX on 127.0.0.5), for replies the real programs do not give on demand.

Every next hop listens on one port (the MTA's ``outbound_port``) on its own address;
the MTA under test ("MTA A", ``mx.a.test``) listens on 127.0.0.1. Checked: the body
and every original header arrive unchanged (RFC 5321 §4.4: a relay adds trace fields
and changes nothing else), over BDAT and over DATA; a 451 (from the scripted peer, and
from Postfix through a check_recipient_access table) is retried until delivered; a
550 for one of two recipients bounces that one with an RFC 3464 report (RFC 6533's
global types for an SMTPUTF8 message) while the other is delivered; a null MX (RFC
7505) fails at once with 5.1.10; NOTIFY=SUCCESS through a hop without DSN is reported
"relayed", and through a hop with DSN is left to that hop (RFC 3461); Received:
says UTF8SMTP for an SMTPUTF8 message (RFC 6531 §3.7.3).

Postfix here only receives; where it relays (the comparison at the end) it uses a
transport map, since it cannot be told to query DNS on Knot's test port.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.parser
import email.policy
import re
import smtplib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mailagents.agents import MDA, LocalRecipients
from mailagents.agents.mta import MTA
from mailagents.aio import Session, SMTPHandler, SMTPServer
from mailagents.delivery import Handoff, RecipientResult
from mailagents.dns import MXResolver, ResolverConfig
from mailagents.queue import Queue, RetrySchedule
from mailagents.smtp import Accept, Envelope, RcptTo, Reject, Reply, ServerConfig

from .peers import Knot, Postfix, running_knot, running_postfix, shared_port

pytestmark = pytest.mark.interop

TIMEOUT = 45.0  # one test at most (most take a second or two)

OURS = "127.0.0.2"  # the second MTA, for b.test
POSTFIX = "127.0.0.3"  # Postfix, for example.test
SCRIPTED = "127.0.0.4"  # the scripted peer, for s.test (second MX)
DEAD = "127.0.0.5"  # s.test's first MX: nothing listens there


def zone(origin: str, records: str) -> str:
    return f"""\
$ORIGIN {origin}.
$TTL 60
@   SOA  ns hostmaster 1 3600 600 86400 60
@   NS   ns
ns  A    127.0.0.1
{records}"""


ZONES = {
    "b.test": zone("b.test", f"@ MX 10 mx\nmx A {OURS}\n"),
    "example.test": zone("example.test", f"@ MX 10 mx\nmx A {POSTFIX}\n"),
    # RFC 5321 §5.1: the lower preference first; it refuses connections, so the next.
    "s.test": zone("s.test", f"@ MX 5 dead\n@ MX 10 mx\ndead A {DEAD}\nmx A {SCRIPTED}\n"),
    # RFC 7505 §3: the null MX, "this domain accepts no mail".
    "null.test": zone("null.test", "@ MX 0 .\n"),
}

# Retries soon (the tests wait for them in real time), never a delay notice, and no
# giving up during a test.
SCHEDULE = RetrySchedule(first=0.5, factor=1.0, maximum=0.5, delay_notice=None,
                         give_up=3600.0)


# --- peers and fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def port() -> int:
    """The one port every next hop listens on (each on its own address)."""
    return shared_port(("127.0.0.1", OURS, POSTFIX, SCRIPTED, DEAD))


@pytest.fixture(scope="module")
def knot() -> Iterator[Knot]:
    with running_knot(ZONES) as server:
        yield server


@pytest.fixture(scope="module")
def postfix(port: int) -> Iterator[Postfix]:
    # The access table starts empty; the 451 test fills it for carol for a while.
    # Mail Postfix takes for b.test (the comparison) goes to our second MTA.
    with running_postfix(host=POSTFIX, port=port, recipient_access="",
                         transport_map=f"b.test smtp:[{OURS}]:{port}\n") as server:
        yield server


class Collected:
    """MTA A's local delivery (the sender alice@a.test): keeps what it is given,
    that is, the bounces."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, bytes]] = []

    async def __call__(self, handoff: Handoff) -> list[RecipientResult]:
        self.messages.append((handoff.envelope, handoff.message.read()))
        return [RecipientResult.ok(r) for r in handoff.envelope.recipients]


@dataclass
class Scripted(SMTPHandler):
    """The scripted next hop: ``data`` are its replies after the data, in order
    (then 250 for every message); it keeps what it accepts."""

    data: list[Reply] = field(default_factory=list)
    messages: list[tuple[Envelope, bytes]] = field(default_factory=list)
    transactions: int = 0

    async def on_rcpt(self, session: Session, event: RcptTo) -> Accept | Reject:
        return Accept()

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject:
        self.transactions += 1
        if self.data:
            reply = self.data.pop(0)
            if reply.code >= 400:
                return Reject(reply=reply)
        self.messages.append((envelope, message))
        return Accept()


@dataclass
class Net:
    """MTA A (under test, on 127.0.0.1) and the next hops of ours."""

    a: MTA
    bounces: Collected
    b: MTA
    b_mail: Path
    scripted: Scripted
    scripted_server: SMTPServer
    postfix: Postfix

    def b_inbox(self, user: str) -> list[bytes]:
        new = self.b_mail / f"{user}@b.test" / "new"
        return [p.read_bytes() for p in sorted(new.iterdir())] if new.is_dir() else []


def resolver(knot: Knot) -> MXResolver:
    return MXResolver(ResolverConfig(nameservers=("127.0.0.1",), port=knot.port,
                                     families=(4,), lifetime=5.0))


async def start_net(tmp_path: Path, knot: Knot, postfix: Postfix, port: int,
                    scripted: Scripted | None = None, outbound_port: int | None = None,
                    scripted_config: dict[str, Any] | None = None) -> Net:
    """MTA A delivers to ``outbound_port`` (``port``, where MTA B and the scripted
    peer listen, unless told); the scripted peer has ``scripted_config``."""
    bounces = Collected()
    a = MTA("mx.a.test", local_domains={"a.test"}, deliver=bounces,
            queue=Queue(tmp_path / "queue-a", schedule=SCHEDULE, fsync=False),
            relay_networks=["127.0.0.1/32"], resolver=resolver(knot),
            outbound_port=outbound_port or port,
            outbound_options={"idle_timeout": 0.2, "poll_interval": 0.5})
    b_mail = tmp_path / "mail-b"
    users = LocalRecipients({"bob@b.test", "postmaster@b.test"}, local_domains={"b.test"})
    b = MTA("mx.b.test", local_domains={"b.test"},
            deliver=MDA(str(b_mail / "{user}"), users),
            queue=Queue(tmp_path / "queue-b", schedule=SCHEDULE, fsync=False),
            resolver=resolver(knot), outbound_port=port,
            outbound_options={"idle_timeout": 0.2, "poll_interval": 0.5})
    scripted = scripted or Scripted()
    server = SMTPServer(scripted, ServerConfig(hostname="mx.s.test",
                                               **(scripted_config or {})))
    net = Net(a=a, bounces=bounces, b=b, b_mail=b_mail, scripted=scripted,
              scripted_server=server, postfix=postfix)
    try:
        await b.serve(OURS, port)
        await server.start(SCRIPTED, port)
        await a.serve("127.0.0.1", 0)
    except BaseException:
        await stop_net(net)
        raise
    return net


async def stop_net(net: Net) -> None:
    await net.a.close()
    await net.b.close()
    await net.scripted_server.close()
    deliver = net.b.deliver
    assert isinstance(deliver, MDA)
    await deliver.aclose()


def run(test: Callable[[Net], Awaitable[None]], tmp_path: Path, knot: Knot,
        postfix: Postfix, port: int, scripted: Scripted | None = None,
        **options: Any) -> None:
    async def main() -> None:
        net = await start_net(tmp_path, knot, postfix, port, scripted, **options)
        try:
            await test(net)
        finally:
            await stop_net(net)

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))


async def until(condition: Callable[[], Any], what: str, seconds: float = 30.0,
                log: Callable[[], str] = lambda: "") -> Any:
    deadline = asyncio.get_running_loop().time() + seconds
    while not (found := condition()):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{what} after {seconds:g} s\n{log()}")
        await asyncio.sleep(0.05)
    return found


def submit(port: int, recipients: Sequence[str], message: bytes,
           options: Sequence[str] = (), sender: str = "alice@a.test",
           host: str = "127.0.0.1", rcpt_options: Sequence[str] = ()) -> dict[str, Any]:
    with smtplib.SMTP(host, port, timeout=20) as client:
        client.ehlo("client.a.test")
        refused: dict[str, Any] = client.sendmail(sender, list(recipients), message,
                                                  mail_options=list(options),
                                                  rcpt_options=list(rcpt_options))
        return refused


# --- the messages ---------------------------------------------------------------------------


def original(token: str, variant: str) -> bytes:
    """A message with odd but valid headers and body: an earlier hop's trace field,
    folded fields (tab and spaces), runs of spaces, a trailing space, no space after
    the colon, an empty field, a repeated field, lower-case names; body lines that
    start with a dot or are one ("." and ".." on the wire, RFC 5321 §4.5.2), "From "
    at a line start, empty lines, a 900-octet line. ``variant``: ``"7bit"`` (ASCII
    only), ``"8bitmime"`` (an 8-bit body) or ``"smtputf8"`` (a raw UTF-8 Subject and
    From too, RFC 6532)."""
    subject = b"Relay test " + token.encode()
    name = b"Alice Example"
    body_8 = b"plain ASCII line\r\n"
    if variant in ("8bitmime", "smtputf8"):
        body_8 = "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e \u2615 na\u00efve\r\n".encode()
    if variant == "smtputf8":
        subject = "R\u00e9sum\u00e9 \u2615 \u65e5\u672c ".encode() + token.encode()
        name = "Al\u00efce \u00c9xample".encode()
    return (
        b"Received: from old.a.test (old.a.test [192.0.2.1])\r\n"
        b"\tby relay.a.test with ESMTP id OLD1; Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        b"From: " + name + b" <alice@a.test>\r\n"
        b"To: Bob <bob@b.test>,\r\n"
        b"  Alice at Postfix <alice@example.test>\r\n"
        b"Subject: " + subject + b"\r\n"
        b"Message-ID: <" + token.encode() + b"@a.test>\r\n"
        b"Date: Thu, 01 Jan 2026 00:00:01 +0000\r\n"
        b"X-Odd:    many   spaces   and a trailing one \r\n"
        b"X-Folded: first part\r\n"
        b"\tsecond part after a tab\r\n"
        b"     third part after spaces\r\n"
        b"x-lower-case:no space after the colon\r\n"
        b"X-Empty:\r\n"
        b"X-Repeated: one\r\n"
        b"X-Repeated: two\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: " + (b"7bit" if variant == "7bit" else b"8bit") + b"\r\n"
        b"\r\n"
        b"Hello,\r\n"
        b".a line that starts with a dot\r\n"
        b"..two dots\r\n"
        b".\r\n"
        b"From the start of a line (no > is added)\r\n"
        b"trailing spaces   \r\n"
        b"\tleading tab\r\n"
        b"\r\n"
        b"\r\n"
        + body_8
        + b"x" * 900 + b"\r\n"
        b"-- \r\n"
        b"last line\r\n"
    )


OPTIONS = {"7bit": (), "8bitmime": ("BODY=8BITMIME",),
           "smtputf8": ("SMTPUTF8", "BODY=8BITMIME")}

TRACE = {b"return-path", b"delivered-to", b"received", b"x-original-to"}


def trace_fields(delivered: bytes, sent: bytes) -> list[bytes]:
    """The header fields that ``delivered`` has in front of ``sent`` (each unfolded
    field whole), after checking that the rest is ``sent`` octet for octet and that
    they are trace fields only. Both Maildirs store LF line ends; ``sent`` has CRLF
    only, so it is compared with LF."""
    assert b"\r" not in delivered.replace(b"\r\n", b"")
    delivered = delivered.replace(b"\r\n", b"\n")
    sent = sent.replace(b"\r\n", b"\n")
    assert delivered.endswith(sent), (delivered[-len(sent) - 200:], sent)
    prefix = delivered[: len(delivered) - len(sent)]
    fields: list[bytes] = []
    for line in prefix.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            assert fields, line
            fields[-1] += line
        else:
            fields.append(line)
    names = [f.split(b":", 1)[0].strip().lower() for f in fields]
    assert set(names) <= TRACE, names
    return fields


def received_by(fields: list[bytes]) -> list[str]:
    """The ``by`` host of each Received: field, top (last hop) first."""
    out = []
    for f in fields:
        if f.lower().startswith(b"received:"):
            words = f.decode().split()
            out.append(words[words.index("by") + 1].rstrip(";"))
    return out


# --- 1. relayed unchanged ----------------------------------------------------------------


@pytest.mark.parametrize("variant", ["7bit", "8bitmime", "smtputf8"])
def test_relayed_by_mx_unchanged_to_our_mta_and_to_postfix(
    tmp_path: Path, knot: Knot, postfix: Postfix, port: int, variant: str
) -> None:
    token = f"unchanged-{variant}-{tmp_path.name}"
    message = original(token, variant)

    async def test(net: Net) -> None:
        refused = await asyncio.to_thread(submit, net.a.port,
                                          ["bob@b.test", "alice@example.test"], message,
                                          OPTIONS[variant])
        assert refused == {}
        at_b = await until(lambda: net.b_inbox("bob"), "no message at MTA B")
        at_postfix = await asyncio.to_thread(postfix.wait_delivered, "alice",
                                             token.encode(), 30.0)
        await until(lambda: len(net.a.queue) == 0 and len(net.b.queue) == 0,
                    "the queues never emptied")
        assert len(at_b) == 1 and net.bounces.messages == []

        # MTA B: the MDA's Return-Path and Delivered-To, B's Received, A's Received.
        fields = trace_fields(at_b[0], message)
        assert [f.split(b":")[0] for f in fields] == [
            b"Return-Path", b"Delivered-To", b"Received", b"Received"]
        assert fields[0] == b"Return-Path: <alice@a.test>\n"
        assert received_by(fields) == ["mx.b.test", "mx.a.test"]

        # Postfix's virtual(8): Return-Path and Delivered-To, then its Received: and A's.
        fields = trace_fields(at_postfix, message)
        names = [f.split(b":")[0].lower() for f in fields]
        assert names.count(b"received") == 2, fields
        assert b"return-path: <alice@a.test>\n" in [f.lower() for f in fields]
        assert received_by(fields) == ["mx.example.test", "mx.a.test"]
        # A's Received names the client that submitted, and how (RFC 5321 §4.4).
        ours = next(f for f in fields if b"by mx.a.test" in f)
        assert b"client.a.test" in ours and b"127.0.0.1" in ours

    run(test, tmp_path, knot, postfix, port)


def test_received_names_utf8smtp_for_an_smtputf8_message(
    tmp_path: Path, knot: Knot, postfix: Postfix, port: int
) -> None:
    message = original(f"utf8smtp-{tmp_path.name}", "smtputf8")

    async def test(net: Net) -> None:
        await asyncio.to_thread(submit, net.a.port, ["bob@b.test"], message,
                                OPTIONS["smtputf8"])
        at_b = await until(lambda: net.b_inbox("bob"), "no message at MTA B")
        ours = next(f for f in trace_fields(at_b[0], message) if b"by mx.a.test" in f)
        assert b" with UTF8SMTP" in ours, ours  # RFC 6531 §4.3: the WITH protocol

    run(test, tmp_path, knot, postfix, port)


def test_relayed_with_data_not_bdat_unchanged_to_postfix(
    tmp_path: Path, knot: Knot, postfix: Postfix, port: int
) -> None:
    """The same, to Postfix's listener without CHUNKING: MTA A must send DATA, with
    its dot-stuffing (RFC 5321 §4.5.2), where the others got BDAT (RFC 3030)."""
    token = f"data-{tmp_path.name}"
    message = original(token, "smtputf8")

    async def test(net: Net) -> None:
        await asyncio.to_thread(submit, net.a.port, ["bob@example.test"], message,
                                OPTIONS["smtputf8"])
        delivered = await asyncio.to_thread(postfix.wait_delivered, "bob",
                                            token.encode(), 30.0)
        assert received_by(trace_fields(delivered, message)) == [
            "mx.example.test", "mx.a.test"]
        await until(lambda: len(net.a.queue) == 0, "the queue never emptied")

    run(test, tmp_path, knot, postfix, port, outbound_port=postfix.data_port)


@pytest.mark.parametrize("chunking", [True, False])
def test_relayed_octet_for_octet_to_a_scripted_peer(
    tmp_path: Path, knot: Knot, postfix: Postfix, port: int, chunking: bool
) -> None:
    """What the next hop reads off the wire (CRLF line ends, nothing stored) is the
    submitted message under one Received: field, over BDAT or DATA."""
    message = original(f"wire-{chunking}-{tmp_path.name}", "smtputf8")

    async def test(net: Net) -> None:
        await asyncio.to_thread(submit, net.a.port, ["dave@s.test"], message,
                                OPTIONS["smtputf8"])
        await until(lambda: net.scripted.messages, "never delivered")
        envelope, data = net.scripted.messages[0]
        assert envelope.mail_parameters.smtputf8
        assert (envelope.mail_parameters.body or "").upper() == "8BITMIME"
        # One field in front (A's), then the message as submitted, octet for octet.
        ours, _, rest = data.partition(b"\r\nReceived: from old.a.test")
        assert b"\r\nReceived: from old.a.test" + rest == b"\r\n" + message
        assert ours.startswith(b"Received: from client.a.test ([127.0.0.1])\r\n\tby mx.a.test")
        assert ours.count(b"Received:") == 1

    run(test, tmp_path, knot, postfix, port, scripted_config={"chunking": chunking})


# --- 2. retries, refusals, bounces -----------------------------------------------------------


def test_451_from_the_peer_is_retried_then_delivered(
    tmp_path: Path, knot: Knot, postfix: Postfix, port: int
) -> None:
    later = Reply(code=451, enhanced="4.3.0", lines=("Not now, try again",))
    scripted = Scripted(data=[later, later])
    message = original(f"retry-{tmp_path.name}", "8bitmime")

    async def test(net: Net) -> None:
        await asyncio.to_thread(submit, net.a.port, ["dave@s.test"], message,
                                OPTIONS["8bitmime"])
        await until(lambda: net.scripted.messages, "never delivered")
        await until(lambda: len(net.a.queue) == 0, "the queue never emptied")
        # Two 451s after the data, then 250: three transactions, one copy kept.
        assert net.scripted.transactions == 3 and len(net.scripted.messages) == 1
        envelope, data = net.scripted.messages[0]
        assert str(envelope.mail_from) == "<alice@a.test>"
        assert [str(r.path) for r in envelope.recipients] == ["<dave@s.test>"]
        assert data.endswith(message) and data.startswith(b"Received: from client.a.test")
        assert net.bounces.messages == []  # no failure, and no delay notice asked for

    run(test, tmp_path, knot, postfix, port, scripted)


def test_451_from_postfix_is_retried_then_delivered(
    tmp_path: Path, knot: Knot, postfix: Postfix, port: int
) -> None:
    token = f"postfix-retry-{tmp_path.name}"
    message = original(token, "7bit")

    async def test(net: Net) -> None:
        await asyncio.to_thread(postfix.set_recipient_access,
                                "carol@example.test 451 4.7.1 Not now, try again\n")
        try:
            await asyncio.to_thread(submit, net.a.port, ["carol@example.test"], message)

            def deferred() -> bool:
                messages = net.a.queue.messages()
                if not messages:
                    return False
                r = messages[0].recipients[0]
                return (r.state == "queued" and r.attempts >= 1 and r.reply is not None
                        and r.reply.code == 451)

            await until(deferred, "never deferred", log=postfix.log)
            r = net.a.queue.messages()[0].recipients[0]
            assert r.reply is not None and r.reply.enhanced == "4.7.1"
            assert r.remote_mta == "mx.example.test"
            assert postfix.delivered("carol") == []
        finally:
            await asyncio.to_thread(postfix.set_recipient_access, "")
        delivered = await asyncio.to_thread(postfix.wait_delivered, "carol",
                                            token.encode(), 30.0)
        trace_fields(delivered, message)
        await until(lambda: len(net.a.queue) == 0, "the queue never emptied")
        assert net.bounces.messages == []

    run(test, tmp_path, knot, postfix, port)


def status_blocks(dsn: email.message.Message) -> list[email.message.Message]:
    """The field blocks of a DSN's message/delivery-status part (RFC 3464 §2.1), or
    of its message/global-delivery-status part (RFC 6533 §6.1, for an SMTPUTF8
    message: Python's email package parses that type as one message, so its blocks
    are split here)."""
    parts = [p for p in dsn.walk() if p.get_content_type() in (
        "message/delivery-status", "message/global-delivery-status")]
    assert len(parts) == 1
    payload = parts[0].get_payload()
    assert isinstance(payload, list)
    blocks = [b for b in payload if isinstance(b, email.message.Message)]
    assert len(blocks) == len(payload)
    if parts[0].get_content_type() == "message/global-delivery-status":
        assert len(blocks) == 1
        raw = blocks[0].as_bytes(policy=email.policy.SMTPUTF8)
        parser = email.parser.BytesHeaderParser(policy=email.policy.default)
        blocks = [parser.parsebytes(b + b"\r\n")
                  for b in re.split(rb"\r?\n\r?\n", raw.strip()) if b.strip()]
    return blocks


def the_bounce(net: Net, report_type: str = "delivery-status") -> email.message.Message:
    """The one notice MTA A delivered to alice@a.test: an RFC 3464 report, from <>
    (``report_type`` ``global-delivery-status`` for an SMTPUTF8 message, RFC 6533)."""
    assert len(net.bounces.messages) == 1, net.bounces.messages
    envelope, data = net.bounces.messages[0]
    assert envelope.mail_from.mailbox is None  # MAIL FROM:<> (RFC 5321 §4.5.5)
    assert [str(r.path) for r in envelope.recipients] == ["<alice@a.test>"]
    dsn = email.message_from_bytes(data, policy=email.policy.default)
    assert dsn.get_content_type() == "multipart/report"  # RFC 6522 §3
    assert dsn.get_param("report-type") == report_type
    assert dsn["To"] is not None and "alice@a.test" in str(dsn["To"])
    assert dsn["Auto-Submitted"] == "auto-replied"  # RFC 3834 §5
    return dsn


@pytest.mark.parametrize(("peer", "variant"), [
    ("ours", "7bit"), ("postfix", "7bit"), ("postfix", "smtputf8")])
def test_550_for_one_of_two_recipients_bounces_it_and_delivers_the_other(
    tmp_path: Path, knot: Knot, postfix: Postfix, port: int, peer: str, variant: str
) -> None:
    domain, user, remote = (("b.test", "bob", "mx.b.test") if peer == "ours"
                            else ("example.test", "alice", "mx.example.test"))
    token = f"bounce-{peer}-{variant}-{tmp_path.name}"
    message = original(token, variant)

    async def test(net: Net) -> None:
        refused = await asyncio.to_thread(
            submit, net.a.port, [f"{user}@{domain}", f"nobody@{domain}"], message,
            OPTIONS[variant])
        assert refused == {}  # MTA A took both: it is the next hop that refuses one
        await until(lambda: net.bounces.messages, "no bounce",
                    log=postfix.log if peer == "postfix" else lambda: "")
        if peer == "ours":
            delivered = await until(lambda: net.b_inbox(user), "not delivered")
            assert len(delivered) == 1
            trace_fields(delivered[0], message)
        else:
            delivered = await asyncio.to_thread(postfix.wait_delivered, user,
                                                token.encode(), 30.0)
            trace_fields(delivered, message)
        await until(lambda: len(net.a.queue) == 0, "the queue never emptied")

        dsn = the_bounce(net, "global-delivery-status" if variant == "smtputf8"
                         else "delivery-status")
        blocks = status_blocks(dsn)
        assert len(blocks) == 2  # the per-message block and the failed recipient only
        head, failed = blocks
        assert head["Reporting-MTA"] == "dns; mx.a.test"  # RFC 3464 §2.2.2
        assert head["Arrival-Date"] is not None  # §2.2.5
        # RFC 3464 §2.3: the per-recipient fields.
        assert failed["Final-Recipient"] == f"rfc822; nobody@{domain}"  # §2.3.2
        assert failed["Action"] == "failed"  # §2.3.3
        assert failed["Status"] == "5.1.1"  # §2.3.4 (RFC 3463: bad destination mailbox)
        assert failed["Remote-MTA"] == f"dns; {remote}"  # §2.3.5
        diagnostic = " ".join(str(failed["Diagnostic-Code"]).split())  # §2.3.6
        assert diagnostic.startswith("smtp; 550 5.1.1"), diagnostic
        if peer == "postfix":
            assert "User unknown" in diagnostic, diagnostic
        assert failed["Last-Attempt-Date"] is not None  # §2.3.7
        # The original comes back (RFC 3464 §2: the third part), with its Message-ID.
        parts = dsn.get_payload()
        assert isinstance(parts, list) and len(parts) == 3
        returned = parts[2]
        assert isinstance(returned, email.message.Message)
        if variant == "smtputf8":  # RFC 6533 §6: the global types for an SMTPUTF8 message
            assert returned.get_content_type() in ("message/global",
                                                   "message/global-headers")
        else:
            assert returned.get_content_type() in ("message/rfc822",
                                                   "text/rfc822-headers")
        assert f"<{token}@a.test>".encode() in returned.as_bytes(
            policy=email.policy.SMTPUTF8)

    run(test, tmp_path, knot, postfix, port)


def test_null_mx_fails_at_once_with_5_1_10(
    tmp_path: Path, knot: Knot, postfix: Postfix, port: int
) -> None:
    message = original(f"nullmx-{tmp_path.name}", "7bit")

    async def test(net: Net) -> None:
        await asyncio.to_thread(submit, net.a.port, ["someone@null.test"], message)
        await until(lambda: net.bounces.messages, "no bounce")
        await until(lambda: len(net.a.queue) == 0, "the queue never emptied")
        # One attempt for the recipient and one for the notice: no retry (RFC 7505
        # §4.1: a null MX is a permanent failure; no connection is tried).
        assert net.a.outbound.attempts == 2
        failed = status_blocks(the_bounce(net))[1]
        assert failed["Final-Recipient"] == "rfc822; someone@null.test"
        assert failed["Action"] == "failed"
        assert failed["Status"] == "5.1.10"  # RFC 7505 §4.1
        assert failed["Remote-MTA"] is None  # nobody was asked

    run(test, tmp_path, knot, postfix, port)


def test_notify_success_through_a_hop_without_dsn_is_reported_relayed(
    tmp_path: Path, knot: Knot, postfix: Postfix, port: int
) -> None:
    """NOTIFY=SUCCESS, and the next hop offers no DSN: the request cannot go on, so
    MTA A reports the hand-over itself with Action: relayed (RFC 3461 §4.1, RFC 3464
    §2.3.3: "relayed" is for a next hop that will not send DSNs)."""
    message = original(f"relayed-{tmp_path.name}", "7bit")

    async def test(net: Net) -> None:
        await asyncio.to_thread(submit, net.a.port, ["dave@s.test"], message,
                                rcpt_options=["NOTIFY=SUCCESS"])
        await until(lambda: net.scripted.messages and net.bounces.messages,
                    "no success notice")
        envelope, _ = net.scripted.messages[0]
        assert envelope.recipients[0].parameters.notify is None  # not passed on
        failed = status_blocks(the_bounce(net))[1:]
        assert [(b["Final-Recipient"], b["Action"]) for b in failed] == [
            ("rfc822; dave@s.test", "relayed")]
        assert str(failed[0]["Status"]).startswith("2.")

    run(test, tmp_path, knot, postfix, port, scripted_config={"dsn": False})


def test_notify_success_through_a_hop_with_dsn_is_left_to_the_hop(
    tmp_path: Path, knot: Knot, postfix: Postfix, port: int
) -> None:
    """NOTIFY=SUCCESS, and the next hop (Postfix) offers DSN: MTA A passes NOTIFY on
    and the final MTA reports the delivery; MTA A issues no success notice of its own
    (RFC 3461 §4.1 and its relaying rules: a notice when the request cannot be passed
    on, "relayed"; RFC 3464 §2.3.3: "delivered" means delivered to the recipient)."""
    token = f"notify-{tmp_path.name}"
    message = original(token, "7bit")

    async def test(net: Net) -> None:
        await asyncio.to_thread(submit, net.a.port, ["erin@example.test"], message,
                                rcpt_options=["NOTIFY=SUCCESS"])
        await asyncio.to_thread(postfix.wait_delivered, "erin", token.encode(), 30.0)
        # Postfix got NOTIFY=SUCCESS: it sends the success notice itself (to its error
        # transport here), and logs that.
        line = await asyncio.to_thread(postfix.wait_log, f"message-id=<{token}@a.test>")
        queue_id = line.split("]: ", 1)[1].split(":", 1)[0]
        await asyncio.to_thread(postfix.wait_log,
                                f"{queue_id}: sender delivery status notification")
        await until(lambda: len(net.a.queue) == 0, "the queue never emptied")
        await asyncio.sleep(0.5)  # time for a notice to be queued and delivered
        assert [data[:200] for _, data in net.bounces.messages] == []

    run(test, tmp_path, knot, postfix, port)


# --- 4. the same relay by Postfix, for comparison ----------------------------------------------


def test_postfix_relaying_the_same_message_delivers_the_same_octets(
    tmp_path: Path, knot: Knot, postfix: Postfix, port: int
) -> None:
    """The same message relayed to MTA B once by our MTA (by MX lookup) and once by
    Postfix (by its transport map): B gets the same octets under the trace fields."""
    token = f"compare-{tmp_path.name}"
    message = original(token, "smtputf8")

    async def test(net: Net) -> None:
        await asyncio.to_thread(submit, net.a.port, ["bob@b.test"], message,
                                OPTIONS["smtputf8"])
        await asyncio.to_thread(submit, port, ["bob@b.test"], message,
                                OPTIONS["smtputf8"], host=POSTFIX)
        both = await until(lambda: (got := net.b_inbox("bob")) and len(got) == 2 and got,
                           "two copies at MTA B", log=postfix.log)
        by = sorted(received_by(trace_fields(m, message))[1] for m in both)
        assert by == ["mx.a.test", "mx.example.test"]

    run(test, tmp_path, knot, postfix, port)
