"""The MTA (mailagents/agents/mta.py) and its delivery loop (agents/_outbound.py,
agents/_hop.py) on loopback: smtplib submits, the queue holds, the outbound side finds
the next hop by MX lookup (a StaticLookup table) on 127.0.0.x addresses of one test
port, retries, bounces, and never relays for strangers."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import smtplib
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mailagents.agents.mta import MTA
from mailagents.aio import Session, SMTPHandler, SMTPServer
from mailagents.delivery import Handoff, RecipientResult
from mailagents.dns import MXResolver, ResolverConfig, StaticLookup
from mailagents.queue import Queue, RetrySchedule
from mailagents.smtp import Accept, Envelope, RcptTo, Reject, Reply, ServerConfig

TIMEOUT = 30.0
MESSAGE = (
    b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: hello\r\n"
    b"Message-ID: <1@a.test>\r\nX-Odd:   spaced   \r\n\r\nHello Bob.\r\n.leading dot\r\n"
)
FAST = RetrySchedule(first=60.0, factor=1.0, maximum=60.0, delay_notice=600.0, give_up=3600.0)


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def free_port(host: str = "127.0.0.2") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def resolver(zone: dict[str, dict[str, list[str]]]) -> MXResolver:
    return MXResolver(ResolverConfig(families=(4,)), lookup=StaticLookup(zone))


ZONE = {
    "b.test": {"MX": ["10 mx.b.test."]},
    "mx.b.test": {"A": ["127.0.0.2"]},
    "c.test": {"MX": ["10 mx1.c.test.", "20 mx2.c.test."]},
    "mx1.c.test": {"A": ["127.0.0.3"]},
    "mx2.c.test": {"A": ["127.0.0.4"]},
    "null.test": {"MX": ["0 ."]},
}


class Local:
    """A local delivery that keeps what it is given."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, bytes]] = []

    async def __call__(self, handoff: Handoff) -> list[RecipientResult]:
        self.messages.append((handoff.envelope, handoff.message.read()))
        return [RecipientResult.ok(r) for r in handoff.envelope.recipients]


@dataclass
class Peer(SMTPHandler):
    """A next hop: keeps each message; ``rcpt`` and ``data`` script its replies."""

    rcpt: Callable[[str], Reply | None] = lambda address: None
    data: list[Reply] = field(default_factory=list)  # replies after DATA, then 250s
    messages: list[tuple[Envelope, bytes]] = field(default_factory=list)
    sessions: int = 0

    async def on_hello(self, session: Session, event: Any) -> Accept | Reject:
        self.sessions += 1
        return Accept()

    async def on_rcpt(self, session: Session, event: RcptTo) -> Accept | Reject:
        assert event.path.mailbox is not None
        reply = self.rcpt(str(event.path.mailbox))
        return Accept() if reply is None else Reject(reply=reply)

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject:
        if self.data:
            reply = self.data.pop(0)
            if reply.code >= 400:
                return Reject(reply=reply)
        self.messages.append((envelope, message))
        return Accept()


async def start_peer(peer: Peer, host: str, port: int, **config: Any) -> SMTPServer:
    server = SMTPServer(peer, ServerConfig(hostname=f"peer-{host}", **config))
    await server.start(host, port)
    return server


def make_mta(tmp_path: Path, port: int, *, local: Local | None = None, name: str = "a",
             **options: Any) -> MTA:
    options.setdefault("relay_networks", ["127.0.0.1/32"])
    options["outbound_options"] = {"idle_timeout": 0.2, "poll_interval": 0.2,
                                   **options.get("outbound_options", {})}
    return MTA(
        f"mx.{name}.test",
        local_domains={f"{name}.test"},
        queue=Queue(tmp_path / f"queue-{name}", schedule=FAST, fsync=False),
        deliver=local or Local(),
        resolver=resolver(ZONE),
        outbound_port=port,
        **options,
    )


def submit(port: int, sender: str, recipients: Sequence[str], message: bytes = MESSAGE) -> Any:
    with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
        return client.sendmail(sender, list(recipients), message)


