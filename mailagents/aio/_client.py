"""The client side's transport, shared by the SMTP and POP3 clients.

Nothing here knows a protocol: :class:`ClientStream` buffers what the socket delivers,
:func:`open_connection` and :func:`start_tls` connect and upgrade to TLS within a
time-out, :func:`request` runs a sans-I/O client core until its next event, and
:class:`Connecting` is what a client's ``connect`` returns. Failures are raised as the
calling client's own exception types, given as a :class:`ClientErrors`.
"""

from __future__ import annotations

import asyncio
import enum
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, BinaryIO, Generic, Protocol, TypeAlias, TypeVar, cast

from mailagents._protocol import RemoteProtocolError
from mailagents.aio.tls import client_context

__all__ = [
    "MessageSink",
    "sink_writer",
    "CLOSE_GRACE",
    "HIGH_WATER",
    "ClientCore",
    "ClientErrors",
    "ClientStream",
    "Connecting",
    "Feed",
    "Wait",
    "open_connection",
    "request",
    "start_tls",
]

MessageSink: TypeAlias = BinaryIO | Callable[[bytes], object]
"""Where a client puts a streamed message or literal: a binary file (anything with a
``write`` method), or a callable, plain or async, given each chunk."""


def sink_writer(sink: MessageSink) -> Callable[[bytes], object]:
    """The callable that takes each chunk for ``sink``: its ``write`` method, or the
    sink itself."""
    write = getattr(sink, "write", None)
    deliver: Callable[[bytes], object] = write if callable(write) else cast(Any, sink)
    return deliver


HIGH_WATER = 256 * 1024
"""Octets received and not yet fed to the core before reading from the socket pauses."""
CLOSE_GRACE = 2.0
"""Seconds :meth:`ClientStream.close` lets the transport flush before it aborts."""

EventT = TypeVar("EventT")
EventT_co = TypeVar("EventT_co", covariant=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientErrors:
    """The exceptions a client raises when the transport fails, each made from a
    message: its time-out, TLS, connection-closed and protocol error classes."""

    timeout: Callable[[str], Exception]
    tls: Callable[[str], Exception]
    closed: Callable[[str], Exception]
    protocol: Callable[[str], Exception]


# --- the socket ---------------------------------------------------------------------------


class ClientStream(asyncio.Protocol):
    """The socket: buffers what arrives, wakes the reader, tracks flow control both
    ways, and remembers when the client is done with the connection (``closed``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False
        self._reading_paused = False
        self._writing_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self.lost: asyncio.Future[None] = loop.create_future()
        """Done when the connection is lost."""
        self.closed = False
        """Whether the client is done with the connection (closed, aborted, or closing
        after the server's goodbye): no request may start."""

    # transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's implements the interface without inheriting
        # from asyncio.Transport, so no isinstance check here (it failed on uvloop).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        transport = self.transport
        if len(self._buffer) > HIGH_WATER and not self._reading_paused and transport:
            self._reading_paused = True
            transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # close: nothing is sent after the server's end of input

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._writing_paused = False
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake()

    # the client's side

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, deadline: float) -> None:
        self._waiter = waiter = self._loop.create_future()
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        finally:
            self._waiter = None

    async def read(self, deadline: float) -> bytes:
        """What arrived, ``b""`` at end of input; :class:`TimeoutError` past
        ``deadline`` (loop time)."""
        while not self._buffer and not self._eof:
            await self._wait(deadline)
        return self._take()

    def _take(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    def poll(self) -> bytes | None:
        """What arrived, without waiting: ``None`` when nothing did, ``b""`` at end
        of input."""
        if not self._buffer and not self._eof:
            return None
        return self._take()

    def clear(self) -> None:
        """Forget what arrived and was not read (before a TLS handshake, whose
        transport starts with reading on)."""
        self._buffer.clear()
        self._reading_paused = False

    def write(self, data: bytes) -> None:
        """Send ``data`` unless the connection is closing."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    async def drain(self, timeout: float) -> None:
        """Wait while the transport's buffer is full; each wait for the network to take
        a block is bounded by ``timeout``."""
        while self._writing_paused and not self._eof:
            await self._wait(self._loop.time() + timeout)

    def abort(self) -> None:
        """Give the connection up at once: the session cannot go on."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    async def close(self) -> None:
        """Close the connection, letting the transport flush for :data:`CLOSE_GRACE`
        seconds before it is aborted."""
        self.closed = True
        transport = self.transport
        if transport is None:  # pragma: no cover - set by connection_made
            return
        if not transport.is_closing():
            transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self.lost), CLOSE_GRACE)
        except TimeoutError:  # pragma: no cover - a peer that does not take the close
            transport.abort()


