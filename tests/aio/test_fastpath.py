"""The SMTP adapter's fast path: commands answered from the transport callback, handler
calls run until their first suspension without the event loop, one write per batch of
replies; and that nothing a handler can observe differs from the task-driven path
(the current task, context variables, time-outs, exceptions, cancellation)."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from mailagents.aio import ListenerLimits, Session, SMTPHandler, SMTPServer
from mailagents.aio.smtp import _Connection
from mailagents.smtp import (
    Accept,
    Envelope,
    Hello,
    LMTPReplies,
    MailFrom,
    RcptTo,
    Reject,
    Reply,
)

T = TypeVar("T")
TIMEOUT = 10.0
MESSAGE = b"Subject: hi\r\n\r\nHello.\r\n"

try:
    import uvloop

    HAVE_UVLOOP = True
except ImportError:  # pragma: no cover - uvloop is an optional extra
    HAVE_UVLOOP = False

LOOPS = ["asyncio"] + (["uvloop"] if HAVE_UVLOOP else [])


def run(coro: Coroutine[Any, Any, T], loop: str = "asyncio") -> T:
    bounded = asyncio.wait_for(coro, TIMEOUT)
    if loop == "uvloop":
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(bounded)
    return asyncio.run(bounded)


class Client:
    """A minimal SMTP client over asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, server: SMTPServer) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        client = cls(reader, writer)
        assert (await client.reply()).startswith(b"220")
        return client

    async def reply(self) -> bytes:
        lines: list[bytes] = []
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError(b"".join(lines))
            lines.append(line)
            if line[3:4] != b"-":
                return b"".join(lines)

    async def send(self, data: bytes, replies: int = 1) -> list[bytes]:
        self.writer.write(data)
        return [await self.reply() for _ in range(replies)]

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


def codes(replies: list[bytes]) -> list[int]:
    return [int(r[:3]) for r in replies]


TRANSACTION = b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"


async def transaction(client: Client) -> list[int]:
    replies = await client.send(b"EHLO client.test\r\n")
    replies += await client.send(TRANSACTION, 3)
    replies += await client.send(MESSAGE + b".\r\n")
    replies += await client.send(b"QUIT\r\n")
    return codes(replies)


# --- what a handler sees -----------------------------------------------------------------

where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="unset")


class Observer(SMTPHandler):
    """Records the current task and a context variable at every call; optionally waits
    in some of them (so that they finish in the session task, not inline)."""

    def __init__(self, wait_in: frozenset[str] = frozenset()) -> None:
        self.wait_in = wait_in
        self.tasks: list[tuple[str, asyncio.Task[Any] | None]] = []
        self.seen: list[tuple[str, str]] = []
        self.messages: list[bytes] = []

    async def _visit(self, name: str) -> None:
        self.tasks.append((name, asyncio.current_task()))
        self.seen.append((name, where.get()))
        where.set(name)
        if name in self.wait_in:
            await asyncio.sleep(0)
            # After the suspension the coroutine goes on in the session task.
            self.tasks.append((name + "+", asyncio.current_task()))
            self.seen.append((name + "+", where.get()))

    async def on_hello(self, session: Session, event: Hello) -> Accept | Reject:
        await self._visit("hello")
        return Accept()

    async def on_mail(self, session: Session, event: MailFrom) -> Accept | Reject:
        await self._visit("mail")
        return Accept()

    async def on_rcpt(self, session: Session, event: RcptTo) -> Accept | Reject:
        await self._visit("rcpt")
        async with asyncio.timeout(5):  # needs a current task
            await self._visit_nothing()
        return Accept()

    async def _visit_nothing(self) -> None:
        return None

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        await self._visit("message")
        self.messages.append(message)
        return Accept()


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("wait_in", [frozenset(), frozenset({"mail", "message"}),
                                     frozenset({"hello", "mail", "rcpt", "message"})])
def test_handlers_see_the_session_task_and_one_context(loop: str, wait_in: frozenset[str]) -> None:
    handler = Observer(wait_in)

    async def main() -> None:
        async with SMTPServer(handler) as server:
            client = await Client.connect(server)
            assert await transaction(client) == [250, 250, 250, 354, 250, 221]
            await client.close()
            sessions = list(server._listener.sessions)
            assert len(sessions) <= 1

    run(main(), loop)
    names = [name for name, _ in handler.tasks]
    assert [n for n in names if not n.endswith("+")] == ["hello", "mail", "rcpt", "message"]
    tasks = {task for _, task in handler.tasks}
    assert len(tasks) == 1 and None not in tasks  # always the same session task
    # One context for the whole session: each call sees what the one before set.
    assert [value for _, value in handler.seen] == ["unset"] + [
        n.rstrip("+") for n in names[:-1]
    ]
    assert handler.messages == [MESSAGE]