async def until(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_relays_through_the_queue_to_the_mx_unchanged(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port()
        peer = Peer()
        server = await start_peer(peer, "127.0.0.2", port)
        mta = make_mta(tmp_path, port)
        try:
            await mta.serve("127.0.0.1", 0)
            refused = await asyncio.to_thread(submit, mta.port, "alice@a.test", ["bob@b.test"])
            assert refused == {}
            await until(lambda: len(peer.messages) == 1)
            envelope, received = peer.messages[0]
            assert str(envelope.mail_from) == "<alice@a.test>"
            assert [str(r.path) for r in envelope.recipients] == ["<bob@b.test>"]
            first, _, rest = received.partition(b"\r\n")
            assert first.startswith(b"Received: from ")
            assert received.endswith(MESSAGE)  # every original header, the body unchanged
            await until(lambda: len(mta.queue) == 0)
        finally:
            await mta.close()
            await server.close()

    run(main())


def test_local_domains_go_to_the_local_delivery(tmp_path: Path) -> None:
    async def main() -> None:
        local = Local()
        mta = make_mta(tmp_path, free_port(), local=local, relay_networks=[])
        try:
            await mta.serve("127.0.0.1", 0)
            await asyncio.to_thread(submit, mta.port, "x@elsewhere.test", ["carol@a.test"])
            await until(lambda: len(local.messages) == 1)
            envelope, data = local.messages[0]
            assert [str(r.path) for r in envelope.recipients] == ["<carol@a.test>"]
            assert data.endswith(MESSAGE) and data.startswith(b"Received: from ")
        finally:
            await mta.close()

    run(main())


OPEN_RELAY_TRICKS = [
    "bob@b.test",
    "bob%b.test@a.test",
    "b.test!bob@a.test",
    '"bob@b.test"@a.test',
    "@a.test:bob@b.test",
    "bob@b.test.",
    "bob@[127.0.0.2]",
]


@pytest.mark.parametrize("recipient", OPEN_RELAY_TRICKS)
def test_never_an_open_relay(tmp_path: Path, recipient: str) -> None:
    async def main() -> None:
        mta = make_mta(tmp_path, free_port(), relay_networks=[])
        try:
            await mta.serve("127.0.0.1", 0)

            def attempt() -> tuple[int, bytes]:
                with smtplib.SMTP("127.0.0.1", mta.port, timeout=TIMEOUT) as client:
                    client.ehlo("stranger.test")
                    assert client.mail("x@stranger.test")[0] == 250
                    return client.docmd(f"RCPT TO:<{recipient}>")

            code, text = await asyncio.to_thread(attempt)
            assert code >= 500, (code, text)
            assert len(mta.queue) == 0
        finally:
            await mta.close()

    run(main())


def test_451_then_delivered_on_retry(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port()
        later = Reply(code=451, enhanced="4.3.0", lines=("Not now",))
        peer = Peer(data=[later])
        server = await start_peer(peer, "127.0.0.2", port)
        mta = make_mta(tmp_path, port)
        out = mta.outbound
        try:
            queued = await _enqueue(mta, ["bob@b.test"])
            assert await out.run_once(now=1000.0) == 1
            state = mta.queue.get(queued)
            r = state.recipients[0]
            assert (r.state, r.attempts, r.next_attempt, r.reply) == ("queued", 1, 1060.0, later)
            assert r.remote_mta == "mx.b.test" and peer.messages == []
            assert await out.run_once(now=1030.0) == 0  # not due yet
            assert await out.run_once(now=1060.0) == 1
            assert len(peer.messages) == 1 and queued not in mta.queue
        finally:
            await out.close()
            await server.close()

    run(main())


async def _enqueue(mta: MTA, recipients: Sequence[str], sender: str = "alice@a.test",
                   message: bytes = MESSAGE, now: float = 1000.0, **params: Any) -> str:
    from mailagents.delivery import Message
    from mailagents.smtp import Mailbox, MailParameters, RcptParameters, Recipient
    from mailagents.smtp import Path as SMTPPath

    def path(address: str) -> SMTPPath:
        local, _, domain = address.rpartition("@")
        return SMTPPath(Mailbox(local, domain))

    envelope = Envelope(
        mail_from=path(sender) if sender else SMTPPath(None),
        mail_parameters=MailParameters(**params),
        recipients=tuple(Recipient(path=path(r), parameters=RcptParameters())
                         for r in recipients),
        size=len(message),
    )
    queued = await asyncio.to_thread(mta.queue.enqueue, envelope,
                                     Message.from_bytes(message), now=now)
    return queued.id


def test_550_for_one_recipient_bounces_it_and_delivers_the_other(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port()
        no = Reply(code=550, enhanced="5.1.1", lines=("No such user here",))
        peer = Peer(rcpt=lambda a: no if a.startswith("nobody") else None)
        server = await start_peer(peer, "127.0.0.2", port)
        local = Local()
        mta = make_mta(tmp_path, port, local=local)
        out = mta.outbound
        try:
            queued = await _enqueue(mta, ["bob@b.test", "nobody@b.test"])
            await out.run_once(now=1000.0)
            assert [str(r.path) for r in peer.messages[0][0].recipients] == ["<bob@b.test>"]
            assert queued not in mta.queue  # the failure notice is queued: it is done
            await out.run_once(now=1000.0)  # the notice goes to alice@a.test, local
            assert len(local.messages) == 1
            envelope, data = local.messages[0]
            assert envelope.mail_from.mailbox is None  # MAIL FROM:<>
            assert [str(r.path) for r in envelope.recipients] == ["<alice@a.test>"]
            dsn = email.message_from_bytes(data, policy=email.policy.default)
            assert dsn.get_content_type() == "multipart/report"
            assert dsn.get_param("report-type") == "delivery-status"
            assert dsn["Auto-Submitted"] == "auto-replied"
            blocks = status_blocks(dsn)
            assert blocks[0]["Reporting-MTA"] == "dns; mx.a.test"
            assert blocks[1]["Final-Recipient"] == "rfc822; nobody@b.test"
            assert blocks[1]["Action"] == "failed" and blocks[1]["Status"] == "5.1.1"
            assert blocks[1]["Remote-MTA"] == "dns; mx.b.test"
            assert "550 5.1.1 No such user here" in blocks[1]["Diagnostic-Code"]
            assert len(blocks) == 2  # only the failed recipient is reported
        finally:
            await out.close()
            await server.close()

    run(main())


def status_blocks(dsn: Any) -> list[Any]:
    """The header blocks of a DSN's message/delivery-status part."""
    parts = [p for p in dsn.walk() if p.get_content_type() == "message/delivery-status"]
    assert len(parts) == 1
    blocks = parts[0].get_payload()
    assert isinstance(blocks, list)
    return blocks


def test_null_mx_bounces_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        local = Local()
        mta = make_mta(tmp_path, free_port(), local=local)
        out = mta.outbound
        try:
            queued = await _enqueue(mta, ["someone@null.test"])
            await out.run_once(now=1000.0)
            assert queued not in mta.queue
            await out.run_once(now=1000.0)
            dsn = email.message_from_bytes(local.messages[0][1], policy=email.policy.default)
            assert status_blocks(dsn)[1]["Status"] == "5.1.10"
        finally:
            await out.close()

    run(main())


def test_next_mx_when_the_first_does_not_answer(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port("127.0.0.4")
        peer = Peer()
        server = await start_peer(peer, "127.0.0.4", port)  # mx2; mx1 (127.0.0.3) is down
        mta = make_mta(tmp_path, port)
        out = mta.outbound
        try:
            queued = await _enqueue(mta, ["dave@c.test"])
            await out.run_once(now=1000.0)
            assert len(peer.messages) == 1 and queued not in mta.queue
        finally:
            await out.close()
            await server.close()

    run(main())


def test_no_host_answers_defers(tmp_path: Path) -> None:
    async def main() -> None:
        mta = make_mta(tmp_path, free_port("127.0.0.3"))
        out = mta.outbound
        try:
            queued = await _enqueue(mta, ["dave@c.test"])
            await out.run_once(now=1000.0)
            r = mta.queue.get(queued).recipients[0]
            assert r.state == "queued" and r.reply is not None and r.reply.code == 451
            assert r.reply.enhanced == "4.4.1"
        finally:
            await out.close()

    run(main())


class TwoPerTransaction(Peer):
    """Answers 452 to the third RCPT of each transaction (RFC 5321 §4.5.3.1.10)."""

    async def on_mail(self, session: Session, event: Any) -> Accept | Reject:
        session.data["count"] = 0
        return Accept()

    async def on_rcpt(self, session: Session, event: RcptTo) -> Accept | Reject:
        session.data["count"] += 1
        if session.data["count"] > 2:
            return Reject(reply=Reply(code=452, enhanced="4.5.3", lines=("Too many",)))
        return Accept()


def test_too_many_recipients_go_in_a_new_transaction_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port()
        peer = TwoPerTransaction()
        server = await start_peer(peer, "127.0.0.2", port)
        mta = make_mta(tmp_path, port)
        out = mta.outbound
        try:
            rcpts = [f"u{i}@b.test" for i in range(5)]
            queued = await _enqueue(mta, rcpts)
            await out.run_once(now=1000.0)
            got = [[str(r.path.mailbox) for r in e.recipients] for e, _ in peer.messages]
            assert got == [rcpts[:2], rcpts[2:4], rcpts[4:]]
            assert queued not in mta.queue and peer.sessions == 1
        finally:
            await out.close()
            await server.close()

    run(main())


def test_one_connection_carries_several_messages(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port()
        peer = Peer()
        server = await start_peer(peer, "127.0.0.2", port)
        mta = make_mta(tmp_path, port, outbound_options={"max_per_destination": 1,
                                                          "idle_timeout": 0.5})
        out = mta.outbound
        try:
            for i in range(5):
                await _enqueue(mta, [f"u{i}@b.test"], now=1000.0 + i)
            await out.run_once(now=2000.0)
            assert len(peer.messages) == 5 and peer.sessions == 1
            assert len(mta.queue) == 0
        finally:
            await out.close()
            await server.close()

    run(main())


def test_smtputf8_message_to_a_hop_without_it_fails_with_5_6_7(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port()
        peer = Peer()
        server = await start_peer(peer, "127.0.0.2", port, smtputf8=False)
        local = Local()
        mta = make_mta(tmp_path, port, local=local)
        out = mta.outbound
        try:
            queued = await _enqueue(mta, ["bob@b.test"], smtputf8=True, body="8BITMIME")
            await out.run_once(now=1000.0)
            assert queued not in mta.queue and peer.messages == []
            await out.run_once(now=1000.0)
            dsn = email.message_from_bytes(local.messages[0][1], policy=email.policy.default)
            assert "5.6.7" in dsn.as_string()
        finally:
            await out.close()
            await server.close()

    run(main())


def test_queue_survives_restart(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port()
        mta = make_mta(tmp_path, port)
        queued = await _enqueue(mta, ["bob@b.test"])
        await mta.outbound.close()
        peer = Peer()
        server = await start_peer(peer, "127.0.0.2", port)
        again = make_mta(tmp_path, port)
        try:
            assert queued in again.queue
            await again.outbound.run_once(now=1000.0)
            assert len(peer.messages) == 1 and queued not in again.queue
        finally:
            await again.outbound.close()
            await server.close()

    run(main())


EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def test_the_example_mta_delivers_locally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import runpy

    monkeypatch.chdir(tmp_path)
    code = (EXAMPLES / "mta.py").read_text()
    body = code.split("async def main", 1)[1].split("\n\n\n")[0]
    assert len([line for line in body.splitlines() if line.strip()]) < 15  # "a few lines"
    namespace = runpy.run_path(str(EXAMPLES / "mta.py"))

    async def main() -> None:
        port = free_port("127.0.0.1")
        task = asyncio.create_task(namespace["main"](port))
        try:
            for _ in range(200):
                try:
                    await asyncio.to_thread(submit, port, "x@remote.test", ["alice@example.test"])
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            inbox = tmp_path / "mail" / "alice@example.test" / "new"
            await until(lambda: inbox.is_dir() and len(list(inbox.iterdir())) == 1)
            assert next(inbox.iterdir()).read_bytes().endswith(MESSAGE.replace(b"\r\n", b"\n"))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    run(main())


def test_a_failed_message_from_null_sender_is_reported_to_the_postmaster(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        port = free_port()
        no = Reply(code=550, enhanced="5.1.1", lines=("No such user here",))
        peer = Peer(rcpt=lambda a: no)
        server = await start_peer(peer, "127.0.0.2", port)
        local = Local()
        mta = make_mta(tmp_path, port, local=local)
        out = mta.outbound
        try:
            queued = await _enqueue(mta, ["nobody@b.test"], sender="")
            await out.run_once(now=1000.0)
            assert queued not in mta.queue
            await out.run_once(now=1000.0)
            [(envelope, data)] = local.messages
            assert [str(r.path) for r in envelope.recipients] == ["<postmaster@a.test>"]
            assert envelope.mail_from.mailbox is None
            assert status_blocks(email.message_from_bytes(
                data, policy=email.policy.default))[1]["Status"] == "5.1.1"
            assert len(mta.queue) == 0
        finally:
            await out.close()
            await server.close()

    run(main())


def test_a_failed_notice_to_the_postmaster_is_dropped(tmp_path: Path) -> None:
    async def main() -> None:
        class Refusing(Local):
            async def __call__(self, handoff: Handoff) -> list[RecipientResult]:
                no = Reply(code=550, enhanced="5.1.1", lines=("No",))
                return [RecipientResult.failed(r, no) for r in handoff.envelope.recipients]

        mta = make_mta(tmp_path, free_port(), local=Refusing())
        out = mta.outbound
        try:
            await _enqueue(mta, ["someone@a.test"], sender="")  # a bounce that fails
            for _ in range(3):
                await out.run_once(now=1000.0)
            assert len(mta.queue) == 0  # reported to the postmaster, who failed: dropped
        finally:
            await out.close()

    run(main())


def test_a_delivery_that_raises_is_deferred_by_the_schedule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailagents.agents import _hop

    async def broken(self: Any, job: Any, content: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(_hop.Hop, "deliver", broken)

    async def main() -> None:
        port = free_port()
        server = await start_peer(Peer(), "127.0.0.2", port)
        mta = make_mta(tmp_path, port)
        out = mta.outbound
        try:
            queued = await _enqueue(mta, ["bob@b.test"])
            await out.run_once(now=1000.0)
            r = mta.queue.get(queued).recipients[0]
            assert (r.state, r.attempts, r.next_attempt) == ("queued", 1, 1060.0)
            assert r.reply is not None and r.reply.enhanced == "4.3.0"
        finally:
            await out.close()
            await server.close()

    run(main())


# --- TLS outbound ----------------------------------------------------------------------

from mailagents.aio import TLSPolicy, make_self_signed  # noqa: E402

CERT = make_self_signed(["mx.b.test", "localhost"])


async def start_tls_peer(peer: Peer, port: int, **config: Any) -> SMTPServer:
    server = SMTPServer(peer, ServerConfig(hostname="mx.b.test", **config),
                        ssl_context=CERT.server_context())
    await server.start("127.0.0.2", port)
    return server


def _tls_run(tmp_path: Path, tls: Any, *, message_requiretls: bool = False,
             **peer_config: Any) -> tuple[Peer, Local, Any]:
    async def main() -> tuple[Peer, Local, Any]:
        port = free_port()
        peer = Peer()
        server = await start_tls_peer(peer, port, **peer_config)
        local = Local()
        mta = make_mta(tmp_path, port, local=local, tls=tls)
        out = mta.outbound
        try:
            queued = await _enqueue(mta, ["bob@b.test"], requiretls=message_requiretls)
            await out.run_once(now=1000.0)
            state = mta.queue.get(queued) if queued in mta.queue else None
            await out.run_once(now=1000.0)  # any notice, to the local sender
            return peer, local, state
        finally:
            await out.close()
            await server.close()

    result: tuple[Peer, Local, Any] = run(main())
    return result


def test_opportunistic_tls_by_default_with_an_untrusted_certificate(tmp_path: Path) -> None:
    peer, local, state = _tls_run(tmp_path, None)
    assert len(peer.messages) == 1 and state is None and local.messages == []


def test_a_verified_policy_refuses_an_untrusted_certificate_and_defers(tmp_path: Path) -> None:
    peer, local, state = _tls_run(tmp_path, {"b.test": TLSPolicy(mode="verified")})
    assert peer.messages == []
    r = state.recipients[0]
    assert r.state == "queued" and r.reply.enhanced == "4.7.5"  # never sent in plaintext


def test_a_verified_policy_with_the_right_authority_delivers(tmp_path: Path) -> None:
    policy = TLSPolicy(mode="verified", ssl_context=CERT.client_context())
    peer, _, state = _tls_run(tmp_path, {"b.test": policy})
    assert len(peer.messages) == 1 and state is None


def test_requiretls_needs_the_extension_and_a_verified_certificate(tmp_path: Path) -> None:
    policy = TLSPolicy(mode="verified", ssl_context=CERT.client_context())
    peer, _, state = _tls_run(tmp_path, {"b.test": policy}, message_requiretls=True,
                              requiretls=True)
    assert len(peer.messages) == 1 and state is None
    assert peer.messages[0][0].mail_parameters.requiretls  # passed on (RFC 8689 §4.1)


def test_requiretls_to_a_hop_without_it_fails_with_5_7_30(tmp_path: Path) -> None:
    policy = TLSPolicy(mode="verified", ssl_context=CERT.client_context())
    peer, local, _ = _tls_run(tmp_path, {"b.test": policy}, message_requiretls=True)
    assert peer.messages == []
    dsn = email.message_from_bytes(local.messages[0][1], policy=email.policy.default)
    assert status_blocks(dsn)[1]["Status"] == "5.7.30"


def test_a_stale_listing_never_attempts_a_message_twice(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port()
        peer = Peer()
        server = await start_peer(peer, "127.0.0.2", port)
        mta = make_mta(tmp_path, port)
        out = mta.outbound
        try:
            queued = await _enqueue(mta, ["bob@b.test"])
            stale = mta.queue.due(1000.0)  # read before the attempt, as the loop does
            await out.run_once(now=1000.0)
            assert queued not in mta.queue
            assert out._dispatch(stale, 1000.0) == []  # regression: it was sent again
            assert len(peer.messages) == 1
        finally:
            await out.close()
            await server.close()

    run(main())


def test_after_a_failed_job_the_next_one_reconnects_to_the_same_mx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailagents.agents import _hop

    real = _hop.Hop.deliver
    calls = []

    async def once_broken(self: Any, job: Any, content: Any) -> Any:
        calls.append(job.message.id)
        if len(calls) == 1:
            raise RuntimeError("a bug, once")
        return await real(self, job, content)

    monkeypatch.setattr(_hop.Hop, "deliver", once_broken)

    async def main() -> None:
        port = free_port()
        peer = Peer()
        server = await start_peer(peer, "127.0.0.2", port)
        mta = make_mta(tmp_path, port, outbound_options={"max_per_destination": 1})
        out = mta.outbound
        try:
            for i in range(3):
                await _enqueue(mta, [f"u{i}@b.test"], now=1000.0 + i)
            await out.run_once(now=1010.0)
            # regression: the single MX was used up, and the rest were deferred with
            # "no host to reach"
            assert len(peer.messages) == 2 and len(mta.queue) == 1
        finally:
            await out.close()
            await server.close()

    run(main())


def test_a_quoted_local_part_reaches_the_local_delivery_unchanged(tmp_path: Path) -> None:
    async def main() -> None:
        from mailagents.delivery import Message
        from mailagents.smtp import Mailbox, MailParameters, Recipient
        from mailagents.smtp import Path as SMTPPath

        local = Local()
        mta = make_mta(tmp_path, free_port(), local=local)
        out = mta.outbound
        try:
            quoted = Mailbox("joe@home", "a.test")  # "joe@home"@a.test
            envelope = Envelope(mail_from=SMTPPath(Mailbox("x", "y.test")),
                                mail_parameters=MailParameters(),
                                recipients=(Recipient(path=SMTPPath(quoted)),), size=0)
            await asyncio.to_thread(mta.queue.enqueue, envelope,
                                    Message.from_bytes(MESSAGE), now=1000.0)
            await out.run_once(now=1000.0)
            # regression: the queued text was split at its last @ ('"joe@home"', quotes
            # and all, as the local part)
            assert [r.path.mailbox for r in local.messages[0][0].recipients] == [quoted]
        finally:
            await out.close()

    run(main())
