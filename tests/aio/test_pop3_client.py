"""mailagents.aio.pop3_client.POP3Client over real sockets on 127.0.0.1: against a tiny
asyncio server driving mailagents.pop3.ServerConnection (plain, STLS, implicit TLS),
and against raw servers that misbehave."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from mailagents import sasl
from mailagents.aio.pop3_client import (
    FetchResult,
    POP3AuthenticationError,
    POP3Client,
    POP3ConnectionClosed,
    POP3ProtocolError,
    POP3ResponseError,
    POP3Timeout,
    POP3Timeouts,
    POP3TLSError,
)
from mailagents.aio.tls import SelfSignedCertificate, make_self_signed
from mailagents.pop3._config import ServerConfig
from mailagents.pop3._events import (
    Accept,
    ConnectionClosed,
    Maildrop,
    MaildropEntry,
    MessageChunk,
    MessageEnd,
    OpenMaildrop,
    Quit,
    Reject,
    Retrieve,
    StartTLS,
    Update,
)
from mailagents.pop3._response import Response, Sentinel
from mailagents.pop3._server import Decision, ServerConnection, ServerEvent

T = TypeVar("T")
HOST = "127.0.0.1"
TIMEOUT = 10.0
FAST = POP3Timeouts.uniform(5.0)
CHALLENGE = "<1896.697170952@dbc.mtview.ca.us>"
USER, PASSWORD = "mrose", "tanstaaf"
SCRAM = sasl.scram_secrets(PASSWORD, salt=b"aio-pop3-salt!!!", iterations=4096)
MESSAGES = [
    b"Subject: one\r\n\r\nHello\r\n",
    b"Subject: two\r\n\r\n.dot line\r\n..two dots\r\n.\r\nend\r\n",
    b"Subject: three\r\n\r\n" + b"x" * 70_000 + b"\r\n",
]
CERT: SelfSignedCertificate = make_self_signed(["localhost"])


def run(coro: Coroutine[Any, Any, T], timeout: float = TIMEOUT) -> T:
    """Run one test coroutine on a fresh loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@dataclass
class Mailbox:
    """The server's application: one user and a list of (uid, message)."""

    messages: list[tuple[str, bytes]] = field(
        default_factory=lambda: [(f"uid-{i}", m) for i, m in enumerate(MESSAGES, 1)]
    )
    in_use: bool = False
    sessions: int = 0
    snapshot: list[tuple[str, bytes]] = field(default_factory=list)
    commands_seen: list[bytes] = field(default_factory=list)

    def answer(self, event: ServerEvent) -> list[Decision]:
        if isinstance(event, sasl.NeedCredentials):
            if event.authcid != USER:
                return [sasl.NoSuchUser()]
            if event.mechanism == "APOP":
                return [sasl.LegacySecret(secret=PASSWORD)]
            if event.password is not None:
                return [sasl.PasswordVerdict(valid=event.password == PASSWORD)]
            return [SCRAM]
        if isinstance(event, OpenMaildrop):
            if self.in_use:
                return [Reject(reply=Response(ok=False, code="IN-USE", text="busy"))]
            self.snapshot = list(self.messages)
            return [
                Maildrop(
                    messages=tuple(MaildropEntry(size=len(m), uid=u) for u, m in self.snapshot)
                )
            ]
        if isinstance(event, Retrieve):
            data = self.snapshot[event.number - 1][1]
            return [
                Accept(),
                *(MessageChunk(data=data[i : i + 4096]) for i in range(0, len(data), 4096)),
                MessageEnd(),
            ]
        if isinstance(event, Update):
            gone = {self.snapshot[n - 1][0] for n in event.numbers}
            self.messages = [(u, m) for u, m in self.messages if u not in gone]
            return [Accept()]
        return []


