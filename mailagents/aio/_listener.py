"""The protocol-neutral side of every server adapter: listening sockets, TLS, connection
limits, deadlines, back-pressure, the failed-login throttle and graceful shutdown.

SMTP uses it now; POP3 and IMAP will use it the same way. A protocol adapter subclasses
:class:`StreamSession` and writes only its session loop (read, feed the core, answer
the core's events, write); every reply (a refusal greeting, a time-out, a shutdown)
comes from the protocol core, never from here. What is configurable is gathered in
:class:`ListenerLimits`.

How the deadlines work, for one connection (the clock runs only while the session waits
for the client; time spent in the application's handler, in a login delay or in a TLS
handshake is not the client's):

- *idle*: after the server answered something, the client has ``idle_timeout`` seconds
  to start its next command, and no gap between two reads may be longer than that.
- *command*: from the first octet of a command, the whole command must arrive within
  ``command_timeout`` seconds, however slowly it trickles in: reads do not reset it,
  only the core's answer does (the slow-loris class).
- *transfer*: message content (SMTP DATA or BDAT octets, later IMAP literals) is bounded
  by ``transfer_timeout`` for the whole transfer.
- *send*: a client that does not read what the server writes makes the transport's
  write buffer pass ``write_high_water``: the session stops reading and processing, and
  if the buffer has not drained within ``send_timeout`` the connection is aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import logging
import socket
import ssl
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

__all__ = ["NOTHING", "AuthThrottle", "Listener", "ListenerLimits", "StreamSession", "address_key"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

StopReason = Literal["drain", "shutdown", "timeout", "abort"]
"""Why a session must end: ``drain`` at its next transaction boundary (graceful
shutdown), ``shutdown`` and ``timeout`` as soon as it waits for the client, ``abort``
at once without a reply."""

Refusal = Literal["connections", "address", "shutdown"]
"""Why a new connection is refused: the global limit, the per-address limit, or the
listener is closing."""

# Octets fed to the core at a time, so that the replies one feed can produce (2.3 times
# its size for a stream of NOOPs) stay small next to the write high-water mark.
_FEED = 32 * 1024
# Source addresses remembered by the login throttle at most (oldest forgotten first).
_MAX_TRACKED = 65_536


class _Nothing:
    """The type of :data:`NOTHING`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOTHING"


