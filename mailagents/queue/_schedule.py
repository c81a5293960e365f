"""When a deferred recipient is tried again, when its sender hears of the delay, and
when the queue gives up."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RetrySchedule"]

MINUTE = 60.0
HOUR = 60 * MINUTE
DAY = 24 * HOUR


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrySchedule:
    """The retry arithmetic, in seconds; every method is given the times it needs
    (nothing here reads a clock), so that a test can run a whole schedule at once.

    After the n-th failed attempt the next one waits ``first * factor ** (n - 1)``,
    at most ``maximum`` (by default 5 minutes, 10, 20, 40, 80, 160, then every 4
    hours: the shape of Postfix's and Exim's back-off), or the n-th of ``intervals``
    when they are given (the last one repeating). A message is given up once it has
    been queued for ``give_up`` (5 days, the RFC 5321 §4.5.4.1 suggestion), with one
    last attempt at that moment; its sender is told of the delay once it has waited
    ``delay_notice`` (a day; ``None``: never).
    """

    first: float = 5 * MINUTE
    """The wait after the first failed attempt."""
    factor: float = 2.0
    """How much each wait grows over the one before."""
    maximum: float = 4 * HOUR
    """The longest wait."""
    intervals: tuple[float, ...] = ()
    """Explicit waits (after the first failure, the second, ...), in place of
    ``first``, ``factor`` and ``maximum``."""
    delay_notice: float | None = DAY
    """How long a message waits before its sender gets a delay notice."""
    give_up: float = 5 * DAY
    """How long a message is kept trying before it fails for good."""

    def __post_init__(self) -> None:
        for name in ("first", "maximum", "give_up"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"RetrySchedule.{name} must be positive")
        if not self.factor >= 1:
            raise ValueError("RetrySchedule.factor must be at least 1")
        if any(not w > 0 for w in self.intervals):
            raise ValueError("RetrySchedule.intervals must be positive")
        if self.delay_notice is not None and not self.delay_notice > 0:
            raise ValueError("RetrySchedule.delay_notice must be positive or None")

    def wait(self, attempts: int) -> float:
        """The wait after ``attempts`` failed attempts (``attempts`` >= 1)."""
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.intervals:
            return self.intervals[min(attempts, len(self.intervals)) - 1]
        # factor ** n overflows a float long before attempts matter: cap the exponent.
        exponent = min(attempts - 1, 64)
        return min(self.first * self.factor**exponent, self.maximum)

    def expires(self, arrival: float) -> float:
        """When a message that arrived at ``arrival`` is given up."""
        return arrival + self.give_up

    def next_attempt(self, *, attempts: int, arrival: float, now: float) -> float | None:
        """When to try again after the ``attempts``-th failed attempt, made at ``now``,
        for a message that arrived at ``arrival``; ``None`` when it is time to give up
        (the last attempt was made at or after :meth:`expires`)."""
        deadline = self.expires(arrival)
        if now >= deadline:
            return None
        return min(now + self.wait(attempts), deadline)

    def delay_due(self, arrival: float, now: float) -> bool:
        """Whether a message still queued at ``now`` is owed a delay notice."""
        return self.delay_notice is not None and now - arrival >= self.delay_notice