async def _serve_core(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    config: ServerConfig,
    mailbox: Mailbox,
    stls_context: ssl.SSLContext | None,
) -> None:
    mailbox.sessions += 1
    core = ServerConnection(config, challenge=CHALLENGE)
    done = False
    try:
        while True:
            while True:
                event = core.next_event()
                if isinstance(event, Sentinel):
                    break
                for decision in mailbox.answer(event):
                    core.send(decision)
                if isinstance(event, StartTLS):
                    writer.write(core.data_to_send())
                    await writer.drain()
                    assert stls_context is not None
                    await writer.start_tls(stls_context)
                    core.tls_started()
                if isinstance(event, Quit | ConnectionClosed):
                    done = True
            writer.write(core.data_to_send())
            await writer.drain()
            if done:
                return
            data = await reader.read(65536)
            mailbox.commands_seen.append(data)
            core.receive_data(data)
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def pop3_server(
    config: ServerConfig | None = None,
    mailbox: Mailbox | None = None,
    *,
    implicit_tls: bool = False,
) -> AsyncIterator[tuple[int, Mailbox]]:
    """A tiny POP3 server on 127.0.0.1 (a free port) around ServerConnection."""
    box = mailbox if mailbox is not None else Mailbox()
    cfg = config or ServerConfig(hostname="localhost", allow_plaintext_login=True, allow_apop=True)
    context = CERT.server_context()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_core(reader, writer, cfg, box, context)

    server = await asyncio.start_server(handle, HOST, 0, ssl=context if implicit_tls else None)
    try:
        yield server.sockets[0].getsockname()[1], box
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def raw_server(
    script: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    """A server that plays ``script`` on each connection (and then closes it)."""
    tasks: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await script(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()


# --- sessions against the server core --------------------------------------------------------


def test_plain_session() -> None:
    async def main() -> None:
        async with pop3_server() as (port, box):
            client = await POP3Client.connect(HOST, port, timeouts=FAST)
            assert not client.tls_active
            assert client.greeting is not None and CHALLENGE in client.greeting.text
            assert "UIDL" in client.capabilities
            await client.login(USER, PASSWORD, mechanism="USER", allow_plaintext=True)
            assert client.authenticated
            sizes = [len(m) for m in MESSAGES]
            assert await client.stat() == (3, sum(sizes))
            assert await client.list() == {1: sizes[0], 2: sizes[1], 3: sizes[2]}
            assert await client.list(2) == {2: sizes[1]}
            assert await client.uidl() == {1: "uid-1", 2: "uid-2", 3: "uid-3"}
            assert await client.uidl(3) == {3: "uid-3"}

            f = io.BytesIO()
            assert await client.retrieve(2, f) == sizes[1]
            assert f.getvalue() == MESSAGES[1]

            chunks: list[bytes] = []

            async def async_sink(data: bytes) -> None:
                await asyncio.sleep(0)
                chunks.append(data)

            assert await client.retrieve(3, async_sink) == sizes[2]
            assert b"".join(chunks) == MESSAGES[2] and len(chunks) > 1
            plain: list[bytes] = []
            await client.retrieve(1, plain.append)
            assert b"".join(plain) == MESSAGES[0]
            assert await client.top(2, 1) == b"Subject: two\r\n\r\n.dot line\r\n"

            assert (await client.dele(1)).ok
            assert (await client.rset()).ok
            assert (await client.noop()).ok
            await client.dele(2)
            with pytest.raises(POP3ResponseError) as info:
                await client.retrieve(2, io.BytesIO())
            assert "deleted" in info.value.text
            with pytest.raises(POP3ResponseError):
                await client.list(9)
            response = await client.quit()
            assert response is not None and response.ok
            assert client.closed
            assert await client.quit() is None
            assert [u for u, _ in box.messages] == ["uid-1", "uid-3"]

    run(main())


def test_login_refuses_cleartext_without_tls() -> None:
    async def main() -> None:
        config = ServerConfig(
            hostname="localhost", allow_plaintext_login=True, auth_mechanisms=("PLAIN",)
        )
        async with (
            pop3_server(config) as (port, box),
            POP3Client.connect(HOST, port, timeouts=FAST) as client,
        ):
            for call in (
                client.login(USER, PASSWORD),  # picks PLAIN: cleartext
                client.login(USER, PASSWORD, mechanism="USER"),
                client.authenticate(sasl.PlainClient(USER, PASSWORD)),
            ):
                with pytest.raises(POP3AuthenticationError, match="in the clear"):
                    await call
            assert not any(b"PASS" in c or b"AUTH" in c for c in box.commands_seen)
            with pytest.raises(ValueError):
                await client.login(USER, PASSWORD, mechanism="CRAM-MD5")

    run(main())


def test_scram_login_in_the_clear_is_fine() -> None:
    async def main() -> None:
        async with (
            pop3_server() as (port, _),
            POP3Client.connect(HOST, port, timeouts=FAST) as client,
        ):
            response = await client.login(USER, PASSWORD)  # SCRAM-SHA-256 is offered
            assert response.ok and client.authenticated
            assert await client.stat() == (3, sum(len(m) for m in MESSAGES))

    run(main())


def test_apop_and_failures() -> None:
    async def main() -> None:
        async with pop3_server() as (port, box):
            async with POP3Client.connect(HOST, port, timeouts=FAST) as client:
                with pytest.raises(POP3AuthenticationError) as info:
                    await client.apop(USER, "wrong")
                assert info.value.code == "AUTH"
                with pytest.raises(POP3AuthenticationError):
                    await client.login(USER, "wrong")
                assert (await client.apop(USER, PASSWORD)).ok
            box.in_use = True
            async with POP3Client.connect(HOST, port, timeouts=FAST) as client:
                with pytest.raises(POP3AuthenticationError) as info:
                    await client.login(USER, PASSWORD)
                assert info.value.code == "IN-USE"

    run(main())


def test_stls_used_when_offered() -> None:
    async def main() -> None:
        config = ServerConfig(hostname="localhost", tls_available=True)
        async with pop3_server(config) as (port, _):
            async with POP3Client.connect(
                HOST,
                port,
                ssl_context=CERT.client_context(),
                server_hostname="localhost",
                timeouts=FAST,
            ) as client:
                assert client.tls_active
                assert "STLS" not in client.capabilities and "USER" in client.capabilities
                await client.login(USER, PASSWORD, mechanism="USER")  # TLS: fine
                assert await client.uidl(1) == {1: "uid-1"}
            # The default context does not trust a self-signed certificate.
            with pytest.raises(POP3TLSError):
                await POP3Client.connect(HOST, port, timeouts=FAST)
            # stls=False: no TLS, and the password stays home.
            async with POP3Client.connect(HOST, port, stls=False, timeouts=FAST) as client:
                assert not client.tls_active and "STLS" in client.capabilities
                with pytest.raises(POP3AuthenticationError):
                    await client.login(USER, PASSWORD, mechanism="PLAIN")

    run(main())


def test_stls_required_but_missing() -> None:
    async def main() -> None:
        async with pop3_server() as (port, _):
            with pytest.raises(POP3TLSError, match="STLS"):
                await POP3Client.connect(HOST, port, stls=True, timeouts=FAST)
            with pytest.raises(ValueError):
                await POP3Client.connect(HOST, port, stls=True, implicit_tls=True)

    run(main())


def test_implicit_tls_verified_by_default() -> None:
    async def main() -> None:
        config = ServerConfig(hostname="localhost", tls_active=True)
        async with pop3_server(config, implicit_tls=True) as (port, _):
            with pytest.raises(POP3TLSError):
                await POP3Client.connect(HOST, port, implicit_tls=True, timeouts=FAST)
            async with POP3Client.connect(
                HOST,
                port,
                implicit_tls=True,
                ssl_context=CERT.client_context(),
                server_hostname="localhost",
                timeouts=FAST,
            ) as client:
                assert client.tls_active
                await client.login(USER, PASSWORD, mechanism="PLAIN")
                assert (await client.stat())[0] == 3
            async with POP3Client.connect(
                HOST, port, implicit_tls=True, verify=False, timeouts=FAST
            ) as client:
                assert client.tls_active

    run(main())


# --- fetch: fetchmail's keep mode -----------------------------------------------------------


def test_fetch_keep_mode() -> None:
    async def main() -> None:
        async with pop3_server() as (port, box):
            seen: set[str] = set()
            got: list[tuple[str, bytes]] = []

            async def handler(uid: str, message: bytes) -> None:
                got.append((uid, message))

            async def session(**kw: Any) -> FetchResult:
                async with POP3Client.connect(HOST, port, timeouts=FAST) as client:
                    await client.login(USER, PASSWORD)
                    return await client.fetch(handler, seen=seen, **kw)

            first = await session()
            assert first.fetched == ("uid-1", "uid-2", "uid-3")
            assert got == [(f"uid-{i}", m) for i, m in enumerate(MESSAGES, 1)]
            assert seen == {"uid-1", "uid-2", "uid-3"} == first.present
            again = await session()
            assert again.fetched == () and len(got) == 3
            box.messages.append(("uid-4", b"Subject: four\r\n\r\nnew\r\n"))
            third = await session(delete=True)
            assert third.fetched == third.deleted == ("uid-4",)
            assert got[-1] == ("uid-4", b"Subject: four\r\n\r\nnew\r\n")
            assert [u for u, _ in box.messages] == ["uid-1", "uid-2", "uid-3"]

    run(main())


def test_fetch_limit_and_failing_handler() -> None:
    async def main() -> None:
        async with pop3_server() as (port, box):
            seen: set[str] = set()
            fail = False

            async def failing(uid: str, message: bytes) -> None:
                if fail and uid == "uid-2":
                    raise OSError("disk full")

            async with POP3Client.connect(HOST, port, timeouts=FAST) as client:
                await client.login(USER, PASSWORD)
                result = await client.fetch(failing, seen=seen, limit=1000)
                assert result.skipped == ("uid-3",)  # 70 kB > 1000
                assert result.fetched == ("uid-1", "uid-2")
                seen.clear()
                fail = True
                with pytest.raises(OSError, match="disk full"):
                    await client.fetch(failing, seen=seen, delete=True)
                assert seen == {"uid-1"}  # uid-2 was not recorded
            assert len(box.messages) == 2  # uid-1 deleted at QUIT

    run(main())


# --- misbehaving servers --------------------------------------------------------------------


def test_greeting_refused() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"-ERR [SYS/TEMP] too busy\r\n")
        await writer.drain()
        await reader.read(100)

    async def main() -> None:
        async with raw_server(script) as port:
            with pytest.raises(POP3ResponseError) as info:
                await POP3Client.connect(HOST, port, timeouts=FAST)
            assert info.value.code == "SYS/TEMP"

    run(main())


def test_silent_server_times_out() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def main() -> None:
        async with raw_server(script) as port:
            with pytest.raises(POP3Timeout, match="GREETING"):
                await POP3Client.connect(HOST, port, timeouts=POP3Timeouts.uniform(0.3))

    run(main())


def test_garbage_is_a_protocol_error() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 smtp.example.org ESMTP\r\n")
        await writer.drain()
        await reader.read(100)

    async def main() -> None:
        async with raw_server(script) as port:
            with pytest.raises(POP3ProtocolError):
                await POP3Client.connect(HOST, port, timeouts=FAST)

    run(main())


async def _capa_then(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rest: bytes
) -> None:
    writer.write(b"+OK ready\r\n")
    await reader.readline()  # CAPA
    writer.write(b"-ERR no CAPA here\r\n")
    await writer.drain()
    await reader.readline()  # RETR 1
    writer.write(rest)
    await writer.drain()


def test_server_closes_in_the_middle_of_a_message() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _capa_then(reader, writer, b"+OK\r\nSubject: cut\r\n\r\nhalf a mess")

    async def main() -> None:
        async with raw_server(script) as port:
            client = await POP3Client.connect(HOST, port, timeouts=FAST)
            assert dict(client.capabilities) == {}
            f = io.BytesIO()
            with pytest.raises(POP3ConnectionClosed):
                await client.retrieve(1, f)
            assert f.getvalue() == b"Subject: cut\r\n\r\nhalf a mess"
            assert client.closed
            with pytest.raises(POP3ConnectionClosed):
                await client.noop()

    run(main())


def test_failing_sink_closes_the_connection() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _capa_then(reader, writer, b"+OK\r\n" + b"line\r\n" * 10_000)
        await asyncio.sleep(1)

    def sink(data: bytes) -> None:
        raise RuntimeError("no space")

    async def main() -> None:
        async with raw_server(script) as port:
            client = await POP3Client.connect(HOST, port, timeouts=FAST)
            with pytest.raises(RuntimeError, match="no space"):
                await client.retrieve(1, sink)
            assert client.closed

    run(main())


def test_top_limit() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _capa_then(reader, writer, b"+OK\r\n" + b"x" * 5000 + b"\r\n.\r\n")
        await asyncio.sleep(1)

    async def main() -> None:
        async with raw_server(script) as port:
            client = await POP3Client.connect(HOST, port, timeouts=FAST)
            with pytest.raises(POP3ProtocolError, match="TOP"):
                await client.top(1, 0, limit=1000)
            assert client.closed

    run(main())


def test_timeouts_validated() -> None:
    with pytest.raises(ValueError):
        POP3Timeouts(command=0)
    with pytest.raises(ValueError):
        POP3Timeouts(data=True)
    with pytest.raises(TypeError):
        POP3Client()


@pytest.mark.parametrize("required", [None, True])
def test_stls_refused(required: bool | None) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"+OK ready\r\n")
        await reader.readline()  # CAPA
        writer.write(b"+OK\r\nSTLS\r\nUSER\r\n.\r\n")
        await reader.readline()  # STLS
        writer.write(b"-ERR [SYS/TEMP] no certificate today\r\n")
        await writer.drain()
        if await reader.readline() == b"NOOP\r\n":
            writer.write(b"+OK\r\n")
            await writer.drain()
            await reader.readline()

    async def main() -> None:
        async with raw_server(script) as port:
            if required:
                with pytest.raises(POP3TLSError, match="refused") as info:
                    await POP3Client.connect(HOST, port, stls=True, timeouts=FAST)
                assert info.value.code == "SYS/TEMP"
                return
            client = await POP3Client.connect(HOST, port, timeouts=FAST)
            assert not client.tls_active
            assert (await client.noop()).ok
            await client.close()

    run(main())