class Failing(SMTPHandler):
    """Raises in on_rcpt, at once or after waiting."""

    def __init__(self, wait: bool) -> None:
        self.wait = wait
        self.chunks = 0

    async def on_rcpt(self, session: Session, event: RcptTo) -> Accept | Reject:
        if self.wait:
            await asyncio.sleep(0)
        if event.path.mailbox is not None and event.path.mailbox.local_part == "bad":
            raise RuntimeError("policy broke")
        return Accept()

    async def on_data_chunk(self, session: Session, data: bytes) -> None:
        self.chunks += 1
        if self.wait:
            await asyncio.sleep(0)
        if b"explode" in data:
            raise ValueError("chunk handler broke")


@pytest.mark.parametrize("wait", [False, True], ids=["inline", "suspended"])
def test_handler_exceptions_are_451_and_the_session_goes_on(
    wait: bool, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Failing(wait)

    async def main() -> list[int]:
        async with SMTPServer(handler) as server:
            client = await Client.connect(server)
            replies = await client.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n"
                                        b"RCPT TO:<bad@b.test>\r\nRCPT TO:<ok@b.test>\r\n"
                                        b"DATA\r\n", 5)
            replies += await client.send(b"explode\r\n.\r\n")
            replies += await client.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<ok@b.test>\r\n"
                                         b"DATA\r\n", 3)
            replies += await client.send(b"fine\r\n.\r\nQUIT\r\n", 2)
            await client.close()
            return codes(replies)

    assert run(main()) == [250, 250, 451, 250, 354, 451, 250, 250, 354, 250, 221]
    assert "policy broke" in caplog.text and "chunk handler broke" in caplog.text
    assert handler.chunks == 2