# --- opening, and TLS ---------------------------------------------------------------------


async def open_connection(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None,
    server_hostname: str | None,
    timeout: float,
    errors: ClientErrors,
    local_addr: tuple[str, int] | None = None,
) -> ClientStream:
    """Connect to ``host``:``port`` within ``timeout`` seconds, from ``local_addr``
    (an address and port to bind, port 0 for any) if given. With ``ssl_context``
    the connection starts with a TLS handshake (implicit TLS, RFC 8314) that verifies
    ``server_hostname`` (default ``host``)."""
    loop = asyncio.get_running_loop()
    tls = ssl_context is not None
    try:
        async with asyncio.timeout(timeout):
            _, stream = await loop.create_connection(
                lambda: ClientStream(loop),
                host,
                port,
                ssl=ssl_context,
                server_hostname=(server_hostname or host) if tls else None,
                ssl_handshake_timeout=timeout if tls else None,
                local_addr=local_addr,
            )
    except TimeoutError:
        raise errors.timeout(f"could not connect to {host}:{port} within {timeout:g} s") from None
    except ssl.SSLError as exc:
        raise errors.tls(f"TLS with {host}:{port} failed: {exc}") from exc
    return stream


async def start_tls(
    stream: ClientStream,
    ssl_context: ssl.SSLContext | None,
    *,
    host: str,
    server_hostname: str | None,
    timeout: float,
    errors: ClientErrors,
) -> None:
    """Upgrade the connection to TLS once the server said go ahead (STARTTLS, STLS),
    verifying ``server_hostname`` (default ``host``) with ``ssl_context`` (default
    :func:`~mailagents.aio.client_context`). On failure the connection is aborted."""
    transport = stream.transport
    assert transport is not None
    context = ssl_context if ssl_context is not None else client_context()
    # Whatever followed the go-ahead in the clear is never read (RFC 3207 §5, RFC 2595
    # §4): the core dropped what it had been fed, this drops what it was not fed yet.
    stream.clear()
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            new_transport = await loop.start_tls(
                transport,
                stream,
                context,
                server_hostname=server_hostname or host,
                ssl_handshake_timeout=timeout,
            )
    except TimeoutError:
        stream.abort()
        raise errors.timeout(f"TLS handshake not done within {timeout:g} s") from None
    except ssl.SSLError as exc:
        stream.abort()
        raise errors.tls(f"TLS with {host} failed: {exc}") from exc
    except OSError as exc:
        stream.abort()
        raise errors.closed(f"connection lost during the TLS handshake: {exc}") from exc
    if new_transport is None:  # pragma: no cover - only for a closed transport
        stream.abort()
        raise errors.closed("connection lost during the TLS handshake")
    stream.transport = new_transport


# --- running a core -----------------------------------------------------------------------


class ClientCore(Protocol[EventT_co]):
    """What :func:`request` needs of a sans-I/O client core. Its ``NEED_DATA``
    sentinel is an enum member; its events are not."""

    def next_event(self) -> EventT_co | enum.Enum: ...

    def data_to_send(self) -> bytes: ...

    def receive_data(self, data: bytes) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Wait:
    """What the client waits for: the ``step`` a time-out names (``"GREETING"``,
    ``"RETR"``), the ``seconds`` it allows, and a ``key`` that changes when a new
    time-out should start (when a reply was consumed, say)."""

    key: object
    step: str
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Feed:
    """Content a request streams to the core while it runs: whenever ``ready()`` (the
    core wants the next piece, and what it had was written and drained), ``step()``
    gives it one piece (or ends the content). Replies that arrived meanwhile are fed
    to the core first, without waiting for more."""

    ready: Callable[[], bool]
    step: Callable[[], Awaitable[None]]


