"""mailagents.aio.SMTPClient as a relaying MTA uses it, over real sockets on 127.0.0.1:
a source address, a spooled delivery.Message streamed (never read whole), use_bdat and
chunk_size, per-recipient replies on the exceptions, and the TLS policy with its
outcome."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mailagents import delivery
from mailagents.aio import (
    ClientTimeouts,
    SelfSignedCertificate,
    Session,
    SMTPClient,
    SMTPRecipientsRefused,
    SMTPResponseError,
    SMTPServer,
    SMTPTimeout,
    SMTPTLSError,
    TLSOutcome,
    TLSPolicy,
    make_self_signed,
)
from mailagents.smtp import (
    Accept,
    Envelope,
    LMTPReplies,
    LocalProtocolError,
    MailParameters,
    Reject,
    Reply,
    ServerConfig,
)
from mailagents.smtp._data import normalize_line_ends
from mailagents.smtp.client import TransactionResult

from .test_smtp_client import (
    EHLO,
    FAST,
    HOST,
    MESSAGE,
    Mailboxes,
    Recorder,
    greet_then,
    raw_server,
    run,
    with_server,
)

Spool = Callable[[bytes], delivery.Message]


@pytest.fixture
def spooled(tmp_path: Any) -> Iterator[Spool]:
    """Make messages in spool files (memory_limit 0), as a queue holds them; closed
    at the end of the test."""
    made: list[delivery.Message] = []

    def make(data: bytes) -> delivery.Message:
        spool = delivery.MessageSpool(memory_limit=0, directory=tmp_path)
        for i in range(0, len(data), 100_000):
            spool.write(data[i : i + 100_000])
        message = spool.finish()
        assert not message.in_memory
        made.append(message)
        return message

    yield make
    for message in made:
        message.close()


def big_message(megabytes: int) -> bytes:
    line = b".a line of text that starts with a period, then some more words\r\n"
    body = line * (megabytes * (1 << 20) // len(line))
    return b"From: a@example.test\r\nTo: b@example.test\r\nSubject: big\r\n\r\n" + body


# --- source address -------------------------------------------------------------------


def test_source_address_is_bound() -> None:
    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(
            HOST, server.port, timeouts=FAST, source_address=("127.0.0.5", 0)
        ) as client:
            await client.send_message(MESSAGE, sender="a@example.test",
                                      recipients=["b@example.test"])

    handler = run(with_server(body))
    [(_, _, session)] = handler.messages
    assert session.peer[0] == "127.0.0.5"


# --- streaming a delivery.Message ------------------------------------------------------


@pytest.mark.parametrize("chunking", [False, True])
def test_spooled_message_is_streamed_not_read(
    chunking: bool, spooled: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = big_message(20)
    message = spooled(data)

    def no_read(self: delivery.Message) -> bytes:
        raise AssertionError("Message.read() was called")

    monkeypatch.setattr(delivery.Message, "read", no_read)

    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST) as client:
            result = await client.send_message(
                message, sender="a@example.test", recipients=["b@example.test"],
                chunk_size=1 << 18,
            )
            assert result.accepted == ("b@example.test",)

    config = ServerConfig(hostname="mx.example.test", chunking=chunking,
                          max_message_size=64 << 20)
    handler = run(with_server(body, config), timeout=60)
    [(envelope, received, _)] = handler.messages
    assert received == data
    assert envelope.chunked is chunking
    assert envelope.mail_parameters.size == len(data)


def test_message_object_options_and_8bit(spooled: Spool) -> None:
    eight = "Subject: Grüße\r\n\r\nbare\nline ends\rand a last line".encode()
    expected = normalize_line_ends(eight) + b"\r\n"

    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST) as client:
            for message in (delivery.Message.from_bytes(eight), spooled(eight)):
                await client.send_message(message, sender="a@example.test",
                                          recipients=["b@example.test"], use_bdat=False)
            await client.send_message(delivery.Message.from_bytes(MESSAGE),
                                      sender="a@example.test", recipients=["b@example.test"],
                                      use_bdat=True, chunk_size=7)
            with pytest.raises(ValueError):
                await client.send_message(delivery.Message.from_bytes(MESSAGE),
                                          sender="a@example.test")

    handler = run(with_server(body))
    (e1, m1, _), (e2, m2, _), (e3, m3, _) = handler.messages
    assert m1 == m2 == expected
    assert e1.mail_parameters.body == e2.mail_parameters.body == "8BITMIME"
    assert not e1.chunked and e3.chunked and m3 == MESSAGE

    async def seven_bit_only(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST) as client:
            # Refused as the bytes mode refuses it: before anything is sent.
            with pytest.raises(LocalProtocolError, match="8BITMIME"):
                await client.send_message(delivery.Message.from_bytes(eight),
                                          sender="a@example.test",
                                          recipients=["b@example.test"])
            assert (await client.noop()).code == 250

    run(with_server(seven_bit_only, ServerConfig(hostname="mx.example.test",
                                                 eightbitmime=False, smtputf8=False)))


def test_streaming_lmtp_per_recipient(spooled: Spool) -> None:
    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, lmtp=True, timeouts=FAST) as client:
            result = await client.send_message(
                spooled(MESSAGE), sender="a@example.test",
                recipients=["b@example.test", "full@example.test"],
            )
            assert result.accepted == ("b@example.test",)
            assert result.refused["full@example.test"].code == 452

    run(with_server(body, ServerConfig(hostname="mx.example.test", lmtp=True),
                    handler=Mailboxes()))


def test_server_that_stops_reading_times_out_while_streaming(spooled: Spool) -> None:
    message = spooled(big_message(16))

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 raw.example ESMTP\r\n")
        for reply in (EHLO, b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"):
            await reader.readline()
            writer.write(reply)
        await asyncio.sleep(3600)  # and read nothing more

    async def body(port: int) -> None:
        client = await SMTPClient.connect(
            HOST, port, timeouts=ClientTimeouts(data_block=0.5)
        )
        with pytest.raises(SMTPTimeout, match="took no data"):
            await client.send_message(message, sender="a@example.test",
                                      recipients=["b@example.test"])
        assert client.closed

    run(raw_server(script, body), timeout=30)


# --- the replies on the exceptions --------------------------------------------------------


class Picky(Recorder):
    """Refuses the sender m@ and, at the end of data, messages with 'reject' in them."""

    async def on_mail(self, session: Session, event: Any) -> Accept | Reject:
        mailbox = event.path.mailbox
        if mailbox is not None and mailbox.local_part == "m":
            return Reject(reply=Reply(code=553, enhanced="5.7.1", lines=("Not yours",)))
        return Accept()

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        if b"reject" in message:
            return Reject(reply=Reply(code=554, enhanced="5.7.1", lines=("Spam",)))
        return await super().on_message(session, envelope, message)


@pytest.mark.parametrize("pipelining", [False, True])
def test_refusals_carry_each_recipients_reply(pipelining: bool) -> None:
    recipients = ["b@example.test", "x@elsewhere.example", "c@example.test"]

    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST) as client:
            with pytest.raises(SMTPResponseError) as info:
                await client.send_message(MESSAGE, sender="m@example.test",
                                          recipients=recipients)
            error = info.value
            assert error.code == 553
            assert isinstance(error.transaction, TransactionResult)
            assert {a: r.code for a, r in error.replies.items()} == dict.fromkeys(
                recipients, 553
            )

            with pytest.raises(SMTPResponseError) as info:
                await client.send_message(MESSAGE + b"reject\r\n", sender="a@example.test",
                                          recipients=recipients)
            error = info.value
            assert not isinstance(error, SMTPRecipientsRefused)
            assert {a: r.code for a, r in error.replies.items()} == {
                "b@example.test": 554, "x@elsewhere.example": 550, "c@example.test": 554,
            }
            assert error.transaction is not None and error.transaction.data_replies

            with pytest.raises(SMTPRecipientsRefused) as refused:
                await client.send_message(MESSAGE, sender="a@example.test",
                                          recipients=["x@elsewhere.example"])
            assert refused.value.replies == refused.value.refused
            assert refused.value.transaction is not None

    config = ServerConfig(hostname="mx.example.test", pipelining=pipelining)
    run(with_server(body, config, handler=Picky()))


def test_421_carries_each_recipients_reply() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet_then(reader, writer, {
            b"EHLO": EHLO, b"MAIL": b"250 ok\r\n",
            b"RCPT": b"421 4.3.2 shutting down\r\n",
        })

    async def body(port: int) -> None:
        client = await SMTPClient.connect(HOST, port, timeouts=FAST)
        with pytest.raises(SMTPResponseError) as info:
            await client.send_message(MESSAGE, sender="a@example.test",
                                      recipients=["b@example.test", "c@example.test"])
        assert info.value.code == 421
        # c@'s RCPT was never sent: the 421 decided its fate too.
        assert {a: r.code for a, r in info.value.replies.items()} == {
            "b@example.test": 421, "c@example.test": 421,
        }

    run(raw_server(script, body))


# --- TLS policy and outcome ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cert() -> SelfSignedCertificate:
    return make_self_signed(["localhost"])


def tls_server(cert: SelfSignedCertificate, *, tls13_only: bool = False) -> dict[str, Any]:
    context = cert.server_context()
    if tls13_only:
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    return {"ssl_context": context}


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        TLSPolicy(mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TLSPolicy(mode="verified", on_handshake_failure="plaintext")
    with pytest.raises(ValueError):
        TLSPolicy(on_handshake_failure="never")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TLSPolicy(mode="none", ssl_context=ssl.create_default_context())
    assert TLSPolicy().mode == "opportunistic" and TLSPolicy().starttls is None
    assert TLSPolicy(mode="none").starttls is False
    assert TLSPolicy(mode="required").context().verify_mode == ssl.CERT_NONE
    assert TLSPolicy(mode="verified").context().verify_mode == ssl.CERT_REQUIRED

    async def body(server: SMTPServer, handler: Recorder) -> None:
        for bad in ({"starttls": True}, {"ssl_context": ssl.create_default_context()}):
            with pytest.raises(ValueError, match="tls_policy"):
                await SMTPClient.connect(HOST, server.port, tls_policy=TLSPolicy(), **bad)
        with pytest.raises(ValueError):
            await SMTPClient.connect(HOST, server.port, implicit_tls=True,
                                     tls_policy=TLSPolicy(mode="none"))

    run(with_server(body))


def test_opportunistic_with_an_untrusted_certificate(
    cert: SelfSignedCertificate, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(server: SMTPServer, handler: Recorder) -> None:
        with caplog.at_level(logging.INFO, logger="mailagents.aio.smtp_client"):
            async with SMTPClient.connect(HOST, server.port, timeouts=FAST,
                                          tls_policy=TLSPolicy()) as client:
                assert client.tls_active and not client.tls_downgraded
                outcome = client.tls
                assert isinstance(outcome, TLSOutcome)
                assert outcome.verified is False
                assert outcome.version.startswith("TLSv1.")
                assert outcome.cipher and outcome.bits >= 128
                assert outcome.server_hostname == HOST and not outcome.implicit
                assert outcome.peer_certificate == ssl.PEM_cert_to_DER_cert(
                    cert.cert_pem.decode()
                )
                assert outcome.subject == outcome.issuer == "CN=localhost"
                comment = outcome.received_comment()
                assert comment == (f"(using {outcome.version} with cipher {outcome.cipher} "
                                   f"({outcome.bits}/{outcome.algorithm_bits} bits))")
                await client.send_message(MESSAGE, sender="a@example.test",
                                          recipients=["b@example.test"])

    handler = run(with_server(body, **tls_server(cert)))
    assert handler.messages[0][2].tls
    infos = [r for r in caplog.records if r.levelno == logging.INFO and "TLS with" in r.message]
    assert len(infos) == 1 and "not verified" in infos[0].message


def test_verified_policy(cert: SelfSignedCertificate) -> None:
    async def body(server: SMTPServer, handler: Recorder) -> None:
        policy = TLSPolicy(mode="verified", ssl_context=cert.client_context(),
                           server_hostname="localhost")
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST,
                                      tls_policy=policy) as client:
            assert client.tls is not None and client.tls.verified
            assert client.tls.server_hostname == "localhost"
            assert "verified" in str(client.tls) and "not verified" not in str(client.tls)
        # The system's authorities do not know this certificate; nor does another one's
        # context; and the name must match.
        untrusting = [
            TLSPolicy(mode="verified", server_hostname="localhost"),
            TLSPolicy(mode="verified", server_hostname="localhost",
                      ssl_context=make_self_signed(["localhost"]).client_context()),
            TLSPolicy(mode="verified", server_hostname="mx.example.test",
                      ssl_context=cert.client_context()),
        ]
        for policy in untrusting:
            with pytest.raises(SMTPTLSError) as info:
                await SMTPClient.connect(HOST, server.port, timeouts=FAST, tls_policy=policy)
            assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)

    handler = run(with_server(body, **tls_server(cert)))
    assert handler.messages == []


def test_required_and_none(cert: SelfSignedCertificate) -> None:
    async def without_starttls(server: SMTPServer, handler: Recorder) -> None:
        for mode in ("required", "verified"):
            with pytest.raises(SMTPTLSError, match="does not offer STARTTLS"):
                await SMTPClient.connect(HOST, server.port, timeouts=FAST,
                                         tls_policy=TLSPolicy(mode=mode))  # type: ignore[arg-type]
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST,
                                      tls_policy=TLSPolicy()) as client:
            assert client.tls is None and not client.tls_active

    async def with_starttls(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST,
                                      tls_policy=TLSPolicy(mode="required")) as client:
            assert client.tls is not None and not client.tls.verified
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST,
                                      tls_policy=TLSPolicy(mode="none")) as client:
            assert client.tls is None and "STARTTLS" in client.extensions

    run(with_server(without_starttls))
    run(with_server(with_starttls, **tls_server(cert)))


def test_handshake_failure_defer_or_plaintext(
    cert: SelfSignedCertificate, caplog: pytest.LogCaptureFixture
) -> None:
    tls12 = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls12.check_hostname = False
    tls12.verify_mode = ssl.CERT_NONE
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2  # the server takes 1.3 only

    async def body(server: SMTPServer, handler: Recorder) -> None:
        with pytest.raises(SMTPTLSError) as info:
            await SMTPClient.connect(HOST, server.port, timeouts=FAST,
                                     tls_policy=TLSPolicy(ssl_context=tls12))
        # An alert (ssl.SSLError), or the server hanging up mid-handshake: either way a
        # TLS failure under a policy, for the queue to retry later.
        assert isinstance(info.value.__cause__, ssl.SSLError | ConnectionError)
        policy = TLSPolicy(ssl_context=tls12, on_handshake_failure="plaintext")
        with caplog.at_level(logging.INFO, logger="mailagents.aio.smtp_client"):
            async with SMTPClient.connect(HOST, server.port, timeouts=FAST,
                                          tls_policy=policy) as client:
                assert client.tls is None and not client.tls_active
                assert client.tls_downgraded
                await client.send_message(MESSAGE, sender="a@example.test",
                                          recipients=["b@example.test"])

    handler = run(with_server(body, **tls_server(cert, tls13_only=True)))
    [(_, message, session)] = handler.messages
    assert message == MESSAGE and not session.tls
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "reconnecting without TLS" in warnings[0].message
    assert any("plaintext retry" in r.message for r in caplog.records
               if r.levelno == logging.INFO)


def test_handshake_lost_is_a_tls_error_under_a_policy() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 raw.example ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-raw.example\r\n250 STARTTLS\r\n")
        await reader.readline()
        writer.write(b"220 go ahead\r\n")
        await writer.drain()
        await reader.read(1)  # the ClientHello: hang up instead of answering it
        writer.transport.abort()

    async def body(port: int) -> None:
        with pytest.raises(SMTPTLSError):
            await SMTPClient.connect(HOST, port, timeouts=FAST,
                                     tls_policy=TLSPolicy(mode="required"))

    run(raw_server(script, body))


def test_implicit_tls_outcome(cert: SelfSignedCertificate) -> None:
    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(
            HOST, server.port, implicit_tls=True, timeouts=FAST,
            tls_policy=TLSPolicy(mode="verified", ssl_context=cert.client_context(),
                                 server_hostname="localhost"),
        ) as client:
            assert client.tls is not None and client.tls.implicit and client.tls.verified
        async with SMTPClient.connect(
            HOST, server.port, implicit_tls=True, ssl_context=cert.client_context(),
            server_hostname="localhost", timeouts=FAST,
        ) as client:
            assert client.tls is not None and client.tls.verified

    run(with_server(body, implicit_tls=True, **tls_server(cert)))


def test_legacy_starttls_reports_an_outcome_and_runs_on_uvloop(
    cert: SelfSignedCertificate, spooled: Spool
) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, ssl_context=cert.client_context(),
                                      server_hostname="localhost", timeouts=FAST) as client:
            assert client.tls is not None and client.tls.verified
            await client.send_message(spooled(MESSAGE * 3000),
                                      sender="a@example.test", recipients=["b@example.test"])

    async def bounded() -> Recorder:
        return await asyncio.wait_for(with_server(body, **tls_server(cert)), 20)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        handler = runner.run(bounded())
    assert handler.messages[0][1] == MESSAGE * 3000


def test_explicit_mail_parameters_body_skips_the_scan(spooled: Spool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    message = spooled(MESSAGE)
    calls: list[int] = []
    original = delivery.Message.chunks

    def counted(self: delivery.Message, size: int = 1 << 16) -> Any:
        calls.append(size)
        return original(self, size)

    monkeypatch.setattr(delivery.Message, "chunks", counted)

    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST) as client:
            await client.send_message(message, sender="a@example.test",
                                      recipients=["b@example.test"],
                                      parameters=MailParameters(body="8BITMIME"))
            assert len(calls) == 1  # the content only: no scan for 8-bit octets
            await client.send_message(message, sender="a@example.test",
                                      recipients=["b@example.test"])
            assert len(calls) == 3

    handler = run(with_server(body))
    assert [m for _, m, _ in handler.messages] == [MESSAGE, MESSAGE]


def test_refused_bdat_chunk_stops_the_stream(spooled: Spool) -> None:
    """Pipelined BDAT (RFC 3030 §4.2): a chunk refused while the message streams ends
    the sending early, not after the whole spool file went out."""
    message = spooled(big_message(16))
    seen: list[int] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 raw.example ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-raw.example\r\n250-PIPELINING\r\n250 CHUNKING\r\n")
        while line := await reader.readline():
            verb, _, rest = line.strip().partition(b" ")
            if verb == b"BDAT":
                size = int(rest.split()[0])
                await reader.readexactly(size)
                seen.append(size)
                if len(seen) == 1:
                    writer.write(b"552 5.3.4 too big\r\n")
                    await writer.drain()
                    await asyncio.sleep(0.2)  # time for the client to see it
                else:
                    writer.write(b"503 5.5.1 no transaction\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                return
            else:
                writer.write(b"250 ok\r\n")

    async def body(port: int) -> None:
        async with SMTPClient.connect(HOST, port, timeouts=FAST) as client:
            with pytest.raises(SMTPResponseError) as info:
                await client.send_message(message, sender="a@example.test",
                                          recipients=["b@example.test"], chunk_size=1 << 16)
            assert info.value.code == 552
            assert info.value.replies == {"b@example.test": info.value.reply}
            assert (await client.noop()).code == 250  # the session goes on after RSET

    run(raw_server(script, body), timeout=30)
    assert sum(seen) < message.size // 2, sum(seen)  # it stopped well before the end
