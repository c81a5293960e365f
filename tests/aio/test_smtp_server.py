"""mailagents.aio.SMTPServer over real sockets on 127.0.0.1, with smtplib (run in a
thread) or raw sockets as the client."""

from __future__ import annotations

import asyncio
import datetime
import smtplib
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailagents import sasl
from mailagents.aio import Session, SMTPHandler, SMTPServer, serve_smtp
from mailagents.smtp import (
    Accept,
    Envelope,
    Hello,
    LMTPReplies,
    MailFrom,
    RcptTo,
    Reject,
    Reply,
    ServerConfig,
)

T = TypeVar("T")
TIMEOUT = 10.0
MESSAGE = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nHello.\r\n"


def run(coro: Coroutine[Any, Any, T], timeout: float = TIMEOUT) -> T:
    """Run one test coroutine on a fresh loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def thread(func: Callable[[], T]) -> T:
    return await asyncio.to_thread(func)


class Recorder(SMTPHandler):
    """Accept everything and remember what arrived."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, bytes, Session]] = []
        self.resets = 0

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        self.messages.append((envelope, message, session))
        return Accept()

    async def on_reset(self, session: Session) -> None:
        self.resets += 1


# --- raw socket helpers ----------------------------------------------------------------


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def read_reply(sock: socket.socket | ssl.SSLSocket, buf: bytearray) -> bytes:
    """Read one complete (possibly multi-line) reply; ``buf`` keeps what follows it."""
    while True:
        start = 0
        while True:
            end = buf.find(b"\r\n", start)
            if end < 0:
                break
            line = bytes(buf[start:end])
            if len(line) < 4 or line[3:4] == b" ":
                reply = bytes(buf[: end + 2])
                del buf[: end + 2]
                return reply
            start = end + 2
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed; unparsed: {bytes(buf)!r}")
        buf += chunk


def read_replies(sock: socket.socket | ssl.SSLSocket, buf: bytearray, n: int) -> list[bytes]:
    return [read_reply(sock, buf) for _ in range(n)]


def read_to_eof(sock: socket.socket | ssl.SSLSocket) -> bytes:
    out = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not chunk:
            break
        out += chunk
    return bytes(out)


# --- certificates ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed EC certificate for "localhost", valid for one day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path = folder / "cert.pem"
    key_path = folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def server_context(cert_files: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*cert_files)
    return context


def client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# --- plain SMTP ------------------------------------------------------------------------


def test_plain_message() -> None:
    handler = Recorder()

    async def main() -> None:
        async with await serve_smtp(handler) as server:

            def client() -> dict[str, tuple[int, bytes]]:
                with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as smtp:
                    return smtp.sendmail("a@example.test", ["b@example.test"], MESSAGE)

            assert await thread(client) == {}

    run(main())
    [(envelope, message, session)] = handler.messages
    assert message == MESSAGE
    assert str(envelope.mail_from) in ("<a@example.test>", "a@example.test")
    assert [str(r.path) for r in envelope.recipients] in (
        ["<b@example.test>"],
        ["b@example.test"],
    )
    assert session.peer[0] == "127.0.0.1"
    assert session.helo is not None
    assert not session.tls
    assert not session.message  # handed over, then cleared


def test_multi_recipient_message_and_pipelined_raw_commands() -> None:
    handler = Recorder()
    rcpts = [f"u{i}@example.test" for i in range(5)]

    async def main() -> None:
        async with await serve_smtp(handler) as server:

            def client() -> list[bytes]:
                with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as smtp:
                    assert smtp.sendmail("a@example.test", rcpts, MESSAGE) == {}
                # Pipelined (RFC 2920): everything up to DATA in one write, then content.
                with connect(server.port) as sock:
                    buf = bytearray()
                    read_reply(sock, buf)
                    sock.sendall(b"EHLO client.test\r\n")
                    assert b"PIPELINING" in read_reply(sock, buf)
                    sock.sendall(
                        b"MAIL FROM:<a@example.test>\r\nRCPT TO:<x@example.test>\r\n"
                        b"RCPT TO:<y@example.test>\r\nDATA\r\n"
                    )
                    replies = read_replies(sock, buf, 4)
                    sock.sendall(MESSAGE + b".\r\nQUIT\r\n")
                    replies += read_replies(sock, buf, 2)
                    return replies

            replies = await thread(client)
            assert [r[:3] for r in replies] == [b"250", b"250", b"250", b"354", b"250", b"221"]

    run(main())
    assert len(handler.messages) == 2
    assert len(handler.messages[0][0].recipients) == 5
    assert len(handler.messages[1][0].recipients) == 2
    assert all(m == MESSAGE for _, m, _ in handler.messages)


