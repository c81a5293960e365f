"""The listener's hooks for long sessions (mailagents/aio/_session.py,
_deadlines.py): idle deadlines per session state, the wake-up that lets the loop write
while the client is silent (from the change hub), and the codec switched on after a
reply (RFC 4978 COMPRESS=DEFLATE), with and without TLS. A toy line protocol stands in
for IMAP, over real sockets on loopback."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest

from mailagents.aio import ListenerLimits
from mailagents.aio._codec import DeflateCodec
from mailagents.aio._deadlines import Deadlines, StateTimeouts
from mailagents.aio._input import FEED
from mailagents.aio._listener import Listener
from mailagents.aio._session import WOKEN, StreamSession
from mailagents.aio._watching import FolderWatch, FolderWatcher
from mailagents.aio.tls import make_self_signed
from mailagents.store._hub import ChangeHub

T = TypeVar("T")
HUB = ChangeHub()


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def thread(func: Callable[[], T]) -> T:
    return await asyncio.to_thread(func)


class HookSession(StreamSession):
    """A toy protocol: ``login``; ``idle <folder>`` (then ``* changed`` for each change
    of the folder, until ``done``); ``compress`` (the reply plain, everything after
    compressed); ``sink`` (stops reading for a while); anything else ``ok <line>``."""

    sessions: ClassVar[list[HookSession]] = []

    def __init__(self, listener: Listener, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(listener, loop)
        self.watch: FolderWatch | None = None
        HookSession.sessions.append(self)

    def begin(self) -> None:
        self.set_state("before_login")

    async def serve(self) -> None:
        self.write(b"hello\n")
        buf = b""
        try:
            while True:
                while b"\n" in buf:
                    line, _, buf = buf.partition(b"\n")
                    if self.watch is not None:
                        if line == b"done":
                            self.watch.close()
                            self.watch = None
                            self.set_state("after_login")
                            self.write(b"ok idle\n")
                            self.answered()
                        continue
                    if line == b"login":
                        self.set_state("after_login")
                    elif line.startswith(b"idle "):
                        watcher = FolderWatcher(hub=HUB, inotify=False, poll_interval=3600)
                        self.watch = watcher.watch(line[5:].decode(), self.wake)
                        self.set_state("idle")
                        self.write(b"+ idling\n")
                        self.answered()
                        continue
                    elif line == b"sink":
                        await asyncio.sleep(0.5)  # the client's clock runs: not busy
                        self.write(b"ok sink\n")
                        self.answered()
                        continue
                    self.write(b"ok " + line + b"\n")
                    self.answered()
                    if line == b"compress":
                        self.install_codec(DeflateCodec(), leftover=buf)
                        buf = b""
                data = await self.read_or_wake()
                if data is WOKEN:
                    self.write(b"* changed\n")
                    continue
                if data is None:
                    self.write(f"bye {self.stopping} {self.deadlines.state}\n".encode())
                    return
                assert isinstance(data, bytes)
                if not data:
                    return
                buf += data
        finally:
            if self.watch is not None:
                self.watch.close()


def start(
    limits: ListenerLimits, timeouts: StateTimeouts | None = None, **kw: Any
) -> tuple[Listener, Callable[[], Coroutine[Any, Any, None]]]:
    HookSession.state_timeouts = timeouts
    HookSession.sessions = []
    listener = Listener(HookSession, limits, name="hook server", **kw)
    return listener, listener.start


def port_of(listener: Listener) -> int:
    return int(listener.sockets[0].getsockname()[1])


def read_line(sock: socket.socket) -> bytes:
    out = b""
    while not out.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        out += chunk
    return out


class Compressed:
    """The client's side of a compressed connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)
        self.plain = b""

    def wire(self, data: bytes) -> bytes:
        return self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)

    def send(self, data: bytes) -> None:
        self.sock.sendall(self.wire(data))

    def line(self) -> bytes:
        while b"\n" not in self.plain:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError(self.plain)
            self.plain += self.inflate.decompress(chunk)
        line, _, self.plain = self.plain.partition(b"\n")
        return line + b"\n"


# --- deadlines per state (no sockets) ---------------------------------------------------


LIMITS = ListenerLimits(idle_timeout=10.0, command_timeout=30.0)


