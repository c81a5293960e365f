"""The client's deadlines on one connection, held by one small object that the session
asks for the next one (:meth:`Deadlines.next`, in the manner of aioquic's
``get_timer()``); the session arms a single loop timer for it.

The deadlines, each named as :meth:`Deadlines.next` names it (the clock runs only while
the session waits for the client; time spent in the application's handler, in a login
delay or in a TLS handshake is not the client's):

- ``idle``: after the server answered something, the client has ``idle_timeout``
  seconds to start its next command, and no gap between two reads may be longer than
  that.
- ``command``: from the first octet of a command, the whole command must arrive within
  ``command_timeout`` seconds, however slowly it trickles in: reads do not reset it,
  only the core's answer does (the slow-loris class).
- ``transfer``: message content (SMTP DATA or BDAT octets, later IMAP literals) is
  bounded by ``transfer_timeout`` for the whole transfer.
- ``send``: a client that does not read what the server writes makes the transport's
  write buffer pass ``write_high_water``: the session stops reading and processing, and
  if the buffer has not drained within ``send_timeout`` the connection is aborted.
  This one runs even while the server's clock is paused.

The idle deadline's duration can depend on the session's state: the adapter names the
state (:meth:`Deadlines.set_state`, with the duration a :class:`StateTimeouts` gives it),
so that IMAP, for instance, waits 60 seconds for a login but at least 30 minutes once
logged in and during IDLE (RFC 9051 §5.4: "If a server has an inactivity autologout
timer that applies to sessions after authentication, the duration of that timer MUST
be at least 30 minutes"). Without a state, ``idle_timeout`` applies.

Not here: the TLS handshake's limit (``tls_handshake_timeout``) is asyncio's own
(``ssl_handshake_timeout`` of ``loop.start_tls`` and ``loop.create_server``), the
shutdown grace is :meth:`~mailagents.aio._listener.Listener.close`'s wait, and the
delay before a failed login is answered is a sleep of the session, not a deadline.

The object reads no clock: every call that moves a deadline is given ``now``, and the
durations come from the :class:`~mailagents.aio.ListenerLimits` it was made with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from mailagents.aio._limits import ListenerLimits

__all__ = ["DeadlineName", "Deadlines", "StateTimeouts"]

DeadlineName = Literal["idle", "command", "transfer", "send"]
"""Which deadline :meth:`Deadlines.next` says falls first."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StateTimeouts:
    """The idle deadline per session state, in seconds: how long the client may stay
    silent between commands in that state. A protocol adapter names the state
    (``StreamSession.set_state``); a state not named here keeps the listener's
    ``idle_timeout``.

    The defaults are IMAP's: a short wait before login, and RFC 9051 §5.4's "at least
    30 minutes" after it and during IDLE (RFC 2177 asks clients to re-issue IDLE at
    least every 29 minutes)."""

    before_login: float = 60.0
    """The state ``"before_login"``: the client has not logged in yet."""
    after_login: float = 1800.0
    """The state ``"after_login"``: logged in, between commands."""
    idle: float = 1800.0
    """The state ``"idle"``: inside IMAP's IDLE, waiting for ``DONE``."""
    others: Mapping[str, float] = field(default_factory=dict)
    """Any other state names an adapter uses, with their durations."""

    def __post_init__(self) -> None:
        for name, value in self._items():
            if not value > 0:
                raise ValueError(f"the timeout of state {name!r} must be positive")

    def _items(self) -> list[tuple[str, float]]:
        named = [
            ("before_login", self.before_login),
            ("after_login", self.after_login),
            ("idle", self.idle),
        ]
        return named + list(self.others.items())

    def get(self, state: str) -> float | None:
        """The duration for ``state``, or ``None`` if it has none here."""
        if state in ("before_login", "after_login", "idle"):
            value: float = getattr(self, state)
            return value
        return self.others.get(state)