class Gate(SMTPHandler):
    """on_rcpt waits for an event the test sets."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()
        self.order: list[str] = []

    async def on_rcpt(self, session: Session, event: RcptTo) -> Accept | Reject:
        self.order.append(str(event.path))
        if not self.gate.is_set():
            self.waiting.set()
            await self.gate.wait()
        return Accept()


def test_pipelined_input_waits_behind_a_suspended_handler_and_replies_keep_order() -> None:
    async def main() -> None:
        handler = Gate()
        async with SMTPServer(handler) as server:
            client = await Client.connect(server)
            await client.send(b"EHLO c\r\n")
            client.writer.write(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<one@b.test>\r\n"
                                b"RCPT TO:<two@b.test>\r\nNOOP\r\n")
            await asyncio.wait_for(handler.waiting.wait(), 5)
            # More input while the handler waits: buffered, not processed.
            client.writer.write(b"RSET\r\n")
            await asyncio.sleep(0.05)
            assert handler.order == ["<one@b.test>"]
            assert not client.reader._buffer  # type: ignore[attr-defined]
            handler.gate.set()
            replies = [await client.reply() for _ in range(5)]
            assert codes(replies) == [250, 250, 250, 250, 250]
            assert replies[0].startswith(b"250 2.1.0") and replies[1].startswith(b"250 2.1.5")
            assert handler.order == ["<one@b.test>", "<two@b.test>"]
            await client.send(b"QUIT\r\n")
            await client.close()

    run(main())


def test_closing_the_server_cancels_a_handler_suspended_from_the_fast_path() -> None:
    cancelled = asyncio.Event()

    class Stuck(SMTPHandler):
        async def on_mail(self, session: Session, event: MailFrom) -> Accept | Reject:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return Accept()  # pragma: no cover

    async def main() -> None:
        limits = ListenerLimits(shutdown_grace=0.1, shutdown_timeout=0.2)
        server = SMTPServer(Stuck(), limits=limits)
        await server.start()
        client = await Client.connect(server)
        await client.send(b"EHLO c\r\n")
        client.writer.write(b"MAIL FROM:<a@b.test>\r\n")
        await asyncio.sleep(0.05)
        await server.close()
        assert cancelled.is_set()
        assert server.connections == 0
        await client.close()

    run(main())


def test_idle_timeout_still_applies_after_inline_commands() -> None:
    async def main() -> bytes:
        limits = ListenerLimits(idle_timeout=0.3, command_timeout=0.3)
        async with SMTPServer(SMTPHandler(), limits=limits) as server:
            client = await Client.connect(server)
            for _ in range(3):
                assert codes(await client.send(b"NOOP\r\n")) == [250]
            final = await client.reply()  # nothing sent: the deadline passes
            await client.close()
            return final

    assert run(main()).startswith(b"421 4.4.2")


# --- one write per batch, from the transport callback --------------------------------------


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 4321) if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_batch_of_commands_is_answered_with_one_write_from_the_callback() -> None:
    async def main() -> None:
        server = SMTPServer(SMTPHandler())
        loop = asyncio.get_running_loop()
        conn = _Connection(server, loop)
        transport = FakeTransport()
        conn.connection_made(transport)
        await settle()
        assert transport.writes == [b"220 localhost ESMTP mailagents\r\n"]
        assert conn._parked
        woken: list[int] = []
        real_wake = conn._wake

        def wake() -> None:
            woken.append(1)
            real_wake()

        conn._wake = wake  # type: ignore[method-assign]
        # Delivered from a loop callback, as a transport does: answered right there.
        loop.call_soon(conn.data_received, b"EHLO c\r\nNOOP\r\nMAIL FROM:<a@b.test>\r\n")
        await asyncio.sleep(0)
        assert len(transport.writes) == 2 and woken == []
        assert codes_of(transport.writes[1]) == [250, 250, 250]
        # A command cut in two: nothing until its end arrives, then one write.
        loop.call_soon(conn.data_received, b"RCPT TO:<c@")
        await asyncio.sleep(0)
        assert len(transport.writes) == 2
        loop.call_soon(conn.data_received, b"d.test>\r\nDATA\r\n")
        await asyncio.sleep(0)
        assert codes_of(transport.writes[2]) == [250, 354]
        # The content after the 354, and the next command pipelined behind it.
        loop.call_soon(conn.data_received, b"hi\r\n.\r\nNOOP\r\n")
        await asyncio.sleep(0)
        assert codes_of(transport.writes[3]) == [250, 250]
        loop.call_soon(conn.data_received, b"QUIT\r\n")
        await settle()
        assert codes_of(transport.writes[4]) == [221]
        assert transport.closed and conn.task is not None and conn.task.done()

    run(main())


def test_input_delivered_from_inside_a_task_is_left_to_the_session_task() -> None:
    async def main() -> None:
        server = SMTPServer(SMTPHandler())
        loop = asyncio.get_running_loop()
        conn = _Connection(server, loop)
        transport = FakeTransport()
        conn.connection_made(transport)
        await settle()
        conn.data_received(b"EHLO c\r\n")  # from this task: the fast path cannot be taken
        assert len(transport.writes) == 1
        await settle()
        assert len(transport.writes) == 2 and transport.writes[1].startswith(b"250-localhost")
        conn.data_received(b"QUIT\r\n")
        await settle()
        assert transport.writes[-1].startswith(b"221") and transport.closed

    run(main())


def codes_of(data: bytes) -> list[int]:
    return [int(line[:3]) for line in data.split(b"\r\n") if line[3:4] == b" "]


Factory = Callable[[], SMTPHandler]


@pytest.mark.parametrize("loop", LOOPS)
def test_many_sessions_with_reuse_on_each_loop(loop: str) -> None:
    handler = Observer(frozenset({"message"}))

    async def session(server: SMTPServer, messages: int) -> list[int]:
        client = await Client.connect(server)
        result = codes(await client.send(b"EHLO c\r\n"))
        for _ in range(messages):
            result += codes(await client.send(TRANSACTION, 3))
            result += codes(await client.send(MESSAGE + b".\r\n"))
        result += codes(await client.send(b"QUIT\r\n"))
        await client.close()
        return result

    async def main() -> None:
        async with SMTPServer(handler) as server:
            results = await asyncio.gather(*(session(server, n) for n in (1, 3, 5, 2)))
        for n, result in zip((1, 3, 5, 2), results, strict=True):
            assert result == [250] + [250, 250, 354, 250] * n + [221]

    run(main(), loop)
    assert handler.messages == [MESSAGE] * 11


class FutureHandler(SMTPHandler):
    """Decision methods that return a future instead of being coroutines."""

    def on_mail(  # type: ignore[override]
        self, session: Session, event: MailFrom
    ) -> asyncio.Future[Accept | Reject]:
        done: asyncio.Future[Accept | Reject] = asyncio.get_running_loop().create_future()
        done.set_result(Accept())  # already decided
        return done

    def on_rcpt(  # type: ignore[override]
        self, session: Session, event: RcptTo
    ) -> asyncio.Future[Accept | Reject]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Accept | Reject] = loop.create_future()
        reply = Reject(reply=Reply(code=550, enhanced="5.1.1", lines=("No such user",)))
        loop.call_soon(done.set_result, reply)  # decided later
        return done


def test_a_handler_may_return_any_awaitable() -> None:
    async def main() -> list[int]:
        async with SMTPServer(FutureHandler()) as server:
            client = await Client.connect(server)
            replies = await client.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n"
                                        b"RCPT TO:<x@b.test>\r\nQUIT\r\n", 4)
            await client.close()
            return codes(replies)

    assert run(main()) == [250, 250, 550, 221]


# --- per-connection set-up ------------------------------------------------------------------


def test_the_session_reads_the_loops_own_clock() -> None:
    class Shifted(asyncio.SelectorEventLoop):
        """A loop whose clock is not time.monotonic(): deadlines must follow it."""

        def time(self) -> float:
            return super().time() + 1000.0

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = SMTPServer(SMTPHandler())
        conn = _Connection(server, loop)
        transport = FakeTransport()
        conn.connection_made(transport)
        conn.data_received(b"NOOP")  # a command has begun: its deadline counts from now
        now = loop.time()
        assert conn._input_at is not None and abs(conn._input_at - now) < 1.0
        assert abs(conn._read_at - now) < 1.0 and abs(conn._progress_at - now) < 1.0
        conn.connection_lost(None)
        await settle()

    with asyncio.Runner(loop_factory=Shifted) as runner:
        runner.run(asyncio.wait_for(main(), TIMEOUT))


def test_a_refused_connection_sets_up_no_session() -> None:
    async def main() -> None:
        server = SMTPServer(SMTPHandler(), limits=ListenerLimits(max_connections=1))
        loop = asyncio.get_running_loop()
        first, second = _Connection(server, loop), _Connection(server, loop)
        one, two = FakeTransport(), FakeTransport()
        first.connection_made(one)
        second.connection_made(two)
        assert first.session is not None and first.session.peer == ("127.0.0.1", 4321)
        assert first.task is not None
        assert second.session is None and second.task is None and two.closed
        assert codes_of(two.writes[0]) == [421]
        await settle()
        assert one.writes == [b"220 localhost ESMTP mailagents\r\n"]
        first.data_received(b"QUIT\r\n")
        await settle()
        assert first.task.done() and one.closed and server.connections == 0

    run(main())


class Collect(SMTPHandler):
    """Keeps the messages whole (the default collector), accepts everything."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        self.messages.append(message)
        return Accept()