def test_state_timeouts_defaults_are_imaps() -> None:
    timeouts = StateTimeouts()
    assert timeouts.get("before_login") == 60.0
    assert timeouts.get("after_login") >= 1800.0  # RFC 9051 §5.4: at least 30 minutes
    assert timeouts.get("idle") >= 1800.0
    assert timeouts.get("selected") is None
    assert StateTimeouts(others={"selected": 900.0}).get("selected") == 900.0
    with pytest.raises(ValueError):
        StateTimeouts(before_login=0)
    with pytest.raises(ValueError):
        StateTimeouts(others={"x": -1.0})


def test_a_state_sets_the_idle_deadline() -> None:
    deadlines = Deadlines(LIMITS)
    deadlines.start(1000.0)
    assert deadlines.next() == (1010.0, "idle")
    deadlines.set_state("after_login", 1800.0)
    assert deadlines.state == "after_login"
    assert deadlines.next() == (2800.0, "idle")
    # The command deadline is unchanged, and now the first to fall inside a command.
    deadlines.received(1001.0, armed_for=2800.0)
    assert deadlines.next() == (1031.0, "command")
    assert deadlines.soonest == 30.0
    deadlines.answered(1002.0)
    deadlines.set_state("before_login", 5.0)
    assert deadlines.next() == (1007.0, "idle") and deadlines.soonest == 5.0
    deadlines.set_state(None)
    assert deadlines.next() == (1012.0, "idle") and deadlines.state is None
    with pytest.raises(ValueError):
        deadlines.set_state("x", 0.0)


def test_a_state_timeout_is_paused_like_the_others() -> None:
    deadlines = Deadlines(LIMITS)
    deadlines.start(0.0)
    deadlines.set_state("idle", 100.0)
    assert deadlines.pause(50.0)
    assert deadlines.resume(80.0)
    assert deadlines.next() == (130.0, "idle")


# --- over sockets ---------------------------------------------------------------------


def test_short_deadline_before_login_long_after() -> None:
    async def main() -> None:
        limits = ListenerLimits(idle_timeout=300.0, command_timeout=300.0)
        listener, begin = start(limits, StateTimeouts(before_login=0.3, after_login=60.0))
        await begin()
        port = port_of(listener)

        def silent() -> tuple[bytes, bytes, float]:
            with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
                t0 = time.monotonic()
                hello = read_line(sock)
                bye = read_line(sock)
                return hello, bye, time.monotonic() - t0

        def logged_in() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
                got = [read_line(sock)]
                sock.sendall(b"login\n")
                got.append(read_line(sock))
                time.sleep(1.0)  # longer than before_login's 0.3 s
                sock.sendall(b"noop\n")
                got.append(read_line(sock))
                return got

        hello, bye, took = await thread(silent)
        assert (hello, bye) == (b"hello\n", b"bye timeout before_login\n")
        assert took < 250  # the 300 s listener default did not apply
        assert await thread(logged_in) == [b"hello\n", b"ok login\n", b"ok noop\n"]
        await listener.close()

    run(main())


def test_idle_is_woken_by_the_hub_while_the_client_is_silent(tmp_path: Path) -> None:
    async def main() -> None:
        listener, begin = start(ListenerLimits(), StateTimeouts())
        await begin()
        port = port_of(listener)
        folder = str(tmp_path)
        idling = threading.Event()

        def client() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
                got = [read_line(sock)]
                sock.sendall(b"login\nidle " + folder.encode() + b"\n")
                got += [read_line(sock), read_line(sock)]
                idling.set()
                got.append(read_line(sock))  # unsolicited: nothing was sent
                sock.sendall(b"done\n")
                got.append(read_line(sock))
                return got

        task = asyncio.ensure_future(thread(client))
        await thread(lambda: idling.wait(20))
        session = HookSession.sessions[-1]
        assert session.deadlines.state == "idle"
        assert session.deadlines.idle_timeout == 1800.0
        # A store write in another thread (here its notification alone).
        await thread(lambda: HUB.notify(folder))
        got = await task
        assert got == [b"hello\n", b"ok login\n", b"+ idling\n", b"* changed\n", b"ok idle\n"]
        assert session.deadlines.state == "after_login"
        assert not HUB.watched(folder)
        await listener.close()

    run(main())


def test_wake_before_any_session_waits_is_not_lost() -> None:
    async def main() -> None:
        listener, begin = start(ListenerLimits())
        await begin()
        port = port_of(listener)

        def client() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
                got = [read_line(sock)]
                got.append(read_line(sock))
                return got

        task = asyncio.ensure_future(thread(client))
        while not HookSession.sessions:
            await asyncio.sleep(0.01)
        session = HookSession.sessions[-1]
        session.wake()
        session.wake()  # two wake-ups before the loop looks: one
        assert await task == [b"hello\n", b"* changed\n"]
        await listener.close()

    run(main())


