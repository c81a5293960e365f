"""mailagents.aio.SMTPClient over real sockets on 127.0.0.1: against our own SMTPServer,
against raw asyncio servers that misbehave, and (marked ``interop``) against aiosmtpd."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine
from email.message import EmailMessage
from typing import Any, TypeVar

import pytest

from mailagents import sasl
from mailagents.aio import (
    ClientTimeouts,
    SelfSignedCertificate,
    Session,
    SMTPAuthenticationError,
    SMTPClient,
    SMTPConnectionClosed,
    SMTPHandler,
    SMTPRecipientsRefused,
    SMTPResponseError,
    SMTPServer,
    SMTPTimeout,
    SMTPTLSError,
    make_self_signed,
)
from mailagents.smtp import (
    Accept,
    Envelope,
    LMTPReplies,
    RcptTo,
    Reject,
    Reply,
    ServerConfig,
)

T = TypeVar("T")
TIMEOUT = 10.0
HOST = "127.0.0.1"
FAST = ClientTimeouts.uniform(5.0)
MESSAGE = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nHello.\r\n.dot\r\n"
NO_SUCH_USER = Reply(code=550, enhanced="5.1.1", lines=("No such user",))


def run(coro: Coroutine[Any, Any, T], timeout: float = TIMEOUT) -> T:
    """Run one test coroutine on a fresh loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Recorder(SMTPHandler):
    """Accept every sender, refuse recipients at elsewhere.example, keep the messages."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, bytes, Session]] = []

    async def on_rcpt(self, session: Session, event: RcptTo) -> Accept | Reject:
        mailbox = event.path.mailbox
        if mailbox is not None and mailbox.domain == "elsewhere.example":
            return Reject(reply=NO_SUCH_USER)
        return Accept()

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        self.messages.append((envelope, bytes(message), session))
        return Accept()


def recipients_of(envelope: Envelope) -> list[str]:
    return [str(r.path.mailbox) for r in envelope.recipients]


async def with_server(
    body: Callable[[SMTPServer, Recorder], Awaitable[None]],
    config: ServerConfig | None = None,
    handler: Recorder | None = None,
    **options: Any,
) -> Recorder:
    handler = handler if handler is not None else Recorder()
    server = SMTPServer(handler, config or ServerConfig(hostname="mx.example.test"), **options)
    async with server:
        await body(server, handler)
    return handler


# --- plain SMTP -----------------------------------------------------------------------------


def test_plain_send_with_data() -> None:
    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST) as client:
            assert not client.tls_active
            assert "CHUNKING" not in client.extensions
            result = await client.send_message(
                MESSAGE, sender="a@example.test", recipients=["b@example.test"]
            )
            assert result.accepted == ("b@example.test",)
            assert result.refused == {}
            assert result.data_replies[0].code == 250
            assert result.replies["b@example.test"].code == 250
        assert client.closed

    handler = run(with_server(body, ServerConfig(hostname="mx.example.test", chunking=False)))
    [(envelope, message, _)] = handler.messages
    assert message == MESSAGE
    assert not envelope.chunked
    assert str(envelope.mail_from) == "<a@example.test>"


def test_await_connect_then_quit() -> None:
    async def body(server: SMTPServer, handler: Recorder) -> None:
        client = await SMTPClient.connect(HOST, server.port, timeouts=FAST)
        assert (await client.noop()).code == 250
        assert (await client.rset()).code == 250
        reply = await client.quit()
        assert reply is not None and reply.code == 221
        assert await client.quit() is None
        with pytest.raises(SMTPConnectionClosed):
            await client.noop()

    run(with_server(body))


def test_partial_refusal() -> None:
    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST) as client:
            assert "PIPELINING" in client.extensions
            result = await client.send_message(
                MESSAGE,
                sender="a@example.test",
                recipients=["b@example.test", "x@elsewhere.example", "c@example.test"],
            )
        assert result.accepted == ("b@example.test", "c@example.test")
        assert list(result.refused) == ["x@elsewhere.example"]
        refusal = result.refused["x@elsewhere.example"]
        assert (refusal.code, refusal.enhanced) == (550, "5.1.1")

    handler = run(with_server(body))
    [(envelope, _, _)] = handler.messages
    assert recipients_of(envelope) == ["b@example.test", "c@example.test"]


def test_every_recipient_refused() -> None:
    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST) as client:
            with pytest.raises(SMTPRecipientsRefused) as info:
                await client.send_message(
                    MESSAGE,
                    sender="a@example.test",
                    recipients=["x@elsewhere.example", "y@elsewhere.example"],
                )
            assert set(info.value.refused) == {"x@elsewhere.example", "y@elsewhere.example"}
            assert info.value.code == 550 and info.value.enhanced == "5.1.1"
            # The session goes on.
            result = await client.send_message(
                MESSAGE, sender="a@example.test", recipients=["b@example.test"]
            )
            assert result.accepted == ("b@example.test",)

    handler = run(with_server(body))
    assert len(handler.messages) == 1


def test_sender_refused() -> None:
    class NoSender(Recorder):
        async def on_mail(self, session: Session, event: Any) -> Accept | Reject:
            return Reject(reply=Reply(code=553, enhanced="5.7.1", lines=("Not yours",)))

    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST) as client:
            with pytest.raises(SMTPResponseError) as info:
                await client.send_message(
                    MESSAGE, sender="a@example.test", recipients=["b@example.test"]
                )
            assert info.value.code == 553
            assert await client.noop()

    run(with_server(body, handler=NoSender()))


def test_bdat_when_chunking_is_offered() -> None:
    big = MESSAGE + b"x" * 200_000 + b"\r\n"

    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST) as client:
            assert "CHUNKING" in client.extensions
            result = await client.send_message(
                big, sender="a@example.test", recipients=["b@example.test"]
            )
            assert result.accepted == ("b@example.test",)

    handler = run(with_server(body))
    [(envelope, message, _)] = handler.messages
    assert envelope.chunked
    assert message == big


def test_connection_reuse_for_three_messages() -> None:
    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST) as client:
            for i in range(3):
                result = await client.send_message(
                    MESSAGE + f"message {i}\r\n".encode(),
                    sender="a@example.test",
                    recipients=[f"r{i}@example.test"],
                )
                assert result.accepted == (f"r{i}@example.test",)

    handler = run(with_server(body))
    assert [recipients_of(e) for e, _, _ in handler.messages] == [
        ["r0@example.test"],
        ["r1@example.test"],
        ["r2@example.test"],
    ]
    sessions = {id(session) for _, _, session in handler.messages}
    assert len(sessions) == 1
    assert [m.endswith(f"message {i}\r\n".encode()) for i, (_, m, _) in
            enumerate(handler.messages)] == [True] * 3


def test_concurrent_sends_on_one_connection_take_turns() -> None:
    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST) as client:
            results = await asyncio.gather(
                *(
                    client.send_message(MESSAGE, sender="a@example.test",
                                        recipients=[f"r{i}@example.test"])
                    for i in range(3)
                )
            )
        assert sorted(r.accepted[0] for r in results) == [f"r{i}@example.test" for i in range(3)]

    handler = run(with_server(body))
    assert len(handler.messages) == 3


def test_email_message_with_bcc_stripped() -> None:
    msg = EmailMessage()
    msg["From"] = "Alice <a@example.test>"
    msg["To"] = "Bob <b@example.test>, c@example.test"
    msg["Cc"] = "d@example.test"
    msg["Bcc"] = "Hidden <h@example.test>"
    msg["Subject"] = "Grüße"
    msg.set_content("Hallo, ça va?\n")

    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST) as client:
            result = await client.send_message(msg)
        assert set(result.accepted) == {
            "b@example.test", "c@example.test", "d@example.test", "h@example.test"
        }

    handler = run(with_server(body))
    [(envelope, message, _)] = handler.messages
    assert str(envelope.mail_from) == "<a@example.test>"
    assert sorted(recipients_of(envelope)) == [
        "b@example.test", "c@example.test", "d@example.test", "h@example.test"
    ]
    assert b"\r\nBcc:" not in message and not message.startswith(b"Bcc:")
    assert b"h@example.test" not in message
    assert b"\r\nCc: d@example.test\r\n" in message
    assert msg["Bcc"] == "Hidden <h@example.test>"  # the caller's message is untouched


def test_email_message_sender_header_and_explicit_envelope() -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.test"
    msg["Sender"] = "s@example.test"
    msg["To"] = "b@example.test"
    msg.set_content("hi\n")

    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST) as client:
            await client.send_message(msg)
            await client.send_message(msg, sender="", recipients=["z@example.test"])

    handler = run(with_server(body))
    (e1, _, _), (e2, _, _) = handler.messages
    assert str(e1.mail_from) == "<s@example.test>"
    assert str(e2.mail_from) == "<>" and recipients_of(e2) == ["z@example.test"]


def test_bytes_need_an_envelope() -> None:
    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST) as client:
            with pytest.raises(ValueError):
                await client.send_message(MESSAGE, sender="a@example.test")
            with pytest.raises(ValueError):
                await client.send_message(MESSAGE, recipients=["b@example.test"])

    run(with_server(body))


# --- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert() -> SelfSignedCertificate:
    return make_self_signed(["localhost"])


def test_starttls_with_verification(cert: SelfSignedCertificate) -> None:
    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(
            HOST, server.port, ssl_context=cert.client_context(), timeouts=FAST
        ) as client:
            assert client.tls_active
            assert "STARTTLS" not in client.extensions
            await client.send_message(MESSAGE, sender="a@example.test",
                                      recipients=["b@example.test"])

    handler = run(with_server(body, ssl_context=cert.server_context()))
    [(_, _, session)] = handler.messages
    assert session.tls


def test_starttls_untrusted_certificate_fails(cert: SelfSignedCertificate) -> None:
    async def body(server: SMTPServer, handler: Recorder) -> None:
        # The default context trusts the system's authorities, not this certificate.
        with pytest.raises(SMTPTLSError) as info:
            await SMTPClient.connect(HOST, server.port, timeouts=FAST)
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
        # Another certificate for the same name is not trusted either.
        other = make_self_signed(["localhost"]).client_context()
        with pytest.raises(SMTPTLSError):
            await SMTPClient.connect(HOST, server.port, ssl_context=other, timeouts=FAST)

    handler = run(with_server(body, ssl_context=cert.server_context()))
    assert handler.messages == []


def test_starttls_never_and_required(cert: SelfSignedCertificate) -> None:
    async def with_tls(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, starttls=False, timeouts=FAST) as c:
            assert not c.tls_active
            assert "STARTTLS" in c.extensions

    async def without_tls(server: SMTPServer, handler: Recorder) -> None:
        with pytest.raises(SMTPTLSError):
            await SMTPClient.connect(HOST, server.port, starttls=True, timeouts=FAST)
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST) as client:
            assert not client.tls_active  # opportunistic: not offered, so plain

    run(with_server(with_tls, ssl_context=cert.server_context()))
    run(with_server(without_tls))


def test_implicit_tls(cert: SelfSignedCertificate) -> None:
    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(
            HOST, server.port, implicit_tls=True, ssl_context=cert.client_context(),
            server_hostname="localhost", timeouts=FAST,
        ) as client:
            assert client.tls_active
            await client.send_message(MESSAGE, sender="a@example.test",
                                      recipients=["b@example.test"])

    handler = run(with_server(body, ssl_context=cert.server_context(), implicit_tls=True))
    assert handler.messages[0][2].tls


def test_plaintext_after_starttls_go_ahead_is_never_read(cert: SelfSignedCertificate) -> None:
    """A man in the middle appends a fake EHLO reply to the 220 (the client side of
    CVE-2011-0411): it must not be taken as the answer to the EHLO sent over TLS."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 raw.example ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-raw.example\r\n250 STARTTLS\r\n")
        assert (await reader.readline()).upper() == b"STARTTLS\r\n"
        writer.write(b"220 go ahead\r\n250-injected\r\n250 INJECTED\r\n")
        await writer.drain()
        await writer.start_tls(cert.server_context())
        assert (await reader.readline()).startswith(b"EHLO ")
        writer.write(b"250-raw.example\r\n250 SIZE 1000\r\n")
        await reader.readline()
        writer.write(b"221 bye\r\n")

    async def body(port: int) -> None:
        async with SMTPClient.connect(
            HOST, port, ssl_context=cert.client_context(), timeouts=FAST
        ) as client:
            assert client.tls_active
            assert dict(client.extensions) == {"SIZE": "1000"}

    run(raw_server(script, body))