class Picky(Recorder):
    async def on_rcpt(self, session: Session, event: RcptTo) -> Accept | Reject:
        if event.path.mailbox is not None and event.path.mailbox.local_part == "nobody":
            return Reject(reply=Reply(code=550, enhanced="5.1.1", lines=("No such user",)))
        return Accept()

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        if b"spam" in message:
            return Reject(reply=Reply(code=554, enhanced="5.7.1", lines=("Looks like spam",)))
        return await super().on_message(session, envelope, message)


def test_rejected_recipient_raises_recipients_refused() -> None:
    handler = Picky()

    async def main() -> None:
        async with await serve_smtp(handler) as server:

            def client() -> None:
                with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as smtp:
                    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
                        smtp.sendmail("a@example.test", ["nobody@example.test"], MESSAGE)
                    assert info.value.recipients["nobody@example.test"][0] == 550
                    # One refused out of two: the message goes to the other one.
                    refused = smtp.sendmail(
                        "a@example.test", ["nobody@example.test", "b@example.test"], MESSAGE
                    )
                    assert list(refused) == ["nobody@example.test"]

            await thread(client)

    run(main())
    [(envelope, _, _)] = handler.messages
    assert len(envelope.recipients) == 1


def test_rejected_message_raises_data_error() -> None:
    handler = Picky()

    async def main() -> None:
        async with await serve_smtp(handler) as server:

            def client() -> None:
                with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as smtp:
                    with pytest.raises(smtplib.SMTPDataError) as info:
                        smtp.sendmail("a@example.test", ["b@example.test"], MESSAGE + b"spam\r\n")
                    assert info.value.smtp_code == 554
                    # The session goes on.
                    assert smtp.sendmail("a@example.test", ["b@example.test"], MESSAGE) == {}

            await thread(client)

    run(main())
    assert len(handler.messages) == 1


def test_bdat_over_raw_socket() -> None:
    handler = Recorder()

    async def main() -> None:
        async with await serve_smtp(handler) as server:

            def client() -> list[bytes]:
                with connect(server.port) as sock:
                    buf = bytearray()
                    read_reply(sock, buf)
                    sock.sendall(b"EHLO client.test\r\n")
                    assert b"CHUNKING" in read_reply(sock, buf)
                    first, second = MESSAGE[:20], MESSAGE[20:]
                    sock.sendall(
                        b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n"
                        + b"BDAT %d\r\n" % len(first)
                        + first
                    )
                    replies = read_replies(sock, buf, 3)
                    # The last chunk in two writes, the octet count split from its data.
                    sock.sendall(b"BDAT %d LAST\r\n" % len(second) + second[:5])
                    sock.sendall(second[5:])
                    replies.append(read_reply(sock, buf))
                    sock.sendall(b"QUIT\r\n")
                    replies.append(read_reply(sock, buf))
                    return replies

            replies = await thread(client)
            assert [r[:3] for r in replies] == [b"250"] * 4 + [b"221"]

    run(main())
    [(envelope, message, _)] = handler.messages
    assert message == MESSAGE
    assert envelope.chunked


