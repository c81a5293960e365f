"""mailagents.aio._listener and the session it serves (mailagents.aio._session), tested
with a toy line protocol (no SMTP), so that what SMTP and POP3 share (and IMAP would
reuse) is pinned down on its own."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from mailagents.aio import AuthThrottle, ListenerLimits, _throttle
from mailagents.aio._listener import Listener, Refusal
from mailagents.aio._session import StreamSession
from mailagents.aio._throttle import address_key

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 15.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def thread(func: Callable[[], T]) -> T:
    return await asyncio.to_thread(func)


class LineSession(StreamSession):
    """A toy protocol: greets ``hello``, answers each line ``ok <line>``. ``slow`` takes
    0.6 s of server time, ``hang`` never returns, ``begin`` starts a transaction whose
    content runs up to a line ``end``, ``flood`` writes 8 MiB, ``quit`` ends."""

    def __init__(self, listener: Listener, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(listener, loop)
        self.in_transaction = False

    def refuse(self, why: Refusal) -> None:
        self.write(f"busy {why}\n".encode())

    def at_boundary(self) -> bool:
        return not self.in_transaction

    async def serve(self) -> None:
        self.write(b"hello\n")
        buf = b""
        while True:
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                if self.in_transaction and line != b"end":
                    continue
                self.in_transaction = line == b"begin"
                if line == b"slow":
                    await self.busy(asyncio.sleep(0.6))
                elif line == b"hang":
                    await self.busy(asyncio.sleep(100))
                elif line == b"flood":
                    for _ in range(128):
                        self.write(b"x" * 65536)
                        if not await self.drain():
                            return
                self.write(b"ok " + line + b"\n")
                self.answered()
                if line == b"quit":
                    return
            data = await self.read()
            if data is None:
                self.write(f"bye {self.stopping}\n".encode())
                return
            if not data:
                return
            if self.in_transaction:
                self.transferring()
            buf += data


def line_listener(limits: ListenerLimits) -> Listener:
    return Listener(LineSession, limits, name="line server")


def port_of(listener: Listener) -> int:
    return int(listener.sockets[0].getsockname()[1])


def connect(port: int, source: str | None = None, host: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(
        (host, port), timeout=5, source_address=(source, 0) if source else None
    )


def read_line(sock: socket.socket) -> bytes:
    out = b""
    while not out.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        out += chunk
    return out


def read_to_eof(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


# --- settings ----------------------------------------------------------------------------


def test_defaults_are_documented_minimums() -> None:
    limits = ListenerLimits()
    assert limits.backlog >= 1024
    assert limits.idle_timeout >= 300  # RFC 5321 §4.5.3.2.7
    assert limits.command_timeout >= 300
    assert limits.max_auth_failures == 3 and limits.max_auth_failures_per_address == 10
    with pytest.raises(ValueError):
        ListenerLimits(idle_timeout=0)
    with pytest.raises(ValueError):
        ListenerLimits(max_connections_per_address=0)
    with pytest.raises(ValueError):
        ListenerLimits(auth_failure_delay=-1)
    with pytest.raises(ValueError):
        ListenerLimits(ipv6_prefix=129)


def test_address_key() -> None:
    assert address_key(("192.0.2.7", 25)) == "192.0.2.7"
    assert address_key(("::ffff:192.0.2.7", 25, 0, 0)) == "192.0.2.7"
    assert address_key(("2001:db8::1", 25, 0, 0)) == "2001:db8::/64"
    assert address_key(("2001:db8::1:2:3:4", 25, 0, 0)) == "2001:db8::/64"
    assert address_key(("2001:db8::1", 25, 0, 0), 128) == "2001:db8::1/128"
    assert address_key(("fe80::1%eth0", 25, 0, 2)) == "fe80::/64"
    assert address_key("/run/socket") == "/run/socket"
    assert address_key(None) == "None"


def test_throttle_delays_double_up_to_the_cap_and_close() -> None:
    now = [0.0]
    limits = ListenerLimits(auth_failure_delay=1.0, max_auth_failure_delay=5.0,
                            max_auth_failures=3, max_auth_failures_per_address=10,
                            auth_failure_window=60.0)
    throttle = AuthThrottle(limits, clock=lambda: now[0])
    assert throttle.failed("a", 1) == (1.0, False)
    assert throttle.failed("a", 2) == (2.0, False)
    assert throttle.failed("a", 3) == (4.0, True)  # the connection's third: close
    # A new connection from the same address starts where the address stands.
    assert throttle.failed("a", 1) == (5.0, False)
    assert throttle.failures("a") == 4
    assert throttle.failed("b", 1) == (1.0, False)  # other addresses are not affected
    for _ in range(5):
        throttle.failed("a", 1)
    assert throttle.failed("a", 1) == (5.0, True)  # the address's tenth: close
    now[0] = 61.0  # the window passed
    assert throttle.failures("a") == 0
    assert throttle.failed("a", 1) == (1.0, False)


def test_throttle_remembers_a_bounded_number_of_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_throttle, "_MAX_TRACKED", 100)
    throttle = AuthThrottle(ListenerLimits())
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}", 1)
    assert len(throttle._failures) == 100
    assert throttle.failures("10.0.3.231") == 1  # the newest are kept
    assert throttle.failures("10.0.0.0") == 0


# --- listening ---------------------------------------------------------------------------


def test_backlog_and_several_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        create_server = loop.create_server

        async def spy(*args: Any, **kwargs: Any) -> asyncio.Server:
            seen.update(kwargs)
            return await create_server(*args, **kwargs)

        monkeypatch.setattr(loop, "create_server", spy)
        listener = line_listener(ListenerLimits(backlog=2048))
        hosts = ["127.0.0.1", "::1"] if socket.has_ipv6 else ["127.0.0.1"]
        try:
            await listener.start(hosts, 0)
        except OSError:
            await listener.start("127.0.0.1", 0)
        try:
            for sock in listener.sockets:
                host, port = sock.getsockname()[:2]
                with connect(port, host=host) as client:
                    assert await thread(lambda c=client: read_line(c)) == b"hello\n"
            with pytest.raises(RuntimeError):
                await listener.start()
        finally:
            await listener.close()
        assert listener.sockets == ()

    run(main())
    assert seen["backlog"] == 2048


# --- deadlines ---------------------------------------------------------------------------


def test_idle_timeout() -> None:
    async def main() -> None:
        listener = line_listener(ListenerLimits(idle_timeout=0.3))
        await listener.start()
        try:
            with connect(port_of(listener)) as sock:
                start = time.monotonic()
                got = await thread(lambda: read_to_eof(sock))
                elapsed = time.monotonic() - start
            assert got == b"hello\nbye timeout\n"
            assert 0.25 < elapsed < 1.0
        finally:
            await listener.close()

    run(main())


def test_command_deadline_is_not_reset_by_reads() -> None:
    async def main() -> None:
        listener = line_listener(ListenerLimits(idle_timeout=5, command_timeout=0.5))
        await listener.start()
        try:
            with connect(port_of(listener)) as sock:
                assert await thread(lambda: read_line(sock)) == b"hello\n"

                def trickle() -> tuple[bytes, float]:
                    start = time.monotonic()
                    sock.settimeout(0.1)
                    for byte in b"a rather long command":
                        try:
                            sock.sendall(bytes([byte]))
                            if sock.recv(1, socket.MSG_PEEK):
                                break
                        except TimeoutError:
                            pass
                        except OSError:
                            break
                    sock.settimeout(5)
                    return read_to_eof(sock), time.monotonic() - start

                got, elapsed = await thread(trickle)
            assert got == b"bye timeout\n"
            assert 0.45 < elapsed < 1.0
        finally:
            await listener.close()

    run(main())


def test_server_time_is_not_the_clients() -> None:
    """0.6 s inside a handler call, with 0.3 s deadlines: the client is not cut off."""

    async def main() -> None:
        listener = line_listener(ListenerLimits(idle_timeout=0.3, command_timeout=0.3))
        await listener.start()
        try:
            with connect(port_of(listener)) as sock:

                def client() -> bytes:
                    read_line(sock)
                    sock.sendall(b"slow\n")
                    answer = read_line(sock)
                    sock.sendall(b"quit\n")
                    return answer + read_to_eof(sock)

                assert await thread(client) == b"ok slow\nok quit\n"
        finally:
            await listener.close()

    run(main())


def test_transfer_deadline_bounds_trickling_content() -> None:
    async def main() -> None:
        limits = ListenerLimits(idle_timeout=5, command_timeout=0.3, transfer_timeout=0.8)
        listener = line_listener(limits)
        await listener.start()
        try:
            with connect(port_of(listener)) as sock:

                def client() -> tuple[bytes, float]:
                    read_line(sock)
                    sock.sendall(b"begin\n")
                    assert read_line(sock) == b"ok begin\n"
                    start = time.monotonic()
                    sock.settimeout(0.1)
                    for _ in range(50):
                        try:
                            sock.sendall(b"z")
                            if sock.recv(1, socket.MSG_PEEK):
                                break
                        except TimeoutError:
                            pass
                        except OSError:
                            break
                    sock.settimeout(5)
                    return read_to_eof(sock), time.monotonic() - start

                got, elapsed = await thread(client)
            # Longer than the command deadline, cut at the transfer deadline.
            assert got == b"bye timeout\n"
            assert 0.7 < elapsed < 1.4
        finally:
            await listener.close()

    run(main())


def test_client_that_does_not_read_is_aborted_after_the_send_timeout() -> None:
    async def main() -> None:
        limits = ListenerLimits(write_high_water=16384, send_timeout=0.5)
        listener = line_listener(limits)
        await listener.start()
        try:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port_of(listener)))
            with sock:
                await thread(lambda: sock.sendall(b"flood\n"))
                while not listener.sessions:
                    await asyncio.sleep(0.001)
                start = time.monotonic()
                while listener.sessions and time.monotonic() - start < 5:
                    for session in listener.sessions:
                        assert session.transport is not None
                        assert session.transport.get_write_buffer_size() <= 2 * 65536
                    await asyncio.sleep(0.01)
                elapsed = time.monotonic() - start
                assert not listener.sessions
                assert 0.4 < elapsed < 2.0
                # Aborted: what the kernel had taken arrives, then the end; the rest of
                # the 8 MiB never does.
                received = await thread(lambda: read_to_eof(sock))
                assert len(received) < 128 * 65536
                assert not received.endswith(b"ok flood\n")
        finally:
            await listener.close()

    run(main())


# --- limits ------------------------------------------------------------------------------


def test_global_and_per_address_limits() -> None:
    async def main() -> None:
        limits = ListenerLimits(max_connections=2, max_connections_per_address=1)
        listener = line_listener(limits)
        await listener.start()
        port = port_of(listener)
        try:
            first = connect(port)
            assert await thread(lambda: read_line(first)) == b"hello\n"
            with first:
                with connect(port) as again:
                    assert await thread(lambda: read_to_eof(again)) == b"busy address\n"
                try:
                    other = connect(port, source="127.0.0.2")
                except OSError:
                    pytest.skip("no 127.0.0.2 on this host")
                with other:
                    assert await thread(lambda: read_line(other)) == b"hello\n"
                    assert listener.connections_from("127.0.0.1") == 1
                    with connect(port, source="127.0.0.3") as third:
                        assert await thread(lambda: read_to_eof(third)) == b"busy connections\n"
                    # The served ones go on.
                    first.sendall(b"ping\n")
                    assert await thread(lambda: read_line(first)) == b"ok ping\n"
            for _ in range(100):
                if not listener.sessions:
                    break
                await asyncio.sleep(0.01)
            assert listener.connections_from("127.0.0.1") == 0
            with connect(port) as later:
                assert await thread(lambda: read_line(later)) == b"hello\n"
        finally:
            await listener.close()

    run(main())


# --- shutdown ----------------------------------------------------------------------------


def test_graceful_close_waits_for_the_transaction() -> None:
    async def main() -> None:
        listener = line_listener(ListenerLimits())
        await listener.start()
        port = port_of(listener)
        idle, busy = connect(port), connect(port)
        with idle, busy:
            await thread(lambda: read_line(idle))
            await thread(lambda: read_line(busy))
            await thread(lambda: busy.sendall(b"begin\n"))
            assert await thread(lambda: read_line(busy)) == b"ok begin\n"
            closing = asyncio.ensure_future(listener.close(grace=5))
            assert await thread(lambda: read_to_eof(idle)) == b"bye drain\n"
            with pytest.raises(OSError):
                connect(port).close()
            assert not closing.done()
            await thread(lambda: busy.sendall(b"content\nend\n"))
            assert await thread(lambda: read_to_eof(busy)) == b"ok end\nbye drain\n"
            await asyncio.wait_for(closing, 1)

    run(main())


def test_close_cancels_a_stuck_session_after_grace_and_timeout() -> None:
    async def main() -> None:
        listener = line_listener(ListenerLimits(shutdown_timeout=0.2))
        await listener.start()
        with connect(port_of(listener)) as sock:
            await thread(lambda: read_line(sock))
            await thread(lambda: sock.sendall(b"hang\n"))
            await asyncio.sleep(0.1)
            start = time.monotonic()
            await listener.close(grace=0.2)
            assert 0.35 < time.monotonic() - start < 1.0
            assert await thread(lambda: read_to_eof(sock)) == b""
        assert not listener.sessions

    run(main())


# --- SO_REUSEPORT: several servers (processes) on one port --------------------------


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT here")
def test_servers_with_reuse_port_share_one_port_and_its_connections() -> None:
    from mailagents.aio import SMTPHandler, serve_smtp

    async def main() -> None:
        limits = ListenerLimits(reuse_port=True)
        first = await serve_smtp(SMTPHandler(), limits=limits)
        # (Two servers of one process stand in for two processes: the option is the
        # socket's, and the kernel spreads connections over the listening sockets.)
        second = await serve_smtp(SMTPHandler(), port=first.port, limits=limits)
        try:
            assert second.port == first.port
            served = [0, 0]

            def clients() -> None:
                for _ in range(40):
                    with socket.create_connection(("127.0.0.1", first.port), timeout=5) as s:
                        assert s.recv(100).startswith(b"220 ")
                        s.sendall(b"QUIT\r\n")
                        assert s.recv(100).startswith(b"221 ")

            async def count() -> None:
                while True:
                    served[0] = max(served[0], first.connections)
                    served[1] = max(served[1], second.connections)
                    await asyncio.sleep(0)

            counter = asyncio.create_task(count())
            await thread(clients)
            counter.cancel()
            assert served[0] > 0 and served[1] > 0  # both took some (2 ** -39 to fail)
        finally:
            await first.close()
            await second.close()

    run(main())


def test_without_reuse_port_a_second_server_cannot_take_the_port() -> None:
    from mailagents.aio import SMTPHandler, serve_smtp

    async def main() -> None:
        first = await serve_smtp(SMTPHandler())
        try:
            with pytest.raises(OSError):
                await serve_smtp(SMTPHandler(), port=first.port)
        finally:
            await first.close()

    run(main())
