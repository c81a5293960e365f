"""The asyncio IMAP server adapter (mailagents/aio/imap.py) with a small in-memory
handler: logins, TLS both ways, per-state deadlines, IDLE woken, COMPRESS, APPEND
streamed in, a big literal streamed out, limits."""

from __future__ import annotations

import asyncio
import imaplib
import socket
import ssl
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import pytest

from mailagents import sasl
from mailagents.aio import ListenerLimits, StateTimeouts
from mailagents.aio.imap import IMAPHandler, IMAPServer, IMAPSession, serve_imap
from mailagents.aio.tls import SelfSignedCertificate, make_self_signed
from mailagents.imap import commands, responses
from mailagents.imap._config import ServerConfig
from mailagents.imap._events import AppendChunk, AppendEnd, AppendStart, Complete
from mailagents.imap._fetch_data import BodySection, FetchData
from mailagents.imap._frame import Streamed
from mailagents.imap._selected import SelectedMailbox

T = TypeVar("T")
TIMEOUT = 20.0
PLAIN = ServerConfig(allow_plaintext_login=True)
QUICK = ListenerLimits(auth_failure_delay=0.01, max_auth_failure_delay=0.01)
BIG = bytes(range(256)) * 1024  # 256 KiB: streamed as LiteralData


def run(coro: Coroutine[Any, Any, T], timeout: float = TIMEOUT) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Memory(IMAPHandler):
    """One user ``user``/``secret`` and one mailbox of two messages."""

    def __init__(self) -> None:
        self.closed: list[IMAPSession] = []
        self.appended: list[bytes] = []
        self.chunks = 0
        self.idles: list[bool] = []
        self.new: list[int] = []

    async def on_credentials(
        self, session: IMAPSession, request: sasl.NeedCredentials
    ) -> sasl.Answer:
        if request.authcid == "user":
            return sasl.PasswordVerdict(valid=request.password == "secret")
        return sasl.NoSuchUser()

    async def on_command(self, session: IMAPSession, command: commands.Command) -> Complete:
        if isinstance(command, commands.Select | commands.Examine):
            await session.send(responses.ExistsData(count=2))
            return Complete(selected=SelectedMailbox([1, 2]))
        if isinstance(command, commands.Fetch):
            data = FetchData(number=1, sections=(BodySection(data=Streamed(size=len(BIG))),))

            async def octets() -> AsyncIterator[bytes]:
                for i in range(0, len(BIG), 10_000):
                    yield BIG[i : i + 10_000]

            await session.send(data, [octets()])
            return Complete()
        if isinstance(command, commands.Append):
            return Complete()
        return Complete(status="NO", text="Not here")

    async def on_append_start(self, session: IMAPSession, event: AppendStart) -> None:
        self.appended.append(b"")

    async def on_append_chunk(self, session: IMAPSession, event: AppendChunk) -> None:
        self.chunks += 1
        self.appended[-1] += event.data

    async def on_append_end(self, session: IMAPSession, event: AppendEnd) -> None:
        pass

    async def on_idle(self, session: IMAPSession, idling: bool) -> None:
        self.idles.append(idling)
        if idling:
            asyncio.get_running_loop().call_later(0.05, session.wake)

    async def on_wake(self, session: IMAPSession) -> None:
        view = session.core.mailbox
        if view is not None and self.new:
            view.appended(self.new)
            self.new = []

    async def on_close(self, session: IMAPSession) -> None:
        self.closed.append(session)


@pytest.fixture(scope="module")
def cert() -> SelfSignedCertificate:
    return make_self_signed(["localhost"])


async def served(handler: IMAPHandler, client: Callable[[int], T], **options: Any) -> T:
    options.setdefault("limits", QUICK)
    config = options.pop("config", PLAIN)
    async with await serve_imap(handler, config, **options) as server:
        return await asyncio.to_thread(client, server.port)


def test_login_select_fetch_streamed_and_logout_with_imaplib() -> None:
    handler = Memory()

    def client(port: int) -> None:
        imap = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        assert imap.login("user", "secret")[0] == "OK"
        assert imap.select("INBOX") == ("OK", [b"2"])
        typ, data = imap.fetch("1", "(BODY[])")
        assert typ == "OK"
        first = data[0]
        assert isinstance(first, tuple) and first[1] == BIG
        assert imap.create("x")[0] == "NO"
        imap.logout()

    run(served(handler, client))
    assert len(handler.closed) == 1
    session = handler.closed[0]
    assert session.identity == "user" and session.mechanism == "LOGIN" and not session.tls


