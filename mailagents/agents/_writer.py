"""The Maildir writer process behind ``MaildirDelivery(writer="process")``.

One long-lived child process (running :func:`main`) does the file
work of durable delivery: it reads request frames from a stream socket (its standard
input, one end of a ``socket.socketpair``), groups what has arrived per Maildir into
:meth:`~mailagents.store.MaildirFolder.append_batch` calls (write and fsync each file,
rename each into ``new/``, fsync ``new/`` once) and only then writes one acknowledgement
frame per message. The server process keeps no executor thread for this, so the file
work never competes with the event loop for the GIL.

Frames (all integers in network byte order):

* request: ``id`` (8 octets), directory length (2), message length (4), the directory
  (``os.fsencode`` of an absolute path), the message;
* acknowledgement: ``id`` (8), status (1: 0 durable, 1 failed), error length (2), the
  error text (UTF-8, at most :data:`MAX_ERROR` octets);
* ready: an acknowledgement of id :data:`READY_ID` (0, which no request uses), sent
  once by the writer when it is set up and can take requests.

Sizes are checked before anything is buffered: a frame announcing more than the limits
is a :class:`FrameError` (the stream cannot go on).

The parent side is :class:`WriterClient`: it starts the writer lazily, restarts it
(with a back-off) when it dies, bounds the bytes it has written but the writer has not
yet read, fails every delivery still waiting when the writer goes away, and kills a
writer that is alive but has left a delivery unacknowledged for longer than its
``ack_timeout`` (hung: a stalled disk, a bug). That clock starts only once the writer
said it is ready: starting a Python process takes a few hundred milliseconds on a
loaded machine, and a writer still starting is not hung. Start-up has its own deadline,
``start_timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

REQUEST = struct.Struct("!QHI")
"""Request header: message id, directory length, message length."""
ACK = struct.Struct("!QBH")
"""Acknowledgement header: message id, status (0 durable, 1 failed), error length."""
READY_ID = 0
"""The id of the ready frame (request ids start at 1)."""
MAX_DIRECTORY = 4096
"""The longest directory (octets) a request may name (``PATH_MAX`` on Linux)."""
MAX_ERROR = 1000
"""The longest error text (octets) an acknowledgement carries."""
BATCH = 16
"""Messages in one ``append_batch`` call at most (measured best: larger batches make
the first message of each wait longer without saving more CPU)."""
ROUND = 4 * BATCH
"""Frames taken from the socket between two rounds of acknowledgements at most."""
CHUNK = 1 << 20
"""Octets read from the socket at once."""
SOCKET_BUFFER = 1 << 20
"""Socket send and receive buffer sizes asked for on both ends."""


class FrameError(Exception):
    """A frame broke the framing (a size beyond its limit, a bad status): the stream
    cannot go on."""


class WriterError(Exception):
    """A delivery through the writer process failed: the writer reported an error for
    this message, or went away before acknowledging it (the message may then be on
    disk or not; a retry may duplicate it, never lose it)."""


# --- framing ----------------------------------------------------------------------------


def encode_request(mid: int, directory: bytes, message: bytes) -> tuple[bytes, bytes]:
    """The frame asking for ``message`` in ``directory``, as (header and directory,
    message), so that a big message is not copied to be framed."""
    if len(directory) > MAX_DIRECTORY:
        raise ValueError(f"directory longer than {MAX_DIRECTORY} octets")
    if len(message) > 0xFFFFFFFF:
        raise ValueError("message too large for a frame")
    return REQUEST.pack(mid, len(directory), len(message)) + directory, message


def encode_ack(mid: int, error: str | None) -> bytes:
    """The acknowledgement of ``mid``: durable (``error`` is ``None``) or failed."""
    if error is None:
        return ACK.pack(mid, 0, 0)
    text = error.encode("utf-8", "replace")[:MAX_ERROR]
    return ACK.pack(mid, 1, len(text)) + text


class _Decoder:
    """A bounded receive buffer of length-prefixed frames."""

    header: struct.Struct

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        """Add the octets that arrived."""
        if self._pos and self._pos * 2 >= len(self._buffer):
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data

    @property
    def buffered(self) -> int:
        """Octets received and not yet returned in a frame."""
        return len(self._buffer) - self._pos

    def _body_lengths(self, fields: tuple[Any, ...]) -> tuple[int, int]:
        raise NotImplementedError  # pragma: no cover

    def _take(self) -> tuple[tuple[Any, ...], bytes, bytes] | None:
        buffer, pos = self._buffer, self._pos
        if len(buffer) - pos < self.header.size:
            return None
        fields = self.header.unpack_from(buffer, pos)
        first, second = self._body_lengths(fields)  # checks the limits
        start = pos + self.header.size
        end = start + first + second
        if len(buffer) < end:
            return None
        one = bytes(buffer[start : start + first])
        two = bytes(buffer[start + first : end])
        self._pos = end
        if end == len(buffer):
            buffer.clear()
            self._pos = 0
        return fields, one, two


class RequestDecoder(_Decoder):
    """Request frames out of a byte stream; raises :class:`FrameError` when a header
    announces a directory or message beyond the limits."""

    header = REQUEST

    def __init__(self, max_message: int) -> None:
        super().__init__()
        self.max_message = max_message

    def _body_lengths(self, fields: tuple[Any, ...]) -> tuple[int, int]:
        _, dlen, mlen = fields
        if dlen == 0 or dlen > MAX_DIRECTORY:
            raise FrameError(f"directory length {dlen} out of range")
        if mlen > self.max_message:
            raise FrameError(f"message of {mlen} octets exceeds {self.max_message}")
        return dlen, mlen

    def next_frame(self) -> tuple[int, bytes, bytes] | None:
        """The next whole request (id, directory, message), or ``None`` if more octets
        are needed."""
        found = self._take()
        if found is None:
            return None
        fields, directory, message = found
        return fields[0], directory, message


class AckDecoder(_Decoder):
    """Acknowledgement frames out of a byte stream."""

    header = ACK

    def _body_lengths(self, fields: tuple[Any, ...]) -> tuple[int, int]:
        _, status, elen = fields
        if status not in (0, 1) or (status == 0 and elen) or elen > MAX_ERROR:
            raise FrameError(f"bad acknowledgement header (status {status}, length {elen})")
        return elen, 0

    def next_frame(self) -> tuple[int, str | None] | None:
        """The next whole acknowledgement (id, ``None`` or the error text), or ``None``
        if more octets are needed."""
        found = self._take()
        if found is None:
            return None
        fields, error, _ = found
        return fields[0], (error.decode("utf-8", "replace") if fields[1] else None)


# --- the writer process -----------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class _Folders:
    """The INBOX of each Maildir written to, opened once (at most ``limit`` kept)."""

    def __init__(self, fsync: bool, limit: int = 1024) -> None:
        self.fsync = fsync
        self.limit = limit
        self._open: dict[bytes, Any] = {}

    def append(self, directory: bytes, messages: list[bytes]) -> list[str | None]:
        """Deliver ``messages`` into ``directory``; an error text or ``None`` each."""
        from mailagents.store import MaildirStore

        try:
            found = self._open.get(directory)
            if found is None:
                if len(self._open) >= self.limit:
                    self.close()
                store = MaildirStore(os.fsdecode(directory), fsync=self.fsync, max_workers=1)
                found = (store, store.folder("INBOX", deliver_only=True))
                self._open[directory] = found
            outcomes: list[Any] = found[1].append_batch(messages)
        except Exception as exc:
            self._forget(directory)
            return [_describe(exc)] * len(messages)
        errors = [_describe(o) if isinstance(o, Exception) else None for o in outcomes]
        if any(errors):
            self._forget(directory)  # reopened next time (it may have been removed)
        return errors

    def _forget(self, directory: bytes) -> None:
        found = self._open.pop(directory, None)
        if found is not None:
            with contextlib.suppress(Exception):
                found[1].close()
                found[0].close()

    def close(self) -> None:
        """Close every folder and store."""
        for directory in list(self._open):
            self._forget(directory)


def serve(sock: socket.socket, *, max_message: int, fsync: bool = True) -> None:
    """The writer's loop: read requests from ``sock``, deliver them in batches (at most
    :data:`BATCH` per ``append_batch``), acknowledge each once its batch is durable.
    Returns at end of stream or when the parent is gone; raises :class:`FrameError`
    on a bad frame. Blocks."""
    decoder = RequestDecoder(max_message)
    folders = _Folders(fsync)
    try:
        while True:
            frame = decoder.next_frame()
            while frame is None:  # wait for one whole frame
                data = sock.recv(CHUNK)
                if not data:
                    if decoder.buffered:
                        log.warning("end of stream inside a frame (%d octets)", decoder.buffered)
                    return
                decoder.feed(data)
                frame = decoder.next_frame()
            frames = [frame]
            # Take whatever else has arrived meanwhile, without waiting. Only read when
            # no whole frame is buffered: the buffer holds at most one partial frame
            # and one chunk.
            while len(frames) < ROUND:
                frame = decoder.next_frame()
                if frame is None:
                    try:
                        data = sock.recv(CHUNK, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        break
                    if not data:
                        break  # end of stream: deliver these, then notice it
                    decoder.feed(data)
                    continue
                frames.append(frame)
            groups: dict[bytes, list[tuple[int, bytes]]] = {}
            for mid, directory, message in frames:
                groups.setdefault(directory, []).append((mid, message))
            del frames
            for directory, items in groups.items():
                for start in range(0, len(items), BATCH):
                    batch = items[start : start + BATCH]
                    errors = folders.append(directory, [m for _, m in batch])
                    pairs = zip(batch, errors, strict=True)
                    acks = b"".join(encode_ack(mid, error) for (mid, _), error in pairs)
                    try:
                        sock.sendall(acks)
                    except OSError:  # the parent is gone: nobody waits for these
                        return
    finally:
        folders.close()


def main(argv: list[str] | None = None) -> int:
    """The writer process: serve the socket on standard input."""
    parser = argparse.ArgumentParser(prog="mailagents.agents._writer")
    parser.add_argument("--max-message", type=int, required=True)
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args(argv)
    # The parent decides when the writer stops (end of stream): an interrupt meant for
    # the server's process group must not cut a batch short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="mailagents writer: %(message)s")
    sock = socket.socket(fileno=os.dup(0))
    try:
        # Import what the first delivery needs before saying ready, so that the
        # parent's acknowledgement deadline never includes the start-up.
        import mailagents.store  # noqa: F401

        try:
            sock.sendall(encode_ack(READY_ID, None))
        except OSError:
            return 0  # the parent is gone already
        serve(sock, max_message=args.max_message, fsync=not args.no_fsync)
    except FrameError as exc:
        log.error("bad frame from the server, stopping: %s", exc)
        return 2
    finally:
        sock.close()
    return 0


# --- the server side --------------------------------------------------------------------


_ENTRY = "import sys; from mailagents.agents._writer import main; sys.exit(main())"


class _Link(asyncio.Protocol):
    """The server's end of one writer's socket: pending deliveries, back-pressure."""

    def __init__(self, on_lost: Callable[[_Link], None], ack_timeout: float = 120.0) -> None:
        self.transport: asyncio.Transport | None = None
        self.process: asyncio.SubprocessTransport | None = None
        # Message id → (when it was sent, loop time; its future), in the order sent: the
        # first entry is the oldest delivery still waiting for its acknowledgement.
        self.pending: dict[int, tuple[float, asyncio.Future[None]]] = {}
        self.ack_timeout = ack_timeout
        # One timer per writer, not per delivery: armed when a delivery is sent and none
        # is armed; when it fires it fails the link if the oldest pending delivery has
        # waited ``ack_timeout``, else re-arms itself for that delivery's deadline.
        self._timer: asyncio.TimerHandle | None = None
        self.error: WriterError | None = None
        self.acked = 0
        self._decoder = AckDecoder()
        self._paused = False
        self._waiters: list[asyncio.Future[None]] = []
        self._on_lost = on_lost
        loop = asyncio.get_running_loop()
        self.closed = loop.create_future()
        # Resolved by the writer's ready frame (or failed with the link).
        self.ready: asyncio.Future[None] = loop.create_future()

    @property
    def pid(self) -> int | None:
        """The writer's process id."""
        return None if self.process is None else self.process.get_pid()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=SOCKET_BUFFER)

    def data_received(self, data: bytes) -> None:
        self._decoder.feed(data)
        try:
            while (ack := self._decoder.next_frame()) is not None:
                mid, error = ack
                if mid == READY_ID:
                    if error is not None or self.ready.done():
                        raise FrameError("a second or failed ready frame")
                    self.ready.set_result(None)
                    continue
                entry = self.pending.pop(mid, None)
                if entry is None or entry[1].done():  # cancelled meanwhile: dropped
                    continue
                future = entry[1]
                if error is None:
                    self.acked += 1
                    future.set_result(None)
                else:
                    future.set_exception(WriterError(f"the writer could not deliver: {error}"))
        except FrameError as exc:
            self.fail(WriterError(f"bad frame from the writer process: {exc}"), kill=True)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(WriterError("the writer process went away before acknowledging"))
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def fail(self, error: WriterError, *, kill: bool = False) -> None:
        """The stream cannot go on: fail every pending delivery, close the socket, and
        with ``kill`` kill the writer (not when it is known to be exiting: killing
        would reap it behind the child watcher's back)."""
        if self.error is not None:
            return
        self.error = error
        log.log(
            logging.WARNING if self.pending else logging.INFO,
            "%s (pid %s); %d deliveries pending",
            error,
            self.pid,
            len(self.pending),
        )
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.ready.done():
            self.ready.set_exception(error)
            self.ready.exception()  # retrieved: _start may not be waiting any more
        pending, self.pending = self.pending, {}
        for _, future in pending.values():
            if not future.done():
                future.set_exception(error)
        self._wake()
        if self.transport is not None:
            self.transport.abort()
        if kill:
            self.kill()
        self._on_lost(self)

    def kill(self) -> None:
        """Kill the writer process if it still runs."""
        if self.process is not None and self.process.get_returncode() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    async def submit(self, mid: int, directory: bytes, message: bytes) -> None:
        """Send one request and wait for its acknowledgement."""
        head, body = encode_request(mid, directory, message)
        # Back-pressure: never write while the transport holds more than its high-water
        # mark, so at most one message beyond it is buffered here.
        while self._paused and self.error is None:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        if self.error is not None:
            raise self.error
        assert self.transport is not None and self.ready.done()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        now = loop.time()
        self.pending[mid] = (now, future)
        if self._timer is None:
            self._timer = loop.call_at(now + self.ack_timeout, self._check_acks)
        self.transport.write(head)
        self.transport.write(body)
        await future

    def _check_acks(self) -> None:
        """The timer fired: kill the writer if the oldest pending delivery has waited
        ``ack_timeout`` seconds (it is alive but hung), else re-arm for its deadline."""
        self._timer = None
        if self.error is not None or not self.pending:
            return  # re-armed by the next delivery sent
        # Deliveries cancelled by their callers stay here until acknowledged: they too
        # tell whether the writer still answers.
        sent, _ = next(iter(self.pending.values()))
        loop = asyncio.get_running_loop()
        deadline = sent + self.ack_timeout
        if loop.time() < deadline:
            self._timer = loop.call_at(deadline, self._check_acks)
            return
        self.fail(
            WriterError(
                f"the writer process left a delivery unacknowledged for over"
                f" {self.ack_timeout:g} s (hung): killed"
            ),
            kill=True,
        )


