"""How fast is the SMTP server core, with no sockets?

(a) transactions per second: pipelined sessions of MAIL/RCPT/DATA + a 10 KB message +
    RSET fed through ``ServerConnection`` in 64 KiB pieces, every decision accepted;
(b) DATA throughput: one 100 MB message of realistic text lines fed in 64 KiB pieces
    through DATA (dot-unstuffing) and through BDAT.

The peer, measured in the same run on the same bytes:

- aiosmtpd (if importable; ``pip install aiosmtpd``). It is not sans-I/O: its SMTP class
  is an asyncio protocol that reads lines from a StreamReader. It is driven here
  through an in-memory transport (no sockets), and so is our own asyncio adapter
  (``mailagents.aio``), so that both figures include the same event-loop costs;
- always, a naive per-line Python reader (``data.split(b"\\r\\n")`` and unstuffing in a
  loop), which is what a straightforward SMTP core does.

Run: ``python benchmarks/smtp_core.py`` (``--quick`` for a smaller run). The last line
is the ratio of our DATA throughput to the peer's (aiosmtpd when available, else the
naive reader). Bounded: well under a minute on a laptop.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import random
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from mailagents import sasl
from mailagents.aio import Session, SMTPHandler, SMTPServer
from mailagents.aio.smtp import _Connection
from mailagents.smtp import (
    NEED_DATA,
    PAUSED,
    Accept,
    DataChunk,
    Envelope,
    Hello,
    LMTPReplies,
    MailFrom,
    MessageComplete,
    RcptTo,
    Reject,
    ServerConfig,
    ServerConnection,
)
from mailagents.smtp._data import dot_stuff

CHUNK = 65536
MB = 1_000_000
WORDS = tuple(
    " ".join(
        [
            "the of and to in is that for it as with was on be by at this from have or not",
            "message mail server client delivery queue relay domain example recipient sender",
            "Received: Subject: Re: invoice meeting tomorrow please find attached regards",
            "http://example.test/path?q=1 =C3=A9t=C3=A9 -- 2024 12:34:56 +0000 <id@host.test>",
        ]
    ).split()
)


def realistic_block(size: int = 10_240, seed: int = 5321) -> bytes:
    """About ``size`` octets of mail-like text: CRLF lines of 0 to 78 characters, a few
    starting with a period (so that DATA has to unstuff them)."""
    rng = random.Random(seed)
    lines: list[str] = []
    total = 0
    while total < size:
        roll = rng.random()
        if roll < 0.08:
            line = ""
        elif roll < 0.10:
            line = "." + " ".join(rng.choices(WORDS, k=rng.randint(1, 8)))
        else:
            words: list[str] = []
            width = rng.randint(20, 76)
            while sum(len(w) + 1 for w in words) < width:
                words.append(rng.choice(WORDS))
            line = " ".join(words)[:78]
        lines.append(line)
        total += len(line) + 2
    return "".join(line + "\r\n" for line in lines).encode("ascii")


def pieces(data: bytes, size: int = CHUNK) -> Iterator[bytes]:
    view = memoryview(data)
    for i in range(0, len(data), size):
        yield bytes(view[i : i + size])


def best_of(runs: int, func: Callable[[], Any]) -> float:
    """The fastest of ``runs`` timings of ``func()``, in seconds."""
    best = float("inf")
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


# --- driving the core ------------------------------------------------------------------


def drive(server: ServerConnection, data_pieces: Iterator[bytes]) -> tuple[int, int]:
    """Feed every piece, accept every decision; return (messages, content octets)."""
    messages = 0
    octets = 0
    accept = Accept()
    for piece in data_pieces:
        server.receive_data(piece)
        while True:
            event = server.next_event()
            if event is NEED_DATA or event is PAUSED:
                break
            if type(event) is DataChunk:
                octets += len(event.data)
            elif isinstance(event, MessageComplete):
                messages += 1
                server.send(accept)
            elif isinstance(event, Hello | MailFrom | RcptTo):
                server.send(accept)
        server.data_to_send()
    return messages, octets


def transactions_script(block: bytes, per_session: int) -> bytes:
    stuffed = dot_stuff(block)
    tx = (
        b"MAIL FROM:<sender@example.test>\r\nRCPT TO:<rcpt@example.test>\r\nDATA\r\n"
        + stuffed
        + b".\r\nRSET\r\n"
    )
    return b"EHLO client.example.test\r\n" + tx * per_session + b"QUIT\r\n"


def bench_transactions(total: int, block: bytes) -> float:
    per_session = 100
    sessions = max(1, total // per_session)
    script = transactions_script(block, per_session)
    chunks = list(pieces(script))
    config = ServerConfig(forbid_early_data=False)  # a replayed script: no 354 to wait for

    def run() -> None:
        for _ in range(sessions):
            messages, _ = drive(ServerConnection(config), iter(chunks))
            assert messages == per_session, messages

    seconds = best_of(2, run)
    return sessions * per_session / seconds


def data_script(content: bytes) -> bytes:
    return (
        b"EHLO client.example.test\r\nMAIL FROM:<s@example.test>\r\n"
        b"RCPT TO:<r@example.test>\r\nDATA\r\n" + dot_stuff(content) + b".\r\nQUIT\r\n"
    )


def bdat_script(content: bytes, chunk_size: int = 1 << 20) -> bytes:
    parts = [
        b"EHLO client.example.test\r\nMAIL FROM:<s@example.test>\r\n"
        b"RCPT TO:<r@example.test>\r\n"
    ]
    view = memoryview(content)
    for i in range(0, len(content), chunk_size):
        part = view[i : i + chunk_size]
        last = b" LAST" if i + chunk_size >= len(content) else b""
        parts.append(b"BDAT %d%s\r\n" % (len(part), last))
        parts.append(bytes(part))
    parts.append(b"QUIT\r\n")
    return b"".join(parts)


def bench_core(script: bytes, size: int, runs: int) -> float:
    chunks = list(pieces(script))
    config = ServerConfig(max_message_size=None, forbid_early_data=False)

    def run() -> None:
        messages, octets = drive(ServerConnection(config), iter(chunks))
        assert (messages, octets) == (1, size), (messages, octets)

    return size / best_of(runs, run) / MB


# --- the naive reader ------------------------------------------------------------------


def naive_reader(chunks: list[bytes]) -> bytes:
    """DATA content the obvious way: split lines, unstuff each, stop at "."."""
    rest = b""
    out: list[bytes] = []
    for chunk in chunks:
        lines = (rest + chunk).split(b"\r\n")
        rest = lines.pop()
        for line in lines:
            if line == b".":
                return b"\r\n".join(out) + b"\r\n"
            if line.startswith(b"."):
                line = line[1:]
            out.append(line)
    raise ValueError("no end of data")


def bench_naive(content: bytes, runs: int) -> float:
    chunks = list(pieces(dot_stuff(content) + b".\r\n"))

    def run() -> None:
        assert len(naive_reader(chunks)) == len(content)

    return len(content) / best_of(runs, run) / MB


# --- asyncio, in memory: our adapter and aiosmtpd ----------------------------------------


class MemoryTransport(asyncio.Transport):
    """A transport with no socket: writes are counted, reading can be paused."""

    def __init__(self) -> None:
        super().__init__({"peername": ("127.0.0.1", 2525), "sockname": ("127.0.0.1", 25)})
        self.written = bytearray()
        self.paused = False
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_reading(self) -> bool:
        return not self.paused

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0


async def feed(protocol: asyncio.Protocol, chunks: list[bytes], done: asyncio.Future[int]) -> int:
    """One piece per event-loop turn, as a socket would deliver them; honour pausing."""
    transport = MemoryTransport()
    protocol.connection_made(transport)
    for chunk in chunks:
        while transport.paused:
            await asyncio.sleep(0)
        protocol.data_received(chunk)
        await asyncio.sleep(0)
    size = await done
    protocol.connection_lost(None)
    return size


class CountingHandler(SMTPHandler):
    def __init__(self) -> None:
        self.done: asyncio.Future[int] | None = None

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        assert self.done is not None
        self.done.set_result(len(message))
        return Accept()

    async def on_credentials(
        self, session: Session, request: sasl.NeedCredentials
    ) -> sasl.CredentialsAnswer:
        return sasl.NoSuchUser()


def bench_ours_aio(script: bytes, size: int, runs: int) -> float:
    chunks = list(pieces(script))
    handler = CountingHandler()
    server = SMTPServer(handler, ServerConfig(max_message_size=None, forbid_early_data=False))

    async def once() -> None:
        loop = asyncio.get_running_loop()
        handler.done = loop.create_future()
        assert await feed(_Connection(server, loop), chunks, handler.done) == size

    return size / best_of(runs, lambda: asyncio.run(once())) / MB


def bench_aiosmtpd(script: bytes, size: int, runs: int) -> float | None:
    try:
        from aiosmtpd.smtp import SMTP  # type: ignore[import-not-found]
    except ImportError:
        return None

    chunks = list(pieces(script))

    class Handler:
        done: asyncio.Future[int] | None = None

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            assert self.done is not None
            self.done.set_result(len(envelope.original_content))
            return "250 OK"

    handler = Handler()

    async def once() -> None:
        loop = asyncio.get_running_loop()
        handler.done = loop.create_future()
        protocol = SMTP(handler, data_size_limit=None, hostname="bench.test", loop=loop)
        assert await feed(protocol, chunks, handler.done) == size

    return size / best_of(runs, lambda: asyncio.run(once())) / MB


# --- main ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 transactions, 10 MB")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    transactions = 2_000 if args.quick else 20_000
    message_mb = 10 if args.quick else 100
    runs = 2

    started = time.perf_counter()
    print(f"Python {sys.version.split()[0]}, {CHUNK // 1024} KiB pieces, best of {runs}")
    block = realistic_block()
    content = block * (message_mb * MB // len(block))
    size = len(content)
    data = data_script(content)
    bdat = bdat_script(content)
    lines = content.count(b"\r\n")
    print(f"message: {size / MB:.1f} MB in {lines:,} lines (mean {size / lines:.0f} octets)")

    tps = bench_transactions(transactions, block)
    print(f"(a) transactions (MAIL/RCPT/DATA {len(block) // 1024} KB/RSET), core: {tps:,.0f} tx/s")
    core_data = bench_core(data, size, runs)
    print(f"(b) DATA through ServerConnection:            {core_data:8.1f} MB/s")
    core_bdat = bench_core(bdat, size, runs)
    print(f"    BDAT through ServerConnection:            {core_bdat:8.1f} MB/s")
    naive = bench_naive(content, runs)
    print(f"    naive per-line reader (split + unstuff):  {naive:8.1f} MB/s")
    ours_aio = bench_ours_aio(data, size, runs)
    print(f"    DATA through mailagents.aio, in memory:   {ours_aio:8.1f} MB/s")
    theirs = bench_aiosmtpd(data, size, runs)
    if theirs is None:
        print("    aiosmtpd: not importable (pip install aiosmtpd): compared with the naive reader")
    else:
        print(f"    DATA through aiosmtpd.smtp.SMTP, in memory:{theirs:8.1f} MB/s")
    print(f"elapsed {time.perf_counter() - started:.1f} s")
    print(f"ratio ours/naive reader (core DATA): {core_data / naive:.1f}x")
    if theirs is None:
        print(f"ratio ours/baseline (core DATA / naive per-line reader): {core_data / naive:.1f}x")
    else:
        print(f"ratio ours/baseline (mailagents.aio / aiosmtpd, DATA): {ours_aio / theirs:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