def test_wrong_password_is_no_then_closed_after_the_limit() -> None:
    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            f = s.makefile("rwb")
            assert f.readline().startswith(b"* OK")
            answers = []
            for n in range(3):
                f.write(b"a%d LOGIN user wrong\r\n" % n)
                f.flush()
                answers.append(f.readline())
            return b"".join(answers) + f.read()

    out = run(served(Memory(), client))
    assert out.count(b"NO") >= 2 and b"* BYE" in out


def test_starttls_then_login(cert: SelfSignedCertificate) -> None:
    def client(port: int) -> list[str]:
        imap = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        assert "LOGINDISABLED" in imap.capabilities
        imap.starttls(ssl_context=cert.client_context())
        caps = list(imap.capabilities)
        assert imap.login("user", "secret")[0] == "OK"
        imap.logout()
        return caps

    handler = Memory()
    caps = run(served(handler, client, config=ServerConfig(), ssl_context=cert.server_context()))
    assert "STARTTLS" not in caps and "LOGINDISABLED" not in caps
    assert handler.closed[0].tls


def test_implicit_tls(cert: SelfSignedCertificate) -> None:
    def client(port: int) -> None:
        imap = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=cert.client_context(), timeout=10)
        assert imap.login("user", "secret")[0] == "OK"
        imap.logout()

    handler = Memory()
    run(served(handler, client, config=ServerConfig(), ssl_context=cert.server_context(),
               implicit_tls=True))  # fmt: skip
    assert handler.closed[0].tls


def test_deadline_before_login_is_a_bye() -> None:
    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            f = s.makefile("rb")
            assert f.readline().startswith(b"* OK")
            return f.read()

    out = run(served(Memory(), client, state_timeouts=StateTimeouts(before_login=0.2)))
    assert out.startswith(b"* BYE")


def test_idle_is_woken_with_exists() -> None:
    handler = Memory()
    handler.new = [3]

    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            f = s.makefile("rwb")
            f.readline()
            f.write(b"a LOGIN user secret\r\nb SELECT INBOX\r\n")
            f.flush()
            while not f.readline().startswith(b"b OK"):
                pass
            f.write(b"c IDLE\r\n")
            f.flush()
            assert f.readline().startswith(b"+")
            news = f.readline()
            f.write(b"DONE\r\n")
            f.flush()
            assert f.readline().startswith(b"c OK")
            return news

    assert run(served(handler, client)) == b"* 3 EXISTS\r\n"
    assert handler.idles == [True, False]


def test_compress_deflate() -> None:
    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            f = s.makefile("rwb")
            f.readline()
            f.write(b"a LOGIN user secret\r\n")
            f.flush()
            assert f.readline().startswith(b"a OK")
            f.write(b"b COMPRESS DEFLATE\r\n")
            f.flush()
            assert f.readline().startswith(b"b OK")
            out = zlib.compressobj(6, zlib.DEFLATED, -15)
            back = zlib.decompressobj(-15)
            s.sendall(out.compress(b"c NOOP\r\n") + out.flush(zlib.Z_SYNC_FLUSH))
            got = b""
            while b"c OK" not in got:
                got += back.decompress(s.recv(4096))
            return got

    assert b"c OK NOOP completed" in run(served(Memory(), client))


def test_compress_with_compressed_octets_in_the_same_write() -> None:
    # Regression: compressed octets sent right behind COMPRESS (in the same segment)
    # stayed in the core's buffer as plaintext and were answered as a bad command.
    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            f = s.makefile("rwb")
            f.readline()
            f.write(b"a LOGIN user secret\r\n")
            f.flush()
            assert f.readline().startswith(b"a OK")
            out = zlib.compressobj(6, zlib.DEFLATED, -15)
            s.sendall(
                b"b COMPRESS DEFLATE\r\n"
                + out.compress(b"c NOOP\r\n")
                + out.flush(zlib.Z_SYNC_FLUSH)
            )
            line = b""
            while not line.endswith(b"\r\n"):
                line += s.recv(1)
            assert line.startswith(b"b OK"), line
            back = zlib.decompressobj(-15)
            got = b""
            while b"c " not in got:
                got += back.decompress(s.recv(4096))
            return got

    assert b"c OK NOOP completed" in run(served(Memory(), client))