# --- examples/fetchmail.py ------------------------------------------------------------------


def test_fetchmail_example(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "examples" / "fetchmail.py"
    example = runpy.run_path(str(script))
    monkeypatch.setenv("TEST_POP3_PASSWORD", PASSWORD)
    maildir = tmp_path / "Maildir"

    async def main() -> None:
        async with pop3_server() as (port, box):
            argv = [HOST, USER, "--port", str(port), "--maildir", str(maildir)]
            argv += ["--password-env", "TEST_POP3_PASSWORD"]
            assert await example["main"]([*argv, "--keep"]) == 0
            assert await example["main"]([*argv, "--keep"]) == 0
            assert len(box.messages) == 3
            box.messages.append(("uid-4", b"Subject: four\r\n\r\nnew\r\n"))
            assert await example["main"](argv) == 0
            assert [u for u, _ in box.messages] == ["uid-1", "uid-2", "uid-3"]
            assert await example["main"]([*argv, "--stls"]) == 1  # not offered

    run(main())
    out = capsys.readouterr()
    assert out.out.splitlines() == [
        f"3 new message(s) for {USER} at {HOST}",
        f"0 new message(s) for {USER} at {HOST}",
        f"1 new message(s) for {USER} at {HOST}, 1 deleted",
    ]
    assert "STLS" in out.err
    files = [*(maildir / "new").iterdir(), *(maildir / "cur").iterdir()]
    stored = sorted(p.read_bytes() for p in files)
    expected = [*MESSAGES, b"Subject: four\r\n\r\nnew\r\n"]
    assert sorted(m.replace(b"\r\n", b"\n") for m in expected) == stored
    state = maildir / f".pop3-uidl-{USER}@{HOST}"
    assert sorted(json.loads(state.read_text())) == [
        "uid-1",
        "uid-2",
        "uid-3",
        "uid-4",
    ]
