"""mailagents.aio.POP3Server over real sockets on 127.0.0.1 with an in-memory handler:
the session loop, TLS (STLS and implicit), handler failures, time-outs, limits and
shutdown. Every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import poplib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import pytest

from mailagents import sasl
from mailagents.aio import (
    ListenerLimits,
    POP3Handler,
    POP3Server,
    POP3Session,
    SelfSignedCertificate,
    make_self_signed,
    serve_pop3,
)
from mailagents.pop3 import (
    Accept,
    Maildrop,
    MaildropEntry,
    OpenMaildrop,
    Reject,
    Response,
    Retrieve,
    ServerConfig,
    Update,
)

T = TypeVar("T")
TIMEOUT = 20.0
PLAIN = ServerConfig(hostname="pop.test", allow_plaintext_login=True)
QUICK = ListenerLimits(
    auth_failure_delay=0.01, max_auth_failure_delay=0.02, shutdown_grace=0.5,
    shutdown_timeout=0.5,
)


def run(coro: Coroutine[Any, Any, T], timeout: float = TIMEOUT) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def thread(func: Callable[[], T]) -> T:
    return await asyncio.to_thread(func)


def message(n: int, body: bytes = b"") -> bytes:
    return f"Subject: {n}\r\n\r\n".encode() + (body or f"Message {n}\r\n".encode())


class Memory(POP3Handler):
    """One user, ``user``/``secret``, and a maildrop of byte strings."""

    def __init__(self, messages: list[bytes] | None = None, *, chunk: int = 7) -> None:
        self.messages = list(messages or [])
        self.chunk = chunk
        self.updates: list[tuple[int, ...]] = []
        self.opened: list[str] = []
        self.closed: list[POP3Session] = []
        self.pulled = 0
        self.finished = 0
        self.fail: set[str] = set()

    async def on_credentials(
        self, session: POP3Session, request: sasl.NeedCredentials
    ) -> sasl.Answer | Reject:
        if "credentials" in self.fail:
            raise RuntimeError("user database down")
        if request.authcid != "user":
            return sasl.NoSuchUser()
        if request.password is not None:
            return sasl.PasswordVerdict(valid=request.password == "secret")
        if request.mechanism == "APOP":
            return sasl.LegacySecret(secret="secret")
        return sasl.NoSuchUser()

    async def on_open(self, session: POP3Session, event: OpenMaildrop) -> Maildrop | Reject:
        if "open" in self.fail:
            raise RuntimeError("disk on fire")
        if "bad-answer" in self.fail:
            return Accept()  # type: ignore[return-value]
        self.opened.append(event.identity)
        return Maildrop(messages=tuple(
            MaildropEntry(size=len(m), uid=f"uid-{i}") for i, m in enumerate(self.messages)
        ))

    async def on_retrieve(
        self, session: POP3Session, event: Retrieve
    ) -> AsyncIterator[bytes] | Reject:
        if "retrieve" in self.fail:
            raise RuntimeError("cannot read")
        if "not-iterable" in self.fail:
            return self.messages[0]  # type: ignore[return-value]
        if "vanished" in self.fail:
            return Reject(reply=Response(ok=False, code="SYS/TEMP", text="vanished"))
        data = self.messages[event.number - 1]
        broken = "stream" in self.fail

        async def chunks() -> AsyncIterator[bytes]:
            try:
                for i in range(0, len(data), self.chunk):
                    self.pulled += 1
                    if broken and i > len(data) // 2:
                        raise OSError("read error")
                    yield data[i : i + self.chunk]
            finally:
                self.finished += 1

        return chunks()

    async def on_update(self, session: POP3Session, event: Update) -> Accept | Reject:
        if "update" in self.fail:
            raise RuntimeError("cannot expunge")
        self.updates.append(event.numbers)
        return Accept()

    async def on_close(self, session: POP3Session) -> None:
        self.closed.append(session)
        if "close" in self.fail:
            raise RuntimeError("on_close failed")


class Client:
    """A raw line client over a socket (or TLS socket)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    @classmethod
    def connect(cls, port: int) -> Client:
        return cls(socket.create_connection(("127.0.0.1", port), timeout=5))

    def line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; unparsed: {bytes(self.buf)!r}")
            self.buf += chunk
        out = bytes(self.buf[:end])
        del self.buf[: end + 2]
        return out

    def multi(self) -> list[bytes]:
        lines = []
        while (line := self.line()) != b".":
            lines.append(line)
        return lines

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def ask(self, command: str) -> bytes:
        self.send(command.encode() + b"\r\n")
        return self.line()

    def eof(self) -> bytes:
        out = bytes(self.buf)
        self.buf.clear()
        while True:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            out += chunk
        return out

    def close(self) -> None:
        self.sock.close()

    def login(self) -> None:
        assert self.line().startswith(b"+OK")
        assert self.ask("USER user").startswith(b"+OK")
        assert self.ask("PASS secret").startswith(b"+OK")


