"""Bad input over the socket against mailagents.aio.POP3Server: long lines, bad commands,
binary garbage, slow, silent and greedy clients, password guessing. Every deadline here
is 0.3 to 2 seconds, so no test waits long."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import threading
import time
from typing import Any

import pytest

from mailagents.aio import ListenerLimits, serve_pop3
from mailagents.pop3 import ServerConfig
from tests.aio.test_pop3_server import PLAIN, Client, Memory, message, run, served, thread


def test_over_long_lines_are_answered_and_the_session_goes_on() -> None:
    handler = Memory([message(1)])

    def client(port: int) -> None:
        c = Client.connect(port)
        c.login()
        c.send(b"NOOP " + b"x" * 100_000 + b"\r\n")
        assert c.line().startswith(b"-ERR")
        c.send(b"STAT" + b" " * 300 + b"\r\n")  # RFC 2449 §4: 255 octets with CRLF
        assert c.line().startswith(b"-ERR")
        assert c.ask("STAT").startswith(b"+OK 1 ")
        assert c.ask("QUIT").startswith(b"+OK")
        c.close()

    run(served(handler, client))


def test_a_line_that_never_ends_is_discarded_not_buffered() -> None:
    handler = Memory()

    def client(port: int) -> None:
        c = Client.connect(port)
        c.line()
        for _ in range(64):  # 4 MiB without a line end
            c.send(b"A" * 65536)
        c.send(b"\r\nQUIT\r\n")
        assert c.line() == b"-ERR Line too long"
        assert c.line().startswith(b"+OK")
        assert c.eof() == b""
        c.close()

    run(served(handler, client))
    assert len(handler.closed) == 1


def test_twenty_bad_commands_end_the_session() -> None:
    handler = Memory([message(1)])

    def client(port: int) -> None:
        c = Client.connect(port)
        assert c.line().startswith(b"+OK")
        c.send(b"".join(b"BOGUS%d\r\n" % i for i in range(20)))
        out = c.eof()
        lines = out.split(b"\r\n")
        errors = [line for line in lines if line.startswith(b"-ERR")]
        assert len(errors) == 10  # max_errors: the tenth ends the session
        assert b"too many errors" in errors[-1]
        assert not any(line.startswith(b"+OK") for line in lines)
        c.close()

    run(served(handler, client))
    assert len(handler.closed) == 1


def test_errors_in_a_row_are_counted_not_in_total() -> None:
    handler = Memory([message(1)])

    def client(port: int) -> None:
        c = Client.connect(port)
        c.login()
        for _ in range(5):
            for _ in range(5):
                assert c.ask("RETR 99").startswith(b"-ERR")
            assert c.ask("NOOP") == b"+OK"
        assert c.ask("QUIT").startswith(b"+OK")
        c.close()

    run(served(handler, client))


def test_binary_garbage_never_crashes() -> None:
    handler = Memory([message(1)])
    garbage = [os.urandom(200).replace(b"\n", b"") + b"\r\n" for _ in range(5)]
    garbage += [b"\x00\x00\r\n", b"USER \xff\xfe\r\n", b"\xc3\x28\r\n", b"RETR \x00\r\n"]

    def client(port: int) -> None:
        c = Client.connect(port)
        c.line()
        for junk in garbage:
            c.send(junk)
            assert c.line().startswith(b"-ERR") or junk.startswith(b"USER")
        c.close()

    run(served(handler, client))
    assert len(handler.closed) == 1


def test_garbage_in_auth_exchange() -> None:
    handler = Memory()

    def client(port: int) -> None:
        c = Client.connect(port)
        c.line()
        assert c.ask("AUTH PLAIN") == b"+ "
        assert c.ask("*").startswith(b"-ERR")  # cancelled (RFC 5034 §4)
        c.send(b"AUTH PLAIN " + b"A" * 20_000 + b"\r\n")  # beyond max_auth_line
        assert c.line().startswith(b"-ERR")
        assert c.ask("AUTH SCRAM-SHA-256 !!!notbase64").startswith(b"-ERR")
        assert c.ask("QUIT").startswith(b"+OK")
        c.close()

    run(served(handler, client))


def test_slow_loris_is_cut_off_at_the_command_deadline() -> None:
    handler = Memory()
    limits = ListenerLimits(idle_timeout=1.0, command_timeout=0.5)

    def client(port: int) -> None:
        c = Client.connect(port)
        c.line()
        start = time.monotonic()
        with pytest.raises(OSError):
            for byte in b"CAPA" * 100:
                c.send(bytes([byte]))
                time.sleep(0.05)  # each gap under the idle limit
        assert time.monotonic() - start < 3
        c.close()

    run(served(handler, client, limits=limits))
    assert len(handler.closed) == 1


def test_a_client_that_never_reads_a_retr_is_aborted() -> None:
    body = (b"r" * 998 + b"\r\n") * 20_000  # 20 MB
    handler = Memory([message(1, body)], chunk=64 * 1024)
    limits = ListenerLimits(send_timeout=0.5, write_high_water=16 * 1024)

    def client(port: int) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c = Client(sock)
        c.login()
        c.send(b"RETR 1\r\n")
        deadline = time.monotonic() + 5
        while not handler.closed:  # read nothing, until the server gives up
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # (What the kernel had buffered still trickles in: not read here.)
        c.close()

    run(served(handler, client, limits=limits))
    assert handler.finished == 1  # the iterator was closed
    assert handler.pulled < len(body) // handler.chunk
    assert handler.updates == [] and len(handler.closed) == 1


def test_a_pipelined_flood_is_answered_in_order() -> None:
    handler = Memory([message(1)])
    count = 20_000

    def client(port: int) -> None:
        c = Client.connect(port)
        c.login()
        received: list[int] = []

        def reader() -> None:
            seen = 0
            while seen < count:
                assert c.line() == b"+OK"
                seen += 1
            received.append(seen)

        t = threading.Thread(target=reader)
        t.start()
        c.send(b"NOOP\r\n" * count)
        t.join(10)
        assert received == [count]
        assert c.ask("QUIT").startswith(b"+OK")
        c.close()

    run(served(handler, client))


def test_dropping_in_the_middle_of_a_command() -> None:
    handler = Memory([message(1)])

    def client(port: int) -> None:
        c = Client.connect(port)
        c.login()
        c.ask("DELE 1")
        c.send(b"QU")  # no line end: QUIT never completes
        c.sock.shutdown(socket.SHUT_WR)
        assert c.eof() == b""
        c.close()

    run(served(handler, client))
    assert handler.updates == [] and len(handler.closed) == 1


def test_wrong_passwords_are_counted_per_address_across_connections() -> None:
    handler = Memory()
    limits = ListenerLimits(auth_failure_delay=0.01, max_auth_failure_delay=0.02,
                            max_auth_failures=100, max_auth_failures_per_address=4)

    def client(port: int) -> None:
        for _ in range(3):
            c = Client.connect(port)
            c.line()
            c.ask("USER user")
            assert c.ask("PASS wrong").startswith(b"-ERR [AUTH]")
            assert c.ask("QUIT").startswith(b"+OK")
            c.close()
        # The fourth failure from the address (in a new session) ends that session.
        c = Client.connect(port)
        c.line()
        c.ask("USER user")
        assert c.ask("PASS wrong").startswith(b"-ERR [AUTH]")
        assert b"Too many" in c.line()
        assert c.eof() == b""
        c.close()

    run(served(handler, client, limits=limits))


def test_a_good_login_after_a_wrong_one_works() -> None:
    handler = Memory([message(1)])

    def client(port: int) -> None:
        c = Client.connect(port)
        c.line()
        c.ask("USER user")
        assert c.ask("PASS wrong").startswith(b"-ERR [AUTH]")
        c.ask("USER nobody")
        assert c.ask("PASS secret").startswith(b"-ERR [AUTH]")
        c.ask("USER user")
        assert c.ask("PASS secret").startswith(b"+OK")
        c.ask("QUIT")
        c.close()

    run(served(handler, client))


def test_many_connections_and_the_per_address_limit() -> None:
    handler = Memory()
    limits = ListenerLimits(max_connections_per_address=5)

    async def main() -> None:
        server = await serve_pop3(handler, PLAIN, limits=limits)
        port = server.port
        held = [await thread(lambda: Client.connect(port)) for _ in range(5)]
        for c in held:
            assert (await thread(c.line)).startswith(b"+OK")
        extra = await thread(lambda: Client.connect(port))
        refusal = await thread(extra.eof)
        assert refusal.startswith(b"-ERR [SYS/TEMP]") and b"your address" in refusal
        extra.close()
        for c in held:
            c.close()
        await server.close(0.5)

    run(main())


def test_many_sessions_at_once() -> None:
    handler = Memory([message(1)])

    async def one(port: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        writer.write(b"USER user\r\nPASS secret\r\nSTAT\r\nQUIT\r\n")
        lines = [await reader.readline() for _ in range(4)]
        writer.close()
        await writer.wait_closed()
        return lines[2]

    limits = ListenerLimits(max_connections_per_address=1000, shutdown_grace=0.5)

    async def main() -> list[bytes]:
        async with await serve_pop3(handler, PLAIN, limits=limits) as server:
            return await asyncio.gather(*(one(server.port) for _ in range(200)))

    results = run(main())
    # One session holds the maildrop at a time in a real MAA; this handler has no lock.
    assert all(r.startswith(b"+OK 1 ") for r in results)
    assert len(handler.closed) == 200


def test_sasl_line_flood_in_auth_state() -> None:
    handler = Memory()
    config = ServerConfig(hostname="pop.test", allow_plaintext_login=True)

    def client(port: int) -> None:
        c = Client.connect(port)
        c.line()
        assert c.ask("AUTH PLAIN") == b"+ "
        assert c.ask(base64.b64encode(b"\0user\0wrong").decode()).startswith(b"-ERR [AUTH]")
        assert c.ask("AUTH PLAIN") == b"+ "
        assert c.ask("*").startswith(b"-ERR")  # cancelled
        assert c.ask("QUIT").startswith(b"+OK")
        c.close()

    options: dict[str, Any] = {"config": config}
    run(served(handler, client, **options))
