"""Bad input over the socket against mailagents.aio.SMTPServer: slow, silent, greedy and
guessing clients. Every deadline here is 0.3 to 2 seconds, so no test waits long.

(The STARTTLS injection test, CVE-2011-0411, is in test_smtp_server.py.)"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import resource
import select
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from mailagents import sasl
from mailagents.aio import ListenerLimits, Session, SMTPHandler, SMTPServer, serve_smtp
from mailagents.smtp import Accept, Envelope, LMTPReplies, RcptTo, Reject, ServerConfig

T = TypeVar("T")
log = logging.getLogger("tests.hostile")


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def thread(func: Callable[[], T]) -> T:
    return await asyncio.to_thread(func)


def connect(port: int, source: str | None = None) -> socket.socket:
    return socket.create_connection(
        ("127.0.0.1", port), timeout=5, source_address=(source, 0) if source else None
    )


def read_reply(sock: socket.socket, buf: bytearray) -> bytes:
    """One complete reply; ``buf`` keeps what follows it."""
    while True:
        start = 0
        while (end := buf.find(b"\r\n", start)) >= 0:
            line = bytes(buf[start:end])
            if len(line) < 4 or line[3:4] == b" ":
                reply = bytes(buf[: end + 2])
                del buf[: end + 2]
                return reply
            start = end + 2
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed; unparsed: {bytes(buf)!r}")
        buf += chunk


def read_to_eof(sock: socket.socket) -> bytes:
    out = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return bytes(out)


def hello(port: int, source: str | None = None) -> tuple[socket.socket, bytearray]:
    """A connected client past its greeting and EHLO."""
    sock = connect(port, source)
    buf = bytearray()
    assert read_reply(sock, buf).startswith(b"220 ")
    sock.sendall(b"EHLO client.test\r\n")
    assert read_reply(sock, buf).startswith(b"250")
    return sock, buf


# --- silence and slowness ----------------------------------------------------------------


def test_client_that_sends_nothing_gets_421_at_the_idle_timeout() -> None:
    limits = ListenerLimits(idle_timeout=0.5, command_timeout=5.0)

    async def main() -> None:
        async with await serve_smtp(SMTPHandler(), limits=limits) as server:

            def client() -> tuple[bytes, bytes, float]:
                with connect(server.port) as sock:
                    buf = bytearray()
                    start = time.monotonic()
                    read_reply(sock, buf)
                    reply = read_reply(sock, buf)
                    elapsed = time.monotonic() - start
                    return reply, bytes(buf) + read_to_eof(sock), elapsed

            reply, rest, elapsed = await thread(client)
            log.info("idle: 421 after %.2fs (idle_timeout 0.5s)", elapsed)
            assert reply.startswith(b"421 4.4.2 ")
            assert rest == b""
            assert 0.4 < elapsed < 1.5
            await asyncio.sleep(0.05)
            assert server.connections == 0

    run(main())


def test_slow_loris_is_cut_off_at_the_command_deadline() -> None:
    """One byte every 0.3 s: every read would reset an idle timer (5 s here), but the
    whole command must arrive within 1 s."""
    limits = ListenerLimits(idle_timeout=5.0, command_timeout=1.0)
    command = b"MAIL FROM:<someone.rather.slow@example.test>\r\n"

    async def main() -> None:
        async with await serve_smtp(SMTPHandler(), limits=limits) as server:

            def client() -> tuple[bytes, float, int]:
                sock, buf = hello(server.port)
                with sock:
                    start = time.monotonic()
                    sent = 0
                    for byte in command:
                        try:
                            sock.sendall(bytes([byte]))
                        except OSError:
                            break
                        sent += 1
                        readable, _, _ = select.select([sock], [], [], 0.3)
                        if readable:
                            break
                    reply = read_reply(sock, buf)
                    elapsed = time.monotonic() - start
                    assert read_to_eof(sock) == b""
                    return reply, elapsed, sent

            reply, elapsed, sent = await thread(client)
            log.info("slow loris: 421 after %.2fs and %d bytes (command deadline 1s)",
                     elapsed, sent)
            assert reply.startswith(b"421 4.4.2 ")
            assert 0.9 < elapsed < 1.6
            assert sent < len(command)

    run(main())


def test_trickling_client_that_completes_commands_is_served() -> None:
    """The command deadline restarts with every reply: a slow but steady client that
    finishes each command in time is not cut off."""
    limits = ListenerLimits(idle_timeout=5.0, command_timeout=1.0)

    async def main() -> None:
        async with await serve_smtp(SMTPHandler(), limits=limits) as server:

            def client() -> list[bytes]:
                sock, buf = hello(server.port)
                replies = []
                with sock:
                    for _ in range(3):
                        for byte in b"NOOP\r\n":
                            sock.sendall(bytes([byte]))
                            time.sleep(0.12)
                        replies.append(read_reply(sock, buf))
                    sock.sendall(b"QUIT\r\n")
                    replies.append(read_reply(sock, buf))
                return replies

            replies = await thread(client)
            assert [r[:3] for r in replies] == [b"250"] * 3 + [b"221"]

    run(main())


# --- a client that never reads -----------------------------------------------------------


def test_client_that_never_reads_is_bounded_then_aborted() -> None:
    limits = ListenerLimits(
        write_high_water=16 * 1024, read_high_water=64 * 1024, send_timeout=1.0
    )
    bound = 256 * 1024  # high-water mark plus the replies to one 32 KiB feed of NOOPs

    async def main() -> None:
        async with await serve_smtp(SMTPHandler(), limits=limits) as server:
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            stop = False

            def client() -> tuple[int, float, str]:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.settimeout(5)
                sock.connect(("127.0.0.1", server.port))
                burst = b"NOOP\r\n" * 1000
                sent = 0
                start = time.monotonic()
                outcome = "still open"
                with sock:
                    sock.settimeout(0.2)
                    while not stop and time.monotonic() - start < 8:
                        try:
                            sent += sock.send(burst)
                        except TimeoutError:
                            continue
                        except OSError as exc:  # reset by the server's abort
                            outcome = type(exc).__name__
                            break
                return sent, time.monotonic() - start, outcome

            task = asyncio.ensure_future(thread(client))
            peak = 0
            while not task.done():
                for session in list(server._listener.sessions):
                    if session.transport is not None:
                        peak = max(peak, session.transport.get_write_buffer_size())
                await asyncio.sleep(0.005)
            stop = True
            sent, elapsed, outcome = await task
            rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
            log.info("never reads: %d bytes sent, peak write buffer %d, aborted after %.2fs "
                     "(%s), peak RSS growth %d KiB", sent, peak, elapsed, outcome, rss_growth)
            assert outcome in ("ConnectionResetError", "BrokenPipeError")
            assert elapsed < 5
            assert 0 < peak <= bound
            assert rss_growth < 64 * 1024  # KiB
            assert server.connections == 0

    run(main())


# --- connection limits -------------------------------------------------------------------


def test_more_connections_from_one_address_than_its_limit() -> None:
    limits = ListenerLimits(max_connections_per_address=2)

    async def main() -> None:
        async with await serve_smtp(SMTPHandler(), limits=limits) as server:

            def client() -> tuple[bytes, list[bytes], bytes | None]:
                first, buf1 = hello(server.port)
                second, buf2 = hello(server.port)
                with first, second:
                    with connect(server.port) as third:
                        refused = read_to_eof(third)
                    other: bytes | None = None
                    try:
                        with connect(server.port, source="127.0.0.2") as elsewhere:
                            other = read_reply(elsewhere, bytearray())
                    except OSError:
                        pass  # no 127.0.0.2 here: skip that part
                    replies = []
                    for sock, buf in ((first, buf1), (second, buf2)):
                        sock.sendall(
                            b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n"
                            b"DATA\r\n"
                        )
                        replies += [read_reply(sock, buf) for _ in range(3)]
                        sock.sendall(b"Subject: hi\r\n\r\nHello.\r\n.\r\nQUIT\r\n")
                        replies += [read_reply(sock, buf) for _ in range(2)]
                    return refused, replies, other

            refused, replies, other = await thread(client)
            assert refused.startswith(b"421 ") and refused.count(b"\r\n") == 1
            assert b"from your address" in refused
            assert [r[:3] for r in replies] == [b"250", b"250", b"354", b"250", b"221"] * 2
            if other is not None:
                assert other.startswith(b"220 ")

    run(main())


FLOOD = r"""
import asyncio, json, sys