def _compress_session(port: int, context: ssl.SSLContext | None, pipelined: bool) -> list[bytes]:
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock = context.wrap_socket(raw, server_hostname="localhost") if context else raw
    with sock:
        got = [read_line(sock)]
        client = Compressed(sock)
        if pipelined:
            # The compressed command right behind COMPRESS, in one segment.
            sock.sendall(b"compress\n" + client.wire(b"noop\n"))
            got.append(read_line(sock))  # the OK itself is not compressed
        else:
            sock.sendall(b"compress\n")
            got.append(read_line(sock))
            client.send(b"noop\n")
        got.append(client.line())
        client.send(b"big " + b"y" * 300_000 + b"\n")
        got.append(client.line()[:8])
        return got


@pytest.mark.parametrize("pipelined", [False, True])
def test_compress_after_the_reply(pipelined: bool) -> None:
    async def main() -> None:
        listener, begin = start(ListenerLimits())
        await begin()
        port = port_of(listener)
        got = await thread(lambda: _compress_session(port, None, pipelined))
        assert got == [b"hello\n", b"ok compress\n", b"ok noop\n", b"ok big y"]
        assert isinstance(HookSession.sessions[-1].codec, DeflateCodec)
        await listener.close()

    run(main())


def test_compress_over_tls() -> None:
    async def main() -> None:
        cert = make_self_signed()
        listener, begin = start(ListenerLimits(), ssl_context=cert.server_context())
        await begin()
        port = port_of(listener)
        got = await thread(lambda: _compress_session(port, cert.client_context(), False))
        assert got == [b"hello\n", b"ok compress\n", b"ok noop\n", b"ok big y"]
        await listener.close()

    run(main())


def test_a_zip_bomb_is_inflated_only_as_fast_as_it_is_read() -> None:
    async def main() -> None:
        limits = ListenerLimits(read_high_water=64 * 1024)
        listener, begin = start(limits)
        await begin()
        port = port_of(listener)
        peak = {"input": 0, "held": 0}
        done = asyncio.Event()

        async def watch_buffers() -> None:
            while not done.is_set():
                if HookSession.sessions:
                    s = HookSession.sessions[-1]
                    peak["input"] = max(peak["input"], s._input.size)
                    codec = s.codec
                    if isinstance(codec, DeflateCodec):
                        peak["held"] = max(peak["held"], codec.pending)
                await asyncio.sleep(0.001)

        def client() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                got = [read_line(sock)]
                sock.sendall(b"compress\n")
                got.append(read_line(sock))
                c = Compressed(sock)
                # "sink" makes the server wait while 32 MiB of lines inflate behind it.
                c.send(b"sink\n")
                c.send((b"z" * 1023 + b"\n") * (32 * 1024))
                c.send(b"end\n")
                got.append(c.line())
                while (line := c.line()) != b"ok end\n":
                    pass
                got.append(line)
                return got

        watcher = asyncio.ensure_future(watch_buffers())
        got = await thread(client)
        done.set()
        await watcher
        assert got == [b"hello\n", b"ok compress\n", b"ok sink\n", b"ok end\n"]
        # Watched while it arrived, and never more than the bound (plus one feed).
        assert 0 < peak["input"] <= limits.read_high_water + FEED
        assert peak["held"] <= 1024 * 1024
        await listener.close()

    run(main(), timeout=120)


def test_corrupt_compressed_input_ends_the_connection() -> None:
    async def main() -> None:
        listener, begin = start(ListenerLimits())
        await begin()
        port = port_of(listener)

        def client() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
                read_line(sock)
                sock.sendall(b"compress\n")
                read_line(sock)
                sock.sendall(b"\xff\xff\xff\xff not deflate\n")
                out = b""
                try:
                    while chunk := sock.recv(4096):
                        out += chunk
                except ConnectionResetError:
                    pass
                return out

        assert await thread(client) == b""  # aborted, nothing more said
        assert HookSession.sessions[-1].stopping == "abort"
        await listener.close()

    run(main())


def test_install_codec_twice_is_refused() -> None:
    async def main() -> None:
        listener, begin = start(ListenerLimits())
        await begin()
        port = port_of(listener)

        def client() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
                read_line(sock)
                sock.sendall(b"compress\n")
                read_line(sock)

        await thread(client)
        session = HookSession.sessions[-1]
        with pytest.raises(RuntimeError):
            session.install_codec(DeflateCodec())
        await listener.close()

    run(main())