async def request(
    core: ClientCore[EventT],
    stream: ClientStream,
    start: Callable[[], None] | None,
    wait: Callable[[], Wait],
    *,
    host: str,
    errors: ClientErrors,
    closed_event: type,
    drain_timeout: float | None = None,
    rearm_after_write: bool = False,
    feed: Feed | None = None,
) -> EventT:
    """Queue a request on the core (``start``; ``None`` queues nothing, to wait for a
    greeting or the next piece of a response) and run the connection until the core
    gives an event, which is returned. With ``feed``, content is streamed to the core
    as it asks (see :class:`Feed`).

    ``wait()`` says what the client waits for; a time-out starts after ``start`` and
    again whenever the key of ``wait()`` changes, or with ``rearm_after_write`` after
    each write. With ``drain_timeout`` each write also waits while the network does
    not take the data. A time-out, a protocol error or the server's close
    (``closed_event``) aborts the connection and raises the client's error, and so
    does a cancellation (the session is mid-request: it cannot be resumed).
    """
    if stream.closed:
        raise errors.closed("the connection is closed")
    if start is not None:
        start()
    try:
        event = await _next_event(
            core,
            stream,
            wait,
            host=host,
            errors=errors,
            drain_timeout=drain_timeout,
            rearm_after_write=rearm_after_write,
            feed=feed,
        )
    except asyncio.CancelledError:
        stream.abort()
        raise
    if isinstance(event, closed_event):
        stream.abort()
        raise errors.closed(f"{host} closed the connection")
    return event


async def _next_event(
    core: ClientCore[EventT],
    stream: ClientStream,
    wait: Callable[[], Wait],
    *,
    host: str,
    errors: ClientErrors,
    drain_timeout: float | None,
    rearm_after_write: bool,
    feed: Feed | None = None,
) -> EventT:
    """Write what the core has, read, feed it, until it gives an event; stream the
    content of ``feed`` whenever the core wants it."""
    loop = asyncio.get_running_loop()
    armed = wait()
    deadline = loop.time() + armed.seconds
    while True:
        try:
            event = core.next_event()
        except RemoteProtocolError as exc:
            stream.abort()
            raise errors.protocol(f"{host} broke the protocol: {exc}") from exc
        if not isinstance(event, enum.Enum):
            return event
        out = core.data_to_send()
        if out:
            stream.write(out)
            if drain_timeout is not None:
                await _drain(stream, drain_timeout, host=host, errors=errors)
        now = wait()
        if now.key != armed.key or (out and rearm_after_write):
            armed = now
            deadline = loop.time() + armed.seconds
        if feed is not None and feed.ready():
            # Replies already in (a refused BDAT chunk, say) come before more content.
            early = stream.poll()
            if early is not None:
                core.receive_data(early)
            else:
                try:
                    await feed.step()
                except BaseException:
                    stream.abort()  # mid-content: the session cannot go on
                    raise
            continue
        try:
            data = await stream.read(deadline)
        except TimeoutError:
            stream.abort()
            raise errors.timeout(
                f"no reply from {host} to {armed.step} within {armed.seconds:g} s"
            ) from None
        core.receive_data(data)


async def _drain(stream: ClientStream, timeout: float, *, host: str, errors: ClientErrors) -> None:
    try:
        await stream.drain(timeout)
    except TimeoutError:
        stream.abort()
        raise errors.timeout(f"{host} took no data for {timeout:g} s") from None


# --- what connect returns -----------------------------------------------------------------


class _Client(Protocol):
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


ClientT = TypeVar("ClientT", bound=_Client)


class Connecting(Generic[ClientT]):
    """A client being connected by ``opener()``: await it for the client, or use it as
    an async context manager (which hands the end to the client's ``__aexit__``: quit
    and close)."""

    def __init__(self, opener: Callable[[], Coroutine[Any, Any, ClientT]]) -> None:
        self._open = opener
        self._client: ClientT | None = None

    def __await__(self) -> Generator[Any, None, ClientT]:
        return self._open().__await__()

    async def __aenter__(self) -> ClientT:
        self._client = await self._open()
        return self._client

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.__aexit__(exc_type, exc, tb)
