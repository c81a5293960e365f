"""One client connection, protocol-neutral: :class:`StreamSession`, the
``asyncio.Protocol`` that a protocol adapter (SMTP, POP3) subclasses with its session
loop.

It holds the transport callbacks, the bounded input buffer
(:class:`~mailagents.aio._input.InputBuffer`), back-pressure both ways, the client's
deadlines (:class:`~mailagents.aio._deadlines.Deadlines`, one loop timer armed for
whichever falls first), the login delay, the TLS upgrade, and the task that runs the
protocol's loop. Every reply (a refusal greeting, a time-out, a shutdown) comes from
the protocol core, through the adapter's hooks, never from here.

Three hooks serve a protocol whose sessions last long and do more than answer (IMAP):

- :meth:`StreamSession.set_state` names the session's state, whose idle deadline a
  :class:`~mailagents.aio._deadlines.StateTimeouts` gives (IMAP: 60 seconds before
  login, 30 minutes after it and during IDLE);
- :meth:`StreamSession.wake` (for instance the callback of a folder watch, see
  ``mailagents.aio._watching``) makes :meth:`StreamSession.read_or_wake` return
  :data:`WOKEN`, so that the loop can send unsolicited responses while the client is
  silent;
- :meth:`StreamSession.install_codec` puts a codec (``mailagents.aio._codec``: RFC
  4978's DEFLATE) between the transport (TLS included) and the core, from the next
  write and for every input octet not yet fed to the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from mailagents.aio._codec import Codec, CodecError
from mailagents.aio._deadlines import Deadlines, StateTimeouts
from mailagents.aio._input import FEED, InputBuffer
from mailagents.aio._throttle import address_key, unix_peer

if TYPE_CHECKING:
    from mailagents.aio._listener import Listener, Refusal

__all__ = ["NOTHING", "WOKEN", "StopReason", "StreamSession"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

StopReason = Literal["drain", "shutdown", "timeout", "abort"]
"""Why a session must end: ``drain`` at its next transaction boundary (graceful
shutdown), ``shutdown`` and ``timeout`` as soon as it waits for the client, ``abort``
at once without a reply."""


class _Nothing:
    """The type of :data:`NOTHING`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOTHING"


NOTHING = _Nothing()
"""What :meth:`StreamSession.read_nowait` returns when no input is there yet."""


