"""mailagents.aio._client, the transport the SMTP and POP3 clients share: flow control
and reads with a deadline over a fake transport, :func:`request` driving a toy core,
and the time-outs of the TLS handshakes over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import enum
import socket
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from mailagents._protocol import RemoteProtocolError
from mailagents.aio import _client, client_context

T = TypeVar("T")
HOST = "127.0.0.1"


def run(coro: Coroutine[Any, Any, T], timeout: float = 5.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Timeout(Exception):
    pass


class TLSFailed(Exception):
    pass


class Closed(Exception):
    pass


class Broken(Exception):
    pass


ERRORS = _client.ClientErrors(timeout=Timeout, tls=TLSFailed, closed=Closed, protocol=Broken)


class FakeTransport(asyncio.Transport):
    """Records what the stream asks of its transport."""

    def __init__(self, *, high_water: int | None = None) -> None:
        super().__init__()
        self.written = bytearray()
        self.calls: list[str] = []
        self.closing = False
        self.protocol: _client.ClientStream | None = None
        self.high_water = high_water

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data
        if self.high_water is not None and len(self.written) > self.high_water:
            assert self.protocol is not None
            self.protocol.pause_writing()

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.calls.append("close")
        self.closing = True

    def abort(self) -> None:
        self.calls.append("abort")
        self.closing = True

    def pause_reading(self) -> None:
        self.calls.append("pause_reading")

    def resume_reading(self) -> None:
        self.calls.append("resume_reading")


def connected(transport: FakeTransport) -> _client.ClientStream:
    stream = _client.ClientStream(asyncio.get_running_loop())
    transport.protocol = stream
    stream.connection_made(transport)
    return stream


# --- the stream -----------------------------------------------------------------------


def test_reading_pauses_above_the_high_water_mark_until_read() -> None:
    async def main() -> None:
        transport = FakeTransport()
        stream = connected(transport)
        loop = asyncio.get_running_loop()
        stream.data_received(b"x" * _client.HIGH_WATER)
        assert transport.calls == []
        stream.data_received(b"y")
        stream.data_received(b"z")
        assert transport.calls == ["pause_reading"]
        data = await stream.read(loop.time() + 1)
        assert data == b"x" * _client.HIGH_WATER + b"yz"
        assert transport.calls == ["pause_reading", "resume_reading"]
        stream.data_received(b"more")
        assert await stream.read(loop.time() + 1) == b"more"
        assert transport.calls == ["pause_reading", "resume_reading"]

    run(main())


def test_clear_forgets_the_input_and_the_pause() -> None:
    async def main() -> None:
        transport = FakeTransport()
        stream = connected(transport)
        stream.data_received(b"x" * (_client.HIGH_WATER + 1))
        stream.clear()
        stream.data_received(b"after")
        loop = asyncio.get_running_loop()
        assert await stream.read(loop.time() + 1) == b"after"
        # The pause belonged to the plaintext transport: nothing to resume on the new one.
        assert transport.calls == ["pause_reading"]

    run(main())


def test_read_waits_for_data_then_end_of_input_then_times_out() -> None:
    async def main() -> None:
        stream = connected(FakeTransport())
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, stream.data_received, b"late")
        assert await stream.read(loop.time() + 2) == b"late"
        with pytest.raises(TimeoutError):
            await stream.read(loop.time() + 0.02)
        loop.call_later(0.01, stream.eof_received)
        assert await stream.read(loop.time() + 2) == b""

    run(main())


def test_write_is_dropped_once_closing_and_drain_follows_flow_control() -> None:
    async def main() -> None:
        transport = FakeTransport()
        stream = connected(transport)
        loop = asyncio.get_running_loop()
        stream.write(b"one")
        stream.pause_writing()
        with pytest.raises(TimeoutError):
            await stream.drain(0.02)
        loop.call_later(0.01, stream.resume_writing)
        await stream.drain(2)
        stream.pause_writing()
        loop.call_later(0.01, stream.connection_lost, None)
        await stream.drain(2)  # a lost connection takes no more: nothing to wait for
        assert stream.lost.done()
        transport.closing = True
        stream.write(b"two")
        assert transport.written == b"one"

    run(main())


def test_abort_and_close_mark_the_stream_closed() -> None:
    async def main() -> None:
        transport = FakeTransport()
        stream = connected(transport)
        stream.abort()
        assert stream.closed and transport.calls == ["abort"]

        transport = FakeTransport()
        stream = connected(transport)
        asyncio.get_running_loop().call_later(0.01, stream.connection_lost, None)
        await stream.close()
        assert stream.closed and transport.calls == ["close"]

    run(main())


# --- request() with a toy core ------------------------------------------------------------


class Need(enum.Enum):
    NEED_DATA = "NEED_DATA"


@dataclass(frozen=True, slots=True)
class Line:
    data: bytes


@dataclass(frozen=True, slots=True)
class Gone:
    pass


class LineCore:
    """A toy client core: each line received is an event, ``b"!"`` breaks it."""

    def __init__(self) -> None:
        self.inbox = bytearray()
        self.out = bytearray()
        self.eof = False

    def send(self, data: bytes) -> None:
        self.out += data

    def next_event(self) -> Line | Gone | Need:
        if b"!" in self.inbox:
            raise RemoteProtocolError("a bang")
        line, found, rest = bytes(self.inbox).partition(b"\n")
        if found:
            self.inbox[:] = rest
            return Line(line)
        return Gone() if self.eof else Need.NEED_DATA

    def data_to_send(self) -> bytes:
        out = bytes(self.out)
        self.out.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        if not data:
            self.eof = True
        self.inbox += data


async def ask(
    core: LineCore, stream: _client.ClientStream, command: bytes | None, **options: Any
) -> Line | Gone:
    wait = options.pop("wait", _client.Wait(key=None, step="TEST", seconds=2.0))
    return await _client.request(
        core,
        stream,
        None if command is None else lambda: core.send(command),
        lambda: wait,
        host="peer.test",
        errors=ERRORS,
        closed_event=Gone,
        **options,
    )


def test_request_writes_the_command_and_returns_the_event() -> None:
    async def main() -> None:
        transport = FakeTransport()
        stream = connected(transport)
        core = LineCore()
        asyncio.get_running_loop().call_later(0.01, stream.data_received, b"fi")
        asyncio.get_running_loop().call_later(0.02, stream.data_received, b"rst\nsecond\n")
        assert await ask(core, stream, b"HELLO\n") == Line(b"first")
        assert transport.written == b"HELLO\n"
        assert await ask(core, stream, None) == Line(b"second")
        assert not stream.closed

    run(main())


def test_request_maps_failures_to_the_clients_errors() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        transport = FakeTransport()
        stream = connected(transport)
        loop.call_later(0.01, stream.data_received, b"!\n")
        with pytest.raises(Broken, match=r"peer\.test broke the protocol: a bang"):
            await ask(LineCore(), stream, b"X\n")
        assert stream.closed and transport.calls == ["abort"]
        with pytest.raises(Closed, match="the connection is closed"):
            await ask(LineCore(), stream, b"X\n")

        transport = FakeTransport()
        stream = connected(transport)
        loop.call_later(0.01, stream.eof_received)
        with pytest.raises(Closed, match=r"peer\.test closed the connection"):
            await ask(LineCore(), stream, b"X\n")
        assert stream.closed and transport.calls == ["abort"]

        transport = FakeTransport()
        stream = connected(transport)
        wait = _client.Wait(key=None, step="STEP", seconds=0.05)
        with pytest.raises(Timeout, match=r"no reply from peer\.test to STEP within 0\.05 s"):
            await ask(LineCore(), stream, b"X\n", wait=wait)
        assert stream.closed and transport.calls == ["abort"]

        transport = FakeTransport(high_water=0)
        stream = connected(transport)
        with pytest.raises(Timeout, match=r"peer\.test took no data for 0\.05 s"):
            await ask(LineCore(), stream, b"X\n", drain_timeout=0.05)
        assert stream.closed and transport.calls == ["abort"]

        transport = FakeTransport()
        stream = connected(transport)
        task = asyncio.create_task(ask(LineCore(), stream, b"X\n"))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert stream.closed and transport.calls == ["abort"]

    run(main())


@pytest.mark.parametrize("rearm_after_write", [False, True])
def test_a_new_time_out_starts_when_the_key_changes_or_after_a_write(
    rearm_after_write: bool,
) -> None:
    """The core writes once a second line arrived; the time-out of the first wait must
    not cut off the answer that follows unless a new one started."""

    class Chatty(LineCore):
        def next_event(self) -> Line | Gone | Need:
            if self.inbox == b"part\n":
                self.inbox.clear()
                self.send(b"more\n")
                return Need.NEED_DATA
            return super().next_event()

    async def main() -> bool:
        loop = asyncio.get_running_loop()
        stream = connected(FakeTransport())
        loop.call_later(0.2, stream.data_received, b"part\n")
        loop.call_later(0.6, stream.data_received, b"done\n")
        wait = _client.Wait(key=None, step="S", seconds=0.5)
        try:
            await ask(Chatty(), stream, b"GO\n", wait=wait, rearm_after_write=rearm_after_write)
        except Timeout:
            return False
        return True

    assert run(main()) is rearm_after_write


@pytest.mark.parametrize("key_follows_input", [False, True])
def test_a_new_time_out_starts_when_the_key_changes(key_follows_input: bool) -> None:
    """Half a line comes after 0.2 s, the rest after 0.6 s: a 0.5 s time-out
    cuts it off unless the key changed with the first half."""

    async def main() -> bool:
        loop = asyncio.get_running_loop()
        stream = connected(FakeTransport())
        core = LineCore()
        loop.call_later(0.2, stream.data_received, b"pa")
        loop.call_later(0.6, stream.data_received, b"rt\n")

        def wait() -> _client.Wait:
            key = len(core.inbox) if key_follows_input else None
            return _client.Wait(key=key, step="S", seconds=0.5)

        try:
            event = await _client.request(
                core, stream, None, wait, host="h", errors=ERRORS, closed_event=Gone
            )
        except Timeout:
            return False
        assert event == Line(b"part")
        return True

    assert run(main()) is key_follows_input


# --- connecting and TLS over sockets ----------------------------------------------------------


async def silent_server() -> tuple[asyncio.Server, int]:
    """Takes connections and never says a word (nor answers a TLS ClientHello)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    return server, port