@pytest.fixture(scope="module")
def cert() -> SelfSignedCertificate:
    return make_self_signed(["localhost"])


async def served(handler: POP3Handler, client: Callable[[int], T], **options: Any) -> T:
    options.setdefault("limits", QUICK)
    config = options.pop("config", PLAIN)
    async with await serve_pop3(handler, config, **options) as server:
        return await thread(lambda: client(server.port))


# ------------------------------------------------------------------- a whole session


def test_a_session_over_a_raw_socket() -> None:
    dots = message(2, b".starts with a dot\r\n..two\r\nlast line without CRLF")
    handler = Memory([message(1), dots, message(3, b"a\r\nb\r\nc\r\nd\r\n" * 100)])

    def client(port: int) -> None:
        c = Client.connect(port)
        assert c.line() == b"+OK pop.test POP3 server ready"
        assert c.ask("CAPA").startswith(b"+OK")
        capa = c.multi()
        assert b"USER" in capa and b"UIDL" in capa and b"STLS" not in capa
        assert c.ask("USER user").startswith(b"+OK")
        assert c.ask("PASS secret").startswith(b"+OK")
        assert c.ask("STAT") == b"+OK 3 %d" % sum(len(m) for m in handler.messages)
        assert c.ask("UIDL").startswith(b"+OK")
        assert c.multi() == [b"1 uid-0", b"2 uid-1", b"3 uid-2"]
        assert c.ask("RETR 2") == b"+OK %d octets" % len(dots)
        assert c.multi() == [b"Subject: 2", b"", b"..starts with a dot", b"...two",
                             b"last line without CRLF"]
        pulled = handler.pulled
        assert c.ask("TOP 3 1").startswith(b"+OK")
        assert c.multi() == [b"Subject: 3", b"", b"a"]
        # TOP stopped reading the message early and closed the iterator.
        assert handler.pulled - pulled < len(handler.messages[2]) // handler.chunk
        assert handler.finished == 2
        assert c.ask("DELE 1").startswith(b"+OK")
        assert c.ask("DELE 3").startswith(b"+OK")
        assert c.ask("QUIT").startswith(b"+OK pop.test POP3 server signing off (1 message")
        assert c.eof() == b""
        c.close()

    run(served(handler, client))
    assert handler.updates == [(1, 3)]
    assert handler.opened == ["user"]
    [session] = handler.closed
    assert session.identity == "user" and session.mechanism == "USER" and not session.tls
    assert session.peer[0] == "127.0.0.1"


def test_pipelined_commands_answered_in_order() -> None:
    handler = Memory([message(1), message(2)])

    def client(port: int) -> None:
        c = Client.connect(port)
        c.send(b"USER user\r\nPASS secret\r\nSTAT\r\nRETR 1\r\nNOOP\r\nLIST\r\nDELE 2\r\n"
               b"RETR 2\r\nRSET\r\nQUIT\r\n")
        assert c.line().startswith(b"+OK")  # greeting
        assert c.line().startswith(b"+OK")  # USER
        assert c.line().startswith(b"+OK")  # PASS
        assert c.line() == b"+OK 2 %d" % (len(message(1)) + len(message(2)))
        assert c.line().startswith(b"+OK")
        assert c.multi() == message(1).rstrip(b"\r\n").split(b"\r\n")
        assert c.line() == b"+OK"
        assert c.line().startswith(b"+OK")
        assert len(c.multi()) == 2
        assert c.line().startswith(b"+OK")  # DELE
        assert c.line().startswith(b"-ERR")  # RETR of a deleted message
        assert c.line().startswith(b"+OK")  # RSET
        assert b"signing off" in c.line()
        c.close()

    run(served(handler, client))
    assert handler.updates == [()]


