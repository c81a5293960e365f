"""swaks (the Swiss Army Knife for SMTP) against our SMTPServer: STARTTLS, AUTH PLAIN
and LOGIN, pipelining, a 20 MB message, and a wrong password.

BDAT: swaks (20201014, Debian 12) has no option to send BDAT, so these tests check that
our server offers CHUNKING and that swaks, which does not use it, is served with DATA.
Our server's BDAT is exercised against real peers by tests/interop/test_postfix_client.py
(the other direction) and by tests/aio."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import logging
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailagents import sasl
from mailagents.aio import (
    ListenerLimits,
    SelfSignedCertificate,
    Session,
    SMTPHandler,
    SMTPServer,
    make_self_signed,
)
from mailagents.smtp import Accept, Envelope, LMTPReplies, Reject, ServerConfig

from .peers import require_binary

pytestmark = pytest.mark.interop

HOST = "127.0.0.1"
USER = "swaks-user"
PASSWORD = "s3cret pass"
BIG_TIMEOUT = 30.0  # seconds for the 20 MB message (about 1.5 s here)


@dataclass(frozen=True)
class Received:
    envelope: Envelope
    message: bytes
    tls: bool
    identity: str | None


class Collector(SMTPHandler):
    """Accept everything, know one user, keep the messages (called on the server's
    thread; read once swaks has exited)."""

    def __init__(self) -> None:
        self.messages: list[Received] = []

    async def on_credentials(
        self, session: Session, request: sasl.NeedCredentials
    ) -> sasl.Answer:
        if request.authcid != USER or request.password is None:
            return sasl.NoSuchUser()
        return sasl.PasswordVerdict(valid=request.password == PASSWORD)

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        self.messages.append(Received(envelope, message, session.tls, session.identity))
        return Accept()


class ServerThread:
    """Our SMTPServer on its own event loop in a background thread, on 127.0.0.1 and a
    free port, with STARTTLS, AUTH PLAIN and LOGIN (only over TLS), CHUNKING and
    PIPELINING."""

    def __init__(self, cert: SelfSignedCertificate) -> None:
        self.cert = cert
        self.handler = Collector()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="smtp-server")
        self.server: SMTPServer | None = None

    async def _start(self) -> SMTPServer:
        config = ServerConfig(
            hostname="mx.example.test",
            auth_mechanisms=("PLAIN", "LOGIN"),
            auth_without_tls=False,
            chunking=True,
            pipelining=True,
            max_message_size=64 * 1024 * 1024,
        )
        server = SMTPServer(
            self.handler,
            config,
            ssl_context=self.cert.server_context(),
            limits=ListenerLimits(
                command_timeout=10.0, idle_timeout=10.0, auth_failure_delay=0.2
            ),
        )
        await server.start(HOST, 0)
        return server

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def __enter__(self) -> ServerThread:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.server is not None:
                asyncio.run_coroutine_threadsafe(self.server.close(2.0), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(scope="module")
def cert() -> SelfSignedCertificate:
    return make_self_signed(("mx.example.test", "localhost"))


@pytest.fixture
def server(cert: SelfSignedCertificate) -> Iterator[ServerThread]:
    with ServerThread(cert) as running:
        yield running


def swaks(
    server: ServerThread, *args: str, timeout: float = 10.0
) -> subprocess.CompletedProcess[str]:
    """Run swaks against ``server`` (bounded in time); its transcript is in stdout."""
    binary = require_binary("swaks")
    return subprocess.run(
        [binary, "--server", f"{HOST}:{server.port}", "--helo", "client.example.test",
         "--from", "sender@example.test", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def sent_lines(transcript: str) -> list[str]:
    """The transcript's lines, each marked by swaks: ``->`` sent, ``<-`` received, ``~>``
    and ``<~`` the same over TLS, ``***`` an error."""
    return [line.strip() for line in transcript.splitlines() if line.strip()]


def test_pipelined_starttls_auth_plain_two_recipients(server: ServerThread) -> None:
    body = "Hello from swaks.\n.leading dot\n..two dots\nFrom the start\n"
    done = swaks(
        server, "--to", "alice@example.test,bob@example.test", "--pipeline", "--tls",
        "--auth", "PLAIN", "--auth-user", USER, "--auth-password", PASSWORD,
        "--header", "Subject: swaks plain", "--body", body,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = sent_lines(done.stdout)
    # The EHLO reply before TLS offers STARTTLS, CHUNKING and PIPELINING but not AUTH.
    tls_at = lines.index("-> STARTTLS")
    before = lines[:tls_at]
    assert "<-  250-STARTTLS" in before
    assert "<-  250-CHUNKING" in before or "<-  250 CHUNKING" in before
    assert not any("AUTH" in line for line in before)
    after = lines[tls_at:]
    assert any(line.startswith("<~  250-AUTH") and "PLAIN" in line and "LOGIN" in line
               for line in after), after
    assert "<~  235 2.7.0 Authentication successful" in after
    # Pipelined: MAIL, both RCPTs and DATA went out before the first reply.
    mail_at = after.index("~> MAIL FROM:<sender@example.test>")
    assert after[mail_at + 1 : mail_at + 4] == [
        "~> RCPT TO:<alice@example.test>",
        "~> RCPT TO:<bob@example.test>",
        "~> DATA",
    ], after[mail_at:]

    [received] = server.handler.messages
    assert received.tls
    assert received.identity == USER
    assert not received.envelope.chunked  # swaks speaks DATA even when CHUNKING is offered
    assert [str(r.path.mailbox) for r in received.envelope.recipients] == [
        "alice@example.test", "bob@example.test"
    ]
    parsed = email.message_from_bytes(received.message, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == "swaks plain"
    assert parsed.get_content().replace("\r\n", "\n").rstrip("\n") == body.rstrip("\n")


def test_twenty_megabytes_with_auth_login(server: ServerThread, tmp_path: Path) -> None:
    payload = os.urandom(20 * 1024 * 1024)
    attachment = tmp_path / "payload.bin"
    attachment.write_bytes(payload)
    done = swaks(
        server, "--to", "carol@example.test", "--pipeline", "--tls",
        "--auth", "LOGIN", "--auth-user", USER, "--auth-password", PASSWORD,
        "--header", "Subject: swaks big", "--attach-type", "application/octet-stream",
        "--attach", f"@{attachment}", "--suppress-data", timeout=BIG_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr
    assert "<~  235 2.7.0 Authentication successful" in sent_lines(done.stdout)

    [received] = server.handler.messages
    assert received.tls and received.identity == USER
    assert len(received.message) > len(payload)  # base64: about 27 MB
    parsed = email.message_from_bytes(received.message, policy=email.policy.default)
    parts = [p for p in parsed.walk() if p.get_content_type() == "application/octet-stream"]
    assert len(parts) == 1
    got = parts[0].get_payload(decode=True)
    assert isinstance(got, bytes)
    assert len(got) == len(payload)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()


def test_wrong_password_is_refused_and_logged(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="mailagents.aio.smtp"):
        done = swaks(
            server, "--to", "alice@example.test", "--tls",
            "--auth", "PLAIN", "--auth-user", USER, "--auth-password", "wrong",
        )
    assert done.returncode != 0, done.stdout
    lines = sent_lines(done.stdout)
    assert any(line.startswith("<~* 535 5.7.8") for line in lines), lines
    assert not any("MAIL FROM" in line for line in lines)
    assert server.handler.messages == []
    failures = [r for r in caplog.records if "failed to authenticate" in r.getMessage()]
    assert len(failures) == 1, caplog.text
    assert "PLAIN" in failures[0].getMessage()


def test_auth_is_not_offered_without_tls(server: ServerThread) -> None:
    done = swaks(
        server, "--to", "alice@example.test",
        "--auth", "PLAIN", "--auth-user", USER, "--auth-password", PASSWORD,
    )
    assert done.returncode != 0, done.stdout
    assert "Host did not advertise authentication" in done.stdout + done.stderr
    assert server.handler.messages == []