# --- AUTH -----------------------------------------------------------------------------------

USERS = {"alice": "correct horse"}
SCRAM = {name: sasl.scram_secrets(password) for name, password in USERS.items()}


class Users(Recorder):
    """Answers AUTH from a tiny in-memory user table."""

    def __init__(self) -> None:
        super().__init__()
        self.mechanisms: list[str] = []

    async def on_credentials(
        self, session: Session, request: sasl.NeedCredentials
    ) -> sasl.Answer:
        self.mechanisms.append(request.mechanism)
        if request.authcid not in USERS:
            return sasl.NoSuchUser()
        if request.password is not None:
            return sasl.PasswordVerdict(valid=request.password == USERS[request.authcid])
        return SCRAM[request.authcid]


def auth_config(*mechanisms: str) -> ServerConfig:
    return ServerConfig(
        hostname="mx.example.test",
        auth_mechanisms=mechanisms,
        auth_without_tls=True,  # loopback only
        require_auth=True,
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "LOGIN", None])
def test_login(mechanism: str | None) -> None:
    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST) as client:
            with pytest.raises(SMTPResponseError) as info:  # require_auth: 530 first
                await client.send_message(MESSAGE, sender="a@example.test",
                                          recipients=["b@example.test"])
            assert info.value.code == 530
            reply = await client.login(
                "alice", "correct horse", mechanism=mechanism, allow_plaintext=True
            )
            assert reply.code == 235 and client.authenticated
            await client.send_message(MESSAGE, sender="a@example.test",
                                      recipients=["b@example.test"])

    handler = Users()
    run(with_server(body, auth_config("SCRAM-SHA-256", "PLAIN", "LOGIN"), handler=handler))
    [(_, _, session)] = handler.messages
    assert session.identity == "alice"
    # Without a choice the strongest offered mechanism is used.
    assert handler.mechanisms == [mechanism or "SCRAM-SHA-256"]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_login_wrong_password(mechanism: str) -> None:
    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST) as client:
            with pytest.raises(SMTPAuthenticationError) as info:
                await client.login("alice", "wrong", mechanism=mechanism, allow_plaintext=True)
            assert info.value.code == 535
            assert not client.authenticated
            with pytest.raises(SMTPAuthenticationError):
                await client.login("mallory", "x", mechanism=mechanism, allow_plaintext=True)
            await client.login("alice", "correct horse", mechanism=mechanism, allow_plaintext=True)

    run(with_server(body, auth_config("SCRAM-SHA-256", "PLAIN"), handler=Users()))