def test_twenty_megabytes_stream_with_back_pressure() -> None:
    body = (b"x" * 1000 + b"\r\n") * 20_000
    handler = Memory([message(1, body)], chunk=64 * 1024)

    def client(port: int) -> None:
        pop = poplib.POP3("127.0.0.1", port, timeout=5)
        pop.user("user")
        pop.pass_("secret")
        _, lines, _ = pop.retr(1)
        data = b"".join(line + b"\r\n" for line in lines)
        assert hashlib.sha256(data).digest() == hashlib.sha256(message(1, body)).digest()
        pop.quit()

    run(served(handler, client, limits=ListenerLimits(write_high_water=16 * 1024)))


# ------------------------------------------------------------------------------ TLS


def test_stls_then_login_and_no_injection(cert: SelfSignedCertificate) -> None:
    handler = Memory([message(1)])

    def client(port: int) -> None:
        c = Client.connect(port)
        assert c.line().startswith(b"+OK")
        assert b"STLS" in (c.ask("CAPA"), *c.multi())
        assert c.ask("USER user").startswith(b"-ERR")  # no clear-text passwords
        # RFC 2595 §4 / CVE-2011-0411: what follows STLS in the same packet is dropped.
        c.send(b"STLS\r\nUSER user\r\n")
        assert c.line().startswith(b"+OK")
        assert c.buf == b""
        tls = cert.client_context().wrap_socket(c.sock, server_hostname="localhost")
        t = Client(tls)
        capa = (t.ask("CAPA"), *t.multi())
        assert b"STLS" not in capa and b"USER" in capa
        assert t.ask("PASS secret").startswith(b"-ERR")  # the injected USER was not kept
        assert t.ask("USER user").startswith(b"+OK")
        assert t.ask("PASS secret").startswith(b"+OK")
        assert t.ask("STLS").startswith(b"-ERR")
        assert b"signing off" in t.ask("QUIT")
        t.close()

    run(served(handler, client, ssl_context=cert.server_context(),
               config=ServerConfig(hostname="pop.test")))
    assert handler.closed[0].tls


def test_implicit_tls_with_poplib(cert: SelfSignedCertificate) -> None:
    handler = Memory([message(1)])

    def client(port: int) -> None:
        pop = poplib.POP3_SSL("127.0.0.1", port, timeout=5, context=cert.client_context())
        assert "STLS" not in pop.capa()
        pop.user("user")
        pop.pass_("secret")
        assert pop.stat() == (1, len(message(1)))
        pop.quit()

    run(served(handler, client, ssl_context=cert.server_context(), implicit_tls=True,
               config=ServerConfig(hostname="pop.test")))
    assert handler.closed[0].tls


def test_a_failed_tls_handshake_ends_the_session(cert: SelfSignedCertificate) -> None:
    handler = Memory()

    def client(port: int) -> None:
        c = Client.connect(port)
        c.line()
        assert c.ask("STLS").startswith(b"+OK")
        c.send(b"this is not a TLS client hello\r\n" * 10)
        c.eof()
        c.close()

    run(served(handler, client, ssl_context=cert.server_context(),
               config=ServerConfig(hostname="pop.test")))
    assert len(handler.closed) == 1


def test_apop_challenge_in_the_greeting() -> None:
    handler = Memory([message(1)])

    def client(port: int) -> None:
        pop = poplib.POP3("127.0.0.1", port, timeout=5)
        welcome = pop.getwelcome()
        assert welcome.endswith(b"@pop.test>") and b" <" in welcome
        assert pop.apop("user", "secret").startswith(b"+OK")
        pop.quit()
        second = poplib.POP3("127.0.0.1", port, timeout=5)
        assert second.getwelcome() != welcome  # a fresh timestamp each time
        second.quit()

    config = ServerConfig(hostname="pop.test", allow_plaintext_login=True, allow_apop=True)
    run(served(handler, client, config=config))
    assert handler.closed[0].mechanism == "APOP"


# ------------------------------------------------------------------ handler failures