def test_big_message_streams_with_back_pressure() -> None:
    handler = Recorder()
    body = (b"x" * 998 + b"\r\n") * 6000  # about 6 MB

    async def main() -> None:
        config = ServerConfig(max_message_size=16_000_000)
        async with await serve_smtp(handler, config) as server:

            def client() -> dict[str, tuple[int, bytes]]:
                with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
                    return smtp.sendmail("a@example.test", ["b@example.test"], body)

            assert await thread(client) == {}

    run(main(), timeout=30)
    assert handler.messages[0][1] == body


def test_message_too_big_is_rejected_and_reset() -> None:
    handler = Recorder()

    async def main() -> None:
        async with await serve_smtp(handler, ServerConfig(max_message_size=1000)) as server:

            def client() -> None:
                with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as smtp:
                    smtp.ehlo()
                    # Hide SIZE from smtplib so that it does not refuse to try.
                    smtp.esmtp_features.pop("size", None)
                    with pytest.raises(smtplib.SMTPDataError) as info:
                        smtp.sendmail("a@example.test", ["b@example.test"], b"y" * 5000)
                    assert info.value.smtp_code == 552

            await thread(client)

    run(main())
    assert handler.messages == []
    assert handler.resets == 1


class Broken(Recorder):
    async def on_mail(self, session: Session, event: MailFrom) -> Accept | Reject:
        raise RuntimeError("policy database down")