def test_login_mechanism_not_offered() -> None:
    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST) as client:
            with pytest.raises(SMTPAuthenticationError):
                await client.login("alice", "correct horse", mechanism="SCRAM-SHA-256")
            # PLAIN, the only one offered, would send the password in the clear.
            with pytest.raises(SMTPAuthenticationError, match="in the clear"):
                await client.login("alice", "correct horse")
            await client.login("alice", "correct horse", allow_plaintext=True)

    run(with_server(body, auth_config("PLAIN"), handler=Users()))

    async def no_auth(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, timeouts=FAST) as client:
            with pytest.raises(SMTPAuthenticationError):
                await client.login("alice", "correct horse")

    run(with_server(no_auth))


# --- LMTP -----------------------------------------------------------------------------------


class Mailboxes(Recorder):
    """LMTP: one reply per recipient; full@ is over quota."""

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        self.messages.append((envelope, bytes(message), session))
        over = Reply(code=452, enhanced="4.2.2", lines=("Mailbox full",))
        ok = Reply(code=250, enhanced="2.0.0", lines=("Delivered",))
        return LMTPReplies(
            replies=tuple(
                over if r.path.mailbox is not None and r.path.mailbox.local_part == "full"
                else ok
                for r in envelope.recipients
            )
        )


@pytest.mark.parametrize("chunking", [False, True])
def test_lmtp_per_recipient_results(chunking: bool) -> None:
    async def body(server: SMTPServer, handler: Recorder) -> None:
        async with SMTPClient.connect(HOST, server.port, lmtp=True, timeouts=FAST) as client:
            assert client.lmtp
            result = await client.send_message(
                MESSAGE,
                sender="a@example.test",
                recipients=["b@example.test", "full@example.test", "x@elsewhere.example",
                            "c@example.test"],
            )
            assert result.accepted == ("b@example.test", "c@example.test")
            assert {a: r.code for a, r in result.refused.items()} == {
                "full@example.test": 452, "x@elsewhere.example": 550
            }
            assert [r.code for r in result.data_replies] == [250, 452, 250]
            assert result.replies["full@example.test"].enhanced == "4.2.2"
            with pytest.raises(SMTPRecipientsRefused) as info:
                await client.send_message(
                    MESSAGE, sender="a@example.test", recipients=["full@example.test"]
                )
            assert info.value.refused["full@example.test"].code == 452

    config = ServerConfig(hostname="mx.example.test", lmtp=True, chunking=chunking)
    handler = run(with_server(body, config, handler=Mailboxes()))
    assert handler.messages[0][0].chunked is chunking