@pytest.mark.parametrize("where", ["credentials", "open", "bad-answer"])
def test_handler_failures_before_login_are_temporary(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Memory([message(1)])
    handler.fail.add(where)

    def client(port: int) -> None:
        c = Client.connect(port)
        c.line()
        for _ in range(5):  # more than max_auth_failures: not counted as wrong passwords
            assert c.ask("USER user").startswith(b"+OK")
            assert c.ask("PASS secret").startswith(b"-ERR [SYS/TEMP]")
        handler.fail.clear()
        assert c.ask("USER user").startswith(b"+OK")
        assert c.ask("PASS secret").startswith(b"+OK")
        assert c.ask("QUIT").startswith(b"+OK")
        c.close()

    with caplog.at_level(logging.ERROR, logger="mailagents.aio.pop3"):
        run(served(handler, client))
    assert "POP3 handler" in caplog.text


def test_handler_failures_after_login(caplog: pytest.LogCaptureFixture) -> None:
    handler = Memory([message(1, b"y" * 1000 + b"\r\n"), message(2)])

    def client(port: int) -> None:
        c = Client.connect(port)
        c.login()
        handler.fail.add("retrieve")
        assert c.ask("RETR 1").startswith(b"-ERR [SYS/TEMP]")
        handler.fail = {"not-iterable"}
        assert c.ask("RETR 1").startswith(b"-ERR [SYS/TEMP]")
        handler.fail = {"vanished"}
        assert c.ask("RETR 1") == b"-ERR [SYS/TEMP] vanished"
        handler.fail = {"update", "close"}
        assert c.ask("DELE 2").startswith(b"+OK")
        assert c.ask("QUIT").startswith(b"-ERR [SYS/TEMP]")
        assert c.eof() == b""
        c.close()

    with caplog.at_level(logging.ERROR):
        run(served(handler, client))
    assert handler.updates == []
    assert len(handler.closed) == 1
    assert "on_close failed" in caplog.text


def test_a_stream_failing_midway_ends_without_the_final_dot() -> None:
    big = message(1, b"z" * 5000 + b"\r\n")
    handler = Memory([big], chunk=100)
    handler.fail.add("stream")

    def client(port: int) -> None:
        c = Client.connect(port)
        c.login()
        c.send(b"RETR 1\r\n")
        rest = c.eof()
        assert rest.startswith(b"+OK")
        assert not rest.endswith(b"\r\n.\r\n")  # the client cannot take it as complete
        assert len(rest) < len(big)
        c.close()

    run(served(handler, client))
    assert handler.finished == 1 and handler.updates == []
    assert len(handler.closed) == 1


def test_default_handler() -> None:
    def client(port: int) -> None:
        c = Client.connect(port)
        c.line()
        assert c.ask("USER anyone").startswith(b"+OK")
        assert c.ask("PASS x").startswith(b"-ERR [AUTH]")
        c.ask("QUIT")
        c.close()

    run(served(POP3Handler(), client))

    class Open(POP3Handler):
        async def on_credentials(
            self, session: POP3Session, request: sasl.NeedCredentials
        ) -> sasl.Answer | Reject:
            return sasl.PasswordVerdict(valid=True)

    def empty(port: int) -> None:
        pop = poplib.POP3("127.0.0.1", port, timeout=5)
        pop.user("a")
        pop.pass_("b")
        assert pop.stat() == (0, 0)
        with pytest.raises(poplib.error_proto):
            pop.retr(1)
        pop.quit()

    run(served(Open(), empty))


def test_default_on_retrieve_and_on_update() -> None:
    class One(POP3Handler):
        async def on_credentials(
            self, session: POP3Session, request: sasl.NeedCredentials
        ) -> sasl.Answer | Reject:
            return sasl.PasswordVerdict(valid=True)

        async def on_open(
            self, session: POP3Session, event: OpenMaildrop
        ) -> Maildrop | Reject:
            return Maildrop(messages=(MaildropEntry(size=10, uid="x"),))

    def client(port: int) -> None:
        c = Client.connect(port)
        c.login()
        assert c.ask("RETR 1") == b"-ERR No such message"
        assert c.ask("DELE 1").startswith(b"+OK")
        assert b"signing off" in c.ask("QUIT")
        c.close()

    run(served(One(), client))


# ------------------------------------------------------------- time-outs and limits


def test_idle_timeout_autologout_without_update() -> None:
    handler = Memory([message(1)])

    def client(port: int) -> None:
        c = Client.connect(port)
        c.login()
        assert c.ask("DELE 1").startswith(b"+OK")
        start = time.monotonic()
        assert c.line() == b"-ERR Autologout; idle for too long"
        assert 0.3 < time.monotonic() - start < 5
        assert c.eof() == b""
        c.close()

    run(served(handler, client, idle_timeout=0.5))
    assert handler.updates == [] and len(handler.closed) == 1


def test_handler_time_is_not_the_clients() -> None:
    class Slow(Memory):
        async def on_open(self, session: POP3Session, event: OpenMaildrop) -> Maildrop | Reject:
            await asyncio.sleep(0.8)
            return await super().on_open(session, event)

    def client(port: int) -> None:
        c = Client.connect(port)
        c.login()  # PASS takes 0.8 s in the handler, beyond the 0.5 s deadline
        assert c.ask("STAT").startswith(b"+OK")
        c.ask("QUIT")
        c.close()

    run(served(Slow([message(1)]), client, idle_timeout=0.5))


def test_max_connections_refused_with_sys_temp() -> None:
    handler = Memory()

    def client(port: int) -> None:
        first = Client.connect(port)
        assert first.line().startswith(b"+OK")
        second = Client.connect(port)
        assert second.eof() == b"-ERR [SYS/TEMP] pop.test Too many connections, try again later\r\n"
        second.close()
        first.ask("QUIT")
        first.close()

    run(served(handler, client, max_connections=1))
    assert len(handler.closed) == 1


def test_graceful_shutdown() -> None:
    handler = Memory([message(1), message(2)])

    async def main() -> None:
        server = await serve_pop3(handler, PLAIN, limits=QUICK)
        port = server.port
        idle = await thread(lambda: Client.connect(port))
        busy = await thread(lambda: Client.connect(port))
        late = await thread(lambda: Client.connect(port))
        await thread(idle.line)
        await thread(busy.login)
        await thread(late.login)
        await thread(lambda: busy.ask("DELE 1"))
        await thread(lambda: late.ask("DELE 2"))
        start = time.monotonic()
        closing = asyncio.create_task(server.close(timeout=1.0))
        # Not logged in: ended at once. In TRANSACTION: time to QUIT.
        assert (await thread(idle.line)).startswith(b"-ERR [SYS/TEMP]")
        assert b"signing off" in await thread(lambda: busy.ask("QUIT"))
        # The one that does not QUIT is ended after the grace period, nothing deleted.
        assert (await thread(late.line)).startswith(b"-ERR [SYS/TEMP]")
        assert time.monotonic() - start > 0.9
        await closing
        for c in (idle, busy, late):
            c.close()

    run(main())
    assert handler.updates == [(1,)]
    assert len(handler.closed) == 3


def test_constructor_checks_and_properties(cert: SelfSignedCertificate) -> None:
    with pytest.raises(ValueError):
        POP3Server(Memory(), implicit_tls=True)
    with pytest.raises(ValueError):
        POP3Server(Memory(), ServerConfig(tls_available=True))
    server = POP3Server(Memory())
    assert server.idle_timeout == 600.0  # RFC 1939 §3: at least 10 minutes
    assert server.limits.command_timeout == 600.0
    assert server.connections == 0 and server.sockets == ()
    with pytest.raises(RuntimeError):
        server.port  # noqa: B018
    tls = POP3Server(Memory(), ssl_context=cert.server_context())
    assert tls.config.tls_available and not tls.config.tls_active
    implicit = POP3Server(Memory(), ssl_context=cert.server_context(), implicit_tls=True)
    assert implicit.config.tls_active and not implicit.config.tls_available
    assert POP3Server(Memory(), idle_timeout=5, max_connections=3).limits.max_connections == 3

    async def twice() -> None:
        async with POP3Server(Memory()) as started:
            assert started.port > 0
            with pytest.raises(RuntimeError):
                await started.start()

    run(twice())


def test_server_runs_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    handler = Memory([message(1)])

    def client(port: int) -> None:
        pop = poplib.POP3("127.0.0.1", port, timeout=5)
        pop.user("user")
        pop.pass_("secret")
        assert pop.retr(1)[1][0] == b"Subject: 1"
        pop.quit()

    with contextlib.closing(uvloop.new_event_loop()) as loop:
        loop.run_until_complete(asyncio.wait_for(served(handler, client), TIMEOUT))
    assert len(handler.closed) == 1