async def one(port, held):
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 15)
    except (OSError, asyncio.TimeoutError):
        return "connect failed"
    try:
        line = await asyncio.wait_for(reader.readline(), 15)
    except (OSError, asyncio.TimeoutError):
        line = b""
    code = line[:3].decode() or "eof"
    if code == "220":
        held.append((reader, writer))
    else:
        writer.close()
    return code

async def main():
    port, count = int(sys.argv[1]), int(sys.argv[2])
    held = []
    codes = await asyncio.gather(*(one(port, held) for _ in range(count)))
    print(json.dumps({c: codes.count(c) for c in set(codes)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for reader, writer in held:
        writer.write(b"QUIT\r\n")
    for reader, writer in held:
        await reader.read()
        writer.close()
    print("done", flush=True)

asyncio.run(main())
"""


@contextlib.contextmanager
def open_files(wanted: int) -> Any:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < 4096")
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_thousand_connections_at_once() -> None:
    limit = 300
    limits = ListenerLimits(max_connections=limit, max_connections_per_address=10_000)

    async def main() -> None:
        async with await serve_smtp(SMTPHandler(), limits=limits) as server:
            assert server.limits.backlog >= 1024
            sock, buf = await thread(lambda: hello(server.port))
            with sock:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", FLOOD, str(server.port), "1000",
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                )
                assert proc.stdin is not None and proc.stdout is not None
                try:
                    peak = 0

                    def noops() -> float:
                        worst = 0.0
                        for _ in range(20):
                            start = time.monotonic()
                            sock.sendall(b"NOOP\r\n")
                            assert read_reply(sock, buf).startswith(b"250")
                            worst = max(worst, time.monotonic() - start)
                            time.sleep(0.02)
                        return worst

                    noop_task = asyncio.ensure_future(thread(noops))
                    line_task = asyncio.ensure_future(proc.stdout.readline())
                    while not line_task.done():
                        peak = max(peak, server.connections)
                        await asyncio.sleep(0.001)
                    counts = json.loads(await line_task)
                    worst = await noop_task
                    log.info("flood: %s, peak sessions %d, worst NOOP %.3fs",
                             counts, peak, worst)
                    assert counts == {"220": limit - 1, "421": 1000 - (limit - 1)}
                    assert peak <= limit and server.connections == limit
                    assert worst < 1.0

                    # Full: a newcomer is refused at once.
                    start = time.monotonic()
                    refused = await thread(lambda: read_to_eof(connect(server.port)))
                    assert refused.startswith(b"421 ") and time.monotonic() - start < 1.0

                    proc.stdin.write(b"\n")
                    await proc.stdin.drain()
                    assert await proc.stdout.readline() == b"done\n"
                finally:
                    if proc.returncode is None:
                        proc.kill()
                    await proc.wait()
                # Room again: a newcomer is served, promptly.
                start = time.monotonic()
                other, other_buf = await thread(lambda: hello(server.port))
                with other:
                    assert time.monotonic() - start < 1.0
                sock.sendall(b"QUIT\r\n")
                assert (await thread(lambda: read_reply(sock, buf))).startswith(b"221")

    with open_files(8192):
        run(main(), timeout=60)


# --- errors and guessing -----------------------------------------------------------------


def test_twenty_bad_commands_get_421_and_close() -> None:
    async def main() -> None:
        async with await serve_smtp(SMTPHandler()) as server:

            def client() -> tuple[list[bytes], bytes]:
                sock, buf = hello(server.port)
                with sock:
                    replies = []
                    for i in range(20):
                        sock.sendall(b"XYZZY %d\r\n" % i)
                        replies.append(read_reply(sock, buf))
                    return replies, bytes(buf) + read_to_eof(sock)

            replies, rest = await thread(client)
            assert all(r.startswith(b"500 ") for r in replies[:19])
            assert replies[19].startswith(b"500 ") or replies[19].startswith(b"421 ")
            tail = replies[19] + rest
            assert b"421 4.7.0 " in tail and tail.endswith(b"\r\n")
            await asyncio.sleep(0.05)
            assert server.connections == 0

    run(main())


class Recorder(SMTPHandler):
    """Accepts everything and remembers the messages and recipients it saw."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.recipients: list[str] = []

    async def on_rcpt(self, session: Session, event: RcptTo) -> Accept | Reject:
        self.recipients.append(str(event.path))
        return Accept()

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        self.messages.append(message)
        return Accept()


def test_content_sent_with_data_before_the_354_is_never_read() -> None:
    # RFC 2920 §3.1; Postfix 3.9's smtpd_forbid_unauth_pipelining does the same.
    handler = Recorder()

    async def main() -> None:
        async with await serve_smtp(handler) as server:

            def client() -> bytes:
                sock, buf = hello(server.port)
                with sock:
                    sock.sendall(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
                                 b"RCPT TO:<injected@d.test>\r\nhi\r\n.\r\n")
                    return bytes(buf) + read_to_eof(sock)

            rest = await thread(client)
            assert rest.endswith(b"554 5.5.0 localhost Improper pipelining after DATA, "
                                 b"closing connection\r\n")
            assert b"354" not in rest
            await asyncio.sleep(0.05)
            assert server.connections == 0

    run(main())
    assert handler.messages == [] and handler.recipients == ["<c@d.test>"]


class WrongPasswords(SMTPHandler):
    """Knows every user, accepts no password."""

    async def on_credentials(
        self, session: Session, request: sasl.NeedCredentials
    ) -> sasl.Answer:
        return sasl.PasswordVerdict(valid=False)


AUTH_CONFIG = ServerConfig(auth_mechanisms=("PLAIN", "LOGIN"), auth_without_tls=True)


def auth_plain(user: str, password: str) -> bytes:
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    return f"AUTH PLAIN {token}\r\n".encode()


def test_wrong_passwords_are_delayed_more_and_more_then_421() -> None:
    # The third delay (1.2 s) is longer than the idle and command deadlines (1 s): the
    # server's own delay must not count against the client.
    limits = ListenerLimits(auth_failure_delay=0.3, max_auth_failure_delay=2.0,
                            max_auth_failures=3, idle_timeout=1.0, command_timeout=1.0)

    async def main() -> None:
        async with await serve_smtp(WrongPasswords(), AUTH_CONFIG, limits=limits) as server:

            def client() -> tuple[list[tuple[bytes, float]], bytes]:
                sock, buf = hello(server.port)
                answers = []
                with sock:
                    for i in range(3):
                        start = time.monotonic()
                        sock.sendall(auth_plain("alice", f"guess{i}"))
                        answers.append((read_reply(sock, buf), time.monotonic() - start))
                    return answers, bytes(buf) + read_to_eof(sock)

            answers, rest = await thread(client)
            delays = [round(d, 2) for _, d in answers]
            log.info("wrong passwords: delays %s then %r", delays, rest[:40])
            assert all(r.startswith(b"535 5.7.8 ") for r, _ in answers)
            assert 0.25 < delays[0] < 0.6
            assert 0.55 < delays[1] < 0.9
            assert 1.15 < delays[2] < 1.6
            assert rest.startswith(b"421 4.7.0 ") and rest.count(b"\r\n") == 1

    run(main())


def test_wrong_passwords_are_counted_per_address_across_connections() -> None:
    limits = ListenerLimits(auth_failure_delay=0.05, max_auth_failure_delay=0.3,
                            max_auth_failures=3, max_auth_failures_per_address=4)

    async def main() -> None:
        async with await serve_smtp(WrongPasswords(), AUTH_CONFIG, limits=limits) as server:

            def client() -> tuple[bytes, bytes, float]:
                first, buf = hello(server.port)
                with first:
                    for i in range(3):
                        first.sendall(auth_plain("alice", f"guess{i}"))
                        read_reply(first, buf)
                    first_rest = bytes(buf) + read_to_eof(first)
                second, buf = hello(server.port)
                with second:
                    start = time.monotonic()
                    # AUTH LOGIN this time: every mechanism counts.
                    second.sendall(b"AUTH LOGIN\r\n")
                    assert read_reply(second, buf).startswith(b"334 ")
                    second.sendall(base64.b64encode(b"alice") + b"\r\n")
                    assert read_reply(second, buf).startswith(b"334 ")
                    second.sendall(base64.b64encode(b"guess3") + b"\r\n")
                    answer = read_reply(second, buf)
                    elapsed = time.monotonic() - start
                    return first_rest, answer + bytes(buf) + read_to_eof(second), elapsed

            first_rest, second_rest, elapsed = await thread(client)
            assert first_rest.startswith(b"421 4.7.0 ")
            # The fourth failure from the address: the longest delay, then closed.
            assert second_rest.startswith(b"535 ") and b"\r\n421 4.7.0 " in second_rest
            assert 0.25 < elapsed < 1.0

    run(main())


def test_a_good_login_after_a_wrong_one_still_works() -> None:
    class Alice(SMTPHandler):
        async def on_credentials(
            self, session: Session, request: sasl.NeedCredentials
        ) -> sasl.Answer:
            return sasl.PasswordVerdict(valid=request.password == "wonderland")

    limits = ListenerLimits(auth_failure_delay=0.1)

    async def main() -> None:
        async with await serve_smtp(Alice(), AUTH_CONFIG, limits=limits) as server:

            def client() -> list[bytes]:
                sock, buf = hello(server.port)
                with sock:
                    sock.sendall(auth_plain("alice", "wrong"))
                    first = read_reply(sock, buf)
                    sock.sendall(auth_plain("alice", "wonderland"))
                    return [first, read_reply(sock, buf)]

            replies = await thread(client)
            assert [r[:3] for r in replies] == [b"535", b"235"]

    run(main())


# --- graceful shutdown -------------------------------------------------------------------


def test_graceful_shutdown_lets_a_transaction_finish() -> None:
    async def main() -> None:
        server = SMTPServer(SMTPHandler())
        await server.start()
        port = server.port
        busy, busy_buf = await thread(lambda: hello(port))
        idle, idle_buf = await thread(lambda: hello(port))
        with busy, idle:
            await thread(lambda: busy.sendall(
                b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n"))
            assert [(await thread(lambda: read_reply(busy, busy_buf)))[:3] for _ in range(2)] \
                == [b"250", b"250"]
            closing = asyncio.ensure_future(server.close(timeout=2.0))
            # The idle session is told at once; the busy one may finish its message.
            idle_rest = await thread(lambda: bytes(idle_buf) + read_to_eof(idle))
            assert idle_rest.startswith(b"421 4.3.2 ")
            assert not closing.done()
            await thread(lambda: busy.sendall(b"DATA\r\n"))
            assert (await thread(lambda: read_reply(busy, busy_buf))).startswith(b"354")
            await thread(lambda: busy.sendall(b"Subject: hi\r\n\r\nHello.\r\n.\r\n"))
            assert (await thread(lambda: read_reply(busy, busy_buf))).startswith(b"250")
            busy_rest = await thread(lambda: bytes(busy_buf) + read_to_eof(busy))
            assert busy_rest.startswith(b"421 4.3.2 ")
            await asyncio.wait_for(closing, 1.0)

    run(main())


def test_graceful_shutdown_ends_an_unfinished_transaction_after_the_grace_period() -> None:
    async def main() -> None:
        server = SMTPServer(SMTPHandler())
        await server.start()
        port = server.port
        sock, buf = await thread(lambda: hello(port))
        with sock:
            await thread(lambda: sock.sendall(b"MAIL FROM:<a@example.test>\r\n"))
            assert (await thread(lambda: read_reply(sock, buf))).startswith(b"250")
            start = time.monotonic()
            closing = asyncio.ensure_future(server.close(timeout=0.5))
            rest = await thread(lambda: bytes(buf) + read_to_eof(sock))
            elapsed = time.monotonic() - start
            await closing
        assert rest.startswith(b"421 4.3.2 ")
        assert 0.4 < elapsed < 1.5

    run(main())


def test_old_keyword_arguments_still_work() -> None:
    server = SMTPServer(SMTPHandler(), command_timeout=7.0, max_connections=5)
    assert server.command_timeout == 7.0 and server.max_connections == 5
    assert server.limits.idle_timeout == 7.0 and server.limits.tls_handshake_timeout == 7.0
    server = SMTPServer(SMTPHandler(), limits=ListenerLimits(max_connections=9))
    assert server.max_connections == 9 and server.command_timeout == 300.0
    with pytest.raises(ValueError):
        SMTPServer(SMTPHandler(), limits=ListenerLimits(), command_timeout=-1)