# --- misbehaving servers ----------------------------------------------------------------------

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def raw_server(script: Script, body: Callable[[int], Awaitable[None]]) -> None:
    """A raw asyncio server running ``script`` for each connection."""
    tasks: list[asyncio.Task[None]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.append(task)
        try:
            await script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, HOST, 0)
    try:
        await body(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(3600)


async def greet_then(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answers: dict[bytes, bytes]
) -> None:
    """Greet, then answer each command whose verb is in ``answers``; stop answering at
    the first other line (the content after 354 included, unless mapped under b".")."""
    writer.write(b"220 raw.example ESMTP\r\n")
    in_data = False
    while True:
        line = await reader.readline()
        if not line:
            return
        if in_data:
            if line == b".\r\n":
                in_data = False
                if b"." not in answers:
                    await asyncio.sleep(3600)
                writer.write(answers[b"."])
            continue
        verb = line.split(b" ")[0].strip().upper()
        if verb not in answers:
            await asyncio.sleep(3600)
        writer.write(answers[verb])
        if verb == b"DATA":
            in_data = True
        if verb == b"QUIT":
            return


EHLO = b"250-raw.example\r\n250 8BITMIME\r\n"


def timed_out_within(seconds: float, step: str) -> Callable[[Callable[[], Awaitable[Any]]],
                                                              Awaitable[None]]:
    async def check(call: Callable[[], Awaitable[Any]]) -> None:
        start = time.monotonic()
        with pytest.raises(SMTPTimeout) as info:
            await call()
        elapsed = time.monotonic() - start
        assert seconds * 0.9 <= elapsed < seconds + 1.5, elapsed
        assert step in str(info.value)
        assert isinstance(info.value, TimeoutError)
    return check


def test_server_that_never_greets_times_out() -> None:
    timeouts = ClientTimeouts(greeting=0.5)

    async def body(port: int) -> None:
        check = timed_out_within(0.5, "GREETING")
        await check(lambda: SMTPClient.connect(HOST, port, timeouts=timeouts))

    run(raw_server(silent, body))


def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Awaitable[None]:
    async def go() -> None:
        for _ in range(100):  # one byte of a reply every 0.1 s: never a whole reply
            writer.write(b"2")
            await asyncio.sleep(0.1)
    return go()


def test_greeting_trickled_out_is_cut_off_at_the_deadline() -> None:
    async def body(port: int) -> None:
        check = timed_out_within(0.6, "GREETING")
        await check(lambda: SMTPClient.connect(HOST, port, timeouts=ClientTimeouts(greeting=0.6)))

    run(raw_server(trickle, body))


@pytest.mark.parametrize(
    ("answers", "timeouts", "step", "seconds"),
    [
        ({b"EHLO": EHLO}, ClientTimeouts(mail=0.4), "MAIL", 0.4),
        ({b"EHLO": EHLO, b"MAIL": b"250 ok\r\n"}, ClientTimeouts(rcpt=0.4), "RCPT", 0.4),
        (
            {b"EHLO": EHLO, b"MAIL": b"250 ok\r\n", b"RCPT": b"250 ok\r\n"},
            ClientTimeouts(data_initiation=0.4),
            "DATA",
            0.4,
        ),
        (
            {b"EHLO": EHLO, b"MAIL": b"250 ok\r\n", b"RCPT": b"250 ok\r\n",
             b"DATA": b"354 go\r\n"},
            ClientTimeouts(data_termination=0.4),
            "FINAL",
            0.4,
        ),
    ],
)
def test_each_step_has_its_time_out(
    answers: dict[bytes, bytes], timeouts: ClientTimeouts, step: str, seconds: float
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet_then(reader, writer, answers)

    async def body(port: int) -> None:
        client = await SMTPClient.connect(HOST, port, timeouts=timeouts)
        check = timed_out_within(seconds, step)
        await check(lambda: client.send_message(MESSAGE, sender="a@example.test",
                                                recipients=["b@example.test"]))
        assert client.closed
        with pytest.raises(SMTPConnectionClosed):
            await client.noop()
        await client.close()

    run(raw_server(script, body))


def test_cancelled_request_closes_the_connection() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet_then(reader, writer, {b"EHLO": EHLO})

    async def body(port: int) -> None:
        client = await SMTPClient.connect(HOST, port, timeouts=FAST)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                client.send_message(MESSAGE, sender="a@example.test",
                                    recipients=["b@example.test"]),
                0.2,
            )
        assert client.closed  # mid-request: the session cannot be resumed
        with pytest.raises(SMTPConnectionClosed):
            await client.noop()

    run(raw_server(script, body))


def test_server_closes_mid_data() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 raw.example ESMTP\r\n")
        await reader.readline()
        writer.write(EHLO)
        for reply in (b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"):
            await reader.readline()
            writer.write(reply)
        await reader.readline()  # the first line of content, then hang up
        writer.transport.abort()

    async def body(port: int) -> None:
        client = await SMTPClient.connect(HOST, port, timeouts=FAST)
        with pytest.raises(SMTPConnectionClosed) as info:
            await client.send_message(MESSAGE, sender="a@example.test",
                                      recipients=["b@example.test"])
        assert isinstance(info.value, ConnectionError)
        assert client.closed

    run(raw_server(script, body))


def test_421_closes_the_session() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet_then(
            reader, writer,
            {b"EHLO": EHLO, b"MAIL": b"421 4.3.2 shutting down\r\n"},
        )

    async def body(port: int) -> None:
        client = await SMTPClient.connect(HOST, port, timeouts=FAST)
        with pytest.raises(SMTPResponseError) as info:
            await client.send_message(MESSAGE, sender="a@example.test",
                                      recipients=["b@example.test"])
        assert (info.value.code, info.value.enhanced) == (421, "4.3.2")
        assert client.closed
        with pytest.raises(SMTPConnectionClosed):
            await client.noop()

    run(raw_server(script, body))


def test_refusal_greeting_and_helo_fallback() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"554 5.3.2 no service\r\n")
        await reader.readline()

    async def old(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet_then(
            reader, writer,
            {b"EHLO": b"502 5.5.1 what?\r\n", b"HELO": b"250 raw.example\r\n",
             b"QUIT": b"221 bye\r\n"},
        )

    async def refused(port: int) -> None:
        with pytest.raises(SMTPResponseError) as info:
            await SMTPClient.connect(HOST, port, timeouts=FAST)
        assert info.value.code == 554

    async def helo(port: int) -> None:
        async with SMTPClient.connect(HOST, port, timeouts=FAST) as client:
            assert client.extensions == {}

    run(raw_server(refuse, refused))
    run(raw_server(old, helo))


# --- against aiosmtpd (interop) -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def aiosmtpd_controller() -> Any:
    try:
        from aiosmtpd.controller import Controller
    except ImportError:
        message = "aiosmtpd is not installed (pip install 'mailagents[test]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return Controller


class Collector:
    """An aiosmtpd handler: refuses elsewhere.example, keeps the messages."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.endswith("@elsewhere.example"):
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


class PipeliningCollector(Collector):
    """The same, offering PIPELINING (aiosmtpd reads commands one by one from its
    stream, so pipelined commands work; it just does not say so)."""

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [responses[0], "250-PIPELINING", *responses[1:]]


async def recording_proxy(target: int, chunks: list[bytes]) -> asyncio.Server:
    """A TCP proxy to ``target`` that records what the client sends, chunk by chunk."""

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   record: list[bytes] | None) -> None:
        try:
            while data := await reader.read(65536):
                if record is not None:
                    record.append(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, target)
        await asyncio.gather(pump(reader, up_writer, chunks), pump(up_reader, writer, None))

    return await asyncio.start_server(serve, HOST, 0)


@pytest.mark.interop
@pytest.mark.parametrize("pipelining", [False, True])
def test_aiosmtpd(pipelining: bool) -> None:
    controller_class = aiosmtpd_controller()
    handler = PipeliningCollector() if pipelining else Collector()
    controller = controller_class(handler, hostname=HOST, port=free_port())
    sent: list[bytes] = []
    controller.start()
    try:
        async def body() -> None:
            proxy = await recording_proxy(controller.port, sent)
            port = proxy.sockets[0].getsockname()[1]
            async with proxy, SMTPClient.connect(HOST, port, timeouts=FAST) as client:
                assert ("PIPELINING" in client.extensions) is pipelining
                one = await client.send_message(
                    MESSAGE, sender="a@example.test", recipients=["b@example.test"]
                )
                assert one.accepted == ("b@example.test",)
                many = await client.send_message(
                    MESSAGE,
                    sender="a@example.test",
                    recipients=["b@example.test", "x@elsewhere.example", "c@example.test"],
                )
                assert many.accepted == ("b@example.test", "c@example.test")
                assert many.refused["x@elsewhere.example"].code == 550

        run(body())
    finally:
        controller.stop()
    first, second = handler.envelopes
    assert first.rcpt_tos == ["b@example.test"]
    assert second.rcpt_tos == ["b@example.test", "c@example.test"]
    assert second.mail_from == "a@example.test"
    assert second.original_content == MESSAGE
    # With PIPELINING, MAIL, every RCPT and DATA leave in one write (RFC 2920).
    grouped = [c for c in sent if c.startswith(b"MAIL FROM:")]
    assert len(grouped) == 2
    if pipelining:
        assert grouped[1].count(b"RCPT TO:") == 3 and grouped[1].endswith(b"DATA\r\n")
    else:
        assert all(b"RCPT" not in c for c in grouped)