def test_append_is_streamed_in_chunks() -> None:
    handler = Memory()
    message = b"Subject: x\r\n\r\n" + b"y" * 300_000 + b"\r\n"

    def client(port: int) -> None:
        imap = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        imap.login("user", "secret")
        assert imap.append("INBOX", None, None, message)[0] == "OK"
        imap.logout()

    run(served(handler, client))
    assert handler.appended == [message] and handler.chunks > 1


def test_sessions_per_user_limit() -> None:
    def client(port: int) -> bytes:
        first = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        first.login("user", "secret")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            f = s.makefile("rwb")
            f.readline()
            f.write(b"a LOGIN user secret\r\n")
            f.flush()
            out = f.read()
        first.logout()
        return out

    out = run(served(Memory(), client, max_sessions_per_user=1))
    assert b"* BYE Too many sessions" in out


def test_connection_limit_refusal_is_a_bye_greeting() -> None:
    def client(port: int) -> bytes:
        first = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            out = s.makefile("rb").read()
        first.logout()
        return out

    assert run(served(Memory(), client, max_connections=1)).startswith(b"* BYE")


def test_constructor_checks(cert: SelfSignedCertificate) -> None:
    with pytest.raises(ValueError):
        IMAPServer(Memory(), implicit_tls=True)
    with pytest.raises(ValueError):
        IMAPServer(Memory(), ServerConfig(tls_available=True))
    server = IMAPServer(Memory(), ssl_context=cert.server_context())
    assert server.config.tls_available and "COMPRESS=DEFLATE" in server.config.extensions
    assert server.sessions_of("user") == 0
    assert isinstance(cert.server_context(), ssl.SSLContext)


def test_deadline_in_idle_is_a_bye() -> None:
    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            f = s.makefile("rwb")
            f.readline()
            f.write(b"a LOGIN user secret\r\nb IDLE\r\n")
            f.flush()
            assert f.readline().startswith(b"a OK")
            assert f.readline().startswith(b"+")
            return f.read()

    timeouts = StateTimeouts(idle=0.2, after_login=60.0)
    out = run(served(Memory(), client, state_timeouts=timeouts))
    assert out.startswith(b"* BYE")


def test_server_close_ends_sessions_with_bye() -> None:
    async def main() -> bytes:
        async with await serve_imap(Memory(), PLAIN, limits=QUICK) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            await reader.readline()
            writer.write(b"a LOGIN user secret\r\n")
            assert (await reader.readline()).startswith(b"a OK")
            await server.close(0.5)
            out = await reader.read()
            writer.close()
            return out

    assert run(main()).startswith(b"* BYE")


def test_a_client_gone_during_a_wake_is_no_error(caplog: pytest.LogCaptureFixture) -> None:
    """A handler writing to a client that has left gets ConnectionError: logged at
    DEBUG, not as a failure with a traceback (regression: every disconnect during a
    wake logged an ERROR)."""

    woken = threading.Event()

    class Leaving(Memory):
        async def on_wake(self, session: IMAPSession) -> None:
            woken.set()
            raise ConnectionError("the client is gone")

    handler = Leaving()

    def client(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            f = s.makefile("rwb")
            f.readline()
            f.write(b"a LOGIN user secret\r\nb SELECT INBOX\r\nc IDLE\r\n")
            f.flush()
            while not f.readline().startswith(b"+"):
                pass
            assert woken.wait(20)  # the wake comes 50 ms into IDLE
            f.write(b"DONE\r\n")
            f.flush()
            assert f.readline().startswith(b"c OK")

    caplog.set_level("DEBUG", logger="mailagents.aio")
    run(served(handler, client))
    records = [r for r in caplog.records if "on_wake" in r.getMessage()]
    assert records, "the wake was not logged"
    assert all(r.levelname == "DEBUG" for r in records), [r.levelname for r in records]