class _Woken:
    """The type of :data:`WOKEN`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "WOKEN"


WOKEN = _Woken()
"""What :meth:`StreamSession.read_or_wake` returns after :meth:`StreamSession.wake`."""


_STATES = StateTimeouts()


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

    An adapter may also override :meth:`input_arrived` to feed its core straight from
    the transport callback while its task has nothing else to do, taking input with
    :meth:`read_nowait` (what :meth:`read` returns, or :data:`NOTHING` instead of
    waiting), and have the task wait with :meth:`wait_input` only when nothing is there;
    the SMTP adapter does (one write per batch of replies, no event-loop round trip per
    command).
    """

    state_timeouts: StateTimeouts | None = None
    """The idle deadline per state named with :meth:`set_state` (``None``: the
    defaults of :class:`~mailagents.aio._deadlines.StateTimeouts`); an adapter sets it
    on its class or per session."""

    def __init__(self, listener: Listener, loop: asyncio.AbstractEventLoop) -> None:
        self.listener = listener
        """The :class:`~mailagents.aio._listener.Listener` that accepted the
        connection."""
        self.limits = limits = listener.limits
        """The listener's :class:`~mailagents.aio.ListenerLimits`."""
        self.loop = loop
        """The event loop the session runs on."""
        # The loop's clock, read on every input and every reply. asyncio's own
        # loop.time() is time.monotonic() behind a Python method call, so where the
        # loop's time() is asyncio's the session calls time.monotonic() itself (44 ns a
        # call instead of 73 ns, timeit on this 2-core machine, 2026-12-06). Any other
        # loop is read through its time().
        self._now: Callable[[], float] = (
            time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time
        )
        self.transport: asyncio.Transport | None = None
        """The transport (replaced by the TLS one after :meth:`start_tls`)."""
        self.peer: tuple[Any, ...] = ()
        """The client's socket address; on a Unix socket ``("unix", pid, uid)``, or
        ``("unix",)`` when the client's process is not known."""
        self.address = ""
        """The key the client is counted under (see
        :func:`~mailagents.aio._throttle.address_key` and
        :func:`~mailagents.aio._throttle.unix_key`)."""
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
        self.deadlines = Deadlines(limits)
        """The client's deadlines; one loop timer is armed for the next of them."""
        self._input = InputBuffer(limits.read_high_water)
        self._eof = False
        self._eof_fed = False
        self._lost = False
        self._writing_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._sleeper: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._woken = False
        self._codec: Codec | None = None

    # What the command, idle and progress deadlines count from (read by the SMTP
    # adapter's tests, which predate Deadlines).
    @property
    def _input_at(self) -> float | None:
        return self.deadlines.input_at

    @property
    def _read_at(self) -> float:
        return self.deadlines.read_at

    @property
    def _progress_at(self) -> float:
        return self.deadlines.progress_at

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

    def begin(self) -> None:
        """The connection was admitted: set up the protocol's state (a subclass may
        write its greeting here) before the session task is created. :attr:`peer` and
        :attr:`transport` are set."""

    # --- transport callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's implements the interface without inheriting
        # from asyncio.Transport, so no isinstance check here (it failed on uvloop).
        stream = self.transport = cast(asyncio.Transport, transport)
        peer = stream.get_extra_info("peername")
        if type(peer) is tuple:  # TCP: (host, port) or (host, port, flowinfo, scope_id)
            self.peer = peer
            self.address = address_key(peer, self.limits.ipv6_prefix)
        elif (local := unix_peer(stream)) is not None:
            # A Unix socket (peername "" or a path): counted per client process.
            self.peer, self.address = local
        else:
            if isinstance(peer, tuple | list):
                self.peer = tuple(peer)
            self.address = address_key(peer, self.limits.ipv6_prefix)
        listener = self.listener
        refusal = listener._admit(self)
        if refusal is not None:
            self._lost = True
            log.warning("refusing %s (%s limit)", self.peer, refusal)
            try:
                self.refuse(refusal)
            finally:
                self._close_transport()
            return
        # A transport without a buffer (tests, benchmarks) has no limits to set. (A
        # plain try/except rather than contextlib.suppress on this per-connection path:
        # 26 ns against 295 ns when nothing is raised, timeit, 2026-12-06.)
        try:  # noqa: SIM105
            stream.set_write_buffer_limits(high=self.limits.write_high_water)
        except NotImplementedError:
            pass
        self._input.reader = stream
        loop = self.loop
        now = loop.time()
        self.deadlines.start(now)
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
        if self._codec is None:
            self._input.append(data)  # pauses reading past read_high_water
        else:
            self._decode(data)
        if self.deadlines.received(self._now(), self._timer_at):
            self._rearm()
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
        self.deadlines.blocked(self.loop.time())
        self._rearm()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self.deadlines.unblocked()
        self._wake()

    # --- the clock -------------------------------------------------------------------

    def answered(self) -> None:
        """The core answered a command: the next one starts now (idle deadline), and
        any transfer is over."""
        self.deadlines.answered(self._now())

    def set_state(self, state: str | None) -> None:
        """The session is now in ``state`` (``None``: none): its idle deadline becomes
        the state's duration in :attr:`state_timeouts`, or the listener's
        ``idle_timeout`` for a state not listed there."""
        timeouts = self.state_timeouts if self.state_timeouts is not None else _STATES
        self.deadlines.set_state(state, None if state is None else timeouts.get(state))
        self._rearm()

    def transferring(self) -> None:
        """Content is streaming (a message, a literal): the transfer deadline applies
        from the first call until :meth:`answered`."""
        deadlines = self.deadlines
        if deadlines.transfer_at is None:
            deadlines.transferring(self._now())

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._check)

    def _rearm(self) -> None:
        """Bring the timer forward if the next deadline moved earlier (one that moved
        later is found when the timer fires)."""
        if self._timer is None or self._lost:
            return
        deadlines = self.deadlines
        if deadlines.paused:
            return
        when, _ = deadlines.next()
        if when < self._timer_at:
            self._arm(when)

    def _check(self) -> None:
        self._timer = None
        if self._lost or self.task is None or self.task.done():
            return
        now = self.loop.time()
        deadlines = self.deadlines
        if deadlines.paused:
            # The server is busy (handler, login delay, handshake): not the client's
            # time. Look again later; resuming moves the deadlines by the pause.
            self._arm(now + deadlines.soonest)
            return
        when, why = deadlines.next()
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
        return self.deadlines.pause(self.loop.time())

    def resume_clock(self) -> None:
        """Restart the client's clock: the deadlines move by the time it was stopped."""
        if self.deadlines.resume(self.loop.time()):
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

    def wake(self) -> None:
        """Something other than input wants the session loop (a folder changed): the
        task waiting in :meth:`read_or_wake` returns :data:`WOKEN`. Called on the
        loop's thread; several calls before the loop looks are one wake-up."""
        self._woken = True
        self._wake()

    async def read_or_wake(self) -> bytes | _Woken | None:
        """What :meth:`read` returns, or :data:`WOKEN` once after :meth:`wake` (before
        any input waiting: the loop then sends what it has to say and reads again)."""
        while True:
            if self._woken:
                stopping = self.stopping
                if stopping is None or (stopping == "drain" and not self.at_boundary()):
                    self._woken = False
                    return WOKEN
            data = self.read_nowait()
            if not isinstance(data, _Nothing):
                return data
            await self._wait()

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
        if self._codec is not None:
            self._pump()
        data = self._input.take()
        if data:
            deadlines = self.deadlines
            if deadlines.input_at is None:
                deadlines.command_began(self._now())
            return data
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

    def discard_input(self) -> None:
        """Drop everything received and not yet read (before a TLS upgrade)."""
        self._input.clear()

    def write(self, data: bytes) -> None:
        """Write ``data`` to the client (nothing once the transport is closing),
        through the codec once one is installed."""
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            if self._codec is not None:
                data = self._codec.encode(data)
            transport.write(data)

    # --- the codec -------------------------------------------------------------------

    @property
    def codec(self) -> Codec | None:
        """The codec between the transport and the core, or ``None``."""
        return self._codec

    def install_codec(self, codec: Codec, leftover: bytes = b"") -> None:
        """Put ``codec`` between the transport and the core (RFC 4978's COMPRESS
        once its ``OK`` has been written: that reply leaves as it is, everything
        written after this call is encoded). Input not yet fed to the core is decoded:
        ``leftover`` first (what the core received after the command, handed back by
        it), then what is still buffered here, then whatever arrives."""
        if self._codec is not None:
            raise RuntimeError("a codec is installed already")
        held = [leftover]
        while chunk := self._input.take():
            held.append(chunk)
        self._codec = codec
        self._decode(b"".join(held))

    def _decode(self, data: bytes) -> None:
        """Input through the codec into the input buffer, within its bound."""
        codec = self._codec
        assert codec is not None
        try:
            codec.feed(data)
        except CodecError as exc:
            self._codec_failed(exc)
            return
        self._pump()

    def _pump(self) -> None:
        """Decode held input until the input buffer passes its high-water mark (which
        pauses reading) or nothing is left: what a small compressed input expands to
        is never held beyond that bound."""
        codec = self._codec
        assert codec is not None
        buffer = self._input
        while buffer.size <= buffer.high_water:
            try:
                out = codec.read(FEED)
            except CodecError as exc:
                self._codec_failed(exc)
                return
            if not out:
                return
            buffer.append(out)

    def _codec_failed(self, exc: CodecError) -> None:
        log.info("%s sent input the codec cannot decode (%s): aborting", self.peer, exc)
        self._input.clear()
        self.stop("abort")
        if self.transport is not None:
            self.transport.abort()

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
        self._input.restart()  # start_tls pauses and resumes reading itself
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
        self._input.reader = new_transport
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