def test_handler_exception_is_a_temporary_failure(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with await serve_smtp(Broken()) as server:

            def client() -> None:
                with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as smtp:
                    with pytest.raises(smtplib.SMTPSenderRefused) as info:
                        smtp.sendmail("a@example.test", ["b@example.test"], MESSAGE)
                    assert info.value.smtp_code == 451
                    assert smtp.noop()[0] == 250

            await thread(client)

    run(main())
    assert "policy database down" in caplog.text


class Confused(Recorder):
    """Answers the core refuses: an Accept with a 5xx reply, a chunk handler that fails."""

    async def on_rcpt(self, session: Session, event: RcptTo) -> Accept | Reject:
        if event.path.mailbox is not None and event.path.mailbox.local_part == "odd":
            return Accept(reply=Reply(code=550, lines=("not how it works",)))
        return Accept()

    resets = 0

    async def on_data_chunk(self, session: Session, data: bytes) -> None:
        if b"boom" in data:
            raise OSError("disk full")
        session.message += data

    async def on_reset(self, session: Session) -> None:
        self.resets += 1


def test_invalid_answers_and_failing_chunk_handler(caplog: pytest.LogCaptureFixture) -> None:
    handler = Confused()

    async def main() -> None:
        async with await serve_smtp(handler) as server:

            def client() -> None:
                with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as smtp:
                    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                        smtp.sendmail("a@example.test", ["odd@example.test"], MESSAGE)
                    assert refused.value.recipients["odd@example.test"][0] == 451
                    with pytest.raises(smtplib.SMTPDataError) as data_error:
                        smtp.sendmail("a@example.test", ["b@example.test"], MESSAGE + b"boom\r\n")
                    assert data_error.value.smtp_code == 451
                    assert smtp.sendmail("a@example.test", ["b@example.test"], MESSAGE) == {}

            await thread(client)

    run(main())
    assert [m for _, m, _ in handler.messages] == [MESSAGE]
    assert "invalid answer" in caplog.text and "disk full" in caplog.text
    # One reset for the refused recipient (smtplib's RSET), one for the failed chunk,
    # which ended its transaction (on_reset() was not told: a streamed copy leaked
    # into the next transaction; the RSET after it has no transaction to reset).
    assert handler.resets == 2


class Streaming(Recorder):
    """Overrides on_data_chunk: the message stays empty, chunks go elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []

    async def on_data_chunk(self, session: Session, data: bytes) -> None:
        await asyncio.sleep(0)
        self.chunks.append(data)


def test_custom_chunk_handler() -> None:
    handler = Streaming()

    async def main() -> None:
        async with await serve_smtp(handler) as server:

            def client() -> None:
                with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as smtp:
                    smtp.sendmail("a@example.test", ["b@example.test"], MESSAGE)

            await thread(client)

    run(main())
    assert b"".join(handler.chunks) == MESSAGE
    assert handler.messages[0][1] == b""


# --- TLS -------------------------------------------------------------------------------


class Users(Recorder):
    async def on_credentials(
        self, session: Session, request: sasl.NeedCredentials
    ) -> sasl.CredentialsAnswer:
        if request.authcid != "alice":
            return sasl.NoSuchUser()
        return sasl.PasswordVerdict(valid=request.password == "wonderland")

    async def on_mail(self, session: Session, event: MailFrom) -> Accept | Reject:
        if session.identity is None:
            return Reject(reply=Reply(code=530, enhanced="5.7.0", lines=("Auth first",)))
        return Accept()


def test_starttls(server_context: ssl.SSLContext) -> None:
    handler = Recorder()

    async def main() -> None:
        async with await serve_smtp(handler, ssl_context=server_context) as server:
            assert server.config.starttls

            def client() -> None:
                with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as smtp:
                    smtp.ehlo()
                    assert smtp.has_extn("starttls")
                    assert smtp.starttls(context=client_context())[0] == 220
                    smtp.ehlo()
                    assert not smtp.has_extn("starttls")
                    smtp.sendmail("a@example.test", ["b@example.test"], MESSAGE)

            await thread(client)

    run(main())
    [(_, message, session)] = handler.messages
    assert message == MESSAGE
    assert session.tls


def test_auth_plain_over_starttls(server_context: ssl.SSLContext) -> None:
    handler = Users()
    config = ServerConfig(auth_mechanisms=("PLAIN",))

    async def main() -> None:
        async with await serve_smtp(handler, config, ssl_context=server_context) as server:

            def client() -> None:
                with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as smtp:
                    smtp.ehlo()
                    assert not smtp.has_extn("auth")  # no AUTH in the clear
                    smtp.starttls(context=client_context())
                    smtp.ehlo()
                    assert "PLAIN" in smtp.esmtp_features["auth"]
                    with pytest.raises(smtplib.SMTPAuthenticationError):
                        smtp.login("alice", "wrong")
                    with pytest.raises(smtplib.SMTPAuthenticationError):
                        smtp.login("mallory", "wonderland")
                    assert smtp.login("alice", "wonderland")[0] == 235
                    smtp.sendmail("alice@example.test", ["b@example.test"], MESSAGE)

            await thread(client)

    run(main())
    [(_, _, session)] = handler.messages
    assert session.identity == "alice"


def test_implicit_tls(server_context: ssl.SSLContext) -> None:
    handler = Recorder()

    async def main() -> None:
        server = SMTPServer(handler, ssl_context=server_context, implicit_tls=True)
        async with server:

            def client() -> None:
                with smtplib.SMTP_SSL(
                    "127.0.0.1", server.port, timeout=5, context=client_context()
                ) as smtp:
                    smtp.ehlo()
                    assert not smtp.has_extn("starttls")
                    smtp.sendmail("a@example.test", ["b@example.test"], MESSAGE)

            await thread(client)

    run(main())
    assert handler.messages[0][2].tls


def test_starttls_injection_is_never_answered(server_context: ssl.SSLContext) -> None:
    """CVE-2011-0411: commands sent in the clear after STARTTLS, in the same packet, must
    not be executed, and no reply to them may appear inside TLS."""
    handler = Recorder()

    async def main() -> None:
        async with await serve_smtp(handler, ssl_context=server_context) as server:

            def client() -> tuple[bytes, bytes, bytes]:
                with connect(server.port) as raw:
                    buf = bytearray()
                    read_reply(raw, buf)
                    raw.sendall(b"EHLO client.test\r\n")
                    read_reply(raw, buf)
                    raw.sendall(b"STARTTLS\r\nRSET\r\n")
                    go_ahead = read_reply(raw, buf)
                    assert not buf
                    tls = client_context().wrap_socket(raw, server_hostname="localhost")
                    tls.settimeout(0.5)
                    try:
                        early = tls.recv(65536)
                    except TimeoutError:
                        early = b""
                    tls.settimeout(5)
                    tls.sendall(b"EHLO client.test\r\n")
                    tbuf = bytearray(early)
                    ehlo = read_reply(tls, tbuf)
                    tls.sendall(b"QUIT\r\n")
                    rest = bytes(tbuf) + read_to_eof(tls)
                    tls.close()
                    return go_ahead, ehlo, rest

            go_ahead, ehlo, rest = await thread(client)
            assert go_ahead.startswith(b"220 ")
            assert ehlo.startswith(b"250-localhost Hello client.test\r\n")
            assert rest.startswith(b"221 ") and rest.count(b"\r\n") == 1

    run(main())


# --- LMTP ------------------------------------------------------------------------------


class Mailboxes(Recorder):
    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        self.messages.append((envelope, message, session))
        replies = []
        for recipient in envelope.recipients:
            mailbox = recipient.path.mailbox
            if mailbox is not None and mailbox.local_part == "full":
                replies.append(Reply(code=452, enhanced="4.2.2", lines=("Mailbox full",)))
            else:
                replies.append(Reply(code=250, enhanced="2.0.0", lines=("Delivered",)))
        return LMTPReplies(replies=tuple(replies))


def test_lmtp() -> None:
    handler = Mailboxes()

    async def main() -> None:
        async with await serve_smtp(handler, ServerConfig(lmtp=True)) as server:

            def smtplib_client() -> dict[str, tuple[int, bytes]]:
                with smtplib.LMTP("127.0.0.1", server.port, timeout=5) as lmtp:
                    return lmtp.sendmail("a@example.test", ["b@example.test"], MESSAGE)

            assert await thread(smtplib_client) == {}

            def raw_client() -> list[bytes]:
                # cpython's smtplib.LMTP reads one reply after the data: count them here.
                with connect(server.port) as sock:
                    buf = bytearray()
                    read_reply(sock, buf)
                    sock.sendall(b"EHLO client.test\r\n")
                    assert read_reply(sock, buf).startswith(b"500")
                    sock.sendall(b"LHLO client.test\r\n")
                    read_reply(sock, buf)
                    sock.sendall(
                        b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n"
                        b"RCPT TO:<full@example.test>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n"
                    )
                    read_replies(sock, buf, 5)
                    sock.sendall(MESSAGE + b".\r\nQUIT\r\n")
                    return read_replies(sock, buf, 4)

            replies = await thread(raw_client)
            assert [r[:9] for r in replies] == [
                b"250 2.0.0",
                b"452 4.2.2",
                b"250 2.0.0",
                b"221 2.0.0",
            ]

    run(main())
    assert len(handler.messages) == 2


# --- time-outs, limits, shutdown -------------------------------------------------------


def test_command_timeout_closes_with_421() -> None:
    async def main() -> None:
        async with await serve_smtp(Recorder(), command_timeout=0.5) as server:

            def client() -> tuple[bytes, bytes, float]:
                with connect(server.port) as sock:
                    buf = bytearray()
                    read_reply(sock, buf)
                    sock.sendall(b"EHLO client.test\r\n")
                    read_reply(sock, buf)
                    # A partial command is not a command: the deadline stays.
                    sock.sendall(b"NO")
                    start = time.monotonic()
                    first = read_reply(sock, buf)
                    elapsed = time.monotonic() - start
                    return first, bytes(buf) + read_to_eof(sock), elapsed

            reply, rest, elapsed = await thread(client)
            assert reply.startswith(b"421 4.4.2 ")
            assert rest == b""
            assert elapsed < 3
            assert server.connections == 0

    run(main())


def test_timeout_does_not_count_handler_time() -> None:
    class Slow(Recorder):
        async def on_message(
            self, session: Session, envelope: Envelope, message: bytes
        ) -> Accept | Reject | LMTPReplies:
            await asyncio.sleep(1.2)
            return await super().on_message(session, envelope, message)

    handler = Slow()

    async def main() -> None:
        async with await serve_smtp(handler, command_timeout=0.5) as server:

            def client() -> dict[str, tuple[int, bytes]]:
                with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as smtp:
                    return smtp.sendmail("a@example.test", ["b@example.test"], MESSAGE)

            assert await thread(client) == {}

    run(main())
    assert len(handler.messages) == 1


def test_max_connections() -> None:
    async def main() -> None:
        async with await serve_smtp(Recorder(), max_connections=1) as server:

            def client() -> bytes:
                with connect(server.port) as first:
                    buf = bytearray()
                    assert read_reply(first, buf).startswith(b"220 ")
                    with connect(server.port) as second:
                        refused = read_to_eof(second)
                    first.sendall(b"QUIT\r\n")
                    assert read_reply(first, buf).startswith(b"221")
                    return refused

            refused = await thread(client)
            assert refused.startswith(b"421 ") and refused.count(b"\r\n") == 1

    run(main())


def test_close_while_a_client_is_connected() -> None:
    async def main() -> None:
        server = await serve_smtp(Recorder())
        port = server.port
        sock = await thread(lambda: connect(port))
        buf = bytearray()
        try:
            await thread(lambda: read_reply(sock, buf))
            await thread(lambda: sock.sendall(b"EHLO client.test\r\n"))
            await thread(lambda: read_reply(sock, buf))
            await server.close()
            rest = await thread(lambda: bytes(buf) + read_to_eof(sock))
        finally:
            sock.close()
        assert rest.startswith(b"421 4.3.2 ") and rest.count(b"\r\n") == 1
        assert server.sockets == ()
        with pytest.raises(OSError):
            await thread(lambda: connect(port).close())

    run(main())


def test_ipv6_and_two_hosts() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")

    async def main() -> None:
        server = SMTPServer(Recorder())
        try:
            await server.start(["127.0.0.1", "::1"], 0)
        except OSError:
            pytest.skip("::1 is not available")
        async with server:
            families = {s.family for s in server.sockets}
            assert families == {socket.AF_INET, socket.AF_INET6}
            v6 = next(s for s in server.sockets if s.family == socket.AF_INET6)
            port = v6.getsockname()[1]

            def client() -> int:
                with smtplib.SMTP("::1", port, timeout=5) as smtp:
                    return smtp.noop()[0]

            assert await thread(client) == 250

    run(main())


def test_constructor_checks() -> None:
    with pytest.raises(ValueError):
        SMTPServer(SMTPHandler(), implicit_tls=True)
    with pytest.raises(ValueError):
        SMTPServer(SMTPHandler(), command_timeout=0)
    with pytest.raises(ValueError):
        SMTPServer(SMTPHandler(), max_connections=0)
    with pytest.raises(ValueError):
        SMTPServer(SMTPHandler(), ServerConfig(starttls=True))


def test_default_handler_answers() -> None:
    handler = SMTPHandler()
    session = Session(peer=("127.0.0.1", 1))

    async def main() -> list[object]:
        calls: list[Awaitable[object]] = [
            handler.on_hello(session, Hello(command="EHLO", domain="x")),
            handler.on_credentials(
                session, sasl.NeedCredentials(mechanism="PLAIN", authcid="a", authzid=None)
            ),
        ]
        await handler.on_data_chunk(session, b"abc")
        return [await c for c in calls]

    assert run(main()) == [Accept(), sasl.NoSuchUser()]
    assert session.message == b"abc"


def test_server_runs_on_uvloop() -> None:
    # uvloop's transports do not inherit from asyncio.Transport: a regression test for
    # the isinstance check that refused every uvloop connection.
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        handler = Recorder()
        async with SMTPServer(handler, ServerConfig(hostname="mx.test")) as server:

            def client() -> dict[str, tuple[int, bytes]]:
                with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as smtp:
                    return smtp.sendmail("a@example.test", ["b@example.test"], MESSAGE)

            assert await thread(client) == {}
        assert len(handler.messages) == 1

    runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    with runner:
        runner.run(asyncio.wait_for(main(), TIMEOUT))