class _Watch(asyncio.SubprocessProtocol):
    def __init__(self) -> None:
        self.link: _Link | None = None
        self.exited = asyncio.get_running_loop().create_future()

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)
        if self.link is not None:
            self.link.fail(WriterError("the writer process exited"))


class WriterClient:
    """The server side of the writer process, on one event loop: starts it on the first
    delivery, restarts it after it died (waiting a back-off that doubles, from 50 ms to
    2 s, while writers die without delivering anything). A writer that leaves a delivery
    unacknowledged for more than ``ack_timeout`` seconds is taken to be hung: it is
    killed (SIGKILL), every delivery pending raises :class:`WriterError`, and the next
    delivery starts a new one. The ``ack_timeout`` clock starts only once the writer
    has said it is ready; a writer that is not ready within ``start_timeout`` seconds
    is killed and counted as a failed start (the back-off grows). Deliveries that
    arrive while a writer starts wait for it, within their caller's own time-out."""

    def __init__(
        self,
        *,
        max_message: int,
        fsync: bool = True,
        ack_timeout: float = 120.0,
        start_timeout: float = 30.0,
    ) -> None:
        if not ack_timeout > 0:
            raise ValueError("ack_timeout must be positive")
        if not start_timeout > 0:
            raise ValueError("start_timeout must be positive")
        self.max_message = max_message
        self.fsync = fsync
        self.ack_timeout = ack_timeout
        self.start_timeout = start_timeout
        self._link: _Link | None = None
        self._watch: _Watch | None = None
        self._starting: asyncio.Future[_Link] | None = None
        self._ids = itertools.count(1)
        self._backoff = 0.0
        self._died_at = 0.0
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The running writer's process id, if any."""
        return None if self._link is None else self._link.pid

    async def deliver(self, directory: str, message: bytes) -> None:
        """Deliver ``message`` into the Maildir ``directory``; returns once it is
        durable, raises :class:`WriterError` otherwise."""
        if self._closed:
            raise WriterError("the delivery is closed")
        if len(message) > self.max_message:
            raise WriterError(f"message of {len(message)} octets exceeds {self.max_message}")
        encoded = os.fsencode(directory)
        if not encoded or len(encoded) > MAX_DIRECTORY:
            raise WriterError("bad Maildir directory")
        link = self._link
        if link is None or link.error is not None:
            if self._starting is None:
                self._starting = asyncio.ensure_future(self._start())
            link = await asyncio.shield(self._starting)
        await link.submit(next(self._ids), encoded, message)

    def _lost(self, link: _Link) -> None:
        if self._link is link:
            self._link = None
            self._died_at = asyncio.get_running_loop().time()
            self._backoff = 0.05 if link.acked else min(max(0.05, 2 * self._backoff), 2.0)

    async def _start(self) -> _Link:
        loop = asyncio.get_running_loop()
        try:
            delay = self._died_at + self._backoff - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._closed:
                raise WriterError("the delivery is closed")
            link = await self._spawn(loop)
            await self._until_ready(link)
        except WriterError:
            self._died_at = loop.time()
            self._backoff = min(max(0.05, 2 * self._backoff), 2.0)
            raise
        except Exception as exc:
            self._died_at = loop.time()
            self._backoff = min(max(0.05, 2 * self._backoff), 2.0)
            raise WriterError(f"could not start the writer process: {_describe(exc)}") from exc
        finally:
            self._starting = None
        self._link = link
        return link

    async def _until_ready(self, link: _Link) -> None:
        """Wait for the writer's ready frame, at most ``start_timeout`` seconds."""
        try:
            await asyncio.wait_for(asyncio.shield(link.ready), self.start_timeout)
        except TimeoutError:
            link.fail(
                WriterError(
                    f"the writer process was not ready within {self.start_timeout:g} s: killed"
                ),
                kill=True,
            )
            assert link.error is not None
            raise link.error from None
        except WriterError:
            raise
        if link.error is not None:
            raise link.error

    async def _spawn(self, loop: asyncio.AbstractEventLoop) -> _Link:
        ours, theirs = socket.socketpair()
        try:
            for sock in (ours, theirs):
                for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            # Not ``-m``: the package would import this module before runpy runs it.
            command = [sys.executable, "-c", _ENTRY, "--max-message", str(self.max_message)]
            if not self.fsync:
                command.append("--no-fsync")
            env = dict(os.environ)
            # The child imports this very package, wherever it was imported from here.
            root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
            watch = _Watch()
            process, _ = await loop.subprocess_exec(
                lambda: watch,
                *command,
                stdin=theirs.fileno(),
                stdout=subprocess.DEVNULL,
                stderr=None,
                env=env,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        link = _Link(self._lost, self.ack_timeout)
        link.process = process
        watch.link = link
        try:
            await loop.connect_accepted_socket(lambda: link, ours)
        except BaseException:
            ours.close()
            process.kill()
            process.close()
            raise
        self._watch = watch
        if watch.exited.done():  # died before we were listening
            link.fail(WriterError("the writer process exited at once"))
        watch.exited.add_done_callback(lambda _: process.close())
        log.info("writer process %s started", process.get_pid())
        return link

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop taking deliveries, wait (at most ``timeout`` seconds) for those pending,
        then end the stream and wait for the writer to exit (killed if it does not)."""
        self._closed = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._starting is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._starting), timeout)
        link, watch = self._link, self._watch
        if link is None or watch is None:
            return
        if link.pending:
            left = max(0.0, deadline - loop.time())
            await asyncio.wait([f for _, f in link.pending.values()], timeout=left)
        if link.transport is not None and link.error is None:
            with contextlib.suppress(Exception):
                link.transport.write_eof()
        try:
            await asyncio.wait_for(
                asyncio.shield(watch.exited), max(0.1, deadline - loop.time())
            )
        except TimeoutError:
            log.warning("writer process %s did not stop: killed", link.pid)
            link.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(watch.exited), 2.0)
        link.fail(WriterError("the delivery is closed"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(link.closed), 1.0)

    def terminate(self) -> None:
        """Ask the writer to stop now (SIGTERM); deliveries pending fail. Thread-safe."""
        self._closed = True
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main())
