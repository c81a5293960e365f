"""Our SMTP client (mailagents.aio.SMTPClient) against Postfix as a real receiving MTA:
plain and STARTTLS sessions, pipelined multi-recipient transactions with DATA and with
BDAT, and a recipient Postfix refuses. Every message is checked in Postfix's Maildir.

Each session goes through a recording relay, so the tests see what our client sent in
each turn (pipelining: MAIL, RCPT and DATA or BDAT in one turn) and which connection
Postfix's log line belongs to (its command counts: ``data=1`` or ``bdat=1``)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.policy
import os
import re
import ssl
from collections.abc import Coroutine, Iterator
from email.message import EmailMessage
from typing import Any, TypeVar

import pytest

from mailagents.aio import (
    ClientTimeouts,
    SelfSignedCertificate,
    SMTPClient,
    SMTPRecipientsRefused,
    SMTPTLSError,
    make_self_signed,
)

from .peers import Postfix, running_postfix

pytestmark = pytest.mark.interop

T = TypeVar("T")
HOST = "127.0.0.1"
TIMEOUTS = ClientTimeouts.uniform(10.0)
SENDER = "sender@example.test"


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    """Run one test coroutine on a fresh loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture(scope="module")
def cert() -> SelfSignedCertificate:
    return make_self_signed(("localhost",))


@pytest.fixture(scope="module")
def postfix(cert: SelfSignedCertificate) -> Iterator[Postfix]:
    with running_postfix(cert_pem=cert.cert_pem, key_pem=cert.key_pem) as server:
        yield server


class Relay:
    """A TCP relay on 127.0.0.1 in front of ``port`` that records the conversation in
    turns: consecutive bytes from the same side, in the order they were relayed.
    What one side sends is recorded before it is passed on, so a reply can never be
    recorded before the command that caused it."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.turns: list[tuple[str, bytearray]] = []
        self.upstream_port: int | None = None
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        for task in self._tasks:
            task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, self.target)
        self.upstream_port = int(up_writer.get_extra_info("sockname")[1])
        task = asyncio.current_task()
        assert task is not None
        self._tasks.append(task)
        await asyncio.gather(
            self._pump("client", reader, up_writer),
            self._pump("server", up_reader, writer),
        )

    async def _pump(
        self, side: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await reader.read(65536):
                if self.turns and self.turns[-1][0] == side:
                    self.turns[-1][1].extend(data)
                else:
                    self.turns.append((side, bytearray(data)))
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    def client_turns(self) -> list[bytes]:
        return [bytes(data) for side, data in self.turns if side == "client"]

    def turn_with(self, needle: bytes) -> bytes:
        """The client's turn in which ``needle`` was sent."""
        for turn in self.client_turns():
            if needle in turn:
                return turn
        raise AssertionError(f"the client never sent {needle!r}: {self.client_turns()!r}")


def session_log(postfix: Postfix, relay: Relay) -> str:
    """Postfix's summary line of the relay's session (``ehlo=1 mail=1 ... commands=N``)."""
    assert relay.upstream_port is not None
    return postfix.wait_log(f"disconnect from unknown[127.0.0.1]:{relay.upstream_port} ")


def as_stored(message: bytes) -> bytes:
    """``message`` as Postfix writes it into a Maildir file (LF line ends)."""
    return message.replace(b"\r\n", b"\n")