NOTHING = _Nothing()
"""What :meth:`StreamSession.read_nowait` returns when no input is there yet."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerLimits:
    """Every limit and deadline of a listener and its sessions, with defaults fit for a
    public server. Times are in seconds."""

    backlog: int = 1024
    """Connections the kernel queues before they are accepted (``listen(2)``)."""
    reuse_port: bool = False
    """Listen with ``SO_REUSEPORT`` (Linux, the BSDs): several processes, each with its
    own server on the same address and port, then share the connections, which the
    kernel spreads among them. That is how one machine's CPUs all serve one port (one
    Python process uses one). The limits per address and the failed-login throttle
    then count per process."""
    max_connections: int = 1000
    """Sessions served at once; beyond it a client gets the protocol's refusal (421 in
    SMTP) and is disconnected."""
    max_connections_per_address: int = 50
    """Sessions served at once for one source address (see ``ipv6_prefix``); beyond it
    the protocol's refusal (421 4.7.0 in SMTP) while the others go on."""
    ipv6_prefix: int = 64
    """IPv6 clients are counted per network of this prefix length (one host usually
    owns a whole /64); IPv4 clients per address. 128 counts each IPv6 address."""

    idle_timeout: float = 300.0
    """The longest wait for the client to start its next command after a reply, and
    the longest silence inside one (RFC 5321 §4.5.3.2.7 asks for at least 5 minutes)."""
    command_timeout: float = 300.0
    """The longest time one command may take to arrive, from its first octet to its
    end, however slowly it trickles in (reads do not reset it)."""
    transfer_timeout: float = 1800.0
    """The longest time the content of one message (or literal) may take to arrive."""
    send_timeout: float = 300.0
    """How long the server waits for a client that does not read its replies (the
    write buffer stays above ``write_high_water``) before aborting the connection."""
    tls_handshake_timeout: float = 60.0
    """The longest TLS handshake, implicit or after STARTTLS."""

    read_high_water: int = 256 * 1024
    """Octets received but not yet processed before reading from the socket pauses
    (back-pressure while the handler is busy or the client does not read)."""
    write_high_water: int = 64 * 1024
    """Octets queued for the client before the session stops processing its input."""

    auth_failure_delay: float = 1.0
    """The delay before a failed login is answered; it doubles with each failure of the
    connection or of its source address (whichever counts more)."""
    max_auth_failure_delay: float = 10.0
    """The delay grows no further than this."""
    max_auth_failures: int = 3
    """After this many failed logins in one session it is closed (421 in SMTP)."""
    max_auth_failures_per_address: int = 10
    """After this many failed logins from one source address within
    ``auth_failure_window``, every further failure closes its session."""
    auth_failure_window: float = 900.0
    """How long a failed login counts against its source address."""

    shutdown_grace: float = 30.0
    """On close, how long sessions may go on to finish what they were doing (a
    transaction, a handler call) before they are sent the protocol's shutdown reply."""
    shutdown_timeout: float = 5.0
    """After the grace period, how long to wait for sessions still inside a handler
    call before cancelling them."""

    def __post_init__(self) -> None:
        for name in ("backlog", "max_connections", "max_connections_per_address",
                     "read_high_water", "write_high_water", "max_auth_failures",
                     "max_auth_failures_per_address"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("idle_timeout", "command_timeout", "transfer_timeout", "send_timeout",
                     "tls_handshake_timeout", "auth_failure_window"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        for name in ("auth_failure_delay", "max_auth_failure_delay", "shutdown_grace",
                     "shutdown_timeout"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must not be negative")
        if not 0 <= self.ipv6_prefix <= 128:
            raise ValueError("ipv6_prefix must be between 0 and 128")


def address_key(peer: Any, ipv6_prefix: int = 64) -> str:
    """The source a connection is counted under: the IPv4 address (also when it comes
    as an IPv4-mapped IPv6 address), or the IPv6 network of ``ipv6_prefix`` bits."""
    host = peer[0] if isinstance(peer, tuple | list) and peer else peer
    if not isinstance(host, str):
        return repr(host)
    if ":" not in host:
        return host  # IPv4: the kernel's dotted quad is canonical already
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))
    return str(ip)


class AuthThrottle:
    """Failed logins counted per source address within a sliding window, and the delay
    each failure is answered after. One throttle can serve several listeners."""

    def __init__(
        self, limits: ListenerLimits, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        """The limits the throttle applies."""
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is not None:
            horizon = now - self.limits.auth_failure_window
            while failures and failures[0] <= horizon:
                failures.popleft()
            if not failures:
                del self._failures[key]
                return None
        return failures

    def failures(self, key: str) -> int:
        """Failed logins from ``key`` within the window."""
        failures = self._recent(key, self._clock())
        return len(failures) if failures is not None else 0

    def failed(self, key: str, connection_failures: int) -> tuple[float, bool]:
        """Record a failed login from ``key``, the ``connection_failures``-th of its
        session. Returns the delay to wait before answering it, and whether the session
        must then be closed."""
        limits = self.limits
        now = self._clock()
        failures = self._recent(key, now)
        if failures is None:
            failures = deque(maxlen=limits.max_auth_failures_per_address)
            self._failures[key] = failures
            while len(self._failures) > _MAX_TRACKED:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(key)
        failures.append(now)
        count = max(connection_failures, len(failures))
        delay = min(limits.auth_failure_delay * 2.0 ** min(count - 1, 64),
                    limits.max_auth_failure_delay)
        close = (
            connection_failures >= limits.max_auth_failures
            or len(failures) >= limits.max_auth_failures_per_address
        )
        return delay, close


class StreamSession(asyncio.Protocol):
    """One client connection, protocol-neutral: the transport callbacks, a bounded
    input buffer, back-pressure both ways, the deadlines, the login delay, the TLS
    upgrade, and the task that runs the protocol's session loop.

    A protocol adapter overrides :meth:`serve` (its loop: :meth:`read`, feed the core,
    answer events, :meth:`write`, :meth:`answered` whenever the core produced a reply,
    :meth:`transferring` while content streams), :meth:`begin` (set up its core for an
    admitted connection), :meth:`refuse` (write the core's refusal greeting),
    :meth:`failed` (the core's reply after an internal error) and :meth:`at_boundary`
    (no transaction in progress: a graceful shutdown may end the session now).

    A faster adapter may also override :meth:`input_arrived` to feed its core straight
    from the transport callback while its task has nothing else to do, taking input with
    :meth:`read_nowait` (what :meth:`read` returns, or :data:`NOTHING` instead of
    waiting), and have the task wait with :meth:`wait_input` only when nothing is there;
    the SMTP adapter does (one write per batch of replies, no event-loop round trip per
    command).
    """

    def __init__(self, listener: Listener, loop: asyncio.AbstractEventLoop) -> None:
        self.listener = listener
        """The :class:`Listener` that accepted the connection."""
        self.limits = listener.limits
        """The listener's :class:`ListenerLimits`."""
        self.loop = loop
        """The event loop the session runs on."""
        # The loop's clock; asyncio's own loop.time() is time.monotonic() behind a
        # Python call, read on every input and reply: call the clock itself.
        self._now: Callable[[], float] = (
            time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time
        )
        self.transport: asyncio.Transport | None = None
        """The transport (replaced by the TLS one after :meth:`start_tls`)."""
        self.peer: tuple[Any, ...] = ()
        """The client's socket address."""
        self.address = ""
        """The key the client is counted under (see :func:`address_key`)."""
        self.task: asyncio.Task[None] | None = None
        """The task running :meth:`serve` (``None`` for a refused connection)."""
        self.context: contextvars.Context | None = None
        """The :mod:`contextvars` context :attr:`task` runs in (a subclass that runs
        session work from a transport callback, see :meth:`input_arrived`, runs it
        there too)."""
        self.stopping: StopReason | None = None
        """Why the session must end, once it must."""
        self.auth_failures = 0
        """Failed logins in this session."""
        self._pending = b""
        self._offset = 0
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._eof = False
        self._eof_fed = False
        self._lost = False
        self._reading_paused = False
        self._writing_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._sleeper: asyncio.Future[None] | None = None
        # The clock: see the module docstring.
        self._progress_at = 0.0
        self._input_at: float | None = None
        self._transfer_at: float | None = None
        self._read_at = 0.0
        self._busy_at: float | None = None
        self._blocked_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # --- hooks for the protocol adapter ----------------------------------------------

    async def serve(self) -> None:
        """The protocol's session loop."""
        raise NotImplementedError

    def refuse(self, why: Refusal) -> None:
        """Write the protocol's refusal greeting for a connection beyond a limit."""

    def failed(self) -> None:
        """Write the protocol's final reply after :meth:`serve` raised."""

    def at_boundary(self) -> bool:
        """No transaction is in progress: a graceful shutdown may end the session."""
        return True

    def input_arrived(self) -> None:
        """Input (or the end of input) arrived, called from the transport callback.

        The default wakes the task waiting in :meth:`read`. A protocol adapter may
        instead process the input right here when its task has nothing else to do (with
        :meth:`read_nowait`), which saves the event-loop round trip of a wake-up."""
        self._wake()

    # --- transport callbacks ---------------------------------------------------------

    def begin(self) -> None:
        """The connection was admitted: set up the protocol's state (a subclass may
        write its greeting here) before the session task is created. :attr:`peer` and
        :attr:`transport` are set."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's implements the interface without inheriting
        # from asyncio.Transport, so no isinstance check here (it failed on uvloop).
        stream = self.transport = cast(asyncio.Transport, transport)
        peer = stream.get_extra_info("peername")
        if type(peer) is tuple:
            self.peer = peer
        elif isinstance(peer, tuple | list):
            self.peer = tuple(peer)
        listener = self.listener
        self.address = address_key(peer, self.limits.ipv6_prefix)
        refusal = listener._admit(self)
        if refusal is not None:
            self._lost = True
            log.warning("refusing %s (%s limit)", self.peer, refusal)
            try:
                self.refuse(refusal)
            finally:
                self._close_transport()
            return
        # (try/except: contextlib.suppress costs a context manager per connection)
        try:  # noqa: SIM105
            stream.set_write_buffer_limits(high=self.limits.write_high_water)
        except NotImplementedError:  # a transport without a buffer (tests, benchmarks)
            pass
        loop = self.loop
        now = loop.time()
        self._progress_at = self._read_at = now
        self._arm(now + self.limits.idle_timeout)
        self.begin()
        self.context = context = contextvars.copy_context()
        self.task = loop.create_task(self._run(), context=context)

    def _set_write_limit(self, transport: asyncio.WriteTransport) -> None:
        # A transport without a buffer (tests, benchmarks) has no limits to set.
        with contextlib.suppress(NotImplementedError):
            transport.set_write_buffer_limits(high=self.limits.write_high_water)

    def data_received(self, data: bytes) -> None:
        stopping = self.stopping
        if self._lost or (stopping is not None and stopping != "drain"):
            return
        self._chunks.append(data)
        buffered = self._buffered = self._buffered + len(data)
        now = self._read_at = self._now()
        if self._input_at is None:
            self._input_at = now
            # The command deadline starts: the timer needs bringing forward only if a
            # deadline can now fall before it (see _rearm); usually none can.
            if (
                now + self.listener._soonest < self._timer_at
                or self._transfer_at is not None
                or self._blocked_at is not None
            ):
                self._rearm()
        if buffered > self.limits.read_high_water and not self._reading_paused:
            self._reading_paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        self.input_arrived()

    def eof_received(self) -> bool:
        self._eof = True
        self.input_arrived()
        # Keep a half-closed TCP connection open for the last replies; TLS cannot.
        return self.transport is not None and self.transport.get_extra_info("sslcontext") is None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._eof = True
        self._wake()
        self._wake_sleeper()

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._blocked_at = self.loop.time()
        self._rearm()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._blocked_at = None
        self._wake()

    # --- the clock -------------------------------------------------------------------

    def answered(self) -> None:
        """The core answered a command: the next one starts now (idle deadline), and
        any transfer is over."""
        self._progress_at = self._now()
        self._input_at = None
        self._transfer_at = None

    def transferring(self) -> None:
        """Content is streaming (a message, a literal): the transfer deadline applies
        from the first call until :meth:`answered`."""
        if self._transfer_at is None:
            self._transfer_at = self._now()

    def _deadline(self) -> tuple[float, str]:
        limits = self.limits
        if self._blocked_at is not None:
            return self._blocked_at + limits.send_timeout, "send"
        idle = self._read_at + limits.idle_timeout
        if self._transfer_at is not None:
            transfer = self._transfer_at + limits.transfer_timeout
            return (idle, "idle") if idle <= transfer else (transfer, "transfer")
        if self._input_at is None:
            return max(idle, self._progress_at + limits.idle_timeout), "idle"
        command = self._input_at + limits.command_timeout
        return (idle, "idle") if idle <= command else (command, "command")

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._check)

    def _rearm(self) -> None:
        """Bring the timer forward if the deadline moved earlier (later is checked
        lazily when the timer fires)."""
        if self._timer is None or self._lost:
            return
        if self._busy_at is not None and self._blocked_at is None:
            return
        when, _ = self._deadline()
        if when < self._timer_at:
            self._arm(when)

    def _check(self) -> None:
        self._timer = None
        if self._lost or self.task is None or self.task.done():
            return
        now = self.loop.time()
        if self._busy_at is not None and self._blocked_at is None:
            # The server is busy (handler, login delay, handshake): not the client's time.
            self._arm(now + min(self.limits.idle_timeout, self.limits.command_timeout))
            return
        when, why = self._deadline()
        if now < when:
            self._arm(when)
            return
        if why == "send":
            log.info("%s does not read its replies: aborting", self.peer)
            self.stop("abort")
            if self.transport is not None:
                self.transport.abort()
        else:
            log.info("%s timed out (%s deadline)", self.peer, why)
            self.stop("timeout")

    def pause_clock(self) -> bool:
        """Stop the client's clock while the server works (a handler call, a delay);
        False if it was stopped already (then leave it to the caller who stopped it)."""
        if self._busy_at is not None:
            return False
        self._busy_at = self.loop.time()
        return True

    def resume_clock(self) -> None:
        """Restart the client's clock: the deadlines move by the time it was stopped."""
        start = self._busy_at
        if start is None:
            return
        self._busy_at = None
        shift = self.loop.time() - start
        self._progress_at += shift
        self._read_at += shift
        if self._input_at is not None:
            self._input_at += shift
        if self._transfer_at is not None:
            self._transfer_at += shift
        self._rearm()

    async def busy(self, call: Awaitable[_T]) -> _T:
        """Await ``call`` (a handler call, a delay) with the client's clock stopped."""
        if not self.pause_clock():
            return await call
        try:
            return await call
        finally:
            self.resume_clock()

    # --- waiting, reading, writing ---------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_sleeper(self) -> None:
        sleeper = self._sleeper
        if sleeper is not None and not sleeper.done():
            sleeper.set_result(None)

    async def _wait(self) -> None:
        self._waiter = waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def stop(self, why: StopReason = "shutdown") -> None:
        """End the session: ``drain`` at its next transaction boundary, ``shutdown`` and
        ``timeout`` as soon as it waits for the client (each with the core's reply),
        ``abort`` at once. A stronger reason replaces ``drain``."""
        if self.stopping is None or (self.stopping == "drain" and why != "drain"):
            self.stopping = why
            self._wake()
            if why != "drain":
                self._wake_sleeper()

    async def read(self) -> bytes | None:
        """The next input for the core (at most 32 KiB), ``b""`` once at end of input,
        or ``None`` when the session must end (see :attr:`stopping`; connection lost)."""
        while True:
            data = self.read_nowait()
            if not isinstance(data, _Nothing):
                return data
            await self._wait()

    def read_nowait(self) -> bytes | _Nothing | None:
        """What :meth:`read` would return now, or :data:`NOTHING` where it would wait
        for more input."""
        stopping = self.stopping
        if stopping is not None and (stopping != "drain" or self.at_boundary()):
            return None
        if self._offset < len(self._pending) or self._chunks:
            return self._take()
        if self._eof:
            if self._eof_fed:
                return None
            self._eof_fed = True
            return b""
        return NOTHING

    async def wait_input(self) -> None:
        """Wait until :meth:`read_nowait` may have something new: input, the end of
        input, a stop, or the write buffer draining."""
        await self._wait()

    def _take(self) -> bytes:
        chunks = self._chunks
        if not self._pending and len(chunks) == 1 and len(chunks[0]) <= _FEED:
            # The common case: one piece arrived since the last read, fed whole.
            data = chunks.pop()
            self._buffered -= len(data)
            if self._reading_paused and self._buffered <= self.limits.read_high_water // 2:
                self._reading_paused = False
                assert self.transport is not None
                self.transport.resume_reading()
            if self._input_at is None:
                self._input_at = self._now()
            return data
        pending, offset = self._pending, self._offset
        if offset >= len(pending):
            chunks = self._chunks
            pending = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            offset = 0
        if offset == 0 and len(pending) <= _FEED:
            data = pending
            self._pending, self._offset = b"", 0
        else:
            data = pending[offset : offset + _FEED]
            self._pending, self._offset = pending, offset + len(data)
        self._buffered -= len(data)
        if self._input_at is None:
            self._input_at = self._now()
        if self._reading_paused and self._buffered <= self.limits.read_high_water // 2:
            self._reading_paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        return data

    def discard_input(self) -> None:
        """Drop everything received and not yet read (before a TLS upgrade)."""
        self._chunks.clear()
        self._pending, self._offset = b"", 0
        self._buffered = 0

    def write(self, data: bytes) -> None:
        """Write ``data`` to the client (nothing once the transport is closing)."""
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    async def drain(self) -> bool:
        """Wait while the client does not read (the write buffer is above the high-water
        mark). False when the session must end instead (aborted, lost, stopped)."""
        while self._writing_paused:
            if self._lost or self.stopping in ("abort", "shutdown", "timeout"):
                return False
            await self._wait()
        return not self._lost

    async def login_failed(self) -> bool:
        """A login failed: wait the throttle's delay (not counted against the client),
        then say whether the session must be closed."""
        self.auth_failures += 1
        delay, close = self.listener.throttle.failed(self.address, self.auth_failures)
        log.info("%s: failed login %d (delay %.1fs%s)", self.peer, self.auth_failures, delay,
                 ", closing" if close else "")
        if delay > 0 and not self._lost:
            self._sleeper = sleeper = self.loop.create_future()
            handle = self.loop.call_later(delay, self._wake_sleeper)
            try:
                await self.busy(sleeper)
            finally:
                handle.cancel()
                self._sleeper = None
        return close

    async def start_tls(self, context: ssl.SSLContext) -> bool:
        """Upgrade the connection to TLS (server side). Input received before is
        dropped. False if the handshake failed (the connection is then aborted)."""
        transport = self.transport
        assert transport is not None
        self.discard_input()
        self._reading_paused = False  # start_tls pauses and resumes reading itself
        try:
            new_transport = await self.busy(
                self.loop.start_tls(
                    transport,
                    self,
                    context,
                    server_side=True,
                    ssl_handshake_timeout=self.limits.tls_handshake_timeout,
                )
            )
        except OSError as exc:  # ssl.SSLError, TimeoutError, ConnectionError
            log.info("TLS handshake with %s failed: %s", self.peer, exc)
            transport.abort()
            return False
        if new_transport is None or self._lost:
            return False
        self._set_write_limit(new_transport)
        self.transport = new_transport
        return True

    # --- the task --------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self.serve()
        except Exception:
            log.exception("session with %s failed", self.peer)
            try:
                self.failed()
            except Exception:
                log.exception("final reply to %s failed", self.peer)
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._close_transport()
            self.discard_input()
            self.listener._release(self)

    def _close_transport(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._writing_paused or self.stopping == "abort":
            transport.abort()  # the client reads nothing: do not wait for it
            return
        transport.close()
        if transport.get_write_buffer_size():
            # Flushing the last replies must not wait for a client that never reads.
            self.loop.call_later(self.limits.send_timeout, transport.abort)


class Listener:
    """Listening sockets (several addresses, IPv4 and IPv6, optional implicit TLS) and
    the sessions they accepted, within :class:`ListenerLimits`.

    ``session_factory`` makes the :class:`StreamSession` subclass of the protocol for
    each connection."""

    def __init__(
        self,
        session_factory: Callable[[Listener, asyncio.AbstractEventLoop], StreamSession],
        limits: ListenerLimits | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        throttle: AuthThrottle | None = None,
        name: str = "server",
    ) -> None:
        self.limits = limits if limits is not None else ListenerLimits()
        """The limits of the listener and its sessions."""
        self.ssl_context = ssl_context
        """Every connection starts with a TLS handshake with this context (implicit
        TLS), unless ``None``."""
        self.throttle = throttle if throttle is not None else AuthThrottle(self.limits)
        """The failed-login throttle (shared by all sessions; can be shared between
        listeners)."""
        self.name = name
        """A name for the logs."""
        self.sessions: set[StreamSession] = set()
        """The sessions being served."""
        self._soonest = min(self.limits.idle_timeout, self.limits.command_timeout)
        self._factory = session_factory
        self._per_address: dict[str, int] = {}
        self._server: asyncio.Server | None = None
        self._closing = False

    async def start(self, host: str | Sequence[str] = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host`` (one address or name, or several) and ``port``
        (``0``: an ephemeral port)."""
        if self._server is not None:
            raise RuntimeError("the listener is already started")
        loop = asyncio.get_running_loop()
        hosts = host if isinstance(host, str) else list(host)
        tls = self.ssl_context
        self._closing = False
        self._server = await loop.create_server(
            lambda: self._factory(self, loop),
            hosts,
            port,
            backlog=self.limits.backlog,
            ssl=tls,
            ssl_handshake_timeout=self.limits.tls_handshake_timeout if tls else None,
            reuse_address=True,
            reuse_port=self.limits.reuse_port or None,
        )
        for sock in self._server.sockets:
            log.info("%s listening on %s", self.name, sock.getsockname())

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (empty when not listening)."""
        if self._server is None:
            return ()
        return tuple(self._server.sockets)

    def connections_from(self, address: str) -> int:
        """Sessions served now for a source address key."""
        return self._per_address.get(address, 0)

    def _admit(self, session: StreamSession) -> Refusal | None:
        limits = self.limits
        if self._closing:
            return "shutdown"
        if len(self.sessions) >= limits.max_connections:
            return "connections"
        count = self._per_address.get(session.address, 0)
        if count >= limits.max_connections_per_address:
            return "address"
        self._per_address[session.address] = count + 1
        self.sessions.add(session)
        return None

    def _release(self, session: StreamSession) -> None:
        if session in self.sessions:
            self.sessions.discard(session)
            count = self._per_address.get(session.address, 0) - 1
            if count > 0:
                self._per_address[session.address] = count
            else:
                self._per_address.pop(session.address, None)

    async def close(self, grace: float | None = None) -> None:
        """Stop listening; let sessions finish what they are doing for ``grace`` seconds
        (default ``limits.shutdown_grace``): each ends with the protocol's shutdown reply
        at its next transaction boundary. Then the others get that reply as soon as they
        wait for the client, and after ``limits.shutdown_timeout`` more seconds those
        still busy are cancelled."""
        server = self._server
        if server is None:
            return
        self._server = None
        self._closing = True
        server.close()
        grace = self.limits.shutdown_grace if grace is None else grace
        for session in list(self.sessions):
            session.stop("drain")
        pending = {s.task for s in self.sessions if s.task is not None}
        if pending and grace > 0:
            _, pending = await asyncio.wait(pending, timeout=grace)
        if pending:
            for session in list(self.sessions):
                session.stop("shutdown")
            _, pending = await asyncio.wait(pending, timeout=self.limits.shutdown_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await server.wait_closed()