def test_implicit_tls_handshake_bounded_by_the_connect_time_out() -> None:
    async def main() -> None:
        server, port = await silent_server()
        async with server:
            with pytest.raises(Timeout, match=f"could not connect to {HOST}:{port} within"):
                await _client.open_connection(
                    HOST,
                    port,
                    ssl_context=client_context(),
                    server_hostname=None,
                    timeout=0.1,
                    errors=ERRORS,
                )

    run(main())


def test_start_tls_time_out_and_lost_connection_abort() -> None:
    async def main() -> None:
        server, port = await silent_server()
        async with server:
            stream = await _client.open_connection(
                HOST, port, ssl_context=None, server_hostname=None, timeout=1, errors=ERRORS
            )
            with pytest.raises(Timeout, match=r"TLS handshake not done within 0\.1 s"):
                await _client.start_tls(
                    stream, None, host=HOST, server_hostname="x.test", timeout=0.1, errors=ERRORS
                )
            assert stream.closed

        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)
            writer.transport.abort()

        server = await asyncio.start_server(hang_up, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            stream = await _client.open_connection(
                HOST, port, ssl_context=None, server_hostname=None, timeout=1, errors=ERRORS
            )
            with pytest.raises(Closed, match="connection lost during the TLS handshake"):
                await _client.start_tls(
                    stream, None, host=HOST, server_hostname="x.test", timeout=2, errors=ERRORS
                )
            assert stream.closed

    run(main())


def test_start_tls_with_a_peer_that_does_not_speak_tls() -> None:
    async def main() -> None:
        async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)
            writer.write(b"HTTP/1.0 400 Bad\r\n\r\n" * 4)
            await writer.drain()
            await reader.read()

        server = await asyncio.start_server(garbage, HOST, 0, family=socket.AF_INET)
        port = server.sockets[0].getsockname()[1]
        async with server:
            stream = await _client.open_connection(
                HOST, port, ssl_context=None, server_hostname=None, timeout=1, errors=ERRORS
            )
            with pytest.raises(TLSFailed, match=f"TLS with {HOST} failed"):
                await _client.start_tls(
                    stream, None, host=HOST, server_hostname="x.test", timeout=2, errors=ERRORS
                )
            assert stream.closed

    run(main())