def body_lines(token: str, size: int) -> bytes:
    """A message of about ``size`` octets whose body tests transparency: random base64
    lines, a lone dot, lines that begin with a dot and with ``From ``, 8-bit text."""
    header = (
        f"From: <{SENDER}>\r\nTo: undisclosed-recipients:;\r\nSubject: {token}\r\n"
        f"Message-ID: <{token}@example.test>\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode()
    special = ".\r\n..two dots\r\n.one dot\r\nFrom the start\r\nd\xe9j\xe0 vu \u2709\r\n"
    lines = [header, special.encode()]
    total = len(header)
    while total < size:
        line = base64.b64encode(os.urandom(57)) + b"\r\n"
        lines.append(line)
        total += len(line)
    lines.append(special.encode())
    return b"".join(lines)


def check_delivered(postfix: Postfix, user: str, token: str, message: bytes) -> bytes:
    """Wait for ``message`` in ``user``'s Maildir; it must arrive octet for octet, after
    the headers Postfix adds on delivery."""
    stored = postfix.wait_delivered(user, token.encode())
    original = as_stored(message)
    assert stored.endswith(original), (len(stored), len(original))
    added = stored[: len(stored) - len(original)]
    assert added.startswith(f"Return-Path: <{SENDER}>\n".encode()), added
    assert f"Delivered-To: {user}@example.test\n".encode() in added
    return stored


# --- tests --------------------------------------------------------------------------------


def test_pipelined_data_to_two_recipients(postfix: Postfix) -> None:
    """The listener without CHUNKING: MAIL, both RCPTs and DATA in one turn."""
    token = "pipelined-data"
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = "alice@example.test, bob@example.test"
    message["Subject"] = token
    message["Message-ID"] = f"<{token}@example.test>"
    message.set_content("Hello from mailagents.\n.leading dot\nFrom the start\n")

    async def body() -> None:
        async with Relay(postfix.data_port) as relay:
            async with SMTPClient.connect(
                HOST, relay.port, local_hostname="client.example.test", starttls=False,
                timeouts=TIMEOUTS,
            ) as client:
                assert not client.tls_active
                assert "PIPELINING" in client.extensions
                assert "CHUNKING" not in client.extensions
                result = await client.send_message(message)
            assert result.accepted == ("alice@example.test", "bob@example.test")
            assert result.refused == {}
            assert result.data_replies[0].code == 250
            assert result.data_replies[0].enhanced == "2.0.0"
            turn = relay.turn_with(b"MAIL FROM:")
            assert turn.startswith(b"MAIL FROM:<sender@example.test>")
            assert b"RCPT TO:<alice@example.test>" in turn
            assert b"RCPT TO:<bob@example.test>" in turn
            assert turn.endswith(b"DATA\r\n")
            summary = session_log(postfix, relay)
            assert " mail=1 rcpt=2 data=1 " in summary, summary
            assert "bdat=" not in summary

    run(body())
    for user in ("alice", "bob"):
        stored = postfix.wait_delivered(user, token.encode())
        parsed = email.message_from_bytes(stored, policy=email.policy.default)
        assert parsed["Subject"] == token
        assert parsed["Message-ID"] == f"<{token}@example.test>"
        assert isinstance(parsed, EmailMessage)
        assert parsed.get_content() == message.get_content()


def test_starttls_verified_against_the_self_signed_certificate(
    postfix: Postfix, cert: SelfSignedCertificate
) -> None:
    token = "starttls-verified"
    message = body_lines(token, 2_000)

    async def body() -> None:
        async with Relay(postfix.port) as relay:
            async with SMTPClient.connect(
                HOST, relay.port, ssl_context=cert.client_context(), starttls=True,
                timeouts=TIMEOUTS,
            ) as client:
                assert client.tls_active
                assert "STARTTLS" not in client.extensions  # the EHLO after TLS
                result = await client.send_message(
                    message, sender=SENDER, recipients=["carol@example.test"]
                )
            assert result.accepted == ("carol@example.test",)
            # Nothing readable crossed the relay after STARTTLS.
            assert all(b"MAIL FROM" not in turn for turn in relay.client_turns())
            summary = session_log(postfix, relay)
            assert " starttls=1 " in summary, summary
            assert " mail=1 rcpt=1 " in summary, summary

    run(body())
    stored = check_delivered(postfix, "carol", token, message)
    assert b"with ESMTPS id" in stored  # Postfix's Received: line for a TLS session
    assert re.search(r"Anonymous TLS connection established from unknown\[127\.0\.0\.1\]",
                     postfix.log())


def test_starttls_refuses_an_untrusted_certificate(postfix: Postfix) -> None:
    """The default context (the system's authorities) rejects Postfix's certificate."""

    async def body() -> None:
        with pytest.raises(SMTPTLSError) as caught:
            await SMTPClient.connect(HOST, postfix.port, starttls=True, timeouts=TIMEOUTS)
        assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)

    run(body())


def test_refused_recipient(postfix: Postfix) -> None:
    token = "refused-recipient"
    message = body_lines(token, 1_000)

    async def body() -> None:
        async with SMTPClient.connect(
            HOST, postfix.port, starttls=False, timeouts=TIMEOUTS
        ) as client:
            result = await client.send_message(
                message, sender=SENDER,
                recipients=["nosuchuser@example.test", "dave@example.test"],
            )
            assert result.accepted == ("dave@example.test",)
            reply = result.refused["nosuchuser@example.test"]
            assert (reply.code, reply.enhanced) == (550, "5.1.1")
            assert "User unknown" in reply.text
            # Every recipient refused: the client raises, the session goes on.
            with pytest.raises(SMTPRecipientsRefused) as caught:
                await client.send_message(
                    message, sender=SENDER, recipients=["nobody2@example.test"]
                )
            assert caught.value.refused["nobody2@example.test"].code == 550
            assert (await client.noop()).code == 250

    run(body())
    check_delivered(postfix, "dave", token, message)
    assert "NOQUEUE: reject: RCPT" in postfix.wait_log("to=<nosuchuser@example.test>")


def test_bdat_one_megabyte_to_two_recipients(postfix: Postfix) -> None:
    """Postfix 3.4 and newer offer CHUNKING. MAIL and both RCPTs go in one turn; the
    client sends BDAT only after the RCPT replies (by design: no content for nobody),
    as one chunk, and the octets (a lone dot, leading dots) arrive unchanged."""
    token = "bdat-one-megabyte"
    message = body_lines(token, 1_000_000)

    async def body() -> None:
        async with Relay(postfix.port) as relay:
            async with SMTPClient.connect(
                HOST, relay.port, starttls=False, timeouts=TIMEOUTS
            ) as client:
                if "CHUNKING" not in client.extensions:
                    pytest.skip("this Postfix does not offer CHUNKING (3.4 and newer do)")
                assert "PIPELINING" in client.extensions
                result = await client.send_message(
                    message, sender=SENDER, recipients=["dave@example.test", "erin@example.test"]
                )
            assert result.accepted == ("dave@example.test", "erin@example.test")
            assert result.data_replies[0].code == 250
            turns = relay.client_turns()
            turn = relay.turn_with(b"MAIL FROM:")
            assert b"RCPT TO:<dave@example.test>" in turn
            assert b"RCPT TO:<erin@example.test>" in turn
            assert turn.endswith(b"RCPT TO:<erin@example.test>\r\n")
            chunk = turns[turns.index(turn) + 1]
            assert chunk.startswith(f"BDAT {len(message)} LAST\r\n".encode())
            assert chunk.endswith(message)
            assert b"DATA\r\n" not in turn
            summary = session_log(postfix, relay)
            assert " mail=1 rcpt=2 bdat=1 " in summary, summary
            assert "data=" not in summary

    run(body())
    for user in ("dave", "erin"):
        check_delivered(postfix, user, token, message)