class Deadlines:
    """The named deadlines of one connection, kept as the times they count from.

    The session tells it what happened (:meth:`start`, :meth:`received`,
    :meth:`command_began`, :meth:`answered`, :meth:`transferring`, :meth:`blocked`,
    :meth:`unblocked`, :meth:`pause`, :meth:`resume`) and asks :meth:`next` which
    deadline falls first and when; while :attr:`paused`, no deadline of the client can
    pass (the server is working) and :meth:`next` is not asked.
    """

    __slots__ = (
        "_limits",
        "_soonest",
        "blocked_at",
        "busy_at",
        "idle_timeout",
        "input_at",
        "progress_at",
        "read_at",
        "state",
        "transfer_at",
    )

    def __init__(self, limits: ListenerLimits) -> None:
        self._limits = limits
        # The earliest a deadline can fall after a read: see received().
        self._soonest = min(limits.idle_timeout, limits.command_timeout)
        self.state: str | None = None
        """The session state named by :meth:`set_state`, or ``None``."""
        self.idle_timeout = limits.idle_timeout
        """The idle deadline's duration in the current state."""
        self.progress_at = 0.0
        """When the server last answered (or the connection began)."""
        self.read_at = 0.0
        """When input last arrived (or the connection began)."""
        self.input_at: float | None = None
        """When the command being received began, or ``None`` between commands."""
        self.transfer_at: float | None = None
        """When the content being received began, or ``None``."""
        self.blocked_at: float | None = None
        """Since when the client does not read what the server writes, or ``None``."""
        self.busy_at: float | None = None
        """Since when the server works (the client's clock is paused), or ``None``."""

    @property
    def soonest(self) -> float:
        """The shortest of the idle and command deadlines' durations."""
        return self._soonest

    # --- what happened -----------------------------------------------------------------

    def set_state(self, state: str | None, idle_timeout: float | None = None) -> None:
        """The session is now in ``state``, whose idle deadline is ``idle_timeout``
        seconds (``None``: the listener's ``idle_timeout``). The deadline counts from
        the same moment as before (the last answer or read), with the new duration."""
        if idle_timeout is not None and not idle_timeout > 0:
            raise ValueError("idle_timeout must be positive")
        self.state = state
        self.idle_timeout = timeout = (
            idle_timeout if idle_timeout is not None else self._limits.idle_timeout
        )
        self._soonest = min(timeout, self._limits.command_timeout)

    def start(self, now: float) -> None:
        """The connection began: the idle deadline runs from ``now``."""
        self.progress_at = self.read_at = now

    def received(self, now: float, armed_for: float) -> bool:
        """Input arrived at ``now``; it starts the command deadline if none runs.

        Returns whether a deadline may now fall before ``armed_for`` (when the
        session's timer fires), so that the timer must be brought forward; a read
        inside a command, or one whose deadlines all fall later, needs no look."""
        self.read_at = now
        if self.input_at is not None:
            return False
        self.input_at = now
        return (
            now + self._soonest < armed_for
            or self.transfer_at is not None
            or self.blocked_at is not None
        )

    def command_began(self, now: float) -> None:
        """The core is fed the first input after its last answer (buffered earlier):
        the command deadline runs from ``now`` unless it runs already."""
        if self.input_at is None:
            self.input_at = now

    def answered(self, now: float) -> None:
        """The server answered: the idle deadline restarts, the command and transfer
        deadlines end."""
        self.progress_at = now
        self.input_at = None
        self.transfer_at = None

    def transferring(self, now: float) -> None:
        """Content streams: the transfer deadline runs from ``now`` unless it runs
        already (until :meth:`answered`)."""
        if self.transfer_at is None:
            self.transfer_at = now

    def blocked(self, now: float) -> None:
        """The client stopped reading (the write buffer is full): the send deadline
        runs from ``now``, and it alone counts until :meth:`unblocked`."""
        self.blocked_at = now

    def unblocked(self) -> None:
        """The write buffer drained: the send deadline ends."""
        self.blocked_at = None

    def pause(self, now: float) -> bool:
        """The server works from ``now`` (a handler call, a delay): the client's clock
        stops. False if it was stopped already (then the caller who stopped it resumes
        it)."""
        if self.busy_at is not None:
            return False
        self.busy_at = now
        return True

    def resume(self, now: float) -> bool:
        """The server's work is over: the client's deadlines move by the time it took.
        False if the clock was not paused."""
        start = self.busy_at
        if start is None:
            return False
        self.busy_at = None
        shift = now - start
        self.progress_at += shift
        self.read_at += shift
        if self.input_at is not None:
            self.input_at += shift
        if self.transfer_at is not None:
            self.transfer_at += shift
        return True

    # --- what falls next -----------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """No deadline of the client can pass now: the server works, and the client
        is not blocking its writes."""
        return self.busy_at is not None and self.blocked_at is None

    def next(self) -> tuple[float, DeadlineName]:
        """The deadline that falls first: when (on the clock the calls were given) and
        which. ``send`` while the client does not read; otherwise the earlier of
        ``idle`` and whichever of ``transfer`` or ``command`` runs."""
        limits = self._limits
        if self.blocked_at is not None:
            return self.blocked_at + limits.send_timeout, "send"
        idle_timeout = self.idle_timeout
        idle = self.read_at + idle_timeout
        if self.transfer_at is not None:
            transfer = self.transfer_at + limits.transfer_timeout
            return (idle, "idle") if idle <= transfer else (transfer, "transfer")
        if self.input_at is None:
            return max(idle, self.progress_at + idle_timeout), "idle"
        command = self.input_at + limits.command_timeout
        return (idle, "idle") if idle <= command else (command, "command")