@pytest.mark.parametrize("pieces", [1, 3, 200])
def test_input_larger_than_one_feed_arrives_whole(pieces: int) -> None:
    body = b"".join(b"line %06d of a long message\r\n" % i for i in range(4000))  # ~120 KB
    head = b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
    wire = body + b".\r\nQUIT\r\n"  # sent once the 354 is in
    handler = Collect()

    async def main() -> None:
        server = SMTPServer(handler)
        loop = asyncio.get_running_loop()
        conn = _Connection(server, loop)
        transport = FakeTransport()
        conn.connection_made(transport)
        await settle()
        loop.call_soon(conn.data_received, head)
        await settle()
        size = -(-len(wire) // pieces)
        for start in range(0, len(wire), size):
            loop.call_soon(conn.data_received, wire[start : start + size])
            await asyncio.sleep(0)
        await settle()
        assert codes_of(b"".join(transport.writes)) == [220, 250, 250, 250, 354, 250, 221]
        assert transport.closed

    run(main())
    assert handler.messages == [body]


@pytest.mark.parametrize("wait_in", [frozenset(), frozenset({"mail", "message"})])
def test_without_asyncios_task_hooks_every_input_goes_through_the_task(
    monkeypatch: pytest.MonkeyPatch, wait_in: frozenset[str]
) -> None:
    """The fall-back when asyncio's private _enter_task/_leave_task are missing: the
    same replies, the same session task and context seen by every handler call."""
    import mailagents.aio.smtp as aio_smtp

    monkeypatch.setattr(aio_smtp, "_INLINE", False)
    handler = Observer(wait_in)

    async def main() -> None:
        async with SMTPServer(handler) as server:
            client = await Client.connect(server)
            assert await transaction(client) == [250, 250, 250, 354, 250, 221]
            await client.close()

    run(main())
    tasks = {task for _, task in handler.tasks}
    assert len(tasks) == 1 and None not in tasks
    assert handler.messages == [MESSAGE]
