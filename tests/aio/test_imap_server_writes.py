"""How the asyncio IMAP server writes a command's untagged responses
(mailagents/aio/_imap_server.py): gathered into few writes, in order, the last ones with
the tagged answer; a client that does not read still holds the handler back."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mailagents import sasl
from mailagents.aio import ListenerLimits
from mailagents.aio._imap_server import IMAPConnection
from mailagents.aio.imap import IMAPHandler, IMAPServer, IMAPSession
from mailagents.imap import commands, responses
from mailagents.imap._config import ServerConfig
from mailagents.imap._events import Complete, Greeting
from mailagents.imap._selected import SelectedMailbox
from mailagents.imap._server import ServerConnection

TIMEOUT = 30.0


class Many(IMAPHandler):
    """SEARCH answers ``count`` untagged SEARCH responses of ``numbers`` numbers each."""

    def __init__(self, count: int, numbers: int) -> None:
        self.count = count
        self.numbers = numbers
        self.sent = 0

    async def on_credentials(
        self, session: IMAPSession, request: sasl.NeedCredentials
    ) -> sasl.Answer:
        return sasl.PasswordVerdict(valid=request.password == "secret")

    async def on_command(self, session: IMAPSession, command: commands.Command) -> Complete:
        if isinstance(command, commands.Select):
            return Complete(selected=SelectedMailbox([1]))
        if isinstance(command, commands.Search):
            for i in range(self.count):
                numbers = tuple(range(i * self.numbers + 1, (i + 1) * self.numbers + 1))
                await session.send(responses.SearchData(numbers=numbers))
                self.sent += 1
            return Complete()
        return Complete(status="NO", text="Not here")


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The size of every write of every IMAPConnection."""
    sizes: list[int] = []
    original = IMAPConnection.write

    def write(self: IMAPConnection, data: bytes) -> None:
        if data:
            sizes.append(len(data))
        original(self, data)

    monkeypatch.setattr(IMAPConnection, "write", write)
    yield sizes


def _read_until(sock: socket.socket, tag: bytes, seconds: float = 20.0) -> bytes:
    """What the server sends up to and with the line that starts with ``tag``."""
    data = bytearray()
    deadline = time.monotonic() + seconds
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise AssertionError(f"closed after {bytes(data[-200:])!r}")
        data += chunk
        if data.endswith(b"\r\n"):
            before = data.rfind(b"\r\n", 0, len(data) - 2)
            if data.startswith(tag, before + 2 if before >= 0 else 0):
                return bytes(data)


def _session(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    _read_until(sock, b"* OK")
    sock.sendall(b"a LOGIN user secret\r\n")
    _read_until(sock, b"a OK")
    sock.sendall(b"b SELECT INBOX\r\n")
    _read_until(sock, b"b OK")
    return sock


def _serve(handler: IMAPHandler, client: Any, **limits: Any) -> Any:
    async def main() -> Any:
        config = ServerConfig(allow_plaintext_login=True)
        server = IMAPServer(handler, config, limits=ListenerLimits(
            auth_failure_delay=0.01, max_auth_failure_delay=0.01, **limits))
        async with server:
            return await asyncio.to_thread(client, server.port)

    return asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def test_small_untagged_responses_go_out_in_one_write_with_the_tagged_answer(
    writes: list[int],
) -> None:
    handler = Many(count=200, numbers=3)

    def client(port: int) -> tuple[bytes, list[int]]:
        with _session(port) as sock:
            writes.clear()
            sock.sendall(b"c SEARCH ALL\r\n")
            return _read_until(sock, b"c "), list(writes)  # not the BYE at the end

    got, sizes = _serve(handler, client)
    lines = got.split(b"\r\n")[:-1]
    assert len(lines) == 201 and lines[-1].startswith(b"c OK")
    for i, line in enumerate(lines[:-1]):
        assert line == b"* SEARCH " + b" ".join(b"%d" % (i * 3 + k) for k in (1, 2, 3))
    # 200 responses of about 20 octets: one write, not one each.
    assert sizes == [len(got)]


def test_many_octets_of_untagged_responses_are_written_as_they_pile_up(
    writes: list[int],
) -> None:
    handler = Many(count=100, numbers=1000)  # about 6 KB each, 600 KB in all

    def client(port: int) -> tuple[bytes, list[int]]:
        with _session(port) as sock:
            writes.clear()
            sock.sendall(b"c SEARCH ALL\r\n")
            return _read_until(sock, b"c "), list(writes)  # not the BYE at the end

    got, sizes = _serve(handler, client)
    lines = got.split(b"\r\n")[:-1]
    assert len(lines) == 101 and lines[-1].startswith(b"c OK")
    assert lines[99].endswith(b" 100000")
    assert sum(sizes) == len(got)
    # Not one write per response, and not one write for everything either.
    assert 5 <= len(sizes) <= 20
    assert all(size >= 64 * 1024 for size in sizes[:-1])


def test_a_client_that_does_not_read_holds_the_handler_back() -> None:
    handler = Many(count=2000, numbers=1000)  # about 12 MB if it were all sent

    def client(port: int) -> tuple[int, int]:
        with _session(port) as sock:
            sock.sendall(b"c SEARCH ALL\r\n")
            time.sleep(0.5)
            early = handler.sent
            got = _read_until(sock, b"c ", 60)
            return early, got.count(b"* SEARCH ")

    early, received = _serve(handler, client, write_high_water=16 * 1024)
    # It waited for the client (what the kernel's socket buffers hold, a few MB, went
    # out) instead of queueing all 12 MB.
    assert early < 1500
    assert received == 2000 and handler.sent == 2000


def test_the_core_tells_how_much_is_pending() -> None:
    core = ServerConnection(ServerConfig())
    assert core.pending == 0
    core.send(Greeting())
    pending = core.pending
    out = core.data_to_send()
    assert pending == len(out) > 0 and core.pending == 0
